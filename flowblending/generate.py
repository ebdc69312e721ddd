"""Generate with a profile-routed pipeline, plan a run without weights (dry run), and report what ran.

A schedule whose segments run their own step count (paper section 6(b), LDL) is run by :func:`composed_call`: it
composes the run's noise levels (:func:`flowblending.compose.run_schedule`), hands them to the pipeline the way
:func:`flowblending.families.schedule_argument` says (``timesteps=``, ``sigmas=`` or the scheduler itself for the
duration of the call) and tells the router the segment of each run step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .cost import schedule_cost
from .errors import FlowBlendingError
from .profile import Profile
from .schedule import Segment, count_steps, has_own_steps


@dataclass(frozen=True)
class PlannedStep:
    """One step of a planned run: its index, the role that runs it, and its noise level.

    ``base_step``: the step of the N-step base schedule whose noise level it starts from (``step`` unless a segment
    runs its own steps); ``segment``: the index of its schedule segment.
    """

    step: int
    role: str
    sigma: float | None
    timestep: float | None
    base_step: int | None = None
    segment: int | None = None


@dataclass(frozen=True)
class SegmentPlan:
    """One segment of a planned run: its role, fractions, base steps ``[first, end)``, the steps it really runs,
    the noise levels of its first and last step, and its guidance scale (None: the pipeline's)."""

    index: int
    role: str
    start: float
    end: float
    base_first: int
    base_end: int
    steps: int
    own_steps: bool
    sigma_first: float | None
    sigma_last: float | None
    guidance_scale: float | None


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
    base_steps: int | None = None
    segments: tuple[SegmentPlan, ...] = ()

    @property
    def nfe(self) -> int:
        """Transformer evaluations per video counted as the paper counts NFE: one per step run."""
        return len(self.steps)


def plan_run(profile: Profile, num_steps: int | None = None, schedule: Sequence[Segment] | None = None) -> Plan:
    """Per-step roles, sigmas and FLOPs for a run over ``num_steps`` base steps with the profile's (or a given)
    schedule; segments with their own steps run those (paper section 6(b))."""
    from .compose import run_schedule
    from .schedule import segment_ranges

    n = num_steps or profile.setting.num_inference_steps
    segments = tuple(schedule or profile.schedule)
    run = run_schedule(profile.setting, segments, n, profile.pipeline_class)
    roles = tuple(segments[s.segment].model for s in run.steps)
    cost = schedule_cost(roles, profile.cost.flops_per_step, profile.cost.reference_role, num_steps=n)
    steps = tuple(
        PlannedStep(i, roles[i], run.sigmas[i], run.timesteps[i], s.base_step, s.segment)
        for i, s in enumerate(run.steps)
    )
    per_segment = []
    for k, (seg, (a, b)) in enumerate(zip(segments, segment_ranges(segments, n), strict=True)):
        mine = [st for st in steps if st.segment == k]
        per_segment.append(
            SegmentPlan(
                index=k,
                role=seg.model,
                start=seg.start,
                end=seg.end,
                base_first=a,
                base_end=b,
                steps=len(mine),
                own_steps=seg.steps is not None,
                sigma_first=mine[0].sigma if mine else None,
                sigma_last=mine[-1].sigma if mine else None,
                guidance_scale=seg.guidance_scale,
            )
        )
    return Plan(
        profile=profile.name,
        num_steps=len(steps),
        schedule=segments,
        steps=steps,
        steps_per_role=count_steps(roles),
        flops_total=cost.flops_total,
        flops_large_only=cost.flops_large_only,
        flops_ratio=cost.flops_ratio,
        predicted_speedup=cost.predicted_speedup,
        base_steps=n,
        segments=tuple(per_segment),
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
    uncond_skipped_per_role: dict[str, int] = dataclasses.field(default_factory=dict)

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
    """One video from a routed pipeline with the profile's setting (``overrides`` win); frames and a report.

    ``fps`` (an override, else the profile's) is passed as ``frame_rate=`` to pipelines that take one (LTX).
    """
    import torch

    from .router import RoutingTransformer
    from .video import videos_of

    router = pipe.transformer
    if not isinstance(router, RoutingTransformer):
        raise TypeError(
            "pipe.transformer is not a RoutingTransformer; call flowblending.apply_profile(pipe, ...) first."
        )
    fps = overrides.pop("fps", None) or profile.setting.fps
    kwargs = {**profile.setting.call_kwargs(), **{k: v for k, v in overrides.items() if v is not None}}
    if image is not None:
        kwargs["image"] = image
    if fps is not None and "frame_rate" not in kwargs and _accepts(pipe, "frame_rate"):
        kwargs["frame_rate"] = fps  # LTX conditions its positional embedding on the frame rate
    diffs = setting_differences(profile, kwargs, pipe.scheduler)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    base_steps = kwargs.get("num_inference_steps") or _default_steps(pipe) or profile.setting.num_inference_steps
    with composed_call(pipe, profile, kwargs) as call_kwargs:
        start = time.perf_counter()
        out = pipe(prompt=prompt, generator=generator, output_type=output_type, **call_kwargs)
        wall = time.perf_counter() - start
    counters = router.counters
    roles = tuple(counters.step_roles[i] for i in sorted(counters.step_roles))
    composed = has_own_steps(router.schedule)
    cost = schedule_cost(
        roles,
        profile.cost.flops_per_step,
        profile.cost.reference_role,
        num_steps=base_steps if composed else None,
    )
    report = RunReport(
        wall_time_s=wall,
        num_steps=counters.num_steps,
        steps_per_role=dict(counters.steps),
        calls_per_role=dict(counters.calls),
        flops_total=cost.flops_total,
        flops_large_only=cost.flops_large_only,
        setting_differences=tuple(diffs),
        uncond_skipped_per_role=dict(counters.uncond_skipped),
    )
    return videos_of(out, output_type)[0], report


def _call_parameters(pipe: Any) -> Mapping[str, inspect.Parameter]:
    """The keyword parameters of ``pipe.__call__`` (empty when its signature cannot be read)."""
    try:
        return inspect.signature(type(pipe).__call__).parameters
    except (TypeError, ValueError):
        return {}


def _accepts(pipe: Any, name: str) -> bool:
    """Whether ``pipe.__call__`` takes the keyword argument ``name``."""
    return name in _call_parameters(pipe)


def _default_steps(pipe: Any) -> int | None:
    """The pipeline's own default ``num_inference_steps`` (its ``__call__`` signature), or None."""
    param = _call_parameters(pipe).get("num_inference_steps")
    default = None if param is None else param.default
    return default if isinstance(default, int) and not isinstance(default, bool) else None


@contextlib.contextmanager
def composed_call(pipe: Any, profile: Profile, call_kwargs: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The keyword arguments for one call of ``pipe`` that runs its router's schedule (own-steps segments: sec 6(b)).

    Without own-steps segments the arguments come back unchanged. With them, ``num_inference_steps`` (the base
    step count N) becomes the run's step count (LDL: 24 of 40), the composed noise levels go to the pipeline as
    ``timesteps=`` or ``sigmas=``, or to ``scheduler.set_timesteps`` for the duration of the call (restored
    afterwards), and the router is told the segment of each run step (it checks the scheduler's sigmas). Use as
    ``with composed_call(pipe, profile, kwargs) as kw: pipe(prompt=..., **kw)``.
    """
    from .compose import run_schedule, sigmas_to_give
    from .families import schedule_argument
    from .router import RoutingTransformer

    router = pipe.transformer
    if not isinstance(router, RoutingTransformer) or not has_own_steps(router.schedule):
        yield dict(call_kwargs)
        return
    for key in ("timesteps", "sigmas"):
        if call_kwargs.get(key) is not None:
            raise FlowBlendingError(
                f"{key}= was given, but this schedule has segments that run their own steps, whose noise levels the "
                "schedule itself composes from num_inference_steps base steps; leave out timesteps= and sigmas=."
            )
    n = call_kwargs.get("num_inference_steps") or _default_steps(pipe) or profile.setting.num_inference_steps
    size = {k: call_kwargs[k] for k in ("height", "width", "num_frames") if call_kwargs.get(k) is not None}
    setting = dataclasses.replace(profile.setting, **size)
    how = schedule_argument(pipe)  # refuses a pipeline and scheduler that take no custom schedule, before any work
    run = run_schedule(setting, router.schedule, n, type(pipe).__name__, scheduler=pipe.scheduler)
    scheduler = pipe.scheduler
    names = f"{type(pipe).__name__} with {type(scheduler).__name__}"
    kwargs = {**call_kwargs, "num_inference_steps": len(run.steps)}
    if how == "timesteps":
        kwargs["timesteps"] = list(run.timesteps)
    elif how == "sigmas":
        given = sigmas_to_give(run.sigmas, scheduler.config)
        if given is not None:
            kwargs["sigmas"] = given
        else:
            how = "scheduler"  # e.g. dynamic shifting: the scheduler sees the pipeline's mu
    if how == "scheduler" and sigmas_to_give(run.sigmas, scheduler.config, mu=0.0) is None:
        raise FlowBlendingError(
            f"{names}: the scheduler's config transforms the sigmas it is given in a way that cannot be undone "
            "(shift_terminal, karras/exponential/beta sigmas, or no flow sigmas), so it cannot run the composed noise "
            "levels of a schedule whose segments run their own steps; use a flow-matching scheduler without those "
            "(e.g. FlowMatchEulerDiscreteScheduler with shift_terminal None) or a schedule without segment steps."
        )
    router.expect_run(run.segments, run.sigmas)
    restore = _give_scheduler_sigmas(scheduler, run.sigmas) if how == "scheduler" else contextlib.nullcontext()
    try:
        with restore:
            yield kwargs
    finally:
        router.expect_run(None)


@contextlib.contextmanager
def _give_scheduler_sigmas(scheduler: Any, sigmas: Sequence[float]) -> Iterator[None]:
    """For the duration: ``scheduler.set_timesteps(...)`` sets ``sigmas`` (shift undone) whatever it is asked."""
    import numpy as np

    from .compose import sigmas_to_give

    original = scheduler.set_timesteps
    own = "set_timesteps" in vars(scheduler)
    previous = vars(scheduler).get("set_timesteps")

    @functools.wraps(original)
    def set_timesteps(*args: Any, **kwargs: Any) -> Any:
        mu = kwargs.get("mu")
        device = kwargs.get("device", args[1] if len(args) > 1 else None)
        given = sigmas_to_give(sigmas, scheduler.config, mu)
        if given is None:
            raise FlowBlendingError(
                f"{type(scheduler).__name__} shifts dynamically but the pipeline gave it no mu, so the composed noise "
                "levels cannot be given to it; use a scheduler config without use_dynamic_shifting."
            )
        extra = {"mu": mu} if mu is not None else {}
        return original(sigmas=np.array(given, dtype=np.float64), device=device, **extra)

    scheduler.set_timesteps = set_timesteps
    try:
        yield
    finally:
        if own:
            scheduler.set_timesteps = previous
        else:
            del scheduler.set_timesteps
