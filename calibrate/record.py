"""The calibration record: what a profile's ``calibration`` block holds, as frozen dataclasses.

Methods build these, the profile stores ``CalibrationRecord.to_dict()`` (JSON; its shape is documented field by
field in docs/profile-format.md), and the report, the summary and the demo read them back with
``CalibrationRecord.from_dict(profile.calibration)``. ``from_dict`` accepts every block written since profile
format v1 (fields added later get their defaults).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

__all__ = [
    "CalibrationRecord",
    "CallsRecord",
    "CompareRecord",
    "CompareRow",
    "DivergenceRecord",
    "EarlyChoice",
    "EarlyRecord",
    "LateChoice",
    "LateRecord",
    "PremiseRecord",
    "SearchRecord",
    "Stat",
    "SweepRecord",
]


def _plain(value: Any) -> Any:
    """JSON-ready copy of a record field: records via ``to_dict``, tuples as lists, mappings as dicts."""
    if is_dataclass(value) and hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):  # JSON has no inf/NaN: "undefined here"
        return None
    return value


def _floats(values: Sequence[Any] | None) -> tuple[float | None, ...]:
    return tuple(None if v is None else float(v) for v in (values or ()))


@dataclass(frozen=True)
class Stat:
    """Mean and standard deviation over units, per point of a curve (``None`` where undefined)."""

    mean: tuple[float | None, ...]
    std: tuple[float | None, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"mean": _plain(self.mean), "std": _plain(self.std)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Stat | None:
        return None if data is None else cls(_floats(data["mean"]), _floats(data["std"]))


@dataclass(frozen=True)
class DivergenceRecord:
    """Velocity divergence along the large-only path (paper sec 5.1, App. C): per step, per call label."""

    fraction: tuple[float, ...]
    sigma: tuple[float, ...]
    cosine: Stat
    l2: Stat
    per_call: Mapping[str, Mapping[str, Stat]]  # call label ("cond", "uncond") -> metric -> curve
    proxy_boundaries: tuple[float, float]
    premise: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DivergenceRecord:
        per_call = {
            label: {metric: Stat.from_dict(stat) for metric, stat in metrics.items()}
            for label, metrics in (data.get("per_call") or {}).items()
        }
        early, late = data["proxy_boundaries"]
        return cls(
            fraction=tuple(float(v) for v in data["fraction"]),
            sigma=tuple(float(v) for v in data["sigma"]),
            cosine=Stat.from_dict(data["cosine"]),
            l2=Stat.from_dict(data["l2"]),
            per_call=per_call,
            proxy_boundaries=(float(early), float(late)),
            premise=tuple(data.get("premise") or ()),
        )


@dataclass(frozen=True)
class EarlyChoice:
    """A point of the early curve: index on the curve, switch point in % of the process, similarity there."""

    index: int
    x: float
    y: float


@dataclass(frozen=True)
class EarlyRecord:
    """The early-switch similarity curve (sec 4.2, App. B) and Algorithm 1's choice on its DINO mean."""

    x: tuple[float, ...]  # switch point in % of the process; the last point (100) is large-only
    steps: tuple[int, ...]
    alpha: float
    floor: float
    metrics: Mapping[str, Stat | None]  # "dino", "clip" (None unless --clip-model), "psnr", "ssim"
    chosen: EarlyChoice  # the boundary: Algorithm 1's knee, moved later to the similarity floor if below it
    premise: tuple[str, ...] = ()
    knee: EarlyChoice | None = None  # Algorithm 1's own knee when it was below the floor (None: chosen is it)
    se: tuple[float, ...] | None = None  # standard error of the mean DINO similarity per point (over units)
    noise_se: float = 0.0  # the floor is reached within noise_se x se (0: exactly)
    reference: str = "first"  # Algorithm 1's reference slope (profiles before the option were all "first")
    stability: tuple[float, ...] | None = None  # share of bootstrap resamples of the units choosing each x
    stability_draws: int = 0

    @property
    def dino(self) -> Stat:
        return self.metrics["dino"]

    def margin(self, index: int) -> float:
        """How far below the floor point ``index`` may be and still reach it (``noise_se`` standard errors)."""
        return self.noise_se * self.se[index] if self.se is not None else 0.0

    def choice_text(self) -> str:
        """The boundary in words: where the small model comes in, its similarity, the floor, the knee if moved."""
        c = self.chosen
        if c.y >= self.floor:
            clears = "clears the floor"
        elif c.y + self.margin(c.index) >= self.floor:
            clears = f"reaches the floor within {self.noise_se:g} SE ({self.se[c.index]:.4f}) of"
        else:
            clears = "misses the floor"
        text = f"small model from {c.x:.1f}% (DINO similarity {c.y:.4f}; {clears} {self.floor:g})"
        if self.knee is not None:
            within = f" even within {self.noise_se:g} SE" if self.noise_se and self.se is not None else ""
            text += (
                f"; Algorithm 1's knee at {self.knee.x:.1f}% (similarity {self.knee.y:.4f}) is below the floor"
                f"{within}, so the boundary moved to the first later point that reaches it"
            )
        return text

    def stability_text(self, units: int) -> str | None:
        """How often a bootstrap resample of the ``units`` units chooses the same boundary, and the advice if rarely."""
        if self.stability is None:
            return None
        from .boundaries import STABLE_SHARE

        share = self.stability[self.chosen.index]
        others = sorted(
            (
                (v, x)
                for i, (x, v) in enumerate(zip(self.x, self.stability, strict=True))
                if i != self.chosen.index and v
            ),
            reverse=True,
        )
        rest = ", ".join(f"{x:g}%: {v:.0%}" for v, x in others[:3])
        text = (
            f"{self.chosen.x:g}% in {share:.0%} of {self.stability_draws} bootstrap resamples of the {units} unit(s)"
            + (f" (also {rest})" if rest else "")
        )
        if share < STABLE_SHARE:
            text += "; not stable at this many units: calibrate on more prompts or seeds"
        return text

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"x": list(self.x), "steps": list(self.steps), "alpha": self.alpha, "floor": self.floor}
        out.update({name: _plain(stat) for name, stat in self.metrics.items()})
        out["chosen"] = _plain(dict(self.chosen.__dict__))
        if self.knee is not None:
            out["knee"] = _plain(dict(self.knee.__dict__))
        out["premise"] = list(self.premise)
        out["se"] = _plain(self.se)
        out["noise_se"] = self.noise_se
        out["reference"] = self.reference
        if self.stability is not None:
            out["stability"] = {"draws": self.stability_draws, "share": list(self.stability)}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EarlyRecord:
        known = {
            "x",
            "steps",
            "alpha",
            "floor",
            "chosen",
            "premise",
            "knee",
            "se",
            "noise_se",
            "reference",
            "stability",
        }
        c = data["chosen"]
        knee = data.get("knee")
        return cls(
            x=tuple(float(v) for v in data["x"]),
            steps=tuple(int(v) for v in data["steps"]),
            alpha=float(data["alpha"]),
            floor=float(data["floor"]),
            metrics={k: Stat.from_dict(v) for k, v in data.items() if k not in known},
            chosen=EarlyChoice(int(c["index"]), float(c["x"]), float(c["y"])),
            premise=tuple(data.get("premise") or ()),
            knee=None if knee is None else EarlyChoice(int(knee["index"]), float(knee["x"]), float(knee["y"])),
            se=_floats(data["se"]) if data.get("se") is not None else None,
            noise_se=float(data.get("noise_se") or 0.0),
            reference=str(data.get("reference") or "first"),
            stability=_floats(data["stability"]["share"]) if data.get("stability") else None,
            stability_draws=int(data["stability"]["draws"]) if data.get("stability") else 0,
        )


LATE_METRIC_NAMES = ("fid", "kid")
"""Distribution metrics a late curve can hold (each under its own key)."""


@dataclass(frozen=True)
class LateChoice:
    """The late re-entry point: index on the curve (None from the divergence curve), % of the process, value."""

    index: int | None
    x: float
    value: float | None


@dataclass(frozen=True)
class LateRecord:
    """The late re-entry curve (sec 4.3): a distribution metric per candidate, or the divergence proxy."""

    source: str  # "fid" (curve measured against --reference) or "divergence" (no reference: proxy boundary)
    chosen: LateChoice
    x: tuple[float, ...] | None = None
    steps: tuple[int, ...] | None = None
    values: tuple[float, ...] | None = None
    metric: str = "fid"
    premise: tuple[str, ...] = ()
    feature: str | None = None
    reference_frames: int = 0
    generated_frames: int = 0
    spread: tuple[float, ...] | None = None  # KID: standard deviation over subsets, per candidate
    subset_size: int | None = None  # KID: frames per subset
    requested: str = "fid"  # --late-metric as given ("auto" chose ``metric``)
    others: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # the other metrics' curves
    se: tuple[float, ...] | None = None  # jackknife SE of each candidate's difference to the rule's base (0 there)
    noise_se: float = 0.0  # candidates within noise_se x se of the base tie with it; the latest is chosen
    rule: str = "minimum"  # --late-rule: the base is the minimum ("minimum") or large-only, x[0] ("parity")

    @property
    def minimum(self) -> int | None:
        """Index of the curve's minimum (the chosen point unless a later one ties within noise)."""
        return None if self.values is None else min(range(len(self.values)), key=self.values.__getitem__)

    def choice_text(self) -> str:
        """The boundary in words: ``(rule): large model again from x% (value...)``."""
        m, c = self.metric.upper(), self.chosen
        if self.source == "divergence" or c.value is None:
            return f"(divergence curve): large model again from {c.x:.1f}%"
        last = self.x is not None and c.index == len(self.x) - 1
        where = "no re-entry (L-S-S)" if last else f"large model again from {c.x:.1f}%"
        if self.rule == "parity" and self.values is not None:
            base = self.values[0]
            if c.index == 0:
                return f"(latest re-entry no worse than large-only's {m}): none, large-only ({m} {base:.4f})"
            within = ""
            if self.se is not None and self.noise_se > 0:
                within = f", within {self.noise_se * self.se[c.index]:.4f} ({self.noise_se:g} SE)"
            return (
                f"(latest re-entry no worse than large-only's {m}): {where} ({m} {c.value:.4f}, "
                f"{c.value - base:+.4f} against large-only's {base:.4f}{within})"
            )
        low = self.minimum
        if self.se is None or low is None or low == c.index or self.values is None or self.x is None:
            return f"({m} minimum): {where} ({m} {c.value:.4f})"
        gap, margin = c.value - self.values[low], self.noise_se * self.se[c.index]
        return (
            f"(latest point within {self.noise_se:g} SE of the {m} minimum): {where} ({m} {c.value:.4f}, "
            f"{gap:+.4f} from the minimum {self.values[low]:.4f} at {self.x[low]:.1f}%, within {margin:.4f})"
        )

    def to_dict(self) -> dict[str, Any]:
        key = self.metric
        return {
            "se": _plain(self.se),
            "noise_se": self.noise_se,
            "rule": self.rule,
            "requested": self.requested,
            "spread": _plain(self.spread),
            "subset_size": self.subset_size,
            **{name: _plain(values) for name, values in self.others.items()},
            "source": self.source,
            "metric": self.metric,
            "x": _plain(self.x),
            "steps": _plain(self.steps),
            key: _plain(self.values),
            "chosen": {"index": self.chosen.index, "x": self.chosen.x, key: self.chosen.value},
            "premise": list(self.premise),
            "feature": self.feature,
            "reference_frames": self.reference_frames,
            "generated_frames": self.generated_frames,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LateRecord:
        metric = data.get("metric", "fid")
        c = data["chosen"]
        values = data.get(metric)
        return cls(
            source=data["source"],
            chosen=LateChoice(c.get("index"), float(c["x"]), c.get(metric)),
            x=_floats(data["x"]) if data.get("x") is not None else None,
            steps=tuple(int(v) for v in data["steps"]) if data.get("steps") is not None else None,
            values=_floats(values) if values is not None else None,
            metric=metric,
            premise=tuple(data.get("premise") or ()),
            feature=data.get("feature"),
            reference_frames=int(data.get("reference_frames") or 0),
            generated_frames=int(data.get("generated_frames") or 0),
            spread=_floats(data["spread"]) if data.get("spread") is not None else None,
            subset_size=data.get("subset_size"),
            requested=data.get("requested", metric),
            others={m: _floats(data[m]) for m in LATE_METRIC_NAMES if m != metric and data.get(m) is not None},
            se=_floats(data["se"]) if data.get("se") is not None else None,
            noise_se=float(data.get("noise_se") or 0.0),
            rule=data.get("rule", "minimum"),
        )


def _record_from(cls: type, data: Mapping[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class SweepRecord:
    """``--method sweep``: every K-segment pattern's FLOPs, FID and similarity, the fronts and the choice."""

    segments: int
    patterns: tuple[str, ...]
    flops: tuple[float, ...]
    fid: tuple[float, ...] | None
    dino: tuple[float, ...]
    front_fid: tuple[int, ...] | None
    front_dino: tuple[int, ...]
    tolerance: float
    rule: str
    chosen: Mapping[str, Any]  # index, pattern, flops, fid, dino (and kid)
    large_only: Mapping[str, Any]
    reference_frames: int
    cost: Mapping[str, Any]
    metric: str = "fid"  # the distribution metric of the tolerance rule
    kid: tuple[float, ...] | None = None
    front_kid: tuple[int, ...] | None = None
    subset_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepRecord:
        return _record_from(cls, data)


@dataclass(frozen=True)
class SearchRecord:
    """``--method search``: the schedules the beam search scored, its beams, the choice and its cost."""

    segments: int
    beam_width: int
    tolerance: float
    score: str
    candidates: tuple[Mapping[str, Any], ...]  # pattern, score, flops, depth
    beams: tuple[tuple[str, ...], ...]
    chosen: Mapping[str, Any]
    reference_score: float
    cost: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchRecord:
        return _record_from(cls, data)


@dataclass(frozen=True)
class CompareRow:
    """One schedule of ``--compare``, scored on every unit like the calibrator scores its own candidates.

    ``kind`` is ``large-only`` (the reference), ``calibrated`` (the method's decision) or ``compared`` (a given
    profile, ``source`` the ``--compare`` argument). ``nfe``, ``steps``, ``calls`` and ``uncond_skipped`` are one
    video's (the router's counters; the same for every unit), ``flops_ratio`` comes from the schedule's profile cost
    block at the calibration step count, ``similarity`` is the mean (and ``similarity_std`` the spread) over units of
    the frame-feature similarity to large-only, ``late`` the late metric against the reference (``late_std``: KID's
    spread over subsets) and ``others`` the other distribution metric. ``reused``: the large-only pass of the method
    supplied the frames' features, nothing was computed for this row.
    """

    name: str
    kind: str
    pattern: str
    schedule: tuple[Mapping[str, Any], ...]
    nfe: int
    steps: Mapping[str, int]
    calls: Mapping[str, int]
    flops_ratio: float
    similarity: float
    similarity_std: float
    source: str | None = None
    uncond_skipped: Mapping[str, int] = field(default_factory=dict)
    late: float | None = None
    late_std: float | None = None
    others: Mapping[str, float] = field(default_factory=dict)
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompareRow:
        row = _record_from(cls, data)
        return replace(row, schedule=tuple(row.schedule))


@dataclass(frozen=True)
class CompareRecord:
    """``--compare``: large-only, the calibrated schedule and each given profile's schedule, on the same units.

    An evaluation only: the method's decision is made without it. ``metric`` is the late metric (``fid`` or ``kid``,
    chosen as the late curve chooses it; None without ``--reference``), ``subset_size`` KID's subset size,
    ``generated_frames`` the frames per row it used; ``calls`` the transformer calls the comparison computed.
    """

    rows: tuple[CompareRow, ...]
    num_steps: int
    units: int
    feature: str | None
    calls: Mapping[str, int]
    metric: str | None = None
    requested: str = "auto"
    subset_size: int | None = None
    late_feature: str | None = None
    reference_frames: int = 0
    generated_frames: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompareRecord:
        record = _record_from(cls, data)
        return replace(record, rows=tuple(CompareRow.from_dict(r) for r in data["rows"]))


@dataclass(frozen=True)
class CallsRecord:
    """Transformer calls per role: computed, the method's formula, and the same protocol run naively."""

    computed: Mapping[str, int]
    formula: Mapping[str, int]
    naive: Mapping[str, int]
    calls_per_step: int

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CallsRecord:
        return _record_from(cls, data)


@dataclass(frozen=True)
class PremiseRecord:
    """Whether the paper's premise held for this pair, and each check that failed (one line each)."""

    holds: bool
    failed: tuple[str, ...] = ()
    tested: bool = True  # sweep/search choose by tolerance and do not test the premise

    def to_dict(self) -> dict[str, Any]:
        return {"holds": self.holds, "failed": list(self.failed), "tested": self.tested}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PremiseRecord:
        return cls(bool(data["holds"]), tuple(data.get("failed") or ()), bool(data.get("tested", True)))


@dataclass(frozen=True)
class CalibrationRecord:
    """The whole calibration block of a profile."""

    method: str
    num_steps: int
    num_prompts: int
    seeds: tuple[int, ...]
    feature_model: str | None
    divergence: DivergenceRecord
    premise: PremiseRecord
    calls: CallsRecord
    early: EarlyRecord | None = None
    late: LateRecord | None = None
    sweep: SweepRecord | None = None
    search: SearchRecord | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    compare: CompareRecord | None = None  # --compare: absent when no schedule was compared

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: _plain(getattr(self, f.name)) for f in fields(self)}
        for optional in ("early", "late", "sweep", "search", "compare"):  # a block the method did not produce is absent
            if out[optional] is None:
                del out[optional]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationRecord:
        def opt(key: str, kind: Any) -> Any:
            return kind.from_dict(data[key]) if data.get(key) is not None else None

        return cls(
            method=data["method"],
            num_steps=int(data["num_steps"]),
            num_prompts=int(data["num_prompts"]),
            seeds=tuple(int(s) for s in data["seeds"]),
            feature_model=data.get("feature_model"),
            divergence=DivergenceRecord.from_dict(data["divergence"]),
            premise=PremiseRecord.from_dict(data["premise"]),
            calls=CallsRecord.from_dict(data["calls"]),
            early=opt("early", EarlyRecord),
            late=opt("late", LateRecord),
            sweep=opt("sweep", SweepRecord),
            search=opt("search", SearchRecord),
            notes=tuple(data.get("notes") or ()),
            compare=opt("compare", CompareRecord),
        )
