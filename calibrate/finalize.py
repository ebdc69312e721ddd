"""Finishing a calibration from its work directory: aggregate, choose, write the profile, report and summary.

Everything here reads only the work directory (``config.json``, ``pair.json``, per-unit results), so rank 0
of a multi-process run, a single process and ``flowblending calibrate --merge DIR`` produce the same profile.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowblending.schedule import Segment

from .aggregate import divergence_block, early_block, early_decision, large_only, late_block, lsl
from .config import CalibrationConfig, CalibrationError
from .protocol import Unit, naive_calls, shared_calls

Log = Callable[[str], None]


@dataclass(frozen=True)
class CalibrationOutcome:
    """What a calibration produced."""

    profile: Any
    profile_path: Path | None
    report_path: Path | None
    calibration: dict
    summary: str


def units_of(config: CalibrationConfig) -> list[Unit]:
    """The (prompt, seed) units in a fixed order (images opened lazily by the passes)."""
    return [
        Unit(i, p, s, config.images[i] if config.images else None)
        for i, p in enumerate(config.prompts)
        for s in config.seeds
    ]


def grid_steps(spacing: float, num_steps: int, *, include_zero: bool) -> list[int]:
    """Candidate steps every ``spacing`` of the process (0.1 -> 0, 10%, 20%, ... of the steps), without N."""
    from flowblending.schedule import first_step

    count = max(1, round(1 / spacing))
    steps = {first_step(i / count, num_steps) for i in range(0 if include_zero else 1, count)}
    return sorted(s for s in steps if 0 <= s < num_steps and (include_zero or s > 0))


def sum_calls(parts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for role, n in part.items():
            total[role] = total.get(role, 0) + n
    return total


def read_pass1(work: Path, units: list[Unit]) -> dict[str, dict]:
    """Every unit's pass-1 results; a missing one names the unit (a rank has not finished)."""
    out = {}
    for unit in units:
        path = work / "units" / unit.key / "pass1.json"
        if not path.exists():
            raise CalibrationError(
                f"pass 1 of prompt {unit.index + 1}, seed {unit.seed} is not in {work}; run the calibration (or "
                "the launch) again to finish it."
            )
        out[unit.key] = json.loads(path.read_text(encoding="utf-8"))
    return out


def late_candidates(config: CalibrationConfig, n: int, e_step: int) -> list[int]:
    """Re-entry steps of the late sweep: e (large-only), the interior grid points, and n (L-S-S)."""
    return [e_step, *[r for r in grid_steps(config.late_grid, n, include_zero=False) if e_step < r < n], n]


def finalize(
    config: CalibrationConfig,
    work: Path,
    *,
    output: str | os.PathLike | None = None,
    report_dir: str | os.PathLike | None = None,
    fid_extractor: Any = None,
    log: Log = print,
    started: float | None = None,
    this_run: dict[str, int] | None = None,
) -> CalibrationOutcome:
    """Aggregate the work directory's results, choose the schedule, write profile and report."""
    started = time.perf_counter() if started is None else started
    pair = json.loads((work / "pair.json").read_text(encoding="utf-8"))
    units = units_of(config)
    n = pair["num_steps"]
    full = config.method == "full"
    pass1 = read_pass1(work, units)
    first = pass1[units[0].key]
    calls_per_step = first["calls_per_step"]
    early_steps = grid_steps(config.early_grid, n, include_zero=True) if full else []
    calibration: dict[str, Any] = {
        "method": config.method,
        "num_steps": n,
        "num_prompts": len(config.prompts),
        "seeds": list(config.seeds),
        "feature_model": config.feature_model,
        "notes": list(config.notes),
    }
    div = divergence_block(pass1, units, n, first["sigmas"])
    calibration["divergence"] = div
    failed: list[str] = []
    early, late = None, None
    late_parts: list[dict[str, int]] = []
    proxy_e, proxy_l = div["proxy_boundaries"]
    if config.method in ("sweep", "search"):
        pass  # the schedule comes from the sweep/search below
    elif not full:
        failed += [f"divergence: {p}" for p in div["premise"]]
        schedule = lsl(proxy_e, proxy_l) if not div["premise"] else large_only()
    else:
        early = early_block(pass1, units, early_steps, n, config)
        calibration["early"] = early
        e_step, notes = early_decision(config, early, n)
        calibration["notes"] += notes
        if config.early_boundary is None:
            failed += [f"early: {p}" for p in early["premise"]]
        if e_step is None:
            schedule = large_only()
        elif not config.reference:
            late_frac = max(proxy_l, e_step / n)
            late = {
                "source": "divergence",
                "x": None,
                "fid": None,
                "premise": [],
                "feature": None,
                "chosen": {"index": None, "x": 100 * late_frac, "fid": None},
                "reference_frames": 0,
            }
            schedule = lsl(e_step / n, late_frac)
            calibration["notes"].append("no --reference: the late boundary comes from the divergence curve.")
        else:
            if fid_extractor is None:
                fid_extractor = fid_extractor_for(config)
            steps = late_candidates(config, n, e_step)
            per_unit = []
            for unit in units:
                path = work / "units" / unit.key / f"pass2-e{e_step}.pt"
                if not path.exists():
                    raise CalibrationError(
                        f"pass 2 of prompt {unit.index + 1}, seed {unit.seed} is not in {work}; run the "
                        "calibration again to finish it."
                    )
                saved = torch.load(path)
                per_unit.append(saved["features"])
                late_parts.append(saved["calls"])
            ref = torch.load(reference_cache(work, fid_extractor))
            late = late_block(steps, n, per_unit, ref["state"], fid_extractor, ref["count"])
            failed += [f"late: {p}" for p in late["premise"]]
            schedule = lsl(e_step / n, late["chosen"]["x"] / 100)
        calibration["late"] = late
    search_calls: dict[str, int] | None = None
    if config.method in ("sweep", "search"):
        schedule, search_calls = _search_result(config, work, units, n, first, fid_extractor, calibration)
    calibration["premise"] = {"holds": not failed, "failed": failed}
    e_count = late["steps"][0] if late is not None and late.get("source") == "fid" else None
    late_steps = grid_steps(config.late_grid, n, include_zero=False)
    naive = {r: v * len(units) for r, v in naive_calls(n, calls_per_step, early_steps, e_count, late_steps).items()}
    formula = {r: v * len(units) for r, v in shared_calls(n, calls_per_step, early_steps, e_count, late_steps).items()}
    if search_calls is not None:
        late_parts.append(search_calls)
        if config.method == "sweep":  # from scratch: every schedule, plus the divergence pass on its own
            scratch = calibration["sweep"]["cost"]["from_scratch_calls"]
            naive = {r: scratch.get(r, 0) + n * calls_per_step * len(units) for r in ("large", "small")}
    calibration["calls"] = {
        "computed": sum_calls([pass1[u.key]["calls"] for u in units] + late_parts),
        "naive": naive,
        "formula": formula,
        "calls_per_step": calls_per_step,
    }
    profile = make_calibrated_profile(config, pair, schedule, first, calibration)
    profile_path = None
    if output is not None:
        from flowblending.profile import save_profile

        profile_path = save_profile(profile, output)
    report_path = None
    if report_dir is not None:
        from .report import write_report

        samples = report_samples(work, units, config, schedule, n)
        report_path = write_report(calibration, report_dir, profile=profile.to_dict(), samples=samples)
    summary = summary_text(profile, calibration, profile_path, report_path, time.perf_counter() - started, this_run)
    log(summary)
    return CalibrationOutcome(profile, profile_path, report_path, calibration, summary)


def fid_extractor_for(config: CalibrationConfig, device: str | None = None) -> Any:
    """The FID feature extractor of a configuration (the similarity feature model unless --fid-features)."""
    from .features import load_feature_extractor

    spec = config.fid_features or config.feature_model
    return load_feature_extractor(spec, device=device, local_files_only=config.local_files_only)


def reference_cache(work: Path, fid_extractor: Any) -> Path:
    name = str(getattr(fid_extractor, "name", "features")).replace("/", "_").replace(os.sep, "_")
    return work / f"reference-{name[-80:]}.pt"


def merge(
    work_dir: str | os.PathLike,
    *,
    output: str | os.PathLike | None = None,
    report_dir: str | os.PathLike | None = None,
    log: Log = print,
) -> CalibrationOutcome:
    """Rebuild the profile (and report) from a work directory's finished results; loads no diffusion model."""
    work = Path(work_dir)
    run = work / "run.json"
    if not run.exists():
        raise CalibrationError(
            f"{work} is not a calibration work directory (no run.json); give the --work-dir of a calibration."
        )
    config = CalibrationConfig.from_json(json.loads(run.read_text(encoding="utf-8")))
    return finalize(config, work, output=output, report_dir=report_dir, log=log)


def make_calibrated_profile(
    config: CalibrationConfig, pair: dict[str, Any], schedule: tuple[Segment, ...], first: dict, calibration: dict
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
        calibration=calibration,
        provenance={
            "source": "flowblending calibrate",
            "prompt_set_sha256": config.prompt_set_sha256,
            "num_prompts": len(config.prompts),
            "seeds": list(config.seeds),
        },
        sigmas=first["sigmas"],
        timesteps=first["timesteps"],
    )


def report_samples(
    work: Path, units: list[Unit], config: CalibrationConfig, schedule: tuple[Segment, ...], n: int
) -> dict[str, dict[str, np.ndarray]]:
    """Frames of large-only, the chosen schedule, L-S-S and small-only for the first units (report GIFs)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    early = round(schedule[1].start * n) if len(schedule) > 1 else None
    late = round(schedule[2].start * n) if len(schedule) > 2 else n
    for unit in units[: config.samples]:
        udir = work / "units" / unit.key
        p1 = udir / "samples-pass1.npz"
        if not p1.exists():
            continue
        videos: dict[str, np.ndarray] = {}
        with np.load(p1) as d1:
            videos["large-only"] = d1["large"].astype(np.float32) / 255
            small_only = d1["small"].astype(np.float32) / 255 if "small" in d1 else None
        p2 = udir / f"samples-e{early}.npz"
        if early is not None and p2.exists():
            with np.load(p2) as d2:
                if f"r{late}" in d2 and late < n:
                    videos["chosen L-S-L"] = d2[f"r{late}"].astype(np.float32) / 255
                if f"r{n}" in d2:
                    videos["L-S-S"] = d2[f"r{n}"].astype(np.float32) / 255
        if small_only is not None:
            videos["small-only"] = small_only
        out[f"{unit.prompt} (seed {unit.seed})"] = videos
    return out


def summary_text(
    profile: Any,
    calibration: dict,
    profile_path: Path | None,
    report_path: Path | None,
    seconds: float,
    this_run: dict[str, int] | None = None,
) -> str:
    from flowblending.schedule import pattern_of

    lines = ["", "calibration summary"]
    segs = ", ".join(f"{s.model} [{s.start:g}, {s.end:g})" for s in profile.schedule)
    lines.append(f"  schedule {pattern_of(profile.schedule)}: {segs}")
    early, late = calibration.get("early"), calibration.get("late")
    if early:
        c = early["chosen"]
        lines.append(
            f"  early boundary (Algorithm 1, alpha {early['alpha']}): small model from {c['x']:.1f}% "
            f"(DINO similarity {c['y']:.4f})"
        )
    if late:
        c = late["chosen"]
        src = "FID minimum" if late["source"] == "fid" else "divergence curve"
        fid = f" (FID {c['fid']:.4f})" if c.get("fid") is not None else ""
        lines.append(f"  late boundary ({src}): large model again from {c['x']:.1f}%{fid}")
    pe, pl = calibration["divergence"]["proxy_boundaries"]
    lines.append(f"  divergence proxy boundaries: {100 * pe:.1f}% / {100 * pl:.1f}%")
    cost = profile.cost
    lines.append(f"  predicted speed-up {cost.predicted_speedup:.2f}x ({cost.flops_ratio:.1%} of large-only FLOPs)")
    calls = calibration["calls"]
    for role in ("large", "small"):
        done, naive = calls["computed"].get(role, 0), calls["naive"].get(role, 0)
        ratio = f"{naive / done:.2f}x fewer" if done else "none computed"
        lines.append(f"  {role} transformer calls: {done} computed vs {naive} naive sweep ({ratio})")
    if this_run is not None and this_run != calls["computed"]:
        resumed = ", ".join(f"{r} {n}" for r, n in sorted(this_run.items())) or "none"
        lines.append(f"  computed in this run (the rest was resumed from the work dir): {resumed}")
    premise = calibration["premise"]
    if calibration.get("method") in ("sweep", "search"):
        lines.append("  premise: not tested by this method (the schedule is the cheapest within tolerance)")
        lines += [f"  note: {note}" for note in calibration.get("notes", []) if "starts with the small" in note]
    elif premise["holds"]:
        lines.append("  premise: holds (early knee above the similarity floor, interior late minimum)")
    else:
        lines.append("  premise: DOES NOT HOLD for this pair:")
        lines += [f"    - {f}" for f in premise["failed"]]
    if profile_path:
        lines.append(f"  profile: {profile_path}")
    if report_path:
        lines.append(f"  report:  {report_path}")
    lines.append(f"  wall time {seconds:.1f} s")
    return "\n".join(lines)


def _search_result(
    config: CalibrationConfig, work: Path, units: list[Unit], n: int, first: dict, fid_extractor: Any, calibration: dict
) -> tuple[tuple[Segment, ...], dict[str, int]]:
    """The sweep/search block of the calibration, the chosen schedule, and the transformer calls it computed."""
    from flowblending.schedule import segments_from_pattern

    from .search import sweep_block

    k = config.segments
    ref = None
    if config.reference:
        if fid_extractor is None:
            fid_extractor = fid_extractor_for(config)
        ref = torch.load(reference_cache(work, fid_extractor))
    if config.method == "sweep":
        per_unit = []
        for unit in units:
            path = work / "units" / unit.key / f"sweep-K{k}.pt"
            if not path.exists():
                raise CalibrationError(
                    f"the sweep of prompt {unit.index + 1}, seed {unit.seed} is not in {work}; "
                    "run the calibration again to finish it."
                )
            per_unit.append(torch.load(path))
        block = sweep_block(
            per_unit,
            n,
            first["flops_per_step"],
            config.tolerance,
            ref["state"] if ref else None,
            fid_extractor if ref else None,
            ref["count"] if ref else 0,
        )
        pattern = block["chosen"]["pattern"]
    else:
        path = work / f"search-K{k}-B{config.beam_width}.json"
        if not path.exists():
            raise CalibrationError(f"the beam search result is not in {work}; run the calibration again.")
        block = json.loads(path.read_text(encoding="utf-8"))
        pattern = block["chosen"]["pattern"]
    calibration[config.method] = block
    if pattern.startswith("S"):
        calibration["notes"].append(
            f"the chosen schedule {pattern} starts with the small model: the paper's stage structure (large model "
            "first) does not hold for this pair at this tolerance."
        )
    return segments_from_pattern(pattern), dict(block["cost"]["calls"])
