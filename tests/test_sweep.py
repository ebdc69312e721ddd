"""Schedule search (paper sec 5.2): the prefix-trie walk computes each node once and is bit-identical to
generating every schedule from scratch; the beam search costs less than the walk it replaces (tiny Wan)."""

from __future__ import annotations

import gc
from collections import Counter
from dataclasses import dataclass, field

import pytest
import torch

from calibrate.pareto import choose_within_tolerance
from calibrate.replay import Recording
from calibrate.sampling import ReplaySampler, Unit
from calibrate.trie import TrieStats, all_patterns, beam_search, pattern_plan, segment_steps, walk_trie
from flowblending.schedule import plan_steps, segments_from_pattern

STEPS = 8


# ----------------------------------------------------------------------------------------------- pure parts


def test_segment_steps_split_the_steps_by_fraction():
    assert segment_steps(8, 4) == [range(0, 2), range(2, 4), range(4, 6), range(6, 8)]
    assert segment_steps(8, 3) == [range(0, 3), range(3, 6), range(6, 8)]  # i/8 in [j/3, (j+1)/3)
    assert segment_steps(6, 6) == [range(i, i + 1) for i in range(6)]
    assert [len(s) for s in segment_steps(50, 8)] == [7, 6, 6, 6, 7, 6, 6, 6]
    assert segment_steps(5, 1) == [range(0, 5)]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ((8, 9), "segments=9 exceeds num_steps=8"),
        ((8, 0), "segments must be a positive integer, got 0"),
        ((0, 1), "num_steps must be a positive integer, got 0"),
        ((8, True), "segments must be a positive integer, got True"),
    ],
)
def test_segment_steps_reject_bad_arguments(args, needle):
    with pytest.raises(ValueError) as err:
        segment_steps(*args)
    assert needle in str(err.value)


@pytest.mark.parametrize(("num_steps", "k"), [(8, 2), (8, 3), (8, 4), (8, 8), (10, 3), (10, 5), (50, 8), (16, 16)])
def test_pattern_plan_matches_the_runtime_plan_of_the_same_pattern(num_steps, k):
    for pattern in ("LS" * k)[:k], ("SL" * k)[:k], "L" * (k - 1) + "S":
        assert pattern_plan(pattern, num_steps) == list(plan_steps(segments_from_pattern(pattern), num_steps))


def test_pattern_plan_matches_the_runtime_plan_for_sixths():
    # float edge 5/6 = 0.8333333333333334 must still mean 5/6 (step 5 of 6 belongs to the last segment)
    assert pattern_plan("LLLLLS", 6) == list(plan_steps(segments_from_pattern("LLLLLS"), 6))
    assert pattern_plan("LLLLLS", 12) == list(plan_steps(segments_from_pattern("LLLLLS"), 12))


def test_patterns_are_in_depth_first_trie_order():
    assert all_patterns(2) == ["LL", "LS", "SL", "SS"]
    assert all_patterns(3)[0] == "LLL" and len(all_patterns(3)) == 8
    assert all_patterns(2, ("small", "large")) == ["SS", "SL", "LS", "LL"]
    with pytest.raises(ValueError, match="roles contains 'tiny', which has no pattern letter"):
        all_patterns(2, ("large", "tiny"))


def test_counting_convention_for_eight_segments():
    stats = TrieStats(8, 50, ("large", "small"), units=1, calls_per_step=2)
    assert stats.trie_segment_evaluations == {"large": 255, "small": 255}
    assert stats.scratch_segment_evaluations == {"large": 1024, "small": 1024}
    sizes = [7, 6, 6, 6, 7, 6, 6, 6]
    assert stats.trie_calls == {r: 2 * sum(2**d * s for d, s in enumerate(sizes)) for r in ("large", "small")}
    assert stats.trie_calls["large"] == 3094
    assert stats.scratch_calls == {"large": 2 * 50 * 128, "small": 2 * 50 * 128}


# ----------------------------------------------------------------------------------------------- tiny Wan


@dataclass
class LoggingSampler(ReplaySampler):
    """A ReplaySampler that logs every run's per-step sources: the role computing the step, or "replay"."""

    log: list[list[str]] = field(default_factory=list)

    def run(self, unit, sources, **kwargs):
        self.log.append([s if isinstance(s, str) else "replay" for s in sources])  # keeps no recording alive
        return super().run(unit, sources, **kwargs)


@pytest.fixture(scope="module")
def gen(tiny_wan):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(tiny_wan.pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    large = pipe.transformer.eval()
    small = type(large).from_pretrained(tiny_wan.small_dir).eval()
    return LoggingSampler(pipe, {"large": large, "small": small}, tiny_wan.kwargs(), STEPS)


def _live_recordings() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is Recording and o.outputs)


def test_trie_walk_computes_each_node_once_and_every_leaf_equals_its_scratch_run(gen):
    k, unit = 3, Unit(0, "a red circle moving left", 0)
    spans = segment_steps(STEPS, k)
    baseline = _live_recordings()
    leaves: dict[str, torch.Tensor] = {}
    alive: list[int] = []

    def on_leaf(pattern, frames):
        leaves[pattern] = frames
        alive.append(_live_recordings() - baseline)

    gen.log.clear()
    stats = walk_trie(gen, unit, k, on_leaf)
    runs = list(gen.log)

    assert list(leaves) == all_patterns(k)
    # each trie node (a prefix of segments) was computed by exactly one run, with the role its letter names
    computed = Counter()
    for pattern, sources in zip(leaves, runs, strict=True):
        for d, span in enumerate(spans):
            source = sources[span.start]
            assert {sources[i] for i in span} == {source}  # a segment is replayed or computed as a whole
            if source == "replay":
                assert computed[pattern[: d + 1]] == 1  # computed by an earlier run
            else:
                assert source == {"L": "large", "S": "small"}[pattern[d]]
                computed[pattern[: d + 1]] += 1
    nodes = {p[:d] for p in all_patterns(k) for d in range(1, k + 1)}
    assert len(nodes) == 2 ** (k + 1) - 2 == 14
    assert computed == Counter(dict.fromkeys(nodes, 1))
    # the counts against the formula: 2^K - 1 nodes per role; calls weighted by segment length (3, 3, 2 steps)
    assert stats.segment_evaluations == {"large": 7, "small": 7} == stats.trie_segment_evaluations
    assert stats.calls_per_step == 2  # Wan: cond and uncond
    assert stats.calls == {"large": 2 * (3 + 2 * 3 + 4 * 2), "small": 34} == stats.trie_calls
    assert stats.scratch_calls == {"large": 2 * STEPS * 4, "small": 64}
    assert stats.scratch_segment_evaluations == {"large": 12, "small": 12}
    assert (stats.runs, stats.schedules, stats.units) == (8, 8, 1)
    # memory: only the current path's segment recordings are alive (instrumented and counted from outside)
    assert stats.max_stack == k - 1
    assert set(alive) == {k - 1}  # never more than K
    # bit-identical to generating each schedule from scratch
    gen.log.clear()
    for pattern, frames in leaves.items():
        scratch, _ = gen.run(unit, pattern_plan(pattern, STEPS))
        assert torch.equal(frames, scratch), pattern
    assert "replay" not in {s for run in gen.log for s in run}
    assert not torch.equal(leaves["LLL"], leaves["SSS"])


def test_trie_walk_rejects_more_segments_than_steps(gen):
    with pytest.raises(ValueError, match="segments=9 exceeds num_steps=8"):
        walk_trie(gen, Unit(0, "x", 0), 9, lambda p, f: None)
    with pytest.raises(ValueError, match="'medium' but the generator has no such model"):
        walk_trie(gen, Unit(0, "x", 0), 2, lambda p, f: None, roles=("large", "medium"))


def test_beam_search_returns_a_valid_pattern_for_less_than_the_exhaustive_walk(gen):
    k, width = 4, 2
    units = [Unit(0, "a red circle moving left", 0), Unit(1, "a blue square", 1)]
    reference: list[torch.Tensor] = []
    seen: dict[str, torch.Tensor] = {}

    def score(pattern, frames):
        if not reference:
            reference.extend(frames)  # large-only is scored first
        seen[pattern] = frames[0]
        return 1e-3 + sum(float((f - r).abs().mean()) for f, r in zip(frames, reference, strict=True))

    gen.log.clear()
    result = beam_search(gen, units, k, score, width, tolerance=1e6)
    assert result.candidates[0].pattern == "LLLL" and result.reference_score == pytest.approx(1e-3)
    patterns = [c.pattern for c in result.candidates]
    assert len(set(patterns)) == len(patterns) == 8  # LLLL, then one small child per beam node per depth
    assert all(len(p) == k and set(p) <= {"L", "S"} for p in patterns)
    assert result.pattern == "SSSS" and result.chosen.flops == 0.0  # everything is within a huge tolerance
    assert [len(b) for b in result.beams] == [1, 2, 2, 2, 2]
    # cost: root 4 + depth 0: 4 + depth 1: 2 x 3 + depth 2: 2 x 2 + depth 3: 2 x 1 = 20 segments per unit
    stats = result.stats
    assert stats.segment_evaluations == {"large": 2 * 13, "small": 2 * 7}
    assert stats.calls == {"large": 26 * 2 * 2, "small": 14 * 2 * 2}  # 2 steps per segment, 2 calls per step
    exhaustive = stats.trie_segment_evaluations
    assert exhaustive == {"large": 30, "small": 30}
    assert sum(stats.segment_evaluations.values()) < sum(exhaustive.values())
    assert stats.max_stack <= k - 1
    # every scored schedule is bit-identical to its scratch run; a strict tolerance keeps large-only
    for pattern, frames in seen.items():
        assert torch.equal(frames, gen.run(units[0], pattern_plan(pattern, STEPS))[0]), pattern
    costs, scores = [c.flops for c in result.candidates], [c.score for c in result.candidates]
    assert patterns[choose_within_tolerance(costs, scores, result.reference_score, 0.0)] == "LLLL"


@pytest.mark.parametrize(("divergence", "kept"), [([9, 9, 1, 1, 1, 1, 1, 1], "LS"), ([1, 1, 9, 9, 1, 1, 1, 1], "SL")])
def test_beam_ties_go_to_small_where_divergence_is_low(gen, divergence, kept):
    # a constant score ties every schedule: within tolerance the beam keeps the cheapest prefixes, and among
    # the equally cheap LS and SL the one whose small segment has the lower divergence
    result = beam_search(gen, [Unit(0, "x", 0)], 4, lambda p, f: 1.0, 2, divergence=divergence)
    assert result.beams[1] == ["S", "L"]
    assert result.beams[2] == ["SS", kept]
    assert result.pattern == "SSSS"


def test_beam_search_rejects_bad_arguments(gen):
    unit = [Unit(0, "x", 0)]
    with pytest.raises(ValueError, match="beam_width must be a positive integer, got 0"):
        beam_search(gen, unit, 4, lambda p, f: 1.0, 0)
    with pytest.raises(ValueError, match="divergence must hold one finite value per step"):
        beam_search(gen, unit, 4, lambda p, f: 1.0, 2, divergence=[0.1] * 3)
    with pytest.raises(ValueError, match="units is empty"):
        beam_search(gen, [], 4, lambda p, f: 1.0, 2)
    with pytest.raises(ValueError, match="scores must be >= 0"):
        beam_search(gen, unit, 2, lambda p, f: -1.0, 2)
