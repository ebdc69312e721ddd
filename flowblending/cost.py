"""Cost model: FLOPs of a schedule from per-step FLOPs per role, and FLOP counting on the meta device.

Paper Table 2 reports TFLOPs of the DiT blocks per video; with per-step costs ``LLL / N`` and ``SSS / N`` a
schedule costs ``sum over steps of cost(role)``. A segment with its own step count (paper section 6(b), Table 3)
counts the steps it really runs, against large-only over the N base steps: LDL is 20 L + 4 D against 40 L.
:func:`measure_call_flops` counts one transformer call of a full-size config on the meta device (no weights, no
memory) with ``torch.utils.flop_counter``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .profile import Cost
from .schedule import count_steps


def schedule_cost(
    plan: Sequence[str],
    flops_per_step: Mapping[str, float],
    reference_role: str = "large",
    source: str = "",
    num_steps: int | None = None,
) -> Cost:
    """Total FLOPs of a per-step plan and its ratio to ``reference_role`` at every base step (Tables 2 and 3).

    ``plan``: the role of every step the run takes (:func:`flowblending.schedule.run_roles`); ``num_steps``: the
    base step count large-only runs (default ``len(plan)``; LDL: 24 steps run against 40 base steps).
    ``flops_per_step[role]`` is one step as the schedule runs that role: a role whose segments run with
    ``guidance_scale`` 1 computes no unconditional branch, so its step is one conditional pass.
    """
    if not plan:
        raise ValueError("plan is empty; give the role of every step (see flowblending.schedule.plan_steps).")
    missing = sorted({r for r in [*plan, reference_role] if r not in flops_per_step})
    if missing:
        raise ValueError(
            f"flops_per_step has no entry for role(s) {', '.join(missing)}; give FLOPs per step for every role used."
        )
    base = len(plan) if num_steps is None else num_steps
    if isinstance(base, bool) or not isinstance(base, int) or base < 1:
        raise ValueError(f"num_steps must be a positive integer (the base step count), got {num_steps!r}.")
    counts = count_steps(plan)
    total = sum(flops_per_step[r] * n for r, n in counts.items())
    large_only = flops_per_step[reference_role] * base
    ratio = total / large_only
    return Cost(
        flops_per_step={r: float(flops_per_step[r]) for r in flops_per_step},
        steps={r: counts.get(r, 0) for r in flops_per_step},
        step_fraction={r: counts.get(r, 0) / len(plan) for r in flops_per_step},
        flops_total=float(total),
        flops_large_only=float(large_only),
        flops_ratio=float(ratio),
        predicted_speedup=float(1.0 / ratio),
        reference_role=reference_role,
        source=source,
    )


def to_meta(value: Any) -> Any:
    import torch

    if isinstance(value, torch.Tensor):
        return value.to("meta")
    if isinstance(value, Mapping):
        return {k: to_meta(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(to_meta(v) for v in value)
    return value


def measure_call_flops(model: Any, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> int:
    """FLOPs of one forward call of ``model`` with these inputs, counted on the meta device.

    A weightless copy is built from ``model.config`` on the meta device, so counting a 14B model costs no
    memory; attention is counted through the math SDPA kernel (the only one FlopCounterMode sees on CPU).
    ``model`` may also be a ``(model_class, config)`` pair; a two-expert model is counted as one expert (the one
    call runs one of them).
    """
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from .experts import single_model
    from .families import family_of_transformer

    if isinstance(model, tuple):
        model_cls, config = model
    else:
        model = single_model(model)
        model_cls, config = type(model), model.config
    family = family_of_transformer(model_cls.__name__)
    if family is not None:  # inputs sized for the pipeline's transformer, as the router fits them (VACE's scale)
        kwargs = family.fit_inputs(dict(kwargs or {}), config, model_cls.__name__)
    with torch.device("meta"):
        meta_model = model_cls.from_config(config)
    meta_model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        meta_model(*to_meta(tuple(args)), **to_meta(dict(kwargs or {})))
    return int(counter.get_total_flops())


def capture_step_calls(pipe: Any, **call_kwargs: Any) -> list[tuple[tuple, dict]]:
    """The transformer calls of one denoising step of ``pipe`` (inputs moved to the meta device).

    Runs the pipeline for two steps (``output_type="latent"``, no decode; some schedulers cannot make a
    one-step schedule) with a forward pre-hook on ``pipe.transformer`` that keeps the first step's calls;
    the captured inputs have the real shapes of the full setting (CFG included).
    """
    import torch

    calls: list[tuple[tuple, dict]] = []

    def hook(module: Any, args: tuple, kwargs: dict) -> None:
        if pipe.scheduler.step_index is None:  # still the first step
            calls.append((to_meta(args), to_meta(kwargs)))

    call_kwargs = {**call_kwargs, "num_inference_steps": 2, "output_type": "latent"}
    handle = pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            pipe(**call_kwargs)
    finally:
        handle.remove()
    return calls


def step_flops(model: Any, calls: Sequence[tuple[tuple, dict]]) -> int:
    """FLOPs of one denoising step of ``model``: the sum over the step's calls (e.g. Wan's cond and uncond)."""
    return sum(measure_call_flops(model, args, kwargs) for args, kwargs in calls)
