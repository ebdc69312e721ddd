"""Tiny, offline, deterministic models for FlowBlending's tests and benchmarks (see docs/testing.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowblending.lazy import lazy_exports

# public name -> submodule that defines it; imported on first access so importing the package costs nothing
_LAZY = {
    "TinyPair": "pairs",
    "TEXT_DIM": "text",
    "tiny_tokenizer": "text",
    "tiny_umt5_config": "text",
    "save_tiny_wan_pair": "wan",
    "save_tiny_ltx_pair": "ltx",
    "save_tiny_ltx_single_file": "ltx",
    "save_tiny_ldl_profile": "ltx",
    "paper_ldl": "ltx",
    "cond_half": "ltx",
    "save_tiny_skyreels_pair": "families",
    "save_tiny_wan_i2v_pair": "families",
    "save_tiny_sana_pair": "families",
    "save_tiny_sd3_pair": "families",
    "SCHEDULER_KINDS": "schedulers",
    "make_scheduler": "schedulers",
    "save_tiny_profile": "profiles",
    "save_tiny_dinov2": "features",
    "save_reference_frames": "reference",
}

__all__ = [
    "SCHEDULER_KINDS",
    "TEXT_DIM",
    "TinyPair",
    "cond_half",
    "make_scheduler",
    "paper_ldl",
    "save_reference_frames",
    "save_tiny_dinov2",
    "save_tiny_ldl_profile",
    "save_tiny_ltx_pair",
    "save_tiny_ltx_single_file",
    "save_tiny_profile",
    "save_tiny_sana_pair",
    "save_tiny_sd3_pair",
    "save_tiny_skyreels_pair",
    "save_tiny_wan_i2v_pair",
    "save_tiny_wan_pair",
    "tiny_tokenizer",
    "tiny_umt5_config",
]

if TYPE_CHECKING:
    from .families import save_tiny_sana_pair, save_tiny_sd3_pair, save_tiny_skyreels_pair, save_tiny_wan_i2v_pair
    from .features import save_tiny_dinov2
    from .ltx import cond_half, paper_ldl, save_tiny_ldl_profile, save_tiny_ltx_pair, save_tiny_ltx_single_file
    from .pairs import TinyPair
    from .profiles import save_tiny_profile
    from .reference import save_reference_frames
    from .schedulers import SCHEDULER_KINDS, make_scheduler
    from .text import TEXT_DIM, tiny_tokenizer, tiny_umt5_config
    from .wan import save_tiny_wan_pair


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
