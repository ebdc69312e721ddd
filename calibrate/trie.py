"""Schedule search over K equal segments: the exhaustive prefix-trie walk and a beam search (paper sec 5.2).

The paper divides the trajectory into 12.5% segments (K = 8) and evaluates "nearly the entire space" of
large/small assignments (Figure 7). From scratch that is 2^K generations of K segments each. Schedules that
share a prefix share its trajectory exactly (the same inputs reach the same transformer), so with record
and replay every prefix of segments, a node of the prefix trie, is computed once.

Counting convention (per (prompt, seed) unit, two roles). A *segment evaluation* is one segment of the
trajectory computed by one role: a trie node at depth ``d + 1`` (a prefix ending in segment ``d``). The
trie has ``2^(d+1)`` nodes at depth ``d + 1``, half of them ending in each role, so the walk computes
``sum_d 2^d = 2^K - 1`` segment evaluations per role; from scratch each of the ``2^K`` schedules computes
all ``K`` segments, ``K * 2^(K-1)`` per role. K = 8: 255 against 1024 per role (510 against 2048 in all).
Transformer calls weigh each segment by its steps: ``c * sum_d 2^d * |segment d|`` per role against
``c * N * 2^(K-1)`` from scratch (``c`` calls per step: 2 for Wan with CFG, 1 for LTX).

The divergence pass rides on the first leaf (large-only): with ``shadow="small"`` the small model is evaluated on
the large model's inputs there (paper App. C), and its outputs at the segment starts are reused by the nodes
``L^d S`` (a small segment right after a large-only prefix sees exactly those inputs), so those ``K`` small steps
are not computed twice: ``c * (sum_d 2^d * |segment d| + N - K)`` small calls per unit with the shadow.

For larger K (16, or one segment per step) :func:`beam_search` walks the same trie but keeps only the
``beam_width`` most promising prefixes per depth.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from flowblending.schedule import ROLE_LETTERS

from .pareto import choose_within_tolerance
from .replay import Recording, ReplayTransformer
from .sampling import ReplaySampler, Unit

#: role name -> its pattern letter (``large`` -> ``L``).
LETTER_OF = {role: letter for letter, role in ROLE_LETTERS.items()}


def _positive_int(name: str, value: object, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}: {fix}")
    return value


def segment_steps(num_steps: int, segments: int) -> list[range]:
    """The steps of each of ``segments`` equal segments: segment j holds steps i with i/N in [j/K, (j+1)/K).

    Paper sec 5.2 (12.5% segments for K = 8) with the runtime's rule that step i of N runs the segment holding
    i/N: segment j starts at ``ceil(j * N / K)``, the rule of :func:`flowblending.schedule.first_step`,
    computed here in exact integer arithmetic.
    """
    n = _positive_int("num_steps", num_steps, "pass the number of denoising steps")
    k = _positive_int("segments", segments, "pass the number of equal segments, e.g. 8")
    if k > n:
        raise ValueError(
            f"segments={k} exceeds num_steps={n}, so some segments would hold no step: use segments <= {n} "
            "(segments = num_steps is one segment per step)"
        )
    starts = [-(-j * n // k) for j in range(k + 1)]
    return [range(starts[j], starts[j + 1]) for j in range(k)]


def _letters(roles: Sequence[str], models: Mapping[str, object] | None = None) -> str:
    """Pattern letters of ``roles`` (sec 5.2's L/S), checking the roles are distinct and have models."""
    if isinstance(roles, str) or not roles:
        raise ValueError(f"roles must be a non-empty sequence of role names, got {roles!r}: e.g. ('large', 'small')")
    if len(set(roles)) != len(roles):
        raise ValueError(f"roles must be distinct, got {tuple(roles)!r}: list each role once")
    missing = [r for r in roles if r not in LETTER_OF]
    if missing:
        raise ValueError(
            f"roles contains {missing[0]!r}, which has no pattern letter: use roles among {', '.join(LETTER_OF)}"
        )
    if models is not None:
        absent = [r for r in roles if r not in models]
        if absent:
            raise ValueError(
                f"roles contains {absent[0]!r} but the generator has no such model (it has "
                f"{', '.join(sorted(models))}): pass roles the generator holds"
            )
    return "".join(LETTER_OF[r] for r in roles)


def all_patterns(segments: int, roles: Sequence[str] = ("large", "small")) -> list[str]:
    """Every assignment of ``segments`` segments to ``roles`` as a letter pattern, in depth-first trie order.

    The order is lexicographic in ``roles`` order (sec 5.2's sweep): the first pattern is ``roles[0]`` only
    (large-only), and consecutive patterns share the longest possible prefix.
    """
    k = _positive_int("segments", segments, "pass the number of equal segments, e.g. 8")
    letters = _letters(roles)
    return ["".join(p) for p in itertools.product(letters, repeat=k)]


def pattern_plan(pattern: str, num_steps: int) -> list[str]:
    """The role of every step for a pattern of equal segments (``LSL`` at 9 steps: 3 large, 3 small, 3 large).

    Sec 5.2's schedules on the steps of :func:`segment_steps`; compute-only sources for ``ReplaySampler.run``.
    """
    if not isinstance(pattern, str) or not pattern or any(c not in ROLE_LETTERS for c in pattern):
        raise ValueError(
            f"pattern must be a string of the letters {', '.join(ROLE_LETTERS)}, got {pattern!r}: e.g. 'LSSL'"
        )
    spans = segment_steps(num_steps, len(pattern))
    return [ROLE_LETTERS[c] for c, span in zip(pattern, spans, strict=True) for _ in span]


@dataclass
class TrieStats:
    """What a schedule search computed, against the exhaustive trie walk and the from-scratch sweep (sec 5.2).

    ``segment_evaluations`` counts computed (segment, role) pairs, i.e. trie nodes, per role; ``calls`` the
    transformer calls per role the generator actually computed; both summed over units. The properties give
    the figures of the exhaustive trie walk and of the from-scratch sweep for the same units (module
    docstring: ``2^K - 1`` against ``K * 2^(K-1)`` segment evaluations per role per unit).
    """

    segments: int
    num_steps: int
    roles: tuple[str, ...]
    units: int = 0
    schedules: int = 0
    runs: int = 0
    segment_evaluations: dict[str, int] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    replayed: int = 0
    reused: int = 0
    calls_per_step: int = 0
    max_stack: int = 0

    @property
    def trie_segment_evaluations(self) -> dict[str, int]:
        """Segment evaluations per role of the exhaustive trie walk: ``(R^K - 1) / (R - 1)`` per unit."""
        r, k = len(self.roles), self.segments
        per_unit = k if r == 1 else (r**k - 1) // (r - 1)
        return {role: per_unit * self.units for role in self.roles}

    @property
    def scratch_segment_evaluations(self) -> dict[str, int]:
        """Segment evaluations per role if every schedule ran from scratch: ``K * R^(K-1)`` per unit."""
        r, k = len(self.roles), self.segments
        return {role: k * r ** (k - 1) * self.units for role in self.roles}

    @property
    def trie_calls(self) -> dict[str, int]:
        """Transformer calls per role of the exhaustive trie walk: ``c * sum_d R^d * |segment d|`` per unit."""
        r = len(self.roles)
        spans = segment_steps(self.num_steps, self.segments)
        per_unit = self.calls_per_step * sum(r**d * len(s) for d, s in enumerate(spans))
        return {role: per_unit * self.units for role in self.roles}

    @property
    def scratch_calls(self) -> dict[str, int]:
        """Transformer calls per role if every schedule ran from scratch: ``c * N * R^(K-1)`` per unit."""
        r = len(self.roles)
        per_unit = self.calls_per_step * self.num_steps * r ** (self.segments - 1)
        return {role: per_unit * self.units for role in self.roles}

    def summary(self) -> list[str]:
        """One line per role: computed against the exhaustive trie walk and against from scratch."""
        lines = []
        trie, scratch = self.trie_segment_evaluations, self.scratch_segment_evaluations
        scratch_calls = self.scratch_calls
        for role in self.roles:
            done, calls = self.segment_evaluations.get(role, 0), self.calls.get(role, 0)
            ratio = scratch[role] / done if done else math.inf
            lines.append(
                f"{role}: {done} segment evaluations ({calls} transformer calls) computed; exhaustive trie walk "
                f"{trie[role]}; from scratch {scratch[role]} ({scratch_calls[role]} calls), {ratio:.2f}x more"
            )
        return lines


def _sources(spans: Sequence[range], replay: Sequence[Recording], compute: Sequence[str]) -> list[str | Recording]:
    """Per-step sources: segments ``< len(replay)`` replayed from their recordings, the rest computed."""
    plan: list[str | Recording] = []
    for d, span in enumerate(spans):
        source = replay[d] if d < len(replay) else compute[d - len(replay)]
        plan.extend([source] * len(span))
    return plan


def _run(
    sampler: ReplaySampler,
    unit: Unit,
    spans: Sequence[range],
    replay: Sequence[Recording],
    compute: Sequence[str],
    keep: range,
    stats: TrieStats,
    **options: object,
) -> tuple[torch.Tensor, list[Recording], ReplayTransformer]:
    """One generation that replays ``replay`` and computes ``compute``; the recordings of segments ``keep``.

    ``options`` go to :meth:`ReplaySampler.run` (shadow, keep_shadow, reuse, capture).
    """
    frames, transformer = sampler.run(unit, _sources(spans, replay, compute), record=len(keep) > 0, **options)
    kept = [transformer.recording.restrict(spans[d]) for d in keep]
    transformer.recording = Recording()  # the pipeline still holds the transformer: drop the full recording
    stats.runs += 1
    stats.replayed += transformer.replayed
    stats.reused += transformer.reused
    shadow = options.get("shadow")
    for role, n in transformer.counters.calls.items():
        stats.calls[role] = stats.calls.get(role, 0) + n
    for role in compute:
        stats.segment_evaluations[role] = stats.segment_evaluations.get(role, 0) + 1
    if not stats.calls_per_step and not replay:  # a run that computed every step
        main = sum(n for role, n in transformer.counters.calls.items() if role != shadow)
        stats.calls_per_step = main // sampler.num_steps
    return frames, kept, transformer


def _segment_starts(spans: Sequence[range]) -> list[int]:
    return [span.start for span in spans]


def walk_trie(
    sampler: ReplaySampler,
    unit: Unit,
    segments: int,
    on_leaf: Callable[[str, torch.Tensor], None],
    roles: Sequence[str] = ("large", "small"),
    *,
    stats: TrieStats | None = None,
    shadow: str | None = None,
    on_first: Callable[[ReplayTransformer], None] | None = None,
) -> TrieStats:
    """Every assignment of ``segments`` equal segments to ``roles``, by a depth-first walk of the prefix trie.

    Paper sec 5.2's exhaustive sweep with record and replay: leaves are visited in :func:`all_patterns` order
    (the first is ``roles[0]`` only, so later leaves can be compared with it). A leaf that first differs from
    the previous one at segment j replays segments < j from the stack of per-depth recordings and computes
    segments >= j, recording them; so every trie node is computed exactly once and memory holds only the
    current path (at most K - 1 segment recordings: the last segment has no children). ``on_leaf(pattern,
    frames)`` receives each schedule's frames (1, F, 3, H, W), bit-identical to generating it from scratch.
    With ``shadow`` (a role), the first leaf also evaluates that role on its inputs (divergence, App. C), and
    the shadow's outputs at the segment starts are reused by the nodes that switch to it after a ``roles[0]``
    prefix; ``on_first(transformer)`` receives the first leaf's transformer (divergence log, captured inputs).
    Pass the same ``stats`` for every unit to total them over units; returns that ``stats`` (or a new one).
    """
    k = _positive_int("segments", segments, "pass the number of equal segments, e.g. 8")
    _letters(roles, sampler.models)
    if shadow is not None and shadow not in roles[1:]:
        raise ValueError(f"shadow must be one of the other roles {tuple(roles[1:])}, got {shadow!r}")
    spans = segment_steps(sampler.num_steps, k)
    if stats is None:
        stats = TrieStats(k, sampler.num_steps, tuple(roles))
    elif (stats.segments, stats.num_steps, stats.roles) != (k, sampler.num_steps, tuple(roles)):
        raise ValueError(
            f"stats was made for segments={stats.segments}, num_steps={stats.num_steps}, roles={stats.roles}, "
            f"not segments={k}, num_steps={sampler.num_steps}, roles={tuple(roles)}: pass stats=None or matching "
            "stats"
        )
    stats.units += 1
    stack: list[Recording] = []  # stack[d]: recording of segment d on the current path
    previous: tuple[str, ...] | None = None
    reuse: dict[str, dict[str, torch.Tensor]] = {}
    for leaf in itertools.product(roles, repeat=k):
        j = 0 if previous is None else next(d for d in range(k) if leaf[d] != previous[d])
        if previous is None and shadow is not None:
            options = {"shadow": shadow, "keep_shadow": _segment_starts(spans), "capture": True}
        else:
            options = {"reuse": reuse, "capture": previous is None}
        frames, fresh, transformer = _run(sampler, unit, spans, stack[:j], leaf[j:], range(j, k - 1), stats, **options)
        if previous is None:
            if shadow is not None:
                reuse = {shadow: transformer.shadow_outputs}
            if on_first is not None:
                on_first(transformer)
        del stack[j:]
        stack.extend(fresh)
        stats.max_stack = max(stats.max_stack, len(stack))
        stats.schedules += 1
        on_leaf("".join(LETTER_OF[r] for r in leaf), frames)
        previous = leaf
    return stats


@dataclass(frozen=True)
class Candidate:
    """One complete schedule the beam search scored: the prefix it expanded, completed with the large role."""

    pattern: str
    score: float
    flops: float
    depth: int


@dataclass
class BeamResult:
    """The beam search's choice, every schedule it scored (evaluation order), its beams and its cost."""

    pattern: str
    reference_score: float
    candidates: list[Candidate]
    beams: list[list[str]]
    stats: TrieStats

    @property
    def chosen(self) -> Candidate:
        return next(c for c in self.candidates if c.pattern == self.pattern)


@dataclass
class _Node:
    prefix: str
    score: float
    flops: float
    prior: float
    recordings: list[list[Recording]]  # per unit: per-depth recordings of this node's completion


def beam_search(
    sampler: ReplaySampler,
    units: Sequence[Unit],
    segments: int,
    score_fn: Callable[[str, list[torch.Tensor]], float],
    beam_width: int,
    *,
    tolerance: float = 0.0,
    flops_per_step: Mapping[str, float] | Callable[[ReplayTransformer], Mapping[str, float]] | None = None,
    divergence: Sequence[float] | None = None,
    shadow: str | None = None,
    on_first: Callable[[int, ReplayTransformer], None] | None = None,
    roles: tuple[str, str] = ("large", "small"),
) -> BeamResult:
    """A beam search over sec 5.2's schedule trie for K too large for the exhaustive walk (16, per-step).

    Every prefix is scored as a complete schedule by completing it with ``roles[0]`` (large): the completion
    replays the prefix's recordings and computes the rest, so a prefix ending in large costs nothing (its
    completion is its parent's) and one ending in small costs one small segment plus the large tail.
    ``score_fn(pattern, frames_per_unit)`` (lower is better, >= 0 for large-only, e.g. FID) scores it over
    all ``units``. At each depth the children of the beam are ranked: those within ``tolerance`` (relative)
    of large-only's score first, by FLOPs then score; then the others by score; ties go to the prefix whose
    small segments have the lower summed ``divergence`` (per-step curve, sec 5.1: low-divergence segments get
    the small model first), then to evaluation order. The ``beam_width`` best survive. The result is the
    cheapest scored schedule within tolerance (:func:`calibrate.pareto.choose_within_tolerance`); large-only
    is always scored, so one exists. Cost: at most ``beam_width * (K - d)`` segment evaluations per unit at
    depth d, about ``beam_width * K^2 / 2`` in all, against ``2^(K+1) - 2`` for the exhaustive walk (see
    ``stats``); memory holds K - 1 segment recordings per unit for each of at most ``2 * beam_width`` nodes.
    ``flops_per_step`` defaults to 1 per large step and 0 per small step (cost = large steps).
    With ``shadow`` (the cheap role), the large-only evaluation also runs the cheap model on its inputs: its
    divergence is the tie-break curve when ``divergence`` is None, ``on_first(unit_index, transformer)``
    receives each unit's large-only transformer, and the shadow outputs at segment starts are reused.
    """
    k = _positive_int("segments", segments, "pass the number of equal segments, e.g. 16")
    width = _positive_int("beam_width", beam_width, "pass how many prefixes to keep per depth, e.g. 4")
    if len(roles) != 2:
        raise ValueError(f"roles must be (reference role, cheap role), got {roles!r}: e.g. ('large', 'small')")
    letters = _letters(roles, sampler.models)
    spans = segment_steps(sampler.num_steps, k)
    units = list(units)
    if not units:
        raise ValueError("units is empty: pass at least one (prompt, seed) Unit to score schedules on")
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not 0 <= tolerance < math.inf:
        raise ValueError(f"tolerance must be a finite number >= 0 (relative, 0.02 = 2%), got {tolerance!r}")
    big, cheap = roles
    if flops_per_step is None:
        flops_per_step = {big: 1.0, cheap: 0.0}

    def check_flops(table: Mapping[str, float]) -> Mapping[str, float]:
        missing = [r for r in roles if r not in table]
        if missing:
            raise ValueError(
                f"flops_per_step has no entry for role {missing[0]!r}: give FLOPs per step for {big!r} and "
                f"{cheap!r} (flowblending.cost.step_flops), or None to count large steps"
            )
        return table

    flops_table: dict[str, Mapping[str, float]] = {}
    if not callable(flops_per_step):
        flops_table["table"] = check_flops(flops_per_step)
    if shadow is not None and shadow != cheap:
        raise ValueError(f"shadow must be the cheap role {cheap!r} or None, got {shadow!r}")

    def segment_divergence(values: Sequence[float]) -> list[float]:
        values = [float(v) for v in values]
        if len(values) != sampler.num_steps or not all(math.isfinite(v) for v in values):
            raise ValueError(
                f"divergence must hold one finite value per step ({sampler.num_steps}), got {len(values)} values: "
                "pass the per-step mean cosine distance of the recorded large-only run"
            )
        return [sum(values[i] for i in span) / len(span) for span in spans]

    seg_div = segment_divergence(divergence) if divergence is not None else [0.0] * k
    stats = TrieStats(k, sampler.num_steps, tuple(roles), units=len(units))
    candidates: list[Candidate] = []
    reuse: list[dict[str, dict[str, torch.Tensor]]] = [{} for _ in units]
    shadow_curves: list[list[float]] = []

    def flops_of(pattern: str) -> float:
        table = flops_table["table"]
        return float(sum(table[r] for r in pattern_plan(pattern, sampler.num_steps)))

    def evaluate(pattern: str, depth: int, replay: list[list[Recording]]) -> tuple[float, list[list[Recording]]]:
        frames, recordings = [], []
        compute = [ROLE_LETTERS[c] for c in pattern[depth:]]
        first = not replay
        for u, unit in enumerate(units):
            prefix = replay[u][:depth] if replay else []
            if first and shadow is not None:
                options = {"shadow": shadow, "keep_shadow": _segment_starts(spans), "capture": True}
            else:
                options = {"reuse": reuse[u], "capture": first}
            out, fresh, transformer = _run(sampler, unit, spans, prefix, compute, range(depth, k - 1), stats, **options)
            if first and shadow is not None:
                reuse[u] = {shadow: transformer.shadow_outputs}
                shadow_curves.append(transformer.divergence.per_step("cosine"))
            if first and on_first is not None:
                on_first(u, transformer)
            if first and u == 0 and "table" not in flops_table:  # measured on the first run's inputs
                flops_table["table"] = check_flops(flops_per_step(transformer))
            frames.append(out)
            recordings.append([*prefix, *fresh])
        score = float(score_fn(pattern, frames))
        if not math.isfinite(score):
            raise ValueError(f"score_fn returned {score} for pattern {pattern!r}: it must return a finite number")
        stats.schedules += 1
        candidates.append(Candidate(pattern, score, flops_of(pattern), depth))
        return score, recordings

    reference = letters[0] * k
    ref_score, ref_recordings = evaluate(reference, 0, [])
    if ref_score < 0:
        raise ValueError(
            f"score_fn returned {ref_score} for large-only {reference!r}: the tolerance is relative, so scores "
            "must be >= 0 (use FID, or 1 - similarity plus a small offset)"
        )
    if divergence is None and shadow_curves:
        mean = [sum(curve[i] for curve in shadow_curves) / len(shadow_curves) for i in range(sampler.num_steps)]
        seg_div = segment_divergence(mean)
    limit = ref_score * (1.0 + tolerance)
    beam = [_Node("", ref_score, candidates[0].flops, 0.0, ref_recordings)]
    beams: list[list[str]] = [[""]]
    for d in range(k):
        children: list[_Node] = []
        for node in beam:
            children.append(_Node(node.prefix + letters[0], node.score, node.flops, node.prior, node.recordings))
            pattern = node.prefix + letters[1] + letters[0] * (k - d - 1)
            score, recordings = evaluate(pattern, d, node.recordings)
            children.append(_Node(pattern[: d + 1], score, candidates[-1].flops, node.prior + seg_div[d], recordings))

        def rank(i: int, children: list[_Node] = children) -> tuple:
            c = children[i]
            if c.score <= limit:
                return (0, c.flops, c.score, c.prior, i)
            return (1, c.score, c.flops, c.prior, i)

        beam = [children[i] for i in sorted(range(len(children)), key=rank)[:width]]
        beams.append([c.prefix for c in beam])
        stats.max_stack = max(stats.max_stack, max(len(r) for c in beam for r in c.recordings))
    best = choose_within_tolerance([c.flops for c in candidates], [c.score for c in candidates], ref_score, tolerance)
    return BeamResult(candidates[best].pattern, ref_score, candidates, beams, stats)
