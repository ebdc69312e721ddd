"""Offloading per role: only the role that runs a step is on the device, so a blend needs no more than large-only.

diffusers' ``enable_model_cpu_offload`` would move the router, and with it every role, to the device on its first
call. ``apply_role_offload`` keeps the router's hook (it still offloads the previous component and moves the inputs)
but leaves moving weights to one hook per role; when a stretch of another role starts, the roles not running are
offloaded. Group offloading needs nothing here: ``RoutingTransformer.enable_group_offload`` (what
``pipe.enable_group_offload`` calls) applies it to each role's transformer, whose groups are onloaded only while
that role runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from .errors import FlowBlendingError

try:
    from accelerate import cpu_offload_with_hook
    from accelerate.hooks import CpuOffload, UserCpuOffloadHook
    from accelerate.utils import send_to_device
except ImportError as exc:  # diffusers' enable_model_cpu_offload needs it too
    raise FlowBlendingError("offloading needs accelerate; install it with `pip install accelerate`.") from exc

OffloadKind = Literal["model", "group"]
OFFLOAD_KINDS = ("model", "group")


@dataclass
class RoleOffloadConfig:
    """``kind="model"``: whole role models (accelerate hooks); ``"group"``: diffusers group offloading per role."""

    kind: OffloadKind = "model"
    device: str | torch.device | None = None
    group_kwargs: dict[str, Any] = field(
        default_factory=lambda: {"offload_type": "block_level", "num_blocks_per_group": 1}
    )


def apply_role_offload(pipe: Any, config: RoleOffloadConfig | OffloadKind) -> Any:
    """Enable model CPU offload or group offloading on a routed pipeline, one role on the device at a time."""
    from .router import RoutingTransformer

    if isinstance(config, str):
        config = RoleOffloadConfig(kind=config)
    if config.kind not in OFFLOAD_KINDS:
        raise FlowBlendingError(f"offload kind must be one of {', '.join(OFFLOAD_KINDS)}, got {config.kind!r}.")
    if not isinstance(pipe.transformer, RoutingTransformer):
        raise FlowBlendingError(
            "pipe.transformer is not a RoutingTransformer; call flowblending.apply_profile(pipe, ...) before "
            "apply_role_offload."
        )
    if config.kind == "group":
        device = config.device
        if device is None:
            from diffusers.utils.torch_utils import get_device

            device = get_device()
        pipe.enable_group_offload(onload_device=torch.device(device), **config.group_kwargs)
        return pipe
    enable = type(pipe).enable_model_cpu_offload

    def enable_model_cpu_offload(gpu_id: int | None = None, device: str | torch.device | None = config.device) -> None:
        """diffusers' model CPU offload, then the router's hook split into one hook per role."""
        enable(pipe, gpu_id=gpu_id, device=device)
        split_router_offload(pipe)

    # maybe_free_model_hooks calls enable_model_cpu_offload again after every run: keep the per-role hooks then too
    pipe.enable_model_cpu_offload = enable_model_cpu_offload
    enable_model_cpu_offload(device=config.device)
    return pipe


def split_router_offload(pipe: Any) -> None:
    """Replace the router's model-offload hook by one per role; a starting stretch offloads the other roles."""
    router = pipe.transformer
    hook = getattr(router, "_hf_hook", None)
    chain = [h for h in getattr(pipe, "_all_hooks", []) if getattr(h, "model", None) is router]
    if not isinstance(hook, CpuOffload) or not chain:
        raise FlowBlendingError(
            f"the router has no model CPU offload hook (found {type(hook).__name__}); call "
            "pipe.enable_model_cpu_offload() first, or use flowblending.apply_role_offload(pipe, 'model')."
        )
    router._hf_hook = _RouterOffload(execution_device=hook.execution_device, prev_module_hook=hook.prev_module_hook)
    role_hooks = {role: cpu_offload_with_hook(model, hook.execution_device)[1] for role, model in router.roles.items()}
    routed = _RoutedOffload(router, role_hooks)
    # the next component's hook offloads the router before it runs: through ``routed``, whichever role is resident
    for user_hook in pipe._all_hooks:
        if getattr(user_hook.hook, "prev_module_hook", None) is chain[0]:
            user_hook.hook.prev_module_hook = routed
    pipe._all_hooks[pipe._all_hooks.index(chain[0])] = routed
    pipe._all_hooks.extend(role_hooks.values())
    router.stretch_callbacks["offload"] = routed


class _RouterOffload(CpuOffload):
    """The router's offload hook: offloads the previous component and moves the inputs, but no weights."""

    def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple, dict]:
        if isinstance(self.prev_module_hook, UserCpuOffloadHook):
            prev = next(self.prev_module_hook.model.parameters(), None)
            if prev is not None and prev.device != torch.device("cpu"):
                self.prev_module_hook.offload()
        return send_to_device(args, self.execution_device), send_to_device(kwargs, self.execution_device)


class _RoutedOffload(UserCpuOffloadHook):
    """The router's place in the offload chain, and the stretch callback that offloads the roles not starting.

    ``model`` is the resident role's model, so the next component's hook (which looks at its first parameter to
    decide whether to offload it) sees the role actually on the device.
    """

    def __init__(self, router: torch.nn.Module, role_hooks: dict[str, UserCpuOffloadHook]):
        self.router, self.role_hooks, self.resident = router, role_hooks, router.base_role
        self.hook = router._hf_hook

    @property
    def model(self) -> torch.nn.Module:
        return self.router.roles[self.resident]

    def offload(self) -> None:
        for hook in self.role_hooks.values():
            hook.offload()

    def remove(self) -> None:
        from accelerate.hooks import remove_hook_from_module

        remove_hook_from_module(self.router, recurse=True)

    def __call__(self, role: str, model: torch.nn.Module, start: int, length: int, num_steps: int) -> None:
        for other, hook in self.role_hooks.items():
            if other != role:
                hook.offload()
        self.resident = role
