"""Run a calibration: resolve the device, load the pair, check the work dir, compute, then finalize.

With ``--compare`` the compared profiles are checked before any weight loads and their other roles loaded with the
pair; after the method's compute the comparison scores its decision (:mod:`calibrate.compare`).

Under ``torchrun`` / ``accelerate launch`` each rank computes its share of the units (see
:mod:`flowblending.distributed`) into the shared work dir and rank 0 finalizes from it; the work-dir layout is
:mod:`calibrate.workdir`'s, the methods are :mod:`calibrate.methods`.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from flowblending.distributed import processes

from .config import CalibrationConfig
from .finalize import CalibrationOutcome, finalize
from .methods import get_method
from .methods.base import Context
from .sampling import ReplaySampler, units_of
from .workdir import WorkDir

Log = Callable[[str], None]

__all__ = ["CalibrationOutcome", "calibrate", "large_pipeline_class", "load_pair", "resolve_device"]


def resolve_device(device: str | None, dtype: str, rank: int = 0, world_size: int = 1) -> tuple[str, torch.dtype]:
    """The device (``cuda:<rank>`` per rank on a multi-GPU launch) and the torch dtype (``auto``: bf16 on CUDA)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and world_size > 1:
        device = f"cuda:{rank % torch.cuda.device_count()}"
    if dtype == "auto":
        return device, torch.bfloat16 if device.startswith("cuda") else torch.float32
    return device, getattr(torch, dtype)


def large_pipeline_class(config: CalibrationConfig) -> str:
    """The pipeline class ``--large``'s ``model_index.json`` names, read without weights ("" when unreadable: a
    missing model fails when it loads, with the loader's message)."""
    from diffusers import DiffusionPipeline

    from flowblending.profile import resolve_model_location

    index: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        index = DiffusionPipeline.load_config(
            resolve_model_location(config.large),
            revision=config.large_revision,
            **({"local_files_only": config.local_files_only} if config.local_files_only is not None else {}),
        )
    return str(index.get("_class_name", ""))


def load_pair(config: CalibrationConfig, device: str, dtype: torch.dtype) -> tuple[Any, Any, str | None]:
    """The large model's pipeline and the small transformer (same family, checked), on ``device``."""
    from diffusers import DiffusionPipeline

    from flowblending.experts import base_transformer
    from flowblending.loading import _dtype_kwargs, _not_available, check_compatible
    from flowblending.profile import ModelSpec, resolve_model_location

    # safetensors only: a pickle-only model is refused (PickleWeightsError), never unpickled
    from_kwargs: dict[str, Any] = {**_dtype_kwargs(dtype), "use_safetensors": True}
    if config.local_files_only is not None:
        from_kwargs["local_files_only"] = config.local_files_only
    from flowblending.families import check_pipeline

    check_pipeline(large_pipeline_class(config), f"--large {config.large!r} is a")  # before any weights load
    try:
        pipe = DiffusionPipeline.from_pretrained(
            resolve_model_location(config.large), revision=config.large_revision, **from_kwargs
        )
    except OSError as exc:
        raise _not_available(ModelSpec(config.large, config.large_revision), "large", exc) from exc
    check_pipeline(type(pipe).__name__, f"--large {config.large!r} is a")
    cls = type(pipe.transformer)
    subfolders = ["transformer", None] if config.small_subfolder == "auto" else [config.small_subfolder]
    small, used, last_exc = None, None, None
    for sub in subfolders:
        try:
            kwargs = {**from_kwargs, "revision": config.small_revision}
            if sub:
                kwargs["subfolder"] = sub
            small = cls.from_pretrained(resolve_model_location(config.small), **kwargs)
            used = sub
            break
        except OSError as exc:
            last_exc = exc
    if small is None:
        raise _not_available(ModelSpec(config.small, config.small_revision, "transformer"), "small", last_exc)
    check_compatible(base_transformer(pipe), small)
    pipe.to(device)
    small.to(device).eval()
    pipe.transformer.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe, small, used


def _call_defaults(pipe: Any) -> dict[str, Any]:
    params = inspect.signature(pipe.__call__).parameters
    names = ("num_inference_steps", "guidance_scale", "height", "width", "num_frames", "max_sequence_length")
    return {n: params[n].default for n in names if n in params and params[n].default is not inspect.Parameter.empty}


def _setting(config: CalibrationConfig, pipe: Any) -> tuple[int, dict[str, Any]]:
    """The step count and the pipeline call arguments of the calibration (the config's, else the pipeline's)."""
    defaults = _call_defaults(pipe)
    call_kwargs: dict[str, Any] = {k: v for k, v in defaults.items() if k != "num_inference_steps"}
    for name in ("guidance_scale", "height", "width", "num_frames", "max_sequence_length"):
        if getattr(config, name) is not None:
            call_kwargs[name] = getattr(config, name)
    if config.flow_shift is not None:
        key = "flow_shift" if "flow_shift" in pipe.scheduler.config else "shift"
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, **{key: config.flow_shift})
    return config.num_inference_steps or int(defaults.get("num_inference_steps", 50)), call_kwargs


def _pair_info(pipe: Any, small: Any, small_sub: str | None, n: int, call_kwargs: dict) -> dict:
    from flowblending.experts import active_parameters, base_transformer

    sched = pipe.scheduler
    sched_config = json.loads(json.dumps({k: v for k, v in sched.config.items() if not k.startswith("_")}))
    shift = sched_config.get("flow_shift", sched_config.get("shift"))
    return {
        "pipeline_class": type(pipe).__name__,
        "transformer_class": type(pipe.transformer).__name__,
        "parameters": {
            "large": active_parameters(base_transformer(pipe)),
            "small": active_parameters(small),
        },
        "small_subfolder": small_sub,
        "scheduler_class": type(sched).__name__,
        "scheduler_config": sched_config,
        "flow_shift": float(shift) if shift else None,
        "num_steps": n,
        "call_kwargs": call_kwargs,
    }


def calibrate(
    config: CalibrationConfig,
    *,
    output: str | os.PathLike | None = None,
    report_dir: str | os.PathLike | None = None,
    work_dir: str | os.PathLike | None = None,
    log: Log = print,
    progress: bool = True,
    fail_after_units: int | None = None,
) -> CalibrationOutcome | None:
    """Calibrate a large/small pair on prompts x seeds; write the profile (and report) and return them.

    Under a multi-process launch every rank computes its share and only rank 0 finalizes (others return None).
    ``fail_after_units`` raises after that many freshly computed units (tests use it to simulate a crash).
    """
    started = time.perf_counter()
    procs = processes()
    if procs.world_size > 1:
        base_log = log

        def log(message: str) -> None:  # every line says which rank printed it
            base_log(f"[{procs.label()}] {message}")

        log(f"started as {procs.label()}")
    device, dtype = resolve_device(config.device, config.dtype, procs.rank, procs.world_size)
    out_path = Path(output) if output else None
    default_work = out_path.parent / (out_path.stem + ".work") if out_path else Path("flowblending-calibration.work")
    work = WorkDir(work_dir or default_work)
    from .compare import compute_compare, load_compared, read_compared

    # the --compare profiles are checked before any weights load
    compared = read_compared(config, large_pipeline_class(config)) if config.compare else ()
    log(f"loading large {config.large} and small {config.small} on {device} ({str(dtype).replace('torch.', '')})")
    pipe, small, small_sub = load_pair(config, device, dtype)
    num_steps, call_kwargs = _setting(config, pipe)
    from flowblending.experts import base_transformer

    if compared:
        log(f"loading the other roles of --compare {', '.join(config.compare)}")
        base, pair_small = base_transformer(pipe), (small, small_sub)
        compared = load_compared(config, compared, base, pair_small, num_steps, device=device, dtype=dtype)
    setting = {"num_inference_steps": num_steps, **call_kwargs, "scheduler": type(pipe.scheduler).__name__}
    work.check({**config.identity(), "setting": setting}, config.to_json(), is_main=procs.is_main, wait=procs.wait)
    if procs.is_main:
        work.write_json(work.pair, _pair_info(pipe, small, small_sub, num_steps, call_kwargs))
    log(f"work dir {work.root}")
    units = units_of(config.prompts, config.seeds, config.images)
    sampler = ReplaySampler(pipe, {"large": base_transformer(pipe), "small": small}, call_kwargs, num_steps)
    ctx = Context(
        config,
        work,
        num_steps,
        units,
        log=log,
        sampler=sampler,
        mine=procs.shard(units),
        procs=procs,
        device=device,
        progress=progress,
        fail_after_units=fail_after_units,
    )
    method = get_method(config.method)
    method.compute(ctx)
    if compared:  # an evaluation of the method's decision, which it does not change
        compute_compare(ctx, method, compared)
    if not procs.is_main:
        log(f"done: computed {dict(sampler.calls)}; rank 0 writes the profile")
        return None
    return finalize(ctx, output=output, report_dir=report_dir, started=started, this_run=dict(sampler.calls))
