"""Speed-up of the shipped WAN 2.1 and LTX-Video profiles on a GPU, with full-size random-init transformers.

No weights are needed: each transformer is built from its public config on the meta device in bf16, then
materialized on the GPU (``to_empty`` and a random init). Only transformer calls are timed, with random latents
and text embeddings of the paper's shapes (Wan: two CFG calls per step, batch 1; LTX: one batched
[uncond, cond] call, image-to-video timesteps), with CUDA events after a warm-up step of each model:

* large-only and small-only call the plain models; the blend runs the profile's schedule through
  ``flowblending.apply_profile``'s router (on a stub pipeline whose scheduler carries the step index);
* a few steps are timed per variant (by default the fewest that keep the profile's large/small proportion and
  every segment, e.g. 5 = L L S S L for WAN's 50-step L-S-L), alternating the variants per repeat; each timed
  run is extrapolated to the profile's full plan (WAN 30 large + 20 small steps, LTX 20 + 20) by adding the
  missing steps at the median step time of their role, so the switches are counted once, as in the full plan;
* printed: measured speed-up against the paper's (1.49x WAN on A100, 1.65x LTX on A6000) and the FLOP
  predictions (the profile's Table 2 figures; all ops counted at these shapes), and peak GPU memory of
  large-only (only the large model resident) and of the blend (both resident).

    python benchmarks/gpu_speedup.py [--pairs wan21,ltxv] [--wan-frames 61] [--repeats 2] [--json gpu.json]
    python benchmarks/gpu_speedup.py --toy --json toy.json     # tiny configs, float32, CPU (the tested path)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import platform
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Wan-AI/Wan2.1-T2V-14B-Diffusers and -1.3B-Diffusers, transformer/config.json (docs/profile-sources.md 1.2)
WAN_BASE = {
    "added_kv_proj_dim": None,
    "attention_head_dim": 128,
    "cross_attn_norm": True,
    "eps": 1e-06,
    "freq_dim": 256,
    "image_dim": None,
    "in_channels": 16,
    "out_channels": 16,
    "patch_size": [1, 2, 2],
    "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 1024,
    "text_dim": 4096,
}
WAN_14B = {**WAN_BASE, "num_attention_heads": 40, "ffn_dim": 13824, "num_layers": 40}
WAN_1_3B = {**WAN_BASE, "num_attention_heads": 12, "ffn_dim": 8960, "num_layers": 30}
# Lightricks/LTX-Video-0.9.7-dev (13B) and LTX-Video-0.9.5 (2B), transformer/config.json (docs/profile-sources.md 2.2)
LTX_BASE = {
    "activation_fn": "gelu-approximate",
    "attention_bias": True,
    "attention_out_bias": True,
    "caption_channels": 4096,
    "in_channels": 128,
    "out_channels": 128,
    "norm_elementwise_affine": False,
    "norm_eps": 1e-06,
    "patch_size": 1,
    "patch_size_t": 1,
    "qk_norm": "rms_norm_across_heads",
}
LTX_13B = {
    **LTX_BASE,
    "num_attention_heads": 32,
    "attention_head_dim": 128,
    "cross_attention_dim": 4096,
    "num_layers": 48,
}
LTX_2B = {
    **LTX_BASE,
    "num_attention_heads": 32,
    "attention_head_dim": 64,
    "cross_attention_dim": 2048,
    "num_layers": 28,
}

# --toy: same families, a few thousand parameters
TOY_WAN = {**WAN_BASE, "attention_head_dim": 16, "freq_dim": 32, "rope_max_seq_len": 32, "text_dim": 32}
TOY_LTX = {**LTX_BASE, "caption_channels": 32, "in_channels": 8, "out_channels": 8, "attention_head_dim": 8}


@dataclass(frozen=True)
class PairSpec:
    """One shipped profile's pair: configs, latent geometry and call pattern of its pipeline."""

    profile: str
    title: str
    family: str  # "wan" (two CFG calls of batch 1 per step) or "ltx" (one batched [uncond, cond] call)
    transformer_class: str
    large: dict[str, Any]
    small: dict[str, Any]
    paper_speedup: float
    paper_gpu: str
    text_tokens: int
    temporal_scale: int  # VAE compression: latent frames = (frames - 1) // temporal_scale + 1
    spatial_scale: int


PAIRS = {
    "wan21": PairSpec(
        "wan21", "WAN 2.1 T2V 14B + 1.3B", "wan", "WanTransformer3DModel", WAN_14B, WAN_1_3B, 1.49, "A100", 512, 4, 8
    ),
    "ltxv": PairSpec(
        "ltxv", "LTX-Video 13B + 2B", "ltx", "LTXVideoTransformer3DModel", LTX_13B, LTX_2B, 1.65, "A6000", 128, 8, 32
    ),
}
TOY = {
    "wan21": {
        "large": {**TOY_WAN, "num_attention_heads": 2, "ffn_dim": 64, "num_layers": 2},
        "small": {**TOY_WAN, "num_attention_heads": 1, "ffn_dim": 32, "num_layers": 1},
        "frames": 5,
        "height": 64,
        "width": 64,
        "text_tokens": 8,
    },
    "ltxv": {
        "large": {**TOY_LTX, "num_attention_heads": 4, "cross_attention_dim": 32, "num_layers": 2},
        "small": {**TOY_LTX, "num_attention_heads": 2, "cross_attention_dim": 16, "num_layers": 1},
        "frames": 9,
        "height": 128,
        "width": 128,
        "text_tokens": 8,
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", default="wan21,ltxv", help="comma-separated profiles to time: wan21, ltxv")
    p.add_argument("--toy", action="store_true", help="tiny configs, float32, CPU: checks the script, not a GPU")
    p.add_argument("--repeats", type=int, default=2, help="timed repeats of every variant (interleaved)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps of each model before timing")
    p.add_argument(
        "--timed-steps",
        type=int,
        default=None,
        help="steps per timed run (default: the fewest that keep the profile's large/small proportion)",
    )
    p.add_argument("--wan-frames", type=int, default=None, help="WAN frames (default: the profile's, 61)")
    p.add_argument("--ltx-frames", type=int, default=None, help="LTX frames (default: the profile's, 65)")
    p.add_argument("--height", type=int, default=None, help="default: the profile's (480)")
    p.add_argument("--width", type=int, default=None, help="default: the profile's (832)")
    p.add_argument("--device", default=None, help="default: cuda (cpu with --toy)")
    p.add_argument("--budget-s", type=float, default=420.0, help="stop adding repeats past this many seconds")
    p.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    args = p.parse_args(argv)
    unknown = sorted(set(args.pairs.split(",")) - set(PAIRS))
    if unknown:
        p.error(f"unknown pair(s) {', '.join(unknown)}; choose from {', '.join(PAIRS)}")
    if args.repeats < 1 or args.warmup < 0:
        p.error("--repeats must be >= 1 and --warmup >= 0")
    return args


# --- models -----------------------------------------------------------------------------------------------------
def materialize(cls: Any, config: dict[str, Any], device: Any, dtype: Any) -> Any:
    """``cls`` built from ``config`` on the meta device in ``dtype``, then allocated on ``device`` and random-init.

    Modules the class keeps in float32 (``_keep_in_fp32_modules``) stay float32, as with ``from_pretrained``.
    Parameters get each module's own ``reset_parameters`` where it has one (norm scales 1, biases 0, other
    tensors N(0, 0.02)); buffers computed in ``__init__`` (Wan's rotary tables) are copied from a one-block
    model built on ``device``, since ``to_empty`` leaves them uninitialized.
    """
    import torch

    with torch.device("meta"):
        model = cls.from_config(config)
    # as from_pretrained(dtype=...) does: the class's _keep_in_fp32_modules stay in float32
    keep = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())
    for prefix, module in model.named_modules():
        for kind in (module._parameters, module._buffers):
            for key, tensor in kind.items():
                if tensor is not None:
                    full = f"{prefix}.{key}" if prefix else key
                    wanted = torch.float32 if any(k in full.split(".") for k in keep) else dtype
                    if kind is module._parameters:
                        tensor.data = tensor.data.to(wanted)
                    else:
                        kind[key] = tensor.to(wanted)
    model = model.to_empty(device=device)
    with torch.no_grad():
        covered: set[int] = set()
        for module in model.modules():
            own = list(module.parameters(recurse=False))
            if own and hasattr(module, "reset_parameters"):
                module.reset_parameters()
                covered.update(id(p) for p in own)
        for name, param in model.named_parameters():
            if id(param) not in covered:
                if param.ndim <= 1:
                    param.fill_(1.0 if name.endswith("weight") else 0.0)
                else:
                    param.normal_(0.0, 0.02)
        buffers = dict(model.named_buffers())
        if buffers:
            with torch.device(device):
                donor = dict(cls.from_config({**config, "num_layers": 1}).named_buffers())
            for name, buf in buffers.items():
                src = donor.get(name, donor.get(re.sub(r"\.\d+\.", ".0.", name)))
                if src is None:
                    raise RuntimeError(f"cannot initialize buffer {name!r} of {cls.__name__}")
                buf.copy_(src.to(buf.dtype))
            del donor
    return model.eval().requires_grad_(False)


def gib(n_bytes: float) -> float:
    """Bytes in GiB."""
    return n_bytes / 2**30


def weight_bytes(model: Any) -> int:
    """Bytes held by a module's parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


# --- inputs -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Geometry:
    """Video size and its latent token grid."""

    frames: int
    height: int
    width: int
    latent: tuple[int, int, int, int]  # channels, frames, rows, columns
    tokens: int
    text_tokens: int


def geometry(spec: PairSpec, config: dict[str, Any], frames: int, height: int, width: int, text: int) -> Geometry:
    """Latent shape and transformer tokens of a ``frames`` x ``height`` x ``width`` video for ``spec``'s VAE."""
    f = (frames - 1) // spec.temporal_scale + 1
    h, w = height // spec.spatial_scale, width // spec.spatial_scale
    patch = config["patch_size"]
    pt, ph, pw = patch if isinstance(patch, list) else [config.get("patch_size_t", 1), patch, patch]
    tokens = (f // pt) * (h // ph) * (w // pw)
    return Geometry(frames, height, width, (config["in_channels"], f, h, w), tokens, text)


def step_calls(spec: PairSpec, geo: Geometry, config: dict[str, Any], device: Any, dtype: Any, fps: int) -> Any:
    """A function of the timestep giving one denoising step's calls as ``(cache_context name, kwargs)`` pairs."""
    import torch

    gen = torch.Generator(device="cpu").manual_seed(0)

    def randn(*shape: int) -> Any:
        return torch.randn(*shape, generator=gen).to(device=device, dtype=dtype)

    c, f, h, w = geo.latent
    text_dim = config.get("text_dim", config.get("caption_channels"))
    if spec.family == "wan":
        latents = randn(1, c, f, h, w)
        cond, uncond = randn(1, geo.text_tokens, text_dim), randn(1, geo.text_tokens, text_dim)

        def calls(t: float) -> list[tuple[str, dict[str, Any]]]:
            timestep = torch.full((1,), t, device=device)
            common = {"hidden_states": latents, "timestep": timestep, "return_dict": False}
            return [
                ("cond", {**common, "encoder_hidden_states": cond}),
                ("uncond", {**common, "encoder_hidden_states": uncond}),
            ]

        return calls
    latents = randn(2, f * h * w, c)  # packed [uncond, cond] batch, patch size 1
    text = randn(2, geo.text_tokens, text_dim)
    mask = torch.ones(2, geo.text_tokens, device=device, dtype=dtype)
    first_frame = torch.zeros(2, f * h * w, device=device)
    first_frame[:, : h * w] = 1.0  # image-to-video: the conditioning frame is at timestep 0

    def calls(t: float) -> list[tuple[str, dict[str, Any]]]:
        kwargs = {
            "hidden_states": latents,
            "encoder_hidden_states": text,
            "timestep": t * (1.0 - first_frame),
            "encoder_attention_mask": mask,
            "num_frames": f,
            "height": h,
            "width": w,
            "rope_interpolation_scale": (spec.temporal_scale / fps, spec.spatial_scale, spec.spatial_scale),
            "return_dict": False,
        }
        return [("cond_uncond", kwargs)]

    return calls


def counted_step_flops(cls: Any, config: dict[str, Any], calls: Sequence[tuple[str, dict[str, Any]]]) -> int:
    """FLOPs of one step (all ops, attention included), counted on the meta device by ``flowblending.cost``."""
    from flowblending.cost import measure_call_flops

    return sum(measure_call_flops((cls, config), (), kwargs) for _, kwargs in calls)


# --- timing -----------------------------------------------------------------------------------------------------
class Clock:
    """Marks in a run and milliseconds between them: CUDA events on a GPU, ``perf_counter`` on a CPU."""

    def __init__(self, device: Any):
        import torch

        self.cuda = torch.device(device).type == "cuda"

    def mark(self) -> Any:
        import torch

        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def between(self, marks: Sequence[Any]) -> list[float]:
        """Milliseconds between consecutive marks (waits for the GPU once)."""
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in itertools.pairwise(marks)]
        return [(b - a) * 1000 for a, b in itertools.pairwise(marks)]


class _Scheduler:
    """The two scheduler attributes the router reads: this run's timesteps and the current step index."""

    def __init__(self) -> None:
        self.timesteps: Any = None
        self.step_index: int | None = None
        self.sigmas: Any = None


class StubPipeline:
    """Just enough of a pipeline for ``apply_profile``: ``transformer`` and ``scheduler``."""

    def __init__(self, transformer: Any):
        self.transformer = transformer
        self.scheduler = _Scheduler()
        self.guidance_scale = 1.0


def run_steps(model: Any, calls: Callable[[float], Any], roles: Sequence[str], clock: Clock, stub: Any) -> list[float]:
    """Milliseconds of each of ``len(roles)`` steps of ``model`` (a plain transformer or the stub's router)."""
    import torch

    n = len(roles)
    stub.scheduler.timesteps = torch.linspace(999.0, 1.0, n)  # a new tensor: the router starts a new run
    marks = [clock.mark()]
    with torch.no_grad():
        for i in range(n):
            stub.scheduler.step_index = i
            t = float(stub.scheduler.timesteps[i])
            for name, kwargs in calls(t):
                ctx = model.cache_context(name) if hasattr(model, "cache_context") else contextlib.nullcontext()
                with ctx:
                    model(**kwargs)
            marks.append(clock.mark())
    return clock.between(marks)


def proportional_steps(schedule: Sequence[Any], num_steps: int, minimum: int = 4) -> int:
    """The fewest steps (>= ``minimum``) whose plan gives every segment a step and each role its full-plan share."""
    from flowblending.schedule import count_steps, plan_segments, plan_steps

    full = count_steps(plan_steps(schedule, num_steps))
    for k in range(minimum, num_steps + 1):
        if len(set(plan_segments(schedule, k))) < len(schedule):
            continue
        counts = count_steps(plan_steps(schedule, k))
        if all(counts.get(role, 0) * num_steps == c * k for role, c in full.items()):
            return k
    return num_steps


def bench_pair(spec: PairSpec, args: argparse.Namespace, device: Any, dtype: Any, started: float) -> dict[str, Any]:
    """Time large-only, the profile's blend and small-only for one pair; return its figures."""
    import diffusers
    import torch

    import flowblending
    from flowblending.cost import schedule_cost
    from flowblending.schedule import count_steps, pattern_of, plan_steps
    from flowblending.timing import paired_ratio, spread

    profile = flowblending.load_profile(spec.profile)
    cls = getattr(diffusers, spec.transformer_class)
    setting = profile.setting
    if args.toy:
        toy = TOY[spec.profile]
        configs = {"large": toy["large"], "small": toy["small"]}
        frames, height, width, text = toy["frames"], toy["height"], toy["width"], toy["text_tokens"]
    else:
        configs = {"large": spec.large, "small": spec.small}
        frames = (args.wan_frames if spec.family == "wan" else args.ltx_frames) or setting.num_frames
        height, width, text = args.height or setting.height, args.width or setting.width, spec.text_tokens
    geo = geometry(spec, configs["large"], frames, height, width, text)
    n = setting.num_inference_steps
    full_plan = plan_steps(profile.schedule, n)
    timed = args.timed_steps or proportional_steps(profile.schedule, n)
    timed_plan = plan_steps(profile.schedule, timed)
    plans = {"large-only": ("large",) * timed, "blend": timed_plan, "small-only": ("small",) * timed}
    calls = step_calls(spec, geo, configs["large"], device, dtype, setting.fps or 25)
    meta_calls = step_calls(spec, geo, configs["large"], "meta", torch.float32, setting.fps or 25)(500.0)
    flops = {role: counted_step_flops(cls, cfg, meta_calls) for role, cfg in configs.items()}
    cuda = torch.device(device).type == "cuda"
    clock = Clock(device)
    print(
        f"\n{spec.profile} ({spec.title}{', toy configs' if args.toy else ''}) on {device_name(device)}, "
        f"{str(dtype).removeprefix('torch.')}: {geo.frames}x{geo.height}x{geo.width} -> latent "
        f"{'x'.join(map(str, geo.latent[1:]))} ({geo.tokens} tokens), {geo.text_tokens} text tokens, "
        + ("2 CFG calls of batch 1 per step" if spec.family == "wan" else "1 call of batch 2 per step"),
        flush=True,
    )

    # large alone first: its peak memory is the large-only figure, with nothing else resident
    large = materialize(cls, configs["large"], device, dtype)
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    stub = StubPipeline(large)
    for _ in range(max(args.warmup, 1)):
        run_steps(large, calls, ("large",), clock, stub)
    peak = {"large-only": gib(torch.cuda.max_memory_allocated()) if cuda else None}
    small = materialize(cls, configs["small"], device, dtype)
    for _ in range(args.warmup):
        run_steps(small, calls, ("small",), clock, stub)
    with warnings.catch_warnings():  # the stub is not the profile's pipeline class
        warnings.simplefilter("ignore")
        flowblending.apply_profile(stub, profile, {"small": small})
    router = stub.transformer
    models = {"large-only": large, "blend": router, "small-only": small}

    step_ms: dict[str, list[list[float]]] = {label: [] for label in plans}
    peak["blend"] = 0.0 if cuda else None
    labels = list(plans)
    for rep in range(args.repeats):
        if rep and time.perf_counter() - started > args.budget_s:
            print(f"  time budget reached: {rep} repeat(s) of {args.repeats}", flush=True)
            break
        for label in labels[rep % 3 :] + labels[: rep % 3]:
            if cuda and label == "blend":
                torch.cuda.reset_peak_memory_stats()
            step_ms[label].append(run_steps(models[label], calls, plans[label], clock, stub))
            if cuda and label == "blend":
                peak["blend"] = max(peak["blend"], gib(torch.cuda.max_memory_allocated()))
    routed = dict(router.counters.steps)
    if routed != count_steps(timed_plan):
        raise SystemExit(f"the router ran {routed} steps per role, the timed plan is {count_steps(timed_plan)}")

    full_counts = count_steps(full_plan)

    def role_ms(label: str, role: str, rep: int | None = None) -> list[float]:
        reps = step_ms[label] if rep is None else [step_ms[label][rep]]
        return [ms for r in reps for ms, who in zip(r, plans[label], strict=True) if who == role]

    def extrapolated(label: str, rep: int) -> float:
        # the timed run as measured (its switches, like the full plan's, counted once), plus the steps it
        # lacks at the median step time of their role
        counts = full_counts if label == "blend" else {label.split("-")[0]: n}
        timed_counts = count_steps(plans[label])
        extra = sum(
            (k - timed_counts.get(role, 0)) * spread(role_ms(label, role, rep)).median for role, k in counts.items()
        )
        return (sum(step_ms[label][rep]) + extra) / 1000

    reps = range(len(step_ms["blend"]))
    per_rep = {label: [extrapolated(label, r) for r in reps] for label in plans}
    measured = paired_ratio(per_rep["large-only"], per_rep["blend"])
    timed_totals = {label: [sum(r) for r in step_ms[label]] for label in plans}
    profile_flop = schedule_cost(full_plan, profile.cost.flops_per_step, "large").predicted_speedup
    counted_flop = schedule_cost(full_plan, flops, "large").predicted_speedup
    weights = {"large": gib(weight_bytes(large)), "small": gib(weight_bytes(small))}
    result = {
        "profile": spec.profile,
        "title": spec.title,
        "toy": args.toy,
        "models": {
            role: {"config": cfg, "parameters": sum(p.numel() for p in m.parameters()), "weights_gib": weights[role]}
            for (role, cfg), m in zip(configs.items(), (large, small), strict=True)
        },
        "setting": {
            "frames": geo.frames,
            "height": geo.height,
            "width": geo.width,
            "latent": list(geo.latent),
            "tokens": geo.tokens,
            "text_tokens": geo.text_tokens,
            "calls_per_step": 2 if spec.family == "wan" else 1,
            "batch_per_call": 1 if spec.family == "wan" else 2,
        },
        "schedule": pattern_of(profile.schedule),
        "num_inference_steps": n,
        "plan_steps": full_counts,
        "timed_steps": timed,
        "timed_plan": list(timed_plan),
        "repeats": len(step_ms["blend"]),
        "step_ms": {
            label: {role: spread(role_ms(label, role)).to_dict() for role in dict.fromkeys(plans[label])}
            for label in plans
        },
        "timed_run_s": {label: spread([t / 1000 for t in v]).to_dict() for label, v in timed_totals.items()},
        "extrapolated_s": {label: spread(v).to_dict() for label, v in per_rep.items()},
        "measured_speedup": measured.to_dict(),
        "small_only_speedup": paired_ratio(per_rep["large-only"], per_rep["small-only"]).to_dict(),
        "paper_speedup": spec.paper_speedup,
        "paper_gpu": spec.paper_gpu,
        "measured_over_paper": measured.median / spec.paper_speedup,
        "flop_speedup_profile": profile_flop,
        "flop_speedup_counted": counted_flop,
        "counted_flops_per_step": flops,
        "peak_memory_gib": peak,
    }
    print_pair(result)
    del router, stub, models, large, small
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def device_name(device: Any) -> str:
    """The accelerator's name, or the CPU's platform."""
    import torch

    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def print_pair(r: dict[str, Any]) -> None:
    """Print one pair's table and speed-ups."""
    from flowblending.timing import spread

    w = r["models"]
    print(
        f"  weights: large {w['large']['weights_gib']:.2f} GiB ({w['large']['parameters'] / 1e9:.3f}B), small "
        f"{w['small']['weights_gib']:.2f} GiB ({w['small']['parameters'] / 1e9:.3f}B); timed {r['timed_steps']} "
        f"steps per variant ({''.join(x[0].upper() for x in r['timed_plan'])} for the blend) x {r['repeats']} "
        f"repeat(s), extrapolated to {r['num_inference_steps']} steps "
        f"({', '.join(f'{k} {v}' for k, v in r['plan_steps'].items())})"
    )
    print(f"  {'variant':12}{'ms / large step':>18}{'ms / small step':>18}{'s / full run':>14}{'peak GiB':>10}")
    for label, roles in r["step_ms"].items():
        name = r["schedule"] if label == "blend" else label
        cells = [f"{roles[role]['median']:.1f}" if role in roles else "-" for role in ("large", "small")]
        mem = r["peak_memory_gib"].get(label)
        print(
            f"  {name:12}{cells[0]:>18}{cells[1]:>18}{r['extrapolated_s'][label]['median']:>14.2f}"
            f"{'-' if mem is None else f'{mem:.2f}':>10}"
        )
    m = spread(r["measured_speedup"]["samples"])
    print(
        f"  speed-up of {r['schedule']} over large-only: measured {m:.3f}x; paper {r['paper_speedup']:.2f}x "
        f"({r['paper_gpu']}); measured / paper {r['measured_over_paper']:.3f}; FLOP-predicted "
        f"{r['flop_speedup_profile']:.3f}x (profile, paper Table 2) and {r['flop_speedup_counted']:.3f}x "
        "(all ops counted at these shapes)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark for the chosen pairs; print and return the figures (also written to ``--json``)."""
    args = parse_args(argv)
    import diffusers
    import torch

    started = time.perf_counter()
    device = args.device or ("cpu" if args.toy else "cuda")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --toy to check the script on a CPU")
    dtype = torch.float32 if args.toy else torch.bfloat16
    results: dict[str, Any] = {
        "device": device_name(device),
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "toy": args.toy,
        "pairs": {},
    }
    for name in args.pairs.split(","):
        results["pairs"][name] = bench_pair(PAIRS[name], args, device, dtype, started)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    print(f"\ndone in {results['wall_s']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


if __name__ == "__main__":
    main()
