"""The routing transformer on tiny Wan, LTX and LTX-I2V pipelines loaded through load_pipeline."""

from __future__ import annotations

import pytest
import torch

import flowblending
from flowblending.errors import FlowBlendingError
from flowblending.router import RoutingTransformer
from flowblending.schedule import count_steps, plan_steps, segments_from_pattern
from flowblending.testing import make_scheduler, save_tiny_profile

PROMPT = "a red circle moving left"


def _run(pipe, pair, steps, **extra):
    kwargs = {k: v for k, v in pair.call_kwargs.items()}
    kwargs.update(extra)
    out = pipe(
        prompt=PROMPT,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=steps,
        output_type="pt",
        **kwargs,
    )
    return out.frames


def _plain(pair):
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(pair.pipeline_dir)


def _reference_switching(pair, plan, steps, scheduler=None):
    """A hand-written switch: a step-end callback swaps pipe.transformer to the next step's model."""
    pipe = _plain(pair)
    if scheduler is not None:
        pipe.scheduler = scheduler
    models = {"large": pipe.transformer, "small": type(pipe.transformer).from_pretrained(pair.small_dir)}
    pipe.transformer = models[plan[0]]

    def switch(p, i, t, callback_kwargs):
        if i + 1 < len(plan):
            p.transformer = models[plan[i + 1]]
        return {}

    return _run(pipe, pair, steps, callback_on_step_end=switch)


@pytest.fixture(scope="module")
def profiles(tiny_wan, tiny_ltx, tiny_ltx_i2v, tmp_path_factory):
    root = tmp_path_factory.mktemp("router-profiles")
    return {
        "wan": save_tiny_profile(tiny_wan, root / "wan.json", steps=10),
        "ltx": save_tiny_profile(tiny_ltx, root / "ltx.json", steps=8, boundaries=(0.375, 0.875)),
        "ltx_i2v": save_tiny_profile(tiny_ltx_i2v, root / "ltx_i2v.json", steps=8, boundaries=(0.375, 0.875)),
    }


@pytest.mark.parametrize("family", ["wan", "ltx", "ltx_i2v"])
def test_all_large_profile_is_bit_identical_to_the_plain_pipeline(family, profiles, request):
    pair = request.getfixturevalue({"wan": "tiny_wan", "ltx": "tiny_ltx", "ltx_i2v": "tiny_ltx_i2v"}[family])
    pipe = flowblending.load_pipeline(profiles[family], schedule=segments_from_pattern("L"))
    assert isinstance(pipe.transformer, RoutingTransformer)
    routed = _run(pipe, pair, 6)
    plain = _run(_plain(pair), pair, 6)
    assert torch.equal(routed, plain)
    assert pipe.transformer.counters.steps == {"large": 6}


@pytest.mark.parametrize("family", ["wan", "ltx", "ltx_i2v"])
def test_lsl_is_bit_identical_to_a_hand_written_switching_loop(family, profiles, request):
    pair = request.getfixturevalue({"wan": "tiny_wan", "ltx": "tiny_ltx", "ltx_i2v": "tiny_ltx_i2v"}[family])
    profile = flowblending.load_profile(profiles[family])
    pipe = flowblending.load_pipeline(profile)
    steps = 8
    plan = plan_steps(profile.schedule, steps)
    assert set(plan) == {"large", "small"}
    routed = _run(pipe, pair, steps)
    reference = _reference_switching(pair, plan, steps)
    assert torch.equal(routed, reference)
    large_only = _run(_plain(pair), pair, steps)
    assert not torch.equal(routed, large_only)  # the small model really ran


@pytest.mark.parametrize("kind", ["unipc", "flowmatch_euler", "dpmsolver"])
def test_every_scheduler_switches_at_the_planned_steps(kind, tiny_wan, profiles):
    profile = flowblending.load_profile(profiles["wan"])
    pipe = flowblending.load_pipeline(profile)
    pipe.scheduler = make_scheduler(kind, tiny_wan)
    plan = plan_steps(profile.schedule, 10)
    routed = _run(pipe, tiny_wan, 10)
    reference = _reference_switching(tiny_wan, plan, 10, scheduler=make_scheduler(kind, tiny_wan))
    assert torch.equal(routed, reference)


@pytest.mark.parametrize("steps", [7, 20, 50])
def test_counters_match_the_plan(steps, tiny_wan, profiles):
    profile = flowblending.load_profile(profiles["wan"])
    pipe = flowblending.load_pipeline(profile)
    _run(pipe, tiny_wan, steps)
    counters = pipe.transformer.counters
    expected = count_steps(plan_steps(profile.schedule, steps))
    assert counters.num_steps == steps
    assert counters.steps == expected
    assert counters.calls == {role: 2 * n for role, n in expected.items()}  # Wan: cond + uncond per step
    assert [counters.step_roles[i] for i in range(steps)] == list(plan_steps(profile.schedule, steps))


def test_ltx_batched_cfg_is_one_call_per_step(tiny_ltx, profiles):
    pipe = flowblending.load_pipeline(profiles["ltx"])
    _run(pipe, tiny_ltx, 8)
    assert pipe.transformer.counters.calls == {"large": 4, "small": 4}
    assert pipe.transformer.counters.steps == {"large": 4, "small": 4}


def test_counters_reset_on_each_run(tiny_wan, profiles):
    pipe = flowblending.load_pipeline(profiles["wan"])
    _run(pipe, tiny_wan, 10)
    _run(pipe, tiny_wan, 5)
    assert pipe.transformer.counters.num_steps == 5
    assert sum(pipe.transformer.counters.steps.values()) == 5


def test_sigma_routing_equals_fraction_routing_at_the_calibration_setting(tiny_wan, profiles):
    by_fraction = flowblending.load_pipeline(profiles["wan"])
    by_sigma = flowblending.load_pipeline(profiles["wan"], routing="sigma")
    a, b = _run(by_fraction, tiny_wan, 10), _run(by_sigma, tiny_wan, 10)
    assert torch.equal(a, b)
    assert by_sigma.transformer.counters.step_roles == by_fraction.transformer.counters.step_roles


def test_mixed_dtypes_cast_inputs_and_outputs(tiny_wan, profiles):
    pipe = flowblending.load_pipeline(profiles["wan"])
    pipe.transformer.roles["small"].to(torch.bfloat16)
    frames = _run(pipe, tiny_wan, 10)
    assert frames.dtype == torch.float32 and torch.isfinite(frames).all()
    assert pipe.transformer.dtype == torch.float32
    assert pipe.transformer.counters.steps == {"large": 6, "small": 4}


def test_pipe_to_moves_every_role(tiny_wan, profiles):
    pipe = flowblending.load_pipeline(profiles["wan"])
    pipe.to("cpu", torch.bfloat16)
    router = pipe.transformer
    assert router.dtype == torch.bfloat16
    assert all(m.dtype == torch.bfloat16 for m in router.roles.values())
    frames = _run(pipe, tiny_wan, 4)
    assert torch.isfinite(frames.float()).all()


@pytest.mark.parametrize("family", ["wan", "ltx"])
def test_per_segment_guidance_equals_running_with_that_guidance(family, profiles, request):
    pair = request.getfixturevalue({"wan": "tiny_wan", "ltx": "tiny_ltx"}[family])
    profile = flowblending.load_profile(profiles[family])
    schedule = segments_from_pattern("L")
    guided = (type(schedule[0])("large", 0.0, 1.0, guidance_scale=2.0),)
    pipe = flowblending.load_pipeline(profile, schedule=guided)
    routed = _run(pipe, pair, 6, guidance_scale=5.0)  # the pipeline's 5.0 is turned into 2.0 by the router
    plain = _run(_plain(pair), pair, 6, guidance_scale=2.0)
    assert torch.allclose(routed, plain, atol=1e-4)
    assert not torch.allclose(routed, _run(_plain(pair), pair, 6, guidance_scale=5.0), atol=1e-4)


def test_router_outside_a_pipeline_says_how_to_install_it(tiny_wan):
    pipe = _plain(tiny_wan)
    router = RoutingTransformer({"large": pipe.transformer}, segments_from_pattern("L"))
    with pytest.raises(FlowBlendingError, match="apply_profile"):
        router(hidden_states=torch.zeros(1))
