"""What every calibration method shares: the context it runs in, its interface, and the helpers it reuses.

A method ``compute``\\ s this rank's units into the work directory (skipping what is already there) and
``decide``\\ s the schedule from the work directory alone, so one process, N ranks and ``--merge`` reach the same
profile. Every method first walks the large-only path with the small model as shadow (velocity divergence,
paper sec 5.1 / App. C); :func:`trajectory_data` and :func:`divergence_record` are that shared part.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from flowblending.schedule import Segment, merge_segments

from ..config import CalibrationConfig, CalibrationError
from ..record import CalibrationRecord, DivergenceRecord, Stat
from ..sampling import ReplaySampler, Unit
from ..workdir import WorkDir

Log = Callable[[str], None]

__all__ = [
    "Context",
    "Decision",
    "InjectedFailure",
    "Method",
    "divergence_record",
    "large_only",
    "lsl",
    "new_record",
    "shared_feature_file",
    "stat",
    "sum_calls",
    "trajectory_data",
]


class InjectedFailure(RuntimeError):
    """Raised at a named checkpoint when a test asks for it (a crash at a known point, to test resuming)."""


@dataclass
class Context:
    """Everything a method needs: configuration, work dir, units, and (when computing) the sampler and ranks."""

    config: CalibrationConfig
    work: WorkDir
    num_steps: int
    units: list[Unit]
    log: Log = print
    sampler: ReplaySampler | None = None
    mine: list[Unit] = field(default_factory=list)
    procs: Any = None
    device: str | None = None
    progress: bool = True
    fail_after_units: int | None = None
    _extractors: dict[str, Any] = field(default_factory=dict)
    _checkpoints: dict[str, int] = field(default_factory=dict)
    _fresh_units: int = 0

    # -- feature models, loaded on first use (a method that decodes nothing never loads one) -----------------

    def extractor(self, which: str = "dino") -> Any:
        """The frame feature extractor ``"dino"`` (--feature-model), ``"clip"`` or ``"fid"`` (--fid-features)."""
        if which not in self._extractors:
            from ..features import load_feature_extractor

            spec = {
                "dino": self.config.feature_model,
                "clip": self.config.clip_model,
                "fid": self.config.fid_features or self.config.feature_model,
            }[which]
            if which == "fid" and self.shared_features:
                self._extractors[which] = self.extractor("dino")
            else:
                self._extractors[which] = load_feature_extractor(
                    spec, device=self.device, local_files_only=self.config.local_files_only
                )
        return self._extractors[which]

    @property
    def shared_features(self) -> bool:
        """Whether the late metric's features are the similarity's (``--fid-features`` unset or the feature model)."""
        return (self.config.fid_features or self.config.feature_model) == self.config.feature_model

    def similarity_extractors(self) -> dict[str, Any]:
        """The extractors of the early-switch similarity: DINO, and CLIP when --clip-model is given."""
        names = ["dino", "clip"] if self.config.clip_model else ["dino"]
        return {name: self.extractor(name) for name in names}

    # -- ranks, progress, resumability ----------------------------------------------------------------------

    @property
    def is_main(self) -> bool:
        return self.procs is None or self.procs.is_main

    def wait(self) -> None:
        if self.procs is not None:
            self.procs.wait()

    def bar(self, total: int, desc: str, unit: str = "run") -> Any:
        from tqdm.auto import tqdm

        tag = f" [{self.procs.label()}]" if self.procs is not None and self.procs.world_size > 1 else ""
        return tqdm(total=total, desc=desc + tag, unit=unit, disable=not self.progress)

    def checkpoint(self, point: str) -> None:
        """A point where a test may simulate a crash: ``FLOWBLENDING_FAIL_AT=<point>[:<nth time>]``."""
        self._checkpoints[point] = self._checkpoints.get(point, 0) + 1
        spec = os.environ.get("FLOWBLENDING_FAIL_AT")
        if spec:
            name, _, nth = spec.partition(":")
            if name == point and self._checkpoints[point] == int(nth or 1):
                raise InjectedFailure(f"injected failure at {point} (time {self._checkpoints[point]})")

    def unit_done(self) -> None:
        """Count a freshly computed unit; ``fail_after_units`` or ``FLOWBLENDING_FAIL_AFTER=<rank>:<n>`` crash."""
        self._fresh_units += 1
        limit = self.fail_after_units
        spec = os.environ.get("FLOWBLENDING_FAIL_AFTER")
        if limit is None and spec and self.procs is not None:
            rank, _, count = spec.partition(":")
            if int(rank) == self.procs.rank:
                limit = int(count)
        if limit is not None and self._fresh_units >= limit:
            where = self.procs.label() if self.procs is not None else "rank 0"
            raise InjectedFailure(f"injected failure after {self._fresh_units} unit(s) on {where}")

    def unit_error(self, unit: Unit, exc: Exception) -> CalibrationError:
        return CalibrationError(f"{unit.describe()}: {exc}")

    # -- shared work-dir reads ------------------------------------------------------------------------------

    def trajectories(self) -> list[dict[str, Any]]:
        """Every unit's large-only path data (``trajectory.json``); a missing one names the unit."""
        work = self.work
        return [work.read_json(work.require(work.trajectory(u), u, "the large-only pass")) for u in self.units]

    def reference_state(self) -> dict[str, Any]:
        """FID statistics of the reference frames (computed once by rank 0, then read from the work dir)."""
        from ..metrics import fid_state, iter_reference_frames

        extractor = self.extractor("fid")
        name = str(getattr(extractor, "name", "features"))
        path = self.work.reference(name)
        if not path.exists():
            if not self.is_main:
                raise CalibrationError(f"the reference statistics are not in {self.work.root}; rank 0 computes them.")
            parts = [
                extractor(batch).cpu()
                for batch in iter_reference_frames(self.config.reference, max_frames=self.config.reference_max_frames)
            ]
            if not parts:
                raise CalibrationError(f"--reference {self.config.reference!r} holds no frames.")
            features = torch.cat(parts)
            count, dim = features.shape
            if count < dim:
                self.log(f"warning: {count} reference frames is fewer than the feature width {dim}: FID is unreliable.")
            state = fid_state(features, dim, name, real=True)
            self.work.save(path, {"state": state, "count": count, "features": features})
        return self.work.load(path)

    def prepare_reference(self) -> None:
        """Rank 0 computes the reference statistics, the others wait for them."""
        if self.config.reference:
            if self.is_main:
                self.reference_state()
            self.wait()


@dataclass(frozen=True)
class Decision:
    """What a method decided: the schedule, the calibration record, and videos for the report."""

    schedule: tuple[Segment, ...]
    record: CalibrationRecord
    samples: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)


class Method(abc.ABC):
    """One calibration method: compute units into the work dir, decide the schedule from it."""

    name: str = ""  # set by the registry (calibrate.methods.METHODS)

    @abc.abstractmethod
    def compute(self, ctx: Context) -> None:
        """Compute this rank's units into ``ctx.work`` (skipping finished ones); every rank calls it."""

    @abc.abstractmethod
    def decide(self, ctx: Context) -> Decision:
        """The schedule and the record, from ``ctx.work`` only (no diffusion model)."""

    def large_only_features(self, ctx: Context, unit: Unit) -> torch.Tensor | None:
        """Large-only's frame features (``--feature-model``) of ``unit`` if this method stored them, else None.

        ``--compare`` scores against them instead of generating large-only again.
        """
        return None

    def __repr__(self) -> str:
        return f"<calibration method {self.name!r}>"


# -- helpers every method reuses ------------------------------------------------------------------------------


def large_only() -> tuple[Segment, ...]:
    return (Segment("large", 0.0, 1.0),)


def lsl(early: float, late: float) -> tuple[Segment, ...]:
    """Large [0, early), small [early, late), large [late, 1), with empty segments dropped."""
    early, late = round(early, 6), round(late, 6)
    parts = [Segment("large", 0.0, early)] if early > 0 else []
    if late > early:
        parts.append(Segment("small", early, late))
    if late < 1:
        parts.append(Segment("large", max(late, early), 1.0))
    return merge_segments(parts) if parts else large_only()


def stat(rows: Sequence[Sequence[float]]) -> Stat:
    """Mean and spread over units (rows) per point (columns)."""
    from ..divergence import divergence_stats

    s = divergence_stats(np.asarray(rows, dtype=np.float64))
    return Stat(tuple(float(v) for v in s["mean"]), tuple(float(v) for v in s["std"]))


def sum_calls(parts: Sequence[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for role, n in part.items():
            total[role] = total.get(role, 0) + int(n)
    return dict(sorted(total.items()))


def trajectory_data(
    sampler: ReplaySampler, transformer: Any, calls: Mapping[str, int], *, divergence: bool = True
) -> dict[str, Any]:
    """What ``trajectory.json`` holds of one unit's large-only path: divergence, sigmas, FLOPs per step."""
    from flowblending.cost import step_flops

    n = sampler.num_steps
    step_calls = transformer.first_step_inputs
    out: dict[str, Any] = {
        "sigmas": [float(s) for s in sampler.pipe.scheduler.sigmas[:n]],
        "timesteps": [float(t) for t in sampler.pipe.scheduler.timesteps[:n]],
        "calls_per_step": len(step_calls),
        "flops_per_step": {r: step_flops(sampler.models[r], step_calls) for r in ("large", "small")},
        "calls": dict(calls),
    }
    if divergence:
        div = transformer.divergence
        out["divergence"] = {
            metric: {"all": div.per_step(metric), **{label: div.per_step(metric, label) for label in div.labels()}}
            for metric in ("cosine", "l2")
        }
    return out


def divergence_record(trajectories: Sequence[Mapping[str, Any]], n: int) -> DivergenceRecord:
    """Mean and spread over units per step of both distances, per call, and the proxy boundaries (sec 5.1)."""
    from ..divergence import divergence_boundaries, divergence_premise

    first = trajectories[0]
    curves = {m: stat([t["divergence"][m]["all"] for t in trajectories]) for m in ("cosine", "l2")}
    labels = [k for k in first["divergence"]["cosine"] if k != "all"]
    per_call = {
        label: {m: stat([t["divergence"][m][label] for t in trajectories]) for m in ("cosine", "l2")}
        for label in labels
    }
    mean, std = np.asarray(curves["cosine"].mean), np.asarray(curves["cosine"].std)
    early, late = divergence_boundaries(mean, std)
    return DivergenceRecord(
        fraction=tuple(i / n for i in range(n)),
        sigma=tuple(first["sigmas"]),
        cosine=curves["cosine"],
        l2=curves["l2"],
        per_call=per_call,
        proxy_boundaries=(float(early), float(late)),
        premise=tuple(divergence_premise(mean, std, early, late)),
    )


def new_record(ctx: Context, *, formula: Mapping[str, int], naive: Mapping[str, int], computed: Mapping[str, int],
               calls_per_step: int, notes: Sequence[str] = (), **blocks: Any) -> CalibrationRecord:  # fmt: skip
    """The calibration record of ``ctx``'s method: shared fields from the config, ``blocks`` from the method.

    ``formula`` is the method's call count per unit (scaled by the unit count here); ``naive`` is a total.
    """
    from ..record import CallsRecord

    config = ctx.config
    units = len(ctx.units)
    return CalibrationRecord(
        method=config.method,
        num_steps=ctx.num_steps,
        num_prompts=len(config.prompts),
        seeds=tuple(config.seeds),
        feature_model=config.feature_model if config.uses_features else None,
        calls=CallsRecord(
            computed=dict(computed),
            formula={r: v * units for r, v in formula.items()},
            naive=dict(naive),
            calls_per_step=calls_per_step,
        ),
        notes=(*config.notes, *notes),
        **blocks,
    )


def shared_feature_file(ctx: Context, path: os.PathLike[str]) -> Any:
    """A method's stored late-metric features at ``path`` when they are also the similarity's features (one
    extractor for both, ``--reference`` given) and the file exists, else None."""
    if not (ctx.config.reference and ctx.shared_features and os.path.exists(path)):
        return None
    return ctx.work.load(path)


def to_cpu(tensors: Mapping[Any, torch.Tensor]) -> dict[Any, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in tensors.items()}
