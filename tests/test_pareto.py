"""Pareto front and tolerance choice (paper sec 5.2, Figure 7) on points whose answer is worked out by hand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibrate.pareto import choose_within_tolerance, pareto_front, pareto_front_max


def test_front_drops_dominated_points_and_is_sorted_by_cost():
    #          0        1        2        3       4
    points = [(4, 1), (1, 5), (3, 4), (2, 3), (5, 2)]
    # (3, 4) is dominated by (2, 3); (5, 2) by (4, 1)
    assert pareto_front(points) == [1, 3, 0]


def test_identical_points_keep_the_first_and_equal_cost_or_equal_loss_is_dominated():
    points = [(2, 3), (1, 5), (2, 3), (1, 6), (3, 3), (2, 3)]
    # 2 and 5 duplicate 0 (first kept); 3 has the cost of 1 and a worse loss; 4 the loss of 0 at a higher cost
    assert pareto_front(points) == [1, 0]
    assert pareto_front([(1.0, 1.0), (1.0, 1.0)]) == [0]
    assert pareto_front([]) == []


def test_maximised_quality_front_for_similarity():
    points = [(1.0, 0.90), (2.0, 0.95), (3.0, 0.94), (2.0, 0.95), (0.5, 0.90)]
    # 3 duplicates 1; 2 is dearer and worse than 1; 0 equals 4 in quality at a higher cost
    assert pareto_front_max(points) == [4, 1]
    assert pareto_front(points, maximize=True) == [4, 1]
    assert pareto_front(points) == [4]  # as a loss, the lowest value at the lowest cost dominates all


@pytest.mark.parametrize(
    ("points", "needle"),
    [
        ([(1.0, math.nan)], "points[0][1] (quality) is nan"),
        ([(1.0, 2.0), (math.inf, 1.0)], "points[1][0] (cost) is inf"),
        ([(1.0, 2.0, 3.0)], "points[0] must be a (cost, quality) pair"),
        ([(1.0, "x")], "points[0][1] (quality) must be a number"),
        ("12", "points must be a sequence"),
    ],
)
def test_front_rejects_bad_points_naming_them(points, needle):
    with pytest.raises(ValueError) as err:
        pareto_front(points)
    assert needle in str(err.value)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=12))
def test_front_is_exactly_the_non_dominated_first_copies(points):
    front = pareto_front(points)

    def dominates(q, p):
        return q[0] <= p[0] and q[1] <= p[1] and q != p

    expected = [
        i
        for i, p in enumerate(points)
        if not any(dominates(q, p) for q in points) and points.index(p) == i  # first copy only
    ]
    assert sorted(front) == expected
    assert [points[i][0] for i in front] == sorted(points[i][0] for i in front)


def test_tolerance_picks_the_cheapest_schedule_within_it():
    costs = [8.0, 6.0, 4.0, 5.0, 2.0]  # LLLL first, as the sweep orders them
    fids = [10.0, 10.1, 10.4, 10.15, 14.0]
    assert choose_within_tolerance(costs, fids, 10.0, 0.02) == 3  # limit 10.2: 4.0 costs FID 10.4
    assert choose_within_tolerance(costs, fids, 10.0, 0.05) == 2
    assert choose_within_tolerance(costs, fids, 10.0, 0.0) == 0
    assert choose_within_tolerance(costs, fids, 10.0, 1.0) == 4


def test_tolerance_ties_go_to_lower_fid_then_to_pattern_order():
    costs = [8.0, 4.0, 4.0, 4.0]
    assert choose_within_tolerance(costs, [10.0, 10.1, 10.05, 10.05], 10.0, 0.02) == 2  # lower FID, then first
    assert choose_within_tolerance(costs, [10.0, 10.1, 10.1, 10.1], 10.0, 0.02) == 1  # all equal: first
    assert choose_within_tolerance([1.0], [0.0], 0.0, 0.0) == 0  # a zero reference admits only equal FIDs


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (([1.0], [1.0], 1.0, -0.1), "tolerance must be >= 0"),
        (([1.0], [1.0], -1.0, 0.1), "reference_fid must be >= 0"),
        (([1.0, 2.0], [1.0], 1.0, 0.1), "costs and fids must have the same length, got 2 and 1"),
        (([], [], 1.0, 0.1), "costs is empty"),
        (([1.0], [math.nan], 1.0, 0.1), "fids[0] is nan"),
        (([1.0], [1.0], 1.0, True), "tolerance must be a number"),
        (([1.0, 2.0], [5.0, 3.0], 1.0, 0.1), "lowest is fids[1]=3: include the large-only schedule"),
    ],
)
def test_tolerance_choice_rejects_bad_input_naming_it(args, needle):
    with pytest.raises(ValueError) as err:
        choose_within_tolerance(*args)
    assert needle in str(err.value)
