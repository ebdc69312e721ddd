"""The calibration methods, one module each, and the registry that drives the CLI and config validation.

Every method has the same interface (:class:`calibrate.methods.base.Method`): ``compute`` this rank's units into
the work dir, ``decide`` the schedule from it. The registry is light (no torch import) so ``--help`` and config
validation stay cheap; :func:`get_method` imports the module on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Method

__all__ = ["METHODS", "MethodSpec", "get_method"]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its name, where its class lives, one line of help, and what it needs."""

    name: str
    target: str  # "module:Class", relative to this package
    help: str
    uses_features: bool = True  # decodes frames and loads --feature-model

    def load(self) -> Method:
        module, _, cls = self.target.partition(":")
        method = getattr(importlib.import_module(f"{__name__}.{module}"), cls)()
        method.name = self.name
        return method


METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("full", "full:FullMethod", "the paper's sweeps: early switch (Algorithm 1), then late re-entry"),
        MethodSpec(
            "divergence", "divergence:DivergenceMethod", "the U-curve only: no decoding, no feature model", False
        ),
        MethodSpec("sweep", "sweep:SweepMethod", "all 2^K segment patterns on a prefix trie (--segments)"),
        MethodSpec("search", "search:SearchMethod", "a beam search over the K-segment patterns for large K"),
    )
}
"""Every calibration method by name, in the order the CLI lists them."""


def get_method(name: str) -> Method:
    """The method registered as ``name`` (a ValueError names the choices)."""
    if name not in METHODS:
        raise ValueError(f"unknown calibration method {name!r}; choose one of {', '.join(METHODS)}.")
    return METHODS[name].load()
