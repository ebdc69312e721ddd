"""The calibration work directory: its layout, atomic reads and writes, and the "unit not finished" error.

Layout (``--work-dir``; every file is written atomically, so an interrupted run resumes with the same command
and recomputes only what was not finished)::

    config.json                  format + the arguments that change results (a resume with others is refused)
    run.json                     every argument (read back by ``flowblending calibrate --merge DIR``)
    pair.json                    pipeline/transformer classes, parameter counts, scheduler, setting
    reference-<feature>.pt       FID statistics of the reference frames (computed once)
    search-K<k>-B<b>.json        --method search: the beam search over all units
    compare.json                 --compare: the schedules compared (name, kind, digest, pattern, NFE, FLOPs ratio)
    units/<index>-s<seed>/       one (prompt, seed) unit
        trajectory.json          the large-only path: divergence per step and call, sigmas, FLOPs per step
        early.json               full: similarity to large-only of every early switch L->S(k), calls computed
        large.safetensors        full: the large-only recording of the steps before the last early candidate
        branch-<k>.safetensors   full: the small steps of L->S(k) up to the last late candidate
        features.pt              full: FID features of large-only and of every L->S(k)
        pass2-e<e>.pt            full: FID features of every late candidate for early boundary e, calls
        sweep-K<k>.pt            sweep: similarity and FID features of all 2^K schedules, trie statistics
        compare-<digest>.pt      --compare: one schedule's features, similarity to large-only and calls (the
                                 digest names the schedule and the models it runs)
        samples-<label>.npz      uint8 frames for the report (first --samples units)

Nothing else in the calibrator spells a path of the work directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowblending.atomic import atomic_write, atomic_write_text

from .config import CalibrationError
from .sampling import Unit

__all__ = ["FORMAT", "WorkDir"]

FORMAT = 2
"""Layout version written to ``config.json``; a work dir of another version is refused with one line."""


class WorkDir:
    """One calibration's work directory (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"WorkDir({str(self.root)!r})"

    # -- files of the whole calibration ---------------------------------------------------------------------

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def run(self) -> Path:
        return self.root / "run.json"

    @property
    def pair(self) -> Path:
        return self.root / "pair.json"

    def reference(self, feature_name: str) -> Path:
        name = str(feature_name).replace("/", "_").replace(os.sep, "_")
        return self.root / f"reference-{name[-80:]}.pt"

    def search(self, segments: int, beam_width: int) -> Path:
        return self.root / f"search-K{segments}-B{beam_width}.json"

    @property
    def compare(self) -> Path:
        return self.root / "compare.json"

    # -- files of one unit ----------------------------------------------------------------------------------

    def unit_dir(self, unit: Unit) -> Path:
        return self.root / "units" / unit.key

    def trajectory(self, unit: Unit) -> Path:
        return self.unit_dir(unit) / "trajectory.json"

    def early(self, unit: Unit) -> Path:
        return self.unit_dir(unit) / "early.json"

    def large_recording(self, unit: Unit) -> Path:
        return self.unit_dir(unit) / "large.safetensors"

    def branch_recording(self, unit: Unit, step: int) -> Path:
        return self.unit_dir(unit) / f"branch-{step}.safetensors"

    def features(self, unit: Unit) -> Path:
        return self.unit_dir(unit) / "features.pt"

    def late(self, unit: Unit, early_step: int) -> Path:
        return self.unit_dir(unit) / f"pass2-e{early_step}.pt"

    def sweep(self, unit: Unit, segments: int) -> Path:
        return self.unit_dir(unit) / f"sweep-K{segments}.pt"

    def compare_row(self, unit: Unit, digest: str) -> Path:
        return self.unit_dir(unit) / f"compare-{digest}.pt"

    def samples(self, unit: Unit, label: str) -> Path:
        return self.unit_dir(unit) / f"samples-{label}.npz"

    # -- reading and writing --------------------------------------------------------------------------------

    @staticmethod
    def write_json(path: Path, data: Any) -> Path:
        return atomic_write_text(path, json.dumps(data, indent=None, sort_keys=False))

    @staticmethod
    def read_json(path: Path) -> Any:
        return json.loads(path.read_text(encoding="utf-8"))

    @staticmethod
    def save(path: Path, obj: Any) -> Path:
        """``torch.save`` atomically (tensors moved to the CPU by the caller)."""
        return atomic_write(path, lambda tmp: torch.save(obj, tmp))

    @staticmethod
    def load(path: Path) -> Any:
        """``torch.load`` with ``weights_only=True``: a work dir holds tensors and plain data only."""
        return torch.load(path, weights_only=True)

    @staticmethod
    def save_frames(path: Path, **videos: np.ndarray) -> Path:
        return atomic_write(path, lambda tmp: np.savez_compressed(tmp, **videos))

    def require(self, path: Path, unit: Unit | None, what: str) -> Path:
        """``path`` if it exists, else the error that says which unit a rank has not finished and what to do."""
        if path.exists():
            return path
        whose = f" of {unit.describe()}" if unit is not None else ""
        raise CalibrationError(
            f"{what}{whose} is not in {self.root}; run the calibration (or the launch) again with the same "
            "arguments to finish it."
        )

    # -- identity -------------------------------------------------------------------------------------------

    def check(self, identity: dict[str, Any], run: dict[str, Any], *, is_main: bool, wait: Any) -> None:
        """Create the work dir, or refuse one that holds another calibration or an older layout (naming why)."""
        if is_main:
            (self.root / "units").mkdir(parents=True, exist_ok=True)
            if not self.config.exists():
                atomic_write_text(self.config, json.dumps({"format": FORMAT, **identity}, indent=2, sort_keys=True))
            atomic_write_text(self.run, json.dumps(run, indent=2))
        wait()
        previous = self.read_json(self.config)
        if previous.get("format") != FORMAT:
            raise CalibrationError(
                f"work dir {self.root} was written by another version of flowblending (layout "
                f"{previous.get('format', 1)}, this version reads {FORMAT}); delete it or use another --work-dir."
            )
        previous.pop("format")
        diffs = [k for k in sorted(set(previous) | set(identity)) if previous.get(k) != identity.get(k)]
        if diffs:
            detail = ", ".join(f"{k}: {previous.get(k)!r} -> {identity.get(k)!r}" for k in diffs[:4])
            raise CalibrationError(
                f"work dir {self.root} holds a calibration with other arguments ({detail}); use another --work-dir "
                "or delete it to start over."
            )

    def check_readable(self) -> None:
        """Refuse a folder that is not a work dir of this layout (``--merge``), naming what is wrong."""
        if not self.run.exists() or not self.config.exists():
            raise CalibrationError(
                f"{self.root} is not a calibration work directory (no run.json/config.json); give the --work-dir "
                "of a calibration."
            )
        fmt = self.read_json(self.config).get("format", 1)
        if fmt != FORMAT:
            raise CalibrationError(
                f"work dir {self.root} was written by another version of flowblending (layout {fmt}, this version "
                f"reads {FORMAT}); rerun the calibration into a new --work-dir."
            )
