"""Profile format v1: dataclasses, loading (shipped name or path), validation and atomic saving.

A profile is data (DESIGN decision 6): JSON validated against ``schema/profile.schema.json`` (draft 2020-12),
then checked in code for what a schema cannot express (contiguous segments, roles that exist, boundaries and
costs that agree with the schedule). Every problem is reported as ``$.json.path: message``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ProfileError
from .schedule import Segment, check_segments, first_step, plan_steps

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ModelSpec:
    """Where one role's transformer comes from."""

    id: str
    revision: str | None = None
    subfolder: str | None = "transformer"
    transformer_class: str | None = None
    parameters: int | None = None

    @property
    def location(self) -> str:
        """What ``from_pretrained`` gets: the hub id or path, with ``package://pkg/rel`` resolved to the
        installed package's data (how the demo profile points at weights shipped in the wheel)."""
        return resolve_model_location(self.id)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"id": self.id, "revision": self.revision, "subfolder": self.subfolder}
        if self.transformer_class is not None:
            out["transformer_class"] = self.transformer_class
        out["parameters"] = self.parameters
        return out


PACKAGE_SCHEME = "package://"


def resolve_model_location(model_id: str) -> str:
    """``package://calibrate.demo/weights/pipeline`` -> that folder of the installed package; else unchanged."""
    if not model_id.startswith(PACKAGE_SCHEME):
        return model_id
    package, _, relative = model_id[len(PACKAGE_SCHEME) :].partition("/")
    try:
        root = resources.files(package)
    except ModuleNotFoundError:
        raise ProfileError(
            f"model id {model_id!r} names package {package!r}, which is not installed; install it or use a path."
        ) from None
    return str(root.joinpath(relative))


@dataclass(frozen=True)
class SchedulerSpec:
    """The scheduler of the calibration setting (class name, flow shift, full diffusers config)."""

    cls: str
    flow_shift: float | None = None
    config: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"class": self.cls, "flow_shift": self.flow_shift}
        if self.config:
            out["config"] = dict(self.config)
        return out


@dataclass(frozen=True)
class Setting:
    """The generation setting a profile was calibrated under."""

    num_inference_steps: int
    scheduler: SchedulerSpec
    guidance_scale: float | None = None
    height: int | None = None
    width: int | None = None
    num_frames: int | None = None
    max_sequence_length: int | None = None
    fps: int | None = None
    negative_prompt: str | None = None

    def to_dict(self) -> dict:
        out: dict[str, Any] = {
            "num_inference_steps": self.num_inference_steps,
            "scheduler": self.scheduler.to_dict(),
        }
        for name in ("guidance_scale", "height", "width", "num_frames", "max_sequence_length", "fps"):
            out[name] = getattr(self, name)
        if self.negative_prompt is not None:
            out["negative_prompt"] = self.negative_prompt
        return out

    def call_kwargs(self) -> dict[str, Any]:
        """Pipeline ``__call__`` keyword arguments this setting fixes (None values left to the pipeline)."""
        names = (
            "num_inference_steps",
            "guidance_scale",
            "height",
            "width",
            "num_frames",
            "max_sequence_length",
        )
        out = {n: getattr(self, n) for n in names if getattr(self, n) is not None}
        if self.negative_prompt is not None:
            out["negative_prompt"] = self.negative_prompt
        return out


@dataclass(frozen=True)
class Boundary:
    """A switch between two segments: its fraction, first step and noise level in the calibration setting."""

    fraction: float
    step: int
    sigma: float
    timestep: float | None = None
    from_role: str | None = None
    to_role: str | None = None

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"fraction": self.fraction, "step": self.step, "sigma": self.sigma}
        out["timestep"] = self.timestep
        if self.from_role is not None:
            out["from"] = self.from_role
        if self.to_role is not None:
            out["to"] = self.to_role
        return out


@dataclass(frozen=True)
class Cost:
    """FLOPs of the schedule against large-only at the calibration step count."""

    flops_per_step: Mapping[str, float]
    steps: Mapping[str, int]
    step_fraction: Mapping[str, float]
    flops_total: float
    flops_large_only: float
    flops_ratio: float
    predicted_speedup: float
    reference_role: str = "large"
    source: str = ""

    def to_dict(self) -> dict:
        return {
            "reference_role": self.reference_role,
            "flops_per_step": dict(self.flops_per_step),
            "steps": dict(self.steps),
            "step_fraction": dict(self.step_fraction),
            "flops_total": self.flops_total,
            "flops_large_only": self.flops_large_only,
            "flops_ratio": self.flops_ratio,
            "predicted_speedup": self.predicted_speedup,
            "source": self.source,
        }


@dataclass(frozen=True)
class Profile:
    """A validated profile. Build with :func:`load_profile` or :meth:`from_dict`; write with :func:`save_profile`."""

    name: str
    pipeline_class: str
    base_role: str
    models: Mapping[str, ModelSpec]
    setting: Setting
    schedule: tuple[Segment, ...]
    boundaries: tuple[Boundary, ...]
    cost: Cost
    provenance: Mapping[str, Any]
    description: str = ""
    image_to_video: bool = False
    calibration: Mapping[str, Any] | None = None
    source: str | None = field(default=None, compare=False)

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.models)

    def plan(self, num_steps: int | None = None) -> tuple[str, ...]:
        """Role per step for ``num_steps`` (default: the calibration step count)."""
        return plan_steps(self.schedule, num_steps or self.setting.num_inference_steps)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "name": self.name}
        if self.description:
            out["description"] = self.description
        out["pipeline"] = {
            "class": self.pipeline_class,
            "base": self.base_role,
            "image_to_video": self.image_to_video,
        }
        out["models"] = {role: spec.to_dict() for role, spec in self.models.items()}
        out["setting"] = self.setting.to_dict()
        out["schedule"] = [s.to_dict() for s in self.schedule]
        out["boundaries"] = [b.to_dict() for b in self.boundaries]
        out["cost"] = self.cost.to_dict()
        if self.calibration is not None:
            out["calibration"] = dict(self.calibration)
        out["provenance"] = dict(self.provenance)
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> Profile:
        """Validate ``data`` (schema, then semantic checks) and build a Profile; raise ProfileError otherwise."""
        errors = validate_profile_dict(data)
        if errors:
            raise ProfileError(f"{source or 'profile'} is not a valid profile", errors, source)
        return cls._build(data, source)

    @classmethod
    def _build(cls, data: dict, source: str | None) -> Profile:
        models = {
            role: ModelSpec(
                id=m["id"],
                revision=m.get("revision"),
                subfolder=m.get("subfolder", "transformer"),
                transformer_class=m.get("transformer_class"),
                parameters=m.get("parameters"),
            )
            for role, m in data["models"].items()
        }
        s = data["setting"]
        sched = s["scheduler"]
        setting = Setting(
            num_inference_steps=s["num_inference_steps"],
            scheduler=SchedulerSpec(sched["class"], sched.get("flow_shift"), dict(sched.get("config", {}))),
            guidance_scale=s.get("guidance_scale"),
            height=s.get("height"),
            width=s.get("width"),
            num_frames=s.get("num_frames"),
            max_sequence_length=s.get("max_sequence_length"),
            fps=s.get("fps"),
            negative_prompt=s.get("negative_prompt"),
        )
        c = data["cost"]
        cost = Cost(
            flops_per_step=dict(c["flops_per_step"]),
            steps=dict(c["steps"]),
            step_fraction=dict(c.get("step_fraction", {})),
            flops_total=c["flops_total"],
            flops_large_only=c["flops_large_only"],
            flops_ratio=c["flops_ratio"],
            predicted_speedup=c["predicted_speedup"],
            reference_role=c.get("reference_role", "large"),
            source=c.get("source", ""),
        )
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            pipeline_class=data["pipeline"]["class"],
            base_role=data["pipeline"]["base"],
            image_to_video=bool(data["pipeline"].get("image_to_video", False)),
            models=models,
            setting=setting,
            schedule=tuple(_segment(d) for d in data["schedule"]),
            boundaries=tuple(
                Boundary(b["fraction"], b["step"], b["sigma"], b.get("timestep"), b.get("from"), b.get("to"))
                for b in data["boundaries"]
            ),
            cost=cost,
            calibration=data.get("calibration"),
            provenance=dict(data["provenance"]),
            source=source,
        )

    def replace(self, **changes: Any) -> Profile:
        """A copy with fields replaced (re-validated)."""
        return Profile.from_dict(replace(self, **changes).to_dict(), self.source)


def _segment(d: Mapping[str, Any]) -> Segment:
    return Segment(d["model"], d["start"], d["end"], d.get("guidance_scale"))


@cache
def profile_schema() -> dict:
    """The profile JSON Schema shipped with the package."""
    text = resources.files("flowblending").joinpath("schema/profile.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def _json_path(parts: Any) -> str:
    path = "$"
    for p in parts:
        path += f"[{p}]" if isinstance(p, int) else f".{p}"
    return path


def validate_profile_dict(data: Any) -> list[str]:
    """All problems of a profile dict as ``$.path: message`` lines; empty when it is valid."""
    import jsonschema

    bad = list(_non_finite(data, "$"))
    if bad:
        return [f"{path}: {value} is not a finite number; profiles hold finite numbers only." for path, value in bad]
    validator = jsonschema.Draft202012Validator(profile_schema())
    schema_errors = sorted(validator.iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if schema_errors:
        return [f"{_json_path(e.absolute_path)}: {e.message}" for e in schema_errors]
    return _semantic_errors(data)


def _non_finite(value: Any, path: str):
    if isinstance(value, float) and not math.isfinite(value):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _non_finite(v, f"{path}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _non_finite(v, f"{path}[{i}]")


def _semantic_errors(data: dict) -> list[str]:
    """Checks the schema cannot express: contiguity, known roles, boundaries and costs matching the schedule."""
    roles = list(data["models"])
    errors: list[str] = []
    if data["pipeline"]["base"] not in roles:
        errors.append(
            f"$.pipeline.base: unknown role {data['pipeline']['base']!r}; known roles: {', '.join(sorted(roles))}."
        )
    segments = []
    for i, d in enumerate(data["schedule"]):
        try:
            segments.append(_segment(d))
        except ProfileError as exc:
            errors.append(f"$.schedule[{i}]: {exc}")
    if errors:
        return errors
    errors += check_segments(segments, roles)
    if errors:
        return errors
    steps = data["setting"]["num_inference_steps"]
    bounds = data["boundaries"]
    if len(bounds) != len(segments) - 1:
        errors.append(
            f"$.boundaries: {len(bounds)} entries for {len(segments)} segments; give one per switch "
            f"({len(segments) - 1})."
        )
    else:
        for i, (b, seg) in enumerate(zip(bounds, segments[1:], strict=True)):
            if not math.isclose(b["fraction"], seg.start, abs_tol=1e-9):
                errors.append(
                    f"$.boundaries[{i}].fraction: {b['fraction']} but schedule[{i + 1}] starts at {seg.start}."
                )
            expected = first_step(seg.start, steps)
            if b["step"] != expected:
                errors.append(
                    f"$.boundaries[{i}].step: {b['step']} but a segment starting at {seg.start} of {steps} steps "
                    f"starts at step {expected}."
                )
    errors += _cost_errors(data["cost"], segments, steps, roles)
    return errors


def _cost_errors(cost: dict, segments: list[Segment], steps: int, roles: list[str]) -> list[str]:
    errors = []
    ref = cost.get("reference_role", "large")
    if ref not in roles:
        errors.append(f"$.cost.reference_role: unknown role {ref!r}; known roles: {', '.join(sorted(roles))}.")
    for role in cost["flops_per_step"]:
        if role not in roles:
            errors.append(f"$.cost.flops_per_step.{role}: unknown role; known roles: {', '.join(sorted(roles))}.")
    plan = plan_steps(segments, steps)
    needed = sorted(set(plan) | ({ref} if ref in roles else set()))
    for role in needed:
        if role not in cost["flops_per_step"]:
            errors.append(f"$.cost.flops_per_step: no entry for role {role!r}, which the schedule uses.")
    if errors:
        return errors
    counts = {role: plan.count(role) for role in roles}
    for role, n in cost["steps"].items():
        if counts.get(role, 0) != n:
            errors.append(f"$.cost.steps.{role}: {n} but the schedule runs {role} for {counts.get(role, 0)} steps.")
    total = sum(cost["flops_per_step"][r] * n for r, n in counts.items() if n)
    if not math.isclose(total, cost["flops_total"], rel_tol=1e-6):
        errors.append(f"$.cost.flops_total: {cost['flops_total']:.6g} but the schedule costs {total:.6g}.")
    large_only = cost["flops_per_step"][ref] * steps
    if not math.isclose(large_only, cost["flops_large_only"], rel_tol=1e-6):
        errors.append(f"$.cost.flops_large_only: {cost['flops_large_only']:.6g} but {ref}-only costs {large_only:.6g}.")
    return errors


def shipped_profile_names() -> list[str]:
    """Names of the profiles installed with the package (``profiles/*.json``)."""
    folder = resources.files("flowblending.profiles")
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def resolve_profile_path(name_or_path: str | os.PathLike) -> Path | Any:
    """A path to the profile file: an existing path, else a shipped profile of that name."""
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise ProfileError(f"profile {text!r} is a directory; give a .json file or a shipped name.")
    looks_like_path = text.endswith(".json") or os.sep in text or "/" in text
    if not looks_like_path:
        candidate = resources.files("flowblending.profiles").joinpath(f"{text}.json")
        if candidate.is_file():
            return candidate
    known = ", ".join(shipped_profile_names())
    if looks_like_path:
        raise ProfileError(f"profile file {text!r} does not exist; check the path (shipped profiles: {known}).")
    raise ProfileError(f"unknown profile {text!r}: no such file and no shipped profile of that name; known: {known}.")


def read_profile_json(name_or_path: str | os.PathLike) -> tuple[Any, str]:
    """Parse a profile file into a dict (no validation); errors give the line and column."""
    path = resolve_profile_path(name_or_path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{source} is not UTF-8 text ({exc.reason} at byte {exc.start}).", source=source) from None
    except OSError as exc:
        raise ProfileError(f"cannot read profile {source}: {exc.strerror or exc}.", source=source) from None
    try:
        return json.loads(text, parse_constant=lambda name: _reject_constant(name, source)), source
    except json.JSONDecodeError as exc:
        raise ProfileError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.", source=source
        ) from None


def _reject_constant(name: str, source: str) -> Any:
    raise ProfileError(f"{source} is not valid JSON: {name} is not a JSON number; profiles hold finite numbers only.")


def load_profile(name_or_path: str | os.PathLike | Profile) -> Profile:
    """Load and validate a profile from a shipped name (``"wan21"``) or a path (``"my-pair.json"``)."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    data, source = read_profile_json(name_or_path)
    return Profile.from_dict(data, source)


def save_profile(profile: Profile | Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Validate and write a profile atomically (a crash never leaves a half-written file)."""
    data = profile.to_dict() if isinstance(profile, Profile) else dict(profile)
    errors = validate_profile_dict(data)
    if errors:
        raise ProfileError("refusing to save an invalid profile", errors)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
