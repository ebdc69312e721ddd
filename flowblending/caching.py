"""diffusers' cache hooks on a blend: each role's transformer gets its own copy of a cache config.

The router treats each stretch (the maximal run of consecutive steps of one role) as a complete run for the role's
caches: their state is reset when the stretch starts, and the cache context reports steps counted from the
stretch's first step and the stretch's length as ``num_inference_steps``. MagCache and TaylorSeer count their own
steps from the reset, so they number a stretch 0..length-1 as well; MagCache's ``num_inference_steps`` and
``mag_ratios`` are set to the stretch's length and its slice of the role's ratios when the stretch starts.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .errors import FlowBlendingError

if TYPE_CHECKING:
    from .router import RoutingTransformer

CACHE_KINDS = ("first-block", "taylorseer", "magcache")
CACHE_SPEC_HELP = (
    "first-block[:THRESHOLD] (default 0.05), taylorseer[:INTERVAL[:WARMUP]] (lite mode, default 5:3), "
    "magcache:THRESHOLD:RATIOS.json (a JSON object role -> that model's mag_ratios over a whole run)"
)


@dataclass
class BlendCacheConfig:
    """diffusers cache configs for a blend: ``default`` for every role, ``per_role`` replacing it for some roles."""

    default: Any = None
    per_role: dict[str, Any] = field(default_factory=dict)

    def for_role(self, role: str) -> Any:
        """The config of one role (``None``: the role runs uncached)."""
        return self.per_role.get(role, self.default)


def _supported() -> tuple[type, ...]:
    from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

    return FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig


def as_blend_cache_config(cache: Any) -> BlendCacheConfig:
    """A ``BlendCacheConfig`` from one diffusers cache config, a mapping role -> config, or a ``BlendCacheConfig``."""
    if isinstance(cache, BlendCacheConfig):
        return cache
    if isinstance(cache, Mapping):
        return BlendCacheConfig(per_role=dict(cache))
    return BlendCacheConfig(default=cache)


def apply_blend_cache(router: RoutingTransformer, cache: Any) -> None:
    """Enable a copy of the role's cache config on every role's transformer and keep it correct at switches."""
    from diffusers.hooks import MagCacheConfig

    config = as_blend_cache_config(cache)
    unknown = sorted(set(config.per_role) - set(router.roles))
    if unknown:
        raise FlowBlendingError(
            f"cache names role(s) {', '.join(unknown)} that the router does not hold; its roles are "
            f"{', '.join(router.roles)}."
        )
    supported = _supported()
    for role in router.roles:
        role_config = config.for_role(role)
        if role_config is not None and not isinstance(role_config, supported):
            raise FlowBlendingError(
                f"cache for role {role!r} is a {type(role_config).__name__}; with a blend only "
                f"{', '.join(c.__name__ for c in supported)} are supported (their step counting is kept per stretch)."
            )
        if isinstance(role_config, MagCacheConfig):
            if role_config.calibrate:
                raise FlowBlendingError(
                    f"cache for role {role!r} is MagCacheConfig(calibrate=True); calibrate each model alone on its "
                    "plain pipeline over the whole run, then pass its mag_ratios per role."
                )
            if config.default is role_config and len(router.roles) > 1:
                raise FlowBlendingError(
                    "cache is one MagCacheConfig for every role, but mag_ratios are model-dependent; pass "
                    "cache={'large': MagCacheConfig(mag_ratios=...), 'small': MagCacheConfig(mag_ratios=...)}."
                )
    for role, model in router.roles.items():
        router.stretch_callbacks.pop(f"magcache:{role}", None)
        if getattr(model, "is_cache_enabled", False):
            model.disable_cache()
        role_config = config.for_role(role)
        if role_config is None:
            continue
        role_config = copy.deepcopy(role_config)
        _check_blocks(role, model, role_config)
        model.enable_cache(role_config)
        if isinstance(role_config, MagCacheConfig):
            router.stretch_callbacks[f"magcache:{role}"] = _MagCacheStretch(role_config)


def _check_blocks(role: str, model: torch.nn.Module, config: Any) -> None:
    """Refuse, in one line, a config that would hook nothing (or fail inside diffusers) on this model."""
    import re

    from diffusers.hooks import TaylorSeerCacheConfig
    from diffusers.hooks._common import _ALL_TRANSFORMER_BLOCK_IDENTIFIERS
    from diffusers.hooks.taylorseer_cache import _resolve_patterns

    name = type(config).__name__
    if isinstance(config, TaylorSeerCacheConfig):
        from diffusers.hooks import taylorseer_cache as ts

        inactive, active = _resolve_patterns(config)
        active = active or list(ts._TRANSFORMER_BLOCK_IDENTIFIERS)
        if config.use_lite_mode:
            active, inactive = list(ts._PROJ_OUT_IDENTIFIERS), list(ts._BLOCK_IDENTIFIERS)
        patterns = active + inactive
        if not any(any(re.fullmatch(p, n) for p in patterns) for n, _ in model.named_modules()):
            raise FlowBlendingError(
                f"cache TaylorSeerCacheConfig matches no module of role {role!r} ({type(model).__name__}); pass "
                "use_lite_mode=True or cache_identifiers=[...] naming its attention modules."
            )
        return
    blocks = sum(
        len(child)
        for child_name, child in model.named_children()
        if child_name in _ALL_TRANSFORMER_BLOCK_IDENTIFIERS and isinstance(child, torch.nn.ModuleList)
    )
    if blocks < 2:
        raise FlowBlendingError(
            f"cache {name} needs a transformer with at least 2 blocks, but role {role!r} ({type(model).__name__}) "
            f"has {blocks}; leave that role uncached with cache={{'<other role>': config}}."
        )


class _MagCacheStretch:
    """Point a role's MagCache config at the stretch that starts: its length and its slice of the role's ratios."""

    def __init__(self, config: Any):
        self.config = config
        self.ratios = torch.as_tensor(config.mag_ratios, dtype=torch.float32).clone()

    def __call__(self, role: str, model: torch.nn.Module, start: int, length: int, num_steps: int) -> None:
        from diffusers.hooks.mag_cache import nearest_interp

        ratios = self.ratios if len(self.ratios) == num_steps else nearest_interp(self.ratios, num_steps)
        self.config.num_inference_steps = length
        self.config.mag_ratios = ratios[start : start + length].clone()


def parse_cache_spec(spec: str) -> BlendCacheConfig:
    """A ``BlendCacheConfig`` from a ``--cache`` value such as ``first-block:0.05`` (see ``CACHE_SPEC_HELP``)."""
    from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

    kind, _, rest = spec.partition(":")
    args = rest.split(":") if rest else []
    try:
        if kind == "first-block" and len(args) <= 1:
            return BlendCacheConfig(default=FirstBlockCacheConfig(threshold=float(args[0]) if args else 0.05))
        if kind == "taylorseer" and len(args) <= 2:
            interval = int(args[0]) if args else 5
            warmup = int(args[1]) if len(args) > 1 else 3
            return BlendCacheConfig(
                default=TaylorSeerCacheConfig(
                    cache_interval=interval, disable_cache_before_step=warmup, use_lite_mode=True
                )
            )
    except ValueError:
        raise FlowBlendingError(
            f"--cache {spec!r}: not a number where one is expected; use {CACHE_SPEC_HELP}."
        ) from None
    if kind == "magcache" and len(args) == 2:
        threshold, path = args
        try:
            value = float(threshold)
        except ValueError:
            raise FlowBlendingError(f"--cache {spec!r}: threshold {threshold!r} is not a number.") from None
        if not os.path.isfile(path):
            raise FlowBlendingError(
                f"--cache {spec!r}: ratios file {path!r} does not exist; give a JSON object role -> mag_ratios."
            )
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
        if not isinstance(table, dict) or not all(isinstance(v, list) and v for v in table.values()):
            raise FlowBlendingError(
                f"--cache {spec!r}: {path} must hold a JSON object role -> list of mag_ratios, e.g. "
                '{"large": [1.0, 1.02, ...], "small": [...]}.'
            )
        return BlendCacheConfig(
            per_role={
                role: MagCacheConfig(threshold=value, mag_ratios=ratios, num_inference_steps=len(ratios))
                for role, ratios in table.items()
            }
        )
    if kind == "magcache":
        raise FlowBlendingError(
            f"--cache {spec!r}: MagCache needs each model's mag_ratios; give magcache:THRESHOLD:RATIOS.json "
            "(calibrate each model alone with diffusers' MagCacheConfig(calibrate=True) to get them)."
        )
    raise FlowBlendingError(f"--cache {spec!r} is not a cache this runtime supports; use {CACHE_SPEC_HELP}.")
