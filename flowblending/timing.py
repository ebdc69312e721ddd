"""Wall-time measurement of schedules side by side (used by ``flowblending demo`` and ``benchmarks/``).

Tests never assert times; this module only measures. Schedules are interleaved across repeats (A B C A B C
...) so that machine drift affects them alike, and each is reported as the median of its repeats.
``interleaved_times`` times any set of variants that way (rotating their order per repeat), and ``spread`` /
``paired_ratio`` report a median with its range, ratios taken per repeat.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
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


@dataclass(frozen=True)
class Spread:
    """Median of repeated measurements and their range (``low``, ``high``): the figure and how far it moves."""

    median: float
    low: float
    high: float
    samples: tuple[float, ...]

    def __format__(self, spec: str) -> str:
        spec = spec or ".3f"
        return f"{self.median:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "low": self.low, "high": self.high, "samples": list(self.samples)}


def spread(samples: Sequence[float]) -> Spread:
    """Median and range of ``samples`` (at least one)."""
    if not samples:
        raise ValueError("spread() needs at least one sample.")
    values = tuple(float(s) for s in samples)
    return Spread(statistics.median(values), min(values), max(values), values)


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> Spread:
    """Spread of per-repeat ratios ``numerator[i] / denominator[i]`` (repeat i of both was measured together)."""
    if len(numerator) != len(denominator):
        raise ValueError(
            f"paired_ratio needs as many numerators as denominators ({len(numerator)} vs {len(denominator)})."
        )
    return spread([a / b for a, b in zip(numerator, denominator, strict=True)])


def interleaved_times(
    runs: Mapping[str, Callable[[], Any]],
    *,
    repeats: int,
    warmup: int = 1,
    prepare: Callable[[str], Any] | None = None,
    rotate: bool = True,
) -> dict[str, list[float]]:
    """Wall seconds of each of ``runs`` (label -> callable) per repeat, the variants alternating within a repeat.

    ``warmup`` untimed rounds come first. ``prepare(label)``, when given, runs untimed before each call (to install
    the variant). With ``rotate`` the order inside repeat r starts at variant r (A B C, B C A, C A B, ...) so that
    no variant always runs first or right after the same neighbour.
    """
    import gc

    labels = list(runs)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for rnd in range(warmup + repeats):
        shift = (rnd - warmup) % len(labels) if rotate and rnd >= warmup else 0
        for label in labels[shift:] + labels[:shift]:
            if prepare is not None:
                prepare(label)
            gc.collect()
            start = time.perf_counter()
            runs[label]()
            elapsed = time.perf_counter() - start
            if rnd >= warmup:
                times[label].append(elapsed)
    return times
