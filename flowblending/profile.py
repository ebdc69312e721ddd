"""Profile format (versions 1 and 2): dataclasses, loading (shipped name or path), validation and atomic saving.

A profile is data, never code: JSON validated against ``schema/profile.schema.json`` (draft 2020-12),
then checked in code for what a schema cannot express (contiguous segments, roles that exist, boundaries and
costs that agree with the schedule). Every problem is reported as ``$.json.path: message``.

Version 2 adds fields (:data:`V2_FIELDS`); a profile that uses none of them is written as version 1, so every
version 1 reader still reads it, and a version 1 profile that uses one is refused with the field's path.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ProfileError
from .schedule import Segment, check_segments, first_step, own_steps_errors, run_roles

#: The newest profile format version this flowblending reads (it reads 1 and 2).
SCHEMA_VERSION = 2

#: Fields that need format version 2, as (where, field): a segment's own step count and a single-file model.
V2_FIELDS = (("schedule[*]", "steps"), ("models.*", "file"), ("models.*", "config"))


@dataclass(frozen=True)
class ModelSpec:
    """Where one role's transformer comes from.

    ``file`` (format version 2): the transformer is one checkpoint file in ``id`` (a Hub repository or a local
    folder; ``revision`` is that repository's), loaded with ``from_single_file``; its diffusers config is read from
    ``config`` (a diffusers repository or local folder) at ``subfolder``.
    """

    id: str
    revision: str | None = None
    subfolder: str | None = "transformer"
    transformer_class: str | None = None
    parameters: int | None = None
    file: str | None = None
    config: str | None = None

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
        if self.file is not None:
            out["file"] = self.file
        if self.config is not None:
            out["config"] = self.config
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
        """Role of every step a run of ``num_steps`` base steps takes (default: the calibration step count)."""
        return run_roles(self.schedule, num_steps or self.setting.num_inference_steps)

    @property
    def format_version(self) -> int:
        """1, or 2 when the profile uses a version 2 field (a segment's ``steps``, a model's ``file``/``config``)."""
        uses_v2 = any(s.steps is not None for s in self.schedule) or any(
            m.file is not None or m.config is not None for m in self.models.values()
        )
        return 2 if uses_v2 else 1

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"schema_version": self.format_version, "name": self.name}
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
        normalised, errors = _checked(data)
        if normalised is None:
            raise ProfileError(f"{source or 'profile'} is not a valid profile", errors, source)
        return cls._build(normalised, source)

    @classmethod
    def _build(cls, data: dict, source: str | None) -> Profile:
        models = {
            role: ModelSpec(
                id=m["id"],
                revision=m.get("revision"),
                subfolder=m.get("subfolder", "transformer"),
                transformer_class=m.get("transformer_class"),
                parameters=m.get("parameters"),
                file=m.get("file"),
                config=m.get("config"),
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
    return Segment(d["model"], d["start"], d["end"], d.get("guidance_scale"), d.get("steps"))


def _v2_field_paths(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(JSON path, field) of every version 2 field in a profile dict of any shape (nothing assumed valid)."""
    found = []
    schedule = data.get("schedule")
    if isinstance(schedule, list):
        for i, seg in enumerate(schedule):
            if isinstance(seg, dict) and "steps" in seg:
                found.append((f"$.schedule[{i}].steps", "steps"))
    models = data.get("models")
    if isinstance(models, dict):
        for role, spec in models.items():
            if isinstance(spec, dict):
                found += [(f"$.models{_key_part(role)}.{key}", key) for key in ("file", "config") if key in spec]
    return found


@cache
def profile_schema() -> dict:
    """The profile JSON Schema shipped with the package."""
    text = resources.files("flowblending").joinpath("schema/profile.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


#: Deepest nesting of objects and arrays a profile may have. Real profiles nest under 10 levels; the limit keeps
#: every recursive step on profile data (schema checks, ``repr`` in messages, ``==``, ``json.dump``) far from
#: Python's recursion limit.
MAX_DEPTH = 64

#: At most this many problems are listed from the JSON-value check (a file of a million NaNs gives one screen).
MAX_VALUE_ERRORS = 50

#: The largest integer a float can hold; a bigger one cannot take part in the float arithmetic of the checks.
_FLOAT_MAX_INT = int(sys.float_info.max)

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key_part(key: Any) -> str:
    """One step of a JSON path: ``.name`` for plain keys, ``['odd key']`` for any other."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"[{key}]"
    if isinstance(key, str) and _PLAIN_KEY.fullmatch(key):
        return f".{key}"
    return f"[{_short_repr(key)}]"


def _json_path(parts: Any) -> str:
    return "$" + "".join(_key_part(p) for p in parts)


def _short_repr(value: Any, limit: int = 60) -> str:
    """A printable, bounded ``repr`` of any value (never raises; lone surrogates come out escaped)."""
    try:
        text = repr(value) if isinstance(value, str) else ascii(value)
    except Exception:  # a foreign object whose repr fails still gets a message
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _non_finite_text(value: float) -> str:
    """How a non-finite float is spelled in the (non-standard) JSON that Python's json module reads."""
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _json_value_errors(data: Any) -> list[str]:
    """Problems that make ``data`` something other than plain, finite JSON, as ``$.path: message`` lines.

    Run before the schema so that nothing later (jsonschema, the semantic checks, ``repr`` in messages) meets a
    value it cannot handle: nesting deeper than :data:`MAX_DEPTH`, non-string keys, types JSON does not have
    (tuples, sets, complex, Decimal...), NaN and infinities, integers beyond the float range, strings that are
    not valid Unicode (lone surrogates from ``"\\ud800"`` escapes). Walks with an explicit stack: no recursion.
    """
    errors: list[str] = []
    stack: list[tuple[Any, str, int]] = [(data, "$", 0)]
    while stack and len(errors) < MAX_VALUE_ERRORS:
        value, path, depth = stack.pop()
        if isinstance(value, dict):
            if depth >= MAX_DEPTH:
                errors.append(f"{path}: nested deeper than {MAX_DEPTH} levels; flatten it (profiles are shallow data).")
                continue
            children = []
            for key, child in value.items():
                if not isinstance(key, str):
                    errors.append(
                        f"{path}: key {_short_repr(key)} is of type {type(key).__name__}; JSON object keys are "
                        "strings, write it as one."
                    )
                    continue
                if problem := _bad_unicode(key):
                    errors.append(f"{path}: key {_short_repr(key)} {problem}")
                    continue
                children.append((child, path + _key_part(key), depth + 1))
            stack.extend(reversed(children))
        elif isinstance(value, list):
            if depth >= MAX_DEPTH:
                errors.append(f"{path}: nested deeper than {MAX_DEPTH} levels; flatten it (profiles are shallow data).")
                continue
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in reversed(list(enumerate(value))))
        elif isinstance(value, str):
            if problem := _bad_unicode(value):
                errors.append(f"{path}: the string {_short_repr(value)} {problem}")
        elif isinstance(value, float):
            if not math.isfinite(value):
                errors.append(
                    f"{path}: {_non_finite_text(value)} is not a finite number; profiles hold finite numbers only "
                    "(JSON has no NaN or Infinity, and a number beyond about 1.8e308 reads as Infinity)."
                )
        elif isinstance(value, int):  # bool is an int too, and always fine here
            if abs(value) > _FLOAT_MAX_INT:
                digits = int(value.bit_length() * math.log10(2)) + 1
                errors.append(
                    f"{path}: an integer of about {digits} digits is beyond the float range (about 1.8e308); "
                    "profiles hold numbers a float can represent."
                )
        elif value is not None:
            errors.append(
                f"{path}: {_short_repr(value)} is of type {type(value).__name__}, not a JSON value; use a dict, "
                "list, str, int, float, bool or None."
            )
    if stack:
        errors.append(f"$: more problems not listed (the first {MAX_VALUE_ERRORS} are above).")
    return errors


def _bad_unicode(text: str) -> str | None:
    """Why ``text`` cannot be written as UTF-8 (a lone surrogate), or None when it can."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"holds a lone surrogate {text[exc.start]!a} at position {exc.start}, which is not Unicode text; "
            "remove it or write the character itself."
        )
    return None


def _resolve_ref(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow local ``{"$ref": "#/$defs/..."}`` references (the only kind the profile schema uses)."""
    seen = 0
    while "$ref" in schema and seen < 32:
        node: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema, seen = node, seen + 1
    return schema


def _allows_integer(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    return kind == "integer" or (isinstance(kind, list) and "integer" in kind)


def _integers_as_int(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any]) -> Any:
    """``value`` (schema-valid) with every float the schema accepts as an integer (``50.0``) made a Python int.

    JSON Schema counts a number with a zero fraction as an integer, so ``"num_inference_steps": 50.0`` passes it;
    the loader then promises an int (``range(n)``, step arithmetic). Containers on the way are copied, the
    caller's data is left as it is; parts the schema does not describe (``calibration``) are kept untouched.
    """
    schema = _resolve_ref(schema, root)
    if isinstance(value, float) and _allows_integer(schema) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        extra = extra if isinstance(extra, Mapping) else None
        if not props and extra is None:
            return value
        out = {}
        for key, child in value.items():
            sub = props.get(key, extra)
            out[key] = child if sub is None else _integers_as_int(child, sub, root)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [_integers_as_int(child, schema["items"], root) for child in value]
    return value


@cache
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(profile_schema())


#: What to write instead, per JSON Schema type, for the fix part of a type error.
_TYPE_FIX = {
    "integer": "an integer such as 50 (not 50.5, a string or true/false)",
    "number": "a number such as 0.5 (not a string or true/false)",
    "string": 'a string such as "large"',
    "boolean": "true or false",
    "object": "an object {...}",
    "array": "an array [...]",
    "null": "null",
}


def _schema_message(error: Any) -> str:
    """``$.path: message`` for a jsonschema error; type errors also say what to write instead."""
    message = f"{_json_path(error.absolute_path)}: {error.message}"
    if error.validator == "type":
        kinds = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        fixes = [_TYPE_FIX.get(kind, kind) for kind in kinds]
        message += f"; write {' or '.join(fixes)}."
    return message


def validate_profile_dict(data: Any) -> list[str]:
    """All problems of a profile dict as ``$.path: message`` lines; empty when it is valid."""
    return _checked(data)[1]


def _checked(data: Any) -> tuple[dict | None, list[str]]:
    """Validate ``data``: (the normalised profile dict, []) when valid, else (None, problems).

    Order matters: plain-JSON check, then the schema, then integer normalisation (the semantic checks do step
    arithmetic and need ints), then the checks the schema cannot express.
    """
    errors = _json_value_errors(data)
    if errors:
        return None, errors
    version = data.get("schema_version") if isinstance(data, dict) else None
    if isinstance(version, int | float) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        from . import __version__

        return None, [
            f"$.schema_version: this profile uses format version {version:g}, newer than the version "
            f"{SCHEMA_VERSION} this flowblending {__version__} reads; upgrade with `pip install -U flowblending`."
        ]
    if isinstance(version, int | float) and not isinstance(version, bool) and version == 1:
        v2 = _v2_field_paths(data)
        if v2:
            return None, [
                f"{path}: '{name}' is a format version 2 field but the profile says \"schema_version\": 1; set "
                '"schema_version": 2 (version 1 readers do not know it).'
                for path, name in v2
            ]
    schema_errors = sorted(_validator().iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if schema_errors:
        return None, [_schema_message(e) for e in schema_errors]
    schema = profile_schema()
    normalised = _integers_as_int(data, schema, schema)
    errors = _semantic_errors(normalised)
    return (None, errors) if errors else (normalised, [])


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
    errors += own_steps_errors(segments, steps)
    if errors:
        return errors
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
    plan = run_roles(segments, steps)
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
    # In floats: an integer FLOP count times the step count may pass the float range; it becomes inf (no match).
    total = sum(float(cost["flops_per_step"][r]) * n for r, n in counts.items() if n)
    if not math.isclose(total, cost["flops_total"], rel_tol=1e-6):
        errors.append(f"$.cost.flops_total: {cost['flops_total']:.6g} but the schedule costs {total:.6g}.")
    large_only = float(cost["flops_per_step"][ref]) * steps  # N base steps, also when segments run their own
    if not math.isclose(large_only, cost["flops_large_only"], rel_tol=1e-6):
        errors.append(f"$.cost.flops_large_only: {cost['flops_large_only']:.6g} but {ref}-only costs {large_only:.6g}.")
    return errors


def shipped_profile_names() -> list[str]:
    """Names of the profiles installed with the package (``profiles/*.json``)."""
    folder = resources.files("flowblending.profiles")
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def resolve_profile_path(name_or_path: str | os.PathLike) -> Path | Any:
    """A path to the profile file: an existing path, else a shipped profile of that name."""
    text = os.fspath(name_or_path) if isinstance(name_or_path, str | os.PathLike) else None
    if not isinstance(text, str):
        raise ProfileError(
            f"a profile is named by a shipped name or a path (str or os.PathLike), got {type(name_or_path).__name__} "
            f"{_short_repr(name_or_path)}; for a dict use Profile.from_dict(data)."
        )
    shown = _short_repr(text, 120)
    try:
        path = Path(text).expanduser()
        is_file, is_dir = path.is_file(), path.is_dir()
    except (OSError, RuntimeError, ValueError) as exc:  # name too long, unknown ~user, ...
        raise ProfileError(
            f"profile {shown} is not a usable path ({getattr(exc, 'strerror', None) or exc}); give a .json file "
            "or a shipped name."
        ) from None
    if is_file:
        return path
    if is_dir:
        raise ProfileError(f"profile {shown} is a directory; give a .json file or a shipped name.")
    looks_like_path = text.endswith(".json") or os.sep in text or "/" in text
    if not looks_like_path:
        candidate = resources.files("flowblending.profiles").joinpath(f"{text}.json")
        try:
            if candidate.is_file():
                return candidate
        except (OSError, ValueError):
            pass  # not a shipped name either: reported below
    known = ", ".join(shipped_profile_names())
    if looks_like_path:
        raise ProfileError(f"profile file {shown} does not exist; check the path (shipped profiles: {known}).")
    raise ProfileError(f"unknown profile {shown}: no such file and no shipped profile of that name; known: {known}.")


class _Repeated(dict):
    """A parsed JSON object whose text repeated a key (counts in ``repeated``); never leaves parse_profile_text."""

    repeated: dict[str, int]


class _HugeInteger:
    """Stands in for an integer literal too long for ``int()`` (``sys.get_int_max_str_digits()``); never leaves
    parse_profile_text."""

    def __init__(self, digits: int):
        self.digits = digits


def parse_profile_text(text: str, source: str = "profile") -> Any:
    """Parse profile JSON text (no validation) into plain Python values; unreadable text is a ProfileError.

    Stricter than ``json.loads`` where JSON itself is loose: a repeated key in one object is an error (readers
    disagree on which copy counts), and so is an integer too long for Python to convert. ``NaN`` and
    ``Infinity``, which ``json`` accepts, parse to floats that validation then rejects with their JSON path.
    """
    flagged: list[bool] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict:
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        counts: dict[str, int] = {}
        for key, _ in pairs:
            counts[key] = counts.get(key, 0) + 1
        flagged.append(True)
        repeated = _Repeated(obj)
        repeated.repeated = {key: n for key, n in counts.items() if n > 1}
        return repeated

    def parse_int(literal: str) -> int | _HugeInteger:
        try:
            return int(literal)
        except ValueError:
            flagged.append(True)
            return _HugeInteger(len(literal.lstrip("-")))

    try:
        # a leading byte-order mark (some Windows editors write one) is skipped, as RFC 8259 allows
        data = json.loads(text.removeprefix("\ufeff"), object_pairs_hook=pairs_hook, parse_int=parse_int)
    except json.JSONDecodeError as exc:
        raise ProfileError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.", source=source
        ) from None
    except RecursionError:
        raise ProfileError(
            f"{source} nests its JSON too deeply to read; profiles nest at most {MAX_DEPTH} levels.", source=source
        ) from None
    if flagged:
        raise ProfileError(f"{source} is not a valid profile", _text_errors(data), source)
    return data


def _text_errors(data: Any) -> list[str]:
    """Where the parsed text repeated keys or held unconvertible integers, as ``$.path: message`` lines."""
    errors: list[str] = []
    stack: list[tuple[Any, str]] = [(data, "$")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, _Repeated):
            for key, n in value.repeated.items():
                errors.append(
                    f"{path}: key {_short_repr(key)} appears {n} times in one object; keep exactly one (JSON readers "
                    "disagree on which copy counts)."
                )
        if isinstance(value, dict):
            stack.extend((child, path + _key_part(key)) for key, child in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((child, f"{path}[{i}]") for i, child in reversed(list(enumerate(value))))
        elif isinstance(value, _HugeInteger):
            errors.append(
                f"{path}: an integer of {value.digits} digits is beyond the float range (about 1.8e308); profiles "
                "hold numbers a float can represent."
            )
    return errors


def read_profile_json(name_or_path: str | os.PathLike) -> tuple[Any, str]:
    """Parse a profile file into a dict (no validation); errors give the line and column or the JSON path."""
    path = resolve_profile_path(name_or_path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(
            f"{source} is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8.", source=source
        ) from None
    except OSError as exc:
        raise ProfileError(f"cannot read profile {source}: {exc.strerror or exc}.", source=source) from None
    return parse_profile_text(text, source), source


def load_profile(name_or_path: str | os.PathLike | Profile) -> Profile:
    """Load and validate a profile from a shipped name (``"wan21"``) or a path (``"my-pair.json"``)."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    data, source = read_profile_json(name_or_path)
    return Profile.from_dict(data, source)


def save_profile(profile: Profile | Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Validate and write a profile atomically (a crash never leaves a half-written file)."""
    data, errors = _checked(profile.to_dict() if isinstance(profile, Profile) else dict(profile))
    if data is None:
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
