"""The embedded demo pair: a tiny but genuinely trained text-to-video pair in the diffusers WAN format.

- :mod:`calibrate.demo.data`: the synthetic distribution (a striped, coloured shape moving on grey; 48
  prompts), generated on the fly from seeds; also the FID reference set, the centroid-track direction
  estimate and the detail score (stripe energy relative to real clips).
- :mod:`calibrate.demo.judge`: the judge, independent of the calibrator (colour and direction analytically
  from pixels, shape by a small classifier trained on real clips, detail score).
- :mod:`calibrate.demo.evaluate`: generation with per-step model schedules, the judge's semantic accuracy of
  L-L-L / L-S-L / L-S-S / S-L-L / S-S-S and the generation-time check.

The weights are rebuilt by ``python -m scripts.train_demo --output calibrate/demo/weights`` (from the
repository root; ``scripts/`` is not installed).

The weights ship as package data under ``weights/`` (safetensors only); see ``docs/demo-training.md``.
This module imports nothing heavy.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "FEATURE_MODEL_DIR",
    "JUDGE_DIR",
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
"""The calibrator's demo feature model (its stand-in for DINOv2): a ``Dinov2Model`` + image processor."""

JUDGE_DIR = WEIGHTS_DIR / "judge"
"""The judge's shape classifier (``model.safetensors`` + ``config.json``), separate from the feature model."""

TRAINING_RECORD = WEIGHTS_DIR / "training.json"
"""Seeds, steps, losses, wall times, parameter counts, VAE PSNR, evaluation and library versions."""
