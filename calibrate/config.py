"""Calibration configuration: one frozen dataclass, validated on construction, recorded in the work dir."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from flowblending.errors import FlowBlendingError

from .boundaries import (
    DEFAULT_ALPHA,
    DEFAULT_EARLY_REFERENCE,
    DEFAULT_LATE_NOISE_SE,
    DEFAULT_LATE_RULE,
    DEFAULT_NOISE_SE,
    EARLY_REFERENCES,
    LATE_RULES,
    SIMILARITY_FLOOR,
)

DTYPES = ("auto", "float32", "bfloat16", "float16")
"""Model dtypes a calibration can run in."""

LATE_METRICS = ("auto", "fid", "kid")
"""Distribution metrics of the late sweep and the sweep's tolerance rule."""

DEFAULT_FEATURE_MODEL = "facebook/dinov2-small"
"""Frame features of the early-switch similarity and the FID (paper sec 4.2: DINOv2)."""


class CalibrationError(FlowBlendingError):
    """A calibration cannot start or continue (bad arguments, a work dir from another setting...)."""


def _opt(default: Any, help: str, **metadata: Any) -> Any:
    """A configuration field whose default and help the CLI reads (the one place either is written)."""
    factory = {"default_factory": default} if callable(default) else {"default": default}
    return field(**factory, metadata={"help": help, **metadata})


@dataclass(frozen=True)
class CalibrationConfig:
    """Everything that determines a calibration's result (and a few things that do not, like the device).

    Field defaults and their ``metadata["help"]`` are the CLI's defaults and help (``flowblending calibrate``).
    """

    large: str
    small: str
    prompts: tuple[str, ...]
    seeds: tuple[int, ...] = _opt((0,), "Comma-separated seeds per prompt.")
    reference: str | None = _opt(
        None, "Folder of real videos/frames for the FID late sweep (without it: late boundary from divergence)."
    )
    images: tuple[str, ...] | None = None
    small_subfolder: str | None = "auto"
    large_revision: str | None = None
    small_revision: str | None = None
    num_inference_steps: int | None = _opt(None, "Denoising steps (default: the pipeline's).")
    guidance_scale: float | None = _opt(None, "Guidance scale (default: the pipeline's).")
    height: int | None = _opt(None, "Frame height (default: the pipeline's).")
    width: int | None = _opt(None, "Frame width (default: the pipeline's).")
    num_frames: int | None = _opt(None, "Frames per video (default: the pipeline's).")
    max_sequence_length: int | None = _opt(None, "Prompt tokens (default: the pipeline's).")
    flow_shift: float | None = _opt(None, "Scheduler flow shift (default: the pipeline's).")
    feature_model: str = _opt(
        DEFAULT_FEATURE_MODEL,
        "Frame features for similarity (and FID): hub id or local path of a transformers vision model.",
    )
    clip_model: str | None = _opt(None, "Also report CLIP similarity with this model (hub id or path).")
    fid_features: str | None = _opt(None, "FID features: default the feature model; 'inception' needs [inception].")
    early_boundary: float | None = _opt(
        None, "Fix the early boundary (fraction, e.g. 0.4) instead of choosing it with Algorithm 1."
    )
    early_grid: float = _opt(
        0.1, "Spacing of early switch candidates, as a fraction of the process (1/steps: every step)."
    )
    late_grid: float = _opt(0.1, "Spacing of late re-entry candidates, as a fraction of the process.")
    late_metric: str = _opt(
        "auto",
        "Late re-entry (and sweep tolerance) metric against --reference: fid, kid, or auto (KID when the generated "
        "frames per candidate are fewer than 10x the feature width, where FID is biased).",
        choices=LATE_METRICS,
    )
    kid_subset_size: int | None = _opt(None, "KID subset size (default: 1000, capped by the smaller frame set).")
    alpha: float = _opt(DEFAULT_ALPHA, "Algorithm 1 slope threshold.")
    early_reference: str = _opt(
        DEFAULT_EARLY_REFERENCE,
        "Algorithm 1's reference slope: steepest (the curve's steepest rise, searched from there; the printed rule "
        "whenever the first segment is the steepest) or first (s_0, as printed).",
        choices=EARLY_REFERENCES,
    )
    floor: float = _opt(SIMILARITY_FLOOR, "Similarity the early boundary must keep (paper sec 4.2).")
    noise_se: float = _opt(
        DEFAULT_NOISE_SE,
        "Standard errors of measurement noise the early rule allows (over prompts x seeds): a point reaches "
        "--floor unless its mean similarity is more than this many SEs below it. 0: the floor exactly.",
    )
    late_rule: str = _opt(
        DEFAULT_LATE_RULE,
        "How the late boundary is read off the late curve: "
        + "; ".join(f"{name}: {rule.help}" for name, rule in LATE_RULES.items())
        + " (its quality at the least cost).",
        choices=tuple(LATE_RULES),
    )
    late_noise_se: float = _opt(
        DEFAULT_LATE_NOISE_SE,
        "Standard errors the late rule allows: the latest re-entry point within this many SEs of the late curve's "
        "minimum (--late-rule parity: of large-only's value) is chosen (the one-standard-error rule). 0 (default): "
        "the plain rule; the SEs are measured and reported either way.",
    )
    method: str = _opt("full", "Calibration method.")
    segments: int = _opt(8, "sweep/search: number of equal segments K (sweep evaluates all 2^K patterns).")
    tolerance: float = _opt(
        0.02,
        "sweep/search: pick the cheapest schedule with FID within this relative margin of large-only's (without "
        "--reference: DINO similarity >= 1 - tolerance).",
    )
    beam_width: int = _opt(4, "search: beam width.")
    name: str = "calibrated"
    samples: int = _opt(2, "Prompts whose videos go into the report.")
    compare: tuple[str, ...] = _opt(
        (),
        "Also evaluate this profile's schedule (a shipped name such as ltxv-ldl, or a path; repeatable) on every "
        "prompt and seed against large-only and the calibrated schedule: similarity to large-only, the late metric "
        "against --reference, NFE, calls per role and FLOPs ratio, in the profile's calibration block and the report. "
        "Its large role must be --large; its other roles are loaded as the runtime loads them. An evaluation only: "
        "the method's decision does not change.",
    )
    reference_max_frames: int | None = 4096
    device: str | None = _opt(None, "cuda, cpu... (default: cuda if available).")
    dtype: str = _opt("auto", "Model dtype (auto: bfloat16 on CUDA, float32 on CPU).", choices=DTYPES)
    local_files_only: bool | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.prompts:
            raise CalibrationError("prompts is empty; give at least one prompt (one per line in --prompts).")
        if not self.seeds:
            raise CalibrationError("seeds is empty; give e.g. --seeds 0 or --seeds 0,1.")
        for name in ("early_grid", "late_grid"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value <= 0.5):
                raise CalibrationError(
                    f"--{name.replace('_', '-')} must be a fraction of the process in (0, 0.5], got {value!r}; "
                    "e.g. 0.1 for every 10% of the steps, or 1/steps for every step."
                )
        for name in ("noise_se", "late_noise_se"):
            value = getattr(self, name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and value >= 0):
                raise CalibrationError(
                    f"--{name.replace('_', '-')} must be a number of standard errors >= 0, got {value!r}; e.g. 1 "
                    "(the one-standard-error rule) or 0 (the plain rule)."
                )
        if self.early_boundary is not None and not 0 < self.early_boundary < 1:
            raise CalibrationError(
                f"--early-boundary must be a fraction in (0, 1), got {self.early_boundary!r}; e.g. 0.4."
            )
        if not 0 < self.alpha < 1:
            raise CalibrationError(f"--alpha must be in (0, 1) (Algorithm 1's threshold), got {self.alpha!r}.")
        if self.early_reference not in EARLY_REFERENCES:
            raise CalibrationError(
                f"--early-reference must be one of {', '.join(EARLY_REFERENCES)}, got {self.early_reference!r}; "
                f"e.g. --early-reference {DEFAULT_EARLY_REFERENCE}."
            )
        if not 0 < self.floor <= 1:
            raise CalibrationError(f"--floor must be a similarity in (0, 1], got {self.floor!r}.")
        from .methods import METHODS

        if self.method not in METHODS:
            raise CalibrationError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}.")
        if self.method in ("sweep", "search"):
            steps = self.num_inference_steps
            if not isinstance(self.segments, int) or self.segments < 1 or (steps and self.segments > steps):
                raise CalibrationError(
                    f"--segments must be an integer between 1 and the step count, got {self.segments!r}; e.g. 8."
                )
            if self.method == "sweep" and self.segments > 12:
                raise CalibrationError(
                    f"--segments {self.segments} with --method sweep is 2^{self.segments} schedules per prompt; use "
                    "--method search for K > 12."
                )
        if not (isinstance(self.tolerance, int | float) and 0 <= self.tolerance < 10):
            raise CalibrationError(f"--tolerance must be a relative margin >= 0 (0.02 = 2%), got {self.tolerance!r}.")
        if not (isinstance(self.beam_width, int) and self.beam_width >= 1):
            raise CalibrationError(f"--beam-width must be a positive integer, got {self.beam_width!r}.")
        if self.num_inference_steps is not None and self.num_inference_steps < 2:
            raise CalibrationError(f"--steps must be at least 2, got {self.num_inference_steps}.")
        if self.late_rule not in LATE_RULES:
            raise CalibrationError(
                f"--late-rule must be one of {', '.join(LATE_RULES)}, got {self.late_rule!r}; e.g. --late-rule parity."
            )
        if self.late_rule != DEFAULT_LATE_RULE and (self.method != "full" or not self.reference):
            why = f"--method {self.method} has no late curve" if self.method != "full" else "there is no --reference"
            raise CalibrationError(
                f"--late-rule {self.late_rule} reads the late FID/KID curve of --method full against --reference, but "
                f"{why}; add --reference REAL_FRAMES_DIR with --method full, or drop --late-rule."
            )
        if self.late_metric not in LATE_METRICS:
            raise CalibrationError(f"--late-metric must be one of {', '.join(LATE_METRICS)}, got {self.late_metric!r}.")
        if self.kid_subset_size is not None and (
            isinstance(self.kid_subset_size, bool)
            or not isinstance(self.kid_subset_size, int)
            or self.kid_subset_size < 2
        ):
            raise CalibrationError(f"--kid-subset-size must be an integer >= 2, got {self.kid_subset_size!r}.")
        if self.dtype not in DTYPES:
            raise CalibrationError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}.")
        if self.images is not None and len(self.images) != len(self.prompts):
            raise CalibrationError(
                f"--images gave {len(self.images)} images for {len(self.prompts)} prompts; give one image per "
                "prompt (matched by sorted file name)."
            )
        if self.samples < 0:
            raise CalibrationError(f"--samples must be >= 0, got {self.samples}.")
        if self.guidance_scale is not None and (not math.isfinite(self.guidance_scale) or self.guidance_scale < 0):
            raise CalibrationError(f"--guidance-scale must be a number >= 0, got {self.guidance_scale}.")
        if not isinstance(self.compare, tuple) or not all(isinstance(c, str) and c.strip() for c in self.compare):
            raise CalibrationError(
                f"--compare must be profile names or paths (a tuple of non-empty strings), got {self.compare!r}; "
                "e.g. compare=('ltxv-ldl',)."
            )
        repeated = sorted({c for c in self.compare if self.compare.count(c) > 1})
        if repeated:
            raise CalibrationError(
                f"--compare {repeated[0]!r} is given {self.compare.count(repeated[0])} times; give each profile once."
            )

    @property
    def prompt_set_sha256(self) -> str:
        return hashlib.sha256("\n".join(self.prompts).encode("utf-8")).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """Every field, JSON-serialisable (``run.json`` of the work dir, read back by ``--merge``)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CalibrationConfig:
        tuples = ("prompts", "seeds", "images", "notes", "compare")
        names = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k in tuples and v is not None else v) for k, v in data.items() if k in names})

    @property
    def uses_features(self) -> bool:
        """Whether this method decodes frames and loads the feature model."""
        from .methods import METHODS

        return METHODS[self.method].uses_features

    def identity(self) -> dict[str, Any]:
        """The arguments that change results; a resumed run must agree on every one."""
        d = asdict(self)
        # what only changes the choice made from the stored results may differ between resumed runs
        for key in (
            "device",
            "samples",
            "notes",
            "local_files_only",
            "name",
            "method",
            "alpha",
            "early_reference",
            "floor",
            "noise_se",
            "late_noise_se",
            "late_rule",
            "tolerance",
            "early_boundary",
            "late_metric",
            "kid_subset_size",
            "compare",  # the comparison's results are kept per compared schedule, apart from the method's
        ):
            d.pop(key)
        d["prompts"] = self.prompt_set_sha256
        d["seeds"] = list(self.seeds)
        d["images"] = list(self.images) if self.images else None
        return d
