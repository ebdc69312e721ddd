"""``--method sweep``: every assignment of K equal segments to large/small, scored, on a Pareto front (sec 5.2).

Per (prompt, seed) the 2^K patterns are walked on the prefix trie (:func:`calibrate.trie.walk_trie`: each trie
node computed once); the divergence pass rides on the first leaf (large-only, small model as shadow). Each
schedule gets a FID against the reference, a DINO similarity to large-only and its FLOPs; ``--tolerance`` picks
the cheapest schedule whose FID is within that relative margin of large-only's (without a reference: whose
similarity to large-only is at least 1 - tolerance).
Calls per unit (``|d|`` steps in segment d): large ``c * sum_d 2^d |d|``, small ``c * (sum_d 2^d |d| + N - K)``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch

from flowblending.cost import schedule_cost
from flowblending.errors import FlowBlendingError
from flowblending.schedule import segments_from_pattern

from ..pareto import choose_within_tolerance, pareto_front, pareto_front_max
from ..record import PremiseRecord, SweepRecord
from ..sampling import Unit, opened
from ..trie import TrieStats, pattern_plan, segment_steps, walk_trie
from .base import (
    Context,
    Decision,
    Method,
    divergence_record,
    new_record,
    shared_feature_file,
    sum_calls,
    trajectory_data,
)

__all__ = ["SweepMethod", "cost_block", "starts_small_note", "sweep_calls"]


def sweep_calls(num_steps: int, calls_per_step: int, segments: int) -> dict[str, int]:
    """Transformer calls per role per unit of the sweep: the trie's nodes, the shadow, minus the shadow's reuse."""
    spans = segment_steps(num_steps, segments)
    trie = calls_per_step * sum(2**d * len(s) for d, s in enumerate(spans))
    return {"large": trie, "small": trie + calls_per_step * (num_steps - segments)}


def schedule_flops(pattern: str, n: int, flops_per_step: dict[str, float]) -> float:
    return schedule_cost(pattern_plan(pattern, n), flops_per_step).flops_total


def cost_block(stats: list[TrieStats]) -> dict[str, Any]:
    """What a sweep or search computed, totalled over units, against the exhaustive walk and from scratch."""
    total = TrieStats(stats[0].segments, stats[0].num_steps, stats[0].roles, calls_per_step=stats[0].calls_per_step)
    for s in stats:
        total.units += s.units
        total.schedules += s.schedules
        total.runs += s.runs
        total.replayed += s.replayed
        total.reused += s.reused
        total.max_stack = max(total.max_stack, s.max_stack)
        for role, v in s.segment_evaluations.items():
            total.segment_evaluations[role] = total.segment_evaluations.get(role, 0) + v
        for role, v in s.calls.items():
            total.calls[role] = total.calls.get(role, 0) + v
    return {
        "segment_evaluations": dict(total.segment_evaluations),
        "calls": dict(total.calls),
        "exhaustive_trie_segment_evaluations": total.trie_segment_evaluations,
        "from_scratch_segment_evaluations": total.scratch_segment_evaluations,
        "from_scratch_calls": total.scratch_calls,
        "max_recordings_held": total.max_stack,
        "summary": total.summary(),
    }


def starts_small_note(pattern: str) -> list[str]:
    if not pattern.startswith("S"):
        return []
    return [
        f"the chosen schedule {pattern} starts with the small model: the paper's stage structure (large model "
        "first) does not hold for this pair at this tolerance."
    ]


def within_tolerance(
    metric: str, flops: list[float], values: list[float], large: int, tolerance: float, spread: list[float] | None
) -> tuple[int, str]:
    """The cheapest schedule whose metric is within ``tolerance`` of large-only's, and the rule in words.

    FID: ``fid <= fid_L (1 + tolerance)``. KID is an unbiased estimate that can be negative, so its margin is
    relative to ``max(|kid_L|, std_L)`` (large-only's spread over subsets): ``kid <= kid_L + tolerance x that``.
    """
    if metric == "fid":
        return (
            choose_within_tolerance(flops, values, values[large], tolerance),
            f"cheapest schedule with FID <= large-only FID x (1 + {tolerance:g})",
        )
    scale = max(abs(values[large]), spread[large] if spread else 0.0)
    limit = values[large] + tolerance * scale
    eligible = [i for i, v in enumerate(values) if v <= limit + 1e-15]
    chosen = min(eligible, key=lambda i: (flops[i], values[i], i))
    return chosen, f"cheapest schedule with KID <= large-only KID + {tolerance:g} x max(|KID_L|, std_L)"


class SweepMethod(Method):
    def compute(self, ctx: Context) -> None:
        k = ctx.config.segments
        ctx.prepare_reference()
        bar = ctx.bar(len(ctx.mine) * 2**k, f"sweep of 2^{k} schedules (prefix trie)", unit="schedule")
        for unit in ctx.mine:
            if not ctx.work.sweep(unit, k).exists():
                try:
                    self._unit(ctx, opened(unit), lambda: bar.update(1))
                except FlowBlendingError as exc:
                    raise ctx.unit_error(unit, exc) from exc
                ctx.unit_done()
            else:
                bar.update(2**k)
        bar.close()
        ctx.wait()

    def _unit(self, ctx: Context, unit: Unit, tick: Any) -> None:
        from ..metrics import feature_similarity, frames_of

        sampler, work, k = ctx.sampler, ctx.work, ctx.config.segments
        extractor = ctx.extractor("dino")
        fid = ctx.extractor("fid") if ctx.config.reference else None
        dino: dict[str, float] = {}
        fid_features: dict[str, torch.Tensor] = {}
        reference: dict[str, torch.Tensor] = {}
        first: list[Any] = []

        def on_leaf(pattern: str, frames: torch.Tensor) -> None:
            flat = frames_of(frames)
            feats = extractor(flat)
            if not reference:  # the first leaf is large-only
                reference["large"] = feats
            dino[pattern] = feature_similarity(feats, reference["large"])
            if fid is not None:
                fid_features[pattern] = (feats if fid is extractor else fid(flat)).cpu()
            tick()
            ctx.checkpoint("sweep-leaf")

        before = dict(sampler.calls)
        stats = walk_trie(sampler, unit, k, on_leaf, shadow="small", on_first=first.append)
        calls = sampler.calls_since(before)
        work.write_json(work.trajectory(unit), trajectory_data(sampler, first[0], calls))
        work.save(work.sweep(unit, k), {"dino": dino, "fid_features": fid_features or None, "stats": asdict(stats)})

    def large_only_features(self, ctx: Context, unit: Unit) -> torch.Tensor | None:
        k = ctx.config.segments
        stored = shared_feature_file(ctx, ctx.work.sweep(unit, k))  # every leaf's FID features, large-only's too
        return None if stored is None else stored["fid_features"]["L" * k]

    def decide(self, ctx: Context) -> Decision:
        from ..metrics import choose_late_metric, late_metric_curves

        config, work, n, k = ctx.config, ctx.work, ctx.num_steps, ctx.config.segments
        trajectories = ctx.trajectories()
        per_unit = [work.load(work.require(work.sweep(u, k), u, "the sweep")) for u in ctx.units]
        flops_per_step = trajectories[0]["flops_per_step"]
        patterns = list(per_unit[0]["dino"])
        dino = [sum(u["dino"][p] for u in per_unit) / len(per_unit) for p in patterns]
        flops = [schedule_flops(p, n, flops_per_step) for p in patterns]
        large = patterns.index("L" * k)
        curves: dict[str, list[float]] = {}
        ref, metric, subset, spread = None, "fid", None, None
        if config.reference:
            ref = ctx.reference_state()
            extractor = ctx.extractor("fid")
            candidates = [[u["fid_features"][p] for u in per_unit] for p in patterns]
            frames = sum(f.shape[0] for f in candidates[large])
            metric = choose_late_metric(config.late_metric, frames, candidates[large][0].shape[1])
            measured = late_metric_curves(metric, extractor, ref, candidates, subset_size=config.kid_subset_size)
            curves = {name: values for name, (values, _, _) in measured.items()}
            _, spread, subset = measured["kid"]
        if curves:
            values = curves[metric]
            chosen, rule = within_tolerance(metric, flops, values, large, config.tolerance, spread)
        else:
            loss = [1.0 - d for d in dino]
            eligible = [i for i, v in enumerate(loss) if v <= config.tolerance + 1e-12]
            chosen = min(eligible, key=lambda i: (flops[i], loss[i], i))
            rule = f"cheapest schedule with DINO similarity to large-only >= 1 - {config.tolerance:g} (no --reference)"
        fid, kid = curves.get("fid"), curves.get("kid")
        stats = [TrieStats(**{**u["stats"], "roles": tuple(u["stats"]["roles"])}) for u in per_unit]
        sweep = SweepRecord(
            segments=k,
            patterns=tuple(patterns),
            flops=tuple(flops),
            fid=tuple(fid) if fid is not None else None,
            kid=tuple(kid) if kid is not None else None,
            metric=metric,
            subset_size=subset,
            dino=tuple(dino),
            front_fid=tuple(pareto_front(list(zip(flops, fid, strict=True)))) if fid is not None else None,
            front_kid=tuple(pareto_front(list(zip(flops, kid, strict=True)))) if kid is not None else None,
            front_dino=tuple(pareto_front_max(list(zip(flops, dino, strict=True)))),
            tolerance=config.tolerance,
            rule=rule,
            chosen={
                "index": chosen,
                "pattern": patterns[chosen],
                "flops": flops[chosen],
                "fid": fid[chosen] if fid is not None else None,
                "kid": kid[chosen] if kid is not None else None,
                "dino": dino[chosen],
            },
            large_only={
                "pattern": patterns[large],
                "fid": fid[large] if fid is not None else None,
                "kid": kid[large] if kid is not None else None,
            },
            reference_frames=int(ref["count"]) if ref else 0,
            cost=cost_block(stats),
        )
        c = trajectories[0]["calls_per_step"]
        scratch = sweep.cost["from_scratch_calls"]
        record = new_record(
            ctx,
            divergence=divergence_record(trajectories, n),
            sweep=sweep,
            premise=PremiseRecord(holds=True, tested=False),
            computed=sum_calls([t["calls"] for t in trajectories]),
            formula=sweep_calls(n, c, k),
            naive={r: scratch.get(r, 0) + n * c * len(ctx.units) for r in ("large", "small")},
            calls_per_step=c,
            notes=starts_small_note(patterns[chosen]),
        )
        return Decision(segments_from_pattern(patterns[chosen]), record)
