"""The embedded demo pair: a tiny but genuinely trained text-to-video pair in the diffusers WAN format.

- :mod:`calibrate.demo.data`: the synthetic distribution (a coloured shape moving on grey; 48 prompts),
  generated on the fly from seeds; also the FID reference set and the centroid-track direction estimate.
- :mod:`calibrate.demo.train`: rebuilds the shipped weights (``python -m calibrate.demo.train``).
- :mod:`calibrate.demo.evaluate`: semantic accuracy (colour and shape by the demo feature model's
  classifier, direction by the centroid track) and the generation check.

The weights ship as package data under ``weights/`` (safetensors only); see ``docs/demo-training.md``.
This module imports nothing heavy.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "FEATURE_MODEL_DIR",
    "PIPELINE_DIR",
    "SMALL_TRANSFORMER_DIR",
    "TRAINING_RECORD",
    "WEIGHTS_DIR",
]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
"""Directory of the shipped demo weights."""

PIPELINE_DIR = WEIGHTS_DIR / "pipeline"
"""A complete ``WanPipeline`` directory whose ``transformer`` is the large model."""

SMALL_TRANSFORMER_DIR = WEIGHTS_DIR / "small_transformer"
"""The small ``WanTransformer3DModel`` (same in/out channels, text width and patch size as the large one)."""

FEATURE_MODEL_DIR = WEIGHTS_DIR / "feature_model"
"""The demo feature model: ``Dinov2ForImageClassification`` (12 colour-shape classes) + image processor."""

TRAINING_RECORD = WEIGHTS_DIR / "training.json"
"""Seeds, steps, losses, wall times, parameter counts, VAE PSNR, evaluation and library versions."""
