"""A stand-in reference frame set (PNG) for FID in tests."""

from __future__ import annotations

from pathlib import Path


def save_reference_frames(
    directory: str | Path, count: int = 48, size: tuple[int, int] = (48, 64), seed: int = 0
) -> Path:
    """``count`` PNG frames of smooth random colour fields: a stand-in reference set for FID in tests."""
    import numpy as np
    from PIL import Image

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    for i in range(count):
        a = rng.uniform(0, 1, size=(3, 3))
        img = np.stack([a[c, 0] * 0.6 + a[c, 1] * 0.4 * xx + a[c, 2] * 0.4 * yy for c in range(3)], axis=-1)
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path / f"frame-{i:03d}.png")
    return path
