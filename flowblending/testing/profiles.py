"""A valid FlowBlending profile for a tiny pair, with FLOPs and sigmas measured from the pair itself."""

from __future__ import annotations

from pathlib import Path

from .pairs import TinyPair


def save_tiny_profile(
    pair: TinyPair,
    path: str | Path,
    *,
    pattern: str = "LSL",
    boundaries: tuple[float, ...] | None = (0.4, 0.8),
    steps: int = 10,
    name: str | None = None,
) -> Path:
    """Write a valid profile for a tiny pair (local paths as model ids, measured FLOPs and sigmas); return its path."""
    import torch
    from diffusers import DiffusionPipeline

    from ..compose import make_profile
    from ..cost import capture_step_calls, step_flops
    from ..profile import ModelSpec, SchedulerSpec, Setting, save_profile
    from ..schedule import segments_from_pattern

    pipe = DiffusionPipeline.from_pretrained(pair.pipeline_dir)
    small_cls = type(pipe.transformer)
    small = small_cls.from_pretrained(pair.small_dir)
    prompt = {"prompt": "a red circle moving left"}
    if "image" in pair.call_kwargs:
        prompt["image"] = pair.call_kwargs["image"]
    extra = {k: v for k, v in pair.call_kwargs.items() if k != "image"}
    calls = capture_step_calls(pipe, **prompt, **extra)
    flops = {"large": step_flops(pipe.transformer, calls), "small": step_flops(small, calls)}

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
