"""FlowBlending: stage-aware multi-model sampling for flow-matching video diffusion (large-small-large).

Light imports (profiles, schedules) load eagerly; everything that needs torch/diffusers loads on first use.
"""

from __future__ import annotations

from typing import Any

from .errors import FlowBlendingError, IncompatibleModelsError, ModelNotAvailableError, ProfileError
from .profile import Profile, load_profile, save_profile, shipped_profile_names
from .schedule import Segment, plan_steps

__version__ = "0.1.0"

_LAZY = {
    "apply_profile": "loading",
    "load_pipeline": "loading",
    "load_transformer": "loading",
    "RoutingTransformer": "router",
    "schedule_cost": "cost",
    "make_profile": "compose",
}

__all__ = [
    "FlowBlendingError",
    "IncompatibleModelsError",
    "ModelNotAvailableError",
    "Profile",
    "ProfileError",
    "Segment",
    "__version__",
    "load_profile",
    "plan_steps",
    "save_profile",
    "shipped_profile_names",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'flowblending' has no attribute {name!r}")
