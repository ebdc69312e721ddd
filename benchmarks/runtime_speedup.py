"""Router overhead, blend efficiency and speed-up of a large/small blend, measured in one interleaved run.

Four variants of one pipeline are timed, alternating within every repeat (the order rotates per repeat):
plain large (``pipe.transformer`` is the large model, no router), router all-large, router L-S-L (or the
profile's blend) and plain small. Denoising only (``output_type="latent"``: text encoding and the transformer
loop, no VAE decode). Printed, each as the median over repeats and its range, from per-repeat ratios:

* router overhead = router all-large / plain large (goal <= 1.01);
* blend efficiency = router blend / the time predicted from per-role step times of the same repeat
  (plain large and plain small, step-weighted; goal <= 1.01);
* measured speed-up (plain large / router blend) against the ideal one (from step times) and the FLOP one.

Pairs: ``compute`` (default) is a Wan pair built from configs (random init, about 20.2M and 1.2M parameters at
128x128x9, compute-bound on a CPU), saved to a temporary folder and loaded back with ``flowblending.load_pipeline``;
``demo`` is the shipped demo profile's trained pair (~2 ms calls, dominated by per-call overhead).

    python benchmarks/runtime_speedup.py [--pair compute|demo] [--repeats 7] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from calibrate.demo.data import PROMPTS

VARIANTS = ("plain large", "router all-large", "router blend", "plain small")

# The compute-bound pair (about 20.2M and 1.2M parameters): at 128x128x9 one large step (two CFG calls) takes
# ~300 ms on this CPU, so the router's per-call work is small against the transformer's.
LARGE = {"layers": 8, "heads": 6, "ffn": 1536, "head_dim": 64}
SMALL = {"layers": 4, "heads": 2, "ffn": 512, "head_dim": 64}


def compute_size(layers: int, heads: int, ffn: int, head_dim: int):
    """A :class:`flowblending.testing.wan.WanSize` with full-size time embeddings and RoPE range."""
    from flowblending.testing.wan import WanSize

    return WanSize(layers, heads, head_dim, ffn, freq_dim=256, rope_max_seq_len=1024)


def add_compute_pair_args(g: Any) -> None:
    """The options of the compute-bound pair (steps, video size, both models' sizes) on a parser or group."""
    g.add_argument("--steps", type=int, default=10, help="denoising steps")
    g.add_argument("--width", type=int, default=128)
    g.add_argument("--height", type=int, default=128)
    g.add_argument("--frames", type=int, default=9)
    g.add_argument("--head-dim", type=int, default=LARGE["head_dim"])
    g.add_argument("--large-layers", type=int, default=LARGE["layers"])
    g.add_argument("--large-heads", type=int, default=LARGE["heads"])
    g.add_argument("--large-ffn", type=int, default=LARGE["ffn"])
    g.add_argument("--small-layers", type=int, default=SMALL["layers"])
    g.add_argument("--small-heads", type=int, default=SMALL["heads"])
    g.add_argument("--small-ffn", type=int, default=SMALL["ffn"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (sizes of the compute-bound pair, repeats, threads, output)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pair", choices=("compute", "demo"), default="compute")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats (>= 5 for a spread worth reading)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds before the repeats")
    p.add_argument("--prompts", type=int, default=1, help="generations per variant per repeat")
    p.add_argument("--threads", type=int, default=2, help="torch threads (0: torch's choice)")
    p.add_argument("--boundaries", default=None, help="L-S-L boundaries, e.g. 0.4,0.8 (default: the profile's)")
    p.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    add_compute_pair_args(p.add_argument_group("compute-bound pair (--pair compute)"))
    args = p.parse_args(argv)
    if args.repeats < 1 or args.prompts < 1 or not 1 <= args.prompts <= len(PROMPTS):
        p.error(f"--repeats must be >= 1 and --prompts in 1..{len(PROMPTS)}")
    return args


def build(args: argparse.Namespace, workdir: Path) -> tuple[Any, Any, dict[str, Any]]:
    """The profile and its pipeline (router installed, every role loaded), and a description of the pair."""
    import flowblending

    if args.pair == "demo":
        profile = flowblending.load_profile("demo")
        about = {"pair": "demo", "source": "shipped demo profile (trained weights in calibrate.demo)"}
    else:
        from flowblending.testing import save_tiny_profile
        from flowblending.testing.wan import save_wan_pair

        large = compute_size(args.large_layers, args.large_heads, args.large_ffn, args.head_dim)
        small = compute_size(args.small_layers, args.small_heads, args.small_ffn, args.head_dim)
        pair = save_wan_pair(
            workdir / "pair", large=large, small=small, height=args.height, width=args.width, frames=args.frames
        )
        path = save_tiny_profile(
            pair, workdir / "profile.json", pattern="LSL", boundaries=(0.4, 0.8), steps=args.steps, name="compute"
        )
        profile = flowblending.load_profile(path)
        about = {"pair": "compute", "large": vars(large), "small": vars(small)}
    pipe = flowblending.load_pipeline(profile, roles=tuple(profile.models))
    pipe.set_progress_bar_config(disable=True)
    return profile, pipe, about


def blend_schedule(profile: Any, boundaries: str | None) -> tuple[Any, ...]:
    """The blend to time: ``--boundaries``, else the profile's schedule, else its divergence-proxy L-S-L."""
    from flowblending.schedule import segments_from_pattern

    if boundaries:
        return segments_from_pattern("LSL", [float(x) for x in boundaries.split(",")])
    if any(seg.model == "small" for seg in profile.schedule):
        return tuple(profile.schedule)
    return segments_from_pattern("LSL", (profile.calibration or {})["divergence"]["proxy_boundaries"])


def announce_round(call: int, variants: int, warmup: int, repeats: int) -> None:
    """Print "round r of R" to stderr when ``call`` (the 1-based count of prepare calls) starts a timed round."""
    if (call - 1) % variants == 0 and call <= variants * (warmup + repeats):
        rnd = (call - 1) // variants - warmup + 1
        print(f"round {rnd} of {repeats}" + (" (warm-up)" if rnd < 1 else ""), file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    """CPU count, platform and torch version of this machine."""
    import torch

    return {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the figures and return them (also written to ``--json``)."""
    args = parse_args(argv)
    import torch

    from flowblending import apply_profile
    from flowblending.cost import schedule_cost
    from flowblending.schedule import Segment, count_steps, pattern_of, plan_steps
    from flowblending.timing import interleaved_times, paired_ratio, spread

    torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fb-bench-") as tmp:
        profile, pipe, about = build(args, Path(tmp))
        large, small = pipe.transformer.roles["large"], pipe.transformer.roles["small"]
        blend = blend_schedule(profile, args.boundaries)
        n = profile.setting.num_inference_steps
        plan = plan_steps(blend, n)
        steps = count_steps(plan)
        kwargs = {**profile.setting.call_kwargs(), "num_inference_steps": n, "output_type": "latent"}
        prompts = PROMPTS[: args.prompts]
        all_large = (Segment("large", 0.0, 1.0),)

        calls = [0]

        def prepare(label: str) -> None:
            calls[0] += 1
            announce_round(calls[0], len(VARIANTS), args.warmup, args.repeats)
            pipe.transformer = large  # the base role's own model: what apply_profile wraps
            if label == "router all-large":
                apply_profile(pipe, profile, {"small": small}, schedule=all_large)
            elif label == "router blend":
                apply_profile(pipe, profile, {"small": small}, schedule=blend)
            elif label == "plain small":
                pipe.transformer = small

        def generate() -> None:
            with torch.no_grad():
                for i, prompt in enumerate(prompts):
                    pipe(prompt=prompt, generator=torch.Generator().manual_seed(i), **kwargs)

        times = interleaved_times(
            {label: generate for label in VARIANTS}, repeats=args.repeats, warmup=args.warmup, prepare=prepare
        )
        prepare("router blend")
        generate()
        routed = dict(pipe.transformer.counters.steps)
        if routed != steps:
            raise SystemExit(f"the router ran {routed} steps per role, the plan is {steps}")
        params = {role: sum(p.numel() for p in m.parameters()) for role, m in (("large", large), ("small", small))}

    per_video = {label: [t / len(prompts) for t in times[label]] for label in VARIANTS}
    predicted = [
        (steps.get("large", 0) * t_l + steps.get("small", 0) * t_s) / n
        for t_l, t_s in zip(per_video["plain large"], per_video["plain small"], strict=True)
    ]
    cost = schedule_cost(plan, profile.cost.flops_per_step, profile.cost.reference_role)
    overhead = paired_ratio(per_video["router all-large"], per_video["plain large"])
    efficiency = paired_ratio(per_video["router blend"], predicted)
    measured = paired_ratio(per_video["plain large"], per_video["router blend"])
    ideal = paired_ratio(per_video["plain large"], predicted)
    of_flops = spread([m / cost.predicted_speedup for m in measured.samples])
    label = pattern_of(blend)
    setting = profile.setting
    results: dict[str, Any] = {
        **about,
        "profile": profile.name,
        "parameters": params,
        "setting": {
            "height": setting.height,
            "width": setting.width,
            "num_frames": setting.num_frames,
            "num_inference_steps": n,
            "guidance_scale": setting.guidance_scale,
        },
        "blend": {"pattern": label, "segments": [s.to_dict() for s in blend], "steps": steps},
        "repeats": args.repeats,
        "prompts": len(prompts),
        "torch_threads": torch.get_num_threads(),
        "machine": machine_info(),
        "seconds_per_video": {k: spread(v).to_dict() for k, v in per_video.items()},
        "seconds_per_step": {
            "large": spread([t / n for t in per_video["plain large"]]).to_dict(),
            "small": spread([t / n for t in per_video["plain small"]]).to_dict(),
        },
        "predicted_from_step_times": spread(predicted).to_dict(),
        "router_overhead": overhead.to_dict(),
        "blend_efficiency": efficiency.to_dict(),
        "measured_speedup": measured.to_dict(),
        "ideal_speedup": ideal.to_dict(),
        "flop_speedup": cost.predicted_speedup,
        "flops_per_step": dict(profile.cost.flops_per_step),
        "measured_over_flop": of_flops.to_dict(),
        "goals": {
            "router_overhead_le_1.01": overhead.median <= 1.01,
            "blend_efficiency_le_1.01": efficiency.median <= 1.01,
        },
        "wall_s": round(time.perf_counter() - started, 1),
    }
    report(results, per_video, label)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return results


def report(results: dict[str, Any], per_video: dict[str, list[float]], label: str) -> None:
    """Print the figures of one run."""
    from flowblending.timing import spread

    s, p = results["setting"], results["parameters"]
    steps = ", ".join(f"{r} {k}" for r, k in results["blend"]["steps"].items())
    print(
        f"pair {results['pair']}: large {p['large'] / 1e6:.2f}M, small {p['small'] / 1e6:.2f}M parameters; "
        f"{s['num_frames']}x{s['height']}x{s['width']}, {s['num_inference_steps']} steps; blend {label} ({steps}); "
        f"{results['torch_threads']} torch threads; {results['prompts']} prompt(s) x {results['repeats']} "
        "repeats, interleaved (median [min, max])"
    )
    print(f"\n{'variant':18}{'s / video':>28}{'ms / step':>12}")
    n = s["num_inference_steps"]
    for name, values in per_video.items():
        shown = name.replace("blend", label)
        print(f"{shown:18}{format(spread(values), '.4f'):>28}{spread(values).median / n * 1000:>12.1f}")
    r = {k: spread(results[k]["samples"]) for k in ("router_overhead", "blend_efficiency")}
    sp = {k: spread(results[k]["samples"]) for k in ("measured_speedup", "ideal_speedup", "measured_over_flop")}
    print(f"\nrouter overhead (router all-large / plain large):        {r['router_overhead']:.3f}  (goal <= 1.01)")
    print(f"blend efficiency ({label} / predicted from step times):   {r['blend_efficiency']:.3f}  (goal <= 1.01)")
    print(
        f"speed-up of {label} over plain large: measured {sp['measured_speedup']:.3f}x; from step times (ideal) "
        f"{sp['ideal_speedup']:.3f}x; FLOP-predicted {results['flop_speedup']:.3f}x; measured / FLOP "
        f"{sp['measured_over_flop']:.3f}"
    )


if __name__ == "__main__":
    main()
