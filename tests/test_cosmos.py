"""Cosmos Predict2 on tiny models: the offline stand-ins, the pipeline's call pattern, and what the router does with it.

The family's end-to-end checks (all-large = plain, L-S-L = callback swap, CLI calibration, mismatch named) run in
tests/test_families.py (cases ``cosmos`` and ``cosmos_t2i``). Here: without the stand-ins diffusers cannot run the
pipeline offline; the stand-ins get exactly the calls diffusers makes and compute what the real ones would on these
inputs; the preconditioning around the transformer (``c_skip x + c_out F``, then a velocity) wraps whichever model
the router runs; per-segment guidance, placed by the family table (cond call first, then uncond; Cosmos' formula
``cond + g (cond - uncond)``): 1 answers the uncond call with the cond output, another scale is the pipeline's own
``guidance_scale`` on those steps.
"""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.models.transformers import transformer_cosmos
from diffusers.pipelines.cosmos import pipeline_cosmos2_video2world

import flowblending
from flowblending.errors import FlowBlendingError
from flowblending.router import guided_uncond
from flowblending.schedule import Segment, plan_steps, segments_from_pattern
from flowblending.testing import TinyPair, save_tiny_profile
from flowblending.testing.families import (
    PassThroughSafetyChecker,
    cosmos_stand_ins,
    nearest_resize,
    save_tiny_cosmos_pair,
)

PROMPT = "a red circle moving left"
STEPS = 4
NO_TORCHVISION = importlib.util.find_spec("torchvision") is None


@pytest.fixture
def offline():
    """The stand-ins for one test (the tests below also run diffusers without them)."""
    with cosmos_stand_ins():
        yield


@pytest.fixture(scope="module")
def cosmos(tmp_path_factory) -> TinyPair:
    return save_tiny_cosmos_pair(tmp_path_factory.mktemp("cosmos"))  # building needs no stand-in


@pytest.fixture(scope="module")
def cosmos_profile(cosmos, tmp_path_factory):
    """An L-S-L profile at (0.25, 0.75) of 4 steps: large, small, small, large."""
    with cosmos_stand_ins():
        path = tmp_path_factory.mktemp("cosmos-profile") / "cosmos.json"
        return save_tiny_profile(cosmos, path, steps=STEPS, boundaries=(0.25, 0.75))


def _plain(pair: TinyPair, **components: Any) -> Any:
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(pair.pipeline_dir, **components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe: Any, pair: TinyPair, **extra: Any) -> torch.Tensor:
    kwargs = {"num_inference_steps": STEPS, "output_type": "pt", **extra}
    return pipe(prompt=PROMPT, generator=torch.Generator().manual_seed(0), **pair.kwargs(**kwargs)).frames


@pytest.mark.skipif(importlib.util.find_spec("cosmos_guardrail") is not None, reason="cosmos_guardrail installed")
def test_without_the_stand_ins_diffusers_cannot_run_the_pipeline_offline(cosmos):
    from diffusers import Cosmos2VideoToWorldPipeline

    assert pipeline_cosmos2_video2world.CosmosSafetyChecker is not PassThroughSafetyChecker  # nothing patched now
    index = json.loads((cosmos.pipeline_dir / "model_index.json").read_text())
    assert index["safety_checker"] == [None, None]  # the stand-in is no nn.Module: save_pretrained skips it
    with pytest.raises(ImportError, match="cosmos_guardrail"):  # the saved slot is [null, null]: it builds one
        _plain(cosmos)
    pipe = _plain(cosmos, safety_checker=PassThroughSafetyChecker())
    components = {k: v for k, v in pipe.components.items() if k != "safety_checker"}
    with pytest.raises(ImportError, match="cosmos_guardrail"):
        Cosmos2VideoToWorldPipeline(**components, safety_checker=None)
    if NO_TORCHVISION:  # the transformer's padding-mask resize is torchvision's
        with pytest.raises(NameError, match="transforms"):
            _run(pipe, cosmos)
    pipe.safety_checker = None
    with pytest.raises(ValueError, match="disabled the safety checker"):
        _run(pipe, cosmos)


@pytest.mark.parametrize(("source", "target"), [((48, 64), (6, 8)), ((6, 8), (48, 64)), ((5, 7), (3, 4))])
def test_nearest_resize_is_torchvisions_nearest_resize(source, target):
    mask = (torch.rand(1, 1, *source, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    resized = nearest_resize(mask, list(target), "nearest")
    # torchvision's NEAREST (legacy nearest, not nearest-exact) takes source index floor(i * in / out)
    rows = [i * source[0] // target[0] for i in range(target[0])]
    cols = [j * source[1] // target[1] for j in range(target[1])]
    assert torch.equal(resized, mask[:, :, rows][:, :, :, cols])
    if not NO_TORCHVISION:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as tvf

        assert torch.equal(resized, tvf.resize(mask, list(target), interpolation=InterpolationMode.NEAREST))
    with pytest.raises(ValueError, match=r"interpolation='bilinear'.*install torchvision"):
        nearest_resize(mask, list(target), "bilinear")


def test_the_stand_ins_get_the_calls_diffusers_makes_and_pass_everything(cosmos, offline):
    calls: list[tuple[str, Any]] = []

    class Recording(PassThroughSafetyChecker):
        def to(self, *args: Any, **kwargs: Any) -> Recording:
            calls.append(("to", str(args[0])))
            return self

        def check_text_safety(self, prompt: str) -> bool:
            calls.append(("text", prompt))
            return super().check_text_safety(prompt)

        def check_video_safety(self, frames: Any) -> Any:
            calls.append(("video", (frames.dtype, frames.shape)))
            out = super().check_video_safety(frames)
            assert out is frames
            return out

    pipe = _plain(cosmos)
    assert isinstance(pipe.safety_checker, PassThroughSafetyChecker)  # built by the pipeline from [null, null]
    if NO_TORCHVISION:
        assert transformer_cosmos.transforms.functional.resize is nearest_resize
    masks: list[torch.Tensor] = []
    pipe.transformer.register_forward_pre_hook(lambda m, a, k: masks.append(k["padding_mask"]), with_kwargs=True)
    pipe.safety_checker = Recording()
    video = _run(pipe, cosmos)
    kwargs = cosmos.call_kwargs
    frames = (kwargs["num_frames"], kwargs["height"], kwargs["width"], 3)
    assert calls == [
        ("to", "cpu"),
        ("text", PROMPT),
        ("to", "cpu"),
        ("to", "cpu"),
        ("video", (np.uint8, frames)),
        ("to", "cpu"),
    ]
    # the checker sees the decoded frames as uint8 and the output is them again: multiples of 1/255
    assert torch.allclose(video * 255, (video * 255).round(), atol=1e-4)
    assert len(masks) == 2 * STEPS and all(m.shape == (1, 1, 48, 64) and not m.any() for m in masks)


def test_the_pipeline_calls_the_transformer_twice_per_step_with_a_per_frame_timestep(cosmos, cosmos_profile, offline):
    pipe = flowblending.load_pipeline(cosmos_profile, schedule=segments_from_pattern("L"))
    router = pipe.transformer
    seen: list[dict[str, Any]] = []

    def hook(module, args, kwargs):
        seen.append({"name": router._call_name, "step": pipe.scheduler.step_index or 0, **kwargs})

    router.roles["large"].register_forward_pre_hook(hook, with_kwargs=True)
    _run(pipe, cosmos)
    assert [s["step"] for s in seen] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert {s["name"] for s in seen} == {None}  # no cache_context: the router cannot tell cond from uncond by name
    sigmas = pipe.scheduler.sigmas
    assert float(sigmas[0]) == pytest.approx(80.0)  # Karras sigmas up to the pipeline's sigma_max
    t_conditioning = 0.0001 / 1.0001  # the pipeline's sigma_conditioning, as t = sigma / (sigma + 1)
    for s in seen:
        # in_channels 17 = these 16 latent channels + the condition mask, which the transformer concatenates
        assert s["hidden_states"].shape == (1, 16, 3, 6, 8) and s["condition_mask"].shape == (1, 1, 3, 6, 8)
        assert s["timestep"].shape == (1, 1, 3, 1, 1)  # one timestep per latent frame
        sigma = float(sigmas[s["step"]])
        expected = torch.tensor([t_conditioning, sigma / (sigma + 1), sigma / (sigma + 1)])
        assert torch.allclose(s["timestep"].flatten(), expected)  # the conditioning frame is (almost) clean
        frame_is_given = torch.tensor([1.0, 0.0, 0.0]).view(1, 1, 3, 1, 1).expand(1, 1, 3, 6, 8)
        assert torch.equal(s["condition_mask"], frame_is_given)
        assert s["fps"] == 16
    cond, uncond = seen[0], seen[1]  # the same latents with the prompt, then the default negative prompt
    assert torch.equal(cond["hidden_states"], uncond["hidden_states"])
    assert not torch.equal(cond["encoder_hidden_states"], uncond["encoder_hidden_states"])


def test_the_preconditioning_wraps_whichever_model_the_router_runs(cosmos, cosmos_profile, offline):
    small_only = flowblending.load_pipeline(cosmos_profile, schedule=segments_from_pattern("S"))
    assert small_only.transformer.counters.steps == {}
    routed = _run(small_only, cosmos)
    assert small_only.transformer.counters.calls == {"small": 2 * STEPS}
    plain = _plain(cosmos)
    plain.transformer = type(plain.transformer).from_pretrained(cosmos.small_dir)
    assert torch.equal(routed, _run(plain, cosmos))
    assert plan_steps(flowblending.load_profile(cosmos_profile).schedule, STEPS) == ("large", "small", "small", "large")


def _lsl(guidance: float) -> tuple[Segment, ...]:
    """Large, small, small, large over 4 steps, the small segment at its own ``guidance_scale``."""
    return (
        Segment("large", 0.0, 0.25),
        Segment("small", 0.25, 0.75, guidance_scale=guidance),
        Segment("large", 0.75, 1.0),
    )


def _swap_with_guidance(pipe: Any, pair: TinyPair, guidance: float, **extra: Any) -> torch.Tensor:
    """The callback swap of L-S-L with the pipeline's own guidance set to ``guidance`` on the small steps.

    Cosmos2 pipelines read ``self.do_classifier_free_guidance`` and ``self.guidance_scale`` (both ``_guidance_scale``)
    inside the loop at every step, after encoding both prompts once with CFG on: setting ``_guidance_scale`` in
    the previous step's callback is exactly running that step with that guidance_scale argument.
    """
    models = {"large": pipe.transformer, "small": type(pipe.transformer).from_pretrained(pair.small_dir)}
    plan, scale = ("large", "small", "small", "large"), pair.call_kwargs["guidance_scale"]

    def switch(p, i, t, callback_kwargs):
        if i + 1 < len(plan):
            p.transformer = models[plan[i + 1]]
            p._guidance_scale = guidance if plan[i + 1] == "small" else scale
        return {}

    return _run(pipe, pair, callback_on_step_end=switch, **extra)


@pytest.mark.parametrize("anchor", ["cond", "uncond"])
def test_the_uncond_rewrite_gives_the_segment_guidance_through_the_pipelines_formula(anchor):
    gen = torch.Generator().manual_seed(0)
    x, cond, uncond = (torch.randn(2, 16, 3, 6, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    g, g_new, t = 7.0, 3.0, 0.8
    rewritten = guided_uncond(cond, uncond, g, g_new, anchor)

    def cfg(c: torch.Tensor, u: torch.Tensor, scale: float) -> torch.Tensor:
        return c + scale * (c - u) if anchor == "cond" else u + scale * (c - u)

    def precondition(raw: torch.Tensor) -> torch.Tensor:  # Cosmos: x0 = c_skip x + c_out F
        return (1 - t) * x - t * raw

    # by hand: the pipeline's CFG at g of the rewritten output = its CFG at g' of the true outputs
    assert torch.allclose(cfg(cond, rewritten, g), cfg(cond, uncond, g_new), atol=1e-6, rtol=0)
    # and also on the preconditioned predictions, which is where Cosmos applies it
    expected = cfg(precondition(cond), precondition(uncond), g_new)
    assert torch.allclose(cfg(precondition(cond), precondition(rewritten), g), expected, atol=1e-6, rtol=0)
    assert not torch.allclose(cfg(cond, uncond, g), cfg(cond, uncond, g_new), atol=1e-3)


def test_a_segment_guidance_is_the_pipelines_own_guidance_scale_on_its_steps(cosmos, cosmos_profile, offline):
    pipe = flowblending.load_pipeline(cosmos_profile, schedule=_lsl(3.0))
    routed = _run(pipe, cosmos, output_type="latent")  # before decoding and the uint8 safety check
    assert pipe.transformer.counters.calls == {"large": 4, "small": 4}
    assert pipe.transformer.counters.uncond_skipped == {}
    swapped = _swap_with_guidance(_plain(cosmos), cosmos, 3.0, output_type="latent")
    # the rewrite is exact (see the hand computation above); fp32 rounds it: ~4e-6 on latents up to ~3.3, ~10 ulp
    assert torch.allclose(routed, swapped, atol=1e-5, rtol=0)
    at_seven = _swap_with_guidance(_plain(cosmos), cosmos, 7.0, output_type="latent")  # the pipeline's own g
    assert (routed - at_seven).abs().max() > 1e-3


def test_a_segment_guidance_below_1_is_refused_as_the_pipeline_turns_cfg_off(cosmos, cosmos_profile, offline):
    pipe = flowblending.load_pipeline(cosmos_profile, schedule=_lsl(0.5))
    message = (
        r"a segment has guidance_scale 0\.5, but Cosmos2VideoToWorldPipeline's guidance_scale is the g of "
        r"cond \+ g \(cond - uncond\) and turns CFG off at g <= 1 .* set the segment's guidance_scale to 1"
    )
    with pytest.raises(FlowBlendingError, match=message):
        _run(pipe, cosmos)


def test_a_guidance_scale_1_segment_runs_the_conditional_branch_only(cosmos, cosmos_profile, offline):
    pipe = flowblending.load_pipeline(cosmos_profile, schedule=_lsl(1.0))
    routed = _run(pipe, cosmos)
    counters = pipe.transformer.counters
    assert counters.calls == {"large": 4, "small": 2}  # the small steps' uncond calls were answered, not computed
    assert counters.uncond_skipped == {"small": 2}
    assert torch.equal(routed, _swap_with_guidance(_plain(cosmos), cosmos, 1.0))
    assert not torch.equal(routed, _run(flowblending.load_pipeline(cosmos_profile), cosmos))  # CFG really left out
