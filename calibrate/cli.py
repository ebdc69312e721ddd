"""``flowblending calibrate``: a thin click command over :func:`calibrate.runner.calibrate`."""

from __future__ import annotations

from pathlib import Path

import click

from flowblending.errors import FlowBlendingError

from .boundaries import DEFAULT_ALPHA, SIMILARITY_FLOOR
from .config import DTYPES, CalibrationConfig


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise FlowBlendingError(
            f"--seeds {text!r} is not a comma-separated list of integers; write e.g. 0,1."
        ) from None
    if not seeds:
        raise FlowBlendingError("--seeds is empty; write e.g. 0 or 0,1.")
    return seeds


def _images(folder: str | None, count: int) -> tuple[str, ...] | None:
    if folder is None:
        return None
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    if len(files) != count:
        raise FlowBlendingError(
            f"--images {folder!r} holds {len(files)} image(s) for {count} prompt(s); give one image per prompt "
            "(matched in sorted file-name order)."
        )
    return tuple(str(p) for p in files)


@click.command("calibrate")
@click.option("--large", default=None, help="Large model: diffusers pipeline repo id or local directory.")
@click.option("--small", default=None, help="Small model: pipeline repo/dir (transformer subfolder) or a transformer.")
@click.option(
    "--prompts",
    "prompts_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Text file, one prompt per line (# comments and blank lines skipped).",
)
@click.option(
    "--reference",
    type=click.Path(exists=True),
    default=None,
    help="Folder of real videos/frames for the FID late sweep (without it: late boundary from divergence).",
)
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Image-to-video: folder with one conditioning image per prompt (sorted by name).",
)
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="Profile to write (.json).")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None, help="Report folder.")
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Resumable work folder (default: next to --output).",
)
@click.option("--name", default=None, help="Profile name (default: the output file's stem).")
@click.option("--steps", type=click.IntRange(min=2), default=None, help="Denoising steps (default: the pipeline's).")
@click.option("--guidance-scale", type=click.FloatRange(min=0), default=None)
@click.option("--height", type=click.IntRange(min=1), default=None)
@click.option("--width", type=click.IntRange(min=1), default=None)
@click.option("--num-frames", type=click.IntRange(min=1), default=None)
@click.option("--max-sequence-length", type=click.IntRange(min=1), default=None)
@click.option("--flow-shift", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds per prompt.")
@click.option("--device", default=None, help="cuda, cpu... (default: cuda if available).")
@click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True)
@click.option(
    "--feature-model",
    default="facebook/dinov2-small",
    show_default=True,
    help="Frame features for similarity (and FID): hub id or local path of a transformers vision model.",
)
@click.option("--clip-model", default=None, help="Also report CLIP similarity with this model (hub id or path).")
@click.option(
    "--fid-features",
    default=None,
    help="FID features: default the feature model; 'inception' needs the [inception] extra.",
)
@click.option(
    "--early-boundary",
    type=float,
    default=None,
    help="Fix the early boundary (fraction, e.g. 0.4) instead of choosing it with Algorithm 1.",
)
@click.option(
    "--early-grid",
    type=float,
    default=0.1,
    show_default=True,
    help="Spacing of early switch candidates, as a fraction of the process (1/steps: every step).",
)
@click.option("--late-grid", type=float, default=0.1, show_default=True, help="Spacing of late re-entry candidates.")
@click.option("--alpha", type=float, default=DEFAULT_ALPHA, show_default=True, help="Algorithm 1 slope threshold.")
@click.option(
    "--floor",
    type=float,
    default=SIMILARITY_FLOOR,
    show_default=True,
    help="Similarity the early boundary must keep (paper sec 4.2).",
)
@click.option(
    "--method",
    type=click.Choice(["full", "divergence", "sweep", "search"]),
    default="full",
    show_default=True,
    help="full: the paper's sweeps; divergence: the U-curve only (no decoding, no sweeps); sweep: all 2^K "
    "segment patterns on a prefix trie; search: a beam search over them for large K.",
)
@click.option(
    "--segments",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="sweep/search: number of equal segments K.",
)
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0),
    default=0.02,
    show_default=True,
    help="sweep/search: pick the cheapest schedule with FID within this relative margin of large-only's.",
)
@click.option("--beam-width", type=click.IntRange(min=1), default=4, show_default=True, help="search: beam width.")
@click.option(
    "--samples",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Prompts whose videos go into the report.",
)
@click.option(
    "--merge",
    "merge_dir",
    type=click.Path(exists=True, file_okay=False),
    default=None,
    help="Rebuild the profile/report from a finished work dir (e.g. after a multi-process run); loads no model.",
)
@click.option("--local-files-only", is_flag=True, help="Never download (also set by HF_HUB_OFFLINE=1).")
def calibrate_command(
    large: str | None,
    small: str | None,
    prompts_file: str | None,
    reference: str | None,
    images: str | None,
    output: str | None,
    report_dir: str | None,
    work_dir: str | None,
    name: str | None,
    steps: int | None,
    guidance_scale: float | None,
    height: int | None,
    width: int | None,
    num_frames: int | None,
    max_sequence_length: int | None,
    flow_shift: float | None,
    seeds: str,
    device: str | None,
    dtype: str,
    feature_model: str,
    clip_model: str | None,
    fid_features: str | None,
    early_boundary: float | None,
    early_grid: float,
    late_grid: float,
    alpha: float,
    floor: float,
    method: str,
    segments: int,
    tolerance: float,
    beam_width: int,
    samples: int,
    merge_dir: str | None,
    local_files_only: bool,
) -> None:
    """Calibrate a large/small model pair on a prompt set and write a profile (and a report)."""
    from flowblending.prompts import read_prompts

    from .runner import calibrate

    if merge_dir is not None:
        from .finalize import merge

        if output is None and report_dir is None:
            raise FlowBlendingError("--merge needs --output PROFILE.json and/or --report DIR to write.")
        merge(merge_dir, output=output, report_dir=report_dir, log=click.echo)
        return
    missing = [
        name for name, value in (("--large", large), ("--small", small), ("--prompts", prompts_file)) if value is None
    ]
    if missing:
        raise FlowBlendingError(
            f"missing {', '.join(missing)}: a calibration needs --large, --small and --prompts "
            "(or --merge WORK_DIR to rebuild a profile)."
        )
    prompts = tuple(read_prompts(prompts_file))
    if output is None and report_dir is None:
        raise FlowBlendingError("nothing to write: give --output PROFILE.json (and optionally --report DIR).")
    config = CalibrationConfig(
        large=large,
        small=small,
        prompts=prompts,
        seeds=_seeds(seeds),
        reference=reference,
        images=_images(images, len(prompts)),
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        height=height,
        width=width,
        num_frames=num_frames,
        max_sequence_length=max_sequence_length,
        flow_shift=flow_shift,
        feature_model=feature_model,
        clip_model=clip_model,
        fid_features=fid_features,
        early_boundary=early_boundary,
        early_grid=early_grid,
        late_grid=late_grid,
        alpha=alpha,
        floor=floor,
        method=method,
        segments=segments,
        tolerance=tolerance,
        beam_width=beam_width,
        name=name or (Path(output).stem if output else "calibrated"),
        samples=samples,
        device=device,
        dtype=dtype,
        local_files_only=local_files_only or None,
    )
    calibrate(config, output=output, report_dir=report_dir, work_dir=work_dir, log=click.echo)
