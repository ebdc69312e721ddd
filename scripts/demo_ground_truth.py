"""Ground truth for the demo pair: every K-segment schedule judged from pixels, and where each method lands.

All 2^K assignments of K equal segments to large/small (paper sec 5.2) are generated on held-out prompts x seeds
(batched, on the prefix trie: each trie node computed once) and scored by the demo judge (all-attributes-right
accuracy, detail and size scores), never by the calibrator's feature model; FLOPs come from the profile's cost.
The accuracy-FLOPs and size-FLOPs Pareto fronts (the size score is best when closest to 1; every generated
video draws its shapes larger than real ones, so lower is better) are plotted with the schedules of the full
method (``--profile``), the divergence method, the sweep's own choice (``--sweep-profile``) and the paper's
fixed 40 %/80 % boundaries marked; those off the K-segment grid are generated and judged on the same units.
Scores are pooled over the seeds; every video's verdict is kept, so each marked schedule is compared, paired by
prompt, with the best front schedule it can afford and with the cheapest schedule the judge cannot tell from it
(no worse by more than one standard error in accuracy or size).

    python scripts/demo_ground_truth.py --profile profiles/demo.json --segments 8 --calibrate-methods --output /tmp/gt
    python scripts/demo_ground_truth.py --summarise /tmp/gt/ground-truth.json    # recompute the comparisons only

``--calibrate-methods`` first calibrates the divergence method and the K-segment sweep on the demo's own
calibration setting (its 16 prompts x seed 0, the same reference frames, written once to OUTPUT/reference) into
OUTPUT/divergence and OUTPUT/sweep, resumably; ``--divergence-profile``/``--sweep-profile`` take profiles
calibrated earlier instead.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _judge(videos: Any, prompts: list[str], classifier: Any) -> dict[str, Any]:
    from calibrate.demo.judge import judge_videos

    verdict = judge_videos(videos, prompts, classifier, per_video=True)
    return {
        "accuracy": float(verdict["all"]),
        "detail": float(verdict["detail"]),
        "size": float(verdict["size"]),
        "right": verdict["right"],
        "foreground": verdict["foreground"],
    }


def pareto_max(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the (FLOPs minimised, accuracy maximised) Pareto front, cheapest first."""
    from calibrate.pareto import pareto_front_max

    return pareto_front_max(points)


def front_distance(flops: float, accuracy: float, points: list[tuple[float, float]], front: list[int]) -> dict:
    """How far a schedule is from the front: accuracy gap at its FLOPs, FLOPs the front saves at its accuracy."""
    cheaper = [points[i][1] for i in front if points[i][0] <= flops + 1e-9]
    best_at_cost = max(cheaper) if cheaper else accuracy
    as_good = [points[i][0] for i in front if points[i][1] >= accuracy - 1e-9]
    cheapest_as_good = min(as_good) if as_good else flops
    return {"accuracy_gap": best_at_cost - accuracy, "flops_saved_by_front": flops - cheapest_as_good}


def _per_video(row: dict, key: str, real_area: float) -> list[list[float]]:
    """A schedule's ``(seeds, prompts)`` per-video scores: 1/0 for ``"accuracy"``, area / real area for ``"size"``."""
    if key == "accuracy":
        return [[float(v) for v in seed["right"]] for seed in row["per_seed"]]
    return [[f / real_area for f in seed["foreground"]] for seed in row["per_seed"]]


def advantage(row: dict, over: dict, key: str, real_area: float) -> dict[str, float]:
    """How much better schedule ``row`` is than ``over`` by ``key``, +- SE, paired by prompt over the seeds.

    ``"accuracy"``: ``row``'s accuracy minus ``over``'s. ``"size"``: ``over``'s size minus ``row``'s (closer to 1
    is better, and every schedule of the demo pair draws its shapes too large). Paired as in
    :func:`calibrate.demo.judge.paired_difference`.
    """
    from calibrate.demo.judge import paired_difference

    better, worse = (row, over) if key == "accuracy" else (over, row)
    mean, se = paired_difference(_per_video(better, key, real_area), _per_video(worse, key, real_area))
    return {"advantage": mean, "se": se}


def versus_front(entry: dict, rows: list[dict], front: list[str], key: str, real_area: float) -> dict[str, Any]:
    """The front schedule best at ``entry``'s cost by ``key`` (``"accuracy"`` or ``"size"``) and its :func:`advantage`.

    A negative advantage means ``entry`` is better than every front schedule it can afford (it lies off the
    K-segment grid).
    """

    def quality(row: dict) -> float:
        return row["accuracy"] if key == "accuracy" else -abs(row["size"] - 1.0)

    affordable = [r for r in rows if r["pattern"] in front and r["flops_ratio"] <= entry["flops_ratio"] + 1e-9]
    best = max(affordable, key=quality) if affordable else entry
    return {"pattern": best["pattern"], "flops_ratio": best["flops_ratio"], **advantage(best, entry, key, real_area)}


def cheapest_as_good(entry: dict, rows: list[dict], real_area: float) -> dict[str, Any]:
    """The cheapest schedule worse than ``entry`` by at most one paired SE in accuracy and in size (ties: best size)."""
    found = []
    for row in rows:
        versus = {key: advantage(row, entry, key, real_area) for key in ("accuracy", "size")}
        if all(v["advantage"] >= -v["se"] for v in versus.values()):
            found.append((row["flops_ratio"], -versus["size"]["advantage"], row["pattern"], versus))
    if not found:
        return {"pattern": entry["schedule"], "flops_ratio": entry["flops_ratio"], "accuracy": {}, "size": {}}
    flops, _, pattern, versus = min(found)
    return {"pattern": pattern, "flops_ratio": flops, **versus}


def _compact(value: Any, indent: int = 0) -> str:
    """JSON with one level per line but every list of numbers on one line (the per-video verdicts)."""
    pad = " " * indent
    if isinstance(value, dict):
        inner = ",\n".join(f"{pad} {json.dumps(k)}: {_compact(v, indent + 1)}" for k, v in value.items())
        return "{\n" + inner + "\n" + pad + "}" if value else "{}"
    if isinstance(value, list) and value and not all(isinstance(v, int | float) for v in value):
        return "[\n" + ",\n".join(f"{pad} {_compact(v, indent + 1)}" for v in value) + "\n" + pad + "]"
    return json.dumps(value)


def calibrate_method(folder: Path, reference: Path, method: str, segments: int) -> str:
    """Calibrate ``method`` on ``flowblending demo``'s setting into ``folder``; returns the profile's path."""
    from calibrate.demo.cli import CALIBRATION_PROMPTS, demo_config, demo_prompts
    from calibrate.runner import calibrate

    config = demo_config(reference, demo_prompts(CALIBRATION_PROMPTS), method=method, segments=segments)
    tic = time.perf_counter()
    outcome = calibrate(
        config, output=folder / f"{method}.json", report_dir=folder / "report", work_dir=folder / "work", log=print
    )
    print(f"{method}: {outcome.profile_path} in {time.perf_counter() - tic:.0f} s", flush=True)
    return str(outcome.profile_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", help="the full method's profile (shipped name or path)")
    parser.add_argument("--divergence-profile", default=None, help="the divergence method's profile, if calibrated")
    parser.add_argument("--sweep-profile", default=None, help="the sweep method's profile, if calibrated")
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument(
        "--calibrate-methods",
        action="store_true",
        help="calibrate the divergence method and the --segments sweep on the demo's setting first (OUTPUT/divergence, "
        "OUTPUT/sweep) for the profiles not given",
    )
    parser.add_argument("--seeds", default="1234,1000,2026", help="held-out seeds (the calibration uses 0)")
    parser.add_argument("--prompts", type=int, default=None, help="held-out prompts (default: all demo prompts)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("demo-ground-truth"))
    parser.add_argument(
        "--summarise",
        type=Path,
        default=None,
        help="only recompute the fronts and comparisons of an earlier ground-truth.json (no generation), rewrite it "
        "and its plot beside it",
    )
    args = parser.parse_args()
    if args.summarise is not None:
        try:
            result = json.loads(args.summarise.read_text())
            summarise(result)
            plot(result, args.summarise.with_name("demo-pareto.png"))
        except (OSError, ValueError, KeyError, TypeError) as error:
            parser.error(f"--summarise {args.summarise}: not a ground truth written by this script ({error!r})")
        args.summarise.write_text(_compact(result) + "\n", encoding="utf-8")
        return

    import torch

    import flowblending
    from calibrate.demo.cli import demo_settings
    from calibrate.demo.data import PROMPTS
    from calibrate.demo.judge import load_shape_classifier
    from calibrate.sampling import ReplaySampler, Unit
    from calibrate.trie import pattern_plan, walk_trie
    from flowblending.cost import schedule_cost
    from flowblending.schedule import pattern_of, plan_steps, segments_from_pattern

    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    if args.calibrate_methods and not (args.divergence_profile and args.sweep_profile):
        from calibrate.demo.cli import REFERENCE_FRAMES, REFERENCE_SEED, write_reference

        reference = write_reference(args.output / "reference", REFERENCE_FRAMES, seed=REFERENCE_SEED)
        for method in ("divergence", "sweep"):
            key = f"{method}_profile"
            if not getattr(args, key):
                setattr(args, key, calibrate_method(args.output / method, reference, method, args.segments))
    settings = demo_settings()
    profile = flowblending.load_profile(args.profile)
    n = profile.setting.num_inference_steps
    pipe = flowblending.load_pipeline(profile, roles=tuple(profile.models))
    pipe.set_progress_bar_config(disable=True)
    models = dict(pipe.transformer.roles)
    pipe.transformer = models["large"]
    kwargs = {
        "height": int(settings["height"]),
        "width": int(settings["width"]),
        "num_frames": int(settings["num_frames"]),
        "guidance_scale": float(settings["guidance_scale"]),
        "max_sequence_length": int(settings["max_sequence_length"]),
    }
    sampler = ReplaySampler(pipe, models, kwargs, n)
    prompts = list(PROMPTS[: args.prompts] if args.prompts else PROMPTS)
    judge = load_shape_classifier()  # once: every leaf of the trie is judged with it
    seeds = [int(s) for s in args.seeds.split(",")]
    flops_per_step = {r: profile.cost.flops_per_step[r] for r in ("large", "small")}
    large_flops = schedule_cost(["large"] * n, flops_per_step).flops_total

    scores: dict[str, list[dict[str, float]]] = {}
    for seed in seeds:  # one unit per seed: all prompts in one batch
        unit = Unit(0, prompts, seed)

        def on_leaf(pattern: str, frames: Any) -> None:
            scores.setdefault(pattern, []).append(_judge(frames, prompts, judge))

        walk_trie(sampler, unit, args.segments, on_leaf)
        print(f"seed {seed}: {len(scores)} schedules judged ({time.perf_counter() - started:.0f} s)", flush=True)

    def pooled(values: list[dict[str, Any]], flops_ratio: float) -> dict[str, Any]:
        """A schedule's scores pooled over the seeds (every seed has the same prompts) and its per-video verdicts."""
        out = {key: sum(v[key] for v in values) / len(values) for key in ("accuracy", "detail", "size")}
        per_seed = [
            {"seed": seed, "right": v["right"], "foreground": v["foreground"]}
            for seed, v in zip(seeds, values, strict=True)
        ]
        return {"flops_ratio": flops_ratio, **out, "per_seed": per_seed}

    rows = []
    for pattern, values in scores.items():
        plan = pattern_plan(pattern, n)
        flops_ratio = schedule_cost(plan, flops_per_step).flops_total / large_flops
        rows.append({"pattern": pattern, **pooled(values, flops_ratio)})

    marked: dict[str, Any] = {}
    candidates = {"full method": profile}
    for label, path in (("divergence method", args.divergence_profile), ("sweep's choice", args.sweep_profile)):
        if path:
            candidates[label] = flowblending.load_profile(path)
    schedules = {label: tuple(p.schedule) for label, p in candidates.items()}
    schedules["paper 40%/80%"] = segments_from_pattern("LSL", [0.4, 0.8])
    for label, schedule in schedules.items():
        plan = plan_steps(schedule, n)
        videos = []
        for seed in seeds:
            frames, _ = sampler.run(Unit(0, prompts, seed), list(plan))
            videos.append(_judge(frames, prompts, judge))
        marked[label] = {
            "schedule": pattern_of(schedule),
            "segments": [s.to_dict() for s in schedule],
            **pooled(videos, schedule_cost(list(plan), flops_per_step).flops_total / large_flops),
        }
    segment_flops = (1 - schedule_cost(["small"] * n, flops_per_step).flops_total / large_flops) / args.segments
    result = {
        "segments": args.segments,
        "num_steps": n,
        "prompts": len(prompts),
        "seeds": seeds,
        "videos_per_schedule": len(prompts) * len(seeds),
        "flops_ratio_of_one_segment": segment_flops,
        "schedules": rows,
        "marked": marked,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    summarise(result)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "ground-truth.json").write_text(_compact(result) + "\n", encoding="utf-8")
    plot(result, args.output / "demo-pareto.png")
    print(f"wrote {args.output / 'ground-truth.json'} and demo-pareto.png in {result['wall_s']:.0f} s")


def summarise(result: dict[str, Any]) -> None:
    """Fronts, each marked schedule's distance to them and the cheapest schedule as good; adds them and prints.

    Adds ``front``/``size_front`` (patterns, cheapest first) and, to every marked schedule, the strict gaps
    (:func:`front_distance`), the paired comparison with the best front schedule it can afford
    (:func:`versus_front`) and ``cheapest_as_good``: the cheapest of all schedules that is worse than it by no
    more than one paired standard error on accuracy and on size, i.e. what the judge cannot tell from it.
    """
    from calibrate.demo.data import PROMPTS, foreground_fraction, reference_clips

    rows, marked = result["schedules"], result["marked"]
    prompts = list(PROMPTS[: result["prompts"]])
    segment_flops = result["flops_ratio_of_one_segment"]
    points = [(r["flops_ratio"], r["accuracy"]) for r in rows]
    front = pareto_max(points)
    # the size front ranks by distance from real clips' 1.0, so a blank schedule (size 0) is not the best
    size_points = [(r["flops_ratio"], -abs(r["size"] - 1.0)) for r in rows]
    size_front = pareto_max(size_points)
    real_area = float(foreground_fraction(reference_clips(len(prompts), prompts)).mean())  # size_score's default
    result["front"] = [rows[i]["pattern"] for i in front]
    result["size_front"] = [rows[i]["pattern"] for i in size_front]
    for entry in marked.values():
        entry.update(front_distance(entry["flops_ratio"], entry["accuracy"], points, front))
        gap = front_distance(entry["flops_ratio"], -abs(entry["size"] - 1.0), size_points, size_front)
        entry["size_gap"], entry["flops_saved_by_size_front"] = gap["accuracy_gap"], gap["flops_saved_by_front"]
        entry["versus_front"] = versus_front(entry, rows, result["front"], "accuracy", real_area)
        entry["versus_size_front"] = versus_front(entry, rows, result["size_front"], "size", real_area)
        entry["cheapest_as_good"] = cheapest_as_good(entry, rows, real_area)
    print(
        f"front ({len(front)} schedules): "
        + ", ".join(f"{rows[i]['pattern']} {rows[i]['accuracy']:.3f}" for i in front)
    )
    print(
        f"size front ({len(size_front)} schedules): "
        + ", ".join(f"{rows[i]['pattern']} {rows[i]['size']:.4f}" for i in size_front)
    )
    for label, entry in marked.items():
        print(
            f"{label:18} {entry['schedule']:10} FLOPs {entry['flops_ratio']:.3f} accuracy {entry['accuracy']:.3f} "
            f"detail {entry['detail']:.3f} size {entry['size']:.4f}; gap to the front {entry['accuracy_gap']:.3f} "
            f"accuracy, {entry['flops_saved_by_front'] / segment_flops:.2f} segments of FLOPs; to the size front "
            f"{entry['size_gap']:.4f} size, {entry['flops_saved_by_size_front'] / segment_flops:.2f} segments"
        )
        for name, versus in (("accuracy", entry["versus_front"]), ("size", entry["versus_size_front"])):
            print(
                f"{'':18} best {name} front schedule at its cost: {versus['pattern']} (FLOPs "
                f"{versus['flops_ratio']:.3f}), better by {versus['advantage']:+.4f} +- {versus['se']:.4f} {name} "
                "(paired)"
            )
        same = entry["cheapest_as_good"]
        print(
            f"{'':18} cheapest schedule as good within one SE: {same['pattern']} (FLOPs {same['flops_ratio']:.3f}, "
            f"{(entry['flops_ratio'] - same['flops_ratio']) / segment_flops:.2f} segments less), accuracy "
            f"{same['accuracy']['advantage']:+.4f} +- {same['accuracy']['se']:.4f}, size "
            f"{same['size']['advantage']:+.4f} +- {same['size']['se']:.4f}"
        )


def plot(result: dict[str, Any], path: Path) -> None:
    """Accuracy (left) and size (right) against FLOPs of every schedule, their fronts, and the marked schedules."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = result["schedules"]
    fig = Figure(figsize=(13, 5), dpi=120)
    panels = (
        ("accuracy", "front", "accuracy (all attributes right, judge; higher is better)"),
        ("size", "size_front", "size (shape area / real clips'; lower is better)"),
    )
    for ax, (key, front_key, ylabel) in zip(fig.subplots(1, 2), panels, strict=True):
        front = set(result[front_key])
        ax.scatter([r["flops_ratio"] for r in rows], [r[key] for r in rows], s=10, c="0.7", label="schedule")
        frontier = sorted((r for r in rows if r["pattern"] in front), key=lambda r: r["flops_ratio"])
        ax.plot([r["flops_ratio"] for r in frontier], [r[key] for r in frontier], "-o", c="C0", ms=4,
                label="Pareto front")  # fmt: skip
        for r in frontier:
            ax.annotate(r["pattern"], (r["flops_ratio"], r[key]), fontsize=6, xytext=(3, -8),
                        textcoords="offset points")  # fmt: skip
        markers = ["*", "D", "s", "^"]
        for (label, entry), marker in zip(result["marked"].items(), markers, strict=False):
            ax.scatter([entry["flops_ratio"]], [entry[key]], marker=marker, s=90, zorder=5,
                       label=f"{label} ({entry['schedule']})")  # fmt: skip
        same = result["marked"].get("full method", {}).get("cheapest_as_good", {})
        by_pattern = {r["pattern"]: r for r in rows}
        if same.get("pattern") in by_pattern:
            row = by_pattern[same["pattern"]]
            ax.scatter([row["flops_ratio"]], [row[key]], marker="o", s=140, facecolors="none", edgecolors="k",
                       zorder=6, label=f"cheapest as good as the full method ({row['pattern']})")  # fmt: skip
        ax.set_xlabel("FLOPs relative to large-only")
        ax.set_ylabel(ylabel)
        if key == "size":  # the differences that matter are a few hundredths: zoom in on the front's end
            low = min(r["size"] for r in rows)
            ax.set_ylim(low - 0.01, low + 0.12)
            ax.set_xlim(0.35, 1.03)
            ax.set_title("zoomed in: cheaper schedules lie above the top edge", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right" if key == "accuracy" else "upper right")
    fig.suptitle(
        f"Demo pair: all {2 ** result['segments']} schedules of {result['segments']} segments, "
        f"{result['videos_per_schedule']} held-out videos each"
    )
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
