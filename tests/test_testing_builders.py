"""The tiny model builders of ``flowblending.testing`` and the pipeline facts the router relies on."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before diffusers/transformers are imported

import hashlib
import json
from pathlib import Path

import pytest
import torch
from diffusers import (
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    LTXVideoTransformer3DModel,
    UniPCMultistepScheduler,
    WanTransformer3DModel,
)
from safetensors import safe_open

from flowblending.testing import (
    SCHEDULER_KINDS,
    TinyPair,
    make_scheduler,
    save_tiny_ltx_pair,
    save_tiny_wan_pair,
    tiny_tokenizer,
    tiny_umt5_config,
)

# DPMSolverMultistepScheduler.set_timesteps trips a numpy 2 DeprecationWarning inside diffusers.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

PROMPT = "a red fox walks in the snow"
NEGATIVE = "blurry, low quality"
STEPS = 3
TRANSFORMER_CLASSES = {
    "WanTransformer3DModel": WanTransformer3DModel,
    "LTXVideoTransformer3DModel": LTXVideoTransformer3DModel,
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from 2 threads, and lose 10-40x when another process holds a core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TinyPair]:
    root = tmp_path_factory.mktemp("tiny_pairs")
    return {
        "wan": save_tiny_wan_pair(root / "wan"),
        "ltx": save_tiny_ltx_pair(root / "ltx"),
        "ltx_i2v": save_tiny_ltx_pair(root / "ltx_i2v", image_to_video=True),
    }


def load(pair: TinyPair) -> DiffusionPipeline:
    pipe = DiffusionPipeline.from_pretrained(pair.pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_small(pair: TinyPair) -> torch.nn.Module:
    return TRANSFORMER_CLASSES[pair.transformer_class].from_pretrained(pair.small_dir)


def generate(pipe: DiffusionPipeline, pair: TinyPair, steps: int = STEPS, **overrides) -> torch.Tensor:
    kwargs = pair.kwargs(
        prompt=PROMPT,
        negative_prompt=NEGATIVE,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
    )
    kwargs.update(overrides)
    return pipe(**kwargs).frames


def record_calls(pipe: DiffusionPipeline) -> tuple[list[dict], object]:
    """Record every transformer call's inputs and the scheduler's step_index at that moment."""
    calls: list[dict] = []

    def hook(module, args, kwargs):
        calls.append(
            {
                "step_index": pipe.scheduler.step_index,
                "timestep": kwargs["timestep"].detach().clone(),
                "hidden_states": kwargs["hidden_states"].detach().clone(),
                "encoder_hidden_states": kwargs["encoder_hidden_states"].detach().clone(),
            }
        )

    handle = pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    return calls, handle


def digest(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


# --------------------------------------------------------------------------- building and saving


def test_builders_are_deterministic_and_leave_the_global_rng_alone(tmp_path: Path) -> None:
    torch.manual_seed(1234)
    expected_next = torch.rand(3)
    torch.manual_seed(1234)
    first = save_tiny_wan_pair(tmp_path / "a")
    second = save_tiny_wan_pair(tmp_path / "b")
    assert torch.equal(torch.rand(3), expected_next)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert first.call_kwargs == second.call_kwargs
    save_tiny_wan_pair(tmp_path / "c", seed=1)
    name = "pipeline/transformer/diffusion_pytorch_model.safetensors"
    assert digest(tmp_path / "c")[name] != digest(tmp_path / "a")[name]


@pytest.mark.parametrize("name", ["wan", "ltx", "ltx_i2v"])
def test_saved_layout_is_fp32_safetensors_shaped_like_the_hub_repos(pairs, name: str) -> None:
    pair = pairs[name]
    index = json.loads((pair.pipeline_dir / "model_index.json").read_text())
    assert index["_class_name"] == pair.pipeline_class
    assert index["tokenizer"] == ["transformers", "T5TokenizerFast"]
    assert index["transformer"] == ["diffusers", pair.transformer_class]
    weight_files = [
        *pair.pipeline_dir.glob("*/*.safetensors"),
        *pair.small_dir.glob("*.safetensors"),
    ]
    assert {f.parent.name for f in weight_files} == {
        "text_encoder",
        "vae",
        "transformer",
        "small_transformer",
    }
    assert not list(pair.pipeline_dir.rglob("*.bin")) and not list(pair.small_dir.rglob("*.bin"))
    for path in weight_files:
        with safe_open(str(path), framework="pt") as f:
            dtypes = {f.get_slice(key).get_dtype() for key in f.keys()}  # noqa: SIM118
        assert dtypes == {"F32"}, (path, dtypes)


@pytest.mark.parametrize("name", ["wan", "ltx"])
def test_large_and_small_are_compatible_but_different(pairs, name: str) -> None:
    pair = pairs[name]
    large = json.loads((pair.pipeline_dir / "transformer" / "config.json").read_text())
    small = json.loads((pair.small_dir / "config.json").read_text())
    shared = ["in_channels", "out_channels", "patch_size"]
    shared += ["text_dim"] if name == "wan" else ["patch_size_t", "caption_channels"]
    assert {k: large[k] for k in shared} == {k: small[k] for k in shared}
    assert large["num_layers"] == 2 and small["num_layers"] == 1
    large_width = large["num_attention_heads"] * large["attention_head_dim"]
    small_width = small["num_attention_heads"] * small["attention_head_dim"]
    assert small_width < large_width


@pytest.mark.parametrize("name", ["wan", "ltx"])
def test_text_encoders_are_built_from_the_shared_tiny_config(pairs, name: str) -> None:
    pair = pairs[name]
    saved = json.loads((pair.pipeline_dir / "text_encoder" / "config.json").read_text())
    expected = tiny_umt5_config(len(tiny_tokenizer()))
    assert {k: saved[k] for k in expected} == expected
    assert saved["architectures"] == ["UMT5EncoderModel" if name == "wan" else "T5EncoderModel"]


def test_layer_counts_are_configurable_and_checked(tmp_path: Path) -> None:
    pair = save_tiny_wan_pair(tmp_path / "w", large_layers=3, small_layers=2)
    assert json.loads((pair.pipeline_dir / "transformer" / "config.json").read_text())["num_layers"] == 3
    assert json.loads((pair.small_dir / "config.json").read_text())["num_layers"] == 2
    with pytest.raises(ValueError, match="small_layers"):
        save_tiny_wan_pair(tmp_path / "x", small_layers=0)


def test_call_kwargs_copies_are_independent(pairs) -> None:
    pair = pairs["ltx_i2v"]
    fresh = pair.kwargs(height=64)
    fresh["width"] = 0
    assert pair.call_kwargs["height"] == 32 and pair.call_kwargs["width"] == 32
    assert pair.call_kwargs["image"].size == (32, 32)
    assert "image" not in pairs["ltx"].call_kwargs


def test_tokenizer_handles_any_english_prompt_and_round_trips(pairs) -> None:
    built = tiny_tokenizer()
    loaded = load(pairs["wan"]).tokenizer
    text = "A Red fox, jumping over 3 lazy dogs in Zürich!"
    ids = built(text).input_ids
    assert loaded(text).input_ids == ids
    assert ids[-1] == built.eos_token_id
    assert ids.count(built.unk_token_id) == 1  # only the "ü"
    assert built.convert_ids_to_tokens(built("fox").input_ids) == ["\u2581fox", "</s>"]
    assert len(set(built("zebra quokka").input_ids)) > 3  # unknown words are spelled, not all <unk>
    assert built(PROMPT).input_ids != built(NEGATIVE).input_ids


# --------------------------------------------------------------------------- loading and generating


def test_models_built_from_config_start_in_train_mode(pairs) -> None:
    pair = pairs["wan"]
    config = WanTransformer3DModel.load_config(pair.small_dir)
    built = WanTransformer3DModel.from_config(config)
    assert built.training
    assert not built.eval().training
    assert not load_small(pair).training


@pytest.mark.parametrize("name", ["wan", "ltx", "ltx_i2v"])
def test_pair_loads_offline_and_generates(pairs, name: str) -> None:
    pair = pairs[name]
    pipe = load(pair)
    small = load_small(pair)
    assert type(pipe).__name__ == pair.pipeline_class
    assert type(pipe.transformer).__name__ == type(small).__name__ == pair.transformer_class
    for module in (pipe.transformer, pipe.text_encoder, pipe.vae, small):
        assert not module.training
        assert module.dtype == torch.float32
    frames = generate(pipe, pair)
    kw = pair.call_kwargs
    assert frames.shape == (1, kw["num_frames"], 3, kw["height"], kw["width"])
    assert torch.isfinite(frames).all()
    assert frames.min() >= 0 and frames.max() <= 1
    assert frames.std() > 0


@pytest.mark.parametrize("name", ["wan", "ltx", "ltx_i2v"])
def test_small_transformer_changes_the_output(pairs, name: str) -> None:
    pair = pairs[name]
    pipe = load(pair)
    with_large = generate(pipe, pair)
    assert torch.equal(generate(pipe, pair), with_large)  # same seed -> same video
    pipe.transformer = load_small(pair)
    with_small = generate(pipe, pair)
    assert torch.isfinite(with_small).all()
    assert (with_small - with_large).abs().max() > 1e-3


@pytest.mark.parametrize("kind", SCHEDULER_KINDS)
def test_wan_runs_with_each_scheduler_kind(pairs, kind: str) -> None:
    pair = pairs["wan"]
    pipe = load(pair)
    pipe.scheduler = make_scheduler(kind, pair)
    expected = {
        "unipc": UniPCMultistepScheduler,
        "flowmatch_euler": FlowMatchEulerDiscreteScheduler,
        "dpmsolver": DPMSolverMultistepScheduler,
    }[kind]
    assert type(pipe.scheduler) is expected
    frames = generate(pipe, pair)
    kw = pair.call_kwargs
    assert frames.shape == (1, kw["num_frames"], 3, kw["height"], kw["width"])
    assert torch.isfinite(frames).all()


def test_make_scheduler_accepts_several_likes_and_rejects_misfits(pairs) -> None:
    wan, ltx = pairs["wan"], pairs["ltx"]
    assert make_scheduler("unipc", wan).config.flow_shift == 3.0
    assert make_scheduler("unipc", "wan").config == make_scheduler("unipc", wan.pipeline_dir).config
    assert make_scheduler("flowmatch_euler", ltx).config.use_dynamic_shifting
    assert make_scheduler("flowmatch_euler", load(ltx)).config.shift_terminal == 0.1
    with pytest.raises(ValueError, match="dpmsolver"):
        make_scheduler("dpmsolver", ltx)
    with pytest.raises(ValueError, match="kind must be one of"):
        make_scheduler("ddim", wan)
    with pytest.raises(ValueError, match="like must be"):
        make_scheduler("unipc", "flux")


# --------------------------------------------------------------------------- pipeline facts


@pytest.mark.parametrize("kind", SCHEDULER_KINDS)
def test_wan_calls_twice_per_step_cond_then_uncond_and_step_index_is_lazy(pairs, kind: str) -> None:
    pair = pairs["wan"]
    pipe = load(pair)
    pipe.scheduler = make_scheduler(kind, pair)
    calls, handle = record_calls(pipe)
    generate(pipe, pair)
    handle.remove()
    assert [c["step_index"] for c in calls] == [None, None, 1, 1, 2, 2]
    timesteps = pipe.scheduler.timesteps
    expected_dtype = torch.float32 if kind == "flowmatch_euler" else torch.int64
    for i, call in enumerate(calls):
        assert call["timestep"].shape == (1,)
        assert call["timestep"].dtype == expected_dtype
        assert call["timestep"].item() == pytest.approx(timesteps[i // 2].item())
        assert call["hidden_states"].dim() == 5  # (B, C, F, H, W)
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt(PROMPT, NEGATIVE, max_sequence_length=pair.call_kwargs["max_sequence_length"])
    assert torch.equal(calls[0]["encoder_hidden_states"], cond)
    assert torch.equal(calls[1]["encoder_hidden_states"], uncond)
    assert torch.equal(calls[0]["hidden_states"], calls[1]["hidden_states"])


@pytest.mark.parametrize("name", ["wan", "ltx", "ltx_i2v"])
def test_without_guidance_every_pipeline_calls_once_per_step_with_batch_one(pairs, name: str) -> None:
    pair = pairs[name]
    pipe = load(pair)
    calls, handle = record_calls(pipe)
    generate(pipe, pair, guidance_scale=1.0)
    handle.remove()
    assert [c["step_index"] for c in calls] == [None, 1, 2]
    assert {c["hidden_states"].shape[0] for c in calls} == {1}
    assert {c["timestep"].shape[0] for c in calls} == {1}


@pytest.mark.parametrize("name", ["ltx", "ltx_i2v"])
@pytest.mark.parametrize("kind", ["flowmatch_euler", "unipc"])
def test_ltx_calls_once_per_step_with_uncond_cond_batch(pairs, name: str, kind: str) -> None:
    pair = pairs[name]
    pipe = load(pair)
    pipe.scheduler = make_scheduler(kind, pair)
    calls, handle = record_calls(pipe)
    generate(pipe, pair)
    handle.remove()
    assert [c["step_index"] for c in calls] == [None, 1, 2]
    with torch.no_grad():
        cond, _, uncond, _ = pipe.encode_prompt(
            PROMPT, NEGATIVE, max_sequence_length=pair.call_kwargs["max_sequence_length"]
        )
    for call in calls:
        assert call["hidden_states"].dim() == 3  # packed tokens (2B, tokens, C)
        assert torch.equal(call["encoder_hidden_states"], torch.cat([uncond, cond]))
        assert torch.equal(call["hidden_states"][0], call["hidden_states"][1])


def test_ltx_text_to_video_timestep_is_one_per_sample(pairs) -> None:
    pair = pairs["ltx"]
    pipe = load(pair)
    calls, handle = record_calls(pipe)
    generate(pipe, pair)
    handle.remove()
    for i, call in enumerate(calls):
        assert call["timestep"].shape == (2,)
        assert torch.all(call["timestep"] == pipe.scheduler.timesteps[i])


def test_ltx_image_to_video_timestep_is_per_token_with_zero_on_the_first_frame(pairs) -> None:
    pair = pairs["ltx_i2v"]
    pipe = load(pair)
    calls, handle = record_calls(pipe)
    generate(pipe, pair)
    handle.remove()
    kw = pair.call_kwargs
    ratio_s, ratio_t = pipe.vae_spatial_compression_ratio, pipe.vae_temporal_compression_ratio
    tokens_per_frame = (kw["height"] // ratio_s) * (kw["width"] // ratio_s)
    tokens = ((kw["num_frames"] - 1) // ratio_t + 1) * tokens_per_frame
    for i, call in enumerate(calls):
        timestep = call["timestep"]
        assert timestep.shape == (2, tokens)
        assert timestep.dtype == torch.float32
        assert call["hidden_states"].shape[:2] == (2, tokens)
        assert torch.all(timestep[:, :tokens_per_frame] == 0)
        assert torch.allclose(timestep[:, tokens_per_frame:], pipe.scheduler.timesteps[i].to(timestep.dtype))
