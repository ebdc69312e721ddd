"""Model pairs the benchmarks time: a compute-bound Wan pair built from configs, saved, and loaded back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class WanSize:
    """Size of one random-init Wan transformer: blocks, attention heads (of ``head_dim``) and FFN width."""

    layers: int
    heads: int
    ffn: int
    head_dim: int = 64


# About 20.2M and 1.2M parameters: at 128x128x9 one large step (two CFG calls) is compute-bound on a CPU.
LARGE = WanSize(layers=8, heads=6, ffn=1536)
SMALL = WanSize(layers=4, heads=2, ffn=512)


def wan_transformer(size: WanSize) -> Any:
    """A random-init ``WanTransformer3DModel`` of ``size`` that reads the tiny text encoder's embeddings."""
    from diffusers import WanTransformer3DModel

    from flowblending.testing import TEXT_DIM

    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=size.heads,
        attention_head_dim=size.head_dim,
        in_channels=16,
        out_channels=16,
        text_dim=TEXT_DIM,
        freq_dim=256,
        ffn_dim=size.ffn,
        num_layers=size.layers,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=1024,
    )


def save_wan_pair(
    directory: str | Path,
    *,
    large: WanSize = LARGE,
    small: WanSize = SMALL,
    height: int = 128,
    width: int = 128,
    frames: int = 9,
    seed: int = 0,
) -> Any:
    """Save a ``WanPipeline`` (tiny UMT5 and VAE, transformer of size ``large``) and a ``small`` transformer.

    Layout as :func:`flowblending.testing.save_tiny_wan_pair`: ``directory/pipeline`` and
    ``directory/small_transformer``; returns the :class:`flowblending.testing.TinyPair` describing them.
    """
    from diffusers import AutoencoderKLWan, WanPipeline
    from transformers import UMT5Config, UMT5EncoderModel

    from flowblending.testing import TinyPair, make_scheduler, tiny_tokenizer, tiny_umt5_config
    from flowblending.testing.pairs import save_pipeline, seeded

    root = Path(directory)
    pipeline_dir, small_dir = root / "pipeline", root / "small_transformer"
    tokenizer = tiny_tokenizer()
    with seeded(seed):
        text_encoder = UMT5EncoderModel(UMT5Config(**tiny_umt5_config(len(tokenizer))))
        vae = AutoencoderKLWan(
            base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
        )
        large_model = wan_transformer(large)
    with seeded(seed + 1):
        small_model = wan_transformer(small)
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=large_model,
        scheduler=make_scheduler("unipc", "wan"),
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


def parameters(model: Any) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in model.parameters())
