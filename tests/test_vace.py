"""Wan 2.1 VACE on tiny models: control latents reach both roles, video-to-video blends bit for bit, and a pair whose
VACE layer counts differ (as the real 14B and 1.3B do) is refused naming ``vace_layers`` before anything runs.

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
from flowblending.errors import IncompatibleModelsError
from flowblending.loading import check_compatible
from flowblending.schedule import plan_steps
from flowblending.testing import TEXT_DIM, TinyPair, save_tiny_profile
from flowblending.testing.families import WAN_VACE_IN_CHANNELS, save_tiny_wan_vace_pair
from flowblending.testing.wan import TINY_LARGE, wan_transformer

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


def test_a_pair_with_other_vace_layer_counts_is_refused_naming_vace_layers(vace):
    from diffusers import WanVACETransformer3DModel

    small = WanVACETransformer3DModel.from_pretrained(vace.small_dir)
    assert small.config.vace_layers == [0]
    with torch.random.fork_rng(devices=[]):
        large = wan_transformer(
            TINY_LARGE, "WanVACETransformer3DModel", vace_layers=[0, 1], vace_in_channels=WAN_VACE_IN_CHANNELS
        )
    with pytest.raises(IncompatibleModelsError, match=r"'vace_layers'\): 2 vs 1; WanVACEPipeline sizes conditioning"):
        check_compatible(large, small)
    # why: the pipeline sizes conditioning_scale by pipe.transformer (the large model) and the small one refuses it
    inputs = {
        "hidden_states": torch.zeros(1, 16, 3, 6, 8),
        "timestep": torch.tensor([500]),
        "encoder_hidden_states": torch.zeros(1, 16, TEXT_DIM),
        "control_hidden_states": torch.zeros(1, WAN_VACE_IN_CHANNELS, 3, 6, 8),
        "control_hidden_states_scale": torch.ones(len(large.config.vace_layers)),
    }
    with torch.no_grad():
        assert large(**inputs, return_dict=False)[0].shape == (1, 16, 3, 6, 8)
        with pytest.raises(ValueError, match="Length of `control_hidden_states_scale` 2 should be equal to 1"):
            small(**inputs)
