"""Check and measure the demo pair: loading, generation time and semantic accuracy.

Semantic accuracy (issue 4): the fraction of generated videos whose colour and shape (by the demo
feature model's 12-way classifier, logits averaged over the 9 frames) and motion direction (by the
shape's centroid track, :func:`calibrate.demo.data.centroid_direction`) all match the prompt.

``python -m calibrate.demo.evaluate --weights calibrate/demo/weights`` loads the shipped pipeline offline
through ``WanPipeline.from_pretrained``, generates every prompt ``--samples-per-prompt`` times with the
large and with the small transformer for each guidance scale, and writes the numbers (and the
recommended guidance scale) into ``training.json`` under ``"evaluation"``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from .data import FRAMES, PROMPTS, SIZE, centroid_direction, parse_prompt, sample_clips

__all__ = [
    "DEFAULT_GUIDANCE_SCALES",
    "classify_frames",
    "generate",
    "load_demo_pipeline",
    "load_feature_classifier",
    "main",
    "run_evaluation",
    "seconds_per_video",
    "semantic_accuracy",
    "video_semantics",
]

DEFAULT_GUIDANCE_SCALES: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 6.0)
"""Guidance scales tried by :func:`run_evaluation` (1.0 disables classifier-free guidance)."""

NUM_INFERENCE_STEPS = 20
MAX_SEQUENCE_LENGTH = 16
EVAL_SEED = 1234


def load_feature_classifier(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """The demo feature model as ``(AutoModelForImageClassification, AutoImageProcessor)``, loaded offline."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(path, local_files_only=True).eval()
    processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    return model, processor


@torch.no_grad()
def classify_frames(model: Any, processor: Any, frames: Tensor, batch_size: int = 256) -> Tensor:
    """Class logits ``(N, 12)`` of frames ``(N, 3, H, W)`` in [0, 1], through the saved image processor.

    Frames are rounded to uint8 first, so they take the path of an image read from a file (as
    ``calibrate.features`` does).
    """
    quantised = (frames.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    logits = []
    for start in range(0, quantised.shape[0], batch_size):
        chunk = list(quantised[start : start + batch_size])
        pixels = processor(images=chunk, return_tensors="pt")["pixel_values"]
        logits.append(model(pixel_values=pixels).logits.float())
    return torch.cat(logits)


def video_semantics(videos: Tensor, model: Any, processor: Any) -> list[tuple[str, str, str]]:
    """``(colour, shape, direction)`` of each video ``(B, F, 3, H, W)`` in [0, 1] (``output_type="pt"``)."""
    if videos.ndim != 5 or videos.shape[2] != 3:
        raise ValueError(
            f"`videos` must be (B, F, 3, H, W) with values in [0, 1] (WanPipeline output_type='pt'), "
            f"got shape {tuple(videos.shape)}."
        )
    b, f = videos.shape[:2]
    logits = classify_frames(model, processor, videos.reshape(b * f, *videos.shape[2:]))
    labels = logits.view(b, f, -1).mean(dim=1).argmax(dim=1).tolist()
    names = [model.config.id2label[int(i)] for i in labels]
    out = []
    for i, name in enumerate(names):
        colour, shape = name.split(" ")
        out.append((colour, shape, centroid_direction(videos[i], layout="FCHW")))
    return out


def semantic_accuracy(videos: Tensor, prompts: Sequence[str], model: Any, processor: Any) -> dict[str, float]:
    """Fractions of videos whose colour, shape, direction, colour+shape and all three match their prompts."""
    if len(prompts) != videos.shape[0]:
        raise ValueError(f"got {videos.shape[0]} videos but {len(prompts)} prompts; pass one prompt per video.")
    predicted = video_semantics(videos, model, processor)
    truth = [parse_prompt(p) for p in prompts]
    n = len(truth)
    colour = sum(p[0] == t[0] for p, t in zip(predicted, truth, strict=True)) / n
    shape = sum(p[1] == t[1] for p, t in zip(predicted, truth, strict=True)) / n
    direction = sum(p[2] == t[2] for p, t in zip(predicted, truth, strict=True)) / n
    appearance = sum(p[:2] == t[:2] for p, t in zip(predicted, truth, strict=True)) / n
    everything = sum(p == t for p, t in zip(predicted, truth, strict=True)) / n
    return {
        "all": round(everything, 4),
        "colour": round(colour, 4),
        "shape": round(shape, 4),
        "direction": round(direction, 4),
        "colour_and_shape": round(appearance, 4),
        "videos": n,
    }


def load_demo_pipeline(weights: str | os.PathLike[str], transformer: Literal["large", "small"] = "large") -> Any:
    """``WanPipeline.from_pretrained(<weights>/pipeline)`` offline; ``"small"`` swaps the small model in."""
    from diffusers import WanPipeline, WanTransformer3DModel

    weights = Path(weights)
    pipe = WanPipeline.from_pretrained(weights / "pipeline", local_files_only=True)
    if transformer == "small":
        pipe.transformer = WanTransformer3DModel.from_pretrained(weights / "small_transformer", local_files_only=True)
    elif transformer != "large":
        raise ValueError(f"`transformer` must be 'large' or 'small', got {transformer!r}.")
    pipe.transformer.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def generate(
    pipe: Any,
    prompts: Sequence[str],
    seed: int,
    guidance_scale: float,
    num_inference_steps: int = NUM_INFERENCE_STEPS,
    max_sequence_length: int = MAX_SEQUENCE_LENGTH,
    batch_size: int = 48,
) -> Tensor:
    """Videos ``(len(prompts), 9, 3, 32, 32)`` in [0, 1]; batch ``k`` uses generator seed ``seed + k``."""
    videos = []
    for k, start in enumerate(range(0, len(prompts), batch_size)):
        out = pipe(
            prompt=list(prompts[start : start + batch_size]),
            height=SIZE,
            width=SIZE,
            num_frames=FRAMES,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            max_sequence_length=max_sequence_length,
            generator=torch.Generator().manual_seed(seed + k),
            output_type="pt",
        )
        videos.append(out.frames.float())
    return torch.cat(videos)


def seconds_per_video(pipe: Any, guidance_scale: float, repeats: int = 5) -> float:
    """Median wall time of one 20-step 9x32x32 video (batch 1) after a warm-up call."""
    prompt = [PROMPTS[0]]
    generate(pipe, prompt, 0, guidance_scale)
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        generate(pipe, prompt, r, guidance_scale)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _real_accuracy(model: Any, processor: Any, clips: int, seed: int) -> dict[str, float]:
    videos, prompts = sample_clips(clips, seed)
    return semantic_accuracy(videos.permute(0, 2, 1, 3, 4), prompts, model, processor)


def run_evaluation(
    weights: str | os.PathLike[str],
    guidance_scales: Sequence[float] = DEFAULT_GUIDANCE_SCALES,
    samples_per_prompt: int = 2,
    seed: int = EVAL_SEED,
) -> dict[str, Any]:
    """Measure semantic accuracy of large-only and small-only per guidance scale; update ``training.json``."""
    from diffusers import WanTransformer3DModel

    weights = Path(weights)
    record_path = weights / "training.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    t_start = time.perf_counter()
    model, processor = load_feature_classifier(weights / "feature_model")
    pipe = load_demo_pipeline(weights, "large")
    large = pipe.transformer
    small = WanTransformer3DModel.from_pretrained(weights / "small_transformer", local_files_only=True).eval()
    prompts = [p for _ in range(samples_per_prompt) for p in PROMPTS]
    accuracy: dict[str, dict[str, dict[str, float]]] = {"large": {}, "small": {}}
    for g in guidance_scales:
        for name, transformer in (("large", large), ("small", small)):
            pipe.transformer = transformer
            videos = generate(pipe, prompts, seed, g)
            accuracy[name][f"{g:g}"] = semantic_accuracy(videos, prompts, model, processor)
            print(f"guidance {g:g} {name:5s}: {accuracy[name][f'{g:g}']}", flush=True)
    best = max(guidance_scales, key=lambda g: (accuracy["large"][f"{g:g}"]["all"], -g))
    timing = {}
    for name, transformer in (("large", large), ("small", small)):
        pipe.transformer = transformer
        timing[name] = round(seconds_per_video(pipe, best), 3)
    pipe.transformer = large
    evaluation = {
        "prompts": len(PROMPTS),
        "samples_per_prompt": samples_per_prompt,
        "videos_per_setting": len(prompts),
        "seed": seed,
        "num_inference_steps": NUM_INFERENCE_STEPS,
        "max_sequence_length": MAX_SEQUENCE_LENGTH,
        "flow_shift": float(pipe.scheduler.config.flow_shift),
        "scheduler": type(pipe.scheduler).__name__,
        "semantic_accuracy": accuracy,
        "recommended_guidance_scale": best,
        "seconds_per_video_batch1": timing,
        "real_clip_accuracy": _real_accuracy(model, processor, 192, seed + 7),
        "metric": "all = colour and shape (feature-model classifier, frame-averaged logits) and direction "
        "(centroid track) match the prompt",
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    record["evaluation"] = evaluation
    settings = record.setdefault("generation_settings", {})
    settings.update(
        {
            "num_inference_steps": NUM_INFERENCE_STEPS,
            "guidance_scale": best,
            "max_sequence_length": MAX_SEQUENCE_LENGTH,
            "flow_shift": evaluation["flow_shift"],
        }
    )
    tmp = record_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(record_path)
    print(
        f"recommended guidance {best:g}: large {accuracy['large'][f'{best:g}']['all']:.3f}, "
        f"small {accuracy['small'][f'{best:g}']['all']:.3f}; seconds/video large {timing['large']}, "
        f"small {timing['small']}",
        flush=True,
    )
    return record


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m calibrate.demo.evaluate",
        description="Evaluate the demo pair and update training.json.",
    )
    parser.add_argument("--weights", type=Path, required=True, help="weights directory (calibrate/demo/weights)")
    parser.add_argument("--samples-per-prompt", type=int, default=2, help="videos per prompt and setting")
    parser.add_argument(
        "--guidance",
        type=float,
        nargs="+",
        default=list(DEFAULT_GUIDANCE_SCALES),
        help="guidance scales to try",
    )
    parser.add_argument("--seed", type=int, default=EVAL_SEED, help="generation seed")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_flush_denormal(True)
    run_evaluation(args.weights, args.guidance, args.samples_per_prompt, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
