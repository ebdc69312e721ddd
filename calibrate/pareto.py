"""The quality-FLOPs Pareto front of a schedule sweep and the tolerance choice (paper sec 5.2, Figure 7).

Pure python, no torch and no numpy: the inputs are the per-schedule numbers a sweep already computed
(FLOPs from :func:`flowblending.cost.schedule_cost`, FID against the reference set, DINO similarity to
large-only), so the report, the CLI and ``--merge`` reach the same front from the same JSON.

Rules, stated once:

- A point ``q`` dominates ``p`` when ``q`` is no worse in both coordinates and strictly better in one
  (cost is minimised; quality is minimised for losses such as FID, maximised for similarities).
- Identical points: the first (lowest index) stays on the front, later copies are dominated.
- A point with the same cost and a worse quality, or the same quality and a higher cost, is dominated.
- Fronts are returned in ascending cost (the staircase a plot draws from left to right).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _number(name: str, value: object) -> float:
    """``value`` as a finite float, or ValueError naming ``name`` and the fix (inputs of sec 5.2)."""
    if isinstance(value, bool | str | bytes):
        raise ValueError(f"{name} must be a number, got {value!r}: pass a float per schedule")
    try:
        out = float(value)  # type: ignore[arg-type]  # also numpy / torch scalars
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}: pass a float per schedule") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} is {out}: every value must be finite; drop or recompute that schedule")
    return out


def _points(points: Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """Validated (cost, quality) pairs of a sweep (sec 5.2)."""
    if isinstance(points, str | bytes) or not isinstance(points, Sequence):
        raise ValueError(
            f"points must be a sequence of (cost, quality) pairs, got {type(points).__name__}: "
            "pass e.g. [(flops, fid), ...]"
        )
    out = []
    for i, p in enumerate(points):
        if isinstance(p, str | bytes) or not isinstance(p, Sequence) or len(p) != 2:
            raise ValueError(f"points[{i}] must be a (cost, quality) pair, got {p!r}: pass two numbers per schedule")
        out.append((_number(f"points[{i}][0] (cost)", p[0]), _number(f"points[{i}][1] (quality)", p[1])))
    return out


def pareto_front(points: Sequence[Sequence[float]], *, maximize: bool = False) -> list[int]:
    """Indices of the (cost, quality) points on the Pareto front, in ascending cost (paper sec 5.2, Fig. 7).

    Cost is minimised; quality is minimised (FID) or, with ``maximize=True``, maximised (DINO similarity).
    Identical points: the first index is kept; equal cost with worse quality, or equal quality with higher
    cost, is dominated.
    """
    pts = _points(points)
    sign = -1.0 if maximize else 1.0
    order = sorted(range(len(pts)), key=lambda i: (pts[i][0], sign * pts[i][1], i))
    front: list[int] = []
    best = math.inf
    for i in order:
        loss = sign * pts[i][1]
        if loss < best:  # strictly better than every cheaper-or-equal point seen so far
            front.append(i)
            best = loss
    return front


def pareto_front_max(points: Sequence[Sequence[float]]) -> list[int]:
    """Front of (cost minimised, quality maximised) points, e.g. FLOPs vs DINO similarity (sec 5.2)."""
    return pareto_front(points, maximize=True)


def choose_within_tolerance(
    costs: Sequence[float], fids: Sequence[float], reference_fid: float, tolerance: float
) -> int:
    """Index of the cheapest schedule whose FID is within ``tolerance`` (relative) of the reference (sec 5.2).

    Within means ``fid <= reference_fid * (1 + tolerance)``; the reference is large-only's FID. Ties in
    cost go to the lower FID, then to the earlier index (pattern order). Any pattern may win (S-L-L,
    L-S-L-S-L, ...); include large-only among the schedules so that one always qualifies.
    """
    if isinstance(costs, str | bytes) or not isinstance(costs, Sequence):
        raise ValueError(f"costs must be a sequence of numbers, got {type(costs).__name__}: pass one per schedule")
    if isinstance(fids, str | bytes) or not isinstance(fids, Sequence):
        raise ValueError(f"fids must be a sequence of numbers, got {type(fids).__name__}: pass one per schedule")
    if len(costs) != len(fids):
        raise ValueError(
            f"costs and fids must have the same length, got {len(costs)} and {len(fids)}: pass one of each per "
            "schedule, in the same order"
        )
    if not costs:
        raise ValueError("costs is empty: pass at least one schedule (large-only among them)")
    cost = [_number(f"costs[{i}]", c) for i, c in enumerate(costs)]
    fid = [_number(f"fids[{i}]", f) for i, f in enumerate(fids)]
    ref = _number("reference_fid", reference_fid)
    if ref < 0:
        raise ValueError(
            f"reference_fid must be >= 0 (a relative tolerance needs a non-negative reference), got {ref}: "
            "pass large-only's FID"
        )
    tol = _number("tolerance", tolerance)
    if tol < 0:
        raise ValueError(f"tolerance must be >= 0 (relative, 0.02 = 2% above large-only's FID), got {tol}")
    limit = ref * (1.0 + tol)
    ok = [i for i in range(len(cost)) if fid[i] <= limit]
    if not ok:
        best = min(range(len(fid)), key=lambda i: (fid[i], i))
        raise ValueError(
            f"no schedule has an FID within tolerance={tol} of reference_fid={ref} (limit {limit:.6g}); the "
            f"lowest is fids[{best}]={fid[best]:.6g}: include the large-only schedule or raise the tolerance"
        )
    return min(ok, key=lambda i: (cost[i], fid[i], i))
