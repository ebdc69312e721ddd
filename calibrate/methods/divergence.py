"""``--method divergence``: a quick first profile from the velocity-divergence U-curve alone (paper sec 5.1).

Per (prompt, seed) the large-only path is run once with the small model evaluated on the same inputs; nothing is
decoded and no feature model is loaded. The proxy boundaries bracket the divergence valley.
Calls per unit: large ``c * N``, small ``c * N``.
"""

from __future__ import annotations

from flowblending.errors import FlowBlendingError

from ..record import PremiseRecord
from ..sampling import opened
from .base import Context, Decision, Method, divergence_record, large_only, lsl, new_record, sum_calls, trajectory_data

__all__ = ["DivergenceMethod", "divergence_calls"]


def divergence_calls(num_steps: int, calls_per_step: int) -> dict[str, int]:
    """Transformer calls per role per unit of the divergence method: one large-only path with its shadow."""
    return {"large": num_steps * calls_per_step, "small": num_steps * calls_per_step}


class DivergenceMethod(Method):
    def compute(self, ctx: Context) -> None:
        sampler, work, n = ctx.sampler, ctx.work, ctx.num_steps
        bar = ctx.bar(len(ctx.mine), "large-only path with the small model as shadow")
        for unit in ctx.mine:
            if not work.trajectory(unit).exists():
                before = dict(sampler.calls)
                try:
                    _, t = sampler.run(opened(unit), ["large"] * n, shadow="small", capture=True, decode=False)
                except FlowBlendingError as exc:
                    raise ctx.unit_error(unit, exc) from exc
                work.write_json(work.trajectory(unit), trajectory_data(sampler, t, sampler.calls_since(before)))
                ctx.unit_done()
            bar.update(1)
        bar.close()
        ctx.wait()

    def decide(self, ctx: Context) -> Decision:
        n = ctx.num_steps
        trajectories = ctx.trajectories()
        divergence = divergence_record(trajectories, n)
        failed = tuple(f"divergence: {p}" for p in divergence.premise)
        schedule = large_only() if divergence.premise else lsl(*divergence.proxy_boundaries)
        c = trajectories[0]["calls_per_step"]
        per_unit = divergence_calls(n, c)
        record = new_record(
            ctx,
            divergence=divergence,
            premise=PremiseRecord(holds=not failed, failed=failed),
            computed=sum_calls([t["calls"] for t in trajectories]),
            formula=per_unit,
            naive={r: v * len(ctx.units) for r, v in per_unit.items()},
            calls_per_step=c,
        )
        return Decision(schedule, record)
