"""The FlowBlending calibrator: where should a sampler switch from the large model to the small one and back?

``calibrate(config)`` runs a prompt set through both models and writes a profile; the paper's choice rules are
pure functions (``find_early_boundary``: Algorithm 1; ``find_late_boundary``: the FID V-curve minimum;
``find_parity_boundary``: the latest re-entry no worse than large-only; ``divergence_boundaries``: the U-curve
proxy). Names are imported on first access, so ``import calibrate`` is
cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowblending.lazy import lazy_exports

# public name -> submodule that defines it
_LAZY = {
    "calibrate": "runner",
    "load_pair": "runner",
    "merge": "finalize",
    "CalibrationOutcome": "finalize",
    "CalibrationConfig": "config",
    "CalibrationError": "config",
    "CalibrationRecord": "record",
    "METHODS": "methods",
    "get_method": "methods",
    "WorkDir": "workdir",
    "find_early_boundary": "boundaries",
    "find_late_boundary": "boundaries",
    "find_parity_boundary": "boundaries",
    "early_curve_premise": "boundaries",
    "late_curve_premise": "boundaries",
    "parity_curve_premise": "boundaries",
    "LATE_RULES": "boundaries",
    "divergence_boundaries": "divergence",
    "divergence_premise": "divergence",
    "velocity_distances": "divergence",
    "load_feature_extractor": "features",
    "FeatureFID": "metrics",
    "frame_similarity": "metrics",
    "pareto_front": "pareto",
    "choose_within_tolerance": "pareto",
    "walk_trie": "trie",
    "beam_search": "trie",
}

__all__ = [
    "LATE_RULES",
    "METHODS",
    "CalibrationConfig",
    "CalibrationError",
    "CalibrationOutcome",
    "CalibrationRecord",
    "FeatureFID",
    "WorkDir",
    "beam_search",
    "calibrate",
    "choose_within_tolerance",
    "divergence_boundaries",
    "divergence_premise",
    "early_curve_premise",
    "find_early_boundary",
    "find_late_boundary",
    "find_parity_boundary",
    "frame_similarity",
    "get_method",
    "late_curve_premise",
    "load_feature_extractor",
    "load_pair",
    "merge",
    "pareto_front",
    "parity_curve_premise",
    "velocity_distances",
    "walk_trie",
]

if TYPE_CHECKING:
    from .boundaries import (
        LATE_RULES,
        early_curve_premise,
        find_early_boundary,
        find_late_boundary,
        find_parity_boundary,
        late_curve_premise,
        parity_curve_premise,
    )
    from .config import CalibrationConfig, CalibrationError
    from .divergence import divergence_boundaries, divergence_premise, velocity_distances
    from .features import load_feature_extractor
    from .finalize import CalibrationOutcome, merge
    from .methods import METHODS, get_method
    from .metrics import FeatureFID, frame_similarity
    from .pareto import choose_within_tolerance, pareto_front
    from .record import CalibrationRecord
    from .runner import calibrate, load_pair
    from .trie import beam_search, walk_trie
    from .workdir import WorkDir


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
