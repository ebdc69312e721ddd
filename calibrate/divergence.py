"""Velocity divergence between the large and small model (paper sec 5.1, App. C) and proxy boundaries from it.

The per-call distances take torch tensors and compute in float64; the statistics and the boundary
rule are pure numpy. Cosine distance is 1 - cos(v_L, v_S); L2 distance is ||v_L - v_S||_2.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch
from numpy.typing import ArrayLike

# Valley tolerance of divergence_boundaries, as a fraction of the curve's range (see its docstring).
DEFAULT_VALLEY_TOL = 0.1

# A curve whose range is at most this fraction of its peak (mean + std) has no U-shape.
DEFAULT_FLAT_RTOL = 0.05

# A velocity: a torch tensor (any dtype or device) or anything torch.as_tensor accepts.
Velocity = torch.Tensor | ArrayLike


def _as_float64(name: str, v: Velocity) -> torch.Tensor:
    """``v`` as a detached float64 tensor; NaN/Inf raise a ValueError naming ``name`` (sec 5.1 inputs)."""
    t = torch.as_tensor(v).detach().to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(
            f"{name} contains NaN or Inf ({int((~torch.isfinite(t)).sum())} of {t.numel()} values): "
            "the model produced a non-finite velocity; stop and inspect that step and role"
        )
    return t


def _pair(v_large: Velocity, v_small: Velocity) -> tuple[torch.Tensor, torch.Tensor]:
    """Both velocities in float64 with equal shapes, or a ValueError saying which shapes differ (App. C)."""
    a, b = _as_float64("v_large", v_large), _as_float64("v_small", v_small)
    if a.shape != b.shape:
        raise ValueError(
            f"v_large and v_small must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}: "
            "feed the small model exactly the large model's inputs (same latent, timestep and batch)"
        )
    return a, b


def _cosine_distance_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cos per row of two (B, D) float64 tensors; a zero row has cos 0 (distance 1), as in torch."""
    norms = a.norm(dim=1) * b.norm(dim=1)
    cos = (a * b).sum(dim=1) / norms.clamp_min(torch.finfo(torch.float64).tiny)  # zero row: 0 / tiny = 0
    return 1.0 - cos.clamp(-1.0, 1.0)


def velocity_distances(v_large: Velocity, v_small: Velocity) -> tuple[float, float]:
    """Cosine distance 1 - cos(v_L, v_S) and L2 ||v_L - v_S||_2 of a whole call's output, flattened (sec 5.1).

    Computed in float64. A zero velocity has no direction: its cosine is taken as 0 (distance 1).
    """
    a, b = _pair(v_large, v_small)
    a, b = a.reshape(1, -1), b.reshape(1, -1)
    return float(_cosine_distance_rows(a, b)[0]), float((a - b).norm())


def per_sample_distances(v_large: Velocity, v_small: Velocity) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample (cos (B,), l2 (B,)), flattening all but dim 0 (sec 5.1; e.g. LTX [uncond, cond])."""
    a, b = _pair(v_large, v_small)
    if a.ndim < 2:
        raise ValueError(
            f"per_sample_distances needs a batch dimension and one more, got shape {tuple(a.shape)}: "
            "use velocity_distances for an unbatched output"
        )
    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    return _cosine_distance_rows(a, b).cpu().numpy(), (a - b).norm(dim=1).cpu().numpy()


def divergence_stats(values: ArrayLike) -> dict[str, np.ndarray | int]:
    """Per-step mean, population std (ddof=0) and count over prompts of a (prompts, steps) array (sec 5.1).

    Returns ``{"mean": (steps,), "std": (steps,), "count": prompts}``. ddof=0 describes the measured
    prompts themselves (a single prompt gives std 0) rather than estimating a wider population.
    """
    arr = np.array(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(
            f"values must be a non-empty 2-D array (prompts, steps), got shape {arr.shape}: "
            "stack one row of per-step distances per prompt"
        )
    if not np.isfinite(arr).all():
        p, s = (int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"values[{p}, {s}] is {arr[p, s]}: distances must be finite; recompute prompt {p}")
    return {"mean": arr.mean(axis=0), "std": arr.std(axis=0, ddof=0), "count": int(arr.shape[0])}


def _curves(mean: ArrayLike, std: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated per-step mean and std curves of one length >= 3 (sec 5.1 U-curve inputs)."""
    m, s = np.array(mean, dtype=np.float64), np.array(std, dtype=np.float64)
    if m.ndim != 1 or s.shape != m.shape:
        raise ValueError(
            f"cos_mean and cos_std must be 1-D and of one length, got shapes {m.shape} and {s.shape}: "
            "pass the per-step mean and std from divergence_stats"
        )
    if m.size < 3:
        raise ValueError(f"a U-curve needs at least 3 steps, got {m.size}: measure more denoising steps")
    if not (np.isfinite(m).all() and np.isfinite(s).all()):
        raise ValueError("cos_mean and cos_std must be finite: recompute the divergence pass")
    if (s < 0).any():
        i = int(np.flatnonzero(s < 0)[0])
        raise ValueError(f"cos_std[{i}] is {s[i]} < 0: a standard deviation cannot be negative; pass the std")
    return m, s


def _check_fraction(name: str, value: float) -> None:
    """Reject a tolerance outside (0, 1) with a message naming it."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}: pass e.g. {name}=0.1")


def curve_range(mean: np.ndarray, std: np.ndarray) -> float:
    """Scale of a divergence curve: the larger of the mean's and the std's peak-to-peak range (sec 5.1)."""
    return float(max(np.ptp(mean), np.ptp(std)))


def is_flat(mean: np.ndarray, std: np.ndarray, flat_rtol: float = DEFAULT_FLAT_RTOL) -> bool:
    """True when the curve's range is at most ``flat_rtol`` of its peak mean+std: no U-shape (sec 5.1)."""
    return curve_range(mean, std) <= flat_rtol * float(np.max(mean + std))


def valley_run(mean: np.ndarray, std: np.ndarray, tol: float = DEFAULT_VALLEY_TOL) -> tuple[int, int]:
    """Steps [start, stop) of the low-divergence valley (sec 5.1, App. C); rule in divergence_boundaries."""
    v = int(np.argmin(mean + std))
    band = tol * curve_range(mean, std)
    settled = (mean <= mean[v] + band) & (std <= std[v] + band)
    start = v
    while start > 0 and settled[start - 1]:
        start -= 1
    stop = v + 1
    while stop < mean.size and settled[stop]:
        stop += 1
    return start, stop


def divergence_boundaries(
    cos_mean: ArrayLike,
    cos_std: ArrayLike,
    *,
    tol: float = DEFAULT_VALLEY_TOL,
    flat_rtol: float = DEFAULT_FLAT_RTOL,
) -> tuple[float, float]:
    """Proxy (early, late) boundaries as fractions of the process from the divergence U-curve (sec 5.1, C).

    Rule: the valley step v minimises mean+std (first on ties); a step is settled when both its mean
    and its std are within ``tol`` x range (range = max of the mean's and std's peak-to-peak) of
    their values at v. The valley is the contiguous run of settled steps around v; the early
    boundary is its first step / N (before it: high variance or mean, sec 5.1 early stage) and the
    late boundary is one past its last step / N (the onset of rising mean or variance, sec 5.1).
    A flat curve (range <= ``flat_rtol`` x peak of mean+std) has no U-shape and returns (1.0, 1.0),
    i.e. large-only. Monotone curves give a valley at an end (early 0.0 or late 1.0); see
    :func:`divergence_premise`. Works on either distance (cosine or L2) and any N >= 3.
    """
    m, s = _curves(cos_mean, cos_std)
    _check_fraction("tol", tol)
    _check_fraction("flat_rtol", flat_rtol)
    if is_flat(m, s, flat_rtol):
        return 1.0, 1.0
    start, stop = valley_run(m, s, tol)
    return start / m.size, stop / m.size


def divergence_premise(
    cos_mean: ArrayLike,
    cos_std: ArrayLike,
    early: float,
    late: float,
    *,
    flat_rtol: float = DEFAULT_FLAT_RTOL,
) -> list[str]:
    """Failed premises of proxy boundaries (sec 5.1: a U-curve, valley inside the process); [] if all hold."""
    m, s = _curves(cos_mean, cos_std)
    _check_fraction("flat_rtol", flat_rtol)
    for name, value in (("early", early), ("late", late)):
        if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}: pass divergence_boundaries' result")
    if is_flat(m, s, flat_rtol):
        return [
            f"no U-shape: the divergence curve is flat (range {curve_range(m, s):.4g} <= {flat_rtol:g} x "
            f"peak {float(np.max(m + s)):.4g}); it locates no stage, so the proxy schedule is large-only"
        ]
    failed = []
    if early <= 0.0:
        failed.append("no U-shape: no early stage, the valley starts at step 0 (divergence does not fall at the start)")
    if late >= 1.0:
        failed.append(
            "no U-shape: no late rise, the valley reaches the last step (divergence does not rise at the end)"
        )
    if math.isclose(early, late) or late < early:
        failed.append(f"empty valley: early {early:g} is not before late {late:g}")
    return failed
