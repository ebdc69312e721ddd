"""``--compare PROFILE``: a given schedule (e.g. the paper's LDL, section 6(b)) scored against large-only and the
calibrated schedule, on the calibration's own prompts, seeds and setting.

An evaluation only: it runs after the method has computed its units, takes the method's decision as it is and
never changes it. Each compared profile is checked before any weight loads (:func:`read_compared`: it loads and
validates, its pipeline class is the pair's, its base role is ``--large``); its other roles are loaded as the
runtime loads them and checked against the large model (:func:`load_compared`). Per unit every schedule is
generated through the runtime's router and composed call (:func:`flowblending.loading.apply_profile`,
:func:`flowblending.generate.composed_call`) and scored as the calibrator scores its own candidates: frame-feature
similarity to large-only (:func:`calibrate.metrics.feature_similarity`, as the early curve) and, with
``--reference``, the late metric against the same reference statistics
(:func:`calibrate.metrics.late_metric_curves`, as the late curve). Large-only's features come from the method's own
large-only pass when it stored them (:meth:`calibrate.methods.base.Method.large_only_features`). Every (unit,
schedule) result is one work-dir file, written atomically, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from flowblending.errors import FlowBlendingError, ProfileError
from flowblending.profile import ModelSpec, Profile, load_profile, resolve_model_location
from flowblending.schedule import Segment, pattern_of, run_roles

from .config import CalibrationConfig, CalibrationError
from .methods.base import Context, Method, large_only, stat
from .record import CalibrationRecord, CompareRecord, CompareRow
from .sampling import Unit, opened

__all__ = [
    "ComparedProfile",
    "compare_record",
    "compute_compare",
    "load_compared",
    "read_compared",
    "schedule_digest",
]

LARGE_ONLY, CALIBRATED, COMPARED = "large-only", "calibrated", "compared"
"""The kinds of rows: the reference, the method's decision, a given profile."""


@dataclass(frozen=True)
class ComparedProfile:
    """One ``--compare`` profile: the argument as given, the profile, and (once loaded) its other roles' models."""

    argument: str
    profile: Profile
    models: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    """A schedule to score: its name and kind in the record, its profile, the models of its non-base roles."""

    name: str
    kind: str
    source: str | None
    profile: Profile
    models: Mapping[str, Any]

    @property
    def digest(self) -> str:
        return schedule_digest(self.profile)


# -- checks before any work ------------------------------------------------------------------------------------


def _same_location(a: str, b: str) -> bool:
    """Whether two model ids name the same model: the same resolved local folder, else the same id."""
    a, b = resolve_model_location(a), resolve_model_location(b)
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return a.rstrip("/") == b.rstrip("/")


def read_compared(config: CalibrationConfig, pipeline_class: str) -> tuple[ComparedProfile, ...]:
    """Load and check every ``--compare`` profile before any weight loads.

    Each must load and validate, name ``pipeline_class`` (the ``--large`` repository's, empty when unknown) and
    have ``--large`` (same id or folder, same revision when it pins one) as its base role, a pipeline repository.
    """
    out = []
    for argument in config.compare:
        where = f"--compare {argument!r}"
        try:
            profile = load_profile(argument)
        except ProfileError as exc:
            raise CalibrationError(
                f"{where} is not a usable profile: {'; '.join(exc.errors)}; give a shipped profile name (e.g. "
                "ltxv-ldl) or the path of a valid profile (check it with flowblending validate)."
            ) from exc
        if pipeline_class and profile.pipeline_class != pipeline_class:
            raise CalibrationError(
                f"{where}: its pipeline.class is {profile.pipeline_class!r} but --large {config.large!r} is a "
                f"{pipeline_class}; compare a profile of the calibrated pipeline."
            )
        base = profile.base_role
        spec = profile.models[base]
        if not _same_location(spec.id, config.large):
            raise CalibrationError(
                f"{where}: its base role's models.{base}.id is {spec.id!r} but --large is {config.large!r}; a "
                "compared schedule must run the calibrated large model: give a profile of that model, or calibrate "
                "with --large set to its model."
            )
        if spec.revision is not None and spec.revision != config.large_revision:
            raise CalibrationError(
                f"{where}: its models.{base}.revision is {spec.revision!r} but the calibration loads --large at "
                f"revision {config.large_revision!r}; compare a profile of the same revision."
            )
        if spec.file is not None:
            raise CalibrationError(
                f"{where}: its base role's models.{base}.file is {spec.file!r}, but the base role is the pipeline "
                f"repository --large {config.large!r}; give the base role the repository without file."
            )
        out.append(ComparedProfile(argument, profile))
    return tuple(out)


def _model_key(spec: ModelSpec) -> tuple[Any, ...]:
    """What a transformer is loaded from: two roles with the same key are one model (loaded once)."""
    location = resolve_model_location(spec.id)
    where = os.path.realpath(location) if os.path.exists(location) else location.rstrip("/")
    return where, spec.revision, spec.subfolder, spec.file, spec.config


def load_compared(
    config: CalibrationConfig,
    compared: Sequence[ComparedProfile],
    base: Any,
    small: tuple[Any, str | None],
    num_steps: int,
    *,
    device: str,
    dtype: torch.dtype,
) -> tuple[ComparedProfile, ...]:
    """Each compared profile with the models of the roles its schedule runs besides the base role.

    The roles are loaded by :func:`flowblending.loading.load_transformer` (``from_pretrained`` or
    ``from_single_file``, safetensors only, ``local_files_only`` as the calibration) and must pass
    :func:`flowblending.loading.check_compatible` against ``base``, the large model; the schedule must fit the
    calibration's ``num_steps`` base steps (own steps of a segment at most its base steps). ``small``: the pair's
    small transformer and the subfolder it was loaded from, used for a role that names the same model.
    """
    from flowblending.experts import single_model
    from flowblending.loading import check_compatible, load_transformer

    model, subfolder = small
    loaded = {_model_key(ModelSpec(config.small, config.small_revision, subfolder)): model}
    out = []
    for item in compared:
        profile, where = item.profile, f"--compare {item.argument!r}"
        try:
            run_roles(profile.schedule, num_steps)
        except ProfileError as exc:
            raise CalibrationError(
                f"{where} cannot run at the calibration's {num_steps} steps: {'; '.join(exc.errors)}"
            ) from exc
        models = {}
        for role in sorted({s.model for s in profile.schedule} - {profile.base_role}):
            key = _model_key(profile.models[role])
            try:
                if key not in loaded:
                    loaded[key] = load_transformer(
                        profile,
                        role,
                        torch_dtype=dtype,
                        local_files_only=config.local_files_only,
                        like=single_model(base),
                    ).to(device)
                check_compatible(base, loaded[key], profile.base_role, role)
            except FlowBlendingError as exc:
                raise CalibrationError(f"{where}, role {role!r} (models.{role}): {exc}") from exc
            models[role] = loaded[key].eval()
        out.append(dataclasses.replace(item, models=models))
    return tuple(out)


# -- the schedules -----------------------------------------------------------------------------------------------


def schedule_digest(profile: Profile) -> str:
    """What determines a schedule's frames at the calibration setting: the pipeline, the segments and the models of
    the roles they run besides the base role (always ``--large``), as a short digest (the work-dir file name)."""
    used = sorted({s.model for s in profile.schedule} - {profile.base_role})
    models = {role: {k: v for k, v in profile.models[role].to_dict().items() if k != "parameters"} for role in used}
    identity = {
        "pipeline": profile.pipeline_class,
        "base": profile.base_role,
        "schedule": [s.to_dict() for s in profile.schedule],
        "models": models,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _calibration_profile(ctx: Context, schedule: tuple[Segment, ...], record: CalibrationRecord) -> Profile:
    """The profile the calibration writes for ``schedule`` (models, setting and measured cost of the pair)."""
    from .finalize import make_calibrated_profile

    work = ctx.work
    pair, first = work.read_json(work.pair), work.read_json(work.trajectory(ctx.units[0]))
    return make_calibrated_profile(ctx.config, pair, schedule, first, record)


def _rows(
    ctx: Context,
    schedule: tuple[Segment, ...],
    record: CalibrationRecord,
    compared: Sequence[ComparedProfile],
    small: Any,
) -> list[Row]:
    """Large-only, the calibrated schedule, then every compared one, in the order of the record (``small``: the
    pair's small transformer, which the calibrated schedule runs)."""
    pair_models = {"small": small}
    rows = [
        Row(LARGE_ONLY, LARGE_ONLY, None, _calibration_profile(ctx, large_only(), record), pair_models),
        Row(CALIBRATED, CALIBRATED, None, _calibration_profile(ctx, schedule, record), pair_models),
    ]
    rows += [Row(c.profile.name, COMPARED, c.argument, c.profile, c.models) for c in compared]
    return rows


def _plan(row: Row, num_steps: int) -> dict[str, Any]:
    """What the work dir records of a row before it runs: names, pattern, planned steps and the FLOPs ratio."""
    from flowblending.cost import schedule_cost

    profile = row.profile
    roles = run_roles(profile.schedule, num_steps)
    cost = schedule_cost(roles, profile.cost.flops_per_step, profile.cost.reference_role, num_steps=num_steps)
    return {
        "name": row.name,
        "kind": row.kind,
        "source": row.source,
        "digest": row.digest,
        "pattern": pattern_of(profile.schedule),
        "schedule": [s.to_dict() for s in profile.schedule],
        "nfe": len(roles),
        "flops_ratio": cost.flops_ratio,
    }


# -- compute -----------------------------------------------------------------------------------------------------


def compute_compare(ctx: Context, method: Method, compared: Sequence[ComparedProfile]) -> None:
    """Score every row on this rank's units into the work dir (skipping finished ones); every rank calls it."""
    decision = method.decide(ctx)
    sampler = ctx.sampler
    rows = _rows(ctx, decision.schedule, decision.record, compared, sampler.models["small"])
    if ctx.is_main:
        plans = [_plan(row, ctx.num_steps) for row in rows]
        ctx.work.write_json(ctx.work.compare, {"compare": list(ctx.config.compare), "rows": plans})
        _log_settings(ctx, compared)
    names = ", ".join(f"{r.name} ({pattern_of(r.profile.schedule)})" for r in rows)
    bar = ctx.bar(len(ctx.mine) * len(rows), f"compare {names}")
    for unit in ctx.mine:
        fresh = False
        for row in rows:  # large-only first: the others are scored against it
            if not ctx.work.compare_row(unit, row.digest).exists():
                try:
                    _score(ctx, method, opened(unit), row, rows[0].digest)
                except FlowBlendingError as exc:
                    raise CalibrationError(f"{unit.describe()}, --compare schedule {row.name}: {exc}") from exc
                fresh = True
                ctx.checkpoint("compare-row")
            bar.update(1)
        if fresh:
            ctx.unit_done()
    bar.close()
    ctx.wait()


def _log_settings(ctx: Context, compared: Sequence[ComparedProfile]) -> None:
    """Say where a compared profile's own setting differs from the calibration's, which its schedule runs at."""
    from flowblending.generate import setting_differences

    sampler = ctx.sampler
    kwargs = sampler.unit_kwargs(ctx.units[0])
    for item in compared:
        diffs = setting_differences(item.profile, kwargs, sampler.pipe.scheduler)
        if diffs:
            ctx.log(f"--compare {item.argument!r} runs at the calibration's setting, not its own: {', '.join(diffs)}")


def _generate(ctx: Context, unit: Unit, row: Row) -> tuple[torch.Tensor, Any]:
    """One video of ``row``'s schedule through the runtime's router and composed call, and the router's counters."""
    from flowblending.experts import install_transformer
    from flowblending.generate import composed_call
    from flowblending.loading import apply_profile

    sampler = ctx.sampler
    pipe = sampler.pipe
    install_transformer(pipe, sampler.models[sampler.base_role])  # the plain base model: apply_profile routes it
    apply_profile(pipe, row.profile, row.models)
    with composed_call(pipe, row.profile, sampler.unit_kwargs(unit)) as kwargs:
        frames = sampler.generate(unit, kwargs)
    return frames, pipe.transformer.counters


def _score(ctx: Context, method: Method, unit: Unit, row: Row, large_digest: str) -> None:
    """Generate (or reuse) one row's video of ``unit``, score it against large-only, store it in the work dir."""
    from .metrics import feature_similarity, frames_of

    work, n = ctx.work, ctx.num_steps
    dino = ctx.extractor("dino")
    late = ctx.extractor("fid") if ctx.config.reference else None
    reused = method.large_only_features(ctx, unit) if row.kind == LARGE_ONLY else None
    if reused is not None:
        features = reused.cpu()
        late_features = features if late is not None else None
        c = work.read_json(work.trajectory(unit))["calls_per_step"]
        counts = {"steps": {"large": n}, "calls": {"large": n * c}, "uncond_skipped": {}, "nfe": n}
    else:
        frames, counters = _generate(ctx, unit, row)
        flat = frames_of(frames)
        features = dino(flat).cpu()
        late_features = None if late is None else (features if ctx.shared_features else late(flat).cpu())
        counts = {
            "steps": dict(counters.steps),
            "calls": dict(counters.calls),
            "uncond_skipped": dict(counters.uncond_skipped),
            "nfe": int(counters.num_steps),
        }
    if row.kind == LARGE_ONLY:
        reference = features
    else:
        reference = work.load(work.require(work.compare_row(unit, large_digest), unit, "the --compare large-only run"))
        reference = reference["features"]
    result = {"features": features, "late_features": late_features, "reused": reused is not None, **counts}
    work.save(work.compare_row(unit, row.digest), {**result, "similarity": feature_similarity(features, reference)})


# -- the record --------------------------------------------------------------------------------------------------


def _per_video(values: Sequence[Mapping[str, Any]], key: str, name: str) -> Any:
    """One video's ``key`` (the same for every unit: the schedule fixes it), or the error that says it is not."""
    first = values[0][key]
    if any(v[key] != first for v in values[1:]):
        raise CalibrationError(
            f"--compare, schedule {name}: {key} differ between units ({first} and others); delete the compare-*.pt "
            "files of the work dir and run the calibration again."
        )
    return first


def compare_record(ctx: Context, schedule: tuple[Segment, ...], record: CalibrationRecord) -> CompareRecord:
    """The comparison of every row over all units, from the work dir only (``schedule``: the method's decision)."""
    from .metrics import choose_late_metric, late_metric_curves

    config, work = ctx.config, ctx.work
    manifest = work.read_json(work.require(work.compare, None, "the --compare results"))
    calibrated = schedule_digest(_calibration_profile(ctx, schedule, record))
    kinds = {row["kind"]: row["digest"] for row in manifest["rows"] if row["kind"] != COMPARED}
    if manifest["compare"] != list(config.compare) or kinds.get(CALIBRATED) != calibrated:
        raise CalibrationError(
            f"the --compare results in {work.root} are for --compare {manifest['compare']} and another calibrated "
            "schedule; run the calibration again with the same arguments to compute them."
        )
    per_row = [
        [work.load(work.require(work.compare_row(u, row["digest"]), u, f"--compare {row['name']}")) for u in ctx.units]
        for row in manifest["rows"]
    ]
    similarity = stat([[unit_rows[i]["similarity"] for unit_rows in per_row] for i in range(len(ctx.units))])
    metric, curves, subset, ref, frames = None, {}, None, None, 0
    if config.reference:
        ref = ctx.reference_state()
        candidates = [[u["late_features"] for u in rows] for rows in per_row]
        frames = sum(f.shape[0] for f in candidates[0])
        metric = choose_late_metric(config.late_metric, frames, candidates[0][0].shape[1])
        extractor = ctx.extractor("fid")
        curves = late_metric_curves(metric, extractor, ref, candidates, subset_size=config.kid_subset_size)
        subset = curves["kid"][2] if metric == "kid" else None
    rows, calls, seen = [], {}, set()
    for i, (plan, results) in enumerate(zip(manifest["rows"], per_row, strict=True)):
        video = {key: _per_video(results, key, plan["name"]) for key in ("nfe", "steps", "calls", "uncond_skipped")}
        reused = bool(results[0]["reused"])
        if not reused and plan["digest"] not in seen:  # a schedule listed twice ran once
            for role, count in video["calls"].items():
                calls[role] = calls.get(role, 0) + count * len(ctx.units)
        seen.add(plan["digest"])
        late, spread = (curves[metric][0][i], curves[metric][1]) if metric else (None, None)
        rows.append(
            CompareRow(
                name=plan["name"],
                kind=plan["kind"],
                source=plan["source"],
                pattern=plan["pattern"],
                schedule=tuple(plan["schedule"]),
                flops_ratio=float(plan["flops_ratio"]),
                similarity=float(similarity.mean[i]),
                similarity_std=float(similarity.std[i]),
                late=late,
                late_std=spread[i] if spread is not None else None,
                others={name: values[0][i] for name, values in curves.items() if name != metric},
                reused=reused,
                **video,
            )
        )
    return CompareRecord(
        rows=tuple(rows),
        num_steps=ctx.num_steps,
        units=len(ctx.units),
        feature=config.feature_model,
        calls=dict(sorted(calls.items())),
        metric=metric,
        requested=config.late_metric,
        subset_size=subset,
        late_feature=str(getattr(ctx.extractor("fid"), "name", "")) if metric else None,
        reference_frames=int(ref["count"]) if ref else 0,
        generated_frames=int(frames),
    )
