"""Generate with a profile-routed pipeline, plan a run without weights (dry run), and report what ran."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .cost import schedule_cost
from .profile import Profile
from .schedule import Segment, count_steps, plan_segments


@dataclass(frozen=True)
class PlannedStep:
    """One step of a planned run: its index, the role that runs it, and its noise level."""

    step: int
    role: str
    sigma: float | None
    timestep: float | None


@dataclass(frozen=True)
class Plan:
    """What a run will do, known before any weight is loaded."""

    profile: str
    num_steps: int
    schedule: tuple[Segment, ...]
    steps: tuple[PlannedStep, ...]
    steps_per_role: dict[str, int]
    flops_total: float
    flops_large_only: float
    flops_ratio: float
    predicted_speedup: float


def plan_run(profile: Profile, num_steps: int | None = None, schedule: Sequence[Segment] | None = None) -> Plan:
    """Per-step roles, sigmas and FLOPs for a run of ``num_steps`` with the profile's (or a given) schedule."""
    from .compose import step_sigmas

    n = num_steps or profile.setting.num_inference_steps
    segments = tuple(schedule or profile.schedule)
    index = plan_segments(segments, n)
    roles = tuple(segments[k].model for k in index)
    sigmas, timesteps = step_sigmas(profile.setting, n, profile.pipeline_class)
    cost = schedule_cost(roles, profile.cost.flops_per_step, profile.cost.reference_role)
    return Plan(
        profile=profile.name,
        num_steps=n,
        schedule=segments,
        steps=tuple(PlannedStep(i, roles[i], sigmas[i], timesteps[i]) for i in range(n)),
        steps_per_role=count_steps(roles),
        flops_total=cost.flops_total,
        flops_large_only=cost.flops_large_only,
        flops_ratio=cost.flops_ratio,
        predicted_speedup=cost.predicted_speedup,
    )


@dataclass(frozen=True)
class RunReport:
    """What one generation did: wall time, steps and transformer calls per role, FLOPs against large-only."""

    wall_time_s: float
    num_steps: int
    steps_per_role: dict[str, int]
    calls_per_role: dict[str, int]
    flops_total: float
    flops_large_only: float
    setting_differences: tuple[str, ...]

    @property
    def flops_saved(self) -> float:
        """Fraction of large-only FLOPs saved."""
        return 1.0 - self.flops_total / self.flops_large_only


def setting_differences(profile: Profile, call_kwargs: dict[str, Any], scheduler: Any) -> list[str]:
    """How a run's setting differs from the profile's calibration setting, one entry per field."""
    s = profile.setting
    diffs = []
    for name in ("num_inference_steps", "guidance_scale", "height", "width", "num_frames"):
        ours, theirs = call_kwargs.get(name), getattr(s, name)
        if ours is not None and theirs is not None and ours != theirs:
            diffs.append(f"{name} {ours} (calibrated {theirs})")
    if type(scheduler).__name__ != s.scheduler.cls:
        diffs.append(f"scheduler {type(scheduler).__name__} (calibrated {s.scheduler.cls})")
    shift = scheduler.config.get("flow_shift", scheduler.config.get("shift"))
    if s.scheduler.flow_shift is not None and shift is not None and abs(float(shift) - s.scheduler.flow_shift) > 1e-9:
        diffs.append(f"flow shift {shift} (calibrated {s.scheduler.flow_shift})")
    return diffs


def generate(
    pipe: Any,
    profile: Profile,
    prompt: str,
    *,
    seed: int = 0,
    image: Any = None,
    output_type: str = "np",
    **overrides: Any,
) -> tuple[Any, RunReport]:
    """One video from a routed pipeline with the profile's setting (``overrides`` win); frames and a report."""
    import torch

    from .router import RoutingTransformer
    from .video import videos_of

    router = pipe.transformer
    if not isinstance(router, RoutingTransformer):
        raise TypeError(
            "pipe.transformer is not a RoutingTransformer; call flowblending.apply_profile(pipe, ...) first."
        )
    kwargs = {**profile.setting.call_kwargs(), **{k: v for k, v in overrides.items() if v is not None}}
    if image is not None:
        kwargs["image"] = image
    diffs = setting_differences(profile, kwargs, pipe.scheduler)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    start = time.perf_counter()
    out = pipe(prompt=prompt, generator=generator, output_type=output_type, **kwargs)
    wall = time.perf_counter() - start
    counters = router.counters
    roles = tuple(counters.step_roles[i] for i in sorted(counters.step_roles))
    cost = schedule_cost(roles, profile.cost.flops_per_step, profile.cost.reference_role)
    report = RunReport(
        wall_time_s=wall,
        num_steps=counters.num_steps,
        steps_per_role=dict(counters.steps),
        calls_per_role=dict(counters.calls),
        flops_total=cost.flops_total,
        flops_large_only=cost.flops_large_only,
        setting_differences=tuple(diffs),
    )
    return videos_of(out, output_type)[0], report
