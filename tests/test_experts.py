"""A large role that is two experts (Wan 2.2 A14B, WanPipeline with transformer_2) and the blend around it."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import flowblending
from flowblending.cli import cli
from flowblending.errors import FlowBlendingError, IncompatibleModelsError
from flowblending.experts import ExpertPair, active_parameters, base_transformer, expert_pair_of
from flowblending.profile import load_profile
from flowblending.router import RoutingTransformer
from flowblending.schedule import plan_steps, segments_from_pattern
from flowblending.testing import save_tiny_profile
from flowblending.testing.wan import TINY_LARGE, TINY_SMALL, save_wan_pair

PROMPT = "a red circle moving left"
STEPS = 8


@pytest.fixture(scope="module")
def wan22(tmp_path_factory):
    """Tiny Wan 2.2-style pipeline: high expert + low expert switched at t = 500, and a small transformer."""
    return save_wan_pair(tmp_path_factory.mktemp("wan22"), large=TINY_LARGE, small=TINY_SMALL, boundary_ratio=0.5)


@pytest.fixture(scope="module")
def profile_path(wan22, tmp_path_factory):
    return save_tiny_profile(wan22, tmp_path_factory.mktemp("p") / "wan22.json", steps=STEPS, boundaries=(0.25, 0.75))


def _plain(pair):
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(pair.pipeline_dir)


def _run(pipe, pair, **extra):
    out = pipe(
        prompt=PROMPT,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=STEPS,
        output_type="latent",
        **{**pair.call_kwargs, **extra},
    )
    return out.frames


def test_the_pair_is_found_and_switches_where_diffusers_does(wan22):
    pipe = _plain(wan22)
    pair = expert_pair_of(pipe)
    assert isinstance(pair, ExpertPair) and base_transformer(pipe) is not pipe.transformer
    assert pair.high is pipe.transformer and pair.low is pipe.transformer_2
    assert pair.boundary_timestep == 500.0  # boundary_ratio 0.5 x 1000 training timesteps
    assert [pair.expert_for(torch.tensor([t])) for t in (999.0, 500.0, 499.9, 1.0)] == ["high", "high", "low", "low"]
    one = sum(p.numel() for p in pipe.transformer.parameters())
    assert active_parameters(pair) == one  # one expert runs per call, not both
    assert expert_pair_of(type(pipe)(**{**pipe.components, "transformer_2": None, "boundary_ratio": None})) is None


def test_all_large_is_diffusers_own_two_expert_run(wan22, profile_path):
    pipe = flowblending.load_pipeline(profile_path, schedule=segments_from_pattern("L"))
    assert isinstance(pipe.transformer, RoutingTransformer) and pipe.transformer_2 is pipe.transformer
    routed = _run(pipe, wan22)
    plain = _run(_plain(wan22), wan22)
    assert torch.equal(routed, plain)
    pair = pipe.transformer.roles["large"]
    # UniPC's 8 timesteps for this tiny scheduler: 4 at or above t = 500 (high), 4 below (low); cond + uncond
    timesteps = pipe.scheduler.timesteps
    high_steps = int((timesteps >= 500).sum())
    assert 0 < high_steps < STEPS
    assert pair.calls == {"high": 2 * high_steps, "low": 2 * (STEPS - high_steps)}


def test_high_small_low_equals_a_callback_swap_of_both_slots(wan22, profile_path):
    profile = load_profile(profile_path)
    pipe = flowblending.load_pipeline(profile)
    plan = plan_steps(profile.schedule, STEPS)
    assert plan == ("large", "large", "small", "small", "small", "small", "large", "large")
    routed = _run(pipe, wan22)

    reference = _plain(wan22)
    experts = (reference.transformer, reference.transformer_2)
    small = type(reference.transformer).from_pretrained(wan22.small_dir)

    def switch(p, i, t, callback_kwargs):  # both slots run the small model in the middle, the experts elsewhere
        if i + 1 < STEPS:
            p.transformer, p.transformer_2 = (small, small) if plan[i + 1] == "small" else experts
        return {}

    expected = _run(reference, wan22, callback_on_step_end=switch)
    assert torch.equal(routed, expected)
    pair = pipe.transformer.roles["large"]
    timesteps = [float(t) for t in pipe.scheduler.timesteps]
    large_steps = [i for i in range(STEPS) if plan[i] == "large"]
    high = sum(1 for i in large_steps if timesteps[i] >= 500)
    assert pair.calls == {"high": 2 * high, "low": 2 * (len(large_steps) - high)}  # cond + uncond per step
    assert 0 < high < len(large_steps)  # both experts ran: the blend is high / small / low here
    assert pipe.transformer.counters.steps == {"large": 4, "small": 4}


def test_a_mismatched_small_model_names_the_field(wan22, tmp_path):
    from flowblending.testing.wan import wan_transformer

    pipe = _plain(wan22)
    other = wan_transformer(TINY_SMALL)
    other.register_to_config(text_dim=8)
    with pytest.raises(IncompatibleModelsError, match="'text_dim'"):
        flowblending.loading.check_compatible(base_transformer(pipe), other)


def test_cache_and_offload_are_refused_in_one_line(profile_path):
    with pytest.raises(FlowBlendingError, match="two-expert"):
        flowblending.load_pipeline(profile_path, cache="first-block:0.05")
    with pytest.raises(FlowBlendingError, match="two-expert"):
        flowblending.load_pipeline(profile_path, offload="model")


def test_calibration_end_to_end_through_the_cli(wan22, tmp_path):
    out, prompts = tmp_path / "wan22.json", tmp_path / "prompts.txt"
    prompts.write_text(PROMPT + "\n")
    args = [
        "calibrate", "--large", wan22.pipeline_dir, "--small", wan22.small_dir, "--method", "divergence",
        "--prompts", prompts, "--steps", STEPS, "--height", 48, "--width", 64, "--num-frames", 9,
        "--max-sequence-length", 16, "--output", out,
    ]  # fmt: skip
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    profile = load_profile(out)
    one = sum(p.numel() for p in _plain(wan22).transformer.parameters())
    assert json.loads(out.read_text())["models"]["large"]["parameters"] == one
    gif = tmp_path / "v.gif"
    run = CliRunner().invoke(cli, ["run", "--profile", str(out), "--prompt", PROMPT, "--output", str(gif)])
    assert run.exit_code == 0, run.output
    assert profile.models["large"].id == str(wan22.pipeline_dir)
