"""Stage boundaries from sweep curves: Algorithm 1 (early, paper App. B) and the late rules (sec 4.3, App. B).

Two late rules read the same curve: ``minimum`` (the paper's Fig. 5: the V-curve's minimum, the quality optimum)
and ``parity`` (App. B sets "the threshold to find the late stage boundary with FID"; here the threshold is
large-only's own value: the latest re-entry no worse than large-only, its quality at the least cost).

Pure python/numpy, no torch. Every function here is deterministic and checks its inputs; the
``*_premise`` functions say in words why a chosen point should not be trusted (the premise is checked, not
assumed), so the caller can emit an honest schedule instead of a meaningless L-S-L.

Both curves are means over a few prompts and seeds, so both rules take an optional ``margin`` per candidate (in
the curve's units; the caller passes ``noise_se`` standard errors): a candidate reaches the similarity floor, or
equals the late curve's minimum, unless it falls short by more than its margin. With the margin the rules pick
the cheapest candidate the measurement cannot tell apart from the target, the one-standard-error rule of model
selection (Breiman et al. 1984, *Classification and Regression Trees*, sec 3.4.3).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real

import numpy as np
from numpy.typing import ArrayLike

# Relative-slope threshold of Algorithm 1 (App. B; the paper gives no value). Evidence (docs/calibration.md,
# "Choosing alpha"): on the v2.0 demo pair's curve 0.5 fires on a noise dip of the second slope (20 %, similarity
# 0.67), far before the flattening; 0.25 waits until the slope is a quarter of the initial one (60 %, 0.95).
DEFAULT_ALPHA = 0.25

# Algorithm 1's reference slope. "first" is s_0 as printed (App. B); "steepest" is the curve's steepest rise, with the
# search starting there. They agree whenever the curve rises fastest over its first segment, as the paper's curves
# do; when the first segment is flat (the small model decides the structure alone from 0 % and from 10 % alike)
# s_0 is noise and the printed rule finds no knee (docs/calibration.md, "Algorithm 1's reference slope").
EARLY_REFERENCES = ("steepest", "first")
DEFAULT_EARLY_REFERENCE = "steepest"

# DINO similarity to large-only that good early boundaries keep (paper sec 4.2, "above ~96%").
SIMILARITY_FLOOR = 0.96

# Bootstrap resamples of the units for the early boundary's stability, and the share of them the chosen boundary
# must win to count as stable (a majority: below it, a new draw of as many units more likely than not moves it;
# on the demo's 16 units four draws gave three different schedules, docs/demo.md).
STABILITY_DRAWS = 200
STABLE_SHARE = 0.5

# The feature models the floor was read off: the paper measured it with DINO, the calibrator's default is DINOv2.
# Another model's similarities need not share its scale (docs/calibration.md, "Noise": on the demo's feature
# model the floor moves 192 units' knee from the judge's front to 60 %).
FLOOR_FEATURE_MODELS = ("facebook/dinov2-",)
FLOOR_NOTE_PREFIX = "the similarity floor"  # how the summary finds :func:`floor_note`'s note among a record's notes

# Standard errors of slack the early rule gives a point below the similarity floor (module docstring;
# docs/calibration.md, "Noise").
DEFAULT_NOISE_SE = 1.0

# The same for the late rule: 0, the paper's plain minimum. With one SE the rule lands on the far end of a V whose
# differences are all within noise (L-S-S on the demo pair), and the judge's held-out accuracy does not support
# dropping the last stage either (docs/calibration.md, "Noise").
DEFAULT_LATE_NOISE_SE = 0.0

# The paper's rule. On the demo pair "parity" is cheaper (0.737 against 0.824 of the FLOPs) at large-only's judged
# accuracy; the minimum is the better video by the judge's size score (docs/demo.md, "The late rule").
DEFAULT_LATE_RULE = "minimum"


def _curve(name: str, values: ArrayLike) -> np.ndarray:
    """A 1-D finite float64 copy of ``values``, or ValueError naming ``name`` (inputs of sec 4.2/4.3)."""
    arr = np.array(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D sequence of numbers, got shape {arr.shape}: pass one value per candidate"
        )
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] is {arr[i]}: every value must be finite; drop or recompute that point")
    return arr


def _pair(x: ArrayLike, y: ArrayLike, y_name: str, min_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated (x, y) curves of equal length >= ``min_len`` (sweep curves of sec 4.2/4.3)."""
    xa, ya = _curve("x", x), _curve(y_name, y)
    if xa.size != ya.size:
        raise ValueError(
            f"x and {y_name} must have the same length, got {xa.size} and {ya.size}: pass one {y_name} value per x"
        )
    if xa.size < min_len:
        raise ValueError(f"x must hold at least {min_len} candidates, got {xa.size}: sweep more points")
    return xa, ya


def _check_ascending(x: np.ndarray, *, strict: bool) -> None:
    """Reject an x that is not (strictly) ascending, naming the first offending value (App. B input)."""
    steps = np.diff(x)
    bad = np.flatnonzero(steps <= 0 if strict else steps < 0)
    if bad.size:
        i = int(bad[0]) + 1
        order = "strictly ascending" if strict else "ascending (non-decreasing)"
        raise ValueError(
            f"x must be {order}, but x[{i}]={x[i]:g} follows x[{i - 1}]={x[i - 1]:g}: "
            "sort the candidates by x (and reorder the other curve with them) before calling"
        )


def _check_alpha(alpha: float) -> None:
    """Reject an alpha outside the open interval (0, 1) that Algorithm 1 requires (App. B)."""
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}: pass e.g. alpha={DEFAULT_ALPHA}")


def _margin(margin: ArrayLike | None, n: int) -> np.ndarray:
    """Per-candidate margins (zeros for None): finite, >= 0, one per candidate."""
    if margin is None:
        return np.zeros(n)
    arr = _curve("margin", margin)
    if arr.size != n:
        raise ValueError(f"margin must hold one value per candidate ({n}), got {arr.size}: pass noise_se x its SE")
    bad = np.flatnonzero(arr < 0)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"margin[{i}] is {arr[i]:g}: margins must be >= 0 (a number of standard errors x the SE)")
    return arr


def jackknife_se(leave_one_out: ArrayLike) -> np.ndarray:
    """Jackknife standard error per column: sqrt((n-1)/n sum_i (t_i - mean t)^2) over n leave-one-out rows.

    Row ``i`` holds the statistic recomputed without unit ``i`` (Efron & Stein 1981); for a mean this is the
    usual std(ddof=1)/sqrt(n).
    """
    arr = np.array(leave_one_out, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] < 2:
        raise ValueError(
            f"leave_one_out must be 2-D with one row per left-out unit (at least 2), got shape {arr.shape}: "
            "recompute the statistic once without each unit"
        )
    if not np.isfinite(arr).all():
        raise ValueError("leave_one_out holds a non-finite value: every recomputed statistic must be finite")
    n = arr.shape[0]
    return np.sqrt((n - 1) / n * ((arr - arr.mean(axis=0)) ** 2).sum(axis=0))


def mean_se(rows: ArrayLike) -> np.ndarray:
    """Standard error of the per-column mean over units (rows): std(ddof=1)/sqrt(n), the mean's jackknife SE."""
    arr = np.array(rows, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"rows must be 2-D (units x candidates), got shape {arr.shape}")
    if arr.shape[0] == 1:
        return np.zeros(arr.shape[1])  # one unit: no spread to estimate; the rules fall back to the plain ones
    return arr.std(axis=0, ddof=1) / np.sqrt(arr.shape[0])


def difference_se(values: ArrayLike, leave_one_out: ArrayLike, base: int | None = None) -> np.ndarray:
    """Jackknife SE of each candidate's difference to candidate ``base`` (0 there), paired over the same units.

    ``values``: the metric per candidate on all units; ``leave_one_out``: the same metric without each unit (rows);
    ``base``: the candidate compared against, None for the curve's minimum (the ``minimum`` rule), 0 for large-only
    (the ``parity`` rule). The candidates share units and reference, so their difference is far less noisy than
    either value.
    """
    va = _curve("values", values)
    loo = np.array(leave_one_out, dtype=np.float64)
    if loo.ndim != 2 or loo.shape[1] != va.size:
        raise ValueError(
            f"leave_one_out must have one column per candidate ({va.size}), got shape {loo.shape}: "
            "one row per left-out unit"
        )
    if base is None:
        base = int(np.argmin(va))
    _check_index(base, va.size)
    return jackknife_se(loo - loo[:, [base]])


def local_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Step 1 of Algorithm 1 (App. B): s_i = (y_{i+1}-y_i)/(x_{i+1}-x_i), and 0 where dx == 0."""
    dx, dy = np.diff(x), np.diff(y)
    out = np.zeros_like(dy)
    np.divide(dy, dx, out=out, where=dx != 0)
    return out


def _check_reference(reference: str) -> None:
    """Reject a reference slope other than those of :data:`EARLY_REFERENCES`."""
    if reference not in EARLY_REFERENCES:
        raise ValueError(
            f"reference must be one of {', '.join(EARLY_REFERENCES)}, got {reference!r}: pass e.g. "
            f"reference={DEFAULT_EARLY_REFERENCE!r}"
        )


def reference_index(slopes: np.ndarray, reference: str = DEFAULT_EARLY_REFERENCE) -> int:
    """Index of Algorithm 1's reference slope: 0 as printed ("first"), else the steepest rise (0 if none rises)."""
    _check_reference(reference)
    if reference == "first" or slopes.size == 0 or float(slopes.max()) <= 0:
        return 0
    return int(np.argmax(slopes))


def find_early_boundary(
    x: ArrayLike, y: ArrayLike, alpha: float = DEFAULT_ALPHA, reference: str = DEFAULT_EARLY_REFERENCE
) -> tuple[int, float, float]:
    """Algorithm 1 of App. B: first i+1 >= r+1 with s_i <= alpha*s_r, else N-1; returns (k, x_k, y_k).

    ``x``: small-model introduction points in percent, ascending (0 = small-only, 100 = large-only);
    ``y``: mean DINO similarity to large-only at each point (eq. 2). ``reference``: r = 0 as printed ("first"),
    or the steepest slope ("steepest", the default), which is the printed rule whenever s_0 is the steepest.
    When no slope is positive the rule stops at k = 1; use :func:`early_curve_premise` to detect that and other
    "no knee" cases.
    """
    xa, ya = _pair(x, y, "y", min_len=2)
    _check_ascending(xa, strict=False)
    _check_alpha(alpha)
    slopes = local_slopes(xa, ya)
    r = reference_index(slopes, reference)
    threshold = alpha * slopes[r]
    k = xa.size - 1
    for i in range(r, slopes.size):
        if slopes[i] <= threshold:
            k = i + 1
            break
    return k, float(xa[k]), float(ya[k])


def _check_index(k: int, n: int) -> None:
    """Reject a boundary index that does not point into a curve of length ``n``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < n:
        raise ValueError(f"k must be an index into the curve (0 <= k < {n}), got {k!r}: pass the k the finder returned")


def _check_floor(floor: float) -> None:
    if isinstance(floor, bool) or not isinstance(floor, Real) or not math.isfinite(floor):
        raise ValueError(f"floor must be a finite similarity, got {floor!r}: pass e.g. {SIMILARITY_FLOOR}")


def early_curve_premise(
    x: ArrayLike,
    y: ArrayLike,
    k: int,
    floor: float = SIMILARITY_FLOOR,
    margin: ArrayLike | None = None,
    reference: str = DEFAULT_EARLY_REFERENCE,
) -> list[str]:
    """Failed premises of an Algorithm 1 choice (sec 4.2, App. B), one sentence each; [] when all hold.

    ``margin``: per-point allowance below the floor (module docstring); the chosen point fails the floor only when
    ``y[k] + margin[k] < floor``.
    """
    xa, ya = _pair(x, y, "y", min_len=2)
    _check_ascending(xa, strict=False)
    _check_index(k, xa.size)
    _check_floor(floor)
    ma = _margin(margin, xa.size)
    failed = []
    slopes = local_slopes(xa, ya)
    r = reference_index(slopes, reference)
    if slopes[r] <= 0:
        where = "at the start" if reference == "first" else "anywhere"
        failed.append(
            f"curve does not rise {where} (s_{r} = {slopes[r]:.4g} <= 0): Algorithm 1's reference slope "
            "is meaningless and it stops at k=1"
        )
    if k == xa.size - 1:
        failed.append(
            f"no knee: the early boundary landed on the last point (x={xa[k]:g}); similarity keeps rising "
            "with the switch point (or no point from Algorithm 1's knee on reaches the floor), so no early switch "
            "preserves the large model's result"
        )
    if ya[k] + ma[k] < floor:
        within = f" by more than its margin {ma[k]:.4g}" if ma[k] > 0 else ""
        failed.append(f"similarity at the chosen point {ya[k]:.4g} is below the floor {floor:.4g}{within}")
    return failed


def raise_to_floor(
    x: ArrayLike, y: ArrayLike, k: int, floor: float = SIMILARITY_FLOOR, margin: ArrayLike | None = None
) -> int:
    """Algorithm 1's knee ``k`` moved later to the first point whose similarity reaches ``floor`` (sec 4.2).

    The paper picks the boundary just before the curve's drop and observes that such boundaries keep the
    similarity above ~96 %, which is what preserves structure and motion; a knee below the floor is therefore
    moved to the earliest later candidate that keeps it. A point reaches the floor when ``y + margin >= floor``
    (``margin``: e.g. one standard error of the mean similarity, module docstring; None: the plain rule). Returns
    ``k`` when it reaches the floor, the last index (large-only) when no point from ``k`` on does.
    """
    xa, ya = _pair(x, y, "y", min_len=2)
    _check_index(k, xa.size)
    _check_floor(floor)
    ma = _margin(margin, xa.size)
    for i in range(int(k), xa.size):
        if ya[i] + ma[i] >= floor:
            return i
    return xa.size - 1


def early_boundary_stability(
    x: ArrayLike,
    per_unit: ArrayLike,
    alpha: float = DEFAULT_ALPHA,
    floor: float = SIMILARITY_FLOOR,
    noise_se: float = DEFAULT_NOISE_SE,
    reference: str = DEFAULT_EARLY_REFERENCE,
    draws: int = STABILITY_DRAWS,
    seed: int = 0,
) -> tuple[float, ...]:
    """Share of bootstrap resamples of the units in which each point of ``x`` is the early boundary (App. B, sec 4.2).

    ``per_unit``: ``(units, points)`` similarities to large-only. Each resample draws the units with replacement
    and chooses as the calibration does: Algorithm 1's knee on the mean curve, moved to the first point within
    ``noise_se`` standard errors of ``floor`` (:func:`raise_to_floor`). Deterministic for a given ``seed``.
    """
    xa = _curve("x", x)
    rows = np.array(per_unit, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != xa.size or rows.shape[0] < 1:
        raise ValueError(
            f"per_unit must be (units, points) with one column per point of x ({xa.size}), got shape {rows.shape}: "
            "pass each unit's similarity curve as a row"
        )
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be an int >= 1, got {draws!r}: pass e.g. {STABILITY_DRAWS}")
    rng = np.random.default_rng(seed)
    counts = np.zeros(xa.size)
    for _ in range(draws):
        sample = rows[rng.integers(0, rows.shape[0], size=rows.shape[0])]
        y = sample.mean(axis=0)
        knee, _, _ = find_early_boundary(xa, y, alpha, reference)
        counts[raise_to_floor(xa, y, knee, floor, noise_se * mean_se(sample))] += 1
    return tuple(float(c / draws) for c in counts)


def floor_note(feature_model: str, floor: float, knee: float | None, chosen: float) -> str | None:
    """A warning when the default floor moved Algorithm 1's knee (``knee`` to ``chosen``, in %) on a non-DINOv2 model.

    The 0.96 floor is the paper's reading of DINO similarities on real video (sec 4.2); with another feature
    model it is a number on a different scale. None when the floor did not move the knee, was set to another
    value, or the feature model is one of :data:`FLOOR_FEATURE_MODELS`.
    """
    if knee is None or knee == chosen or floor != SIMILARITY_FLOOR:
        return None
    if any(str(feature_model).startswith(prefix) for prefix in FLOOR_FEATURE_MODELS):
        return None
    return (
        f"{FLOOR_NOTE_PREFIX} {floor:g} moved the early boundary from Algorithm 1's knee at {knee:g}% to {chosen:g}%. "
        f"{floor:g} is the paper's reading of DINO(v2) similarities on real video (sec 4.2); the feature model here "
        f"({feature_model}) need not share that scale. Check the early curve in the report against videos you "
        'judge, and pass --floor for this feature model (docs/calibration.md, "Noise").'
    )


def find_late_boundary(
    x: ArrayLike, fid: ArrayLike, rtol: float = 1e-9, margin: ArrayLike | None = None
) -> tuple[int, float, float]:
    """Minimum of the FID V-curve (sec 4.3); ties within ``rtol`` go to fewer large steps (larger x).

    ``x``: large-model re-entry point in percent of the process from its start, strictly ascending
    (80 means the last 20% runs on the large model). ``margin``: per candidate, how far above the minimum it may
    be and still count as tied (e.g. one standard error of its difference to the minimum, module docstring):
    the latest such candidate is chosen. Returns (k, x_k, fid_k).
    """
    xa, fa = _pair(x, fid, "fid", min_len=2)
    _check_ascending(xa, strict=True)
    if isinstance(rtol, bool) or not isinstance(rtol, Real) or not (math.isfinite(rtol) and rtol >= 0):
        raise ValueError(f"rtol must be a finite number >= 0, got {rtol!r}: pass e.g. rtol=1e-9")
    ma = _margin(margin, xa.size)
    lowest = fa.min()
    tied = np.flatnonzero(np.isclose(fa, lowest, rtol=rtol, atol=0.0) | (fa <= lowest + ma))
    k = int(tied[-1])
    return k, float(xa[k]), float(fa[k])


def late_curve_premise(x: ArrayLike, fid: ArrayLike, k: int, metric: str = "FID") -> list[str]:
    """Failed premises of a late choice (sec 4.3: a V-curve with an interior minimum); [] when all hold.

    ``k`` is the chosen candidate: with a margin (:func:`find_late_boundary`) an interior minimum that the last
    candidate (L-S-S) ties within its margin does not count as one.
    """
    xa, fa = _pair(x, fid, "fid", min_len=2)
    _check_ascending(xa, strict=True)
    _check_index(k, xa.size)
    if 0 < k < xa.size - 1:
        return []
    lowest = int(np.argmin(fa))
    if k == xa.size - 1 and 0 < lowest < xa.size - 1:
        return [
            f"no interior minimum beyond noise: the {metric} minimum at x={xa[lowest]:g} ({fa[lowest]:.4g}) is within "
            f"the margin of no re-entry (x={xa[k]:g}, {fa[k]:.4g}); re-entering the large model is not measurably "
            "better than L-S-S on these prompts"
        ]
    if k == xa.size - 1:
        why = f"re-entering the large model earlier never lowers {metric}"
    else:
        why = f"{metric} keeps falling with more large-model steps; extend the grid to earlier re-entry points"
    where = f"x={xa[k]:g}, {metric} {fa[k]:.4g}"
    return [f"no interior minimum: the {metric} minimum is at an end of the grid ({where}); {why}"]


def find_parity_boundary(x: ArrayLike, values: ArrayLike, margin: ArrayLike | None = None) -> tuple[int, float, float]:
    """Latest re-entry whose late metric is no worse than large-only's (App. B's FID threshold, module docstring).

    ``x``: re-entry points ascending, the first at the early boundary (no small steps: large-only), the last
    usually 100 (L-S-S); ``values``: the metric per candidate, lower is better. A candidate is at parity when
    ``values[k] <= values[0] + margin[k]`` (``margin``: e.g. one SE of its difference to large-only); the latest
    such candidate is chosen, 0 (large-only) when none is. Returns (k, x_k, value_k).
    """
    xa, va = _pair(x, values, "values", min_len=2)
    _check_ascending(xa, strict=True)
    ma = _margin(margin, xa.size)
    k = int(np.flatnonzero(va <= va[0] + ma)[-1])
    return k, float(xa[k]), float(va[k])


def parity_curve_premise(x: ArrayLike, values: ArrayLike, k: int, metric: str = "FID") -> list[str]:
    """Failed premises of a parity choice: some blend reaches large-only and L-S-S does not; [] when both hold."""
    xa, va = _pair(x, values, "values", min_len=2)
    _check_ascending(xa, strict=True)
    _check_index(k, xa.size)
    if k == 0:
        return [
            f"no re-entry point reaches large-only's {metric} ({va[0]:.4g} at x={xa[0]:g}; the lowest later one is "
            f"{va[1:].min():.4g}): every small-model stage from this early boundary costs quality"
        ]
    if k == xa.size - 1:
        return [
            f"no re-entry needed: L-S-S (x={xa[k]:g}, {metric} {va[k]:.4g}) is no worse than large-only "
            f"({va[0]:.4g}); the late stage is not capacity-sensitive on these prompts"
        ]
    return []


@dataclass(frozen=True)
class LateRule:
    """A late rule: its finder, its premise check and the candidate its margins are measured against."""

    find: Callable[..., tuple[int, float, float]]  # (x, values, margin=...) -> (k, x_k, value_k)
    premise: Callable[..., list[str]]  # (x, values, k, metric) -> failed premises
    base: int | None  # difference_se's base: None for the minimum, 0 for large-only
    help: str


LATE_RULES: dict[str, LateRule] = {
    "minimum": LateRule(find_late_boundary, late_curve_premise, None, "the V-curve's minimum (paper sec 4.3)"),
    "parity": LateRule(
        find_parity_boundary, parity_curve_premise, 0, "the latest re-entry no worse than large-only's value"
    ),
}
"""How the late boundary is read off the curve (module docstring), by ``--late-rule`` name."""
