"""Runtime speed-up of a profile's schedule against large-only and small-only, measured side by side.

Prints, for the profile's schedule:

* the median wall time per video of large-only, the profile's schedule and small-only (interleaved runs);
* the measured speed-up over large-only against the FLOP-predicted one (goal: >= 0.95 of it);
* the routing overhead: blended time over the time predicted from the per-role step times (goal: <= 1.02).

Denoising only (``output_type="latent"``, the transformer loop and text encoding) and end to end (with the
VAE decode) are both shown.

    python benchmarks/runtime_speedup.py [--profile demo] [--repeats 5] [--prompts 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument(
        "--boundaries",
        default=None,
        help="blended L-S-L boundaries, e.g. 0.3,0.7 (default: the profile's schedule, or its "
        "divergence-proxy boundaries when the profile is large-only)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    import torch

    import flowblending
    from flowblending.schedule import Segment, pattern_of
    from flowblending.timing import speedup_report, time_schedules

    torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = flowblending.load_profile(args.profile)
    pipe = flowblending.load_pipeline(profile, roles=tuple(profile.models))
    pipe.set_progress_bar_config(disable=True)
    schedule = profile.schedule
    if args.boundaries or not any(seg.model == "small" for seg in schedule):
        from flowblending.schedule import segments_from_pattern

        cuts = (
            [float(x) for x in args.boundaries.split(",")]
            if args.boundaries
            else (profile.calibration or {})["divergence"]["proxy_boundaries"]
        )
        schedule = segments_from_pattern("LSL", cuts)
    blended = pattern_of(schedule)
    schedules = {
        "large-only": (Segment("large", 0.0, 1.0),),
        blended: schedule,
        "small-only": (Segment("small", 0.0, 1.0),),
    }
    prompts = [
        "a red circle moving left",
        "a blue square moving up",
        "a green triangle moving right",
        "a yellow circle moving down",
        "a red square moving right",
        "a blue triangle moving left",
    ][: args.prompts]
    print(
        f"profile {profile.name}: timing {pattern_of(schedule)} "
        + ", ".join(f"{s.model} [{s.start:g}, {s.end:g})" for s in schedule)
        + f"; {profile.setting.num_inference_steps} steps; torch threads {torch.get_num_threads()}; "
        f"{args.prompts} prompts x {args.repeats} repeats, interleaved"
    )
    for mode in ("latent", "pt"):
        timings = time_schedules(pipe, profile, schedules, prompts, repeats=args.repeats, output_type=mode)
        rep = speedup_report(timings["large-only"], timings["small-only"], timings[blended])
        title = "denoising only (no VAE decode)" if mode == "latent" else "end to end (with VAE decode)"
        print(f"\n{title}")
        print(f"{'schedule':14}{'s / video':>12}{'steps':>22}{'GFLOPs':>12}")
        for label, t in timings.items():
            steps = ", ".join(f"{r} {k}" for r, k in t.steps.items())
            print(f"{label:14}{t.seconds:>12.4f}{steps:>22}{t.flops / 1e9:>12.3f}")
        print(
            f"measured speed-up of {blended} over large-only: {rep.measured_speedup:.3f}x; "
            f"FLOP-predicted {rep.flop_speedup:.3f}x; measured/predicted {rep.efficiency:.3f} (goal >= 0.95)"
        )
        print(
            f"predicted from per-role step times: {rep.step_time_prediction:.4f} s; routing overhead "
            f"{rep.routing_overhead:.3f} (goal <= 1.02)"
        )


if __name__ == "__main__":
    main()
