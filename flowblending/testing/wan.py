"""A tiny ``WanPipeline`` (UMT5, AutoencoderKLWan, large WanTransformer3DModel, UniPC) and a small transformer."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .pairs import TinyPair, check_layers, save_pipeline, seeded
from .schedulers import make_scheduler
from .text import TEXT_DIM, tiny_tokenizer, tiny_umt5_config


@dataclass(frozen=True)
class WanSize:
    """Size of one random-init ``WanTransformer3DModel``: blocks, heads of ``head_dim``, FFN width, embeddings."""

    layers: int
    heads: int
    head_dim: int
    ffn: int
    freq_dim: int = 32
    rope_max_seq_len: int = 32


TINY_LARGE = WanSize(layers=2, heads=2, head_dim=16, ffn=64)
TINY_SMALL = WanSize(layers=1, heads=2, head_dim=8, ffn=32)


def wan_transformer(size: WanSize, model_class: str = "WanTransformer3DModel", **config: Any) -> Any:
    """A random-init Wan-layout transformer of ``size`` that reads the tiny text encoder's embeddings.

    ``model_class``: a diffusers class with Wan's constructor (``SkyReelsV2Transformer3DModel`` too);
    ``config`` overrides or adds constructor arguments (e.g. ``in_channels=36, image_dim=...`` for I2V).
    """
    import diffusers

    arguments: dict[str, Any] = {
        "patch_size": (1, 2, 2),
        "num_attention_heads": size.heads,
        "attention_head_dim": size.head_dim,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": TEXT_DIM,
        "freq_dim": size.freq_dim,
        "ffn_dim": size.ffn,
        "num_layers": size.layers,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "rope_max_seq_len": size.rope_max_seq_len,
    }
    return getattr(diffusers, model_class)(**{**arguments, **config})


def wan_vae() -> Any:
    """The tiny ``AutoencoderKLWan`` of the Wan pairs: 16 latent channels, 8x spatial and 4x temporal compression."""
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )


def save_wan_pair(
    directory: str | Path,
    *,
    large: WanSize,
    small: WanSize,
    seed: int = 0,
    height: int = 48,
    width: int = 64,
    frames: int = 9,
    boundary_ratio: float | None = None,
) -> TinyPair:
    """Save a ``WanPipeline`` (tiny UMT5 and VAE, a ``large`` transformer) and a ``small`` transformer.

    Layout: ``directory/pipeline`` (``WanPipeline.save_pretrained``) and ``directory/small_transformer``; the
    text encoder, the VAE and the large transformer are seeded with ``seed``, the small one with ``seed + 1``.
    ``boundary_ratio``: make the large model two experts as in Wan 2.2 A14B: a ``transformer_2`` of the same
    size (seed ``seed + 2``) that the pipeline runs for timesteps below ``boundary_ratio * 1000``.
    """
    check_layers("large.layers", large.layers)
    check_layers("small.layers", small.layers)
    from diffusers import WanPipeline
    from transformers import UMT5Config, UMT5EncoderModel

    root = Path(directory)
    pipeline_dir, small_dir = root / "pipeline", root / "small_transformer"

    tokenizer = tiny_tokenizer()
    with seeded(seed):
        text_encoder = UMT5EncoderModel(UMT5Config(**tiny_umt5_config(len(tokenizer))))
    with seeded(seed):
        vae = wan_vae()
    with seeded(seed):
        large_model = wan_transformer(large)
    with seeded(seed + 1):
        small_model = wan_transformer(small)
    experts: dict[str, Any] = {}
    if boundary_ratio is not None:
        with seeded(seed + 2):
            experts = {"transformer_2": wan_transformer(large), "boundary_ratio": boundary_ratio}
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=large_model,
        scheduler=make_scheduler("unipc", "wan"),
        **experts,
    )
    save_pipeline(pipe, pipeline_dir)
    small_model.save_pretrained(small_dir, safe_serialization=True)
    return TinyPair(
        pipeline_dir=pipeline_dir,
        small_dir=small_dir,
        pipeline_class="WanPipeline",
        call_kwargs={
            "height": height,
            "width": width,
            "num_frames": frames,
            "max_sequence_length": 16,
            "guidance_scale": 5.0,
        },
        transformer_class="WanTransformer3DModel",
        family="wan",
    )


def save_tiny_wan_pair(
    directory: str | Path, *, seed: int = 0, large_layers: int = 2, small_layers: int = 1
) -> TinyPair:
    """Save a tiny WanPipeline (large transformer inside) and a small Wan transformer under ``directory``.

    Large: 2 heads x 16 = width 32, ffn 64, ``large_layers`` blocks; small: 2 heads x 8 = width 16, ffn 32,
    ``small_layers`` blocks; 48x64, 9 frames (:func:`save_wan_pair`).
    """
    check_layers("large_layers", large_layers)
    check_layers("small_layers", small_layers)
    return save_wan_pair(
        directory,
        large=replace(TINY_LARGE, layers=large_layers),
        small=replace(TINY_SMALL, layers=small_layers),
        seed=seed,
    )
