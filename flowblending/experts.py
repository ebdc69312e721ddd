"""A model that is two experts switched by noise level: Wan 2.2 A14B's high-noise and low-noise transformers.

diffusers' Wan 2.2 pipelines hold ``transformer`` and ``transformer_2`` and, in their denoising loop, call
``transformer`` for timesteps ``t >= boundary_ratio * num_train_timesteps`` and ``transformer_2`` below.
:class:`ExpertPair` is that rule as one module, so the pair can be one *role* of a profile (the large one): its
large-only run is exactly diffusers' own run, and a schedule high expert / small model / low expert, which
``boundary_ratio`` cannot express, is an ordinary three-segment schedule for the router.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from diffusers.models.modeling_utils import ModelMixin

from .errors import FlowBlendingError


class ExpertPair(ModelMixin):
    """Calls ``high`` for timesteps ``>= boundary_timestep`` and ``low`` below (diffusers' Wan 2.2 rule).

    ``config``, ``dtype`` and ``device`` are the high expert's, and any other public attribute a pipeline reads
    resolves on it. The cache context the pipeline opens is handed to the expert that runs the call.
    """

    _supports_gradient_checkpointing = False

    def __init__(self, high: torch.nn.Module, low: torch.nn.Module, boundary_timestep: float):
        super().__init__()
        if isinstance(boundary_timestep, bool) or not isinstance(boundary_timestep, int | float):
            raise FlowBlendingError(
                f"boundary_timestep must be a number (boundary_ratio * num_train_timesteps), got {boundary_timestep!r}."
            )
        self.high = high
        self.low = low
        self.boundary_timestep = float(boundary_timestep)
        self._call: tuple[str, dict[str, Any]] | None = None
        self.calls = {"high": 0, "low": 0}

    def __getattr__(self, name: str) -> Any:
        """Parameters and submodules as in ``nn.Module``; any other public attribute from the high expert."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            pass
        high = self.__dict__.get("_modules", {}).get("high")
        if high is None or name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(high, name)

    @property
    def config(self):
        return self.high.config

    @property
    def dtype(self) -> torch.dtype:
        return self.high.dtype

    @property
    def device(self) -> torch.device:
        return self.high.device

    def active_parameters(self) -> int:
        """Parameters that run in one call: one expert's (the larger, should the two differ)."""
        return max(sum(p.numel() for p in m.parameters()) for m in (self.high, self.low))

    def expert_for(self, timestep: Any) -> str:
        """``"high"`` or ``"low"``: the expert diffusers' loop would call at ``timestep`` (the first entry)."""
        t = float(timestep.flatten()[0]) if isinstance(timestep, torch.Tensor) else float(timestep)
        return "high" if t >= self.boundary_timestep else "low"

    @contextlib.contextmanager
    def cache_context(self, name: str, **kwargs: Any):
        """Remember the call's cache context; ``forward`` opens it on the expert that runs."""
        self._call = (name, kwargs)
        try:
            yield
        finally:
            self._call = None

    def _reset_stateful_cache(self, recurse: bool = True) -> None:
        for model in (self.high, self.low):
            if hasattr(model, "_reset_stateful_cache"):
                model._reset_stateful_cache(recurse=recurse)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        timestep = kwargs["timestep"] if "timestep" in kwargs else (args[1] if len(args) > 1 else None)
        if timestep is None:
            raise FlowBlendingError(
                "ExpertPair needs the call's timestep (as `timestep=` or the second positional argument) to pick "
                "the expert."
            )
        which = self.expert_for(timestep)
        self.calls[which] += 1
        model = self.high if which == "high" else self.low
        if self._call is not None and hasattr(model, "cache_context"):
            name, context = self._call
            with model.cache_context(name, **context):
                return model(*args, **kwargs)
        return model(*args, **kwargs)


def expert_pair_of(pipe: Any) -> ExpertPair | None:
    """The pipeline's two experts as one :class:`ExpertPair`, or None if it holds one transformer.

    A pipeline holds two experts when it has a ``transformer_2`` and a ``boundary_ratio`` in its config (Wan 2.2
    A14B T2V and I2V); the boundary is ``boundary_ratio * scheduler.config.num_train_timesteps``, as in its loop.
    """
    high, low = getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)
    ratio = getattr(getattr(pipe, "config", None), "boundary_ratio", None)
    if low is None or ratio is None or high is None:
        return None
    if isinstance(high, ExpertPair):
        return high
    from .router import RoutingTransformer

    if isinstance(high, RoutingTransformer):  # a router installed earlier: its base role is the pair
        base = high.base
        return base if isinstance(base, ExpertPair) else None
    return ExpertPair(high, low, float(ratio) * float(pipe.scheduler.config.num_train_timesteps))


def install_transformer(pipe: Any, module: torch.nn.Module) -> None:
    """Set ``module`` as the pipeline's transformer, in both expert slots of a two-expert pipeline."""
    pipe.transformer = module
    if getattr(pipe, "transformer_2", None) is not None and getattr(pipe.config, "boundary_ratio", None) is not None:
        pipe.transformer_2 = module


def base_transformer(pipe: Any) -> torch.nn.Module:
    """The model of the pipeline's base role: its two experts as one :class:`ExpertPair`, else ``pipe.transformer``."""
    pair = expert_pair_of(pipe)
    return pair if pair is not None else pipe.transformer


def single_model(model: torch.nn.Module) -> torch.nn.Module:
    """The model whose class and config describe ``model``: the high expert of an :class:`ExpertPair`, else itself."""
    return model.high if isinstance(model, ExpertPair) else model


def active_parameters(model: torch.nn.Module) -> int:
    """Parameters that run in one call of ``model`` (one expert of an :class:`ExpertPair`)."""
    if isinstance(model, ExpertPair):
        return model.active_parameters()
    return sum(p.numel() for p in model.parameters())
