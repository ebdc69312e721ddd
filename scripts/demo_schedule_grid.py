"""Judge a grid of L-S-L schedules of the demo pair on held-out seeds: where the boundaries should be, by pixels.

Every early boundary ``e`` x re-entry point ``r`` (``r = 1``: L-S-S) is generated through the runtime
(``apply_profile``) on the 48 demo prompts at each seed and scored by the demo judge (all attributes right,
detail, size), never by the calibrator's feature model; large-only and small-only are the ends. The table it
prints is the one docs/demo.md and docs/calibration.md quote for the late rule; the size score comes with its
paired differences (same prompts and seeds) to large-only and to the best re-entry point at the same early
boundary, with standard errors over the prompts (:func:`summarise`), which resolve differences the accuracy
cannot. ``--summarise FILE`` recomputes that summary from an earlier output without generating anything.

    python scripts/demo_schedule_grid.py --seeds 1234,1000,2026 --output demo-grid.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", help="the demo profile (models, setting, cost)")
    parser.add_argument("--seeds", default="1234,1000", help="held-out generation seeds (the calibration uses 0)")
    parser.add_argument("--early", type=_floats, default=[0.3, 0.4, 0.5], help="early boundaries")
    parser.add_argument("--late", type=_floats, default=[0.6, 0.7, 0.8, 0.9, 1.0], help="re-entry points (1: L-S-S)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("demo-grid.json"))
    parser.add_argument(
        "--summarise",
        type=Path,
        default=None,
        help="only recompute the pooled summary of an earlier --output file (no generation) and rewrite it",
    )
    args = parser.parse_args()

    import torch

    if args.summarise is not None:
        from calibrate.demo.data import PROMPTS

        try:
            record = json.loads(args.summarise.read_text())
            summarise(record["grid"], list(PROMPTS[: record["prompts"]]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            parser.error(f"--summarise {args.summarise}: not a grid written by this script ({error!r})")
        args.summarise.write_text(json.dumps(record, indent=1) + "\n")
        return

    import flowblending
    from calibrate.demo.cli import demo_settings
    from calibrate.demo.data import PROMPTS
    from calibrate.demo.evaluate import generate
    from calibrate.demo.judge import judge_videos, load_shape_classifier
    from flowblending.cost import schedule_cost
    from flowblending.schedule import Segment, plan_steps

    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    settings = demo_settings()
    profile = flowblending.load_profile(args.profile)
    pipe = flowblending.load_pipeline(profile, roles=tuple(profile.models))
    pipe.set_progress_bar_config(disable=True)
    judge = load_shape_classifier()
    prompts = list(PROMPTS)
    n = profile.setting.num_inference_steps
    flops_per_step = dict(profile.cost.flops_per_step)
    large_flops = schedule_cost(["large"] * n, flops_per_step).flops_total

    grid: dict[str, tuple[Segment, ...]] = {"large-only": (Segment("large", 0.0, 1.0),)}
    for e in args.early:
        for r in args.late:
            if r > e:
                tail = (Segment("large", r, 1.0),) if r < 1 else ()
                grid[f"{e:g}/{r:g}"] = (Segment("large", 0.0, e), Segment("small", e, r), *tail)
    grid["small-only"] = (Segment("small", 0.0, 1.0),)

    results: dict[str, dict] = {}
    for name, schedule in grid.items():
        flops = schedule_cost(list(plan_steps(schedule, n)), flops_per_step).flops_total / large_flops
        results[name] = {"segments": [s.to_dict() for s in schedule], "flops_ratio": flops, "seeds": {}}
        for seed in (int(s) for s in args.seeds.split(",")):
            started = time.perf_counter()
            flowblending.apply_profile(pipe, profile, schedule=schedule)
            videos = generate(
                pipe,
                prompts,
                seed=seed,
                guidance_scale=float(settings["guidance_scale"]),
                num_inference_steps=profile.setting.num_inference_steps,
                max_sequence_length=int(settings["max_sequence_length"]),
            )
            verdict = judge_videos(videos, prompts, judge, per_video=True)
            results[name]["seeds"][str(seed)] = {
                "accuracy": verdict["all"],
                "detail": verdict["detail"],
                "size": verdict["size"],
                "right": verdict["right"],
                "foreground": verdict["foreground"],
            }
            print(
                f"{name:<11} FLOPs {flops:.3f} seed {seed}: all {verdict['all']:.3f} detail {verdict['detail']:.3f} "
                f"size {verdict['size']:.3f} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    summarise(results, prompts)
    args.output.write_text(json.dumps({"prompts": len(prompts), "grid": results}, indent=1) + "\n")


def summarise(results: dict[str, dict], prompts: list[str]) -> None:
    """Pool every schedule over its seeds and print it: accuracy, and the size score with paired standard errors.

    The size differences are paired (same prompts and seeds) against large-only and against the best schedule
    (size closest to 1) among those sharing the early boundary. The videos of one prompt at different seeds are
    not independent, so each prompt's differences are averaged over the seeds first and the standard error is
    taken over the prompts. Adds ``pooled``, ``pooled_size``, ``size_vs_large_only(_se)`` and, for L-S-L
    schedules, ``size_best_at_this_early_boundary`` and ``size_vs_best(_se)`` to every row.
    """
    import torch

    from calibrate.demo.data import foreground_fraction, reference_clips
    from calibrate.demo.judge import paired_difference

    seeds = list(results["large-only"]["seeds"])
    for name, row in results.items():
        if list(row["seeds"]) != seeds or any("foreground" not in v for v in row["seeds"].values()):
            raise ValueError(
                f"schedule {name!r} must hold per-video 'foreground' fractions for the seeds {seeds} "
                f"(got seeds {list(row['seeds'])}); rerun scripts/demo_schedule_grid.py to write them"
            )
    real_area = float(foreground_fraction(reference_clips(len(prompts), prompts)).mean())  # size_score's default

    def sizes(name: str) -> torch.Tensor:  # (seeds, prompts)
        return torch.tensor([results[name]["seeds"][s]["foreground"] for s in seeds], dtype=torch.float64) / real_area

    def paired(name: str, other: str) -> tuple[float, float]:
        return paired_difference(sizes(name).tolist(), sizes(other).tolist())

    def early(name: str) -> str | None:
        return name.split("/")[0] if "/" in name else None

    def badness(name: str) -> float:  # a blank video (size 0) must not count as the best
        return abs(float(sizes(name).mean()) - 1.0)

    best: dict[str, str] = {}
    for name in results:
        key = early(name)
        if key is not None and (key not in best or badness(name) < badness(best[key])):
            best[key] = name
    print("\npooled over seeds: all attributes right (videos); size and its paired differences (+- SE over prompts)")
    for name, row in results.items():
        right = [v for s in row["seeds"].values() for v in s["right"]]
        row["pooled"] = sum(right) / len(right)
        row["pooled_size"] = float(sizes(name).mean())
        row["size_vs_large_only"], row["size_vs_large_only_se"] = paired(name, "large-only")
        line = (
            f"  {name:<11} FLOPs {row['flops_ratio']:.3f}  {row['pooled']:.3f} ({sum(right)}/{len(right)})  "
            f"size {row['pooled_size']:.4f}, vs large-only {row['size_vs_large_only']:+.4f} +- "
            f"{row['size_vs_large_only_se']:.4f}"
        )
        if early(name) is not None:
            row["size_best_at_this_early_boundary"] = best[early(name)]
            row["size_vs_best"], row["size_vs_best_se"] = paired(name, best[early(name)])
            line += f", vs {best[early(name)]} {row['size_vs_best']:+.4f} +- {row['size_vs_best_se']:.4f}"
        print(line)


if __name__ == "__main__":
    main()
