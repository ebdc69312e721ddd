"""The demo's judge: what a generated video shows, measured independently of the calibrator.

- **colour** analytically from pixel statistics: the chromaticity ``rgb / (r + g + b)`` averaged over the
  pixels that differ from the background (weighted by how much), nearest of the 4 palette colours (the
  stripes' dark shade is a multiple of the colour, so it has the same chromaticity);
- **direction** analytically from the centroid track (:func:`calibrate.demo.data.centroid_direction`);
- **shape** by a small convolutional classifier (:class:`ShapeClassifier`, ~60k parameters) trained on
  real frames only (with blur, noise, contrast and colour-permutation augmentation), frame-averaged
  probabilities; it shares nothing with the calibrator's feature model (the Dinov2 stand-in in
  ``weights/feature_model``), so the calibrator is never graded by its own instrument;
- **detail** by :func:`calibrate.demo.data.detail_score` (stripe energy relative to real clips; noise does not count);
- **size** by :func:`calibrate.demo.data.size_score` (the area the shape covers relative to real clips; a
  blurred shape's halo makes it larger than 1).

``judge_videos(videos, prompts)`` returns per-attribute accuracies, the all-correct accuracy and the detail
and size scores. The classifier's weights ship in ``weights/judge/`` (safetensors + ``config.json``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .data import (
    COLOURS,
    FOREGROUND_THRESHOLD,
    SHAPES,
    SIZE,
    as_cfhw,
    background_deviation,
    centroid_direction,
    detail_energy,
    detail_score,
    foreground_fraction,
    parse_prompt,
    reference_clips,
    size_score,
)

__all__ = [
    "JUDGE_DIR",
    "ShapeClassifier",
    "colour_of",
    "detail_energy",
    "detail_score",
    "judge_videos",
    "load_shape_classifier",
    "paired_difference",
    "predict",
    "shape_probabilities",
    "size_score",
]

JUDGE_DIR = Path(__file__).resolve().parent / "weights" / "judge"
"""Directory of the shipped shape classifier (``model.safetensors`` + ``config.json``)."""

_PALETTE_CHROMA = torch.tensor([COLOURS[c] for c in COLOURS], dtype=torch.float32)
_PALETTE_CHROMA = _PALETTE_CHROMA / _PALETTE_CHROMA.sum(dim=1, keepdim=True)


def _as_fchw(video: Tensor, layout: Literal["CFHW", "FCHW"]) -> Tensor:
    return as_cfhw(video, layout).permute(1, 0, 2, 3)


def colour_of(video: Tensor, layout: Literal["CFHW", "FCHW"] = "FCHW", threshold: float = FOREGROUND_THRESHOLD) -> str:
    """Palette colour of the shape in one video (values in [0, 1]), or ``"none"`` if no pixel stands out.

    Pixels whose largest channel deviation from the frame's per-channel median exceeds ``threshold`` vote
    with weight (deviation - threshold) for their chromaticity; the nearest palette chromaticity wins.
    """
    v = _as_fchw(video, layout).clamp(0.0, 1.0)  # (F, 3, H, W)
    weight = (background_deviation(v.transpose(0, 1)) - threshold).clamp(min=0.0)  # (F, H, W)
    total = float(weight.sum())
    if total <= 1e-6:
        return "none"
    chroma = v / v.sum(dim=1, keepdim=True).clamp(min=1e-3)  # (F, 3, H, W)
    mean = (chroma * weight[:, None]).sum(dim=(0, 2, 3)) / total
    return list(COLOURS)[int((_PALETTE_CHROMA - mean).pow(2).sum(dim=1).argmin())]


class ShapeClassifier(nn.Module):
    """Small translation-invariant CNN: one 32x32 frame (values in [0, 1]) -> logits over :data:`SHAPES`.

    Input is the frame minus the grey background; global average and max pooling make it independent of
    where the shape is.
    """

    def __init__(self, width: int = 32, num_classes: int = len(SHAPES)) -> None:
        super().__init__()
        w = width
        self.config = {"width": width, "num_classes": num_classes, "labels": list(SHAPES), "input_size": SIZE}
        self.features = nn.Sequential(
            nn.Conv2d(3, w // 2, 3, padding=1), nn.GELU(),
            nn.Conv2d(w // 2, w, 3, padding=1, stride=2), nn.GELU(),
            nn.Conv2d(w, w, 3, padding=1), nn.GELU(),
            nn.Conv2d(w, 2 * w, 3, padding=1, stride=2), nn.GELU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.GELU(),
        )  # fmt: skip
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, frames: Tensor) -> Tensor:
        """Logits ``(N, classes)`` of frames ``(N, 3, H, W)`` in [0, 1]."""
        h = self.features(frames - 0.5)
        return self.head(torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1))

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``model.safetensors`` and ``config.json`` into ``directory``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(directory / "model.safetensors"))
        (directory / "config.json").write_text(json.dumps(self.config, indent=2) + "\n")


def load_shape_classifier(directory: str | os.PathLike[str] = JUDGE_DIR) -> ShapeClassifier:
    """The shipped (or a freshly trained) shape classifier in eval mode."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config = json.loads((directory / "config.json").read_text())
    model = ShapeClassifier(width=int(config["width"]), num_classes=int(config["num_classes"]))
    model.load_state_dict(load_file(str(directory / "model.safetensors")))
    return model.eval()


@torch.no_grad()
def shape_probabilities(
    classifier: ShapeClassifier, videos: Tensor, layout: Literal["CFHW", "FCHW"] = "FCHW", batch_size: int = 512
) -> Tensor:
    """Frame-averaged shape probabilities ``(B, len(SHAPES))`` of videos ``(B, F, 3, H, W)`` (or CFHW)."""
    if videos.ndim != 5:
        raise ValueError(f"`videos` must be a batch (B, {', '.join(layout)}), got shape {tuple(videos.shape)}.")
    v = videos.detach().float().cpu().clamp(0.0, 1.0)
    if layout == "CFHW":
        v = v.permute(0, 2, 1, 3, 4)
    b, f = v.shape[:2]
    frames = v.reshape(b * f, *v.shape[2:])
    probs = torch.cat(
        [classifier(frames[s : s + batch_size]).softmax(dim=1) for s in range(0, frames.shape[0], batch_size)]
    )
    return probs.view(b, f, -1).mean(dim=1)


def predict(
    videos: Tensor, classifier: ShapeClassifier | None = None, layout: Literal["CFHW", "FCHW"] = "FCHW"
) -> list[tuple[str, str, str]]:
    """``(colour, shape, direction)`` the judge sees in each video."""
    classifier = load_shape_classifier() if classifier is None else classifier
    shapes = shape_probabilities(classifier, videos, layout).argmax(dim=1).tolist()
    out = []
    for i in range(videos.shape[0]):
        colour = colour_of(videos[i], layout)
        direction = centroid_direction(videos[i], layout=layout)
        out.append((colour, SHAPES[int(shapes[i])], direction))
    return out


def judge_videos(
    videos: Tensor,
    prompts: Sequence[str],
    classifier: ShapeClassifier | None = None,
    layout: Literal["CFHW", "FCHW"] = "FCHW",
    with_detail: bool = True,
    per_video: bool = False,
) -> dict[str, Any]:
    """Accuracy per attribute, colour+shape, all three, and the detail and size scores of ``videos``.

    ``videos``: ``(B, F, 3, H, W)`` in [0, 1] (``WanPipeline(..., output_type="pt").frames``; pass
    ``layout="CFHW"`` for :func:`calibrate.demo.data.sample_clips` output). ``per_video=True`` adds each
    video's verdict: ``right`` (1 when all three attributes are right, else 0) and ``foreground`` (its
    :func:`calibrate.demo.data.foreground_fraction`, rounded to 5 digits), for paired comparisons.
    """
    if len(prompts) != videos.shape[0]:
        raise ValueError(f"got {videos.shape[0]} videos but {len(prompts)} prompts; pass one prompt per video.")
    predicted = predict(videos, classifier, layout)
    truth = [parse_prompt(p) for p in prompts]
    n = len(truth)
    pairs = list(zip(predicted, truth, strict=True))
    out: dict[str, Any] = {
        "all": round(sum(p == t for p, t in pairs) / n, 4),
        "colour": round(sum(p[0] == t[0] for p, t in pairs) / n, 4),
        "shape": round(sum(p[1] == t[1] for p, t in pairs) / n, 4),
        "direction": round(sum(p[2] == t[2] for p, t in pairs) / n, 4),
        "colour_and_shape": round(sum(p[:2] == t[:2] for p, t in pairs) / n, 4),
        "videos": n,
    }
    if with_detail:
        reference = reference_clips(len(videos), list(prompts))  # both scores' default, drawn once
        out["detail"] = round(detail_score(videos, reference=reference, layout=layout), 4)
        out["size"] = round(size_score(videos, reference=reference, layout=layout), 4)
    if per_video:
        out["right"] = [int(p == t) for p, t in pairs]
        out["foreground"] = [round(float(f), 5) for f in foreground_fraction(videos, layout)]
    return out


def paired_difference(values: Sequence[Sequence[float]], other: Sequence[Sequence[float]]) -> tuple[float, float]:
    """Mean of ``values - other`` and its standard error, paired by prompt: ``(seeds, prompts)`` per-video scores.

    The videos of one prompt at different seeds are not independent, so each prompt's difference is averaged
    over the seeds first and the standard error (sample standard deviation / sqrt(prompts)) is taken over the
    prompts; with one prompt it is 0.
    """
    a = torch.as_tensor(values, dtype=torch.float64)
    b = torch.as_tensor(other, dtype=torch.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"values and other must both be (seeds, prompts) tables of the same shape, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}: pass one row per seed with one score per prompt, the same prompts in the same order"
        )
    per_prompt = (a - b).mean(dim=0)
    se = float(per_prompt.std() / len(per_prompt) ** 0.5) if len(per_prompt) > 1 else 0.0
    return float(per_prompt.mean()), se
