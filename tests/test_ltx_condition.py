"""LTXConditionPipeline, the pipeline of the shipped ltxv profile: routing on a tiny offline pipeline, the
profile's boundaries on LTX's linear-quadratic schedule, sigma routing of that profile on a linear-sigma pipeline,
and ``flowblending run --image`` end to end."""

from __future__ import annotations

import warnings

import pytest
import torch
from click.testing import CliRunner
from diffusers import DiffusionPipeline, LTXVideoTransformer3DModel
from diffusers.pipelines.ltx.pipeline_ltx_condition import linear_quadratic_schedule, retrieve_timesteps

import flowblending
from flowblending.cli import cli
from flowblending.compose import scheduler_from_spec, step_sigmas
from flowblending.schedule import plan_by_sigma, plan_steps, segments_from_pattern
from flowblending.testing import save_tiny_ltx_pair, save_tiny_profile

PROMPT = "a red circle moving left"

#: LTX-Video's 8-step distilled sigmas, which Lightricks' distilled configs write to 4 decimals (1.0000, 0.9937,
#: 0.9875, 0.9812, 0.9750, 0.9094, 0.7250, 0.4219): every 5th sigma of the 40-step linear-quadratic schedule.
DISTILLED_SIGMAS = [1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875]


@pytest.fixture(scope="module")
def tiny_condition(tmp_path_factory):
    """A tiny LTXConditionPipeline whose call_kwargs carry a first frame (``image=``)."""
    return save_tiny_ltx_pair(tmp_path_factory.mktemp("ltx-condition"), condition=True, image_to_video=True)


@pytest.fixture(scope="module")
def condition_profile(tiny_condition, tmp_path_factory):
    """The paper's LSL (0.375, 0.875) for the tiny condition pipeline at 8 steps: switches at steps 3 and 7, where
    the 8-step linear-quadratic schedule (the distilled one) has sigma 0.98125 and 0.421875, as ltxv at 40 steps."""
    path = tmp_path_factory.mktemp("ltx-condition-profile") / "ltx-condition.json"
    return save_tiny_profile(tiny_condition, path, steps=8, boundaries=(0.375, 0.875))


def _run(pipe, pair, steps, **extra):
    kwargs = {**pair.call_kwargs, **extra}
    out = pipe(
        prompt=PROMPT,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=steps,
        output_type="pt",
        **kwargs,
    )
    return out.frames


def _linear_quadratic_scheduler(setting, num_steps):
    """The profile's scheduler after LTXConditionPipeline's own timestep set-up (no ``timesteps=`` given)."""
    scheduler = scheduler_from_spec(setting)
    retrieve_timesteps(scheduler, num_steps, "cpu", linear_quadratic_schedule(num_steps) * 1000)
    return scheduler


def test_tiny_builder_makes_a_condition_pipeline_and_keeps_the_others(
    tiny_condition, condition_profile, tiny_ltx, tiny_ltx_i2v
):
    assert tiny_condition.pipeline_class == "LTXConditionPipeline"
    assert tiny_condition.call_kwargs["image"].size == (32, 32)
    assert (tiny_ltx.pipeline_class, tiny_ltx_i2v.pipeline_class) == ("LTXPipeline", "LTXImageToVideoPipeline")
    pipe = DiffusionPipeline.from_pretrained(tiny_condition.pipeline_dir)
    assert type(pipe).__name__ == "LTXConditionPipeline"
    assert pipe.scheduler.config.use_dynamic_shifting is False  # the pipeline passes no mu
    profile = flowblending.load_profile(condition_profile)
    assert profile.pipeline_class == "LTXConditionPipeline" and profile.image_to_video
    assert [(b.step, round(b.sigma, 6)) for b in profile.boundaries] == [(3, 0.98125), (7, 0.421875)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_all_large_is_bit_identical_to_the_plain_pipeline(dtype, tiny_condition, condition_profile):
    pipe = flowblending.load_pipeline(condition_profile, schedule=segments_from_pattern("L"), torch_dtype=dtype)
    routed = _run(pipe, tiny_condition, 6)
    plain = _run(DiffusionPipeline.from_pretrained(tiny_condition.pipeline_dir, dtype=dtype), tiny_condition, 6)
    assert routed.dtype == plain.dtype == dtype
    assert torch.equal(routed, plain)
    assert pipe.transformer.counters.steps == {"large": 6}
    assert pipe.transformer.counters.calls == {"large": 6}  # one batched [uncond, cond] call per step


def test_lsl_is_bit_identical_to_a_step_end_callback_swap(tiny_condition, condition_profile):
    profile = flowblending.load_profile(condition_profile)
    pipe = flowblending.load_pipeline(profile)
    plan = plan_steps(profile.schedule, 8)
    assert plan == ("large",) * 3 + ("small",) * 4 + ("large",)
    routed = _run(pipe, tiny_condition, 8)
    assert [pipe.transformer.counters.step_roles[i] for i in range(8)] == list(plan)
    assert pipe.transformer.counters.calls == {"large": 4, "small": 4}

    reference = DiffusionPipeline.from_pretrained(tiny_condition.pipeline_dir)
    models = {
        "large": reference.transformer,
        "small": LTXVideoTransformer3DModel.from_pretrained(tiny_condition.small_dir),
    }
    reference.transformer = models[plan[0]]

    def switch(p, i, t, callback_kwargs):
        if i + 1 < len(plan):
            p.transformer = models[plan[i + 1]]
        return {}

    swapped = _run(reference, tiny_condition, 8, callback_on_step_end=switch)
    assert torch.equal(routed, swapped)
    large_only = _run(DiffusionPipeline.from_pretrained(tiny_condition.pipeline_dir), tiny_condition, 8)
    assert not torch.equal(routed, large_only)  # the small model really ran


def test_shipped_ltxv_boundaries_are_the_linear_quadratic_schedule_at_40_steps():
    profile = flowblending.load_profile("ltxv")
    assert profile.pipeline_class == "LTXConditionPipeline" and profile.image_to_video
    assert profile.setting.num_inference_steps == 40
    assert profile.setting.scheduler.config["use_dynamic_shifting"] is False
    scheduler = _linear_quadratic_scheduler(profile.setting, 40)
    sigmas = [float(s) for s in scheduler.sigmas[:40]]
    timesteps = [float(t) for t in scheduler.timesteps[:40]]
    assert sigmas == [float(s) for s in linear_quadratic_schedule(40)]
    assert [round(s, 6) for s in sigmas[::5]] == DISTILLED_SIGMAS
    first, second = profile.boundaries
    assert (first.step, first.fraction, second.step, second.fraction) == (15, 15 / 40, 35, 35 / 40)
    assert (first.sigma, first.timestep) == (sigmas[15], timesteps[15])
    assert (second.sigma, second.timestep) == (sigmas[35], timesteps[35])
    assert first.sigma == pytest.approx(0.98125, abs=1e-7) and first.timestep == 981.25
    assert second.sigma == 0.421875 and second.timestep == 421.875
    # the dry-run plan computes the same noise levels
    assert step_sigmas(profile.setting, 40, profile.pipeline_class) == (sigmas, timesteps)


def test_sigma_routing_on_the_condition_pipeline_is_fraction_routing_at_40_steps(tiny_condition):
    pipe = DiffusionPipeline.from_pretrained(tiny_condition.pipeline_dir)
    small = LTXVideoTransformer3DModel.from_pretrained(tiny_condition.small_dir)
    profile = flowblending.load_profile("ltxv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tiny local models, not the profile's hub ids
        flowblending.apply_profile(pipe, profile, {"small": small}, routing="sigma")
    _run(pipe, tiny_condition, 40)
    roles = [pipe.transformer.counters.step_roles[i] for i in range(40)]
    assert roles == list(plan_steps(profile.schedule, 40))
    assert pipe.transformer.counters.steps == {"large": 20, "small": 20}


def test_sigma_routing_on_a_linear_sigma_pipeline_switches_at_the_profiles_noise_levels(tiny_ltx):
    profile = flowblending.load_profile("ltxv")
    pipe = DiffusionPipeline.from_pretrained(tiny_ltx.pipeline_dir)
    pipe.scheduler = scheduler_from_spec(profile.setting)  # the 0.9.7 config: LTXPipeline's sigmas stay linear
    small = LTXVideoTransformer3DModel.from_pretrained(tiny_ltx.small_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flowblending.apply_profile(pipe, profile, {"small": small}, routing="sigma")
    assert any("calibrated with LTXConditionPipeline, applying it to LTXPipeline" in str(w.message) for w in caught)
    _run(pipe, tiny_ltx, 40)

    sigmas = [float(s) for s in pipe.scheduler.sigmas[:40]]
    assert sigmas == pytest.approx([1 - i / 40 for i in range(40)], abs=1e-6)  # linspace(1, 1/40, 40)
    roles = [pipe.transformer.counters.step_roles[i] for i in range(40)]
    # large while sigma > 0.98125 (step 0 only), small from sigma 0.975 (step 1) to 0.425 (step 23), large from
    # sigma 0.4 (step 24): the noise levels of the condition pipeline's switches
    assert roles == ["large"] + ["small"] * 23 + ["large"] * 16
    high, low = (b.sigma for b in profile.boundaries)
    for sigma, role in zip(sigmas, roles, strict=True):
        assert role == ("small" if low < sigma <= high else "large")
    index = plan_by_sigma(profile.schedule, [high, low], sigmas)
    assert roles == [profile.schedule[k].model for k in index]
    # routing by fraction here would switch at the linear schedule's sigma 0.625 and 0.125 instead
    assert (sigmas[15], sigmas[35]) == pytest.approx((0.625, 0.125), abs=1e-6)
    assert roles != list(plan_steps(profile.schedule, 40))


def test_cli_run_with_image_writes_the_video(tiny_condition, condition_profile, tmp_path):
    from PIL import Image

    first = tiny_condition.call_kwargs["image"]
    runner = CliRunner()
    outputs = []
    for name, image in (("first", first), ("mirrored", first.transpose(Image.Transpose.FLIP_LEFT_RIGHT))):
        png, gif = tmp_path / f"{name}.png", tmp_path / f"{name}.gif"
        image.save(png)
        args = ["run", "--profile", str(condition_profile), "--image", str(png), "--prompt", PROMPT]
        result = runner.invoke(cli, [*args, "--output", str(gif), "--device", "cpu"])
        assert result.exit_code == 0, result.output
        assert f"wrote {gif}" in result.output
        assert "steps: large 4, small 4 (transformer calls: large 4, small 4)" in result.output
        with Image.open(gif) as video:
            assert (video.n_frames, video.size) == (9, (32, 32))
        outputs.append(gif.read_bytes())
    assert outputs[0] != outputs[1]  # the image reached the pipeline


def test_the_profile_fps_reaches_ltx_as_its_frame_rate(tiny_condition, condition_profile):
    """LTX conditions on ``frame_rate=``: generate passes the profile's (or the override's) fps as that argument."""
    from dataclasses import replace

    from flowblending.generate import generate

    profile = flowblending.load_profile(condition_profile)
    pipe = flowblending.load_pipeline(profile, schedule=segments_from_pattern("L"))
    image = tiny_condition.call_kwargs["image"]
    plain = DiffusionPipeline.from_pretrained(tiny_condition.pipeline_dir)
    at = {rate: _run(plain, tiny_condition, 6, frame_rate=rate)[0] for rate in (10, 25)}
    assert not torch.equal(at[10], at[25])  # the frame rate changes the tiny model's output

    overridden, _ = generate(pipe, profile, PROMPT, image=image, output_type="pt", num_inference_steps=6, fps=10)
    assert torch.equal(overridden, at[10])
    with_setting = replace(profile, setting=replace(profile.setting, fps=10))
    from_profile, _ = generate(pipe, with_setting, PROMPT, image=image, output_type="pt", num_inference_steps=6)
    assert torch.equal(from_profile, at[10])
