"""Aggregation over per-prompt results: divergence statistics, the early and late curves and the choice.

Pure functions over the JSON/tensors the passes store per (prompt, seed) unit, so that one process, N ranks
and ``--merge`` all reach the same numbers (means recomputed from per-unit results; FID from the union of all
units' feature statistics, never from per-rank FIDs).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from flowblending.schedule import Segment, merge_segments

from .boundaries import early_curve_premise, find_early_boundary, find_late_boundary, late_curve_premise
from .config import CalibrationConfig
from .divergence import divergence_boundaries, divergence_premise, divergence_stats
from .protocol import Unit


def large_only() -> tuple[Segment, ...]:
    return (Segment("large", 0.0, 1.0),)


def lsl(early: float, late: float) -> tuple[Segment, ...]:
    """Large [0, early), small [early, late), large [late, 1), with empty segments dropped."""
    early, late = round(early, 6), round(late, 6)
    parts = [Segment("large", 0.0, early)] if early > 0 else []
    if late > early:
        parts.append(Segment("small", early, late))
    if late < 1:
        parts.append(Segment("large", max(late, early), 1.0))
    return merge_segments(parts) if parts else large_only()


def stats(rows: list[list[float]]) -> dict[str, list[float]]:
    s = divergence_stats(np.asarray(rows, dtype=np.float64))
    return {"mean": [float(v) for v in s["mean"]], "std": [float(v) for v in s["std"]]}


def divergence_block(pass1: dict, units: list[Unit], n: int, sigmas: list[float]) -> dict[str, Any]:
    """Mean and spread over prompts per step of both distances, per call, and the proxy boundaries (sec 5.1)."""
    block: dict[str, Any] = {"fraction": [i / n for i in range(n)], "sigma": sigmas}
    for metric in ("cosine", "l2"):
        block[metric] = stats([pass1[u.key]["divergence"][metric]["all"] for u in units])
    labels = [k for k in pass1[units[0].key]["divergence"]["cosine"] if k != "all"]
    block["per_call"] = {
        label: {m: stats([pass1[u.key]["divergence"][m][label] for u in units]) for m in ("cosine", "l2")}
        for label in labels
    }
    mean, std = np.asarray(block["cosine"]["mean"]), np.asarray(block["cosine"]["std"])
    early, late = divergence_boundaries(mean, std)
    block["proxy_boundaries"] = [float(early), float(late)]
    block["premise"] = divergence_premise(mean, std, early, late)
    return block


def early_block(pass1: dict, units: list[Unit], early_steps: list[int], n: int, config: CalibrationConfig) -> dict:
    """Mean similarity to large-only per switch point, and Algorithm 1's choice (sec 4.2, App. B)."""
    xs = [100 * k / n for k in early_steps] + [100.0]
    block: dict[str, Any] = {"x": xs, "steps": [*early_steps, n], "alpha": config.alpha, "floor": config.floor}
    metrics = list(pass1[units[0].key]["early"][str(early_steps[0])])
    for metric in metrics:
        top = 1.0 if metric in ("dino", "clip", "ssim") else math.inf
        rows = [[pass1[u.key]["early"][str(k)][metric] for k in early_steps] + [top] for u in units]
        if metric == "psnr":  # large-only against itself is infinite: leave the last point out of the stats
            rows = [r[:-1] for r in rows]
            s = stats(rows)
            block[metric] = {"mean": [*s["mean"], None], "std": [*s["std"], None]}
        else:
            block[metric] = stats(rows)
    block.setdefault("clip", None)
    y = block["dino"]["mean"]
    k, xk, yk = find_early_boundary(xs, y, config.alpha)
    block["chosen"] = {"index": int(k), "x": float(xk), "y": float(yk)}
    block["premise"] = early_curve_premise(xs, y, k, config.floor)
    return block


def fid_state(features: torch.Tensor, dim: int, name: str) -> dict[str, Any]:
    """FeatureFID statistics of generated ("fake") frame features (what torchmetrics accumulates)."""
    f = features.to(torch.float64)
    zeros = torch.zeros(dim, dtype=torch.float64)
    return {
        "real_features_sum": zeros.clone(),
        "real_features_cov_sum": torch.zeros(dim, dim, dtype=torch.float64),
        "real_features_num_samples": torch.tensor(0),
        "fake_features_sum": f.sum(dim=0),
        "fake_features_cov_sum": f.t().mm(f),
        "fake_features_num_samples": torch.tensor(f.shape[0]),
        "feature_name": name,
        "num_features": dim,
    }


def late_block(
    xs_steps: list[int],
    n: int,
    per_unit: list[dict[int, torch.Tensor]],
    reference_state: dict[str, Any],
    fid_extractor: Any,
    reference_frames: int,
) -> dict[str, Any]:
    """FID of every late candidate over all units' frames against the reference, and its minimum (sec 4.3)."""
    from .metrics import FeatureFID

    values = []
    for r in xs_steps:
        fid = FeatureFID(fid_extractor)
        fid.merge(reference_state)
        for feats in per_unit:
            fid.merge(fid_state(feats[r], fid.dim, fid.name))
        values.append(float(fid.compute()))
    xs = [100 * r / n for r in xs_steps]
    k, xk, fk = find_late_boundary(xs, values)
    return {
        "source": "fid",
        "x": xs,
        "steps": list(xs_steps),
        "fid": values,
        "chosen": {"index": int(k), "x": float(xk), "fid": float(fk)},
        "premise": late_curve_premise(xs, values, k),
        "feature": getattr(fid_extractor, "name", None),
        "reference_frames": reference_frames,
    }


def early_decision(config: CalibrationConfig, block: dict[str, Any] | None, n: int) -> tuple[int | None, list[str]]:
    """The early boundary step to sweep the late boundary from (None: the premise failed), and notes."""
    if block is None:
        return None, []
    if config.early_boundary is not None:
        from flowblending.schedule import first_step

        step = first_step(config.early_boundary, n)
        return step, [
            f"early boundary fixed by --early-boundary {config.early_boundary} (step {step}); Algorithm 1's "
            "choice is reported but not used."
        ]
    step = round(block["chosen"]["x"] / 100 * n)
    if block["premise"] or step >= n:
        return None, []
    return step, []
