"""Algorithm 1 (paper App. B) and the late rules (FID/KID minimum, sec 4.3; parity) on hand-computed curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibrate.boundaries import (
    DEFAULT_ALPHA,
    DEFAULT_LATE_NOISE_SE,
    DEFAULT_LATE_RULE,
    DEFAULT_NOISE_SE,
    LATE_RULES,
    SIMILARITY_FLOOR,
    difference_se,
    early_boundary_stability,
    early_curve_premise,
    find_early_boundary,
    find_late_boundary,
    find_parity_boundary,
    floor_note,
    jackknife_se,
    late_curve_premise,
    local_slopes,
    mean_se,
    parity_curve_premise,
    raise_to_floor,
)

# Slopes 4, 2, 1, 0.2 (exact in binary floating point).
X5 = [0, 10, 20, 30, 40]
Y5 = [0, 40, 60, 70, 72]


def test_constants_match_paper():
    assert SIMILARITY_FLOOR == 0.96
    assert 0 < DEFAULT_ALPHA < 1


def test_local_slopes_hand_values_and_zero_dx():
    assert local_slopes(np.array([0.0, 10, 10, 20]), np.array([0.0, 8, 9, 12])).tolist() == [0.8, 0.0, 0.3]


def test_threshold_is_inclusive():
    # s_ref = 4, alpha*s_ref = 2, s_1 = 2 <= 2 -> k = 2.
    assert find_early_boundary(X5, Y5, 0.5) == (2, 20.0, 60.0)


def test_smaller_alpha_moves_knee_right():
    # alpha*s_ref = 1.6: s_1 = 2 > 1.6, s_2 = 1 <= 1.6 -> k = 3.
    assert find_early_boundary(X5, Y5, 0.4) == (3, 30.0, 70.0)


def test_zero_dx_gives_zero_slope():
    # s = [0.8, 0 (dx == 0), 0.3]; threshold 0.4 is met first by the dx == 0 slope -> k = 2.
    assert find_early_boundary([0, 10, 10, 20], [0, 8, 9, 12], 0.5) == (2, 10.0, 9.0)


def test_zero_dx_at_start_stops_at_one_as_printed():
    # s_0 = 0 (dx == 0) -> s_ref = 0 and s_0 <= alpha*0 -> k = 1.
    assert find_early_boundary([0, 0, 50], [0.5, 0.6, 1.0], 0.5, reference="first") == (1, 0.0, 0.6)


def test_zero_dx_at_start_steepest_reference_skips_it():
    # s = [0, 0.008]: the reference is s_1 = 0.008, nothing after it falls to 0.004 -> k = N-1.
    assert find_early_boundary([0, 0, 50], [0.5, 0.6, 1.0], 0.5) == (2, 50.0, 1.0)


# The reproduced demo pair's early curve (16 units): the first segment is flat, the steepest rise is the second.
X11 = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
Y_FLAT_START = [0.706, 0.708, 0.880, 0.929, 0.951, 0.966, 0.979, 0.988, 0.994, 0.998, 1.0]


def test_flat_first_segment_leaves_the_printed_rule_without_a_knee():
    # s_0 = 0.0002, threshold 0.00005: every later slope (>= 0.0002) stays above it -> k = N-1, "no knee".
    k, xk, _ = find_early_boundary(X11, Y_FLAT_START, 0.25, reference="first")
    assert (k, xk) == (10, 100.0)
    assert any(m.startswith("no knee") for m in early_curve_premise(X11, Y_FLAT_START, k, reference="first"))


def test_steepest_reference_finds_the_knee_after_a_flat_first_segment():
    # s_1 = 0.0172 is the steepest, threshold 0.0043; s_2 = 0.0049 > it, s_3 = 0.0022 <= it -> k = 4 (40 %).
    k, xk, yk = find_early_boundary(X11, Y_FLAT_START, 0.25)
    assert (k, xk, yk) == (4, 40.0, 0.951)
    assert early_curve_premise(X11, Y_FLAT_START, k, margin=[0.015] * 11) == []


def test_both_references_agree_when_the_first_slope_is_steepest():
    for alpha in (0.25, 0.4, 0.5):
        assert find_early_boundary(X5, Y5, alpha) == find_early_boundary(X5, Y5, alpha, reference="first")


def test_unknown_reference_names_the_choices():
    with pytest.raises(ValueError, match="reference must be one of steepest, first"):
        find_early_boundary(X5, Y5, 0.5, reference="last")


def test_no_slope_under_threshold_returns_last_index():
    # Convex curve: slopes 1, 2, 3, 4 never fall to alpha*s_ref -> k = N-1.
    assert find_early_boundary(X5, [0, 10, 30, 60, 100], 0.5) == (4, 40.0, 100.0)


def test_linear_curve_has_no_knee():
    x = [0, 25, 50, 75, 100]
    y = [0.2, 0.4, 0.6, 0.8, 1.0]
    k, xk, _ = find_early_boundary(x, y, 0.5)
    assert (k, xk) == (4, 100.0)
    assert any(m.startswith("no knee") for m in early_curve_premise(x, y, k))


def test_two_points():
    assert find_early_boundary([0, 100], [0.5, 1.0], 0.5) == (1, 100.0, 1.0)


def test_returns_python_types():
    k, xk, yk = find_early_boundary(np.array(X5), np.array(Y5), 0.5)
    assert type(k) is int and type(xk) is float and type(yk) is float


def test_paper_shaped_curve_and_clean_premise():
    # DINO similarity rising steeply then flat (Fig. 4 shape): slopes 0.02, 0.012, 0.0006, 0.0002, 0.0002.
    x = [0, 20, 40, 60, 80, 100]
    y = [0.50, 0.90, 0.964, 0.976, 0.98, 0.984]
    k, xk, yk = find_early_boundary(x, y, 0.5)
    assert (k, xk) == (2, 40.0)
    assert math.isclose(yk, 0.964)
    assert early_curve_premise(x, y, k) == []


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, float("nan"), True, "0.5"])
def test_alpha_out_of_range_rejected(alpha):
    with pytest.raises(ValueError, match=r"alpha must be a number in \(0, 1\)"):
        find_early_boundary(X5, Y5, alpha)


def test_unsorted_x_rejected_with_value_and_fix():
    with pytest.raises(ValueError) as err:
        find_early_boundary([0, 50, 40, 100], [0.5, 0.9, 0.95, 1.0], 0.5)
    msg = str(err.value)
    assert "x must be ascending" in msg and "x[2]=40" in msg and "x[1]=50" in msg and "sort" in msg


def test_length_mismatch_rejected():
    with pytest.raises(ValueError, match="same length, got 5 and 4"):
        find_early_boundary(X5, Y5[:4], 0.5)


def test_single_point_rejected():
    with pytest.raises(ValueError, match="at least 2"):
        find_early_boundary([0], [1.0], 0.5)


def test_non_finite_rejected():
    with pytest.raises(ValueError, match=r"y\[3\] is nan"):
        find_early_boundary(X5, [0, 40, 60, float("nan"), 72], 0.5)


def test_two_dimensional_rejected():
    with pytest.raises(ValueError, match="1-D"):
        find_early_boundary([[0, 1], [2, 3]], [[0, 1], [2, 3]], 0.5)


def test_premise_not_rising_at_start():
    x, y = [0, 50, 100], [0.99, 0.97, 0.98]
    k, _, _ = find_early_boundary(x, y, 0.5, reference="first")
    assert k == 1
    msgs = early_curve_premise(x, y, k, reference="first")
    assert len(msgs) == 1 and msgs[0].startswith("curve does not rise at the start")


def test_premise_never_rising_with_steepest_reference():
    x, y = [0, 50, 100], [0.99, 0.98, 0.97]  # slopes -0.0002, -0.0002: none positive -> reference s_0, k = 1
    k, _, _ = find_early_boundary(x, y, 0.5)
    assert k == 1
    msgs = early_curve_premise(x, y, k)
    assert msgs[0].startswith("curve does not rise anywhere (s_0 = -0.0002 <= 0)")


def test_premise_below_floor():
    x, y = [0, 20, 40, 60], [0.5, 0.9, 0.91, 0.99]
    k, _, yk = find_early_boundary(x, y, 0.5)
    assert (k, yk) == (2, 0.91)
    assert early_curve_premise(x, y, k) == ["similarity at the chosen point 0.91 is below the floor 0.96"]
    assert early_curve_premise(x, y, k, floor=0.9) == []


def test_a_knee_below_the_floor_moves_to_the_first_later_point_that_reaches_it():
    # The v2.2 demo pair's curve: Algorithm 1 stops at 40 % (0.948), the floor 0.96 is first reached at 50 %.
    x = [0, 10, 20, 30, 40, 50, 60, 100]
    y = [0.6155, 0.7915, 0.8591, 0.9125, 0.9481, 0.9659, 0.9798, 1.0]
    knee, _, _ = find_early_boundary(x, y, 0.25)
    assert knee == 4
    k = raise_to_floor(x, y, knee)
    assert (k, x[k], y[k]) == (5, 50, 0.9659)
    assert early_curve_premise(x, y, k) == []
    # A knee that already clears the floor stays; a floor no point before large-only reaches lands on it.
    assert raise_to_floor(x, y, 6) == 6
    assert raise_to_floor(x, y, knee, floor=0.999) == 7
    assert early_curve_premise(x, y, 7, floor=0.999)[0].startswith("no knee")
    with pytest.raises(ValueError, match="floor must be a finite similarity"):
        raise_to_floor(x, y, knee, floor=float("nan"))


def test_premise_rejects_bad_index():
    with pytest.raises(ValueError, match="k must be an index"):
        early_curve_premise(X5, Y5, 5)


# ---- late boundary (sec 4.3) ----

X_LATE = [40, 50, 60, 70, 80, 90, 100]


def test_late_boundary_is_v_minimum():
    fid = [9.0, 8.0, 7.0, 6.0, 5.5, 6.0, 7.0]
    assert find_late_boundary(X_LATE, fid) == (4, 80.0, 5.5)
    assert late_curve_premise(X_LATE, fid, 4) == []


def test_exact_tie_goes_to_fewer_large_steps():
    assert find_late_boundary([60, 70, 80, 90, 100], [9.0, 5.0, 7.0, 5.0, 8.0]) == (3, 90.0, 5.0)


def test_tie_within_rtol_goes_to_larger_x():
    fid = [9.0, 5.0, 5.0 * (1 + 1e-12), 8.0]
    k, xk, _ = find_late_boundary([60, 70, 80, 90], fid)
    assert (k, xk) == (2, 80.0)


def test_difference_beyond_rtol_is_not_a_tie():
    assert find_late_boundary([60, 70, 80, 90], [9.0, 5.0, 5.001, 8.0])[0] == 1
    # ... unless the caller widens rtol.
    assert find_late_boundary([60, 70, 80, 90], [9.0, 5.0, 5.001, 8.0], rtol=1e-3)[0] == 2


def test_minimum_at_last_point_flagged():
    x, fid = [60, 80, 100], [9.0, 8.0, 7.0]
    k, _, _ = find_late_boundary(x, fid)
    assert k == 2
    msgs = late_curve_premise(x, fid, k)
    assert len(msgs) == 1
    assert msgs[0].startswith("no interior minimum: the FID minimum is at an end of the grid")
    assert "x=100" in msgs[0]


def test_minimum_at_first_point_flagged():
    x, fid = [60, 80, 100], [5.0, 8.0, 9.0]
    k, _, _ = find_late_boundary(x, fid)
    assert k == 0
    assert "extend the grid" in late_curve_premise(x, fid, k)[0]


def test_late_rejects_unsorted_and_duplicate_x():
    with pytest.raises(ValueError, match=r"strictly ascending.*x\[1\]=90"):
        find_late_boundary([100, 90, 80], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"strictly ascending.*x\[2\]=80"):
        find_late_boundary([70, 80, 80], [1.0, 2.0, 3.0])


def test_late_rejects_bad_rtol_and_inf():
    with pytest.raises(ValueError, match="rtol must be"):
        find_late_boundary([70, 80, 90], [1.0, 2.0, 3.0], rtol=-1.0)
    with pytest.raises(ValueError, match=r"fid\[1\] is inf"):
        find_late_boundary([70, 80, 90], [1.0, float("inf"), 3.0])


def test_the_early_record_keeps_a_moved_knee_through_json():
    from calibrate.record import EarlyChoice, EarlyRecord, Stat

    record = EarlyRecord(
        x=(0.0, 40.0, 50.0, 100.0),
        steps=(0, 8, 10, 20),
        alpha=0.25,
        floor=0.96,
        metrics={"dino": Stat((0.6, 0.948, 0.966, 1.0), (0.3, 0.05, 0.04, 0.0)), "clip": None},
        chosen=EarlyChoice(2, 50.0, 0.966),
        knee=EarlyChoice(1, 40.0, 0.948),
    )
    data = record.to_dict()
    assert data["knee"] == {"index": 1, "x": 40.0, "y": 0.948}
    assert EarlyRecord.from_dict(data) == record
    assert "knee at 40.0% (similarity 0.9480) is below the floor" in record.choice_text()
    unmoved = EarlyRecord.from_dict({k: v for k, v in data.items() if k != "knee"})
    assert unmoved.knee is None and "knee" not in unmoved.choice_text()


# -- the noise margin (one-standard-error rule) ------------------------------------------------------------------


def test_jackknife_se_by_hand():
    # leave-one-out values 1, 2, 3: mean 2, squared deviations 1 + 0 + 1; sqrt(2/3 * 2) = sqrt(4/3)
    assert jackknife_se([1.0, 2.0, 3.0]) == pytest.approx([math.sqrt(4 / 3)])
    assert jackknife_se([[1.0, 5.0], [3.0, 5.0]]) == pytest.approx([1.0, 0.0])  # sqrt(1/2 * 2), a constant column
    with pytest.raises(ValueError, match="one row per left-out unit"):
        jackknife_se([[1.0, 2.0]])


def test_the_jackknife_se_of_a_mean_is_std_over_sqrt_n():
    rows = np.array([[0.9, 0.5], [0.8, 0.7], [1.0, 0.6], [0.7, 0.2]])
    loo = np.array([np.delete(rows, i, axis=0).mean(axis=0) for i in range(4)])
    assert jackknife_se(loo) == pytest.approx(mean_se(rows))
    assert mean_se(rows) == pytest.approx(rows.std(axis=0, ddof=1) / 2)
    assert mean_se([[0.9, 0.5]]).tolist() == [0.0, 0.0]  # one unit: no margin


def test_difference_se_is_paired_to_the_minimum():
    # candidate 1 is the minimum; candidate 0 always 1 above it (zero SE), candidate 2 moves against it
    values = [2.0, 1.0, 1.5]
    loo = [[2.0, 1.0, 1.0], [3.0, 2.0, 3.0]]
    # candidate 2's differences 0 and 1: deviations +-0.5, sqrt(1/2 * (0.25 + 0.25)) = 0.5
    assert difference_se(values, loo) == pytest.approx([0.0, 0.0, 0.5])


def test_a_margin_lets_the_floor_be_reached_within_noise():
    x, y = [0, 20, 40, 60, 100], [0.6, 0.9, 0.948, 0.97, 1.0]
    assert raise_to_floor(x, y, 2, 0.96) == 3
    assert raise_to_floor(x, y, 2, 0.96, margin=[0, 0, 0.0138, 0, 0]) == 2  # 0.948 + 0.0138 >= 0.96
    assert raise_to_floor(x, y, 2, 0.96, margin=[0, 0, 0.011, 0, 0]) == 3  # 0.959 < 0.96
    assert early_curve_premise(x, y, 2, 0.96, margin=[0, 0, 0.0138, 0, 0]) == []
    (failed,) = early_curve_premise(x, y, 2, 0.96, margin=[0, 0, 0.011, 0, 0])
    assert "0.948 is below the floor 0.96 by more than its margin 0.011" in failed
    with pytest.raises(ValueError, match=r"margin\[1\] is -1"):
        raise_to_floor(x, y, 2, 0.96, margin=[0, -1, 0, 0, 0])
    with pytest.raises(ValueError, match="one value per candidate"):
        raise_to_floor(x, y, 2, 0.96, margin=[0, 0])


def test_the_latest_late_point_within_its_margin_of_the_minimum_is_chosen():
    x = [50, 60, 70, 80, 90, 100]
    kid = [0.441, 0.422, 0.415, 0.420, 0.430, 0.464]
    assert find_late_boundary(x, kid) == (2, 70.0, 0.415)
    # 80 %: +0.005 <= 0.006; 90 %: +0.015 > 0.01; so the latest tie is 80 %
    assert find_late_boundary(x, kid, margin=[0.02, 0.01, 0, 0.006, 0.01, 0.03]) == (3, 80.0, 0.42)
    # everything within its margin: no re-entry (L-S-S), and the premise says why
    k, xk, _ = find_late_boundary(x, kid, margin=[0.03, 0.01, 0, 0.01, 0.02, 0.05])
    assert (k, xk) == (5, 100.0)
    (failed,) = late_curve_premise(x, kid, k, "KID")
    assert failed.startswith("no interior minimum beyond noise: the KID minimum at x=70 (0.415) is within the margin")
    assert late_curve_premise(x, kid, 3, "KID") == []


def test_the_default_noise_margins_are_one_standard_error_early_and_none_late():
    assert DEFAULT_NOISE_SE == 1.0 and DEFAULT_LATE_NOISE_SE == 0.0


# the v2.2 demo pair's 16-unit KID curve from early boundary 40 % (its profile, rounded)
X_DEMO = [40, 50, 60, 70, 80, 90, 100]
KID_DEMO = [0.4409, 0.4266, 0.4183, 0.4185, 0.4275, 0.4391, 0.4752]


def test_parity_picks_the_latest_re_entry_no_worse_than_large_only():
    # 90 %: 0.4391 <= 0.4409; L-S-S (100 %) 0.4752 is worse, so 90 % is the latest at parity
    assert find_parity_boundary(X_DEMO, KID_DEMO) == (5, 90.0, 0.4391)
    assert parity_curve_premise(X_DEMO, KID_DEMO, 5, "KID") == []
    # the minimum rule reads the same curve as 60 %
    assert find_late_boundary(X_DEMO, KID_DEMO)[0] == 2
    # a value equal to large-only's is at parity
    assert find_parity_boundary([40, 70, 100], [0.5, 0.5, 0.6]) == (1, 70.0, 0.5)


def test_parity_margins_are_measured_against_large_only():
    # L-S-S is 0.0343 above large-only: within a margin of 0.04, not within 0.03
    margin = [0, 0.01, 0.01, 0.01, 0.02, 0.03, 0.04]
    assert find_parity_boundary(X_DEMO, KID_DEMO, margin=margin)[0] == 6
    margin[-1] = 0.03
    assert find_parity_boundary(X_DEMO, KID_DEMO, margin=margin)[0] == 5
    (failed,) = parity_curve_premise(X_DEMO, KID_DEMO, 6, "KID")
    assert failed.startswith("no re-entry needed: L-S-S (x=100, KID 0.4752) is no worse than large-only (0.4409)")
    with pytest.raises(ValueError, match="one value per candidate"):
        find_parity_boundary(X_DEMO, KID_DEMO, margin=[0, 0])


def test_parity_falls_back_to_large_only_when_every_blend_costs_quality():
    # the stronger v2.3 pair's curve from 60 %: rising from large-only on
    x, kid = [60, 70, 80, 90, 100], [0.4278, 0.4290, 0.4331, 0.4405, 0.4567]
    assert find_parity_boundary(x, kid) == (0, 60.0, 0.4278)
    (failed,) = parity_curve_premise(x, kid, 0, "KID")
    assert failed.startswith(
        "no re-entry point reaches large-only's KID (0.4278 at x=60; the lowest later one is 0.429)"
    )
    with pytest.raises(ValueError, match="ascending"):
        find_parity_boundary([60, 50], [0.4, 0.5])


def test_difference_se_can_be_paired_to_large_only():
    values = [2.0, 1.0, 1.5]
    loo = [[2.0, 1.0, 1.0], [3.0, 2.0, 3.0]]
    # against candidate 0: differences (0, 0), (-1, -1), (-1, 0): only candidate 2 moves, +-0.5 -> SE 0.5
    assert difference_se(values, loo, base=0) == pytest.approx([0.0, 0.0, 0.5])
    loo = [[2.0, 1.0, 1.0], [4.0, 2.0, 3.0]]
    # candidate 1: differences -1 and -2, deviations +-0.5 -> 0.5; candidate 2: -1 and -1 -> 0
    assert difference_se(values, loo, base=0) == pytest.approx([0.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="index into the curve"):
        difference_se(values, loo, base=3)


def test_the_late_rules_registry():
    assert list(LATE_RULES) == ["minimum", "parity"] and DEFAULT_LATE_RULE == "minimum"
    assert LATE_RULES["minimum"].find is find_late_boundary and LATE_RULES["minimum"].base is None
    assert LATE_RULES["parity"].find is find_parity_boundary and LATE_RULES["parity"].base == 0
    for name, rule in LATE_RULES.items():
        k, _, _ = rule.find(X_DEMO, KID_DEMO, margin=None)
        assert rule.premise(X_DEMO, KID_DEMO, k, "KID") == [], name


def test_floor_note_only_when_the_default_floor_moved_the_knee_of_a_non_dinov2_model():
    note = floor_note("path/to/my-clip", SIMILARITY_FLOOR, 40.0, 60.0)
    assert note.startswith("the similarity floor 0.96 moved the early boundary from Algorithm 1's knee at 40% to 60%")
    assert "(path/to/my-clip)" in note and "pass --floor" in note
    assert floor_note("path/to/my-clip", SIMILARITY_FLOOR, None, 60.0) is None  # the knee reached the floor
    assert floor_note("path/to/my-clip", SIMILARITY_FLOOR, 60.0, 60.0) is None
    assert floor_note("path/to/my-clip", 0.9, 40.0, 60.0) is None  # a floor the user chose
    assert floor_note("facebook/dinov2-small", SIMILARITY_FLOOR, 40.0, 60.0) is None  # the paper's instrument
    assert floor_note("facebook/dinov2-large", SIMILARITY_FLOOR, 40.0, 60.0) is None


# Two kinds of unit on x = 0, 25, 50, 75, 100: both curves have Algorithm 1's knee at 50 %; A is at 0.97 there
# (clears the floor), B at 0.92 and 0.93 at 75 % (below it up to large-only).
_A = [0.5, 0.9, 0.97, 0.98, 1.0]
_B = [0.5, 0.9, 0.92, 0.93, 1.0]
_X5 = [0, 25, 50, 75, 100]


def test_early_boundary_stability_is_the_bootstrap_share_of_each_choice():
    # resamples of the two units: AA and BB a quarter each, AB half. AA chooses 50 %, BB large-only (no SE); the
    # AB mean is 0.945 at 50 % with SE 0.025, so it reaches the floor within one SE (50 %) but not exactly (100 %)
    one_se = early_boundary_stability(_X5, [_A, _B], noise_se=1.0, draws=4000)
    assert one_se[2] == pytest.approx(0.75, abs=0.03) and one_se[4] == pytest.approx(0.25, abs=0.03)
    exact = early_boundary_stability(_X5, [_A, _B], noise_se=0.0, draws=4000)
    assert exact[2] == pytest.approx(0.25, abs=0.03) and exact[4] == pytest.approx(0.75, abs=0.03)
    assert sum(one_se) == pytest.approx(1.0) and one_se[0] == one_se[1] == one_se[3] == 0.0
    assert early_boundary_stability(_X5, [_A, _A, _A]) == (0.0, 0.0, 1.0, 0.0, 0.0)  # every resample agrees
    assert early_boundary_stability(_X5, [_A, _B], seed=3) == early_boundary_stability(_X5, [_A, _B], seed=3)


def test_early_boundary_stability_checks_its_inputs():
    with pytest.raises(ValueError, match=r"one column per point of x \(5\), got shape \(2, 4\)"):
        early_boundary_stability(_X5, [_A[:4], _B[:4]])
    with pytest.raises(ValueError, match="draws must be an int >= 1, got 0"):
        early_boundary_stability(_X5, [_A], draws=0)
