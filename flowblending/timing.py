"""Wall-time measurement of schedules side by side (used by ``flowblending demo`` and ``benchmarks/``).

Tests never assert times; this module only measures. Schedules are interleaved across repeats (A B C A B C
...) so that machine drift affects them alike, and each is reported as the median of its repeats.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .cost import schedule_cost
from .profile import Profile
from .schedule import Segment, count_steps, plan_steps


@dataclass(frozen=True)
class ScheduleTiming:
    """Median seconds per generation of one schedule, and its steps per role."""

    label: str
    seconds: float
    steps: dict[str, int]
    flops: float


def time_schedules(
    pipe: Any,
    profile: Profile,
    schedules: Mapping[str, Sequence[Segment]],
    prompts: Sequence[str],
    *,
    repeats: int = 3,
    num_inference_steps: int | None = None,
    output_type: str = "latent",
    **call_kwargs: Any,
) -> dict[str, ScheduleTiming]:
    """Median wall time of one generation per schedule (``output_type="latent"``: the denoising loop and the
    text encoder, no VAE decode), after one warm-up generation each."""
    import torch

    from .loading import apply_profile

    n = num_inference_steps or profile.setting.num_inference_steps
    kwargs = {**profile.setting.call_kwargs(), **call_kwargs, "num_inference_steps": n, "output_type": output_type}
    times: dict[str, list[float]] = {label: [] for label in schedules}
    for rep in range(repeats + 1):
        for label, schedule in schedules.items():
            apply_profile(pipe, profile, schedule=tuple(schedule))
            for prompt in prompts:
                start = time.perf_counter()
                with torch.no_grad():
                    pipe(prompt=prompt, generator=torch.Generator().manual_seed(rep), **kwargs)
                if rep:  # the first round is the warm-up
                    times[label].append(time.perf_counter() - start)
    out = {}
    for label, schedule in schedules.items():
        plan = plan_steps(tuple(schedule), n)
        cost = schedule_cost(plan, profile.cost.flops_per_step, profile.cost.reference_role)
        out[label] = ScheduleTiming(label, statistics.median(times[label]), count_steps(plan), cost.flops_total)
    return out


@dataclass(frozen=True)
class SpeedupReport:
    """Measured against predicted speed-up of a blended schedule over large-only."""

    measured_speedup: float  # large-only time / blended time
    flop_speedup: float  # large-only FLOPs / blended FLOPs
    efficiency: float  # measured / FLOP-predicted (1.0 = the FLOP model is reached)
    step_time_prediction: float  # blended time predicted from per-role step times (large-only, small-only)
    routing_overhead: float  # blended time / step_time_prediction (1.0 = no overhead from routing)


def speedup_report(large: ScheduleTiming, small: ScheduleTiming, blended: ScheduleTiming) -> SpeedupReport:
    """Compare a blended schedule with large-only and small-only timings of the same step count."""
    n = sum(large.steps.values())
    per_step = {"large": large.seconds / n, "small": small.seconds / n}
    predicted = sum(per_step.get(role, 0.0) * k for role, k in blended.steps.items())
    measured = large.seconds / blended.seconds
    flop = large.flops / blended.flops
    return SpeedupReport(measured, flop, measured / flop, predicted, blended.seconds / predicted)
