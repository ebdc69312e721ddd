"""Pure schedule math: which role runs each step, overrides, sigma routing."""

from __future__ import annotations

import pytest

from flowblending.errors import ProfileError
from flowblending.schedule import (
    Segment,
    check_segments,
    count_steps,
    first_step,
    merge_segments,
    pattern_of,
    plan_by_sigma,
    plan_steps,
    segments_from_pattern,
)

LSL = (Segment("large", 0.0, 0.4), Segment("small", 0.4, 0.8), Segment("large", 0.8, 1.0))


def test_wan_lsl_at_50_steps_matches_the_paper():
    plan = plan_steps(LSL, 50)
    assert plan[:20] == ("large",) * 20
    assert plan[20:40] == ("small",) * 20
    assert plan[40:] == ("large",) * 10
    assert count_steps(plan) == {"large": 30, "small": 20}


def test_ltx_boundaries_give_table_2_step_counts():
    ltx = segments_from_pattern("LSL", (0.375, 0.875))
    counts = count_steps(plan_steps(ltx, 40))
    assert counts == {"large": 20, "small": 20}
    lss = segments_from_pattern("LSS", (0.375, 0.875))
    assert count_steps(plan_steps(lss, 40)) == {"large": 15, "small": 25}


@pytest.mark.parametrize("n, expected_large", [(7, 4), (20, 12), (50, 30), (1, 1), (3, 2)])
def test_step_i_uses_segment_holding_i_over_n(n, expected_large):
    plan = plan_steps(LSL, n)
    for i, role in enumerate(plan):
        frac = i / n
        want = "large" if frac < 0.4 or frac >= 0.8 else "small"
        assert role == want, (n, i)
    assert plan.count("large") == expected_large


def test_first_step_is_exact_for_decimal_fractions():
    assert first_step(0.4, 50) == 20  # 0.4 * 50 in binary floating point is 20.000000000000004
    assert first_step(0.7, 10) == 7
    assert first_step(0.875, 40) == 35
    assert first_step(0.41, 50) == 21


def test_check_segments_reports_gaps_overlaps_and_roles():
    bad = (Segment("large", 0.0, 0.5), Segment("small", 0.4, 0.9), Segment("tiny", 0.95, 1.0))
    errors = check_segments(bad, roles=("large", "small"))
    joined = "\n".join(errors)
    assert "$.schedule[1].start: 0.4 overlaps" in joined
    assert "$.schedule[2].start: 0.95 leaves a gap" in joined
    assert "$.schedule[2].model: unknown role 'tiny'" in joined
    assert check_segments(LSL, ("large", "small")) == []


def test_segment_rejects_start_not_before_end():
    with pytest.raises(ProfileError, match=r"start=0\.5 >= end=0\.5"):
        Segment("large", 0.5, 0.5)


def test_patterns_and_merging():
    segs = segments_from_pattern("LLSSSSLL")  # 12.5% segments of the paper's section 5.2
    assert segs == (Segment("large", 0.0, 0.25), Segment("small", 0.25, 0.75), Segment("large", 0.75, 1.0))
    assert pattern_of(segs) == "LSL"
    assert merge_segments((Segment("small", 0, 0.5), Segment("small", 0.5, 1))) == (Segment("small", 0, 1),)
    with pytest.raises(ProfileError, match="give 2 boundaries"):
        segments_from_pattern("LSL", (0.5,))
    with pytest.raises(ProfileError, match="strictly increasing"):
        segments_from_pattern("LSL", (0.8, 0.4))
    with pytest.raises(ProfileError, match="distilled"):
        segments_from_pattern("LDL", (0.4, 0.8), roles=("large", "small"))
    with pytest.raises(ProfileError, match="letters"):
        segments_from_pattern("LXL")


def test_plan_by_sigma_routes_by_noise_level():
    # boundaries at sigma 0.7 (L->S) and 0.2 (S->L)
    plan = plan_by_sigma(LSL, (0.7, 0.2), (1.0, 0.8, 0.7, 0.5, 0.21, 0.2, 0.1))
    assert plan == (0, 0, 1, 1, 1, 2, 2)
    with pytest.raises(ValueError, match="one sigma per boundary"):
        plan_by_sigma(LSL, (0.7,), (1.0,))


def test_thirds_and_sixths_are_exact():
    sixths = segments_from_pattern("LLLLLS")
    assert plan_steps(sixths, 6) == ("large",) * 5 + ("small",)
    assert plan_steps(sixths, 12).count("small") == 2
    assert first_step(2 / 3, 3) == 2 and first_step(1 / 3, 30) == 10
