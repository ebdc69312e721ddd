"""The ``flowblending`` command: a thin click shell over the Python API.

Bad input (a missing file, an invalid profile, an unknown role...) prints one ``error:`` line per problem
and exits with code 2; it never shows a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from .errors import FlowBlendingError, ProfileError
from .profile import Profile, load_profile, read_profile_json, validate_profile_dict
from .schedule import Segment, pattern_of, segments_from_pattern

DTYPES = ("auto", "float32", "bfloat16", "float16")


class _Group(click.Group):
    """Turns FlowBlendingError into ``error: ...`` lines and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FlowBlendingError as exc:
            for line in str(exc).splitlines():
                click.echo(f"error: {line.strip()}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flowblending")
def cli() -> None:
    """Stage-aware multi-model sampling: run a large model early and late, a small one in the middle."""


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="flowblending")


# --- models ---------------------------------------------------------------------------------------------
@cli.command()
@click.argument("family", required=False)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True,
    help="text: one line per family; markdown: the table of docs/models.md; json: every field.",
)  # fmt: skip
def models(family: str | None, fmt: str) -> None:
    """The model families FlowBlending supports: pipelines, sizes, how each is tested; FAMILY for one in full."""
    import dataclasses
    import json

    from .families import FAMILIES, markdown_table

    if family is not None and family not in FAMILIES:
        raise FlowBlendingError(f"unknown family {family!r}; the families are {', '.join(FAMILIES)}.")
    chosen = [FAMILIES[family]] if family else list(FAMILIES.values())
    if fmt == "json":
        click.echo(json.dumps([dataclasses.asdict(f) for f in chosen], indent=2))
    elif fmt == "markdown":
        click.echo(markdown_table(), nl=False)
    elif family is not None:
        for field in dataclasses.fields(chosen[0]):
            value = getattr(chosen[0], field.name)
            if isinstance(value, tuple):
                value = "; ".join(value) if value else "-"
            click.echo(f"{field.name:>18}: {value}")
    else:
        width = max(len(f.key) for f in chosen)
        for f in chosen:
            status = "refused" if f.refusal else f.status
            click.echo(f"{f.key:<{width}}  {status:<8}  {f.title}: {', '.join(f.pipelines)}")
        click.echo("flowblending models FAMILY shows one in full (docs/models.md).")


# --- validate / inspect ---------------------------------------------------------------------------------
@cli.command()
@click.argument("profiles", nargs=-1, required=True)
def validate(profiles: tuple[str, ...]) -> None:
    """Check profiles (paths or shipped names) against the format; exit 1 if any is invalid."""
    bad = 0
    for item in profiles:
        try:
            data, source = read_profile_json(item)
        except ProfileError as exc:
            bad += 1
            if exc.source and "\n" in str(exc):  # parsed, but with problems at JSON paths (repeated keys...)
                for line in exc.errors:
                    click.echo(f"{exc.source}: {line}", err=True)
            else:
                click.echo(f"{item}: {exc}", err=True)
            continue
        errors = validate_profile_dict(data)
        if errors:
            bad += 1
            for line in errors:
                click.echo(f"{source}: {line}", err=True)
        else:
            click.echo(f"{source}: ok")
    if bad:
        sys.exit(1)


@cli.command()
@click.argument("profile")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Plan for this step count.")
def inspect(profile: str, steps: int | None) -> None:
    """Show a profile: models, setting, schedule, boundaries and cost."""
    p = load_profile(profile)
    click.echo(f"profile {p.name}  ({p.source})")
    if p.description:
        click.echo(f"  {p.description}")
    click.echo(f"pipeline {p.pipeline_class}, base role {p.base_role}")
    for role, spec in p.models.items():
        params = f"{spec.parameters / 1e9:.2f}B params" if spec.parameters else "params unknown"
        rev = f"@{spec.revision}" if spec.revision else ""
        if spec.file is not None:
            where = f"{spec.id}{rev} file {spec.file} (config {spec.config} [{spec.subfolder or '.'}])"
        else:
            where = f"{spec.id}{rev} [{spec.subfolder or '.'}]"
        click.echo(f"  {role:<10} {where} {params}")
    s = p.setting
    click.echo(
        f"setting: {s.num_inference_steps} steps, {s.scheduler.cls} shift {s.scheduler.flow_shift}, guidance "
        f"{s.guidance_scale}, {s.width}x{s.height}, {s.num_frames} frames"
    )
    click.echo(
        f"schedule {pattern_of(p.schedule)}: "
        + ", ".join(f"{seg.model} [{seg.start:g}, {seg.end:g}){_segment_extras(seg)}" for seg in p.schedule)
    )
    for b in p.boundaries:
        click.echo(f"  switch {b.from_role}->{b.to_role} at {b.fraction:g} = step {b.step}, sigma {b.sigma:.4f}")
    c = p.cost
    click.echo(
        f"cost: {c.flops_total / 1e12:,.1f} TFLOPs vs {c.flops_large_only / 1e12:,.1f} large-only "
        f"({c.flops_ratio:.2%}), predicted speed-up {c.predicted_speedup:.2f}x"
    )
    if steps:
        _print_plan(p, steps, p.schedule)
    if p.calibration:
        premise = p.calibration.get("premise")
        if premise:
            click.echo(f"calibration premise: {premise}")


def _segment_extras(seg: Segment) -> str:
    """`` (4 own steps, guidance 1)`` for a segment with its own steps or guidance, else empty."""
    extras = ([f"{seg.steps} own steps"] if seg.steps is not None else []) + (
        [f"guidance {seg.guidance_scale:g}"] if seg.guidance_scale is not None else []
    )
    return f" ({', '.join(extras)})" if extras else ""


# --- run ------------------------------------------------------------------------------------------------
def _schedule_override(profile: Profile, pattern: str | None, boundaries: str | None) -> tuple[Segment, ...] | None:
    if pattern is None and boundaries is None:
        return None
    cuts = None
    if boundaries is not None:
        try:
            cuts = [float(x) for x in boundaries.split(",") if x.strip()]
        except ValueError:
            raise FlowBlendingError(
                f"--boundaries {boundaries!r} is not a comma-separated list of fractions; write e.g. 0.4,0.8."
            ) from None
    if pattern is None:
        pattern = pattern_of(profile.schedule)
        if len(pattern) != len(cuts or []) + 1:
            raise FlowBlendingError(
                f"--boundaries gives {len(cuts or []) + 1} segments but profile {profile.name!r} has "
                f"{len(pattern)} ({pattern}); add --schedule with {len(cuts or []) + 1} letters."
            )
    elif cuts is None and len(pattern) == len(profile.schedule):
        cuts = [seg.start for seg in profile.schedule[1:]]
    segments = segments_from_pattern(pattern, cuts, profile.roles)
    if [s.model for s in segments] == [s.model for s in profile.schedule]:
        # the profile's roles at new boundaries: each segment keeps its guidance and own step count
        segments = tuple(
            Segment(new.model, new.start, new.end, old.guidance_scale, old.steps)
            for new, old in zip(segments, profile.schedule, strict=True)
        )
    return segments


def _print_plan(profile: Profile, steps: int, schedule: tuple[Segment, ...]) -> None:
    from .generate import plan_run

    try:
        plan = plan_run(profile, steps, schedule)
    except FlowBlendingError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, OverflowError, RuntimeError) as exc:
        # The schema cannot tell whether setting.scheduler names a diffusers scheduler with a usable config;
        # diffusers finds out when the noise levels are computed.
        reason = (str(exc).strip().splitlines() or [""])[0][:200].rstrip(".")
        raise FlowBlendingError(
            f"{profile.source or profile.name}: cannot compute the noise levels of setting.scheduler "
            f"(class {profile.setting.scheduler.cls!r}): {type(exc).__name__}: {reason}; give a diffusers scheduler "
            "class and a config its from_config accepts."
        ) from None
    composed = plan.num_steps != plan.base_steps or any(seg.own_steps for seg in plan.segments)
    over = f" over {plan.base_steps} base steps" if composed else ""
    click.echo(f"plan for {plan.num_steps} steps{over}, schedule {pattern_of(plan.schedule)}:")
    click.echo("  step  role        sigma   timestep" + ("  base step" if composed else ""))
    for st in plan.steps:
        base = f"  {st.base_step:>9}" if composed else ""
        click.echo(f"  {st.step:>4}  {st.role:<10} {st.sigma:7.4f}  {st.timestep:9.2f}{base}")
    click.echo("segments:")
    pipeline_guidance = profile.setting.guidance_scale
    for seg in plan.segments:
        kind = "own steps" if seg.own_steps else "steps"
        sigmas = (
            f"sigma {seg.sigma_first:.4f} -> {seg.sigma_last:.4f}" if seg.sigma_first is not None else "no steps here"
        )
        if seg.guidance_scale is not None:
            guidance = f"guidance {seg.guidance_scale:g}" + (" (no CFG)" if seg.guidance_scale == 1 else "")
        else:
            guidance = f"guidance {pipeline_guidance:g} (pipeline)" if pipeline_guidance is not None else "guidance -"
        click.echo(
            f"  {seg.role:<10} [{seg.start:g}, {seg.end:g})  base steps {seg.base_first}-{seg.base_end - 1}: "
            f"{seg.steps} {kind}, {sigmas}, {guidance}"
        )
    per_role = ", ".join(f"{r}: {n}" for r, n in plan.steps_per_role.items())
    click.echo(f"steps per role: {per_role}")
    click.echo(f"NFE: {plan.nfe} transformer steps" + (f" ({plan.base_steps} base steps)" if composed else ""))
    click.echo(
        f"FLOPs: {plan.flops_total / 1e12:,.1f} TFLOPs vs {plan.flops_large_only / 1e12:,.1f} large-only "
        f"= {plan.flops_ratio:.2%} (ratio {plan.flops_ratio:.3f}); predicted speed-up {plan.predicted_speedup:.2f}x"
    )


def _resolve_device_dtype(device: str | None, dtype: str) -> tuple[str, Any]:
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        return device, torch.bfloat16 if device.startswith("cuda") else torch.float32
    return device, getattr(torch, dtype)


@cli.command()
@click.option(
    "--profile", "profile_name", required=True, help="Shipped profile name (wan21, ltxv, ltxv-ldl, demo) or path."
)
@click.option("--prompt", default=None, help="Text prompt.")
@click.option(
    "--prompts",
    "prompts_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="File with one prompt per line (writes one video per prompt to --output-dir).",
)
@click.option(
    "--image",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Conditioning image for image-to-video profiles.",
)
@click.option("--negative-prompt", default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Denoising steps (plan scales with it).")
@click.option("--guidance-scale", type=click.FloatRange(min=0), default=None)
@click.option("--height", type=click.IntRange(min=1), default=None)
@click.option("--width", type=click.IntRange(min=1), default=None)
@click.option("--num-frames", type=click.IntRange(min=1), default=None)
@click.option("--schedule", "pattern", default=None, help="Override the schedule pattern, e.g. LSL, LSS, LLL.")
@click.option("--boundaries", default=None, help="Override the boundaries, e.g. 0.4,0.8.")
@click.option(
    "--routing",
    type=click.Choice(["fraction", "sigma"]),
    default="fraction",
    show_default=True,
    help="Route steps by fraction of the process or by noise level (sigma).",
)
@click.option("--device", default=None, help="cuda, cpu, cuda:1... (default: cuda if available).")
@click.option("--dtype", type=click.Choice(DTYPES), default="auto", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="Video file (.mp4 or .gif).")
@click.option("--output-dir", type=click.Path(file_okay=False), default=None, help="Folder for --prompts videos.")
@click.option("--fps", type=click.IntRange(min=1), default=None)
@click.option("--local-files-only", is_flag=True, help="Never download (also set by HF_HUB_OFFLINE=1).")
@click.option("--dry-run", is_flag=True, help="Print the per-step plan and FLOPs; load no weights.")
@click.option(
    "--allow-pickle",
    is_flag=True,
    help="Also load models that only have pickle (.bin) weights; unpickling can run code: trusted sources only.",
)
@click.option(
    "--cache",
    "cache_spec",
    default=None,
    help="diffusers cache on each role, counted per stretch of steps: first-block[:THRESHOLD], "
    "taylorseer[:INTERVAL[:WARMUP]], magcache:THRESHOLD:RATIOS.json (role -> mag_ratios). See docs/acceleration.md.",
)
@click.option(
    "--offload",
    type=click.Choice(["model", "group"]),
    default=None,
    help="Keep only the running role on the device: whole models (model CPU offload) or block groups (group).",
)
def run(
    profile_name: str,
    prompt: str | None,
    prompts_file: str | None,
    image: str | None,
    negative_prompt: str | None,
    seed: int,
    steps: int | None,
    guidance_scale: float | None,
    height: int | None,
    width: int | None,
    num_frames: int | None,
    pattern: str | None,
    boundaries: str | None,
    routing: str,
    device: str | None,
    dtype: str,
    output: str | None,
    output_dir: str | None,
    fps: int | None,
    local_files_only: bool,
    dry_run: bool,
    allow_pickle: bool,
    cache_spec: str | None,
    offload: str | None,
) -> None:
    """Generate a video with a profile (large model early and late, small model in the middle)."""
    from .prompts import read_prompts, slug

    profile = load_profile(profile_name)
    schedule = _schedule_override(profile, pattern, boundaries)
    if dry_run:
        _print_plan(profile, steps or profile.setting.num_inference_steps, schedule or profile.schedule)
        return
    if prompt is not None and prompts_file is not None:
        raise FlowBlendingError("give either --prompt or --prompts, not both.")
    if prompt is None and prompts_file is None:
        raise FlowBlendingError("no prompt: give --prompt TEXT or --prompts FILE (or --dry-run to only plan).")
    if profile.image_to_video and image is None:
        raise FlowBlendingError(
            f"profile {profile.name!r} is image-to-video ({profile.pipeline_class}); give the first frame with --image."
        )
    prompts = read_prompts(prompts_file) if prompts_file else [prompt]
    if prompts_file is not None and output is not None:
        raise FlowBlendingError("--output names one video; with --prompts use --output-dir.")
    jobs = []
    for i, text in enumerate(prompts):
        if prompts_file is None:
            target = Path(output or f"{profile.name}-{slug(text)}-{seed}.mp4")
        else:
            target = Path(output_dir or f"{profile.name}-videos") / f"{i:04d}-{slug(text)}-{seed}.mp4"
        jobs.append((text, target))
    procs = None
    if prompts_file is not None:
        from .distributed import processes

        procs = processes()  # under torchrun / accelerate launch: this rank's share of the prompts
        jobs = procs.shard(jobs)
        tag = f"[{procs.label()}] " if procs.world_size > 1 else ""
        done = [t for _, t in jobs if t.exists()]
        if done:
            click.echo(f"{tag}skipping {len(done)} video(s) already written in {done[0].parent}")
        jobs = [(p, t) for p, t in jobs if not t.exists()]
        if not jobs:
            return
    from .video import VIDEO_SUFFIXES

    for _, target in jobs:
        if target.suffix.lower() not in VIDEO_SUFFIXES:
            raise FlowBlendingError(f"--output {str(target)!r}: unknown video extension; use .mp4 or .gif.")
    pil_image = _open_image(image) if image else None
    dev, torch_dtype = _resolve_device_dtype(device, dtype)
    if procs is not None and procs.world_size > 1 and dev.startswith("cuda") and ":" not in dev:
        import torch

        dev = f"cuda:{procs.rank % max(1, torch.cuda.device_count())}"

    from .caching import parse_cache_spec
    from .generate import generate
    from .loading import load_pipeline
    from .video import save_video

    cache = parse_cache_spec(cache_spec) if cache_spec else None
    click.echo(f"loading {profile.name}: " + ", ".join(f"{r}={s.id}" for r, s in profile.models.items()))
    pipe = load_pipeline(
        profile,
        device=dev,
        torch_dtype=torch_dtype,
        local_files_only=local_files_only or None,
        routing=routing,
        schedule=schedule,
        allow_pickle=allow_pickle,
        cache=cache,
        offload=offload,
    )
    warned = False
    for text, target in jobs:
        frames, report = generate(
            pipe,
            profile,
            text,
            seed=seed,
            image=pil_image,
            num_inference_steps=steps,
            guidance_scale=guidance_scale,
            height=height,
            width=width,
            num_frames=num_frames,
            negative_prompt=negative_prompt,
            fps=fps,
        )
        if report.setting_differences and not warned:
            click.echo("warning: outside the calibration setting: " + "; ".join(report.setting_differences), err=True)
            warned = True
        save_video(frames, target, fps=fps or profile.setting.fps or 16)
        per_role = ", ".join(f"{r} {n}" for r, n in report.steps_per_role.items())
        calls = ", ".join(f"{r} {n}" for r, n in report.calls_per_role.items())
        click.echo(
            f"wrote {target} in {report.wall_time_s:.2f} s; steps: {per_role} (transformer calls: {calls}); "
            f"FLOPs saved vs large-only: {report.flops_saved:.1%}"
        )


def _open_image(path: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path).convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise FlowBlendingError(f"--image {path!r} is not an image Pillow can read ({exc}).") from None


# --- lazily imported heavy commands ---------------------------------------------------------------------
def _add_lazy(name: str, module: str, attr: str, help_text: str) -> None:
    class _Lazy(click.Command):
        def _real(self) -> click.Command:
            import importlib

            try:
                return getattr(importlib.import_module(module), attr)
            except ImportError as exc:
                raise click.ClickException(
                    f"`flowblending {name}` needs the calibrator extras ({exc.name} is missing): "
                    'pip install "flowblending[calibrate]"'
                ) from None

        def get_params(self, ctx: click.Context) -> list[click.Parameter]:
            return self._real().get_params(ctx)

        def invoke(self, ctx: click.Context) -> Any:
            return self._real().invoke(ctx)

        def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
            return self._real().parse_args(ctx, args)

        def get_help(self, ctx: click.Context) -> str:
            return self._real().get_help(ctx)

    cli.add_command(_Lazy(name, help=help_text, short_help=help_text))


try:  # only registered once the calibrator modules exist in this install
    import importlib.util as _util

    if _util.find_spec("calibrate.cli") is not None:
        _add_lazy("calibrate", "calibrate.cli", "calibrate_command", "Calibrate a model pair into a profile.")
    if _util.find_spec("calibrate.demo.cli") is not None:
        _add_lazy("demo", "calibrate.demo.cli", "demo_command", "Calibrate and run the embedded demo pair.")
except (ImportError, ValueError):  # pragma: no cover - broken install
    pass
