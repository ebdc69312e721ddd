"""A tiny random DINOv2 feature model, loadable offline as ``--feature-model``."""

from __future__ import annotations

from pathlib import Path

from .pairs import seeded


def save_tiny_dinov2(directory: str | Path, *, seed: int = 0) -> Path:
    """A tiny random ``Dinov2Model`` (+ PIL image processor) saved where ``--feature-model`` can load it."""
    import transformers

    path = Path(directory)
    with seeded(seed):
        config = transformers.Dinov2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=32,
            patch_size=8,
        )
        transformers.Dinov2Model(config).save_pretrained(path)
    cls = getattr(transformers, "BitImageProcessorPil", None) or transformers.BitImageProcessor
    cls(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path
