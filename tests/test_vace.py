"""Wan 2.1 VACE on tiny models: control latents reach both roles, video-to-video blends bit for bit, and a pair whose
VACE layer counts differ (as the real 14B's 8 and 1.3B's 15 do) blends: the router fits the pipeline's uniform
``conditioning_scale`` to each role and refuses a per-layer one in one line.

The family's end-to-end checks (all-large = plain, L-S-L = callback swap, CLI calibration, mismatch named) run in
tests/test_families.py (case ``wan_vace``), without ``video``/``mask``: text-to-video use.
"""

from __future__ import annotations

import importlib.util
import types
from typing import Any

import pytest
import torch

import flowblending
from flowblending.errors import FlowBlendingError
from flowblending.families import FAMILIES
from flowblending.loading import check_compatible
from flowblending.schedule import plan_steps, segments_from_pattern
from flowblending.testing import TEXT_DIM, TinyPair, save_tiny_profile
from flowblending.testing.families import WAN_VACE_IN_CHANNELS, save_tiny_wan_vace_pair

PROMPT = "a red circle moving left"
STEPS = 4
PLAN = ("large", "small", "small", "large")


@pytest.fixture(scope="module")
def prompt_cleaner():
    """WanVACEPipeline calls ``ftfy.fix_text`` unguarded; without ftfy an identity stand-in (ASCII prompts)."""
    if importlib.util.find_spec("ftfy") is not None:
        yield
        return
    import diffusers.pipelines.wan.pipeline_wan_vace as wan_vace

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wan_vace, "ftfy", types.SimpleNamespace(fix_text=lambda text: text), raising=False)
        yield


@pytest.fixture(scope="module")
def vace(tmp_path_factory) -> TinyPair:
    return save_tiny_wan_vace_pair(tmp_path_factory.mktemp("vace"))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> TinyPair:
    """A pair whose VACE layer counts differ: the large model adds hints at blocks 0 and 1, the small one at 0."""
    return save_tiny_wan_vace_pair(tmp_path_factory.mktemp("vace-mixed"), large_vace_layers=(0, 1))


@pytest.fixture(scope="module")
def mixed_profile(mixed, tmp_path_factory, prompt_cleaner):
    """L-S-L at (0.25, 0.75) of 4 steps; saving it counts the small model's FLOPs on the large model's inputs."""
    path = tmp_path_factory.mktemp("vace-mixed-profile") / "mixed.json"
    return save_tiny_profile(mixed, path, steps=STEPS, boundaries=(0.25, 0.75))


@pytest.fixture(scope="module")
def vace_profile(vace, tmp_path_factory, prompt_cleaner):
    """L-S-L at (0.25, 0.75) of 4 steps: large, small, small, large."""
    return save_tiny_profile(
        vace, tmp_path_factory.mktemp("vace-profile") / "vace.json", steps=STEPS, boundaries=(0.25, 0.75)
    )


def _plain(pair: TinyPair) -> Any:
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(pair.pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe: Any, pair: TinyPair, **extra: Any) -> torch.Tensor:
    kwargs = {"num_inference_steps": STEPS, "output_type": "pt", **extra}
    return pipe(prompt=PROMPT, generator=torch.Generator().manual_seed(0), **pair.kwargs(**kwargs)).frames


def _video_and_mask(pair: TinyPair) -> tuple[list[Any], list[Any]]:
    """A 9-frame source video (a gradient drifting right) and a mask that regenerates its right half."""
    from PIL import Image

    height, width, frames = (pair.call_kwargs[k] for k in ("height", "width", "num_frames"))
    xs = torch.linspace(0, 1, width).expand(height, width)
    video = []
    for f in range(frames):
        pixels = torch.stack([(xs + f / frames) % 1, 1 - xs, torch.full_like(xs, 0.5)], -1)
        video.append(Image.fromarray((pixels * 255).to(torch.uint8).numpy(), mode="RGB"))
    mask = torch.zeros(height, width, dtype=torch.uint8)
    mask[:, width // 2 :] = 255
    return video, [Image.fromarray(mask.numpy(), mode="L").convert("RGB")] * frames


def test_the_control_latents_reach_both_roles(vace, vace_profile, prompt_cleaner):
    pipe = flowblending.load_pipeline(vace_profile)
    router = pipe.transformer
    seen: dict[str, list[dict[str, Any]]] = {"large": [], "small": []}
    for role, model in router.roles.items():
        model.register_forward_pre_hook(lambda m, a, k, role=role: seen[role].append(k), with_kwargs=True)
    _run(pipe, vace)
    assert plan_steps(flowblending.load_profile(vace_profile).schedule, STEPS) == PLAN
    assert (len(seen["large"]), len(seen["small"])) == (4, 4)  # cond and uncond calls of 2 steps each
    control = seen["large"][0]["control_hidden_states"]
    assert control.shape == (1, WAN_VACE_IN_CHANNELS, 3, 6, 8)  # one latent frame per 4 video frames, 8x down
    for call in seen["large"] + seen["small"]:  # the same control latents and per-VACE-layer scale on every call
        assert torch.equal(call["control_hidden_states"], control)
        assert torch.equal(call["control_hidden_states_scale"], torch.ones(1))


def test_video_to_video_lsl_is_bit_identical_to_a_callback_swap(vace, vace_profile, prompt_cleaner):
    video, mask = _video_and_mask(vace)
    pipe = flowblending.load_pipeline(vace_profile)
    routed = _run(pipe, vace, video=video, mask=mask)
    assert pipe.transformer.counters.calls == {"large": 4, "small": 4}

    reference = _plain(vace)
    models = {"large": reference.transformer, "small": type(reference.transformer).from_pretrained(vace.small_dir)}
    reference.transformer = models[PLAN[0]]

    def switch(p, i, t, callback_kwargs):
        if i + 1 < len(PLAN):
            p.transformer = models[PLAN[i + 1]]
        return {}

    assert torch.equal(routed, _run(reference, vace, video=video, mask=mask, callback_on_step_end=switch))
    text_only = _run(flowblending.load_pipeline(vace_profile), vace)
    assert (routed - text_only).abs().max() > 1e-4  # the video and mask really conditioned the run


def _scales_seen(router: Any) -> dict[str, list[torch.Tensor]]:
    """Per role, the control_hidden_states_scale each call of that role's model receives (forward pre-hooks)."""
    seen: dict[str, list[torch.Tensor]] = {role: [] for role in router.roles}
    for role, model in router.roles.items():
        model.register_forward_pre_hook(
            lambda m, a, k, role=role: seen[role].append(k["control_hidden_states_scale"]), with_kwargs=True
        )
    return seen


def test_a_pair_with_other_vace_layer_counts_is_compatible(mixed):
    from diffusers import WanVACETransformer3DModel

    large = WanVACETransformer3DModel.from_pretrained(mixed.pipeline_dir / "transformer")
    small = WanVACETransformer3DModel.from_pretrained(mixed.small_dir)
    assert (large.config.vace_layers, small.config.vace_layers) == ([0, 1], [0])
    check_compatible(large, small)  # no refusal: the router fits the scale per role
    # why the router must: the pipeline sizes conditioning_scale by the large model and the small one refuses it
    inputs = {
        "hidden_states": torch.zeros(1, 16, 3, 6, 8),
        "timestep": torch.tensor([500]),
        "encoder_hidden_states": torch.zeros(1, 16, TEXT_DIM),
        "control_hidden_states": torch.zeros(1, WAN_VACE_IN_CHANNELS, 3, 6, 8),
        "control_hidden_states_scale": torch.ones(2),
    }
    with (
        torch.no_grad(),
        pytest.raises(ValueError, match="Length of `control_hidden_states_scale` 2 should be equal to 1"),
    ):
        small(**inputs)


def test_lsl_with_other_vace_layer_counts_is_bit_identical_to_a_swap_that_resizes_the_scale(mixed, mixed_profile):
    video, mask = _video_and_mask(mixed)
    pipe = flowblending.load_pipeline(mixed_profile)
    router = pipe.transformer
    seen = _scales_seen(router)
    routed = _run(pipe, mixed, video=video, mask=mask, conditioning_scale=0.5)
    assert plan_steps(flowblending.load_profile(mixed_profile).schedule, STEPS) == PLAN
    assert router.counters.calls == {"large": 4, "small": 4}
    assert (len(seen["large"]), len(seen["small"])) == (4, 4)
    assert all(torch.equal(s, torch.full((2,), 0.5)) for s in seen["large"])  # the pipeline's: one per large layer
    assert all(torch.equal(s, torch.full((1,), 0.5)) for s in seen["small"])  # fitted to the small model's one

    reference = _plain(mixed)
    small = type(reference.transformer).from_pretrained(mixed.small_dir)

    def resize_scale(module, args, kwargs):
        """By hand: the pipeline's uniform scale (one entry per large VACE layer), one entry per small VACE layer."""
        scale = kwargs["control_hidden_states_scale"]
        assert scale.shape == (2,) and bool((scale == scale[0]).all())
        length = len(module.config.vace_layers)
        resized = torch.full((length,), float(scale[0]), dtype=scale.dtype, device=scale.device)
        return args, {**kwargs, "control_hidden_states_scale": resized}

    small.register_forward_pre_hook(resize_scale, with_kwargs=True)
    models = {"large": reference.transformer, "small": small}
    reference.transformer = models[PLAN[0]]

    def switch(p, i, t, callback_kwargs):
        if i + 1 < len(PLAN):
            p.transformer = models[PLAN[i + 1]]
        return {}

    swapped = _run(reference, mixed, video=video, mask=mask, conditioning_scale=0.5, callback_on_step_end=switch)
    assert torch.equal(routed, swapped)
    large_only = _run(_plain(mixed), mixed, video=video, mask=mask, conditioning_scale=0.5)
    assert (routed - large_only).abs().max() > 1e-4  # the small model really ran


def test_a_per_layer_conditioning_scale_is_refused_for_other_vace_layer_counts(mixed, mixed_profile):
    pipe = flowblending.load_pipeline(mixed_profile)
    message = (
        r"control_hidden_states_scale has 2 entries \(the pipeline's transformer has 2 VACE layers\) but role 'small' "
        r"has 1 VACE layers, and its values \[1\.0, 0\.5\] differ per layer, so they cannot be mapped to 1; pass a "
        r"single float conditioning_scale \(one scale for every layer\)\.$"
    )
    with pytest.raises(FlowBlendingError, match=message):
        _run(pipe, mixed, conditioning_scale=[1.0, 0.5])
    assert pipe.transformer.counters.calls == {"large": 2}  # step 0 ran on the large model, step 1 was refused
    pipe = flowblending.load_pipeline(mixed_profile, schedule=segments_from_pattern("L"))
    _run(pipe, mixed, conditioning_scale=[1.0, 0.5])  # the large model alone takes its own per-layer scale


def test_the_family_fits_the_scale_by_value_dtype_and_device_and_only_when_lengths_differ():
    family = FAMILIES["wan21-vace"]
    scale = torch.full((2,), 0.5, dtype=torch.bfloat16)
    fitted = family.fit_inputs({"control_hidden_states_scale": scale, "other": 1}, {"vace_layers": [0]}, "small")
    assert fitted["other"] == 1
    out = fitted["control_hidden_states_scale"]
    assert out.dtype == torch.bfloat16 and out.device == scale.device and torch.equal(out, scale[:1])
    grown = family.fit_inputs({"control_hidden_states_scale": scale}, {"vace_layers": list(range(15))}, "small")
    assert torch.equal(grown["control_hidden_states_scale"], torch.full((15,), 0.5, dtype=torch.bfloat16))
    same = {"control_hidden_states_scale": torch.tensor([1.0, 0.5])}
    assert family.fit_inputs(same, {"vace_layers": [0, 1]}, "large") is same  # as many layers: untouched
    meta = family.fit_inputs({"control_hidden_states_scale": torch.empty(8, device="meta")}, {"vace_layers": [0]}, "s")
    assert meta["control_hidden_states_scale"].shape == (1,)  # FLOP counting: no values, only the length
    assert FAMILIES["wan21"].fit_inputs(same, {"vace_layers": [0]}, "small") is same  # no layer input: untouched


def test_a_divergence_calibration_of_the_pair_runs_through_the_cli(mixed, tmp_path, prompt_cleaner):
    from click.testing import CliRunner

    from flowblending.cli import cli
    from flowblending.profile import load_profile

    prompts, out = tmp_path / "prompts.txt", tmp_path / "mixed.json"
    prompts.write_text(PROMPT + "\n")
    size = [f"--{k.replace('_', '-')}={v}" for k, v in mixed.call_kwargs.items()]
    args = ["calibrate", "--large", mixed.pipeline_dir, "--small", mixed.small_dir, "--method", "divergence"]
    args += ["--prompts", prompts, "--steps", STEPS, *size, "--output", out]
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    profile = load_profile(out)
    calls = profile.calibration["calls"]  # the small model shadowed every large call, with its own scale length
    assert calls["computed"] == {"large": 2 * STEPS, "small": 2 * STEPS}
    assert 0 < profile.cost.flops_per_step["small"] < profile.cost.flops_per_step["large"]
