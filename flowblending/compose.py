"""Build a complete profile from its parts: boundaries (with their sigmas) and cost are derived, not typed in."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any

from .cost import schedule_cost
from .profile import Boundary, ModelSpec, Profile, Setting
from .schedule import Segment, first_step, plan_steps


def scheduler_from_spec(setting: Setting) -> Any:
    """The diffusers scheduler of a setting, built from its recorded config (no download)."""
    import diffusers

    spec = setting.scheduler
    cls = getattr(diffusers, spec.cls, None)
    if cls is None:
        raise ValueError(f"setting.scheduler.class {spec.cls!r} is not a diffusers scheduler class.")
    config = dict(spec.config)
    if spec.flow_shift is not None:
        if "flow_shift" in cls.__init__.__code__.co_varnames:
            config["flow_shift"] = spec.flow_shift
        elif "shift" in cls.__init__.__code__.co_varnames:
            config["shift"] = spec.flow_shift
    return cls.from_config(config)


def step_sigmas(setting: Setting, num_steps: int | None = None) -> tuple[list[float], list[float]]:
    """Noise level and timestep at the input of every step for ``num_steps`` (default: the setting's)."""
    scheduler = scheduler_from_spec(setting)
    n = num_steps or setting.num_inference_steps
    kwargs: dict[str, Any] = {}
    if getattr(scheduler.config, "use_dynamic_shifting", False):
        kwargs["mu"] = float(scheduler.config.get("base_shift", 0.5))
    scheduler.set_timesteps(n, **kwargs)
    sigmas = [float(s) for s in scheduler.sigmas[:n]]
    timesteps = [float(t) for t in scheduler.timesteps[:n]]
    return sigmas, timesteps


def boundaries_for(segments: Sequence[Segment], setting: Setting, num_steps: int | None = None) -> list[Boundary]:
    """One Boundary per switch: fraction, first step, and the sigma/timestep there (DESIGN decision 2)."""
    n = num_steps or setting.num_inference_steps
    sigmas, timesteps = step_sigmas(setting, n)
    out = []
    for prev, seg in zip(segments, segments[1:], strict=False):
        step = first_step(seg.start, n)
        sigma = sigmas[step] if step < n else 0.0
        t = timesteps[step] if step < n else None
        out.append(Boundary(seg.start, step, sigma, t, prev.model, seg.model))
    return out


def make_profile(
    *,
    name: str,
    pipeline_class: str,
    models: Mapping[str, ModelSpec],
    setting: Setting,
    schedule: Sequence[Segment],
    flops_per_step: Mapping[str, float],
    base_role: str = "large",
    reference_role: str = "large",
    cost_source: str = "",
    description: str = "",
    image_to_video: bool = False,
    calibration: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Profile:
    """A validated Profile whose boundaries and cost block are computed from the schedule and setting."""
    import diffusers
    import torch

    from . import __version__

    plan = plan_steps(schedule, setting.num_inference_steps)
    cost = schedule_cost(plan, flops_per_step, reference_role, cost_source)
    prov = {
        "tool": f"flowblending {__version__}",
        "diffusers": diffusers.__version__,
        "torch": torch.__version__.split("+")[0],
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        **dict(provenance or {}),
    }
    profile = Profile(
        name=name,
        description=description,
        pipeline_class=pipeline_class,
        base_role=base_role,
        image_to_video=image_to_video,
        models=dict(models),
        setting=setting,
        schedule=tuple(schedule),
        boundaries=tuple(boundaries_for(schedule, setting)),
        cost=cost,
        calibration=dict(calibration) if calibration is not None else None,
        provenance=prov,
    )
    return Profile.from_dict(profile.to_dict())
