"""Pure scheduling math: segments over fractions of the denoising process -> which model runs at each step.

Paper section 3.3: the large model runs the early and late stages, the small model the middle. Boundaries are
fractions of the process, so one schedule fits any step count (docs/architecture.md#schedules); step ``i`` of
``N`` uses the segment that holds ``i / N``. Fractions are compared exactly (``fractions.Fraction``) so that
0.4 x 50 is step 20, not 19.

A segment may run its own number of steps over the noise range of its base steps (``Segment.steps``, paper
section 6(b): LDL runs the distilled model for 4 steps of its own where LSL runs the small model for 20): the run
then has fewer steps than the base schedule, and :func:`run_plan` says which segment and which base noise level
each of them takes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from .errors import ProfileError

#: One-letter names used by ``--schedule LSL`` and in reports.
ROLE_LETTERS = {"L": "large", "S": "small", "D": "distilled", "M": "medium"}


@dataclass(frozen=True)
class Segment:
    """One segment of a schedule: ``model`` runs for fractions ``[start, end)`` of the process.

    ``steps``: the segment runs this many steps of its own over the noise range of its base steps
    (:func:`own_step_starts`) instead of one step per base step; ``None`` (the default) runs every base step.
    """

    model: str
    start: float
    end: float
    guidance_scale: float | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ProfileError(f"segment model must be a role name, got {self.model!r}; use e.g. 'large'.")
        for name in ("start", "end"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise ProfileError(f"segment {name} must be a fraction in [0, 1], got {value!r}.")
        if not self.start < self.end:
            raise ProfileError(
                f"segment {self.model!r} has start={self.start} >= end={self.end}; a segment must have start < end."
            )
        if self.guidance_scale is not None and (
            isinstance(self.guidance_scale, bool) or not math.isfinite(self.guidance_scale) or self.guidance_scale < 0
        ):
            raise ProfileError(f"segment guidance_scale must be a number >= 0 or None, got {self.guidance_scale!r}.")
        if self.steps is not None and (
            isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1
        ):
            raise ProfileError(
                f"segment steps must be an integer >= 1 (the segment's own step count) or None, got {self.steps!r}; "
                "e.g. 4 for the distilled model's 4 steps of LDL."
            )

    def to_dict(self) -> dict:
        out: dict = {"model": self.model, "start": self.start, "end": self.end}
        if self.guidance_scale is not None:
            out["guidance_scale"] = self.guidance_scale
        if self.steps is not None:
            out["steps"] = self.steps
        return out


def _exact(value: float) -> Fraction:
    """The fraction a boundary stands for: 0.4 -> 2/5 (so 0.4 x 50 is exactly 20), 0.8333333333333334 -> 5/6."""
    return Fraction(float(value)).limit_denominator(10**6)


def check_segments(segments: Sequence[Segment], roles: Sequence[str] | None = None) -> list[str]:
    """Problems of a schedule as ``$.schedule[i].field: message`` lines (empty when valid)."""
    errors: list[str] = []
    if not segments:
        return ["$.schedule: the schedule is empty; give at least one segment covering [0, 1)."]
    if _exact(segments[0].start) != 0:
        errors.append(f"$.schedule[0].start: the first segment starts at {segments[0].start}; it must start at 0.")
    if _exact(segments[-1].end) != 1:
        errors.append(
            f"$.schedule[{len(segments) - 1}].end: the last segment ends at {segments[-1].end}; it must end at 1."
        )
    for i, seg in enumerate(segments):
        if not seg.start < seg.end:
            errors.append(f"$.schedule[{i}]: start {seg.start} is not before end {seg.end}; segments need start < end.")
        if roles is not None and seg.model not in roles:
            errors.append(
                f"$.schedule[{i}].model: unknown role {seg.model!r}; known roles: {', '.join(sorted(roles))}."
            )
        if i and _exact(seg.start) != _exact(segments[i - 1].end):
            kind = "overlaps" if seg.start < segments[i - 1].end else "leaves a gap after"
            errors.append(
                f"$.schedule[{i}].start: {seg.start} {kind} the previous segment's end {segments[i - 1].end}; "
                "segments must be ordered and contiguous (start = previous end)."
            )
    return errors


def first_step(fraction: float, num_steps: int) -> int:
    """First step ``i`` with ``i / N >= fraction`` (the step that starts a segment at ``fraction``)."""
    return math.ceil(_exact(fraction) * num_steps)


def plan_segments(segments: Sequence[Segment], num_steps: int) -> tuple[int, ...]:
    """Index of the segment that runs each of ``num_steps`` steps (step i uses the segment holding i/N)."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}.")
    errors = check_segments(segments)
    if errors:
        raise ProfileError("invalid schedule", errors)
    starts = [first_step(seg.start, num_steps) for seg in segments]
    plan: list[int] = []
    for i in range(num_steps):
        index = max(k for k, s in enumerate(starts) if s <= i)
        plan.append(index)
    return tuple(plan)


def plan_steps(segments: Sequence[Segment], num_steps: int) -> tuple[str, ...]:
    """Role that runs each of ``num_steps`` denoising steps (step i of N uses the segment holding i/N)."""
    return tuple(segments[k].model for k in plan_segments(segments, num_steps))


def segment_ranges(segments: Sequence[Segment], num_steps: int) -> tuple[tuple[int, int], ...]:
    """Base steps ``[a, b)`` of each segment at ``num_steps`` (a = ceil(start N), b = ceil(end N); sec 3.3)."""
    return tuple((first_step(seg.start, num_steps), first_step(seg.end, num_steps)) for seg in segments)


def own_step_starts(first: int, end: int, steps: int) -> tuple[int, ...]:
    """Base steps where a segment's own steps start: ``a + floor(j (b - a) / k)``, j < k (paper sec 6(b), LDL).

    A segment covering base steps ``[a, b)`` that runs ``k`` steps of its own takes every ``(b - a) / k``-th base
    noise level, starting at its first: LDL's distilled segment over steps [15, 35) of 40 with k = 4 runs at base
    steps 15, 20, 25, 30, which on LTX's 40-step linear-quadratic schedule are the distilled model's own sigmas
    0.98125, 0.975, 0.909375, 0.725. Needs ``1 <= k <= b - a``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    if steps > end - first:
        raise ValueError(
            f"steps {steps} exceed the {end - first} base steps [{first}, {end}); give steps <= {end - first}."
        )
    return tuple(first + (j * (end - first)) // steps for j in range(steps))


@dataclass(frozen=True)
class RunStep:
    """One step a run takes: the index of its segment and the base step whose noise level it starts from."""

    segment: int
    base_step: int


def has_own_steps(segments: Sequence[Segment]) -> bool:
    """Whether any segment runs its own step count (``steps`` set), so a run differs from the base schedule."""
    return any(seg.steps is not None for seg in segments)


def own_steps_errors(segments: Sequence[Segment], num_steps: int) -> list[str]:
    """``$.schedule[i].steps: ...`` lines for segments asking for more own steps than their base steps at N."""
    errors = []
    for i, (seg, (a, b)) in enumerate(zip(segments, segment_ranges(segments, num_steps), strict=True)):
        if seg.steps is None or seg.steps <= b - a:
            continue
        needed = _base_steps_for(seg, num_steps)
        more = f", or run at least {needed} base steps" if needed is not None else ""
        errors.append(
            f"$.schedule[{i}].steps: segment {i} ({seg.model} [{seg.start:g}, {seg.end:g})) asks for {seg.steps} "
            f"steps of its own but covers only {b - a} of the {num_steps} base steps ({a} to {b}); give steps <= "
            f"{b - a}{more}."
        )
    return errors


def _base_steps_for(seg: Segment, num_steps: int) -> int | None:
    """The smallest base step count above ``num_steps`` at which ``seg`` covers at least ``seg.steps`` base steps."""
    start, end = _exact(seg.start), _exact(seg.end)
    guess = max(num_steps + 1, math.floor((seg.steps - 1) / (end - start)))
    for m in range(guess, guess + 1000):
        if math.ceil(end * m) - math.ceil(start * m) >= seg.steps:
            return m
    return None


def run_plan(segments: Sequence[Segment], num_steps: int) -> tuple[RunStep, ...]:
    """Every step a run of the schedule takes over an N-step base schedule (own-steps segments: sec 6(b)).

    A segment without ``steps`` runs each of its base steps; one with ``steps = k`` runs ``k`` steps starting at
    :func:`own_step_starts`. Without own-steps segments this is :func:`plan_segments` with ``base_step = i``.
    """
    index = plan_segments(segments, num_steps)
    errors = own_steps_errors(segments, num_steps)
    if errors:
        raise ProfileError(errors[0])
    out: list[RunStep] = []
    for k, (seg, (a, b)) in enumerate(zip(segments, segment_ranges(segments, num_steps), strict=True)):
        if seg.steps is None:
            out.extend(RunStep(k, i) for i in range(a, b) if index[i] == k)
        else:
            out.extend(RunStep(k, i) for i in own_step_starts(a, b, seg.steps))
    return tuple(out)


def run_roles(segments: Sequence[Segment], num_steps: int) -> tuple[str, ...]:
    """Role of every step a run takes (``plan_steps`` when no segment has own steps; sec 6(b) otherwise)."""
    return tuple(segments[s.segment].model for s in run_plan(segments, num_steps))


def plan_by_sigma(
    segments: Sequence[Segment], boundary_sigmas: Sequence[float], step_sigmas: Sequence[float]
) -> tuple[int, ...]:
    """Segment index per step when routing by noise level: segment k runs while sigma > its end boundary's sigma.

    ``boundary_sigmas[k]`` is the noise level at which segment ``k + 1`` starts (calibration setting);
    ``step_sigmas`` are the noise levels at the input of each step of the current run.
    """
    if len(boundary_sigmas) != len(segments) - 1:
        raise ValueError(
            f"boundary_sigmas has {len(boundary_sigmas)} values but the schedule has {len(segments)} segments; "
            "give one sigma per boundary between segments."
        )
    plan = []
    for sigma in step_sigmas:
        index = 0
        for k, b in enumerate(boundary_sigmas):
            if sigma <= b + 1e-9:
                index = k + 1
        plan.append(index)
    return tuple(plan)


def count_steps(plan: Sequence[str]) -> dict[str, int]:
    """Steps per role in a plan, in order of first appearance."""
    counts: dict[str, int] = {}
    for role in plan:
        counts[role] = counts.get(role, 0) + 1
    return counts


def merge_segments(segments: Sequence[Segment]) -> tuple[Segment, ...]:
    """Merge neighbours that run the same model with the same guidance (LLSS... -> L S).

    Segments with their own step count are never merged: two of 4 steps each are 8 steps, one of 4 is 4.
    """
    merged: list[Segment] = []
    for seg in segments:
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.model == seg.model
            and last.guidance_scale == seg.guidance_scale
            and last.steps is None
            and seg.steps is None
        ):
            merged[-1] = Segment(seg.model, last.start, seg.end, seg.guidance_scale)
        else:
            merged.append(seg)
    return tuple(merged)


def segments_from_pattern(
    pattern: str, boundaries: Sequence[float] | None = None, roles: Sequence[str] | None = None
) -> tuple[Segment, ...]:
    """Segments from a letter pattern like ``LSL`` and its inner boundaries (equal segments when omitted).

    Letters: L=large, S=small, D=distilled, M=medium; a letter must name a role of the profile.
    ``LSL`` with ``(0.4, 0.8)`` is the paper's WAN 2.1 schedule; ``LSLLSSSL`` without boundaries gives the
    12.5% segments of section 5.2.
    """
    letters = pattern.strip().upper()
    if not letters or any(c not in ROLE_LETTERS for c in letters):
        raise ProfileError(
            f"schedule pattern {pattern!r} is not a string of the letters {', '.join(ROLE_LETTERS)}; "
            "write it like 'LSL' (L=large, S=small, D=distilled)."
        )
    names = [ROLE_LETTERS[c] for c in letters]
    if roles is not None:
        missing = sorted({n for n in names if n not in roles})
        if missing:
            raise ProfileError(
                f"schedule pattern {pattern!r} uses role(s) {', '.join(missing)} that the profile does not have; "
                f"its roles are {', '.join(sorted(roles))}."
            )
    if boundaries is None:
        cuts = [Fraction(i, len(letters)) for i in range(1, len(letters))]
        edges = [0.0, *[float(c) for c in cuts], 1.0]
    else:
        cuts_f = [float(b) for b in boundaries]
        if len(cuts_f) != len(letters) - 1:
            raise ProfileError(
                f"boundaries {list(boundaries)} give {len(cuts_f) + 1} segments but the pattern {pattern!r} has "
                f"{len(letters)}; give {len(letters) - 1} boundaries."
            )
        if any(not 0.0 < b < 1.0 for b in cuts_f) or any(b >= c for b, c in itertools.pairwise(cuts_f)):
            raise ProfileError(
                f"boundaries {cuts_f} must be strictly increasing fractions inside (0, 1), e.g. 0.4,0.8."
            )
        edges = [0.0, *cuts_f, 1.0]
    segs = [Segment(n, edges[i], edges[i + 1]) for i, n in enumerate(names)]
    return merge_segments(segs)


def pattern_of(segments: Sequence[Segment]) -> str:
    """Letter pattern of a schedule (``LSL``); roles without a letter are written in brackets."""
    letter_of = {v: k for k, v in ROLE_LETTERS.items()}
    return "".join(letter_of.get(s.model, f"[{s.model}]") for s in segments)
