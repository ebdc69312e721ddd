"""Synthetic text-to-video distribution of the demo pair (v2): one striped, coloured shape moving on grey.

Every clip is 9 frames of 32x32 RGB (the WAN layout ``(3, 9, 32, 32)``, channels then frames) showing one
shape of one of 4 colours and 3 shapes, moving in one of 4 directions, which gives 48 prompts such as
``"a red circle moving left"``. Size, speed, start position, the position across the motion and the phase
of the texture are drawn at random. Everything is generated on the fly from a seed (no files), so the same
``(n, seed)`` always gives the same clips, and the generator doubles as the *reference set* (real samples)
for FID.

Stage structure (the reason for the design, see docs/demo-training.md): what the prompt asks for -- the
colour and the shape bound to one object, and where it moves -- is coarse, low-frequency content that the
early, high-noise denoising steps decide. Every shape is also filled with **diagonal stripes** (the colour
alternating with a darker shade of it, period :data:`STRIPE_PERIOD` pixels, locked to the moving shape)
and has sharp anti-aliased edges: high-frequency detail that no prompt word controls, meant for the late,
low-noise steps (measured, the stripes' random phase is decided at high noise: docs/demo.md). :func:`detail_score`
measures it (the stripes' spectral energy relative to real clips: 1.0 = as sharp as real, a blurred model
scores well below 1); :func:`size_score` measures how much of the frame the drawn shape covers relative to real
clips (a blurred shape's halo makes it larger than 1).

Value range: all tensors returned by this module hold values in **[0, 1]** (the range of
``WanPipeline(..., output_type="pt")`` and of torchmetrics' FID with ``normalize=True``); the grey
background is exactly 0.5. Map to the VAE's [-1, 1] with ``2 * x - 1``.

Shapes are rendered from signed distance functions with a one-pixel anti-aliased edge; image
coordinates have x to the right and y downwards, so "up" means decreasing y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "BACKGROUND",
    "COLOURS",
    "DIRECTIONS",
    "FOREGROUND_THRESHOLD",
    "FRAMES",
    "PROMPTS",
    "SHAPES",
    "SIZE",
    "STRIPE_PERIOD",
    "STRIPE_SHADE",
    "ClipBatch",
    "as_cfhw",
    "background_deviation",
    "centroid_direction",
    "centroid_track",
    "class_index",
    "class_names",
    "detail_energy",
    "detail_score",
    "foreground_fraction",
    "parse_prompt",
    "prompt_for",
    "reference_clips",
    "reference_frames",
    "sample_clips",
    "sample_clips_with_geometry",
    "size_score",
]

FRAMES = 9
"""Frames per clip (WAN needs 4k + 1 frames; 9 frames give 3 latent frames)."""

SIZE = 32
"""Height and width of a frame in pixels."""

BACKGROUND = 0.5
"""Grey level of the background in every channel (value range [0, 1])."""

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.15, 0.15),
    "green": (0.15, 0.75, 0.20),
    "blue": (0.15, 0.30, 0.90),
    "yellow": (0.95, 0.85, 0.15),
}
"""Colour name -> RGB in [0, 1]."""

SHAPES: tuple[str, ...] = ("circle", "bar", "triangle")
"""Shape names; the bar is a horizontal rectangle 2.2 times as wide as tall, the triangle is equilateral and
points up. The three differ in their coarse layout (round, wide, pointed), not only in corners a blurry
sample rounds off."""

DIRECTIONS: dict[str, tuple[float, float]] = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
}
"""Direction name -> unit motion (dx, dy) in image coordinates (y points down)."""

PROMPTS: list[str] = [
    f"a {colour} {shape} moving {direction}" for colour in COLOURS for shape in SHAPES for direction in DIRECTIONS
]
"""All 48 prompts, ordered colour-major, then shape, then direction."""

FOREGROUND_THRESHOLD = 0.12
"""A pixel belongs to the shape when one of its channels differs from the frame's background by more than this
(the judge's colour, the centroid track and :func:`foreground_fraction` use it)."""

STRIPE_PERIOD = 4.0
"""Period in pixels (measured across the stripes) of the diagonal stripes that fill every shape."""

STRIPE_SHADE = 0.5
"""The dark stripes are the shape's colour times this factor (both shades stay far from the grey)."""

# Geometry ranges (pixels). ``size`` is the circle's radius; the bar's half width is 1.1 * size and its half
# height 0.5 * size, the triangle's inradius 0.6 * size, so every shape reaches at most 1.2 * size from its
# centre along either axis.
SIZE_RANGE = (6.5, 8.0)
SPEED_RANGE = (0.8, 1.3)
_BAR_HALF = (1.1, 0.5)
_TRIANGLE_INRADIUS = 0.6
_EXTENT = 1.2


def parse_prompt(prompt: str) -> tuple[str, str, str]:
    """Split a demo prompt into ``(colour, shape, direction)``; raise ``ValueError`` if it is not one."""
    words = prompt.strip().lower().split()
    if len(words) != 5 or words[0] != "a" or words[3] != "moving":
        raise ValueError(
            f"`prompt` must look like 'a <colour> <shape> moving <direction>', got {prompt!r}; "
            f"use one of calibrate.demo.data.PROMPTS."
        )
    colour, shape, direction = words[1], words[2], words[4]
    for value, allowed, what in (
        (colour, tuple(COLOURS), "colour"),
        (shape, SHAPES, "shape"),
        (direction, tuple(DIRECTIONS), "direction"),
    ):
        if value not in allowed:
            raise ValueError(f"unknown {what} {value!r} in prompt {prompt!r}; expected one of {list(allowed)}.")
    return colour, shape, direction


def prompt_for(colour: str, shape: str, direction: str) -> str:
    """The prompt for one ``(colour, shape, direction)`` triple (inverse of :func:`parse_prompt`)."""
    prompt = f"a {colour} {shape} moving {direction}"
    parse_prompt(prompt)
    return prompt


def class_names() -> list[str]:
    """The 12 appearance classes ``"<colour> <shape>"`` of the demo feature model, in label-id order."""
    return [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]


def class_index(colour: str, shape: str) -> int:
    """Label id of ``(colour, shape)`` in :func:`class_names` (colour-major)."""
    return list(COLOURS).index(colour) * len(SHAPES) + SHAPES.index(shape)


@dataclass(frozen=True)
class ClipBatch:
    """Clips with the parameters they were drawn from (for training auxiliary heads and tests).

    ``videos``: (n, 3, 9, 32, 32) in [0, 1]; ``prompts``: n prompts; ``centres``: (n, 9, 2) shape centre
    (x, y) in pixels per frame; ``sizes``: (n,) size parameter in pixels (the circle radius); ``phases``:
    (n,) phase of the stripes in [0, 1).
    """

    videos: Tensor
    prompts: list[str]
    centres: Tensor
    sizes: Tensor
    phases: Tensor


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def _signed_distance(shape: str, dx: Tensor, dy: Tensor, size: Tensor) -> Tensor:
    """Signed distance (negative inside) of ``shape`` with parameter ``size`` at offsets (dx, dy)."""
    if shape == "circle":
        return torch.sqrt(dx * dx + dy * dy) - size
    if shape == "bar":
        # Box distance outside, the larger (negative) axis distance inside.
        qx = dx.abs() - _BAR_HALF[0] * size
        qy = dy.abs() - _BAR_HALF[1] * size
        outside = torch.sqrt(qx.clamp(min=0.0) ** 2 + qy.clamp(min=0.0) ** 2)
        return outside + torch.maximum(qx, qy).clamp(max=0.0)
    # Equilateral triangle pointing up (y down): outward edge normals (0, 1), (+-sin 60, -cos 60).
    s60, c60 = math.sin(math.pi / 3), math.cos(math.pi / 3)
    d = torch.maximum(dy, torch.maximum(s60 * dx - c60 * dy, -s60 * dx - c60 * dy))
    return d - _TRIANGLE_INRADIUS * size


def sample_clips_with_geometry(n: int, seed: int, prompts: list[str] | None = None) -> ClipBatch:
    """Draw ``n`` clips with seed ``seed``, returning the clips with their centres and sizes.

    ``prompts=None`` draws each clip's prompt uniformly from :data:`PROMPTS`; otherwise clip ``i`` shows
    ``prompts[i % len(prompts)]``. Same arguments, same clips (a private ``torch.Generator`` is used).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"`n` must be a non-negative int (number of clips), got {n!r}.")
    generator = torch.Generator().manual_seed(int(seed))
    if prompts is None:
        ids = torch.randint(len(PROMPTS), (n,), generator=generator)
        chosen = [PROMPTS[int(i)] for i in ids]
    else:
        if len(prompts) == 0:
            raise ValueError("`prompts` must be None or a non-empty list of demo prompts, got an empty list.")
        chosen = [prompts[i % len(prompts)] for i in range(n)]
    parsed = [parse_prompt(p) for p in chosen]

    size = _uniform(n, *SIZE_RANGE, generator)
    speed = _uniform(n, *SPEED_RANGE, generator)
    margin = _EXTENT * size + 0.5
    travel = speed * (FRAMES - 1)
    along = torch.rand(n, generator=generator, dtype=torch.float64)
    across = torch.rand(n, generator=generator, dtype=torch.float64)
    phase = torch.rand(n, generator=generator, dtype=torch.float64)

    motion = torch.tensor([DIRECTIONS[d] for _, _, d in parsed], dtype=torch.float64).reshape(n, 2)
    # Start so that the whole track stays inside the frame: along the motion the start lies in
    # [margin, SIZE - margin - travel] measured from the side the shape moves away from.
    start_along = margin + along * (SIZE - 2 * margin - travel).clamp(min=0.0)
    start_across = margin + across * (SIZE - 2 * margin)
    start = torch.empty(n, 2, dtype=torch.float64)
    horizontal = motion[:, 0] != 0
    positive = (motion.sum(dim=1) > 0).to(torch.float64)
    along_coord = positive * start_along + (1 - positive) * (SIZE - start_along)
    start[:, 0] = torch.where(horizontal, along_coord, start_across)
    start[:, 1] = torch.where(horizontal, start_across, along_coord)
    steps = torch.arange(FRAMES, dtype=torch.float64)
    centres = start[:, None, :] + motion[:, None, :] * speed[:, None, None] * steps[None, :, None]  # (n, F, 2)

    pixel = torch.arange(SIZE, dtype=torch.float64) + 0.5
    dx = pixel.view(1, 1, 1, SIZE) - centres[..., 0].view(n, FRAMES, 1, 1)
    dy = pixel.view(1, 1, SIZE, 1) - centres[..., 1].view(n, FRAMES, 1, 1)
    alpha = torch.empty(n, FRAMES, SIZE, SIZE, dtype=torch.float64)
    for shape in SHAPES:
        rows = torch.tensor([s == shape for _, s, _ in parsed], dtype=torch.bool)
        if rows.any():
            sdf = _signed_distance(shape, dx[rows], dy[rows], size[rows].view(-1, 1, 1, 1))
            alpha[rows] = (0.5 - sdf).clamp(0.0, 1.0)
    # Diagonal stripes locked to the shape: coordinate across the stripes, anti-aliased square wave whose
    # dark half (``dark`` = 1) is drawn in the darker shade.
    across_stripes = (dx + dy) / math.sqrt(2.0) / STRIPE_PERIOD + phase.view(n, 1, 1, 1)
    tri = (torch.frac(across_stripes) - 0.5).abs() * STRIPE_PERIOD  # 0 at a dark centre .. P/2 at a light centre
    dark = (STRIPE_PERIOD / 4 - tri + 0.5).clamp(0.0, 1.0)[:, None]  # (n, 1, F, H, W)
    colour = torch.tensor([COLOURS[c] for c, _, _ in parsed], dtype=torch.float64).reshape(n, 3, 1, 1, 1)
    fill = colour * (1 - dark) + STRIPE_SHADE * colour * dark
    alpha = alpha[:, None]  # (n, 1, F, H, W)
    videos = BACKGROUND * (1 - alpha) + fill * alpha
    return ClipBatch(
        videos=videos.to(torch.float32),
        prompts=chosen,
        centres=centres.to(torch.float32),
        sizes=size.to(torch.float32),
        phases=phase.to(torch.float32),
    )


def sample_clips(n: int, seed: int, prompts: list[str] | None = None) -> tuple[Tensor, list[str]]:
    """``n`` clips (float32 ``(n, 3, 9, 32, 32)``, values in [0, 1]) and their prompts, reproducible by seed.

    ``prompts=None`` draws prompts uniformly from :data:`PROMPTS`; a list is cycled (clip ``i`` shows
    ``prompts[i % len(prompts)]``).
    """
    batch = sample_clips_with_geometry(n, seed, prompts)
    return batch.videos, batch.prompts


def reference_frames(n: int, seed: int) -> Tensor:
    """``n`` real frames (float32 ``(n, 3, 32, 32)`` in [0, 1]) for FID, as generated videos are compared.

    Frames are taken clip by clip, all 9 frames of each (``ceil(n / 9)`` clips with uniformly drawn
    prompts), which matches reshaping generated videos ``(B, F, C, H, W)`` to ``(B * F, C, H, W)``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"`n` must be a non-negative int (number of frames), got {n!r}.")
    videos, _ = sample_clips(math.ceil(n / FRAMES), seed)
    return videos.permute(0, 2, 1, 3, 4).reshape(-1, 3, SIZE, SIZE)[:n].contiguous()


def as_cfhw(video: Tensor, layout: Literal["CFHW", "FCHW"]) -> Tensor:
    """One video as (C, F, H, W), from ``layout`` (pipeline output is F, C, H, W); checks shape and layout."""
    if video.ndim != 4:
        raise ValueError(f"`video` must be one video of 4 dimensions ({layout}), got shape {tuple(video.shape)}.")
    if layout == "FCHW":
        video = video.permute(1, 0, 2, 3)
    elif layout != "CFHW":
        raise ValueError(f"`layout` must be 'CFHW' or 'FCHW', got {layout!r}.")
    if video.shape[0] != 3:
        raise ValueError(
            f"`video` must have 3 colour channels in layout {layout}, got shape {tuple(video.shape)}; "
            "pipeline output (output_type='pt') is (B, F, C, H, W): pass one video with layout='FCHW'."
        )
    return video.detach().float().cpu()


def background_deviation(video: Tensor) -> Tensor:
    """Largest channel deviation ``(..., F, H, W)`` of each pixel of ``(..., C, F, H, W)`` from its frame's median."""
    background = video.flatten(-2).median(dim=-1).values  # (..., C, F)
    return (video - background[..., None, None]).abs().amax(dim=-4)


def centroid_track(
    video: Tensor, layout: Literal["CFHW", "FCHW"] = "CFHW", threshold: float = FOREGROUND_THRESHOLD
) -> tuple[Tensor, Tensor]:
    """Per-frame centroid ``(F, 2)`` (x, y in pixels) of the pixels that differ from the background.

    ``video`` holds values in [0, 1]. The background of each frame is estimated as its per-channel median
    (the shape covers well under half of a frame); a pixel's weight is how far its largest channel
    deviation exceeds ``threshold``. Returns the track and a boolean mask ``(F,)`` of frames with any weight.
    """
    weight = (background_deviation(as_cfhw(video, layout)) - threshold).clamp(min=0.0)
    mass = weight.sum(dim=(1, 2))
    height, width = weight.shape[1:]
    ys = torch.arange(height, dtype=torch.float32) + 0.5
    xs = torch.arange(width, dtype=torch.float32) + 0.5
    safe = mass.clamp(min=1e-8)
    cx = (weight.sum(dim=1) * xs).sum(dim=1) / safe
    cy = (weight.sum(dim=2) * ys).sum(dim=1) / safe
    return torch.stack([cx, cy], dim=1), mass > 1e-3


def centroid_direction(video: Tensor, layout: Literal["CFHW", "FCHW"] = "CFHW", min_travel: float = 1.0) -> str:
    """Motion direction (``"left"``, ``"right"``, ``"up"`` or ``"down"``) of the shape in one video.

    ``video`` is one video with values in [0, 1], ``(3, F, H, W)`` (``layout="CFHW"``, as from
    :func:`sample_clips`) or ``(F, 3, H, W)`` (``layout="FCHW"``, one item of ``WanPipeline`` output with
    ``output_type="pt"``). The centroid track (:func:`centroid_track`) is fitted with a least-squares line
    per axis; the direction is the sign of the larger total displacement. Returns ``"none"`` when fewer
    than two frames show a shape or the fitted travel is below ``min_travel`` pixels.
    """
    track, valid = centroid_track(video, layout)
    if int(valid.sum()) < 2:
        return "none"
    t = torch.arange(track.shape[0], dtype=torch.float32)[valid]
    points = track[valid]
    t_centred = t - t.mean()
    slope = (t_centred[:, None] * (points - points.mean(dim=0))).sum(dim=0) / (t_centred * t_centred).sum()
    travel = slope * (t.max() - t.min())
    dx, dy = float(travel[0]), float(travel[1])
    if max(abs(dx), abs(dy)) < min_travel:
        return "none"
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def _as_bcfhw(videos: Tensor, layout: Literal["CFHW", "FCHW"]) -> Tensor:
    if videos.ndim != 5:
        raise ValueError(
            f"`videos` must be a batch of 5 dimensions (B, {', '.join(layout)}), got {tuple(videos.shape)}."
        )
    if layout == "FCHW":
        videos = videos.permute(0, 2, 1, 3, 4)
    elif layout != "CFHW":
        raise ValueError(f"`layout` must be 'CFHW' or 'FCHW', got {layout!r}.")
    if videos.shape[1] != 3:
        raise ValueError(f"`videos` must have 3 colour channels in layout {layout}, got shape {tuple(videos.shape)}.")
    return videos.detach().float().cpu()


def _stripe_band_masks(height: int, width: int) -> tuple[Tensor, Tensor]:
    """FFT masks (H, W) of the stripes' frequency band: along the stripes' diagonal, and the mirrored diagonal."""
    u = torch.fft.fftfreq(width).view(1, width)
    v = torch.fft.fftfreq(height).view(height, 1)
    radius, angle = torch.sqrt(u * u + v * v), torch.atan2(v, u)
    f0 = 1.0 / STRIPE_PERIOD  # cycles per pixel across the stripes
    ring = (radius > 0.7 * f0) & (radius < 1.4 * f0)

    def within(direction: float) -> Tensor:  # orientation within 22.5 degrees of ``direction`` (mod pi)
        offset = torch.remainder(angle - direction + math.pi / 2, math.pi) - math.pi / 2
        return offset.abs() < math.pi / 8

    return ring & within(math.pi / 4), ring & within(-math.pi / 4)


def detail_energy(videos: Tensor, layout: Literal["CFHW", "FCHW"] = "CFHW") -> Tensor:
    """Stripe energy per video ``(B,)``: spectral power in the stripes' band minus that of the mirrored band.

    ``videos`` is ``(B, 3, F, H, W)`` (``"CFHW"``, as from :func:`sample_clips`) or ``(B, F, 3, H, W)``
    (``"FCHW"``, ``WanPipeline`` output), values in [0, 1]. Every frame's power spectrum is summed over the
    ring of frequencies around ``1 / STRIPE_PERIOD`` oriented along the stripes' diagonal, and the same ring
    along the other diagonal is subtracted. The stripes put their energy in the first band only, while noise
    (isotropic) and the shapes' edges (symmetric under the mirror: circles, the axis-aligned bar, the upright triangle)
    put equal energy in both, so only rendered stripes count: sharp stripes score high, blurred ones low, and
    noise adds nothing (its expected contribution is zero). Flat frames give exactly 0.
    """
    v = _as_bcfhw(videos, layout)
    b, h, w = v.shape[0], v.shape[-2], v.shape[-1]
    centred = v - v.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(centred.to(torch.float64)).abs().pow(2) / (h * w)
    along, mirrored = _stripe_band_masks(h, w)
    energy = power[..., along].sum(dim=-1) - power[..., mirrored].sum(dim=-1)  # (B, C, F)
    return (energy.reshape(b, -1).mean(dim=1) / (h * w)).to(torch.float32)


DETAIL_REFERENCE_SEED = 97
"""Seed of the real clips :func:`detail_score` and :func:`size_score` compare with when no reference is given."""


def reference_clips(videos: int, prompts: list[str] | None = None) -> Tensor:
    """The real clips (CFHW) :func:`detail_score` and :func:`size_score` compare ``videos`` generated videos with.

    ``sample_clips(max(videos, 64), DETAIL_REFERENCE_SEED, prompts)``: at least 64 clips, cycling through
    ``prompts`` (all prompts drawn at random when None).
    """
    return sample_clips(max(int(videos), 64), DETAIL_REFERENCE_SEED, list(prompts) if prompts else None)[0]


def detail_score(
    videos: Tensor,
    prompts: list[str] | None = None,
    reference: Tensor | None = None,
    layout: Literal["CFHW", "FCHW"] = "CFHW",
) -> float:
    """Detail of ``videos`` relative to real clips: mean :func:`detail_energy` of ``videos`` / that of real ones.

    1.0 means stripes as sharp as real clips'; a model that blurs them scores below 1, and noise does not
    count (a noisy but sharp video still scores about 1, pure noise about 0). ``reference`` is a batch of real clips in
    ``"CFHW"`` layout; by default :func:`reference_clips` for ``len(videos)`` videos and ``prompts``, so the
    score is a pure function of its arguments.
    """
    real = float(detail_energy(reference_clips(len(videos), prompts) if reference is None else reference).mean())
    return float(detail_energy(videos, layout).mean()) / real


def foreground_fraction(
    videos: Tensor, layout: Literal["CFHW", "FCHW"] = "CFHW", threshold: float = FOREGROUND_THRESHOLD
) -> Tensor:
    """Fraction of each video's pixels ``(B,)`` differing from their frame's median by more than ``threshold``."""
    return (background_deviation(_as_bcfhw(videos, layout)) > threshold).float().mean(dim=(1, 2, 3))


def size_score(
    videos: Tensor,
    prompts: list[str] | None = None,
    reference: Tensor | None = None,
    layout: Literal["CFHW", "FCHW"] = "CFHW",
) -> float:
    """Area the shapes of ``videos`` cover relative to real clips: mean :func:`foreground_fraction` / real one's.

    1.0 means shapes as large as real clips'; a blurred shape with a halo, or colour leaking into the
    background, scores above 1; a blank video scores 0 (compare distances from 1, not sizes, when ranking).
    ``reference`` and its default are those of :func:`detail_score`.
    """
    real = float(foreground_fraction(reference_clips(len(videos), prompts) if reference is None else reference).mean())
    if real == 0.0:
        raise ValueError(
            "`reference` holds no shape pixels (every pixel within FOREGROUND_THRESHOLD of its frame's median): "
            "pass real clips of the demo distribution, or None for the default reference"
        )
    return float(foreground_fraction(videos, layout).mean()) / real
