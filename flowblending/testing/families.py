"""Tiny pairs of more pipeline families: SkyReels-V2 T2V, Wan 2.1 I2V and VACE, Cosmos Predict2 Video2World and
Text2Image, Sana and Stable Diffusion 3 (images).

Each builder saves ``directory/pipeline`` (the stock pipeline with the large transformer inside, hub layout) and
``directory/small_transformer``; text encoders, VAEs and the large transformer are seeded with ``seed`` (the
second CLIP of SD3 with ``seed + 2``), the small transformer with ``seed + 1``. For an image pipeline the "video"
is one image: ``call_kwargs`` has no ``num_frames``.

The Cosmos pipelines cannot run offline as diffusers 0.42.1 ships them (they build ``cosmos_guardrail``'s safety
checker, and the transformer resizes its padding mask with torchvision): :func:`cosmos_stand_ins` patches in the
two test-only stand-ins, :class:`PassThroughSafetyChecker` and :func:`nearest_resize`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .ltx import _tiny_image
from .pairs import TinyPair, save_pipeline, seeded
from .text import TEXT_DIM, tiny_tokenizer, tiny_umt5_config
from .wan import TINY_LARGE, TINY_SMALL, WanSize, wan_transformer, wan_vae

CLIP_VISION_DIM = 16
"""Width of the tiny CLIP vision encoder of the Wan I2V pair (the transformers' ``image_dim``)."""

SKYREELS_FLOW_SHIFT = 8.0
"""Flow shift of the SkyReels-V2 T2V 540P scheduler."""

WAN_I2V_FLOW_SHIFT = 3.0
"""Flow shift of the Wan 2.1 I2V 480P scheduler."""

_TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()[]/&%+=*#@_<>{}|~^$`\\"


def _paths(directory: str | Path) -> tuple[Path, Path]:
    root = Path(directory)
    return root / "pipeline", root / "small_transformer"


def _save_with_t5_names(pipe: Any, pipeline_dir: Path, slots: tuple[str, ...]) -> None:
    """``save_pretrained`` (safetensors), then name the T5 tokenizers in ``slots`` ``T5TokenizerFast`` as the hub."""
    pipe.save_pretrained(pipeline_dir, safe_serialization=True)
    index_path = pipeline_dir / "model_index.json"
    index = json.loads(index_path.read_text())
    for slot in slots:
        index[slot] = ["transformers", "T5TokenizerFast"]  # the same class as T5Tokenizer in transformers 5
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _unipc(flow_shift: float) -> Any:
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=flow_shift
    )


# --- SkyReels-V2 --------------------------------------------------------------------------------------------------
def save_tiny_skyreels_pair(directory: str | Path, *, seed: int = 0) -> TinyPair:
    """Save a tiny SkyReelsV2Pipeline (UMT5, AutoencoderKLWan, UniPC shift 8) and a small transformer.

    Large: 2 heads x 16 = width 32, ffn 64, 2 blocks; small: 2 heads x 8 = width 16, ffn 32, 1 block; 48x64, 9 frames.
    """
    from diffusers import SkyReelsV2Pipeline
    from transformers import UMT5Config, UMT5EncoderModel

    pipeline_dir, small_dir = _paths(directory)
    tokenizer = tiny_tokenizer()
    with seeded(seed):
        text_encoder = UMT5EncoderModel(UMT5Config(**tiny_umt5_config(len(tokenizer))))
    with seeded(seed):
        vae = wan_vae()
    with seeded(seed):
        large = wan_transformer(TINY_LARGE, "SkyReelsV2Transformer3DModel")
    with seeded(seed + 1):
        small = wan_transformer(TINY_SMALL, "SkyReelsV2Transformer3DModel")
    pipe = SkyReelsV2Pipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=large,
        scheduler=_unipc(SKYREELS_FLOW_SHIFT),
    )
    save_pipeline(pipe, pipeline_dir)
    small.save_pretrained(small_dir, safe_serialization=True)
    return TinyPair(
        pipeline_dir=pipeline_dir,
        small_dir=small_dir,
        pipeline_class="SkyReelsV2Pipeline",
        call_kwargs={"height": 48, "width": 64, "num_frames": 9, "max_sequence_length": 16, "guidance_scale": 6.0},
        transformer_class="SkyReelsV2Transformer3DModel",
        family="skyreels",
    )


# --- Wan 2.1 image-to-video -----------------------------------------------------------------------------------------
def _wan_i2v_transformer(size: WanSize) -> Any:
    """A Wan 2.1 I2V transformer: latents + mask + condition in (36 channels), CLIP image tokens cross-attended."""
    return wan_transformer(
        size, in_channels=36, image_dim=CLIP_VISION_DIM, added_kv_proj_dim=size.heads * size.head_dim
    )


def save_tiny_wan_i2v_pair(directory: str | Path, *, seed: int = 0) -> TinyPair:
    """Save a tiny Wan 2.1 WanImageToVideoPipeline (UMT5, CLIP vision encoder, AutoencoderKLWan, UniPC) + small DiT.

    Large: 2 heads x 16 = width 32, ffn 64, 2 blocks; small: 2 heads x 8 = width 16, ffn 32, 1 block; both read
    36 latent channels and 16-wide CLIP image tokens (32x32 crop, 8x8 patches); 48x64, 9 frames, a 48x64 image.
    """
    from diffusers import WanImageToVideoPipeline
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    pipeline_dir, small_dir = _paths(directory)
    tokenizer = tiny_tokenizer()
    with seeded(seed):
        text_encoder = UMT5EncoderModel(UMT5Config(**tiny_umt5_config(len(tokenizer))))
    with seeded(seed):
        vae = wan_vae()
    with seeded(seed):
        image_encoder = CLIPVisionModel(
            CLIPVisionConfig(
                hidden_size=CLIP_VISION_DIM,
                intermediate_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=32,
                patch_size=8,
            )
        )
    with seeded(seed):
        large = _wan_i2v_transformer(TINY_LARGE)
    with seeded(seed + 1):
        small = _wan_i2v_transformer(TINY_SMALL)
    pipe = WanImageToVideoPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=_unipc(WAN_I2V_FLOW_SHIFT),
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        image_encoder=image_encoder,
        transformer=large,
    )
    save_pipeline(pipe, pipeline_dir)
    small.save_pretrained(small_dir, safe_serialization=True)
    height, width = 48, 64
    return TinyPair(
        pipeline_dir=pipeline_dir,
        small_dir=small_dir,
        pipeline_class="WanImageToVideoPipeline",
        call_kwargs={
            "height": height,
            "width": width,
            "num_frames": 9,
            "max_sequence_length": 16,
            "guidance_scale": 5.0,
            "image": _tiny_image(height, width, seed),
        },
        transformer_class="WanTransformer3DModel",
        family="wan_i2v",
    )


# --- Sana -----------------------------------------------------------------------------------------------------------
def _gemma_tokenizer() -> Any:
    """A character-level Gemma (BPE, byte fallback) tokenizer built offline: specials, ``▁``, ASCII, the 256 bytes."""
    from transformers import GemmaTokenizer

    pieces = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "\u2581", *_TOKEN_CHARS]
    pieces += [f"<0x{b:02X}>" for b in range(256)]
    return GemmaTokenizer(vocab={p: i for i, p in enumerate(pieces)}, merges=[])


def _sana_transformer(layers: int, heads: int, head_dim: int) -> Any:
    from diffusers import SanaTransformer2DModel

    return SanaTransformer2DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        num_layers=layers,
        num_cross_attention_heads=heads,
        cross_attention_head_dim=head_dim,
        cross_attention_dim=heads * head_dim,
        caption_channels=TEXT_DIM,
        mlp_ratio=2.0,
        sample_size=16,
        patch_size=1,
    )


def save_tiny_sana_pair(directory: str | Path, *, seed: int = 0) -> TinyPair:
    """Save a tiny SanaPipeline (Gemma2, AutoencoderDC 32x, FlowMatchEuler shift 3) and a small Sana transformer.

    Large: 2 heads x 16 = width 32, 2 blocks; small: 2 heads x 8 = width 16, 1 block; 4 latent channels.
    Images are 512x512 (the transformer's ``sample_size`` 16 selects Sana's 512 px resolution bins, which the
    pipeline applies by default) = a 16x16 latent, 256 tokens.
    """
    from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaPipeline
    from transformers import Gemma2Config, Gemma2Model

    pipeline_dir, small_dir = _paths(directory)
    tokenizer = _gemma_tokenizer()
    with seeded(seed):
        text_encoder = Gemma2Model(
            Gemma2Config(
                vocab_size=len(tokenizer),
                hidden_size=TEXT_DIM,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=2,
                num_key_value_heads=1,
                head_dim=16,
                max_position_embeddings=2048,
                pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        )
    with seeded(seed):
        vae = AutoencoderDC(
            in_channels=3,
            latent_channels=4,
            attention_head_dim=4,
            encoder_block_types="ResBlock",
            decoder_block_types="ResBlock",
            encoder_block_out_channels=(4, 4, 4, 4, 8, 8),
            decoder_block_out_channels=(4, 4, 4, 4, 8, 8),
            encoder_layers_per_block=(1, 1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1, 1, 1),
            encoder_qkv_multiscales=((), (), (), (), (), ()),
            decoder_qkv_multiscales=((), (), (), (), (), ()),
            upsample_block_type="interpolate",
            downsample_block_type="conv",
            scaling_factor=0.41407,
        )
    with seeded(seed):
        large = _sana_transformer(2, heads=2, head_dim=16)
    with seeded(seed + 1):
        small = _sana_transformer(1, heads=2, head_dim=8)
    pipe = SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=large,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
    )
    pipe.save_pretrained(pipeline_dir, safe_serialization=True)
    small.save_pretrained(small_dir, safe_serialization=True)
    return TinyPair(
        pipeline_dir=pipeline_dir,
        small_dir=small_dir,
        pipeline_class="SanaPipeline",
        call_kwargs={"height": 512, "width": 512, "max_sequence_length": 16, "guidance_scale": 4.5},
        transformer_class="SanaTransformer2DModel",
        family="sana",
    )


# --- Stable Diffusion 3 ---------------------------------------------------------------------------------------------
def _clip_tokenizer() -> Any:
    """A character-level CLIP (byte-level BPE) tokenizer built offline: each character alone and word-final."""
    from transformers import CLIPTokenizer

    pieces = ["<|startoftext|>", "<|endoftext|>"]
    for char in dict.fromkeys(_TOKEN_CHARS.lower()):
        pieces += [char, char + "</w>"]
    return CLIPTokenizer(vocab={p: i for i, p in enumerate(pieces)}, merges=[], model_max_length=77)


def _sd3_transformer(layers: int, heads: int, head_dim: int) -> Any:
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=layers,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        joint_attention_dim=TEXT_DIM,
        caption_projection_dim=heads * head_dim,
        pooled_projection_dim=TEXT_DIM,
        pos_embed_max_size=16,
    )


def save_tiny_sd3_pair(directory: str | Path, *, seed: int = 0) -> TinyPair:
    """Save a tiny StableDiffusion3Pipeline (two 16-wide CLIPs, T5, AutoencoderKL, FlowMatchEuler) + small DiT.

    Large: 4 heads x 8 = width 32, 2 blocks; small: 2 heads x 8 = width 16, 1 block; text width 32 (T5, and the
    two CLIPs side by side), 4 latent channels, 2x2 patches; 32x32 images = a 16x16 latent, 64 tokens.
    """
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    pipeline_dir, small_dir = _paths(directory)
    clip_tokenizer, t5_tokenizer = _clip_tokenizer(), tiny_tokenizer(model_max_length=128)
    clip_config = CLIPTextConfig(
        vocab_size=len(clip_tokenizer),
        hidden_size=TEXT_DIM // 2,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=TEXT_DIM // 2,
        bos_token_id=clip_tokenizer.bos_token_id,
        eos_token_id=clip_tokenizer.eos_token_id,
        pad_token_id=clip_tokenizer.pad_token_id,
    )
    with seeded(seed):
        text_encoder = CLIPTextModelWithProjection(clip_config)
    with seeded(seed + 2):
        text_encoder_2 = CLIPTextModelWithProjection(clip_config)
    with seeded(seed):
        text_encoder_3 = T5EncoderModel(T5Config(**tiny_umt5_config(len(t5_tokenizer))))
    with seeded(seed):
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(8, 8),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.0609,
            scaling_factor=1.5035,
        )
    with seeded(seed):
        large = _sd3_transformer(2, heads=4, head_dim=8)
    with seeded(seed + 1):
        small = _sd3_transformer(1, heads=2, head_dim=8)
    pipe = StableDiffusion3Pipeline(
        transformer=large,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=clip_tokenizer,
        text_encoder_3=text_encoder_3,
        tokenizer_3=t5_tokenizer,
    )
    _save_with_t5_names(pipe, pipeline_dir, ("tokenizer_3",))
    small.save_pretrained(small_dir, safe_serialization=True)
    return TinyPair(
        pipeline_dir=pipeline_dir,
        small_dir=small_dir,
        pipeline_class="StableDiffusion3Pipeline",
        call_kwargs={"height": 32, "width": 32, "max_sequence_length": 16, "guidance_scale": 7.0},
        transformer_class="SD3Transformer2DModel",
        family="sd3",
    )


# --- Wan 2.1 VACE ---------------------------------------------------------------------------------------------------
WAN_VACE_IN_CHANNELS = 96
"""Channels of VACE's control latents: inactive + reactive video latents (2 x 16) + the mask folded 8 x 8 (64)."""

WAN_VACE_LAYERS = (0,)
"""The blocks the tiny VACE transformers add control hints to by default (one VACE block each)."""

WAN_VACE_FLOW_SHIFT = 3.0
"""Flow shift of the tiny VACE pair's UniPC scheduler (Wan 2.1's 480p value)."""


def save_tiny_wan_vace_pair(
    directory: str | Path,
    *,
    seed: int = 0,
    large_vace_layers: tuple[int, ...] = WAN_VACE_LAYERS,
    small_vace_layers: tuple[int, ...] = WAN_VACE_LAYERS,
) -> TinyPair:
    """Save a tiny Wan 2.1 WanVACEPipeline (UMT5, AutoencoderKLWan, UniPC shift 3) and a small VACE transformer.

    Large: 2 heads x 16 = width 32, ffn 64, 2 blocks; small: 2 heads x 8 = width 16, ffn 32, 1 block; both read
    96-channel control latents and add hints at the blocks of ``large_vace_layers`` / ``small_vace_layers`` (block
    0 only by default, :data:`WAN_VACE_LAYERS`; the large model has blocks 0 and 1, the small one block 0). Other
    counts per role stand for the real pair (the 14B has 8 VACE layers, the 1.3B 15): the pipeline sizes its
    ``conditioning_scale`` by the large model's and the router fits it to the small one. 48x64, 9 frames; no
    ``video`` / ``mask`` in ``call_kwargs``: the pipeline then conditions on a zero video under an all-ones mask
    (text-to-video use); pass them to ``kwargs`` for video-to-video.
    """
    from diffusers import WanVACEPipeline
    from transformers import UMT5Config, UMT5EncoderModel

    pipeline_dir, small_dir = _paths(directory)
    tokenizer = tiny_tokenizer()
    with seeded(seed):
        text_encoder = UMT5EncoderModel(UMT5Config(**tiny_umt5_config(len(tokenizer))))
    with seeded(seed):
        vae = wan_vae()
    with seeded(seed):
        large = wan_transformer(
            TINY_LARGE,
            "WanVACETransformer3DModel",
            vace_layers=list(large_vace_layers),
            vace_in_channels=WAN_VACE_IN_CHANNELS,
        )
    with seeded(seed + 1):
        small = wan_transformer(
            TINY_SMALL,
            "WanVACETransformer3DModel",
            vace_layers=list(small_vace_layers),
            vace_in_channels=WAN_VACE_IN_CHANNELS,
        )
    pipe = WanVACEPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=_unipc(WAN_VACE_FLOW_SHIFT),
        transformer=large,
    )
    save_pipeline(pipe, pipeline_dir)
    small.save_pretrained(small_dir, safe_serialization=True)
    return TinyPair(
        pipeline_dir=pipeline_dir,
        small_dir=small_dir,
        pipeline_class="WanVACEPipeline",
        call_kwargs={"height": 48, "width": 64, "num_frames": 9, "max_sequence_length": 16, "guidance_scale": 5.0},
        transformer_class="WanVACETransformer3DModel",
        family="wan_vace",
    )


# --- Cosmos Predict2 ------------------------------------------------------------------------------------------------
_ABSENT = object()


class PassThroughSafetyChecker:
    """A test-only stand-in for ``cosmos_guardrail.CosmosSafetyChecker``: passes every prompt and every frame.

    The Cosmos pipelines of diffusers 0.42.1 build ``CosmosSafetyChecker()`` when given ``safety_checker=None`` (an
    ImportError without ``cosmos_guardrail``) and refuse to run without one. They call exactly these methods:
    ``to(device)``, ``check_text_safety(prompt) -> bool`` before encoding, and ``check_video_safety(frames)`` on
    each decoded video as uint8 ``(frames, height, width, 3)``, which returns the frames to output. It is not an
    ``nn.Module``: ``save_pretrained`` writes the slot as ``[null, null]``, and ``from_pretrained`` then builds
    whatever ``CosmosSafetyChecker`` the pipeline module names (see :func:`cosmos_stand_ins`).
    """

    def to(self, *args: Any, **kwargs: Any) -> PassThroughSafetyChecker:
        return self

    def check_text_safety(self, prompt: str) -> bool:
        return True

    def check_video_safety(self, frames: Any) -> Any:
        return frames


def nearest_resize(tensor: Any, size: list[int], interpolation: str = "nearest") -> Any:
    """torch stand-in for ``torchvision.transforms.functional.resize(tensor, size, InterpolationMode.NEAREST)``.

    torchvision resizes a float32 / float64 tensor in NEAREST mode with ``torch.nn.functional.interpolate(mode=
    "nearest")`` (other dtypes are cast to float32 and back, which copies values unchanged); this calls the same.
    ``CosmosTransformer3DModel`` resizes its ``(1, 1, H, W)`` padding mask with it to the latent size.
    """
    import torch

    if interpolation != "nearest":
        raise ValueError(
            f"nearest_resize stands in for torchvision's NEAREST resize only, got interpolation={interpolation!r}; "
            "install torchvision for other modes"
        )
    return torch.nn.functional.interpolate(tensor, size=list(size), mode="nearest")


@contextlib.contextmanager
def cosmos_stand_ins() -> Iterator[None]:
    """Run the Cosmos Predict2 pipelines offline: patch in :class:`PassThroughSafetyChecker` and :func:`nearest_resize`.

    The safety checker is always replaced (the real one loads guardrail models of its own); torchvision's
    ``transforms`` in ``transformer_cosmos`` only when torchvision is not installed. For tests and benchmarks
    only: real use needs ``cosmos_guardrail`` and torchvision.
    """
    from diffusers.models.transformers import transformer_cosmos
    from diffusers.pipelines.cosmos import pipeline_cosmos2_text2image, pipeline_cosmos2_video2world

    patches: list[tuple[Any, str, Any]] = [
        (module, "CosmosSafetyChecker", PassThroughSafetyChecker)
        for module in (pipeline_cosmos2_video2world, pipeline_cosmos2_text2image)
    ]
    if importlib.util.find_spec("torchvision") is None:
        transforms = types.SimpleNamespace(
            functional=types.SimpleNamespace(resize=nearest_resize),
            InterpolationMode=types.SimpleNamespace(NEAREST="nearest"),
        )
        patches.append((transformer_cosmos, "transforms", transforms))
    saved = [(module, name, module.__dict__.get(name, _ABSENT)) for module, name, _ in patches]
    try:
        for module, name, value in patches:
            setattr(module, name, value)
        yield
    finally:
        for module, name, value in reversed(saved):
            if value is _ABSENT:
                delattr(module, name)
            else:
                setattr(module, name, value)


def _cosmos_transformer(in_channels: int, layers: int, heads: int, rope_scale: tuple[float, float, float]) -> Any:
    from diffusers import CosmosTransformer3DModel

    return CosmosTransformer3DModel(
        in_channels=in_channels,
        out_channels=16,
        num_attention_heads=heads,
        attention_head_dim=16,  # RoPE splits a head 4 (h) + 4 (w) + 8 (t); under 12 its NTK factor divides by 0
        num_layers=layers,
        mlp_ratio=2.0,
        text_embed_dim=TEXT_DIM,
        adaln_lora_dim=8,
        max_size=(4, 16, 16),
        patch_size=(1, 2, 2),
        rope_scale=rope_scale,
        concat_padding_mask=True,
        extra_pos_embed_type=None,
    )


def save_tiny_cosmos_pair(directory: str | Path, *, text_to_image: bool = False, seed: int = 0) -> TinyPair:
    """Save a tiny Cosmos2VideoToWorldPipeline (or Cosmos2TextToImagePipeline) and a small Cosmos transformer.

    T5 encoder, AutoencoderKLWan, FlowMatchEuler with Karras sigmas (the pipeline sets sigma_max 80); the safety
    checker is a :class:`PassThroughSafetyChecker` (saved as ``[null, null]``; load under :func:`cosmos_stand_ins`).
    Large: 2 heads x 16 = width 32, 2 blocks, RoPE scale (20/24, 2, 2) as the 14B Video2World; small: 1 head x 16,
    1 block, RoPE scale (1, 3, 3) as the 2B. Both pad the mask channel in (concat_padding_mask, as the real ones).
    Video2World: 17 input channels (latents + condition mask), 48x64, 9 frames, a 48x64 conditioning image;
    Text2Image: 16 channels, one 48x64 image.
    """
    from diffusers import Cosmos2TextToImagePipeline, Cosmos2VideoToWorldPipeline, FlowMatchEulerDiscreteScheduler
    from transformers import T5Config, T5EncoderModel

    pipeline_dir, small_dir = _paths(directory)
    in_channels = 16 if text_to_image else 17
    tokenizer = tiny_tokenizer()
    with seeded(seed):
        text_encoder = T5EncoderModel(T5Config(**tiny_umt5_config(len(tokenizer))))
    with seeded(seed):
        vae = wan_vae()
    with seeded(seed):
        large = _cosmos_transformer(in_channels, 2, heads=2, rope_scale=(20 / 24, 2.0, 2.0))
    with seeded(seed + 1):
        small = _cosmos_transformer(in_channels, 1, heads=1, rope_scale=(1.0, 3.0, 3.0))
    pipeline_cls = Cosmos2TextToImagePipeline if text_to_image else Cosmos2VideoToWorldPipeline
    pipe = pipeline_cls(
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=large,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(use_karras_sigmas=True),
        safety_checker=PassThroughSafetyChecker(),
    )
    save_pipeline(pipe, pipeline_dir)
    small.save_pretrained(small_dir, safe_serialization=True)
    height, width = 48, 64
    call_kwargs: dict[str, Any] = {"height": height, "width": width, "max_sequence_length": 16, "guidance_scale": 7.0}
    if not text_to_image:
        call_kwargs.update(num_frames=9, image=_tiny_image(height, width, seed))
    return TinyPair(
        pipeline_dir=pipeline_dir,
        small_dir=small_dir,
        pipeline_class=pipeline_cls.__name__,
        call_kwargs=call_kwargs,
        transformer_class="CosmosTransformer3DModel",
        family="cosmos_t2i" if text_to_image else "cosmos",
    )
