"""Tiny, offline, deterministic model pairs for FlowBlending's tests and benchmarks.

Nothing here downloads anything. Every model is built from a config with random weights under a
fixed seed, saved with ``save_pretrained`` (fp32, safetensors) and meant to be loaded back with the
same ``from_pretrained`` code a hub id goes through::

    pair = save_tiny_wan_pair(tmp_path / "wan")
    pipe = DiffusionPipeline.from_pretrained(pair.pipeline_dir)        # the large model inside
    small = WanTransformer3DModel.from_pretrained(pair.small_dir)      # the small model alone
    video = pipe(prompt="a red fox", num_inference_steps=7, **pair.kwargs(output_type="pt")).frames

This module is imported by tests and benchmarks only; it imports torch, diffusers and
transformers lazily so that importing it costs nothing.

Builders
    ``save_tiny_wan_pair``  WanPipeline (UMT5 encoder, AutoencoderKLWan, WanTransformer3DModel large,
                            UniPC flow scheduler as the Wan 2.1 repos ship it) + a small transformer.
    ``save_tiny_ltx_pair``  LTXPipeline or LTXImageToVideoPipeline (T5 encoder, AutoencoderKLLTXVideo,
                            LTXVideoTransformer3DModel large, FlowMatchEuler as LTX-Video ships it)
                            + a small transformer.
    ``make_scheduler``      a UniPC / FlowMatchEuler / DPM-Solver++ scheduler set up for flow
                            matching, to swap in as ``pipe.scheduler``.

The small transformer differs from the large one in depth, width and seed, and agrees with it in
everything the pipeline relies on (in/out channels, patch sizes, text width), so it can replace
the large one at any step. Same arguments -> byte-identical safetensors, so a session-scoped pytest
fixture can build a pair once and share it.

Sizes (``TinyPair.call_kwargs``; the caller adds prompt, negative_prompt, num_inference_steps,
generator, output_type):

* Wan: 48x64 px, 9 frames -> latent (16, 3, 6, 8), 3x4 patches a frame, 36 tokens; text 16 tokens;
  guidance 5.0. Large: width 32 (2 heads x 16), ffn 64, 2 blocks; small: width 16, ffn 32, 1 block.
* LTX / LTX-I2V: 32x32 px (LTX wants multiples of 32), 9 frames -> latent (8, 3, 8, 8), 192 tokens;
  text 16 tokens; guidance 3.0; I2V adds a 32x32 RGB PIL ``image``. Large: width 32 (4 heads x 8),
  2 blocks; small: width 16 (2 heads x 8), 1 block.
* A 7-step generation with CFG (output_type="pt", decode included) takes about 0.05-0.15 s for
  each pair on an idle 2-core CPU.

The tokenizer is a ``T5Tokenizer`` built offline from a small Unigram vocabulary (~230 common
English words as whole pieces, single ASCII characters as fallback pieces): any English prompt is
tokenized (words outside the list are spelled out), other characters map to ``<unk>``, and
``</s>`` ends every sequence, as with the real T5 tokenizers. In transformers 5 ``T5TokenizerFast``
is the same class, and ``model_index.json`` names it ``T5TokenizerFast`` as the hub repos do.
WanPipeline declares ``AutoTokenizer`` and LTX ``T5TokenizerFast``, but ``from_pretrained`` loads
whatever class ``model_index.json`` names: a ``PreTrainedTokenizerFast`` (a word-level
``tokenizers`` tokenizer; recorded as ``TokenizersBackend`` in transformers 5) saved in its place
loads and runs too. The T5 class keeps the real repos' loading path.

Facts about the stock pipelines, checked by ``tests/test_testing_builders.py`` (diffusers 0.42.1):

* Transformer calls per denoising step with classifier-free guidance (``guidance_scale > 1``):
  WanPipeline calls the transformer twice, first with the prompt embeddings ("cond"), then with
  the negative ones ("uncond"), each with batch B and the same latents. LTXPipeline and
  LTXImageToVideoPipeline call it once with a batch of 2B ordered ``[uncond, cond]``. Without
  guidance every pipeline calls it once per step with batch B.
* ``hidden_states``: Wan passes 5-D latents (B, C, F, H, W); LTX passes packed tokens
  (2B, tokens, C).
* ``timestep``: Wan and LTX text-to-video pass a 1-D tensor of shape (batch,) holding the
  scheduler timestep (int64 under UniPC and DPM-Solver++, float under FlowMatchEuler).
  LTXImageToVideoPipeline passes a float per-token tensor of shape (2B, tokens) (tokens = latent
  frames x latent height x latent width, patch size 1) equal to ``t`` everywhere except 0 on the
  tokens of the first (conditioning) latent frame.
* ``pipe.scheduler.step_index`` seen from inside the transformer call (forward pre-hook) is
  ``None`` during the first step and ``i`` during step ``i >= 1``, for UniPC, FlowMatchEuler and
  DPM-Solver++ alike (3 steps: Wan ``[None, None, 1, 1, 2, 2]``, LTX ``[None, 1, 2]``): the
  schedulers set their step index lazily in their first ``step()`` (``set_begin_index(0)``, which
  Wan calls, sets only the begin index). A router therefore maps ``None`` to step 0. Both Wan
  calls of a step see the same value.
* LTX passes ``sigmas=`` and ``mu=`` to ``scheduler.set_timesteps``: FlowMatchEuler and UniPC
  (``use_flow_sigmas=True``) accept that, DPMSolverMultistepScheduler does not (its
  ``set_timesteps`` has no ``sigmas``), so ``make_scheduler("dpmsolver", <ltx pair>)`` raises.
* Models built from a config are in ``train()`` mode; ``from_pretrained`` returns them in eval
  mode.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "SCHEDULER_KINDS",
    "TinyPair",
    "make_scheduler",
    "save_tiny_ltx_pair",
    "save_tiny_wan_pair",
    "tiny_tokenizer",
]

SCHEDULER_KINDS = ("unipc", "flowmatch_euler", "dpmsolver")

# Text encoder width; the transformers' text_dim / caption_channels must equal it.
_TEXT_DIM = 32
_WAN_FLOW_SHIFT = 3.0
# FlowMatchEuler settings of the Lightricks/LTX-Video 0.9.x scheduler config.
_LTX_SCHEDULER = {
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.95,
    "max_shift": 2.05,
    "base_image_seq_len": 1024,
    "max_image_seq_len": 4096,
    "shift_terminal": 0.1,
}

# Whole-word pieces; any other ASCII word is spelled from the single-character pieces.
_WORDS_TEXT = (
    "a an the and or of in on at to from with without into over under near by for is are "
    "while as its their his her one two three four many some few small large big little tall "
    "long short old young new red orange yellow green blue purple pink white black gray grey brown "
    "golden silver bright dark light soft slow fast quiet loud warm cold wet dry happy sad calm "
    "cat cats dog dogs bird birds fish horse cow fox bear lion tiger monkey rabbit deer wolf owl "
    "man woman men women child children boy girl person people player dancer chef "
    "car cars bus train boat ship plane bike bicycle road street city town village house "
    "building bridge tower room kitchen window door table chair cup book ball kite "
    "tree trees forest flower flowers grass field garden park mountain mountains hill river lake "
    "sea ocean beach wave waves water rain snow sky cloud clouds sun moon star stars night day "
    "morning evening sunset sunrise fire smoke light shadow wind storm "
    "walks walking runs running jumps jumping flies flying swims swimming dances dancing "
    "plays playing sits sitting stands standing rolls rolling falls falling moves moving "
    "drives driving rides riding eats eating looks looking turns turning spins spinning "
    "camera view close up shot slow motion video scene background foreground "
    "blurry low quality static noise distorted worst"
)
_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()[]/&%+=*#@_"


@dataclasses.dataclass(frozen=True)
class TinyPair:
    """A saved tiny pipeline (large transformer inside) and a saved small transformer.

    ``call_kwargs`` holds the size settings (height, width, num_frames, max_sequence_length,
    guidance_scale, and ``image`` for image-to-video); the caller passes prompt,
    negative_prompt, num_inference_steps, generator and output_type. Treat it as read-only and
    use ``kwargs(**overrides)`` for a fresh dict.
    """

    pipeline_dir: Path
    small_dir: Path
    pipeline_class: str
    call_kwargs: dict[str, Any]
    transformer_class: str = ""
    family: str = ""

    def kwargs(self, **overrides: Any) -> dict[str, Any]:
        """A fresh copy of ``call_kwargs`` updated with ``overrides``."""
        return {**self.call_kwargs, **overrides}


# --------------------------------------------------------------------------- tokenizer


def tiny_tokenizer(model_max_length: int = 512):
    """A small T5 (Unigram) tokenizer built offline: common words, ASCII characters, ``<unk>``."""
    from transformers import T5Tokenizer

    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -3.0)]
    seen = {piece for piece, _ in vocab}
    for word in _WORDS_TEXT.split():
        piece = "\u2581" + word
        if piece not in seen:
            seen.add(piece)
            vocab.append((piece, -4.0))
    for char in _CHARS:
        if char not in seen:
            seen.add(char)
            vocab.append((char, -8.0))
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Build modules in fp32 from torch's global RNG seeded with ``seed``; restore both afterwards."""
    import torch

    dtype = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_default_dtype(torch.float32)
        try:
            yield
        finally:
            torch.set_default_dtype(dtype)


def _check_layers(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int (number of transformer blocks), got {value!r}")


def _tiny_image(height: int, width: int, seed: int):
    """A deterministic RGB PIL image: smooth gradients plus seeded noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    base = np.stack([xx, yy, 1 - (xx + yy) / 2], axis=-1)
    pixels = np.clip(base * 200 + rng.integers(0, 56, size=(height, width, 3)), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8), mode="RGB")


def _save_pipeline(pipe: Any, pipeline_dir: Path) -> None:
    """``save_pretrained`` (safetensors), then name the tokenizer ``T5TokenizerFast`` as the real repos do.

    In transformers 5 ``T5TokenizerFast`` is ``T5Tokenizer`` (the class that wrote the files), so this
    only changes the name in ``model_index.json``; it keeps the directory shaped like the hub
    repos (Wan-AI/Wan2.1-T2V-*-Diffusers, Lightricks/LTX-Video), whose tokenizer.json it also suits.
    """
    pipe.save_pretrained(pipeline_dir, safe_serialization=True)
    index_path = pipeline_dir / "model_index.json"
    index = json.loads(index_path.read_text())
    index["tokenizer"] = ["transformers", "T5TokenizerFast"]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- Wan


def _wan_transformer(num_layers: int, heads: int, head_dim: int, ffn_dim: int):
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=16,
        out_channels=16,
        text_dim=_TEXT_DIM,
        freq_dim=32,
        ffn_dim=ffn_dim,
        num_layers=num_layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )


def save_tiny_wan_pair(
    directory: str | Path, *, seed: int = 0, large_layers: int = 2, small_layers: int = 1
) -> TinyPair:
    """Save a tiny WanPipeline (large transformer inside) and a small Wan transformer under ``directory``.

    Large: 2 heads x 16 = width 32, ffn 64, ``large_layers`` blocks, seed ``seed``.
    Small: 2 heads x 8 = width 16, ffn 32, ``small_layers`` blocks, seed ``seed + 1``.
    Layout: ``directory/pipeline`` (``WanPipeline.save_pretrained``) and ``directory/small_transformer``.
    """
    _check_layers("large_layers", large_layers)
    _check_layers("small_layers", small_layers)
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline
    from transformers import UMT5Config, UMT5EncoderModel

    root = Path(directory)
    pipeline_dir, small_dir = root / "pipeline", root / "small_transformer"

    tokenizer = tiny_tokenizer()
    with _seeded(seed):
        text_encoder = UMT5EncoderModel(
            UMT5Config(
                vocab_size=len(tokenizer),
                d_model=_TEXT_DIM,
                d_kv=8,
                d_ff=64,
                num_layers=1,
                num_heads=4,
                relative_attention_num_buckets=8,
                relative_attention_max_distance=32,
                dropout_rate=0.0,
                feed_forward_proj="gated-gelu",
                pad_token_id=0,
                eos_token_id=1,
                decoder_start_token_id=0,
            )
        )
    with _seeded(seed):
        vae = AutoencoderKLWan(
            base_dim=3,
            z_dim=16,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
        )
    with _seeded(seed):
        large = _wan_transformer(large_layers, heads=2, head_dim=16, ffn_dim=64)
    with _seeded(seed + 1):
        small = _wan_transformer(small_layers, heads=2, head_dim=8, ffn_dim=32)
    scheduler = UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        num_train_timesteps=1000,
        flow_shift=_WAN_FLOW_SHIFT,
    )
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=large,
        scheduler=scheduler,
    )
    _save_pipeline(pipe, pipeline_dir)
    small.save_pretrained(small_dir, safe_serialization=True)
    return TinyPair(
        pipeline_dir=pipeline_dir,
        small_dir=small_dir,
        pipeline_class="WanPipeline",
        call_kwargs={
            "height": 48,
            "width": 64,
            "num_frames": 9,
            "max_sequence_length": 16,
            "guidance_scale": 5.0,
        },
        transformer_class="WanTransformer3DModel",
        family="wan",
    )


# --------------------------------------------------------------------------- LTX


def _ltx_transformer(num_layers: int, heads: int, head_dim: int):
    from diffusers import LTXVideoTransformer3DModel

    return LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        cross_attention_dim=heads * head_dim,
        num_layers=num_layers,
        caption_channels=_TEXT_DIM,
    )


def save_tiny_ltx_pair(
    directory: str | Path,
    *,
    image_to_video: bool = False,
    seed: int = 0,
    large_layers: int = 2,
    small_layers: int = 1,
) -> TinyPair:
    """Save a tiny LTXPipeline / LTXImageToVideoPipeline and a small LTX transformer under ``directory``.

    Large: 4 heads x 8 = width 32, ``large_layers`` blocks, seed ``seed``.
    Small: 2 heads x 8 = width 16, ``small_layers`` blocks, seed ``seed + 1``.
    Layout: ``directory/pipeline`` and ``directory/small_transformer``.
    """
    _check_layers("large_layers", large_layers)
    _check_layers("small_layers", small_layers)
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXImageToVideoPipeline,
        LTXPipeline,
    )
    from transformers import T5Config, T5EncoderModel

    root = Path(directory)
    pipeline_dir, small_dir = root / "pipeline", root / "small_transformer"

    tokenizer = tiny_tokenizer(model_max_length=128)
    with _seeded(seed):
        text_encoder = T5EncoderModel(
            T5Config(
                vocab_size=len(tokenizer),
                d_model=_TEXT_DIM,
                d_kv=8,
                d_ff=64,
                num_layers=1,
                num_heads=4,
                relative_attention_num_buckets=8,
                relative_attention_max_distance=32,
                dropout_rate=0.0,
                feed_forward_proj="gated-gelu",
                pad_token_id=0,
                eos_token_id=1,
                decoder_start_token_id=0,
            )
        )
    with _seeded(seed):
        vae = AutoencoderKLLTXVideo(
            in_channels=3,
            out_channels=3,
            latent_channels=8,
            block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 8, 8, 8),
            layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1),
            spatio_temporal_scaling=(True, True, False, False),
            decoder_spatio_temporal_scaling=(True, True, False, False),
            decoder_inject_noise=(False, False, False, False, False),
            upsample_residual=(False, False, False, False),
            upsample_factor=(1, 1, 1, 1),
            timestep_conditioning=False,
            patch_size=1,
            patch_size_t=1,
            encoder_causal=True,
            decoder_causal=False,
        )
    with _seeded(seed):
        large = _ltx_transformer(large_layers, heads=4, head_dim=8)
    with _seeded(seed + 1):
        small = _ltx_transformer(small_layers, heads=2, head_dim=8)
    scheduler = FlowMatchEulerDiscreteScheduler(**_LTX_SCHEDULER)
    pipeline_cls = LTXImageToVideoPipeline if image_to_video else LTXPipeline
    pipe = pipeline_cls(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=large,
    )
    _save_pipeline(pipe, pipeline_dir)
    small.save_pretrained(small_dir, safe_serialization=True)

    height = width = 32
    call_kwargs: dict[str, Any] = {
        "height": height,
        "width": width,
        "num_frames": 9,
        "max_sequence_length": 16,
        "guidance_scale": 3.0,
    }
    if image_to_video:
        call_kwargs["image"] = _tiny_image(height, width, seed)
    return TinyPair(
        pipeline_dir=pipeline_dir,
        small_dir=small_dir,
        pipeline_class=pipeline_cls.__name__,
        call_kwargs=call_kwargs,
        transformer_class="LTXVideoTransformer3DModel",
        family="ltx",
    )


# --------------------------------------------------------------------------- schedulers


def _family_of(like: Any) -> str:
    """'wan' or 'ltx' from a TinyPair, a pipeline, a pipeline class name, a directory or a family name."""
    if isinstance(like, TinyPair):
        return like.family
    if isinstance(like, str) and like in ("wan", "ltx"):
        return like
    name = ""
    if isinstance(like, (str, Path)) and Path(like, "model_index.json").is_file():
        name = json.loads(Path(like, "model_index.json").read_text())["_class_name"]
    elif isinstance(like, str):
        name = like
    else:
        name = type(like).__name__
    if name.startswith("Wan"):
        return "wan"
    if name.startswith("LTX"):
        return "ltx"
    raise ValueError(
        f"like must be a TinyPair, a Wan/LTX pipeline (or its class name or directory), 'wan' or 'ltx'; got {like!r}"
    )


def make_scheduler(kind: str, like: Any):
    """A flow-matching scheduler of ``kind`` ("unipc", "flowmatch_euler", "dpmsolver") fit for ``like``.

    ``like`` is a TinyPair, a pipeline, a pipeline class name or directory, or "wan" / "ltx".
    Wan: all three kinds with shift 3.0 (UniPC and DPM-Solver++ with ``use_flow_sigmas=True,
    prediction_type="flow_prediction", flow_shift=3.0``; FlowMatchEuler with ``shift=3.0``).
    LTX: FlowMatchEuler with the LTX-Video config, or UniPC on flow sigmas (the pipeline passes its
    own sigmas and ``mu``); DPM-Solver++ cannot take custom sigmas and raises ValueError.
    """
    from diffusers import (
        DPMSolverMultistepScheduler,
        FlowMatchEulerDiscreteScheduler,
        UniPCMultistepScheduler,
    )

    if kind not in SCHEDULER_KINDS:
        raise ValueError(f"kind must be one of {SCHEDULER_KINDS}, got {kind!r}")
    family = _family_of(like)
    if family == "wan":
        if kind == "unipc":
            return UniPCMultistepScheduler(
                prediction_type="flow_prediction",
                use_flow_sigmas=True,
                num_train_timesteps=1000,
                flow_shift=_WAN_FLOW_SHIFT,
            )
        if kind == "flowmatch_euler":
            return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=_WAN_FLOW_SHIFT)
        return DPMSolverMultistepScheduler(
            algorithm_type="dpmsolver++",
            solver_order=2,
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=_WAN_FLOW_SHIFT,
            num_train_timesteps=1000,
        )
    if kind == "flowmatch_euler":
        return FlowMatchEulerDiscreteScheduler(**_LTX_SCHEDULER)
    if kind == "unipc":
        return UniPCMultistepScheduler(
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            num_train_timesteps=1000,
            flow_shift=1.0,
        )
    raise ValueError(
        "kind='dpmsolver' does not fit LTX pipelines: they pass custom sigmas to scheduler.set_timesteps "
        "and DPMSolverMultistepScheduler.set_timesteps takes none; use 'flowmatch_euler' or 'unipc'"
    )


def save_tiny_profile(
    pair: TinyPair,
    path: str | Path,
    *,
    pattern: str = "LSL",
    boundaries: tuple[float, ...] | None = (0.4, 0.8),
    steps: int = 10,
    name: str | None = None,
):
    """Write a valid profile for a tiny pair (local paths as model ids) and return its path.

    FLOPs per step are measured on the meta device from the real call shapes of one step of the pair
    (``flowblending.cost``), sigmas come from the pair's own scheduler, so nothing in it is typed in.
    """
    from diffusers import DiffusionPipeline

    from .compose import make_profile
    from .cost import capture_step_calls, step_flops
    from .profile import ModelSpec, SchedulerSpec, Setting, save_profile
    from .schedule import segments_from_pattern

    pipe = DiffusionPipeline.from_pretrained(pair.pipeline_dir)
    small_cls = type(pipe.transformer)
    small = small_cls.from_pretrained(pair.small_dir)
    prompt = {"prompt": "a red circle moving left"}
    if "image" in pair.call_kwargs:
        prompt["image"] = pair.call_kwargs["image"]
    extra = {k: v for k, v in pair.call_kwargs.items() if k != "image"}
    calls = capture_step_calls(pipe, **prompt, **extra)
    flops = {"large": step_flops(pipe.transformer, calls), "small": step_flops(small, calls)}
    import torch

    with torch.no_grad():  # the pipeline's own sigmas for `steps` (LTX derives them from the resolution)
        pipe(**prompt, **{**extra, "num_inference_steps": steps, "output_type": "latent"})
    sched = pipe.scheduler
    sigmas = [float(s) for s in sched.sigmas[:steps]]
    timesteps = [float(t) for t in sched.timesteps[:steps]]
    config = {k: v for k, v in sched.config.items() if not k.startswith("_")}
    shift = config.get("flow_shift", config.get("shift"))
    setting = Setting(
        num_inference_steps=steps,
        scheduler=SchedulerSpec(type(sched).__name__, shift, config),
        guidance_scale=extra.get("guidance_scale"),
        height=extra.get("height"),
        width=extra.get("width"),
        num_frames=extra.get("num_frames"),
        max_sequence_length=extra.get("max_sequence_length"),
    )
    profile = make_profile(
        name=name or f"tiny-{pair.family}",
        pipeline_class=pair.pipeline_class,
        image_to_video="image" in pair.call_kwargs,
        models={
            "large": ModelSpec(
                str(pair.pipeline_dir),
                None,
                "transformer",
                pair.transformer_class,
                sum(p.numel() for p in pipe.transformer.parameters()),
            ),
            "small": ModelSpec(
                str(pair.small_dir),
                None,
                None,
                pair.transformer_class,
                sum(p.numel() for p in small.parameters()),
            ),
        },
        setting=setting,
        schedule=segments_from_pattern(pattern, boundaries, ("large", "small")),
        flops_per_step=flops,
        cost_source="flowblending.cost.step_flops on the meta device (tiny test pair)",
        provenance={"source": "flowblending.testing.save_tiny_profile"},
        sigmas=sigmas,
        timesteps=timesteps,
    )
    return save_profile(profile, path)


def save_tiny_dinov2(directory: str | Path, *, seed: int = 0) -> Path:
    """A tiny random ``Dinov2Model`` (+ PIL image processor) saved where ``--feature-model`` can load it."""
    import transformers

    path = Path(directory)
    with _seeded(seed):
        config = transformers.Dinov2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=32,
            patch_size=8,
        )
        transformers.Dinov2Model(config).save_pretrained(path)
    cls = getattr(transformers, "BitImageProcessorPil", None) or transformers.BitImageProcessor
    cls(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def save_reference_frames(
    directory: str | Path, count: int = 48, size: tuple[int, int] = (48, 64), seed: int = 0
) -> Path:
    """``count`` PNG frames of smooth random colour fields: a stand-in reference set for FID in tests."""
    import numpy as np
    from PIL import Image

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    for i in range(count):
        a = rng.uniform(0, 1, size=(3, 3))
        img = np.stack([a[c, 0] * 0.6 + a[c, 1] * 0.4 * xx + a[c, 2] * 0.4 * yy for c in range(3)], axis=-1)
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path / f"frame-{i:03d}.png")
    return path
