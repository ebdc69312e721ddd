"""Router gaps: attributes read from the base model, and schedulers without ``step_index`` (DDIM, PNDM, CogVideoX)."""

from __future__ import annotations

import pytest
import torch

import flowblending
from flowblending.errors import FlowBlendingError
from flowblending.router import RoutingTransformer
from flowblending.schedule import plan_steps, segments_from_pattern

PROMPT = "a red circle moving left"


def _wan_ready(cls):
    """``cls`` with what WanPipeline's loop reads besides ``step``: ``set_begin_index`` and per-step ``sigmas``."""

    def set_begin_index(self, begin_index: int = 0) -> None:
        if begin_index != 0:  # these schedulers always start at their first timestep
            raise ValueError(f"begin_index must be 0 for {cls.__name__}, got {begin_index!r}")

    def sigmas(self) -> torch.Tensor:
        # only passed to cache_context as metadata: the DDPM noise level of each timestep, then 0
        alphas = self.alphas_cumprod[self.timesteps.long()]
        return torch.cat([((1 - alphas) / alphas).sqrt(), torch.zeros(1)])

    return type(cls.__name__, (cls,), {"set_begin_index": set_begin_index, "sigmas": property(sigmas)})


class _HiddenStepIndex:
    """FlowMatchEulerDiscreteScheduler behind an interface without ``step_index`` (the real flow-matching loop)."""

    order = 1

    def __init__(self):
        from diffusers import FlowMatchEulerDiscreteScheduler

        self._inner = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
        self.config = self._inner.config

    def set_timesteps(self, num_inference_steps: int | None = None, device=None, **kwargs) -> None:
        self._inner.set_timesteps(num_inference_steps, device=device, **kwargs)

    def set_begin_index(self, begin_index: int = 0) -> None:
        self._inner.set_begin_index(begin_index)

    @property
    def timesteps(self) -> torch.Tensor:
        return self._inner.timesteps

    @property
    def sigmas(self) -> torch.Tensor:
        return self._inner.sigmas

    def step(self, *args, **kwargs):
        return self._inner.step(*args, **kwargs)


def _scheduler(kind: str):
    """A scheduler without ``step_index`` that WanPipeline's loop can drive."""
    from diffusers import CogVideoXDDIMScheduler, DDIMScheduler, PNDMScheduler

    if kind == "pndm":  # one repeated timestep: [875, 750, 750, 625, ...] for 8 steps
        return _wan_ready(PNDMScheduler)(skip_prk_steps=True)
    if kind == "pndm_prk":  # Runge-Kutta warm-up: many repeated timesteps
        return _wan_ready(PNDMScheduler)(skip_prk_steps=False)
    if kind == "ddim":
        return _wan_ready(DDIMScheduler)()
    if kind == "flowmatch_hidden":
        return _HiddenStepIndex()
    return _wan_ready(CogVideoXDDIMScheduler)(prediction_type="v_prediction", timestep_spacing="trailing")


def _run(pipe, pair, steps, **extra):
    out = pipe(
        prompt=PROMPT,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=steps,
        output_type="latent",
        **pair.kwargs(**extra),
    )
    return out.frames


def _reference(pair, kind):
    """A plain pipeline with the scheduler and both models, for a step-end callback that swaps the model."""
    from diffusers import DiffusionPipeline, WanTransformer3DModel

    pipe = DiffusionPipeline.from_pretrained(pair.pipeline_dir)
    pipe.scheduler = _scheduler(kind)
    models = {"large": pipe.transformer, "small": WanTransformer3DModel.from_pretrained(pair.small_dir)}
    return pipe, models


def _timesteps(kind, steps):
    scheduler = _scheduler(kind)
    scheduler.set_timesteps(steps)
    return [float(t) for t in scheduler.timesteps]


@pytest.fixture(scope="module")
def routed(wan_profile_path):
    return flowblending.load_pipeline(wan_profile_path)


def test_unknown_attributes_resolve_on_the_base_model(routed):
    router = routed.transformer
    router.roles["large"].visual_cond = True  # Kandinsky5T2VPipeline reads transformer.visual_cond
    router.roles["small"].only_on_small = 1
    try:
        assert router.visual_cond is True
        assert router.patch_embedding is router.roles["large"].patch_embedding  # a submodule of the base
        with pytest.raises(AttributeError, match="'RoutingTransformer' object has no attribute 'only_on_small'"):
            router.only_on_small  # noqa: B018 - only the base model is asked
        with pytest.raises(AttributeError, match="neither has its base model WanTransformer3DModel"):
            router.no_such_attribute  # noqa: B018
        assert not hasattr(router, "no_such_attribute")
    finally:
        del router.roles["large"].visual_cond, router.roles["small"].only_on_small


def test_private_names_are_not_forwarded_and_nothing_recurses(routed):
    router = routed.transformer
    router.roles["large"]._private_state = 1
    try:
        with pytest.raises(AttributeError, match="_private_state"):
            router._private_state  # noqa: B018
    finally:
        del router.roles["large"]._private_state
    bare = RoutingTransformer.__new__(RoutingTransformer)  # before __init__: no roles, no base_role
    with pytest.raises(AttributeError, match="no attribute 'visual_cond'"):
        bare.visual_cond  # noqa: B018


@pytest.mark.parametrize("kind", ["pndm", "pndm_prk", "ddim", "cogvideox_ddim", "flowmatch_hidden"])
def test_scheduler_without_step_index_switches_exactly(kind, tiny_wan, wan_profile_path):
    steps = 8
    assert not hasattr(_scheduler(kind), "step_index")
    timesteps = _timesteps(kind, steps)
    profile = flowblending.load_profile(wan_profile_path)
    plan = plan_steps(profile.schedule, len(timesteps))  # PNDM runs more loop iterations than steps
    assert set(plan) == {"large", "small"}

    pipe = flowblending.load_pipeline(profile)
    pipe.scheduler = _scheduler(kind)
    routed = _run(pipe, tiny_wan, steps)
    counters = pipe.transformer.counters
    assert counters.num_steps == len(timesteps)
    assert [counters.step_roles[i] for i in range(len(timesteps))] == list(plan)
    assert sum(counters.calls.values()) == 2 * len(timesteps)  # cond + uncond of each step on one model

    reference, models = _reference(tiny_wan, kind)
    reference.transformer = models[plan[0]]

    def switch(p, i, t, callback_kwargs):
        if i + 1 < len(plan):
            p.transformer = models[plan[i + 1]]
        return {}

    expected = _run(reference, tiny_wan, steps, callback_on_step_end=switch)
    assert torch.equal(routed, expected)
    reference.transformer = models["large"]
    assert not torch.equal(routed, _run(reference, tiny_wan, steps))  # the small model really ran


def test_repeated_timesteps_are_counted_in_call_order(tiny_wan, wan_profile_path):
    timesteps = _timesteps("pndm", 8)
    assert timesteps[1] == timesteps[2]  # PNDM repeats a timestep: a value lookup alone could not tell them apart
    pipe = flowblending.load_pipeline(wan_profile_path, schedule=segments_from_pattern("LS", (2 / 9,)))
    pipe.scheduler = _scheduler("pndm")
    _run(pipe, tiny_wan, 8)
    roles = pipe.transformer.counters.step_roles
    assert (roles[1], roles[2]) == ("large", "small")  # step 2 (the repeat) is its own step


class _NoCurrentTimestep:
    """A pipeline stand-in that does not record its current timestep."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self._current_timestep = None


def test_a_pipeline_without_current_timestep_is_refused_in_one_line(routed):
    from diffusers import DDIMScheduler

    router = routed.transformer
    scheduler = DDIMScheduler()
    scheduler.set_timesteps(4)
    stand_in = _NoCurrentTimestep(scheduler)
    router.attach(stand_in)
    try:
        with pytest.raises(FlowBlendingError) as info:
            router(hidden_states=torch.zeros(1))
    finally:
        router.attach(routed)
    message = str(info.value)
    assert "\n" not in message
    assert "scheduler DDIMScheduler has no step_index" in message and "_NoCurrentTimestep" in message
    assert "use a scheduler with step_index" in message


def test_sigma_routing_needs_sigmas(wan_profile_path):
    from diffusers import DDIMScheduler

    pipe = flowblending.load_pipeline(wan_profile_path, routing="sigma")
    scheduler = DDIMScheduler()
    scheduler.set_timesteps(4)
    stand_in = _NoCurrentTimestep(scheduler)  # the router holds its pipeline weakly
    pipe.transformer.attach(stand_in)
    with pytest.raises(FlowBlendingError, match="routing='sigma' needs the scheduler's sigmas, but DDIMScheduler"):
        pipe.transformer(hidden_states=torch.zeros(1))
