"""A tiny ``WanPipeline`` (UMT5, AutoencoderKLWan, large WanTransformer3DModel, UniPC) and a small transformer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .pairs import TinyPair, check_layers, save_pipeline, seeded
from .schedulers import make_scheduler
from .text import TEXT_DIM, tiny_tokenizer, tiny_umt5_config


def _wan_transformer(num_layers: int, heads: int, head_dim: int, ffn_dim: int) -> Any:
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=16,
        out_channels=16,
        text_dim=TEXT_DIM,
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
    check_layers("large_layers", large_layers)
    check_layers("small_layers", small_layers)
    from diffusers import AutoencoderKLWan, WanPipeline
    from transformers import UMT5Config, UMT5EncoderModel

    root = Path(directory)
    pipeline_dir, small_dir = root / "pipeline", root / "small_transformer"

    tokenizer = tiny_tokenizer()
    with seeded(seed):
        text_encoder = UMT5EncoderModel(UMT5Config(**tiny_umt5_config(len(tokenizer))))
    with seeded(seed):
        vae = AutoencoderKLWan(
            base_dim=3,
            z_dim=16,
            dim_mult=[1, 1, 1, 1],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
        )
    with seeded(seed):
        large = _wan_transformer(large_layers, heads=2, head_dim=16, ffn_dim=64)
    with seeded(seed + 1):
        small = _wan_transformer(small_layers, heads=2, head_dim=8, ffn_dim=32)
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=large,
        scheduler=make_scheduler("unipc", "wan"),
    )
    save_pipeline(pipe, pipeline_dir)
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
