"""Run a calibration: load the pair, go through prompts x seeds with a resumable work dir, choose, write.

Work directory layout (``--work-dir``)::

    config.json                 the arguments that change results (a resume with other values is refused)
    reference-<feature>.pt      FID features of the reference frames (computed once)
    units/<idx>-s<seed>/
        pass1.json              divergence per step, early-sweep metrics, FLOPs per step
        large.safetensors       the large-only recording of steps < last early candidate (freed after pass 2)
        pass2-e<step>.pt        FID features of every late candidate for early boundary <step>
        samples.npz             uint8 frames for the report (first --samples units)

Every file is written atomically, so an interrupted run resumes with the same command and recomputes only the
unit it was working on.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowblending.errors import FlowBlendingError
from flowblending.schedule import Segment, first_step, merge_segments

from .boundaries import early_curve_premise, find_early_boundary, find_late_boundary, late_curve_premise
from .config import CalibrationConfig, CalibrationError
from .divergence import divergence_boundaries, divergence_premise, divergence_stats
from .protocol import Generator, Unit, naive_calls, run_pass1, run_pass2, shared_calls
from .replay import Recording

Log = Callable[[str], None]


@dataclass(frozen=True)
class CalibrationOutcome:
    """What a calibration produced."""

    profile: Any
    profile_path: Path | None
    report_path: Path | None
    calibration: dict
    summary: str


# --- small helpers -----------------------------------------------------------------------------------------
def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def grid_steps(spacing: float, num_steps: int, *, include_zero: bool) -> list[int]:
    """Candidate steps every ``spacing`` of the process (0.1 -> 0, 10%, 20%, ... of the steps), without N."""
    count = max(1, round(1 / spacing))
    steps = {first_step(i / count, num_steps) for i in range(0 if include_zero else 1, count)}
    return sorted(s for s in steps if 0 <= s < num_steps and (include_zero or s > 0))


def _call_defaults(pipe: Any) -> dict[str, Any]:
    params = inspect.signature(pipe.__call__).parameters
    names = ("num_inference_steps", "guidance_scale", "height", "width", "num_frames", "max_sequence_length")
    return {n: params[n].default for n in names if n in params and params[n].default is not inspect.Parameter.empty}


def _resolve_dtype(device: str, dtype: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


# --- loading ----------------------------------------------------------------------------------------------
def load_pair(config: CalibrationConfig, device: str, dtype: torch.dtype) -> tuple[Any, Any, str | None]:
    """The large model's pipeline and the small transformer (same family, checked), on ``device``."""
    from diffusers import DiffusionPipeline

    from flowblending.loading import _dtype_kwargs, check_compatible
    from flowblending.profile import ModelSpec, resolve_model_location

    from_kwargs: dict[str, Any] = {**_dtype_kwargs(dtype)}
    if config.local_files_only is not None:
        from_kwargs["local_files_only"] = config.local_files_only
    try:
        pipe = DiffusionPipeline.from_pretrained(
            resolve_model_location(config.large), revision=config.large_revision, **from_kwargs
        )
    except OSError as exc:
        from flowblending.loading import _not_available

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
        from flowblending.loading import _not_available

        raise _not_available(ModelSpec(config.small, config.small_revision, "transformer"), "small", last_exc)
    check_compatible(pipe.transformer, small)
    pipe.to(device)
    small.to(device).eval()
    pipe.transformer.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe, small, used


def _work_dir(config: CalibrationConfig, work_dir: Path, setting: dict[str, Any]) -> Path:
    work_dir.mkdir(parents=True, exist_ok=True)
    identity = {**config.identity(), "setting": setting}
    path = work_dir / "config.json"
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        diffs = [k for k in sorted(set(previous) | set(identity)) if previous.get(k) != identity.get(k)]
        if diffs:
            detail = ", ".join(f"{k}: {previous.get(k)!r} -> {identity.get(k)!r}" for k in diffs[:4])
            raise CalibrationError(
                f"work dir {work_dir} holds a calibration with other arguments ({detail}); use another --work-dir "
                "or delete it to start over."
            )
    else:
        _atomic_write_text(path, json.dumps(identity, indent=2, sort_keys=True))
    (work_dir / "units").mkdir(exist_ok=True)
    return work_dir


# --- the run ----------------------------------------------------------------------------------------------
def calibrate(
    config: CalibrationConfig,
    *,
    output: str | os.PathLike | None = None,
    report_dir: str | os.PathLike | None = None,
    work_dir: str | os.PathLike | None = None,
    log: Log = print,
    progress: bool = True,
    fail_after_units: int | None = None,
) -> CalibrationOutcome:
    """Calibrate a large/small pair on prompts x seeds; write the profile (and report) and return them.

    ``fail_after_units`` raises after that many freshly computed units (tests use it to simulate a crash).
    """
    from tqdm.auto import tqdm

    from .features import load_feature_extractor

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = _resolve_dtype(device, config.dtype)
    out_path = Path(output) if output else None
    work = (
        Path(work_dir)
        if work_dir
        else (
            out_path.with_suffix("").parent / (out_path.stem + ".work")
            if out_path
            else Path("flowblending-calibration.work")
        )
    )
    started = time.perf_counter()
    log(f"loading large {config.large} and small {config.small} on {device} ({str(dtype).replace('torch.', '')})")
    pipe, small, small_sub = load_pair(config, device, dtype)
    large = pipe.transformer
    defaults = _call_defaults(pipe)
    call_kwargs: dict[str, Any] = {**defaults}
    for name in ("guidance_scale", "height", "width", "num_frames", "max_sequence_length"):
        if getattr(config, name) is not None:
            call_kwargs[name] = getattr(config, name)
    num_steps = config.num_inference_steps or int(defaults.get("num_inference_steps", 50))
    call_kwargs.pop("num_inference_steps", None)
    if config.flow_shift is not None:
        key = "flow_shift" if "flow_shift" in pipe.scheduler.config else "shift"
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, **{key: config.flow_shift})
    setting = {"num_inference_steps": num_steps, **call_kwargs, "scheduler": type(pipe.scheduler).__name__}
    work = _work_dir(config, work, setting)
    log(f"work dir {work}")

    extractors = {"dino": load_feature_extractor(config.feature_model, device=device)}
    if config.clip_model:
        extractors["clip"] = load_feature_extractor(config.clip_model, device=device)
    full = config.method == "full"
    fid_extractor = None
    if full and config.reference:
        fid_extractor = (
            extractors["dino"]
            if config.fid_features in (None, config.feature_model)
            else load_feature_extractor(config.fid_features, device=device)
        )
    units = [
        Unit(i, p, s, _open_image(config.images[i]) if config.images else None)
        for i, p in enumerate(config.prompts)
        for s in config.seeds
    ]
    early_steps = grid_steps(config.early_grid, num_steps, include_zero=True) if full else []
    gen = Generator(pipe, {"large": large, "small": small}, call_kwargs, num_steps)
    calls_per_step = None

    # -- pass 1: recorded large-only run + divergence + early sweep -------------------------------------------
    branches1 = 1 + len(early_steps)
    bar = tqdm(total=len(units) * branches1, desc="pass 1: large-only + early sweep", unit="run", disable=not progress)
    fresh = 0
    pass1: dict[str, dict] = {}
    for unit in units:
        udir = work / "units" / unit.key
        udir.mkdir(exist_ok=True)
        path = udir / "pass1.json"
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            if not full or data["early"]:
                pass1[unit.key] = data
                bar.update(branches1)
                continue
        bar.set_postfix_str(f"prompt {unit.index + 1}/{len(config.prompts)} seed {unit.seed}")
        before = dict(gen.calls)
        try:
            res = run_pass1(
                gen,
                unit,
                early_steps,
                extractors,
                fid_extractor,
                with_early=full,
                on_branch=lambda _label: bar.update(1),
            )
        except FlowBlendingError as exc:
            raise CalibrationError(f"prompt {unit.index + 1} ({unit.prompt!r}), seed {unit.seed}: {exc}") from exc
        from flowblending.cost import step_flops

        data = {
            "prompt": unit.prompt,
            "seed": unit.seed,
            "divergence": res.divergence,
            "sigmas": res.sigmas,
            "timesteps": [float(t) for t in pipe.scheduler.timesteps[:num_steps]],
            "early": {str(k): v for k, v in res.early.items()},
            "calls_per_step": len(res.step_calls),
            "flops_per_step": {"large": step_flops(large, res.step_calls), "small": step_flops(small, res.step_calls)},
            "calls": _delta(gen, before),
        }
        if full:
            res.recording.save(udir / "large.safetensors")
        if res.large_fid_features is not None:
            _atomic_torch_save(res.large_fid_features.cpu(), udir / "large-fid.pt")
        if unit.index * len(config.seeds) + config.seeds.index(unit.seed) < config.samples:
            small_video = {"small": _uint8(res.small_frames)} if res.small_frames is not None else {}
            np.savez_compressed(udir / "samples-pass1.npz", large=_uint8(res.large_frames), **small_video)
        _atomic_write_text(path, json.dumps(data))
        pass1[unit.key] = data
        fresh += 1
        if fail_after_units is not None and fresh >= fail_after_units:
            raise RuntimeError(f"injected failure after {fresh} unit(s)")
    bar.close()
    first = pass1[units[0].key]
    calls_per_step = first["calls_per_step"]

    # -- aggregate: divergence and early boundary ----------------------------------------------------------
    calibration: dict[str, Any] = {
        "method": config.method,
        "num_steps": num_steps,
        "num_prompts": len(config.prompts),
        "seeds": list(config.seeds),
        "feature_model": config.feature_model,
        "notes": list(config.notes),
    }
    sigmas = first["sigmas"]
    div = _divergence_block(pass1, units, num_steps, sigmas)
    calibration["divergence"] = div
    failed: list[str] = []
    early_block, late_block = None, None
    proxy_e, proxy_l = div["proxy_boundaries"]
    if not full:
        failed += [f"divergence: {p}" for p in div["premise"]]
        schedule = _lsl(proxy_e, proxy_l) if not div["premise"] else _large_only()
    else:
        early_block = _early_block(pass1, units, early_steps, num_steps, config)
        calibration["early"] = early_block
        failed += [f"early: {p}" for p in early_block["premise"]]
        e_step = round(early_block["chosen"]["x"] / 100 * num_steps)
        if config.early_boundary is not None:
            e_step = first_step(config.early_boundary, num_steps)
            calibration["notes"].append(
                f"early boundary fixed by --early-boundary {config.early_boundary} (step {e_step}); "
                "Algorithm 1's choice is reported but not used."
            )
            failed = [f for f in failed if not f.startswith("early: ")]
        if (config.early_boundary is None and early_block["premise"]) or e_step >= num_steps:
            schedule = _large_only()
            log("early sweep: the premise does not hold (" + "; ".join(early_block["premise"]) + ")")
        elif fid_extractor is None:
            late_frac = max(proxy_l, e_step / num_steps)
            late_block = {
                "source": "divergence",
                "x": None,
                "fid": None,
                "chosen": {"index": None, "x": 100 * late_frac, "fid": None},
                "premise": [],
                "feature": None,
                "reference_frames": 0,
            }
            schedule = _lsl(e_step / num_steps, late_frac)
            calibration["notes"].append("no --reference: the late boundary comes from the divergence curve.")
        else:
            late_block = _late_sweep(config, work, units, gen, fid_extractor, e_step, num_steps, pass1, log, progress)
            failed += [f"late: {p}" for p in late_block["premise"]]
            r_step = round(late_block["chosen"]["x"] / 100 * num_steps)
            schedule = _lsl(e_step / num_steps, r_step / num_steps)
        calibration["late"] = late_block
    calibration["premise"] = {"holds": not failed, "failed": failed}

    # -- counts ---------------------------------------------------------------------------------------------
    late_steps = grid_steps(config.late_grid, num_steps, include_zero=False)
    e_for_count = None
    if late_block is not None and late_block.get("source") == "fid":
        e_for_count = late_block["steps"][0]
    naive = naive_calls(num_steps, calls_per_step, early_steps, e_for_count, late_steps)
    naive = {r: n * len(units) for r, n in naive.items()}
    computed = _sum_calls(
        [pass1[u.key]["calls"] for u in units] + [late_block.get("computed_calls", {}) if late_block else {}]
    )
    expected = shared_calls(num_steps, calls_per_step, early_steps, e_for_count, late_steps)
    expected = {r: v * len(units) for r, v in expected.items()}
    calibration["calls"] = {
        "computed": computed,
        "naive": naive,
        "formula": expected,
        "calls_per_step": calls_per_step,
        "this_run": dict(gen.calls),
    }

    # -- profile ---------------------------------------------------------------------------------------------
    profile = _make_profile(config, pipe, large, small, small_sub, num_steps, call_kwargs, schedule, first, calibration)
    profile_path = None
    if out_path is not None:
        from flowblending.profile import save_profile

        profile_path = save_profile(profile, out_path)
    report_path = None
    if report_dir is not None:
        from .report import write_report

        samples = _samples(work, units, config, schedule, num_steps)
        report_path = write_report(calibration, report_dir, profile=profile.to_dict(), samples=samples)
    summary = _summary(profile, calibration, profile_path, report_path, time.perf_counter() - started)
    log(summary)
    return CalibrationOutcome(profile, profile_path, report_path, calibration, summary)


def _open_image(path: str) -> Any:
    from PIL import Image

    return Image.open(path).convert("RGB")


def _uint8(frames: torch.Tensor) -> np.ndarray:
    """(F, H, W, 3) uint8 of a (1, F, 3, H, W) float video."""
    return (frames[0].clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def _large_only() -> tuple[Segment, ...]:
    return (Segment("large", 0.0, 1.0),)


def _lsl(early: float, late: float) -> tuple[Segment, ...]:
    """Large [0, early), small [early, late), large [late, 1), with empty segments dropped."""
    early, late = round(early, 6), round(late, 6)
    parts = [Segment("large", 0.0, early)] if early > 0 else []
    if late > early:
        parts.append(Segment("small", early, late))
    if late < 1:
        parts.append(Segment("large", max(late, early), 1.0))
    return merge_segments(parts) if parts else _large_only()


def _stats(rows: list[list[float]]) -> dict[str, list[float]]:
    s = divergence_stats(np.asarray(rows, dtype=np.float64))
    return {"mean": [float(v) for v in s["mean"]], "std": [float(v) for v in s["std"]]}


def _divergence_block(pass1: dict, units: list[Unit], n: int, sigmas: list[float]) -> dict[str, Any]:
    """Mean and spread over prompts per step of both distances, per call, and the proxy boundaries (sec 5.1)."""
    block: dict[str, Any] = {"fraction": [i / n for i in range(n)], "sigma": sigmas}
    for metric in ("cosine", "l2"):
        block[metric] = _stats([pass1[u.key]["divergence"][metric]["all"] for u in units])
    labels = [k for k in pass1[units[0].key]["divergence"]["cosine"] if k != "all"]
    block["per_call"] = {
        label: {m: _stats([pass1[u.key]["divergence"][m][label] for u in units]) for m in ("cosine", "l2")}
        for label in labels
    }
    mean, std = np.asarray(block["cosine"]["mean"]), np.asarray(block["cosine"]["std"])
    early, late = divergence_boundaries(mean, std)
    block["proxy_boundaries"] = [float(early), float(late)]
    block["premise"] = divergence_premise(mean, std, early, late)
    return block


def _early_block(pass1: dict, units: list[Unit], early_steps: list[int], n: int, config: CalibrationConfig) -> dict:
    """Mean similarity to large-only per switch point, and Algorithm 1's choice (sec 4.2, App. B)."""
    xs = [100 * k / n for k in early_steps] + [100.0]
    block: dict[str, Any] = {"x": xs, "steps": [*early_steps, n], "alpha": config.alpha, "floor": config.floor}
    metrics = list(pass1[units[0].key]["early"][str(early_steps[0])])
    for metric in metrics:
        top = 1.0 if metric in ("dino", "clip", "ssim") else math.inf
        rows = [[pass1[u.key]["early"][str(k)][metric] for k in early_steps] + [top] for u in units]
        if metric == "psnr":  # large-only against itself is infinite: leave the last point out of the stats
            rows = [r[:-1] for r in rows]
            s = _stats(rows)
            block[metric] = {"mean": [*s["mean"], None], "std": [*s["std"], None]}
        else:
            block[metric] = _stats(rows)
    block.setdefault("clip", None)
    y = block["dino"]["mean"]
    k, xk, yk = find_early_boundary(xs, y, config.alpha)
    block["chosen"] = {"index": int(k), "x": float(xk), "y": float(yk)}
    block["premise"] = early_curve_premise(xs, y, k, config.floor)
    return block


def _reference_stats(config: CalibrationConfig, work: Path, fid_extractor: Any, log: Log) -> tuple[dict, int]:
    """FID statistics of the reference frames (cached in the work dir)."""
    from .metrics import FeatureFID, iter_reference_frames

    name = getattr(fid_extractor, "name", "features").replace("/", "_")
    cache = work / f"reference-{name}.pt"
    if cache.exists():
        data = torch.load(cache)
        return data["state"], data["count"]
    fid = FeatureFID(fid_extractor)
    count = 0
    for batch in iter_reference_frames(config.reference, max_frames=config.reference_max_frames):
        fid.update(batch, real=True)
        count += batch.shape[0]
    if count == 0:
        raise CalibrationError(f"--reference {config.reference!r} holds no frames.")
    if count < fid.dim:
        log(f"warning: {count} reference frames is fewer than the FID feature width {fid.dim}: FID is unreliable.")
    state = fid.export_state()
    _atomic_torch_save({"state": state, "count": count}, cache)
    return state, count


def _fid_state(features: torch.Tensor, dim: int, name: str) -> dict[str, Any]:
    """FeatureFID statistics of generated ("fake") frame features (what torchmetrics accumulates)."""
    f = features.to(torch.float64)
    zeros = torch.zeros(dim, dtype=torch.float64)
    return {
        "real_features_sum": zeros.clone(),
        "real_features_cov_sum": torch.zeros(dim, dim, dtype=torch.float64),
        "real_features_num_samples": torch.tensor(0),
        "fake_features_sum": f.sum(dim=0),
        "fake_features_cov_sum": f.t().mm(f),
        "fake_features_num_samples": torch.tensor(f.shape[0]),
        "feature_name": name,
        "num_features": dim,
    }


def _late_sweep(
    config: CalibrationConfig,
    work: Path,
    units: list[Unit],
    gen: Generator,
    fid_extractor: Any,
    e_step: int,
    n: int,
    pass1: dict,
    log: Log,
    progress: bool,
) -> dict:
    """Pass 2 over all units and the FID V-curve over re-entry points (sec 4.3)."""
    from tqdm.auto import tqdm

    from .metrics import FeatureFID

    ref_state, ref_count = _reference_stats(config, work, fid_extractor, log)
    late_steps = [r for r in grid_steps(config.late_grid, n, include_zero=False) if e_step < r < n]
    candidates = [e_step, *late_steps, n]  # e: large-only (no small steps), n: L->S->S (no re-entry)
    bar = tqdm(
        total=len(units) * (1 + len(late_steps)),
        desc=f"pass 2: late sweep (early step {e_step})",
        unit="run",
        disable=not progress,
    )
    per_unit: dict[str, dict[int, torch.Tensor]] = {}
    computed: list[dict[str, int]] = []
    for i, unit in enumerate(units):
        udir = work / "units" / unit.key
        path = udir / f"pass2-e{e_step}.pt"
        if path.exists():
            saved = torch.load(path)
            per_unit[unit.key] = saved["features"]
            computed.append(saved["calls"])
            bar.update(1 + len(late_steps))
            continue
        before = dict(gen.calls)
        rec = Recording.load(udir / "large.safetensors", device=gen.pipe.device).restrict(range(e_step))
        keep = i < config.samples
        res = run_pass2(
            gen, unit, rec, e_step, late_steps, fid_extractor, keep_frames=keep, on_branch=lambda _label: bar.update(1)
        )
        feats = {**res.features, e_step: torch.load(udir / "large-fid.pt")}
        _atomic_torch_save({"features": {k: v.cpu() for k, v in feats.items()}, "calls": _delta(gen, before)}, path)
        if keep:
            np.savez_compressed(udir / f"samples-e{e_step}.npz", **{f"r{r}": _uint8(f) for r, f in res.frames.items()})
        per_unit[unit.key] = feats
        computed.append(_delta(gen, before))
    bar.close()
    fid_values = []
    for r in candidates:
        fid = FeatureFID(fid_extractor)
        fid.merge(ref_state)
        for unit in units:
            fid.merge(_fid_state(per_unit[unit.key][r], fid.dim, fid.name))
        fid_values.append(float(fid.compute()))
    xs = [100 * r / n for r in candidates]
    k, xk, fk = find_late_boundary(xs, fid_values)
    return {
        "source": "fid",
        "x": xs,
        "steps": candidates,
        "fid": fid_values,
        "chosen": {"index": int(k), "x": float(xk), "fid": float(fk)},
        "premise": late_curve_premise(xs, fid_values, k),
        "feature": getattr(fid_extractor, "name", None),
        "reference_frames": ref_count,
        "computed_calls": _sum_calls(computed),
    }


def _delta(gen: Generator, before: dict[str, int]) -> dict[str, int]:
    return {r: n - before.get(r, 0) for r, n in gen.calls.items() if n - before.get(r, 0)}


def _sum_calls(parts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for role, n in part.items():
            total[role] = total.get(role, 0) + n
    return total


def _make_profile(
    config: CalibrationConfig,
    pipe: Any,
    large: Any,
    small: Any,
    small_sub: str | None,
    num_steps: int,
    call_kwargs: dict[str, Any],
    schedule: tuple[Segment, ...],
    first: dict,
    calibration: dict,
) -> Any:
    from flowblending.compose import make_profile
    from flowblending.profile import ModelSpec, SchedulerSpec, Setting

    sched = pipe.scheduler
    sched_config = json.loads(json.dumps({k: v for k, v in sched.config.items() if not k.startswith("_")}))
    shift = sched_config.get("flow_shift", sched_config.get("shift"))
    setting = Setting(
        num_inference_steps=num_steps,
        scheduler=SchedulerSpec(type(sched).__name__, float(shift) if shift else None, sched_config),
        guidance_scale=call_kwargs.get("guidance_scale"),
        height=call_kwargs.get("height"),
        width=call_kwargs.get("width"),
        num_frames=call_kwargs.get("num_frames"),
        max_sequence_length=call_kwargs.get("max_sequence_length"),
    )
    models = {
        "large": ModelSpec(
            config.large,
            config.large_revision,
            "transformer",
            type(large).__name__,
            sum(p.numel() for p in large.parameters()),
        ),
        "small": ModelSpec(
            config.small,
            config.small_revision,
            small_sub,
            type(small).__name__,
            sum(p.numel() for p in small.parameters()),
        ),
    }
    return make_profile(
        name=config.name,
        description=f"Calibrated by flowblending on {len(config.prompts)} prompt(s) x {len(config.seeds)} seed(s) "
        f"({config.method} method).",
        pipeline_class=type(pipe).__name__,
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


def _samples(
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


def _summary(
    profile: Any, calibration: dict, profile_path: Path | None, report_path: Path | None, seconds: float
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
    premise = calibration["premise"]
    if premise["holds"]:
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
