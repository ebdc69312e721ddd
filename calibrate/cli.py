"""``flowblending calibrate``: a thin click command over :func:`calibrate.runner.calibrate`.

Defaults, choices and help come from :class:`calibrate.config.CalibrationConfig` and the method registry, so
they are written once.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import click

from flowblending.errors import FlowBlendingError

from .config import CalibrationConfig
from .methods import METHODS

_FIELDS = {f.name: f for f in fields(CalibrationConfig)}


def _config_option(name: str, *decls: str, **kwargs: Any) -> Any:
    """A click option for config field ``name``: its default, help and choices are the config's."""
    f = _FIELDS[name]
    default = f.default if f.default is not MISSING else f.default_factory()
    if name == "seeds":
        default = ",".join(str(s) for s in default)
    if "choices" in f.metadata:
        kwargs.setdefault("type", click.Choice(f.metadata["choices"]))
    flag = "--" + name.replace("_", "-")
    kwargs.setdefault("show_default", default not in (None, ()))
    return click.option(*(decls or (flag,)), name, default=default, help=f.metadata["help"], **kwargs)


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


_METHOD_HELP = "; ".join(f"{spec.name}: {spec.help}" for spec in METHODS.values())


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
@_config_option("reference", type=click.Path(exists=True))
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
@_config_option("num_inference_steps", "--steps", type=click.IntRange(min=2))
@_config_option("guidance_scale", type=click.FloatRange(min=0))
@_config_option("height", type=click.IntRange(min=1))
@_config_option("width", type=click.IntRange(min=1))
@_config_option("num_frames", type=click.IntRange(min=1))
@_config_option("max_sequence_length", type=click.IntRange(min=1))
@_config_option("flow_shift", type=click.FloatRange(min=0, min_open=True))
@_config_option("seeds")
@_config_option("device")
@_config_option("dtype")
@_config_option("feature_model")
@_config_option("clip_model")
@_config_option("fid_features")
@_config_option("early_boundary", type=float)
@_config_option("early_grid", type=float)
@_config_option("late_grid", type=float)
@_config_option("late_metric")
@_config_option("kid_subset_size", type=click.IntRange(min=2))
@_config_option("alpha", type=float)
@_config_option("early_reference")
@_config_option("floor", type=float)
@_config_option("noise_se", type=click.FloatRange(min=0))
@_config_option("late_rule")
@_config_option("late_noise_se", type=click.FloatRange(min=0))
@click.option(
    "--method",
    type=click.Choice(list(METHODS)),
    default=_FIELDS["method"].default,
    show_default=True,
    help=_METHOD_HELP + ".",
)
@_config_option("segments", type=click.IntRange(min=1))
@_config_option("tolerance", type=click.FloatRange(min=0))
@_config_option("beam_width", type=click.IntRange(min=1))
@_config_option("samples", type=click.IntRange(min=0))
@_config_option("compare", multiple=True, metavar="PROFILE")
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
    images: str | None,
    output: str | None,
    report_dir: str | None,
    work_dir: str | None,
    name: str | None,
    seeds: str,
    method: str,
    merge_dir: str | None,
    local_files_only: bool,
    **options: Any,
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
        flag for flag, value in (("--large", large), ("--small", small), ("--prompts", prompts_file)) if value is None
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
        images=_images(images, len(prompts)),
        method=method,
        name=name or (Path(output).stem if output else "calibrated"),
        local_files_only=local_files_only or None,
        **options,
    )
    calibrate(config, output=output, report_dir=report_dir, work_dir=work_dir, log=click.echo)
