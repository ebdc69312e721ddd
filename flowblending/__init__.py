"""FlowBlending: stage-aware multi-model sampling for flow-matching video diffusion (large-small-large)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports

__version__ = "0.1.0"

# public name -> submodule that defines it; imported on first access so `import flowblending` stays cheap
_LAZY = {
    "FlowBlendingError": "errors",
    "IncompatibleModelsError": "errors",
    "ModelNotAvailableError": "errors",
    "ProfileError": "errors",
    "Profile": "profile",
    "load_profile": "profile",
    "save_profile": "profile",
    "shipped_profile_names": "profile",
    "Segment": "schedule",
    "plan_steps": "schedule",
    "apply_profile": "loading",
    "load_pipeline": "loading",
    "load_transformer": "loading",
    "RoutingTransformer": "router",
    "BlendCacheConfig": "caching",
    "apply_blend_cache": "caching",
    "RoleOffloadConfig": "offload",
    "apply_role_offload": "offload",
    "schedule_cost": "cost",
    "make_profile": "compose",
}

__all__ = [
    "BlendCacheConfig",
    "FlowBlendingError",
    "IncompatibleModelsError",
    "ModelNotAvailableError",
    "Profile",
    "ProfileError",
    "RoleOffloadConfig",
    "RoutingTransformer",
    "Segment",
    "__version__",
    "apply_blend_cache",
    "apply_profile",
    "apply_role_offload",
    "load_pipeline",
    "load_profile",
    "load_transformer",
    "make_profile",
    "plan_steps",
    "save_profile",
    "schedule_cost",
    "shipped_profile_names",
]

if TYPE_CHECKING:
    from .caching import BlendCacheConfig, apply_blend_cache
    from .compose import make_profile
    from .cost import schedule_cost
    from .errors import FlowBlendingError, IncompatibleModelsError, ModelNotAvailableError, ProfileError
    from .loading import apply_profile, load_pipeline, load_transformer
    from .offload import RoleOffloadConfig, apply_role_offload
    from .profile import Profile, load_profile, save_profile, shipped_profile_names
    from .router import RoutingTransformer
    from .schedule import Segment, plan_steps


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
