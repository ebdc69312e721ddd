"""A tiny ``LTXPipeline``, ``LTXImageToVideoPipeline`` or ``LTXConditionPipeline`` (T5, AutoencoderKLLTXVideo,
FlowMatchEuler) + a small DiT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .pairs import TinyPair, check_layers, save_pipeline, seeded
from .schedulers import make_scheduler
from .text import TEXT_DIM, tiny_tokenizer, tiny_umt5_config

LTX_CONDITION_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": False,
    "shift_terminal": None,
}
"""FlowMatchEuler settings of the LTX-Video 0.9.5 / 0.9.7 scheduler config (LTXConditionPipeline's repositories).

LTXConditionPipeline passes its linear-quadratic schedule as ``timesteps=`` and no ``mu``, so the scheduler must
not shift dynamically; with ``shift`` 1 it keeps those noise levels unchanged."""


def _ltx_transformer(num_layers: int, heads: int, head_dim: int) -> Any:
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
        caption_channels=TEXT_DIM,
    )


def _tiny_image(height: int, width: int, seed: int) -> Any:
    """A deterministic RGB PIL image: smooth gradients plus seeded noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    base = np.stack([xx, yy, 1 - (xx + yy) / 2], axis=-1)
    pixels = np.clip(base * 200 + rng.integers(0, 56, size=(height, width, 3)), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8), mode="RGB")


def save_tiny_ltx_pair(
    directory: str | Path,
    *,
    image_to_video: bool = False,
    condition: bool = False,
    seed: int = 0,
    large_layers: int = 2,
    small_layers: int = 1,
) -> TinyPair:
    """Save a tiny LTXPipeline / LTXImageToVideoPipeline / LTXConditionPipeline and a small LTX transformer.

    ``condition=False``: ``LTXImageToVideoPipeline`` if ``image_to_video`` else ``LTXPipeline``, with the
    dynamically shifted FlowMatchEuler of Lightricks/LTX-Video. ``condition=True``: ``LTXConditionPipeline`` with
    :data:`LTX_CONDITION_SCHEDULER_CONFIG`; ``image_to_video`` then adds a first frame to ``call_kwargs["image"]``,
    which the condition pipeline takes as ``image=`` (a condition at frame 0, strength 1).

    Large: 4 heads x 8 = width 32, ``large_layers`` blocks, seed ``seed``.
    Small: 2 heads x 8 = width 16, ``small_layers`` blocks, seed ``seed + 1``.
    Layout: ``directory/pipeline`` and ``directory/small_transformer``.
    """
    check_layers("large_layers", large_layers)
    check_layers("small_layers", small_layers)
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXConditionPipeline,
        LTXImageToVideoPipeline,
        LTXPipeline,
    )
    from transformers import T5Config, T5EncoderModel

    root = Path(directory)
    pipeline_dir, small_dir = root / "pipeline", root / "small_transformer"

    tokenizer = tiny_tokenizer(model_max_length=128)
    with seeded(seed):
        text_encoder = T5EncoderModel(T5Config(**tiny_umt5_config(len(tokenizer))))
    with seeded(seed):
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
    with seeded(seed):
        large = _ltx_transformer(large_layers, heads=4, head_dim=8)
    with seeded(seed + 1):
        small = _ltx_transformer(small_layers, heads=2, head_dim=8)
    if condition:
        pipeline_cls: type = LTXConditionPipeline
        scheduler = FlowMatchEulerDiscreteScheduler(**LTX_CONDITION_SCHEDULER_CONFIG)
    else:
        pipeline_cls = LTXImageToVideoPipeline if image_to_video else LTXPipeline
        scheduler = make_scheduler("flowmatch_euler", "ltx")
    pipe = pipeline_cls(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=large,
    )
    save_pipeline(pipe, pipeline_dir)
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


#: diffusers names -> LTX-Video's original names, the inverse of diffusers' single-file conversion for LTX
#: (``convert_ltx_transformer_checkpoint_to_diffusers``), whose keys also carry ``model.diffusion_model.``.
_ORIGINAL_LTX_NAMES = {"proj_in": "patchify_proj", "time_embed": "adaln_single", "norm_q": "q_norm", "norm_k": "k_norm"}


def save_tiny_ltx_single_file(
    directory: str | Path, *, seed: int = 2, layers: int = 1, name: str = "tiny-ltxv-distilled.safetensors"
) -> tuple[Path, Path]:
    """Save a tiny LTX transformer as one checkpoint file in LTX-Video's original layout, and its diffusers config.

    The file holds the transformer under ``model.diffusion_model.`` with LTX-Video's names (``patchify_proj``,
    ``adaln_single``, ``q_norm``, ``k_norm``) and one ``vae.`` tensor, as Lightricks' single files carry the VAE
    too; diffusers' ``LTXVideoTransformer3DModel.from_single_file`` converts it back and drops the VAE part.
    2 heads x 8 = width 16 (the small model's shape), ``layers`` blocks, seed ``seed``.
    Layout: ``directory/<name>`` and ``directory/config/config.json``; returns (file, config folder).
    """
    import torch
    from safetensors.torch import save_file

    check_layers("layers", layers)
    root = Path(directory)
    config_dir = root / "config"
    with seeded(seed):
        model = _ltx_transformer(layers, heads=2, head_dim=8)
    model.save_config(config_dir)
    tensors = {}
    for key, value in model.state_dict().items():
        for diffusers_name, original in _ORIGINAL_LTX_NAMES.items():
            key = key.replace(diffusers_name, original)
        tensors[f"model.diffusion_model.{key}"] = value.detach().contiguous()
    tensors["vae.decoder.last_scale_shift_table"] = torch.zeros(2, 8)
    path = root / name
    save_file(tensors, str(path))
    return path, config_dir


def paper_ldl() -> tuple[Any, ...]:
    """The paper's LDL on 40 base steps (section 6(b), Table 3): large [0, 0.375), the distilled model for 4 steps
    of its own over [0.375, 0.875) at guidance 1, large [0.875, 1): 15 + 4 + 5 = 24 steps."""
    from ..schedule import Segment

    return (
        Segment("large", 0.0, 0.375),
        Segment("distilled", 0.375, 0.875, guidance_scale=1.0, steps=4),
        Segment("large", 0.875, 1.0),
    )


def cond_half(batch: int, value: Any) -> Any:
    """The cond half of ``value`` when it is batched like the ``batch`` rows of an LTX [uncond, cond] call, else
    ``value`` unchanged: what a role at guidance 1 computes (the router runs it on the cond half only)."""
    import torch

    if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == batch:
        return value[batch // 2 :]
    return value


def save_tiny_ldl_profile(
    pair: TinyPair,
    distilled: tuple[Path, Path],
    path: str | Path,
    *,
    schedule: tuple[Any, ...] | None = None,
    steps: int = 40,
    name: str = "tiny-ldl",
) -> Path:
    """A format version 2 profile for a tiny ``LTXConditionPipeline`` pair with a third ``distilled`` role.

    ``distilled``: the (file, config folder) of :func:`save_tiny_ltx_single_file`, loaded with ``from_single_file``.
    ``schedule``: default :func:`paper_ldl`. FLOPs per step are measured on the meta device: the large role on the
    step's batched [uncond, cond] call, the distilled role on its cond half (it runs at guidance 1).
    """
    from diffusers import DiffusionPipeline, LTXVideoTransformer3DModel

    from ..compose import make_profile
    from ..cost import capture_step_calls, step_flops
    from ..profile import ModelSpec, SchedulerSpec, Setting, save_profile

    file, config = distilled
    pipe = DiffusionPipeline.from_pretrained(pair.pipeline_dir)
    model = LTXVideoTransformer3DModel.from_single_file(str(file), config=str(config), local_files_only=True)
    calls = capture_step_calls(pipe, prompt="a red circle moving left", **pair.call_kwargs)
    halves = [(a, {k: cond_half(kw["hidden_states"].shape[0], v) for k, v in kw.items()}) for a, kw in calls]
    scheduler_config = {k: v for k, v in pipe.scheduler.config.items() if not k.startswith("_")}
    kw = pair.call_kwargs
    profile = make_profile(
        name=name,
        pipeline_class=pair.pipeline_class,
        image_to_video="image" in kw,
        models={
            "large": ModelSpec(str(pair.pipeline_dir), None, "transformer", pair.transformer_class),
            "distilled": ModelSpec(
                str(file.parent), None, None, pair.transformer_class, file=file.name, config=str(config)
            ),
        },
        setting=Setting(
            num_inference_steps=steps,
            scheduler=SchedulerSpec(type(pipe.scheduler).__name__, scheduler_config.get("shift"), scheduler_config),
            guidance_scale=kw["guidance_scale"],
            height=kw["height"],
            width=kw["width"],
            num_frames=kw["num_frames"],
            max_sequence_length=kw["max_sequence_length"],
        ),
        schedule=schedule or paper_ldl(),
        flops_per_step={"large": step_flops(pipe.transformer, calls), "distilled": step_flops(model, halves)},
        cost_source="flowblending.cost.step_flops on the meta device; distilled on the cond half (guidance 1)",
    )
    return save_profile(profile, path)
