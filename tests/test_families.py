"""More pipeline families through FlowBlending on tiny random models: SkyReels-V2 T2V, Wan 2.1 I2V and VACE, Cosmos
Predict2 Video2World and Text2Image, Sana and SD3.

Each family: saved in the hub layout and loaded by ``load_pipeline`` from a profile; all-large is the plain pipeline
bit for bit; L-S-L is a callback swap of ``pipe.transformer`` bit for bit; a divergence calibration through the CLI
writes a profile that validates and runs; a mismatched small model is refused naming the config field; segment
guidance, placed by cache_context names or, where a pipeline sets none (Cosmos, Sana, SD3), by the family table:
guidance 1 everywhere is the plain pipeline at guidance 1 bit for bit, and another scale is the pipeline's own
guidance_scale on the segment's steps.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

import flowblending
from flowblending.cli import cli
from flowblending.cost import schedule_cost
from flowblending.errors import IncompatibleModelsError
from flowblending.profile import load_profile
from flowblending.router import RoutingTransformer
from flowblending.schedule import Segment, plan_steps, segments_from_pattern
from flowblending.testing import TinyPair, save_tiny_profile
from flowblending.testing import families as tiny_families

PROMPT = "a red circle moving left"
STEPS = 8
BOUNDARIES = (0.375, 0.875)  # 8 steps: large 0-2, small 3-6, large 7


@dataclasses.dataclass(frozen=True)
class FamilyCase:
    """What a family's tests expect: its builder (in flowblending.testing.families) and its keyword arguments, calls
    per step, and a config field the check compares."""

    builder: str
    calls_per_step: int
    mismatch: tuple[str, int]
    options: tuple[tuple[str, Any], ...] = ()


CASES = {
    "skyreels": FamilyCase("save_tiny_skyreels_pair", 2, ("text_dim", 8)),  # cond, uncond
    "wan_i2v": FamilyCase("save_tiny_wan_i2v_pair", 2, ("image_dim", 8)),
    "wan_vace": FamilyCase("save_tiny_wan_vace_pair", 2, ("vace_in_channels", 8)),
    "cosmos": FamilyCase("save_tiny_cosmos_pair", 2, ("text_embed_dim", 8)),  # cond, uncond (no cache_context)
    "cosmos_t2i": FamilyCase("save_tiny_cosmos_pair", 2, ("in_channels", 8), (("text_to_image", True),)),
    "sana": FamilyCase("save_tiny_sana_pair", 1, ("caption_channels", 8)),  # one batched [uncond, cond] call
    "sd3": FamilyCase("save_tiny_sd3_pair", 1, ("joint_attention_dim", 8)),
}


@dataclasses.dataclass(frozen=True)
class Built:
    name: str
    case: FamilyCase
    pair: TinyPair
    profile: Path


@pytest.fixture(scope="module")
def prompt_cleaner():
    """SkyReels-V2, Wan I2V and Wan VACE call ``ftfy.fix_text`` on every prompt without checking that ftfy is installed.

    Without ftfy the pipelines get an identity stand-in: the test prompts are plain ASCII, which ftfy leaves as is.
    """
    if importlib.util.find_spec("ftfy") is not None:
        yield
        return
    import diffusers.pipelines.skyreels_v2.pipeline_skyreels_v2 as skyreels
    import diffusers.pipelines.wan.pipeline_wan_i2v as wan_i2v
    import diffusers.pipelines.wan.pipeline_wan_vace as wan_vace

    with pytest.MonkeyPatch.context() as patch:
        for module in (skyreels, wan_i2v, wan_vace):
            patch.setattr(module, "ftfy", types.SimpleNamespace(fix_text=lambda text: text), raising=False)
        yield


@pytest.fixture(scope="module")
def cosmos_offline():
    """The Cosmos pipelines need cosmos_guardrail's safety checker and torchvision's resize of the padding mask.

    Neither is installed here: ``cosmos_stand_ins`` gives the pipelines a pass-through safety checker (every prompt
    and frame passes) and, without torchvision, a torch nearest resize of the mask (tests/test_cosmos.py checks both).
    """
    with tiny_families.cosmos_stand_ins():
        yield


@pytest.fixture(scope="module", params=sorted(CASES))
def built(request, tmp_path_factory, prompt_cleaner, cosmos_offline) -> Built:
    name, case = request.param, CASES[request.param]
    pair = getattr(tiny_families, case.builder)(tmp_path_factory.mktemp(name), **dict(case.options))
    path = save_tiny_profile(
        pair, tmp_path_factory.mktemp(f"{name}-profile") / f"{name}.json", steps=STEPS, boundaries=BOUNDARIES
    )
    return Built(name, case, pair, path)


def _plain(pair: TinyPair) -> Any:
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(pair.pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe: Any, pair: TinyPair, steps: int, output_type: str = "pt", **extra: Any) -> torch.Tensor:
    out = pipe(
        prompt=PROMPT,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=steps,
        output_type=output_type,
        **pair.kwargs(**extra),
    )
    return out.frames if hasattr(out, "frames") else out.images


def _invoke(*args: Any):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_the_pair_is_saved_in_the_hub_layout_and_loaded_from_its_profile(built):
    pair = built.pair
    index = json.loads((pair.pipeline_dir / "model_index.json").read_text())
    assert index["_class_name"] == pair.pipeline_class
    assert index["transformer"] == ["diffusers", pair.transformer_class]
    for slot, entry in index.items():
        if isinstance(entry, list) and entry[0] is not None:
            assert (pair.pipeline_dir / slot).is_dir(), slot
    assert (pair.pipeline_dir / "transformer" / "diffusion_pytorch_model.safetensors").is_file()
    assert (pair.small_dir / "diffusion_pytorch_model.safetensors").is_file()

    profile = load_profile(built.profile)
    assert profile.pipeline_class == pair.pipeline_class
    assert profile.image_to_video == ("image" in pair.call_kwargs)
    assert profile.setting.num_frames == pair.call_kwargs.get("num_frames")  # None for an image pipeline
    assert (profile.setting.height, profile.setting.width) == (pair.call_kwargs["height"], pair.call_kwargs["width"])
    assert [b.step for b in profile.boundaries] == [3, 7]
    pipe = flowblending.load_pipeline(profile)
    assert type(pipe).__name__ == pair.pipeline_class
    router = pipe.transformer
    assert isinstance(router, RoutingTransformer)
    assert {role: type(m).__name__ for role, m in router.roles.items()} == {
        "large": pair.transformer_class,
        "small": pair.transformer_class,
    }
    large, small = (sum(p.numel() for p in router.roles[r].parameters()) for r in ("large", "small"))
    assert (profile.models["large"].parameters, profile.models["small"].parameters) == (large, small)
    assert small < large


def test_all_large_is_bit_identical_to_the_plain_pipeline(built):
    pipe = flowblending.load_pipeline(built.profile, schedule=segments_from_pattern("L"))
    routed = _run(pipe, built.pair, 6)
    plain = _run(_plain(built.pair), built.pair, 6)
    assert torch.equal(routed, plain)
    kwargs = built.pair.call_kwargs
    video = (kwargs["num_frames"],) if "num_frames" in kwargs else ()  # image pipelines return (B, C, H, W)
    assert routed.shape == (1, *video, 3, kwargs["height"], kwargs["width"])
    assert 0 <= float(routed.min()) < float(routed.max()) <= 1
    assert pipe.transformer.counters.steps == {"large": 6}
    assert pipe.transformer.counters.calls == {"large": 6 * built.case.calls_per_step}


def test_lsl_is_bit_identical_to_a_callback_swap_and_differs_from_large_only(built):
    pair = built.pair
    profile = load_profile(built.profile)
    plan = plan_steps(profile.schedule, STEPS)
    assert plan == ("large",) * 3 + ("small",) * 4 + ("large",)
    pipe = flowblending.load_pipeline(profile)
    routed = _run(pipe, pair, STEPS)

    reference = _plain(pair)
    models = {"large": reference.transformer, "small": type(reference.transformer).from_pretrained(pair.small_dir)}
    reference.transformer = models[plan[0]]

    def switch(p, i, t, callback_kwargs):
        if i + 1 < len(plan):
            p.transformer = models[plan[i + 1]]
        return {}

    assert torch.equal(routed, _run(reference, pair, STEPS, callback_on_step_end=switch))
    large_only = _run(_plain(pair), pair, STEPS)
    assert (routed - large_only).abs().max() > 1e-4  # the small model really ran
    calls = built.case.calls_per_step
    assert pipe.transformer.counters.steps == {"large": 4, "small": 4}
    assert pipe.transformer.counters.calls == {"large": 4 * calls, "small": 4 * calls}


def test_divergence_calibration_through_the_cli_validates_and_runs(built, tmp_path):
    pair = built.pair
    prompts, out = tmp_path / "prompts.txt", tmp_path / f"{built.name}.json"
    prompts.write_text(PROMPT + "\n")
    size = [
        arg
        for key in ("height", "width", "num_frames", "max_sequence_length", "guidance_scale")
        if key in pair.call_kwargs
        for arg in (f"--{key.replace('_', '-')}", pair.call_kwargs[key])
    ]
    image_args, run_image = [], []
    if "image" in pair.call_kwargs:
        (tmp_path / "images").mkdir()
        pair.call_kwargs["image"].save(tmp_path / "images" / "0000.png")
        image_args, run_image = ["--images", tmp_path / "images"], ["--image", tmp_path / "images" / "0000.png"]
    calibrated = _invoke(
        "calibrate", "--large", pair.pipeline_dir, "--small", pair.small_dir, "--method", "divergence",
        "--prompts", prompts, "--steps", STEPS, *size, *image_args, "--output", out,
    )  # fmt: skip
    assert calibrated.exit_code == 0, calibrated.output
    assert "calibration summary" in calibrated.output

    validated = _invoke("validate", out)
    assert validated.exit_code == 0, validated.output
    assert validated.output.strip().endswith(": ok")
    profile = load_profile(out)
    assert profile.pipeline_class == pair.pipeline_class
    assert profile.image_to_video == ("image" in pair.call_kwargs)
    assert profile.setting.num_inference_steps == STEPS
    assert profile.setting.num_frames == pair.call_kwargs.get("num_frames")
    calls = profile.calibration["calls"]  # one large-only path with the small model as shadow on every call
    assert calls["calls_per_step"] == built.case.calls_per_step
    assert calls["computed"] == {"large": STEPS * built.case.calls_per_step, "small": STEPS * built.case.calls_per_step}
    flops = profile.cost.flops_per_step
    assert 0 < flops["small"] < flops["large"]
    tiny = load_profile(built.profile)  # measured by save_tiny_profile on the same setting
    assert flops == pytest.approx(tiny.cost.flops_per_step)
    expected = schedule_cost(plan_steps(profile.schedule, STEPS), flops)
    assert profile.cost.flops_ratio == pytest.approx(expected.flops_ratio)
    assert 0 < profile.cost.flops_ratio <= 1

    gif = tmp_path / "out.gif"
    ran = _invoke("run", "--profile", out, "--prompt", PROMPT, *run_image, "--output", gif)
    assert ran.exit_code == 0, ran.output
    steps = {r: n for r, n in profile.cost.steps.items() if n}
    assert "steps: " + ", ".join(f"{r} {n}" for r, n in steps.items()) in ran.output
    from PIL import Image

    with Image.open(gif) as video:
        assert video.size == (pair.call_kwargs["width"], pair.call_kwargs["height"])
        assert video.n_frames == pair.call_kwargs.get("num_frames", 1)


def test_a_mismatched_small_model_is_refused_naming_the_field(built):
    field, value = built.case.mismatch
    pipe = _plain(built.pair)
    small = type(pipe.transformer).from_pretrained(built.pair.small_dir)
    flowblending.loading.check_compatible(pipe.transformer, small)  # the pair itself is compatible
    assert small.config[field] != value
    small.register_to_config(**{field: value})
    with pytest.raises(IncompatibleModelsError, match=f"'{field}'"):
        flowblending.loading.check_compatible(pipe.transformer, small)


def test_guidance_1_everywhere_is_the_plain_pipeline_at_guidance_1(built):
    pair = built.pair
    assert pair.call_kwargs["guidance_scale"] > 1  # the pipeline runs CFG: the router drops the uncond branch
    pipe = flowblending.load_pipeline(built.profile, schedule=(Segment("large", 0.0, 1.0, guidance_scale=1.0),))
    routed = _run(pipe, pair, 6)
    counters = pipe.transformer.counters
    assert counters.uncond_skipped == {"large": 6}  # one per step: a separate uncond call or half a batched one
    assert counters.calls == {"large": 6}  # the cond calls (or cond half batches) only
    assert torch.equal(routed, _run(_plain(pair), pair, 6, guidance_scale=1.0))


#: Pipelines that read ``self.guidance_scale`` (and ``self.do_classifier_free_guidance``) at every step: a callback
#: setting ``_guidance_scale`` runs the next step with that guidance_scale argument. Wan-like pipelines and Sana read
#: their guidance_scale argument once (tests/test_router.py checks Wan and LTX against whole runs instead).
READS_GUIDANCE_EACH_STEP = ("cosmos", "cosmos_t2i", "sd3")


def test_a_segment_guidance_is_the_pipelines_own_guidance_scale_on_its_steps(built):
    if built.name not in READS_GUIDANCE_EACH_STEP:
        pytest.skip(f"{built.pair.pipeline_class} reads its guidance_scale argument once, not per step")
    pair = built.pair
    profile = load_profile(built.profile)
    plan = plan_steps(profile.schedule, STEPS)
    scale, segment_scale = pair.call_kwargs["guidance_scale"], 3.0
    schedule = tuple(
        Segment(s.model, s.start, s.end, guidance_scale=segment_scale if s.model == "small" else None)
        for s in profile.schedule
    )
    routed = _run(flowblending.load_pipeline(profile, schedule=schedule), pair, STEPS, output_type="latent")

    reference = _plain(pair)
    models = {"large": reference.transformer, "small": type(reference.transformer).from_pretrained(pair.small_dir)}

    def switch(p, i, t, callback_kwargs):
        if i + 1 < len(plan):
            p.transformer = models[plan[i + 1]]
            p._guidance_scale = segment_scale if plan[i + 1] == "small" else scale
        return {}

    swapped = _run(reference, pair, STEPS, output_type="latent", callback_on_step_end=switch)
    assert torch.allclose(routed, swapped, atol=1e-5, rtol=1e-5)
    unguided = _run(flowblending.load_pipeline(profile), pair, STEPS, output_type="latent")
    assert (routed - unguided).abs().max() > 1e-3  # the segment's guidance really changed the run
