"""Flow-matching schedulers (UniPC, FlowMatchEuler, DPM-Solver++) set up for the tiny Wan and LTX pairs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .pairs import TinyPair

SCHEDULER_KINDS = ("unipc", "flowmatch_euler", "dpmsolver")

WAN_FLOW_SHIFT = 3.0
"""Flow shift of the Wan 2.1 schedulers."""

LTX_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "use_dynamic_shifting": True,
    "base_shift": 0.95,
    "max_shift": 2.05,
    "base_image_seq_len": 1024,
    "max_image_seq_len": 4096,
    "shift_terminal": 0.1,
}
"""FlowMatchEuler settings of the Lightricks/LTX-Video 0.9.x scheduler config."""


def _family_of(like: Any) -> str:
    """'wan' or 'ltx' from a TinyPair, a pipeline, a pipeline class name, a directory or a family name."""
    if isinstance(like, TinyPair):
        return like.family
    if isinstance(like, str) and like in ("wan", "ltx"):
        return like
    name = ""
    if isinstance(like, str | Path) and Path(like, "model_index.json").is_file():
        name = json.loads(Path(like, "model_index.json").read_text())["_class_name"]
    elif isinstance(like, str):
        name = like
    else:
        name = type(like).__name__
    if name.startswith("Wan"):
        return "wan"
    if name.startswith("LTX"):
        return "ltx"
    raise ValueError(
        f"like must be a TinyPair, a Wan/LTX pipeline (or its class name or directory), 'wan' or 'ltx'; got {like!r}"
    )


def make_scheduler(kind: str, like: Any) -> Any:
    """A flow-matching scheduler of ``kind`` ("unipc", "flowmatch_euler", "dpmsolver") fit for ``like``'s family."""
    from diffusers import (
        DPMSolverMultistepScheduler,
        FlowMatchEulerDiscreteScheduler,
        UniPCMultistepScheduler,
    )

    if kind not in SCHEDULER_KINDS:
        raise ValueError(f"kind must be one of {SCHEDULER_KINDS}, got {kind!r}")
    family = _family_of(like)
    if family == "wan":
        if kind == "unipc":
            return UniPCMultistepScheduler(
                prediction_type="flow_prediction",
                use_flow_sigmas=True,
                num_train_timesteps=1000,
                flow_shift=WAN_FLOW_SHIFT,
            )
        if kind == "flowmatch_euler":
            return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=WAN_FLOW_SHIFT)
        return DPMSolverMultistepScheduler(
            algorithm_type="dpmsolver++",
            solver_order=2,
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=WAN_FLOW_SHIFT,
            num_train_timesteps=1000,
        )
    if kind == "flowmatch_euler":
        return FlowMatchEulerDiscreteScheduler(**LTX_SCHEDULER_CONFIG)
    if kind == "unipc":
        return UniPCMultistepScheduler(
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            num_train_timesteps=1000,
            flow_shift=1.0,
        )
    raise ValueError(
        "kind='dpmsolver' does not fit LTX pipelines: they pass custom sigmas to scheduler.set_timesteps "
        "and DPMSolverMultistepScheduler.set_timesteps takes none; use 'flowmatch_euler' or 'unipc'"
    )
