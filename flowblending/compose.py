"""Build a complete profile from its parts: boundaries (with their sigmas) and cost are derived, not typed in."""

from __future__ import annotations

import copy
import datetime as _dt
import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .cost import schedule_cost
from .profile import Boundary, ModelSpec, Profile, Setting
from .schedule import RunStep, Segment, first_step, run_plan, run_roles


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
    setting: Setting, num_steps: int | None = None, pipeline_class: str = "", scheduler: Any = None
) -> tuple[list[float], list[float]]:
    """Noise level and timestep at the input of every step, as the pipeline's own ``set_timesteps`` makes them.

    LTXConditionPipeline passes ``timesteps = 1000 * linear_quadratic_schedule(N)`` (no ``mu``); the other LTX
    pipelines pass ``sigmas = linspace(1, 1/N, N)`` and a resolution-dependent ``mu`` (dynamic shifting); Wan
    pipelines call ``set_timesteps(N)`` and the scheduler applies its flow shift. ``scheduler``: a live scheduler to
    use (a copy; it is left as it is) instead of the setting's recorded one.
    """
    import numpy as np

    scheduler = scheduler_from_spec(setting) if scheduler is None else copy.deepcopy(scheduler)
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


@dataclass(frozen=True)
class RunSchedule:
    """The steps a run takes over an N-step base schedule, and the noise level and timestep each starts from."""

    base_steps: int
    steps: tuple[RunStep, ...]
    sigmas: tuple[float, ...]
    timesteps: tuple[float, ...]

    @property
    def segments(self) -> tuple[int, ...]:
        """Segment index of every run step (what the router routes by)."""
        return tuple(s.segment for s in self.steps)


def run_schedule(
    setting: Setting,
    segments: Sequence[Segment],
    num_steps: int | None = None,
    pipeline_class: str = "",
    scheduler: Any = None,
) -> RunSchedule:
    """The composed run: base sigmas (:func:`step_sigmas`) outside own-steps segments, the rule inside (sec 6(b)).

    Every run step starts from a noise level of the N-step base schedule: a segment without ``steps`` takes each
    of its base steps, one with ``steps = k`` takes base steps ``a + floor(j (b - a) / k)``
    (:func:`flowblending.schedule.own_step_starts`). LDL on LTX's 40-step schedule: 24 steps, the distilled model's
    at sigma 0.98125, 0.975, 0.909375 and 0.725.
    """
    n = num_steps or setting.num_inference_steps
    plan = run_plan(segments, n)
    sigmas, timesteps = step_sigmas(setting, n, pipeline_class, scheduler)
    return RunSchedule(
        base_steps=n,
        steps=plan,
        sigmas=tuple(sigmas[s.base_step] for s in plan),
        timesteps=tuple(timesteps[s.base_step] for s in plan),
    )


def sigmas_to_give(sigmas: Sequence[float], config: Mapping[str, Any], mu: float | None = None) -> list[float] | None:
    """The sigmas to pass a flow-matching scheduler so that it makes ``sigmas`` (its shift undone), or None.

    ``set_timesteps(sigmas=x)`` of FlowMatchEuler, UniPC and DPM-Solver (flow sigmas) shifts ``x`` by
    ``k x / (1 + (k - 1) x)`` (flow shift ``k``) or, with dynamic shifting, by ``exp(mu) / (exp(mu) + 1/x - 1)``
    (``mu / (mu + 1/x - 1)`` for a linear time shift); both are inverted here. None when the config does more
    (``shift_terminal``, karras, exponential or beta sigmas) or is not a flow-matching one.
    """
    if any(
        config.get(key) for key in ("shift_terminal", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
    ):
        return None
    if "use_flow_sigmas" in config and not config["use_flow_sigmas"]:
        return None
    if config.get("use_dynamic_shifting"):
        if mu is None:
            return None
        scale = math.exp(mu) if config.get("time_shift_type", "exponential") == "exponential" else mu
        return [1.0 / (1.0 + scale * (1.0 / x - 1.0)) if x > 0 else 0.0 for x in sigmas]
    shift = config.get("flow_shift", config.get("shift", 1.0))
    shift = 1.0 if shift is None else float(shift)
    return [x / (shift - (shift - 1.0) * x) for x in sigmas]


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

    ``sigmas``/``timesteps``: the per-step noise levels of the base schedule (``setting.num_inference_steps``
    steps) when known (the calibrator records them); otherwise they are recomputed from the setting's scheduler
    config. Boundaries are base steps and base noise levels also when a segment runs its own steps.
    """
    import diffusers
    import torch

    from . import __version__

    plan = run_roles(schedule, setting.num_inference_steps)
    if sigmas is None:
        sigmas, timesteps = step_sigmas(setting, pipeline_class=pipeline_class)
    cost = schedule_cost(plan, flops_per_step, reference_role, cost_source, num_steps=setting.num_inference_steps)
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
