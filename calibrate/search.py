"""``--method sweep`` and ``--method search``: every segment pattern (or a beam over them), scored, on a front.

Paper sec 5.2 evaluates "nearly the entire space" of schedules in 12.5 % segments. ``sweep`` walks all 2^K
patterns per (prompt, seed) on the prefix trie (:func:`calibrate.sweep.walk_trie`: each trie node computed
once); ``search`` runs :func:`calibrate.sweep.beam_search` for larger K. Each schedule gets a FID against the
reference (same extractor as the late sweep), a DINO similarity to large-only and its FLOPs; the Pareto fronts
are computed by pure functions; ``--tolerance`` picks the cheapest schedule whose FID is within that relative
margin of large-only's (without a reference: whose similarity to large-only is at least 1 - tolerance).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from flowblending.cost import schedule_cost

from .aggregate import fid_state
from .pareto import choose_within_tolerance, pareto_front, pareto_front_max
from .protocol import Generator, Unit
from .sweep import TrieStats, all_patterns, beam_search, pattern_plan, walk_trie


def _similarity(features: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean over frames of the cosine similarity of frame features (paper eq. 2)."""
    return float(torch.nn.functional.cosine_similarity(features.double(), reference.double(), dim=1).mean())


def sweep_unit(gen: Generator, unit: Unit, segments: int, extractor: Any, fid_extractor: Any | None) -> dict[str, Any]:
    """All 2^K patterns of one unit on the prefix trie: DINO similarity to large-only and FID features each."""
    from .metrics import frames_of

    dino: dict[str, float] = {}
    fid_features: dict[str, torch.Tensor] = {}
    reference: dict[str, torch.Tensor] = {}

    def on_leaf(pattern: str, frames: torch.Tensor) -> None:
        flat = frames_of(frames)
        feats = extractor(flat)
        if not reference:  # the first leaf is large-only
            reference["large"] = feats
        dino[pattern] = _similarity(feats, reference["large"])
        if fid_extractor is not None:
            fid_features[pattern] = (feats if fid_extractor is extractor else fid_extractor(flat)).cpu()

    stats = walk_trie(gen, unit, segments, on_leaf)
    return {"dino": dino, "fid_features": fid_features or None, "stats": asdict(stats)}


def _flops(pattern: str, n: int, flops_per_step: dict[str, float]) -> float:
    return schedule_cost(pattern_plan(pattern, n), flops_per_step).flops_total


def sweep_block(
    per_unit: list[dict[str, Any]],
    n: int,
    flops_per_step: dict[str, float],
    tolerance: float,
    reference_state: dict[str, Any] | None,
    fid_extractor: Any | None,
    reference_frames: int,
) -> dict[str, Any]:
    """Every pattern's FLOPs, FID and DINO similarity over all units, the Pareto fronts and the choice."""
    from .metrics import FeatureFID

    patterns = list(per_unit[0]["dino"])
    dino = [sum(u["dino"][p] for u in per_unit) / len(per_unit) for p in patterns]
    flops = [_flops(p, n, flops_per_step) for p in patterns]
    fid: list[float] | None = None
    if reference_state is not None and fid_extractor is not None:
        fid = []
        for p in patterns:
            metric = FeatureFID(fid_extractor)
            metric.merge(reference_state)
            for u in per_unit:
                metric.merge(fid_state(u["fid_features"][p], metric.dim, metric.name))
            fid.append(float(metric.compute()))
    large_only = patterns.index("L" * len(patterns[0]))
    if fid is not None:
        chosen = choose_within_tolerance(flops, fid, fid[large_only], tolerance)
        rule = f"cheapest schedule with FID <= large-only FID x (1 + {tolerance:g})"
    else:
        loss = [1.0 - d for d in dino]
        eligible = [i for i, v in enumerate(loss) if v <= tolerance + 1e-12]
        chosen = min(eligible, key=lambda i: (flops[i], loss[i], i))
        rule = f"cheapest schedule with DINO similarity to large-only >= 1 - {tolerance:g} (no --reference)"
    stats = [TrieStats(**{**u["stats"], "roles": tuple(u["stats"]["roles"])}) for u in per_unit]
    return {
        "segments": len(patterns[0]),
        "patterns": patterns,
        "flops": flops,
        "fid": fid,
        "dino": dino,
        "front_fid": pareto_front(list(zip(flops, fid, strict=True))) if fid is not None else None,
        "front_dino": pareto_front_max(list(zip(flops, dino, strict=True))),
        "tolerance": tolerance,
        "rule": rule,
        "chosen": {
            "index": chosen,
            "pattern": patterns[chosen],
            "flops": flops[chosen],
            "fid": fid[chosen] if fid is not None else None,
            "dino": dino[chosen],
        },
        "large_only": {"pattern": patterns[large_only], "fid": fid[large_only] if fid is not None else None},
        "reference_frames": reference_frames,
        "cost": _cost_block(stats),
    }


def _cost_block(stats: list[TrieStats]) -> dict[str, Any]:
    total = stats[0]
    for s in stats[1:]:
        total.units += s.units
        total.schedules += s.schedules
        total.runs += s.runs
        total.replayed += s.replayed
        for role, v in s.segment_evaluations.items():
            total.segment_evaluations[role] = total.segment_evaluations.get(role, 0) + v
        for role, v in s.calls.items():
            total.calls[role] = total.calls.get(role, 0) + v
    return {
        "segment_evaluations": dict(total.segment_evaluations),
        "calls": dict(total.calls),
        "exhaustive_trie_segment_evaluations": total.trie_segment_evaluations,
        "from_scratch_segment_evaluations": total.scratch_segment_evaluations,
        "from_scratch_calls": total.scratch_calls,
        "max_recordings_held": total.max_stack,
        "summary": total.summary(),
    }


def run_search(
    gen: Generator,
    units: list[Unit],
    segments: int,
    beam_width: int,
    tolerance: float,
    extractor: Any,
    fid_extractor: Any | None,
    reference_state: dict[str, Any] | None,
    flops_per_step: dict[str, float],
    divergence: list[float],
) -> dict[str, Any]:
    """Beam search over K segments scored on all units (FID, or 1 - DINO similarity without a reference)."""
    from .metrics import FeatureFID, frames_of

    large_feats: list[torch.Tensor] = []

    def score(pattern: str, frames_per_unit: list[torch.Tensor]) -> float:
        feats = [extractor(frames_of(f)) for f in frames_per_unit]
        if not large_feats:  # beam_search scores large-only first
            large_feats.extend(feats)
        if fid_extractor is None or reference_state is None:
            return 1.0 - sum(_similarity(f, r) for f, r in zip(feats, large_feats, strict=True)) / len(feats)
        metric = FeatureFID(fid_extractor)
        metric.merge(reference_state)
        for f, frames in zip(feats, frames_per_unit, strict=True):
            ff = f if fid_extractor is extractor else fid_extractor(frames_of(frames))
            metric.merge(fid_state(ff.cpu(), metric.dim, metric.name))
        return float(metric.compute())

    per_step = [divergence[i] for i in range(gen.num_steps)]
    result = beam_search(
        gen, units, segments, score, beam_width, tolerance=tolerance, flops_per_step=flops_per_step, divergence=per_step
    )
    stats = result.stats
    return {
        "segments": segments,
        "beam_width": beam_width,
        "tolerance": tolerance,
        "score": "FID" if reference_state is not None else "1 - DINO similarity to large-only",
        "candidates": [asdict(c) for c in result.candidates],
        "beams": result.beams,
        "chosen": asdict(result.chosen),
        "reference_score": result.reference_score,
        "cost": _cost_block([stats]) | {"patterns_in_space": 2**segments},
    }


def save_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)


__all__ = ["all_patterns", "run_search", "save_json", "sweep_block", "sweep_unit"]
