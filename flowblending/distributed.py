"""Scale-out with accelerate's PartialState over torch.distributed (docs/architecture.md#scale-out).

``torchrun --nproc_per_node N -m flowblending calibrate|run ...`` or ``accelerate launch --num_processes N -m
flowblending ...`` start N processes; each takes its share of the work (calibration units, prompts to render)
with ``split_between_processes`` and writes its results to shared storage; the calibrator's rank 0 merges.
Without a launcher everything runs in one process and nothing here imports accelerate.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import FlowBlendingError

T = TypeVar("T")


class LaunchError(FlowBlendingError):
    """The launcher and the process group disagree (the silent-duplication trap)."""


def launched_world_size() -> int:
    """Processes the launcher says it started (WORLD_SIZE from torchrun / accelerate launch), 1 without one."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


@dataclass
class Processes:
    """This process's rank, the world size, and the collective operations the calibrator needs."""

    rank: int = 0
    world_size: int = 1
    _state: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This rank's contiguous share of ``items`` (accelerate's ``split_between_processes``)."""
        if self._state is None or self.world_size == 1:
            return list(items)
        with self._state.split_between_processes(list(items)) as mine:
            return list(mine)

    def wait(self) -> None:
        """Barrier: every rank reaches this point before any goes on."""
        if self._state is not None and self.world_size > 1:
            self._state.wait_for_everyone()

    def label(self) -> str:
        return f"rank {self.rank}/{self.world_size}"


def processes(state_factory: Any = None) -> Processes:
    """The process group of this launch (a single process when no launcher set WORLD_SIZE).

    ``state_factory`` builds the accelerate state (default ``PartialState(cpu=not cuda)``; tests pass a fake).
    """
    expected = launched_world_size()
    if expected <= 1:
        return Processes()
    if state_factory is not None:
        return _checked(state_factory(), expected)
    import torch

    try:
        from accelerate import PartialState
    except ImportError:
        raise FlowBlendingError(
            f"WORLD_SIZE={expected}: a multi-process launch needs accelerate: pip install accelerate "
            '(or pip install "flowblending[calibrate]").'
        ) from None

    return _checked(PartialState(cpu=not torch.cuda.is_available()), expected)


def _checked(state: Any, expected: int) -> Processes:
    if state.num_processes != expected:
        raise LaunchError(
            f"the launcher started {expected} processes (WORLD_SIZE) but the process group has "
            f"{state.num_processes}: every process would do all the work. Launch with torchrun "
            "--nproc_per_node N or accelerate launch --multi_gpu --num_processes N (accelerate's --cpu starts one "
            "process only)."
        )
    return Processes(rank=state.process_index, world_size=state.num_processes, _state=state)
