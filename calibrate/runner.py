"""Run a calibration: load the pair, go through prompts x seeds with a resumable work dir, then finalize.

Work directory layout (``--work-dir``)::

    config.json                 the arguments that change results (a resume with other values is refused)
    run.json                    every argument (read back by ``flowblending calibrate --merge DIR``)
    pair.json                   pipeline/transformer classes, parameter counts, scheduler, setting
    reference-<feature>.pt      FID statistics of the reference frames (computed once)
    units/<idx>-s<seed>/
        pass1.json              divergence per step, early-sweep metrics, FLOPs per step, calls computed
        large.safetensors       the large-only recording of steps before the last early candidate
        large-fid.pt            FID features of the large-only frames
        pass2-e<step>.pt        FID features of every late candidate for early boundary <step>, calls computed
        samples-*.npz           uint8 frames for the report (first --samples units)

Every file is written atomically, so an interrupted run resumes with the same command and recomputes only the
units that were not finished. Under ``torchrun`` / ``accelerate launch`` each rank takes its share of the
units (see :mod:`flowblending.distributed`) and rank 0 finalizes.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowblending.distributed import Processes, processes
from flowblending.errors import FlowBlendingError

from .aggregate import early_block, early_decision
from .config import CalibrationConfig, CalibrationError
from .finalize import (
    CalibrationOutcome,
    finalize,
    grid_steps,
    late_candidates,
    read_pass1,
    reference_cache,
    units_of,
)
from .protocol import Generator, Unit, run_pass1, run_pass2
from .replay import Recording

Log = Callable[[str], None]

__all__ = ["CalibrationOutcome", "calibrate", "grid_steps", "load_pair"]


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _call_defaults(pipe: Any) -> dict[str, Any]:
    params = inspect.signature(pipe.__call__).parameters
    names = ("num_inference_steps", "guidance_scale", "height", "width", "num_frames", "max_sequence_length")
    return {n: params[n].default for n in names if n in params and params[n].default is not inspect.Parameter.empty}


def _resolve_dtype(device: str, dtype: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def load_pair(config: CalibrationConfig, device: str, dtype: torch.dtype) -> tuple[Any, Any, str | None]:
    """The large model's pipeline and the small transformer (same family, checked), on ``device``."""
    from diffusers import DiffusionPipeline

    from flowblending.loading import _dtype_kwargs, _not_available, check_compatible
    from flowblending.profile import ModelSpec, resolve_model_location

    from_kwargs: dict[str, Any] = {**_dtype_kwargs(dtype)}
    if config.local_files_only is not None:
        from_kwargs["local_files_only"] = config.local_files_only
    try:
        pipe = DiffusionPipeline.from_pretrained(
            resolve_model_location(config.large), revision=config.large_revision, **from_kwargs
        )
    except OSError as exc:
        raise _not_available(ModelSpec(config.large, config.large_revision), "large", exc) from exc
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
    check_compatible(pipe.transformer, small)
    pipe.to(device)
    small.to(device).eval()
    pipe.transformer.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe, small, used


def _check_work_dir(config: CalibrationConfig, work: Path, setting: dict[str, Any], procs: Processes) -> None:
    """Create the work dir, or refuse one that holds a calibration with other arguments (naming them)."""
    identity = {**config.identity(), "setting": setting}
    path = work / "config.json"
    if procs.is_main:
        work.mkdir(parents=True, exist_ok=True)
        (work / "units").mkdir(exist_ok=True)
        if not path.exists():
            _atomic_write_text(path, json.dumps(identity, indent=2, sort_keys=True))
        _atomic_write_text(work / "run.json", json.dumps(config.to_json(), indent=2))
    procs.wait()
    previous = json.loads(path.read_text(encoding="utf-8"))
    diffs = [k for k in sorted(set(previous) | set(identity)) if previous.get(k) != identity.get(k)]
    if diffs:
        detail = ", ".join(f"{k}: {previous.get(k)!r} -> {identity.get(k)!r}" for k in diffs[:4])
        raise CalibrationError(
            f"work dir {work} holds a calibration with other arguments ({detail}); use another --work-dir or "
            "delete it to start over."
        )


def _pair_info(pipe: Any, large: Any, small: Any, small_sub: str | None, n: int, call_kwargs: dict) -> dict:
    sched = pipe.scheduler
    sched_config = json.loads(json.dumps({k: v for k, v in sched.config.items() if not k.startswith("_")}))
    shift = sched_config.get("flow_shift", sched_config.get("shift"))
    return {
        "pipeline_class": type(pipe).__name__,
        "transformer_class": type(large).__name__,
        "parameters": {
            "large": sum(p.numel() for p in large.parameters()),
            "small": sum(p.numel() for p in small.parameters()),
        },
        "small_subfolder": small_sub,
        "scheduler_class": type(sched).__name__,
        "scheduler_config": sched_config,
        "flow_shift": float(shift) if shift else None,
        "num_steps": n,
        "call_kwargs": call_kwargs,
    }


def _uint8(frames: torch.Tensor) -> np.ndarray:
    """(F, H, W, 3) uint8 of a (1, F, 3, H, W) float video."""
    return (frames[0].clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def _delta(gen: Generator, before: dict[str, int]) -> dict[str, int]:
    return {r: n - before.get(r, 0) for r, n in gen.calls.items() if n - before.get(r, 0)}


def _injected_failure(procs: Processes, fail_after_units: int | None) -> int | None:
    """``fail_after_units`` or ``FLOWBLENDING_FAIL_AFTER=<rank>:<units>`` (tests simulate a dying rank)."""
    if fail_after_units is not None:
        return fail_after_units
    spec = os.environ.get("FLOWBLENDING_FAIL_AFTER")
    if spec:
        rank, _, count = spec.partition(":")
        if int(rank) == procs.rank:
            return int(count)
    return None


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
    from tqdm.auto import tqdm

    from .features import load_feature_extractor

    started = time.perf_counter()
    procs = processes()
    if procs.world_size > 1:
        base_log = log

        def log(message: str) -> None:  # every line says which rank printed it
            base_log(f"[{procs.label()}] {message}")

        log(f"started as {procs.label()}")
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and procs.world_size > 1:
        device = f"cuda:{procs.rank % max(1, torch.cuda.device_count())}"
    dtype = _resolve_dtype(device, config.dtype)
    out_path = Path(output) if output else None
    default_work = out_path.parent / (out_path.stem + ".work") if out_path else Path("flowblending-calibration.work")
    work = Path(work_dir) if work_dir else default_work
    log(f"loading large {config.large} and small {config.small} on {device} ({str(dtype).replace('torch.', '')})")
    pipe, small, small_sub = load_pair(config, device, dtype)
    large = pipe.transformer
    defaults = _call_defaults(pipe)
    call_kwargs: dict[str, Any] = {k: v for k, v in defaults.items() if k != "num_inference_steps"}
    for name in ("guidance_scale", "height", "width", "num_frames", "max_sequence_length"):
        if getattr(config, name) is not None:
            call_kwargs[name] = getattr(config, name)
    num_steps = config.num_inference_steps or int(defaults.get("num_inference_steps", 50))
    if config.flow_shift is not None:
        key = "flow_shift" if "flow_shift" in pipe.scheduler.config else "shift"
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, **{key: config.flow_shift})
    setting = {"num_inference_steps": num_steps, **call_kwargs, "scheduler": type(pipe.scheduler).__name__}
    _check_work_dir(config, work, setting, procs)
    if procs.is_main:
        pair = _pair_info(pipe, large, small, small_sub, num_steps, call_kwargs)
        _atomic_write_text(work / "pair.json", json.dumps(pair, indent=2))
    log(f"work dir {work}")

    full = config.method == "full"
    extractors = {"dino": load_feature_extractor(config.feature_model, device=device)}
    if config.clip_model:
        extractors["clip"] = load_feature_extractor(config.clip_model, device=device)
    fid_extractor = None
    if config.method != "divergence" and config.reference:
        same = config.fid_features in (None, config.feature_model)
        fid_extractor = extractors["dino"] if same else load_feature_extractor(config.fid_features, device=device)
    units = units_of(config)
    mine = procs.shard(units)
    early_steps = grid_steps(config.early_grid, num_steps, include_zero=True) if full else []
    gen = Generator(pipe, {"large": large, "small": small}, call_kwargs, num_steps)
    fail_after = _injected_failure(procs, fail_after_units)
    sample_keys = {u.key for u in units[: config.samples]}

    # -- pass 1 -------------------------------------------------------------------------------------------
    branches = 1 + len(early_steps)
    bar = tqdm(
        total=len(mine) * branches,
        desc=f"pass 1 (large-only + early sweep){_rank_tag(procs)}",
        unit="run",
        disable=not progress,
    )
    fresh = 0
    for unit in mine:
        udir = work / "units" / unit.key
        path = udir / "pass1.json"
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            if not full or data["early"]:
                bar.update(branches)
                continue
        udir.mkdir(parents=True, exist_ok=True)
        bar.set_postfix_str(f"prompt {unit.index + 1}/{len(config.prompts)} seed {unit.seed}")
        _pass1_unit(
            gen,
            unit,
            udir,
            early_steps,
            extractors,
            fid_extractor,
            full,
            unit.key in sample_keys,
            lambda _label: bar.update(1),
        )
        fresh += 1
        if fail_after is not None and fresh >= fail_after:
            raise RuntimeError(f"injected failure after {fresh} unit(s) on {procs.label()}")
    bar.close()
    procs.wait()

    # -- early boundary (every rank decides the same from the same files) -----------------------------------
    e_step = None
    if full:
        pass1 = read_pass1(work, units)
        e_step, _ = early_decision(config, early_block(pass1, units, early_steps, num_steps, config), num_steps)

    # -- pass 2 ---------------------------------------------------------------------------------------------
    if e_step is not None and fid_extractor is not None:
        if procs.is_main:
            _reference_stats(config, work, fid_extractor, log)
        procs.wait()
        steps = late_candidates(config, num_steps, e_step)
        interior = steps[1:-1]
        bar = tqdm(
            total=len(mine) * (1 + len(interior)),
            unit="run",
            disable=not progress,
            desc=f"pass 2 (late sweep from step {e_step}){_rank_tag(procs)}",
        )
        for unit in mine:
            udir = work / "units" / unit.key
            path = udir / f"pass2-e{e_step}.pt"
            if path.exists():
                bar.update(1 + len(interior))
                continue
            before = dict(gen.calls)
            rec = Recording.load(udir / "large.safetensors", device=pipe.device).restrict(range(e_step))
            keep = unit.key in sample_keys
            try:
                res = run_pass2(
                    gen,
                    _opened(unit),
                    rec,
                    e_step,
                    interior,
                    fid_extractor,
                    keep_frames=keep,
                    on_branch=lambda _label: bar.update(1),
                )
            except FlowBlendingError as exc:
                raise CalibrationError(f"prompt {unit.index + 1} ({unit.prompt!r}), seed {unit.seed}: {exc}") from exc
            feats = {**res.features, e_step: torch.load(udir / "large-fid.pt")}
            if keep:
                np.savez_compressed(
                    udir / f"samples-e{e_step}.npz", **{f"r{r}": _uint8(f) for r, f in res.frames.items()}
                )
            _atomic_torch_save({"features": {k: v.cpu() for k, v in feats.items()}, "calls": _delta(gen, before)}, path)
        bar.close()
        procs.wait()
    if config.method in ("sweep", "search"):
        _schedule_search(config, work, gen, units, mine, procs, extractors["dino"], fid_extractor, log, progress)
    if not procs.is_main:
        log(f"done: computed {dict(gen.calls)}; rank 0 writes the profile")
        return None
    return finalize(
        config,
        work,
        output=output,
        report_dir=report_dir,
        fid_extractor=fid_extractor,
        log=log,
        started=started,
        this_run=dict(gen.calls),
    )


def _rank_tag(procs: Processes) -> str:
    return f" [{procs.label()}]" if procs.world_size > 1 else ""


def _opened(unit: Unit) -> Unit:
    """The unit with its conditioning image opened (image-to-video)."""
    if unit.image is None or not isinstance(unit.image, str | Path):
        return unit
    from PIL import Image

    return Unit(unit.index, unit.prompt, unit.seed, Image.open(unit.image).convert("RGB"))


def _pass1_unit(
    gen: Generator,
    unit: Unit,
    udir: Path,
    early_steps: list[int],
    extractors: dict,
    fid_extractor: Any,
    full: bool,
    keep_samples: bool,
    on_branch: Callable[[str], None],
) -> None:
    from flowblending.cost import step_flops

    before = dict(gen.calls)
    try:
        res = run_pass1(
            gen, _opened(unit), early_steps, extractors, fid_extractor, with_early=full, on_branch=on_branch
        )
    except FlowBlendingError as exc:
        raise CalibrationError(f"prompt {unit.index + 1} ({unit.prompt!r}), seed {unit.seed}: {exc}") from exc
    n = gen.num_steps
    models = gen.models
    data = {
        "prompt": unit.prompt,
        "seed": unit.seed,
        "divergence": res.divergence,
        "sigmas": res.sigmas,
        "timesteps": [float(t) for t in gen.pipe.scheduler.timesteps[:n]],
        "early": {str(k): v for k, v in res.early.items()},
        "calls_per_step": len(res.step_calls),
        "flops_per_step": {r: step_flops(models[r], res.step_calls) for r in ("large", "small")},
        "calls": _delta(gen, before),
    }
    if full:
        res.recording.save(udir / "large.safetensors")
    if res.large_fid_features is not None:
        _atomic_torch_save(res.large_fid_features.cpu(), udir / "large-fid.pt")
    if keep_samples:
        small_video = {"small": _uint8(res.small_frames)} if res.small_frames is not None else {}
        np.savez_compressed(udir / "samples-pass1.npz", large=_uint8(res.large_frames), **small_video)
    _atomic_write_text(udir / "pass1.json", json.dumps(data))


def _reference_stats(config: CalibrationConfig, work: Path, fid_extractor: Any, log: Log) -> None:
    """FID statistics of the reference frames, computed once and cached in the work dir."""
    from .metrics import FeatureFID, iter_reference_frames

    cache = reference_cache(work, fid_extractor)
    if cache.exists():
        return
    fid = FeatureFID(fid_extractor)
    count = 0
    for batch in iter_reference_frames(config.reference, max_frames=config.reference_max_frames):
        fid.update(batch, real=True)
        count += batch.shape[0]
    if count == 0:
        raise CalibrationError(f"--reference {config.reference!r} holds no frames.")
    if count < fid.dim:
        log(f"warning: {count} reference frames is fewer than the FID feature width {fid.dim}: FID is unreliable.")
    _atomic_torch_save({"state": fid.export_state(), "count": count}, cache)


def _schedule_search(
    config: CalibrationConfig,
    work: Path,
    gen: Generator,
    units: list[Unit],
    mine: list[Unit],
    procs: Processes,
    extractor: Any,
    fid_extractor: Any,
    log: Log,
    progress: bool,
) -> None:
    """``--method sweep`` (every rank walks the trie of its units) or ``search`` (rank 0 beam-searches)."""
    from tqdm.auto import tqdm

    from .search import run_search, save_json, sweep_unit

    if fid_extractor is not None:
        if procs.is_main:
            _reference_stats(config, work, fid_extractor, log)
        procs.wait()
    k = config.segments
    if config.method == "sweep":
        bar = tqdm(
            total=len(mine) * 2**k,
            unit="schedule",
            disable=not progress,
            desc=f"sweep of 2^{k} schedules (prefix trie){_rank_tag(procs)}",
        )
        for unit in mine:
            path = work / "units" / unit.key / f"sweep-K{k}.pt"
            if not path.exists():
                result = sweep_unit(gen, _opened(unit), k, extractor, fid_extractor)
                _atomic_torch_save(result, path)
            bar.update(2**k)
        bar.close()
        procs.wait()
        return
    path = work / f"search-K{k}-B{config.beam_width}.json"
    if procs.is_main and not path.exists():
        pass1 = read_pass1(work, units)
        n = gen.num_steps
        divergence = [sum(pass1[u.key]["divergence"]["cosine"]["all"][i] for u in units) / len(units) for i in range(n)]
        ref = torch.load(reference_cache(work, fid_extractor)) if fid_extractor is not None else None
        log(f"beam search over {k} segments, beam width {config.beam_width}, on all {len(units)} units")
        result = run_search(
            gen,
            [_opened(u) for u in units],
            k,
            config.beam_width,
            config.tolerance,
            extractor,
            fid_extractor,
            ref["state"] if ref else None,
            pass1[units[0].key]["flops_per_step"],
            divergence,
        )
        save_json(path, result)
    procs.wait()
