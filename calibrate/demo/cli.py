"""``flowblending demo``: the whole loop on the shipped demo pair, offline, on a CPU, in minutes.

1. calibrate the demo pair (the same ``flowblending calibrate`` code path, ``package://`` model ids) on demo
   prompts with the synthetic distribution as the FID reference set -> ``demo.json`` and ``report/``;
2. semantic accuracy by the demo judge (colour from pixels, shape by its classifier, direction by the centroid track)
   of large-only, the calibrated schedule, L-S-S, S-L-L and small-only;
3. wall-time speed-up of the calibrated schedule against large-only on this machine, next to the FLOP model;
4. videos of the calibrated schedule (GIFs).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..boundaries import DEFAULT_LATE_RULE, LATE_RULES

if TYPE_CHECKING:
    from ..config import CalibrationConfig

PACKAGE = "package://calibrate.demo/weights"

# The demo's calibration setting, shared by ``flowblending demo`` and the scripts that calibrate the other methods
# on it: how many of the 48 prompts, and the real frames of the FID/KID reference set (count, generation seed).
CALIBRATION_PROMPTS = 16
REFERENCE_FRAMES = 1024
REFERENCE_SEED = 7


def demo_settings() -> dict[str, Any]:
    """Generation settings of the shipped pair (steps, guidance, max_sequence_length) from training.json."""
    from . import TRAINING_RECORD

    if not TRAINING_RECORD.exists():
        from flowblending.errors import FlowBlendingError

        raise FlowBlendingError(
            f"the demo weights are missing ({TRAINING_RECORD.parent}); reinstall flowblending or rebuild them with "
            "python -m scripts.train_demo --output calibrate/demo/weights (from the repository root)."
        )
    return json.loads(TRAINING_RECORD.read_text(encoding="utf-8"))["generation_settings"]


def write_reference(folder: Path, count: int, seed: int) -> Path:
    """PNG frames of real samples of the demo distribution (the FID reference set)."""
    import numpy as np
    from PIL import Image

    from .data import reference_frames

    folder.mkdir(parents=True, exist_ok=True)
    frames = reference_frames(count, seed)  # (N, 3, H, W) in [0, 1]
    for i, frame in enumerate(frames):
        arr = (frame.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(folder / f"real-{i:05d}.png")
    return folder


def demo_config(
    reference: Path,
    prompts: tuple[str, ...],
    seeds: tuple[int, ...] = (0,),
    *,
    late_rule: str = DEFAULT_LATE_RULE,
    method: str = "full",
    segments: int = 8,
) -> CalibrationConfig:
    """The CalibrationConfig of ``flowblending demo`` on the shipped pair (``method``/``segments`` for the others)."""
    from ..config import CalibrationConfig

    settings = demo_settings()
    return CalibrationConfig(
        large=f"{PACKAGE}/pipeline",
        small=f"{PACKAGE}/small_transformer",
        small_subfolder=None,
        prompts=prompts,
        seeds=seeds,
        reference=str(reference),
        num_inference_steps=int(settings["num_inference_steps"]),
        guidance_scale=float(settings["guidance_scale"]),
        max_sequence_length=int(settings["max_sequence_length"]),
        height=int(settings["height"]),
        width=int(settings["width"]),
        num_frames=int(settings["num_frames"]),
        feature_model=f"{PACKAGE}/feature_model",
        name="demo",
        samples=2,
        late_rule=late_rule,
        method=method,
        segments=segments,
        local_files_only=True,
        notes=(
            "Demo pair: similarities and FIDs use the demo feature model (a tiny DINOv2 trained on the synthetic "
            "frames, shipped in calibrate/demo/weights/feature_model), not facebook/dinov2-small.",
            "FID reference: real samples of the synthetic distribution (calibrate.demo.data.reference_frames).",
        ),
    )


def demo_prompts(count: int) -> tuple[str, ...]:
    """The ``count`` calibration prompts of the demo: every (48 // count)-th of the 48 demo prompts."""
    from .data import PROMPTS

    step = max(1, len(PROMPTS) // count)
    return tuple(PROMPTS[::step][:count])


def other_rule_schedule(profile: Any) -> tuple[str, tuple] | None:
    """The L-S-L the other ``--late-rule`` reads off the same late curve (no margin); None when it adds nothing.

    None without a measured late curve or early boundary, and when the other rule picks the calibrated point or
    large-only.
    """
    from ..boundaries import LATE_RULES
    from ..methods.base import lsl

    late = (profile.calibration or {}).get("late") or {}
    values, x = late.get(late.get("metric", "fid")), late.get("x")
    if not values or not x or len(profile.schedule) < 2 or profile.schedule[1].model != "small":
        return None
    rule = "parity" if late.get("rule", "minimum") == "minimum" else "minimum"
    k, xk, _ = LATE_RULES[rule].find(x, values)
    if k == 0 or k == late["chosen"]["index"]:
        return None
    early, again = profile.schedule[1].start, xk / 100
    return f"L-S-L ({rule} rule: {early:g}, {again:g})", lsl(early, again)


def flops_ratio(profile: Any, schedule: tuple) -> float:
    """FLOPs of ``schedule`` relative to large-only at the profile's setting (its measured FLOPs per step)."""
    from flowblending.cost import schedule_cost
    from flowblending.schedule import run_roles

    n = profile.setting.num_inference_steps
    return schedule_cost(run_roles(schedule, n), profile.cost.flops_per_step, num_steps=n).flops_ratio


def schedules_for(profile: Any) -> dict[str, tuple]:
    """Large-only, the calibrated schedule (and the other late rule's), L-S-S and S-L-L at the calibrated early
    boundary, the divergence proxy's (or the paper's) L-S-L, small-only."""
    from flowblending.schedule import Segment, pattern_of

    out: dict[str, tuple] = {"large-only": (Segment("large", 0.0, 1.0),)}
    out[f"calibrated {pattern_of(profile.schedule)}"] = tuple(profile.schedule)
    other = other_rule_schedule(profile)
    if other is not None:
        out[other[0]] = other[1]
    proxy = (profile.calibration or {}).get("divergence", {}).get("proxy_boundaries") or [0.4, 0.8]
    early = profile.schedule[1].start if len(profile.schedule) > 1 else proxy[0]
    out["L-S-S"] = (Segment("large", 0.0, early), Segment("small", early, 1.0))
    out["S-L-L"] = (Segment("small", 0.0, early), Segment("large", early, 1.0))
    proxy = (profile.calibration or {}).get("divergence", {}).get("proxy_boundaries")
    label = "L-S-L (divergence proxy)"
    if not (proxy and 0 < proxy[0] < proxy[1] < 1):
        proxy, label = [0.4, 0.8], "L-S-L (paper's 0.4, 0.8)"
    out[label] = (
        Segment("large", 0.0, proxy[0]),
        Segment("small", proxy[0], proxy[1]),
        Segment("large", proxy[1], 1.0),
    )
    out["small-only"] = (Segment("small", 0.0, 1.0),)
    return out


def run_demo(
    output_dir: Path,
    *,
    prompts: int = CALIBRATION_PROMPTS,
    seeds: tuple[int, ...] = (0,),
    eval_prompts: int = 48,
    timing_repeats: int = 3,
    reference_frames: int = REFERENCE_FRAMES,
    late_rule: str = DEFAULT_LATE_RULE,
    log: Any = click.echo,
    progress: bool = True,
) -> dict[str, Any]:
    """The demo loop; returns the measured results (also written to ``demo-results.json``)."""
    import torch

    import flowblending
    from flowblending.schedule import pattern_of
    from flowblending.timing import speedup_report, time_schedules

    from ..runner import calibrate
    from .data import PROMPTS
    from .evaluate import generate, semantic_accuracy
    from .judge import load_shape_classifier

    torch.set_flush_denormal(True)
    started = time.perf_counter()
    settings = demo_settings()
    output_dir.mkdir(parents=True, exist_ok=True)
    chosen = demo_prompts(prompts)
    log(
        f"[1/4] calibrating the demo pair on {len(chosen)} prompts x {len(seeds)} seed(s) "
        f"({settings['num_inference_steps']} steps)"
    )
    reference = write_reference(output_dir / "reference", reference_frames, seed=REFERENCE_SEED)
    config = demo_config(reference, chosen, seeds, late_rule=late_rule)
    outcome = calibrate(
        config,
        output=output_dir / "demo.json",
        report_dir=output_dir / "report",
        work_dir=output_dir / "work",
        log=log,
        progress=progress,
    )
    profile = outcome.profile

    log(f"[2/4] semantic accuracy on {eval_prompts} prompts per schedule")
    pipe = flowblending.load_pipeline(profile, roles=tuple(profile.models))
    pipe.set_progress_bar_config(disable=True)
    judge = load_shape_classifier()
    eval_set = (
        list(PROMPTS[:eval_prompts])
        if eval_prompts <= len(PROMPTS)
        else [PROMPTS[i % len(PROMPTS)] for i in range(eval_prompts)]
    )
    accuracy: dict[str, dict[str, float]] = {}
    videos: dict[str, Any] = {}
    for label, schedule in schedules_for(profile).items():
        flowblending.apply_profile(pipe, profile, schedule=schedule)
        vids = generate(
            pipe,
            eval_set,
            seed=1234,
            guidance_scale=float(settings["guidance_scale"]),
            num_inference_steps=profile.setting.num_inference_steps,
            max_sequence_length=int(settings["max_sequence_length"]),
        )
        accuracy[label] = {**semantic_accuracy(vids, eval_set, judge), "flops": flops_ratio(profile, schedule)}
        videos[label] = vids
        acc = accuracy[label]
        log(
            f"    {label:<30} all correct {acc['all']:.3f} (colour {acc['colour']:.3f}, shape {acc['shape']:.3f}, "
            f"direction {acc['direction']:.3f}; detail {acc['detail']:.3f}, size {acc['size']:.3f}; "
            f"FLOPs {acc['flops']:.3f})"
        )

    log(f"[3/4] wall time on this machine ({timing_repeats} interleaved repeats)")
    calibrated = next(k for k in schedules_for(profile) if k.startswith("calibrated"))
    proxy_label = next(k for k in schedules_for(profile) if k.startswith("L-S-L ("))
    blended_label = calibrated if any(seg.model == "small" for seg in profile.schedule) else proxy_label
    timed = {k: v for k, v in schedules_for(profile).items() if k in ("large-only", "small-only", blended_label)}
    timings = time_schedules(pipe, profile, timed, eval_set[:4], repeats=timing_repeats, output_type="pt")
    rep = speedup_report(timings["large-only"], timings["small-only"], timings[blended_label])
    for label, t in timings.items():
        log(f"    {label:<22} {t.seconds * 1000:8.1f} ms / video")

    log("[4/4] videos")
    from flowblending.video import save_video

    from ..report import write_contact_sheet

    rows = [k for k in videos if not k.startswith("S-L-L")]  # large-only, calibrated(, other rule), L-S-S, ...
    sheet = write_contact_sheet(
        {
            f"{eval_set[i]} (held-out seed)": {label: videos[label][i].permute(0, 2, 3, 1).numpy() for label in rows}
            for i in range(0, len(eval_set), max(1, len(eval_set) // 3))[:3]  # spread over colours and shapes
        },
        Path(outcome.report_path).parent / "demo-contact-sheet.png",
    )
    vid_dir = output_dir / "videos"
    written = []
    for i, prompt in enumerate(eval_set[:4]):
        for label in ("large-only", blended_label, "small-only"):
            frames = videos[label][i].permute(0, 2, 3, 1)
            path = vid_dir / f"{i:02d}-{prompt.replace(' ', '-')}-{label.split(' ')[0]}.gif"
            written.append(save_video(frames, path, fps=8))
    results = {
        "profile": str(outcome.profile_path),
        "report": str(outcome.report_path),
        "contact_sheet": str(sheet),
        "schedule": pattern_of(profile.schedule),
        "segments": [s.to_dict() for s in profile.schedule],
        "premise": profile.calibration["premise"],
        "semantic_accuracy": accuracy,
        "timing_ms": {k: round(v.seconds * 1000, 2) for k, v in timings.items()},
        "measured_speedup": rep.measured_speedup,
        "flop_predicted_speedup": rep.flop_speedup,
        "measured_over_predicted": rep.efficiency,
        "routing_overhead": rep.routing_overhead,
        "torch_threads": torch.get_num_threads(),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    (output_dir / "demo-results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    _append_to_report(Path(outcome.report_path), results, blended_label)
    log("")
    log(f"demo done in {results['wall_s']:.0f} s")
    log(
        f"  profile: {outcome.profile_path}   (try: flowblending run --profile {outcome.profile_path} "
        '--prompt "a red circle moving left" --output circle.gif)'
    )
    log(f"  report:  {outcome.report_path}")
    log(f"  contact sheet: {sheet}")
    log(f"  videos:  {vid_dir} ({len(written)} GIFs: large-only / {blended_label} / small-only)")
    log(
        f"  speed-up of {blended_label} over large-only on this machine: {rep.measured_speedup:.2f}x measured, "
        f"{rep.flop_speedup:.2f}x predicted by FLOPs"
    )
    return results


def _append_to_report(report: Path, results: dict[str, Any], blended: str) -> None:
    lines = [
        "",
        "## Demo: semantic accuracy",
        "",
        "Held-out generation seeds (the calibration used seed 0). Fraction of videos whose colour (pixel "
        "statistics), shape (the judge's classifier) and motion direction (centroid track) all match the prompt; "
        "detail = stripe energy relative to real clips (1.0 = as sharp as real; noise does not count); size = "
        "area the shape covers relative to real clips (1.0 = as large as real; a blurred shape's halo is larger); "
        "FLOPs = the schedule's share of large-only's FLOPs.",
        "",
        "| schedule | all | colour | shape | direction | detail | size | FLOPs | videos |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, acc in results["semantic_accuracy"].items():
        lines.append(
            f"| {label} | {acc['all']:.3f} | {acc['colour']:.3f} | {acc['shape']:.3f} | "
            f"{acc['direction']:.3f} | {acc['detail']:.3f} | {acc['size']:.3f} | {acc['flops']:.3f} | {acc['videos']} |"
        )
    lines += ["", "![contact sheet: rows are schedules, columns frames](demo-contact-sheet.png)"]
    lines += ["", "## Demo: wall time on this machine", "", "| schedule | ms / video (end to end) |", "| --- | --- |"]
    lines += [f"| {label} | {ms:.1f} |" for label, ms in results["timing_ms"].items()]
    lines += [
        "",
        f"Speed-up of {blended} over large-only: {results['measured_speedup']:.2f}x measured, "
        f"{results['flop_predicted_speedup']:.2f}x predicted by FLOPs "
        f"(ratio {results['measured_over_predicted']:.2f}); "
        f"routing overhead {results['routing_overhead']:.3f} (blended time / time predicted from per-role "
        f"step times, torch threads {results['torch_threads']}).",
        "",
    ]
    with report.open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines))


def _quiet_loading() -> None:
    """The demo prints its stages and results: no per-component loading bars of diffusers and transformers."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


@click.command("demo")
@click.option("--output-dir", type=click.Path(file_okay=False), default="flowblending-demo", show_default=True)
@click.option(
    "--prompts",
    "num_prompts",
    type=click.IntRange(2, 48),
    default=CALIBRATION_PROMPTS,
    show_default=True,
    help="Calibration prompts (of the 48 demo prompts).",
)
@click.option("--seeds", default="0", show_default=True)
@click.option(
    "--eval-prompts",
    type=click.IntRange(4, 480),
    default=48,
    show_default=True,
    help="Videos per schedule for semantic accuracy.",
)
@click.option("--timing-repeats", type=click.IntRange(1, 50), default=3, show_default=True)
@click.option(
    "--late-rule",
    type=click.Choice(list(LATE_RULES)),
    default=DEFAULT_LATE_RULE,
    show_default=True,
    help="The calibrator's late rule (flowblending calibrate --late-rule); the table also shows the other one's.",
)
@click.option("--quick", is_flag=True, help="Every stage with less work (2 prompts, 8 evaluation videos).")
def demo_command(
    output_dir: str,
    num_prompts: int,
    seeds: str,
    eval_prompts: int,
    timing_repeats: int,
    late_rule: str,
    quick: bool,
) -> None:
    """Calibrate the shipped demo pair, write its profile and report, render videos, measure the speed-up."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _quiet_loading()
    from ..cli import _seeds

    if quick:
        num_prompts, eval_prompts, timing_repeats = 2, 8, 1
    run_demo(
        Path(output_dir),
        prompts=num_prompts,
        seeds=_seeds(seeds),
        eval_prompts=eval_prompts,
        timing_repeats=timing_repeats,
        reference_frames=256 if quick else REFERENCE_FRAMES,
        late_rule=late_rule,
    )
