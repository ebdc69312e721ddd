"""What a diffusers cache adds to a large/small blend: time and fidelity of LLL, LLL+cache, LSL and LSL+cache.

On the compute-bound Wan pair of ``runtime_speedup.py`` (random init, about 20.2M and 1.2M parameters at
128x128x9, built by its ``build``), four variants of one routed pipeline are timed, alternating within every
repeat (the order rotates per repeat): LLL (the router running the large model at every step), LLL+cache, LSL
(the blend; boundaries ``--boundaries``, default 0.4,0.8) and LSL+cache. The cache is ``--cache`` (the specs of
``flowblending run --cache``, parsed by the same ``flowblending.caching.parse_cache_spec``), a copy on each role,
reset per stretch of one role (docs/acceleration.md). Denoising only (``output_type="latent"``: text encoding
and the transformer loop, no VAE decode), one prompt, seed ``--seed``.

Printed per variant: seconds per video (median [min, max] over repeats); speed-up over LLL (median and range of
the per-repeat ratios LLL / variant); the similarity of its final latents to LLL's (same prompt and seed): PSNR
in dB with peak = max |LLL latents| (``inf`` when identical; JSON ``null``) and cosine similarity; and per role
the transformer calls made and how many the cache let compute: a call counts as computed when its last block's
self-attention ran, blocks as the self-attention calls of all blocks (diffusers' cache hooks replace a skipped
block's ``forward``, so the block is still called but its attention is not). The cache's own speed-up and
fidelity against the same schedule uncached (LLL+cache vs LLL, LSL+cache vs LSL) are printed too.

The latents and call counts come from one untimed round before the timed ones (forward pre-hooks installed only
then); every timed run's latents are compared with that round's (``repeat_max_abs_diff``, 0 when the runs are
reproducible, i.e. no cache state leaks from one generation into the next).

    python benchmarks/cache_blend.py [--cache first-block:0.05] [--boundaries 0.4,0.8] [--repeats 7] \\
        [--warmup 0] [--threads 2] [--seed 0] [--json out.json] [--toy]

``--toy`` runs a tiny pair (2 + 2 blocks, 32x32, 6 steps), 1 repeat, 1 thread: the CPU path in seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

if str(Path(__file__).resolve().parent) not in sys.path:  # runtime_speedup.py, however this file is loaded
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from runtime_speedup import add_compute_pair_args, announce_round, blend_schedule, build, machine_info

from calibrate.demo.data import PROMPTS

VARIANTS = ("LLL", "LLL+cache", "LSL", "LSL+cache")

# --toy: a pair whose roles both have the 2 blocks first-block and MagCache need; explicit options still win
TOY = {
    "large_layers": 2,
    "large_heads": 2,
    "large_ffn": 64,
    "small_layers": 2,
    "small_heads": 1,
    "small_ffn": 32,
    "head_dim": 16,
    "width": 32,
    "height": 32,
    "steps": 6,
    "repeats": 1,
    "warmup": 0,
    "threads": 1,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (cache, boundaries, repeats, threads, output, the compute-bound pair's sizes)."""
    from flowblending.caching import CACHE_SPEC_HELP

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--cache", default="first-block:0.05", help=f"cache on each role (default %(default)s): {CACHE_SPEC_HELP}"
    )
    p.add_argument("--boundaries", default="0.4,0.8", help="L-S-L boundaries of the blend")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats (>= 5 for a spread worth reading)")
    p.add_argument("--warmup", type=int, default=0, help="untimed rounds after the (untimed) measuring round")
    p.add_argument("--threads", type=int, default=2, help="torch threads (0: torch's choice)")
    p.add_argument("--seed", type=int, default=0, help="generator seed of every run")
    p.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    p.add_argument("--toy", action="store_true", help="tiny pair, 1 repeat, 1 thread (CI)")
    add_compute_pair_args(p.add_argument_group("compute-bound pair"))
    p.set_defaults(pair="compute")  # what runtime_speedup.build reads
    args = p.parse_args(argv)
    if args.toy:
        p.set_defaults(**TOY)
        args = p.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        p.error("--repeats must be >= 1 and --warmup >= 0")
    from flowblending.caching import parse_cache_spec
    from flowblending.errors import FlowBlendingError

    try:  # the CLI's own parser, before anything is built
        args.cache_config = parse_cache_spec(args.cache)
    except FlowBlendingError as e:
        p.error(str(e))
    return args


class BlockCounter:
    """Counts, per role, computed blocks and computed calls (last block ran) via pre-hooks on each ``attn1``."""

    def __init__(self, roles: dict[str, Any]):
        self.blocks = {role: 0 for role in roles}
        self.tails = {role: 0 for role in roles}
        self.layers = {role: len(model.blocks) for role, model in roles.items()}
        self._handles = []
        for role, model in roles.items():
            for k, block in enumerate(model.blocks):
                last = k == len(model.blocks) - 1
                hook = self._hook(role, last)
                self._handles.append(block.attn1.register_forward_pre_hook(hook))

    def _hook(self, role: str, last: bool) -> Any:
        """A pre-hook that counts one computed block of ``role`` (and one computed call if it is the last)."""

        def count(*_: Any) -> None:
            self.blocks[role] += 1
            self.tails[role] += int(last)

        return count

    def remove(self) -> None:
        """Remove the hooks (the timed runs run without them)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def report(self, calls: dict[str, int]) -> dict[str, dict[str, int]]:
        """Per role that ran: calls made (router counters), computed and skipped calls, computed and total blocks."""
        return {
            role: {
                "calls": n,
                "computed": self.tails[role],
                "skipped": n - self.tails[role],
                "blocks_computed": self.blocks[role],
                "blocks_total": n * self.layers[role],
            }
            for role, n in calls.items()
        }


def similarity(x: Any, reference: Any) -> dict[str, Any]:
    """PSNR in dB (peak = max |reference|; None when identical) and cosine similarity of ``x`` to ``reference``."""
    import torch

    if torch.equal(x, reference):
        return {"psnr_db": None, "cosine": 1.0, "max_abs_diff": 0.0, "identical": True}
    a, b = x.double().flatten(), reference.double().flatten()
    mse = float(((a - b) ** 2).mean())
    peak = float(b.abs().max())
    cosine = float(torch.dot(a, b) / (a.norm() * b.norm()))
    return {
        "psnr_db": 10 * math.log10(peak**2 / mse),
        "cosine": cosine,
        "max_abs_diff": float((a - b).abs().max()),
        "identical": False,
    }


def stretches(plan: tuple[str, ...]) -> list[dict[str, Any]]:
    """The stretches of a plan (maximal runs of one role): role, first step, length."""
    out: list[dict[str, Any]] = []
    for i, role in enumerate(plan):
        if out and out[-1]["role"] == role:
            out[-1]["length"] += 1
        else:
            out.append({"role": role, "start": i, "length": 1})
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the figures and return them (also written to ``--json``)."""
    args = parse_args(argv)
    import torch

    from flowblending import apply_profile
    from flowblending.caching import BlendCacheConfig
    from flowblending.schedule import Segment, count_steps, plan_steps
    from flowblending.timing import interleaved_times, paired_ratio, spread

    cache = args.cache_config
    torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fb-cache-") as tmp:
        profile, pipe, about = build(args, Path(tmp))
        large, small = pipe.transformer.roles["large"], pipe.transformer.roles["small"]
        blend = blend_schedule(profile, args.boundaries)
        all_large = (Segment("large", 0.0, 1.0),)
        n = profile.setting.num_inference_steps
        schedules = {"LLL": all_large, "LLL+cache": all_large, "LSL": blend, "LSL+cache": blend}
        uncached = BlendCacheConfig()  # no config for any role: apply_blend_cache disables the roles' caches
        kwargs = {**profile.setting.call_kwargs(), "num_inference_steps": n, "output_type": "latent"}
        prompt = PROMPTS[0]

        def install(label: str) -> None:
            pipe.transformer = large  # the base role's own model: what apply_profile wraps
            config = cache if label.endswith("+cache") else uncached
            apply_profile(pipe, profile, {"small": small}, schedule=schedules[label], cache=config)

        def generate() -> Any:
            with torch.no_grad():
                return pipe(prompt=prompt, generator=torch.Generator().manual_seed(args.seed), **kwargs).frames

        latents: dict[str, Any] = {}
        counts: dict[str, dict[str, dict[str, int]]] = {}
        for label in VARIANTS:  # the measuring round: latents and call counts, untimed
            print(f"measuring {label}", file=sys.stderr, flush=True)
            install(label)
            counter = BlockCounter(dict(pipe.transformer.roles))
            try:
                latents[label] = generate()
            finally:
                counter.remove()
            router = pipe.transformer.counters
            planned = count_steps(plan_steps(schedules[label], n))
            if dict(router.steps) != planned:
                raise SystemExit(f"{label}: the router ran {dict(router.steps)} steps per role, the plan is {planned}")
            counts[label] = counter.report(dict(router.calls))

        outputs: dict[str, list[Any]] = {label: [] for label in VARIANTS}
        calls = [0]

        def prepare(label: str) -> None:
            calls[0] += 1
            announce_round(calls[0], len(VARIANTS), args.warmup, args.repeats)
            install(label)

        def timed(label: str) -> Any:
            return lambda: outputs[label].append(generate())

        times = interleaved_times(
            {label: timed(label) for label in VARIANTS}, repeats=args.repeats, warmup=args.warmup, prepare=prepare
        )
        params = {role: sum(p.numel() for p in m.parameters()) for role, m in (("large", large), ("small", small))}

    reference = latents["LLL"]
    variants: dict[str, Any] = {}
    for label in VARIANTS:
        drift = max(float((x - latents[label]).abs().max()) for x in outputs[label])
        variants[label] = {
            "schedule": [s.to_dict() for s in schedules[label]],
            "cached": label.endswith("+cache"),
            "seconds_per_video": spread(times[label]).to_dict(),
            "speedup_vs_lll": paired_ratio(times["LLL"], times[label]).to_dict(),
            "similarity_to_lll": similarity(latents[label], reference),
            "calls": counts[label],
            "repeat_max_abs_diff": drift,
        }
    cache_effect = {
        base: {
            "speedup": paired_ratio(times[base], times[f"{base}+cache"]).to_dict(),
            "similarity": similarity(latents[f"{base}+cache"], latents[base]),
        }
        for base in ("LLL", "LSL")
    }
    setting = profile.setting
    plan = plan_steps(blend, n)
    results: dict[str, Any] = {
        **about,
        "toy": args.toy,
        "parameters": params,
        "setting": {
            "height": setting.height,
            "width": setting.width,
            "num_frames": setting.num_frames,
            "num_inference_steps": n,
            "guidance_scale": setting.guidance_scale,
            "latent_shape": list(reference.shape),
        },
        "cache": {
            "spec": args.cache,
            "per_role": {role: type(cache.for_role(role)).__name__ for role in ("large", "small")},
        },
        "blend": {
            "pattern": "LSL",
            "segments": [s.to_dict() for s in blend],
            "steps": count_steps(plan),
            "stretches": stretches(plan),
        },
        "prompt": prompt,
        "seed": args.seed,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "torch_threads": torch.get_num_threads(),
        "machine": machine_info(),
        "psnr_peak": {"of": "max |LLL latents|", "value": float(reference.abs().max())},
        "variants": variants,
        "cache_effect": cache_effect,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    report(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return results


def _psnr(value: float | None) -> str:
    """A PSNR for the table: ``inf`` for identical latents."""
    return "inf" if value is None else f"{value:.1f}"


def report(results: dict[str, Any]) -> None:
    """Print the figures of one run."""
    from flowblending.timing import spread

    s, p, b = results["setting"], results["parameters"], results["blend"]
    steps = ", ".join(f"{r} {k}" for r, k in b["steps"].items())
    parts = ", ".join(f"{x['role']} {x['start']}-{x['start'] + x['length'] - 1}" for x in b["stretches"])
    print(
        f"pair {results['pair']}{' (toy)' if results['toy'] else ''}: large {p['large'] / 1e6:.2f}M, small "
        f"{p['small'] / 1e6:.2f}M parameters; {s['num_frames']}x{s['height']}x{s['width']} (latents "
        f"{'x'.join(map(str, s['latent_shape']))}), {s['num_inference_steps']} steps; LSL at "
        f"{', '.join(str(x['end']) for x in b['segments'][:-1])} ({steps}; stretches {parts}); cache "
        f"{results['cache']['spec']}; {results['torch_threads']} torch threads; {results['repeats']} repeats, "
        f"interleaved (median [min, max])"
    )
    print(
        f"\n{'variant':11}{'s / video':>26}{'speed-up vs LLL':>24}{'PSNR dB':>9}{'cosine':>10}  "
        "calls computed/made (blocks computed/total) per role"
    )
    for label, v in results["variants"].items():
        sim = v["similarity_to_lll"]
        roles = "; ".join(
            f"{role} {c['computed']}/{c['calls']} ({c['blocks_computed']}/{c['blocks_total']})"
            for role, c in v["calls"].items()
        )
        seconds, speedup = spread(v["seconds_per_video"]["samples"]), spread(v["speedup_vs_lll"]["samples"])
        print(
            f"{label:11}{format(seconds, '.4f'):>26}{format(speedup, '.3f'):>24}{_psnr(sim['psnr_db']):>9}"
            f"{sim['cosine']:>10.6f}  {roles}"
        )
    print(
        f"\nPSNR peak = max |LLL latents| = {results['psnr_peak']['value']:.4g}; latents from one untimed round, "
        "same prompt and seed"
    )
    for base, e in results["cache_effect"].items():
        sim = e["similarity"]
        print(
            f"cache on {base}: {base}+cache is {format(spread(e['speedup']['samples']), '.3f')}x as fast as {base}, "
            f"PSNR {_psnr(sim['psnr_db'])} dB, cosine {sim['cosine']:.6f} against {base}"
        )
    drift = {k: v["repeat_max_abs_diff"] for k, v in results["variants"].items()}
    if any(drift.values()):
        print(f"warning: timed runs differ from the measuring round (max abs diff): {drift}")
    else:
        print("every timed run reproduced its variant's latents exactly")


if __name__ == "__main__":
    main()
