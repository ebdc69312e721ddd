"""``--method full``: the paper's protocol (sec 4.2, 4.3, App. B), computed with no call made twice.

Pass 1, per (prompt, seed): the large-only run is recorded while the small model is evaluated on the same inputs
(divergence, App. C; its outputs at the early candidates are kept). Every early candidate L->S(k) replays the
recorded large prefix, reuses the shadow's output for its first small step (the same inputs) and computes the
rest; it is compared frame by frame with large-only (eq. 2) and its small steps up to the last late candidate
are recorded. Algorithm 1 then picks the early boundary e on the mean curve over all units. Pass 2: every late
candidate L->S(e)->L(r) replays the large prefix and branch e's small steps and computes only steps r..N on the
large model; large-only (r = e) and L-S-S (r = N) were already decoded in pass 1. The FID V-curve over all units
gives the late boundary.

Calls per unit (``c`` calls per step, ``N`` steps, early candidates ``E``, interior late candidates ``R``):
large ``c * (N + sum_{r in R} (N - r))``, small ``c * (N + sum_{k in E} (N - k - 1))``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from flowblending.errors import FlowBlendingError
from flowblending.schedule import first_step

from ..boundaries import (
    LATE_RULES,
    STABILITY_DRAWS,
    difference_se,
    early_boundary_stability,
    early_curve_premise,
    find_early_boundary,
    floor_note,
    mean_se,
    raise_to_floor,
)
from ..record import (
    EarlyChoice,
    EarlyRecord,
    LateChoice,
    LateRecord,
    PremiseRecord,
    Stat,
)
from ..replay import Recording
from ..sampling import Unit, grid_steps, opened
from .base import (
    Context,
    Decision,
    Method,
    divergence_record,
    large_only,
    lsl,
    new_record,
    shared_feature_file,
    stat,
    sum_calls,
    trajectory_data,
)

__all__ = ["FullMethod", "full_calls", "naive_calls"]


def full_calls(
    num_steps: int, calls_per_step: int, early_steps: list[int], late_steps: list[int] | None
) -> dict[str, int]:
    """Transformer calls per role of the full method per unit (module docstring); ``late_steps`` None: no pass 2."""
    n, c = num_steps, calls_per_step
    large = n * c + sum(n - r for r in late_steps or ()) * c
    small = n * c + sum(n - k - 1 for k in early_steps) * c
    return {"large": large, "small": small}


def naive_calls(
    num_steps: int, calls_per_step: int, early_steps: list[int], early_step: int | None, late_steps: list[int]
) -> dict[str, int]:
    """Calls per role per unit if every schedule were generated from scratch and the divergence measured in a
    separate pass (the paper's protocol run naively)."""
    n, c = num_steps, calls_per_step
    large = 2 * n * c  # divergence pass (large main stream) and the large-only reference
    small = n * c  # the small model on the divergence pass's inputs
    for k in early_steps:
        large += k * c
        small += (n - k) * c
    if early_step is not None:
        for r in late_steps:
            if early_step < r < n:
                large += (early_step + n - r) * c
                small += (r - early_step) * c
    return {"large": large, "small": small}


def video_metrics(
    frames: torch.Tensor, reference: torch.Tensor, features: dict[str, torch.Tensor], reference_features: dict
) -> dict[str, float]:
    """Frame-wise similarity of one video to large-only (eq. 2): feature cosine per extractor, PSNR, SSIM."""
    from ..metrics import feature_similarity, psnr_ssim

    out = {name: feature_similarity(f, reference_features[name]) for name, f in features.items()}
    psnr, ssim = psnr_ssim(frames, reference)
    out["psnr"] = float(psnr.mean())
    out["ssim"] = float(ssim.mean())
    return out


def finite_stat(rows: list[list[float]]) -> Stat:
    """Mean and spread per point over the finite values only (``None`` where no unit has one)."""
    import numpy as np

    arr = np.asarray(rows, dtype=np.float64)
    mean, std = [], []
    for column in arr.T:
        finite = column[np.isfinite(column)]
        mean.append(float(finite.mean()) if finite.size else None)
        std.append(float(finite.std()) if finite.size else None)
    return Stat(tuple(mean), tuple(std))


class FullMethod(Method):
    # -- the grids ----------------------------------------------------------------------------------------

    @staticmethod
    def early_steps(ctx: Context) -> list[int]:
        """Early switch steps of pass 1: the grid's, plus ``--early-boundary``'s so that pass 2 can start there."""
        steps = grid_steps(ctx.config.early_grid, ctx.num_steps, include_zero=True)
        fixed = None if ctx.config.early_boundary is None else first_step(ctx.config.early_boundary, ctx.num_steps)
        return sorted({*steps, fixed}) if fixed is not None and fixed < ctx.num_steps else steps

    @staticmethod
    def late_grid(ctx: Context) -> list[int]:
        return grid_steps(ctx.config.late_grid, ctx.num_steps, include_zero=False)

    def late_steps(self, ctx: Context, e: int) -> list[int]:
        """Interior re-entry steps of the late sweep from early boundary ``e``."""
        return [r for r in self.late_grid(ctx) if e < r < ctx.num_steps]

    # -- compute ------------------------------------------------------------------------------------------

    def compute(self, ctx: Context) -> None:
        early_steps = self.early_steps(ctx)
        samples = {u.key for u in ctx.units[: ctx.config.samples]}
        bar = ctx.bar(len(ctx.mine) * (1 + len(early_steps)), "pass 1 (large-only + early sweep)")
        for unit in ctx.mine:
            if not ctx.work.early(unit).exists():
                bar.set_postfix_str(f"prompt {unit.index + 1}/{len(ctx.config.prompts)} seed {unit.seed}")
                try:
                    self._pass1(ctx, opened(unit), early_steps, unit.key in samples, lambda: bar.update(1))
                except FlowBlendingError as exc:
                    raise ctx.unit_error(unit, exc) from exc
                ctx.unit_done()
            else:
                bar.update(1 + len(early_steps))
        bar.close()
        ctx.wait()
        ctx.checkpoint("between-passes")
        e = self.early_boundary(ctx, self.early_record(ctx))
        if e is None or not ctx.config.reference:
            return
        ctx.prepare_reference()
        late = self.late_steps(ctx, e)
        bar = ctx.bar(len(ctx.mine) * len(late), f"pass 2 (late sweep from step {e})")
        for unit in ctx.mine:
            if not ctx.work.late(unit, e).exists():
                try:
                    self._pass2(ctx, opened(unit), e, late, unit.key in samples, lambda: bar.update(1))
                except FlowBlendingError as exc:
                    raise ctx.unit_error(unit, exc) from exc
                ctx.unit_done()
            else:
                bar.update(len(late))
        bar.close()
        ctx.wait()

    def _pass1(self, ctx: Context, unit: Unit, early_steps: list[int], keep: bool, tick: Any) -> None:
        from ..metrics import frames_of, video_uint8

        sampler, work, n = ctx.sampler, ctx.work, ctx.num_steps
        with_late = bool(ctx.config.reference)
        last_late = max(self.late_grid(ctx), default=0) if with_late else 0
        before = dict(sampler.calls)
        large_frames, t = sampler.run(
            unit, ["large"] * n, record=True, shadow="small", keep_shadow=early_steps, capture=True
        )
        tick()
        ctx.checkpoint("pass1-unit")
        extractors = ctx.similarity_extractors()
        fid = ctx.extractor("fid") if with_late else None
        flat = frames_of(large_frames)
        large_features = {name: ex(flat) for name, ex in extractors.items()}
        fid_features: dict[str, Any] = {}
        if fid is not None:
            fid_features["large"] = large_features["dino"] if fid is extractors["dino"] else fid(flat)
            fid_features["branch"] = {}
            work.large_recording(unit).parent.mkdir(parents=True, exist_ok=True)
            t.recording.restrict(range(max(early_steps, default=0))).save(work.large_recording(unit))
        early: dict[str, dict[str, float]] = {}
        videos = {"large": video_uint8(large_frames)} if keep else {}
        reuse = {"small": t.shadow_outputs}
        for k in early_steps:
            kept = range(k, last_late) if k < last_late else range(0)
            frames, branch = sampler.run(unit, [t.recording] * k + ["small"] * (n - k), record=bool(kept), reuse=reuse)
            bflat = frames_of(frames)
            feats = {name: ex(bflat) for name, ex in extractors.items()}
            early[str(k)] = video_metrics(frames, large_frames, feats, large_features)
            if fid is not None:
                fid_features["branch"][k] = feats["dino"] if fid is extractors["dino"] else fid(bflat)
            if kept:
                branch.recording.restrict(kept).save(work.branch_recording(unit, k))
            if keep:
                videos["small" if k == 0 else f"branch-{k}"] = video_uint8(frames)
            tick()
        if fid is not None:
            work.save(work.features(unit), {"large": fid_features["large"].cpu(), "branch": fid_features["branch"]})
        if keep:
            work.save_frames(work.samples(unit, "pass1"), **videos)
        calls = sampler.calls_since(before)
        work.write_json(work.trajectory(unit), trajectory_data(sampler, t, calls))
        work.write_json(work.early(unit), {"prompt": unit.prompt, "seed": unit.seed, "early": early, "calls": calls})

    def _pass2(self, ctx: Context, unit: Unit, e: int, late: list[int], keep: bool, tick: Any) -> None:
        from ..metrics import frames_of, video_uint8

        sampler, work, n = ctx.sampler, ctx.work, ctx.num_steps
        fid = ctx.extractor("fid")
        device = sampler.pipe.device
        prefix = Recording.load(work.large_recording(unit), device=device).restrict(range(e))
        branch = Recording.load(work.branch_recording(unit, e), device=device) if late else Recording()
        before = dict(sampler.calls)
        features: dict[int, torch.Tensor] = {}
        videos = {}
        for i, r in enumerate(late):
            frames, _ = sampler.run(unit, [prefix] * e + [branch] * (r - e) + ["large"] * (n - r))
            features[r] = fid(frames_of(frames)).cpu()
            if keep:
                videos[f"r{r}"] = video_uint8(frames)
            tick()
            if i == 0:
                ctx.checkpoint("pass2-unit")
        if keep:
            work.save_frames(work.samples(unit, f"e{e}"), **videos)
        work.save(work.late(unit, e), {"features": features, "calls": sampler.calls_since(before)})

    def large_only_features(self, ctx: Context, unit: Unit) -> torch.Tensor | None:
        stored = shared_feature_file(ctx, ctx.work.features(unit))  # pass 1's FID features of large-only
        return None if stored is None else stored["large"]

    # -- decide -------------------------------------------------------------------------------------------

    def early_record(self, ctx: Context) -> EarlyRecord:
        """Mean similarity to large-only per switch point over all units, and Algorithm 1's choice (App. B)."""
        work, n, config = ctx.work, ctx.num_steps, ctx.config
        steps = self.early_steps(ctx)
        per_unit = [work.read_json(work.require(work.early(u), u, "pass 1"))["early"] for u in ctx.units]
        xs = [100 * k / n for k in steps] + [100.0]
        metrics: dict[str, Any] = {"clip": None}
        for metric in per_unit[0][str(steps[0])]:
            top = 1.0 if metric in ("dino", "clip", "ssim") else math.inf
            rows = [[u[str(k)][metric] for k in steps] + [top] for u in per_unit]
            if metric == "psnr":  # identical frames have an infinite PSNR: such points are left out
                metrics[metric] = finite_stat(rows)
            else:
                metrics[metric] = stat(rows)
        y = metrics["dino"].mean
        dino_rows = [[u[str(k)]["dino"] for k in steps] + [1.0] for u in per_unit]
        se = mean_se(dino_rows)
        margin = config.noise_se * se
        knee, _, _ = find_early_boundary(xs, y, config.alpha, config.early_reference)
        k = raise_to_floor(xs, y, knee, config.floor, margin)
        stability = early_boundary_stability(
            xs, dino_rows, config.alpha, config.floor, config.noise_se, config.early_reference
        )
        return EarlyRecord(
            x=tuple(xs),
            steps=(*steps, n),
            alpha=config.alpha,
            floor=config.floor,
            metrics=metrics,
            chosen=EarlyChoice(int(k), float(xs[k]), float(y[k])),
            premise=tuple(early_curve_premise(xs, y, k, config.floor, margin, config.early_reference)),
            knee=None if k == knee else EarlyChoice(int(knee), float(xs[knee]), float(y[knee])),
            se=tuple(float(v) for v in se),
            noise_se=config.noise_se,
            reference=config.early_reference,
            stability=stability,
            stability_draws=STABILITY_DRAWS,
        )

    @staticmethod
    def early_boundary(ctx: Context, early: EarlyRecord) -> int | None:
        """The early boundary step to sweep the late boundary from (None: large-only, the premise failed)."""
        n = ctx.num_steps
        if ctx.config.early_boundary is not None:
            return first_step(ctx.config.early_boundary, n)
        step = round(early.chosen.x / 100 * n)
        return None if early.premise or step >= n else step

    def late_record(self, ctx: Context, e: int) -> tuple[LateRecord, list[dict[str, int]]]:
        """The late metric of every candidate over all units against the reference, read by --late-rule (sec 4.3)."""
        from ..metrics import choose_late_metric, late_metric_curves, late_metric_leave_one_out

        work, n, config = ctx.work, ctx.num_steps, ctx.config
        steps = [e, *self.late_steps(ctx, e), n]
        per_unit, calls = [], []
        for unit in ctx.units:
            first = work.load(work.require(work.features(unit), unit, "pass 1's FID features"))
            second = work.load(work.require(work.late(unit, e), unit, "pass 2"))
            per_unit.append({e: first["large"], n: first["branch"][e], **second["features"]})
            calls.append(second["calls"])
        ref = ctx.reference_state()
        extractor = ctx.extractor("fid")
        frames, width = sum(u[e].shape[0] for u in per_unit), per_unit[0][e].shape[1]
        metric = choose_late_metric(config.late_metric, frames, width)
        candidates = [[u[r] for u in per_unit] for r in steps]
        curves = late_metric_curves(metric, extractor, ref, candidates, subset_size=config.kid_subset_size)
        _, spread, subset = curves["kid"]
        values = curves[metric][0]
        xs = [100 * r / n for r in steps]
        rule = LATE_RULES[config.late_rule]
        se = None
        if len(per_unit) > 1:  # measured whatever the margin, so the report can show the noise
            loo = late_metric_leave_one_out(metric, extractor, ref, candidates, subset_size=config.kid_subset_size)
            se = difference_se(values, loo, base=rule.base)
        k, xk, vk = rule.find(xs, values, margin=None if se is None else config.late_noise_se * se)
        record = LateRecord(
            source=metric,
            metric=metric,
            requested=config.late_metric,
            x=tuple(xs),
            steps=tuple(steps),
            values=tuple(values),
            chosen=LateChoice(int(k), float(xk), float(vk)),
            premise=tuple(rule.premise(xs, values, k, metric.upper())),
            feature=getattr(extractor, "name", None),
            reference_frames=int(ref["count"]),
            generated_frames=int(frames),
            spread=tuple(spread) if metric == "kid" else None,
            subset_size=subset if metric == "kid" else None,
            others={name: tuple(v[0]) for name, v in curves.items() if name != metric},
            se=None if se is None else tuple(float(v) for v in se),
            noise_se=config.late_noise_se if se is not None else 0.0,
            rule=config.late_rule,
        )
        return record, calls

    def decide(self, ctx: Context) -> Decision:
        config, n = ctx.config, ctx.num_steps
        trajectories = ctx.trajectories()
        divergence = divergence_record(trajectories, n)
        early = self.early_record(ctx)
        e = self.early_boundary(ctx, early)
        notes = []
        failed = [] if config.early_boundary is not None else [f"early: {p}" for p in early.premise]
        if config.early_boundary is not None:
            notes.append(
                f"early boundary fixed by --early-boundary {config.early_boundary} (step {e}); Algorithm 1's "
                "choice is reported but not used."
            )
        else:
            knee = None if early.knee is None else early.knee.x
            note = floor_note(config.feature_model, config.floor, knee, early.chosen.x)
            if note is not None:
                notes.append(note)
        late, late_calls, late_steps = None, [], None
        if e is None:
            schedule = large_only()
        elif not config.reference:
            frac = max(divergence.proxy_boundaries[1], e / n)
            late = LateRecord(source="divergence", metric="fid", chosen=LateChoice(None, 100 * frac, None))
            schedule = lsl(e / n, frac)
            notes.append("no --reference: the late boundary comes from the divergence curve.")
        else:
            late, late_calls = self.late_record(ctx, e)
            late_steps = self.late_steps(ctx, e)
            failed += [f"late: {p}" for p in late.premise]
            schedule = lsl(e / n, late.chosen.x / 100)
        c = trajectories[0]["calls_per_step"]
        early_steps = self.early_steps(ctx)
        units = len(ctx.units)
        naive = naive_calls(n, c, early_steps, e if late_steps is not None else None, self.late_grid(ctx))
        per_unit_early = [ctx.work.read_json(ctx.work.early(u))["calls"] for u in ctx.units]
        record = new_record(
            ctx,
            divergence=divergence,
            early=early,
            late=late,
            premise=PremiseRecord(holds=not failed, failed=tuple(failed)),
            computed=sum_calls(per_unit_early + late_calls),
            formula=full_calls(n, c, early_steps, late_steps),
            naive={r: v * units for r, v in naive.items()},
            calls_per_step=c,
            notes=notes,
        )
        return Decision(schedule, record, self.samples(ctx, schedule))

    def samples(self, ctx: Context, schedule: tuple) -> dict[str, dict[str, Any]]:
        """Frames of large-only, the chosen schedule, L-S-S and small-only for the first units (report)."""
        import numpy as np

        n, out = ctx.num_steps, {}
        early = round(schedule[1].start * n) if len(schedule) > 1 else None
        late = round(schedule[2].start * n) if len(schedule) > 2 else n
        for unit in ctx.units[: ctx.config.samples]:
            p1 = ctx.work.samples(unit, "pass1")
            if not p1.exists():
                continue
            videos: dict[str, Any] = {}
            with np.load(p1) as d1:
                videos["large-only"] = d1["large"]
                if early is not None and late < n:
                    p2 = ctx.work.samples(unit, f"e{early}")
                    if p2.exists():
                        with np.load(p2) as d2:
                            if f"r{late}" in d2:
                                videos["calibrated"] = d2[f"r{late}"]
                if early is not None and f"branch-{early}" in d1:
                    videos["L-S-S"] = d1[f"branch-{early}"]
                if "small" in d1:
                    videos["small-only"] = d1["small"]
            out[f"{unit.prompt} (seed {unit.seed})"] = videos
        return out
