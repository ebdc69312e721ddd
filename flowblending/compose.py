"""Build a complete profile from its parts: boundaries (with their sigmas) and cost are derived, not typed in."""

from __future__ import annotations

import datetime as _dt
import itertools
import logging
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


#: LTX-Video's VAE compresses 32x spatially and 8x in time (used to recompute its resolution-dependent shift).
LTX_VAE_COMPRESSION = (32, 8)


def step_sigmas(
    setting: Setting, num_steps: int | None = None, pipeline_class: str = ""
) -> tuple[list[float], list[float]]:
    """Noise level and timestep at the input of every step, as the pipeline's own ``set_timesteps`` makes them.

    LTXConditionPipeline passes ``timesteps = 1000 * linear_quadratic_schedule(N)`` (no ``mu``); the other LTX
    pipelines pass ``sigmas = linspace(1, 1/N, N)`` and a resolution-dependent ``mu`` (dynamic shifting); Wan
    pipelines call ``set_timesteps(N)`` and the scheduler applies its flow shift.
    """
    import numpy as np

    scheduler = scheduler_from_spec(setting)
    n = num_steps or setting.num_inference_steps
    if pipeline_class == "LTXConditionPipeline":
        from diffusers.pipelines.ltx.pipeline_ltx_condition import linear_quadratic_schedule

        # set_timesteps warns that timesteps without sigmas skip the shift; the pipeline passes exactly that
        scheduler_logger = logging.getLogger(type(scheduler).__module__)
        level = scheduler_logger.level
        scheduler_logger.setLevel(logging.ERROR)
        try:
            scheduler.set_timesteps(timesteps=linear_quadratic_schedule(n) * 1000)
        finally:
            scheduler_logger.setLevel(level)
    elif pipeline_class.startswith("LTX"):
        spatial, temporal = LTX_VAE_COMPRESSION
        frames, height, width = setting.num_frames or 161, setting.height or 512, setting.width or 704
        seq_len = ((frames - 1) // temporal + 1) * (height // spatial) * (width // spatial)
        cfg = scheduler.config
        base_len, max_len = cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096)
        base_shift, max_shift = cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15)
        m = (max_shift - base_shift) / (max_len - base_len)
        mu = seq_len * m + base_shift - m * base_len
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / n, n), mu=mu)
    else:
        scheduler.set_timesteps(n)
    sigmas = [float(s) for s in scheduler.sigmas[:n]]
    timesteps = [float(t) for t in scheduler.timesteps[:n]]
    return sigmas, timesteps


def boundaries_for(
    segments: Sequence[Segment], sigmas: Sequence[float], timesteps: Sequence[float] | None = None
) -> list[Boundary]:
    """One Boundary per switch: fraction, first step, and the sigma/timestep there."""
    n = len(sigmas)
    out = []
    for prev, seg in itertools.pairwise(segments):
        step = first_step(seg.start, n)
        sigma = float(sigmas[step]) if step < n else 0.0
        t = float(timesteps[step]) if timesteps is not None and step < n else None
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
    sigmas: Sequence[float] | None = None,
    timesteps: Sequence[float] | None = None,
) -> Profile:
    """A validated Profile whose boundaries and cost block are computed from the schedule and setting.

    ``sigmas``/``timesteps``: the per-step noise levels of the calibration run when known (the calibrator
    records them); otherwise they are recomputed from the setting's scheduler config.
    """
    import diffusers
    import torch

    from . import __version__

    plan = plan_steps(schedule, setting.num_inference_steps)
    if sigmas is None:
        sigmas, timesteps = step_sigmas(setting, pipeline_class=pipeline_class)
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
        boundaries=tuple(boundaries_for(schedule, sigmas, timesteps)),
        cost=cost,
        calibration=dict(calibration) if calibration is not None else None,
        provenance=prov,
    )
    return Profile.from_dict(profile.to_dict())
