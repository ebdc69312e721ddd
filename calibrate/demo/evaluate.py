"""Check and measure the demo pair: loading, generation time, semantic accuracy and detail, judged from pixels.

Semantic accuracy is measured by the demo's judge (:mod:`calibrate.demo.judge`), never by the calibrator's
feature model: colour from pixel statistics, motion direction from the centroid track, shape by a small
classifier trained on real clips; a video is "all correct" when all three match its prompt. Detail is
:func:`calibrate.demo.data.detail_score` (stripe energy relative to real clips; 1.0 = as sharp, noise does not count).

``python -m calibrate.demo.evaluate --weights calibrate/demo/weights`` loads the shipped pipeline offline
through ``WanPipeline.from_pretrained``, generates every prompt ``--samples-per-prompt`` times on held-out
seeds with the large and the small transformer for each guidance scale, then LLL, LSL, LSS, SLL and SSS at
the paper's 40% / 80% boundaries (small model for steps with 0.4 <= i/N < 0.8 in LSL) at the best
guidance, and writes the numbers into ``training.json`` under ``"evaluation"``.
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

from .data import FRAMES, PROMPTS, SIZE, sample_clips

__all__ = [
    "DEFAULT_GUIDANCE_SCALES",
    "FLOW_SHIFT",
    "MAX_SEQUENCE_LENGTH",
    "NUM_INFERENCE_STEPS",
    "build_scheduler",
    "generate",
    "load_demo_pipeline",
    "load_feature_model",
    "main",
    "paper_schedules",
    "run_evaluation",
    "seconds_per_batch",
    "semantic_accuracy",
]

DEFAULT_GUIDANCE_SCALES: tuple[float, ...] = (1.0, 2.0, 4.0, 6.0)
"""Guidance scales tried by :func:`run_evaluation` (1.0 disables classifier-free guidance)."""

NUM_INFERENCE_STEPS = 20
"""UniPC steps of the shipped generation settings."""

MAX_SEQUENCE_LENGTH = 16
"""Prompt length the transformers are trained with; pass ``max_sequence_length=16`` to ``WanPipeline``."""

FLOW_SHIFT = 1.0
"""Flow shift of training (uniform sigma) and of the shipped UniPC scheduler."""

EVAL_SEED = 1234
"""Generation seed of the evaluation (held out: training never generates)."""


def build_scheduler() -> Any:
    """The shipped sampler: UniPC with flow sigmas, flow prediction and flow shift 1."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        num_train_timesteps=1000,
        flow_shift=FLOW_SHIFT,
    )


def load_feature_model(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """The calibrator's demo feature model as ``(AutoModel, AutoImageProcessor)``, loaded offline.

    A ``Dinov2Model`` backbone (no classification head): it is the calibrator's instrument, not the judge.
    """
    from transformers import AutoImageProcessor, AutoModel

    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    return model, processor


def semantic_accuracy(videos: Tensor, prompts: Sequence[str], judge: Any = None) -> dict[str, Any]:
    """The judge's verdict on videos ``(B, F, 3, H, W)`` in [0, 1]: accuracies per attribute, all, detail, size.

    ``judge`` is a :class:`calibrate.demo.judge.ShapeClassifier` (default: the shipped one). See
    :func:`calibrate.demo.judge.judge_videos`.
    """
    from .judge import judge_videos

    if videos.ndim != 5 or videos.shape[2] != 3:
        raise ValueError(
            f"`videos` must be (B, F, 3, H, W) with values in [0, 1] (WanPipeline output_type='pt'), "
            f"got shape {tuple(videos.shape)}."
        )
    return judge_videos(videos, prompts, judge, layout="FCHW")


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
    schedule: Sequence[Any] | None = None,
) -> Tensor:
    """Videos ``(len(prompts), 9, 3, 32, 32)`` in [0, 1]; batch ``k`` uses generator seed ``seed + k``.

    ``schedule`` (optional) gives the transformer for each of the ``num_inference_steps`` steps; the
    pipeline's transformer is switched in a step-end callback and restored afterwards.
    """
    if schedule is not None and len(schedule) != num_inference_steps:
        raise ValueError(f"`schedule` must name one transformer per step ({num_inference_steps}), got {len(schedule)}.")
    original = pipe.transformer
    videos = []
    try:
        for k, start in enumerate(range(0, len(prompts), batch_size)):
            videos.append(
                _generate_batch(
                    pipe,
                    prompts[start : start + batch_size],
                    seed + k,
                    guidance_scale,
                    num_inference_steps,
                    max_sequence_length,
                    schedule,
                )
            )
    finally:
        pipe.transformer = original
    return torch.cat(videos)


def _generate_batch(
    pipe: Any,
    prompts: Sequence[str],
    seed: int,
    guidance_scale: float,
    num_inference_steps: int,
    max_sequence_length: int,
    schedule: Sequence[Any] | None,
) -> Tensor:
    callback = None
    if schedule is not None:
        pipe.transformer = schedule[0]

        def callback(pipeline: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if step + 1 < len(schedule):
                pipeline.transformer = schedule[step + 1]
            return {}

    out = pipe(
        prompt=list(prompts),
        height=SIZE,
        width=SIZE,
        num_frames=FRAMES,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        max_sequence_length=max_sequence_length,
        generator=torch.Generator().manual_seed(seed),
        output_type="pt",
        callback_on_step_end=callback,
    )
    return out.frames.float()


SCHEDULE_NAMES: tuple[str, ...] = ("L-L-L", "L-S-L", "L-S-S", "S-L-L", "S-S-S")
"""The stage patterns :func:`paper_schedules` builds (L-L-L = large-only, S-S-S = small-only)."""


def paper_schedules(
    large: Any, small: Any, steps: int = NUM_INFERENCE_STEPS, boundaries: tuple[float, float] = (0.4, 0.8)
) -> dict[str, list[Any]]:
    """Per-step transformers of L-L-L, L-S-L, L-S-S, S-L-L, S-S-S at the paper's WAN 2.1 fractions.

    Step ``i`` belongs to the first stage if ``i / steps < boundaries[0]``, to the middle one if
    ``< boundaries[1]``, else to the last: at 20 steps, steps 0-7, 8-15 and 16-19.
    """
    role = {"L": large, "S": small}
    out = {}
    for name in SCHEDULE_NAMES:
        first, middle, last = name.split("-")
        out[name] = [
            role[first if i / steps < boundaries[0] else middle if i / steps < boundaries[1] else last]
            for i in range(steps)
        ]
    return out


def seconds_per_batch(pipe: Any, prompts: Sequence[str], guidance_scale: float, repeats: int = 3) -> float:
    """Median wall time of generating one batch of ``prompts`` (20 steps, 9x32x32) after a warm-up call."""
    generate(pipe, prompts, 0, guidance_scale, batch_size=len(prompts))
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        generate(pipe, prompts, r, guidance_scale, batch_size=len(prompts))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_evaluation(
    weights: str | os.PathLike[str],
    guidance_scales: Sequence[float] = DEFAULT_GUIDANCE_SCALES,
    samples_per_prompt: int = 2,
    seed: int = EVAL_SEED,
) -> dict[str, Any]:
    """Judge large-only and small-only per guidance scale, then the five stage patterns; update training.json."""
    from diffusers import WanTransformer3DModel

    from .judge import judge_videos, load_shape_classifier

    weights = Path(weights)
    record_path = weights / "training.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    t_start = time.perf_counter()
    judge = load_shape_classifier(weights / "judge")
    pipe = load_demo_pipeline(weights, "large")
    large = pipe.transformer
    small = WanTransformer3DModel.from_pretrained(weights / "small_transformer", local_files_only=True).eval()
    prompts = [p for _ in range(samples_per_prompt) for p in PROMPTS]
    accuracy: dict[str, dict[str, dict[str, Any]]] = {"large": {}, "small": {}}
    for g in guidance_scales:
        for name, transformer in (("large", large), ("small", small)):
            pipe.transformer = transformer
            videos = generate(pipe, prompts, seed, g)
            accuracy[name][f"{g:g}"] = judge_videos(videos, prompts, judge)
            print(f"guidance {g:g} {name:5s}: {accuracy[name][f'{g:g}']}", flush=True)
    pipe.transformer = large
    best = max(guidance_scales, key=lambda g: (accuracy["large"][f"{g:g}"]["all"], -g))
    patterns: dict[str, dict[str, Any]] = {}
    for name, schedule in paper_schedules(large, small).items():
        if name == "L-L-L":
            patterns[name] = accuracy["large"][f"{best:g}"]
        elif name == "S-S-S":
            patterns[name] = accuracy["small"][f"{best:g}"]
        else:
            videos = generate(pipe, prompts, seed, best, schedule=schedule)
            patterns[name] = judge_videos(videos, prompts, judge)
        print(f"guidance {best:g} {name}: {patterns[name]}", flush=True)
    timing = {}
    batch = list(PROMPTS[:16])
    for name, transformer in (("large", large), ("small", small)):
        pipe.transformer = transformer
        timing[name] = round(seconds_per_batch(pipe, batch, best), 3)
    pipe.transformer = large
    real, real_prompts = sample_clips(len(prompts), seed + 7)
    with torch.no_grad():
        vae = pipe.vae
        recon = ((vae.decode(vae.encode(2 * real - 1).latent_dist.mean).sample + 1) / 2).clamp(0, 1)
    evaluation = {
        "prompts": len(PROMPTS),
        "samples_per_prompt": samples_per_prompt,
        "videos_per_setting": len(prompts),
        "seed": seed,
        "seed_note": "generation seeds (generator seed + batch index) are held out: training never generates",
        "num_inference_steps": NUM_INFERENCE_STEPS,
        "max_sequence_length": MAX_SEQUENCE_LENGTH,
        "flow_shift": float(pipe.scheduler.config.flow_shift),
        "scheduler": type(pipe.scheduler).__name__,
        "semantic_accuracy": accuracy,
        "recommended_guidance_scale": best,
        "patterns": patterns,
        "patterns_note": "at the recommended guidance; L-S-L = small for steps with 0.4 <= i/N < 0.8, L-S-S = small "
        "from 0.4, S-L-L = large from 0.4 (the paper's WAN 2.1 fractions, not a calibrated profile)",
        "seconds_per_batch_of_16": timing,
        "torch_threads": torch.get_num_threads(),
        "real_clips": judge_videos(real, real_prompts, judge, layout="CFHW"),
        "vae_reconstructions_of_real_clips": judge_videos(recon, real_prompts, judge, layout="CFHW"),
        "detail_note": "detail 1.0 = stripes as sharp as real clips' (noise does not count); the VAE's "
        "reconstructions of real clips (vae_reconstructions_of_real_clips.detail) are the ceiling a generated "
        "video can reach; size 1.0 = shapes as large as real clips', and the reconstructions' size "
        "(vae_reconstructions_of_real_clips.size, above 1 from the VAE's ringing next to the edges) is the floor",
        "metric": "judge (calibrate.demo.judge): colour from pixel chromaticity, direction from the centroid track, "
        "shape by a small CNN trained on real frames; all = the three match the prompt; detail = stripe "
        "energy relative to real clips (calibrate.demo.data.detail_score); size = area the shape covers "
        "relative to real clips (calibrate.demo.data.size_score)",
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
    summary = ", ".join(f"{k} {v['all']:.3f}/{v['detail']:.2f}" for k, v in patterns.items())
    print(
        f"recommended guidance {best:g}: all-correct/detail {summary}; seconds per batch of 16: large "
        f"{timing['large']}, small {timing['small']}",
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
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest on 2 busy cores)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    run_evaluation(args.weights, args.guidance, args.samples_per_prompt, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
