"""Write generated frames to .mp4 (imageio-ffmpeg) or .gif (Pillow); a pipeline output's videos."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FlowBlendingError

VIDEO_SUFFIXES = (".mp4", ".gif")


def videos_of(output: Any, output_type: str) -> Any:
    """A pipeline output's batch of videos: ``output.frames``, or ``output.images`` as one-frame videos.

    Image pipelines (Sana, Stable Diffusion 3) return ``images``: ``"np"`` (B, H, W, C) and ``"pt"`` (B, C, H, W)
    gain a frame axis after the batch axis, ``"pil"`` becomes one-image lists; ``"latent"`` is returned as is.
    """
    frames = getattr(output, "frames", None)
    if frames is not None:
        return frames
    images = output.images
    if output_type == "latent":
        return images
    if output_type == "pil":
        return [[image] for image in images]
    return images[:, None]


def to_uint8_frames(frames: Any) -> np.ndarray:
    """(F, H, W, C) uint8 from float frames in [0, 1] (numpy or torch, channels last) or PIL images."""
    if isinstance(frames, list) and frames and hasattr(frames[0], "convert"):
        return np.stack([np.asarray(f.convert("RGB")) for f in frames])
    arr = frames.detach().cpu().float().numpy() if hasattr(frames, "detach") else np.asarray(frames)
    if arr.ndim != 4:
        raise ValueError(f"frames must have shape (F, H, W, C), got {arr.shape}.")
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return arr


def save_video(frames: Any, path: str | os.PathLike, fps: int = 16) -> Path:
    """Save frames as .mp4 or .gif, chosen by the file extension."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise FlowBlendingError(f"--output {str(target)!r}: unknown video extension {suffix!r}; use .mp4 or .gif.")
    target.parent.mkdir(parents=True, exist_ok=True)
    arr = to_uint8_frames(frames)
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in arr]
        images[0].save(target, save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)), loop=0)
    else:
        import imageio.v2 as imageio

        with imageio.get_writer(target, fps=fps, codec="libx264", quality=8, macro_block_size=1) as writer:
            for f in arr:
                writer.append_data(f)
    return target
