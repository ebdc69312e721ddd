"""Finishing a calibration from its work directory: the profile, the report and the summary of a decision.

Everything here reads only the work directory (``run.json``, ``pair.json`` and what the method stored), so rank 0
of a multi-process run, a single process and ``flowblending calibrate --merge DIR`` produce the same profile.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowblending.schedule import Segment

from .boundaries import FLOOR_NOTE_PREFIX
from .config import CalibrationConfig
from .methods import get_method
from .methods.base import Context, Decision
from .record import CalibrationRecord, CompareRecord
from .sampling import units_of
from .workdir import WorkDir

Log = Callable[[str], None]

__all__ = ["CalibrationOutcome", "compare_lines", "finalize", "make_calibrated_profile", "merge", "summary_text"]


@dataclass(frozen=True)
class CalibrationOutcome:
    """What a calibration produced: the profile (and where it was written), the report, the record, a summary."""

    profile: Any
    profile_path: Path | None
    report_path: Path | None
    record: CalibrationRecord
    summary: str

    @property
    def calibration(self) -> dict[str, Any]:
        """The profile's calibration block as JSON data (``record.to_dict()``)."""
        return self.record.to_dict()


def finalize(
    ctx: Context,
    *,
    output: str | os.PathLike | None = None,
    report_dir: str | os.PathLike | None = None,
    started: float | None = None,
    this_run: Mapping[str, int] | None = None,
) -> CalibrationOutcome:
    """Decide with the context's method, then write the profile and the report and log the summary."""
    started = time.perf_counter() if started is None else started
    decision = get_method(ctx.config.method).decide(ctx)
    if ctx.config.compare:  # the comparison's results join the record; the decision stays the method's
        from .compare import compare_record

        compare = compare_record(ctx, decision.schedule, decision.record)
        decision = dataclasses.replace(decision, record=dataclasses.replace(decision.record, compare=compare))
    ctx.checkpoint("finalize")
    pair = ctx.work.read_json(ctx.work.pair)
    first = ctx.work.read_json(ctx.work.trajectory(ctx.units[0]))
    profile = make_calibrated_profile(ctx.config, pair, decision.schedule, first, decision.record)
    profile_path = None
    if output is not None:
        from flowblending.profile import save_profile

        profile_path = save_profile(profile, output)
    ctx.checkpoint("report")
    report_path = None
    if report_dir is not None:
        from .report import write_report

        report_path = write_report(decision.record, report_dir, profile=profile.to_dict(), samples=decision.samples)
    seconds = time.perf_counter() - started
    summary = summary_text(profile, decision, profile_path, report_path, seconds, this_run)
    ctx.log(summary)
    return CalibrationOutcome(profile, profile_path, report_path, decision.record, summary)


def merge(
    work_dir: str | os.PathLike,
    *,
    output: str | os.PathLike | None = None,
    report_dir: str | os.PathLike | None = None,
    log: Log = print,
) -> CalibrationOutcome:
    """Rebuild the profile (and report) from a work directory's finished results; loads no diffusion model."""
    work = WorkDir(work_dir)
    work.check_readable()
    config = CalibrationConfig.from_json(work.read_json(work.run))
    pair = work.read_json(work.pair)
    ctx = Context(config, work, pair["num_steps"], units_of(config.prompts, config.seeds, config.images), log=log)
    return finalize(ctx, output=output, report_dir=report_dir)


def make_calibrated_profile(
    config: CalibrationConfig,
    pair: dict[str, Any],
    schedule: tuple[Segment, ...],
    first: dict,
    record: CalibrationRecord,
) -> Any:
    """The profile of a calibration: setting and models from ``pair.json``, boundaries at the recorded sigmas."""
    from flowblending.compose import make_profile
    from flowblending.profile import ModelSpec, SchedulerSpec, Setting

    kwargs = pair["call_kwargs"]
    setting = Setting(
        num_inference_steps=pair["num_steps"],
        scheduler=SchedulerSpec(pair["scheduler_class"], pair["flow_shift"], pair["scheduler_config"]),
        guidance_scale=kwargs.get("guidance_scale"),
        height=kwargs.get("height"),
        width=kwargs.get("width"),
        num_frames=kwargs.get("num_frames"),
        max_sequence_length=kwargs.get("max_sequence_length"),
    )
    models = {
        "large": ModelSpec(
            config.large, config.large_revision, "transformer", pair["transformer_class"], pair["parameters"]["large"]
        ),
        "small": ModelSpec(
            config.small,
            config.small_revision,
            pair["small_subfolder"],
            pair["transformer_class"],
            pair["parameters"]["small"],
        ),
    }
    return make_profile(
        name=config.name,
        description=f"Calibrated by flowblending on {len(config.prompts)} prompt(s) x {len(config.seeds)} seed(s) "
        f"({config.method} method).",
        pipeline_class=pair["pipeline_class"],
        image_to_video=config.images is not None,
        models=models,
        setting=setting,
        schedule=schedule,
        flops_per_step=first["flops_per_step"],
        cost_source="measured: torch.utils.flop_counter on the meta device, one denoising step (all CFG calls) "
        "at the calibration setting",
        calibration=record.to_dict(),
        provenance={
            "source": "flowblending calibrate",
            "prompt_set_sha256": config.prompt_set_sha256,
            "num_prompts": len(config.prompts),
            "seeds": list(config.seeds),
        },
        sigmas=first["sigmas"],
        timesteps=first["timesteps"],
    )


def compare_lines(compare: CompareRecord) -> list[str]:
    """One summary line per ``--compare`` row: pattern, NFE, FLOPs ratio, similarity and late metric."""
    metric = (compare.metric or "").upper()
    lines = [f"  compared on {compare.units} unit(s) at {compare.num_steps} base steps (the decision is the method's):"]
    for row in compare.rows:
        late = f", {metric} {row.late:.4g}" if row.late is not None else ""
        lines.append(
            f"    {row.name} ({row.pattern}): NFE {row.nfe}, {row.flops_ratio:.1%} of large-only FLOPs, "
            f"similarity {row.similarity:.4f} ± {row.similarity_std:.4f}{late}"
        )
    return lines


def summary_text(
    profile: Any,
    decision: Decision,
    profile_path: Path | None,
    report_path: Path | None,
    seconds: float,
    this_run: Mapping[str, int] | None = None,
) -> str:
    """The lines a calibration prints at the end: schedule, boundaries, cost, calls, premise, files."""
    from flowblending.schedule import pattern_of

    record = decision.record
    lines = ["", "calibration summary"]
    segs = ", ".join(f"{s.model} [{s.start:g}, {s.end:g})" for s in profile.schedule)
    lines.append(f"  schedule {pattern_of(profile.schedule)}: {segs}")
    fixed = next((note for note in record.notes if note.startswith("early boundary fixed")), None)
    if fixed is not None:
        lines.append(f"  {fixed}")
    elif record.early is not None:
        lines.append(f"  early boundary (Algorithm 1, alpha {record.early.alpha}): {record.early.choice_text()}")
        stable = record.early.stability_text(record.num_prompts * len(record.seeds))
        if stable is not None:
            lines.append(f"  early boundary stability: {stable}")
        lines += [f"  note: {note}" for note in record.notes if note.startswith(FLOOR_NOTE_PREFIX)]
    if record.late is not None:
        lines.append(f"  late boundary {record.late.choice_text()}")
    pe, pl = record.divergence.proxy_boundaries
    lines.append(f"  divergence proxy boundaries: {100 * pe:.1f}% / {100 * pl:.1f}%")
    cost = profile.cost
    lines.append(f"  predicted speed-up {cost.predicted_speedup:.2f}x ({cost.flops_ratio:.1%} of large-only FLOPs)")
    calls = record.calls
    for role in ("large", "small"):
        done, naive = calls.computed.get(role, 0), calls.naive.get(role, 0)
        ratio = f"{naive / done:.2f}x fewer" if done else "none computed"
        lines.append(f"  {role} transformer calls: {done} computed vs {naive} naive ({ratio})")
    if this_run is not None and dict(this_run) != dict(calls.computed):
        resumed = ", ".join(f"{r} {n}" for r, n in sorted(this_run.items())) or "none"
        lines.append(f"  computed in this run (the rest was resumed from the work dir): {resumed}")
    if record.compare is not None:
        lines += compare_lines(record.compare)
    premise = record.premise
    if not premise.tested:
        lines.append("  premise: not tested by this method (the schedule is the cheapest within tolerance)")
        lines += [f"  note: {note}" for note in record.notes if "starts with the small" in note]
    elif premise.holds:
        late = "interior late minimum"
        if record.late is not None and record.late.rule == "parity":
            late = "a re-entry reaches large-only's late metric, L-S-S does not"
        lines.append(f"  premise: holds (early boundary reaches the similarity floor, {late})")
    else:
        lines.append("  premise: DOES NOT HOLD for this pair:")
        lines += [f"    - {f}" for f in premise.failed]
    if profile_path:
        lines.append(f"  profile: {profile_path}")
    if report_path:
        lines.append(f"  report:  {report_path}")
    lines.append(f"  wall time {seconds:.1f} s")
    return "\n".join(lines)
