"""What every method samples with: the (prompt, seed) units, the candidate grids, and the replay sampler.

A :class:`ReplaySampler` runs the stock pipeline once per call with a :class:`~calibrate.replay.ReplayTransformer`
installed, so each step is either computed by a role or replayed from a recording (paper sec 4, made cheap by
record and replay: docs/architecture.md, "Record and replay"). It counts every transformer call it computes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .replay import ReplayTransformer, StepSource, install

__all__ = ["ReplaySampler", "Unit", "grid_steps", "opened", "units_of"]


@dataclass(frozen=True)
class Unit:
    """One (prompt, seed) pair of the calibration set."""

    index: int
    prompt: str
    seed: int
    image: Any = None

    @property
    def key(self) -> str:
        return f"{self.index:04d}-s{self.seed}"

    def describe(self) -> str:
        return f"prompt {self.index + 1} ({self.prompt!r}), seed {self.seed}"


def units_of(prompts: Sequence[str], seeds: Sequence[int], images: Sequence[str] | None = None) -> list[Unit]:
    """The (prompt, seed) units in a fixed order: prompt-major, seeds inner (images opened lazily)."""
    return [Unit(i, p, s, images[i] if images else None) for i, p in enumerate(prompts) for s in seeds]


def opened(unit: Unit) -> Unit:
    """The unit with its conditioning image opened (image-to-video)."""
    if unit.image is None or not isinstance(unit.image, str | Path):
        return unit
    from PIL import Image

    return Unit(unit.index, unit.prompt, unit.seed, Image.open(unit.image).convert("RGB"))


def grid_steps(spacing: float, num_steps: int, *, include_zero: bool) -> list[int]:
    """Candidate steps every ``spacing`` of the process (0.1 -> 0, 10%, 20%, ... of the steps), without N."""
    from flowblending.schedule import first_step

    count = max(1, round(1 / spacing))
    steps = {first_step(i / count, num_steps) for i in range(0 if include_zero else 1, count)}
    return sorted(s for s in steps if 0 <= s < num_steps and (include_zero or s > 0))


@dataclass
class ReplaySampler:
    """Runs the stock pipeline with a replay transformer for a given per-step source plan, counting calls."""

    pipe: Any
    models: Mapping[str, torch.nn.Module]
    call_kwargs: Mapping[str, Any]
    num_steps: int
    base_role: str = "large"
    calls: dict[str, int] = field(default_factory=dict)
    replayed: int = 0
    reused: int = 0

    def run(
        self,
        unit: Unit,
        sources: Sequence[StepSource],
        *,
        record: bool = False,
        shadow: str | None = None,
        keep_shadow: Sequence[int] | range = (),
        reuse: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
        capture: bool = False,
        decode: bool = True,
    ) -> tuple[torch.Tensor, ReplayTransformer]:
        """Frames (1, F, 3, H, W) in [0, 1] (latents if ``decode=False``) of one generation, and its transformer.

        An image pipeline's image is a one-frame video (F = 1).
        """
        transformer = ReplayTransformer(
            self.models,
            sources,
            self.base_role,
            record=record,
            shadow=shadow,
            keep_shadow=keep_shadow,
            reuse=reuse,
            capture_first_step=capture,
        )
        install(self.pipe, transformer)
        frames = self.generate(unit, self.unit_kwargs(unit), decode=decode)
        for role, n in transformer.counters.calls.items():
            self.calls[role] = self.calls.get(role, 0) + n
        self.replayed += transformer.replayed
        self.reused += transformer.reused
        return frames, transformer

    def unit_kwargs(self, unit: Unit) -> dict[str, Any]:
        """The pipeline arguments of one unit's generation at the calibration setting (prompt and seed aside)."""
        kwargs = {**self.call_kwargs, "num_inference_steps": self.num_steps}
        if unit.image is not None:
            kwargs["image"] = unit.image
        return kwargs

    def generate(self, unit: Unit, kwargs: Mapping[str, Any], *, decode: bool = True) -> torch.Tensor:
        """Frames (1, F, 3, H, W) in [0, 1] (latents if ``decode=False``) of one call of the pipeline as it is set up
        now (whatever transformer is installed), with the unit's prompt and seed and the given arguments."""
        from flowblending.video import videos_of

        output_type = "pt" if decode else "latent"
        with torch.no_grad():
            out = self.pipe(
                prompt=unit.prompt,
                generator=torch.Generator(device="cpu").manual_seed(unit.seed),
                output_type=output_type,
                **kwargs,
            )
        return videos_of(out, output_type).float().cpu()

    def calls_since(self, before: Mapping[str, int]) -> dict[str, int]:
        """Transformer calls per role computed since the snapshot ``before = dict(sampler.calls)``."""
        return {r: n - before.get(r, 0) for r, n in self.calls.items() if n - before.get(r, 0)}
