"""Velocity divergence (paper sec 5.1, App. C): distances, per-step stats and proxy boundaries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from calibrate.divergence import (
    divergence_boundaries,
    divergence_premise,
    divergence_stats,
    per_sample_distances,
    velocity_distances,
)

# ---- per-call distances ----


@pytest.mark.parametrize(
    ("a", "b", "cos", "l2"),
    [
        ([1.0, 0.0], [0.0, 1.0], 1.0, math.sqrt(2)),  # orthogonal
        ([1.0, 2.0], [1.0, 2.0], 0.0, 0.0),  # identical
        ([1.0, 2.0], [-1.0, -2.0], 2.0, 2 * math.sqrt(5)),  # opposite
        ([3.0, 4.0], [0.0, 0.0], 1.0, 5.0),  # zero velocity: cos taken as 0
        ([3.0, 4.0], [6.0, 8.0], 0.0, 5.0),  # same direction, different length
    ],
)
def test_velocity_distances_hand_values(a, b, cos, l2):
    d_cos, d_l2 = velocity_distances(torch.tensor(a), torch.tensor(b))
    assert d_cos == pytest.approx(cos, abs=1e-12)
    assert d_l2 == pytest.approx(l2, abs=1e-12)


def test_velocity_distances_flatten_whole_call():
    # (2, 2) tensors: the only non-zero entries sit in different places -> orthogonal as a whole.
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    assert velocity_distances(a, b) == pytest.approx((1.0, math.sqrt(2)))


def test_velocity_distances_in_float64_for_half_inputs():
    # 1000 x 300 in float16: the sum of squares (9e7) overflows float16 (max 65504) if not upcast.
    v = torch.full((1000,), 300.0, dtype=torch.float16)
    d_cos, d_l2 = velocity_distances(v, torch.zeros_like(v))
    assert d_l2 == pytest.approx(300 * math.sqrt(1000), rel=1e-12)
    assert velocity_distances(v, v) == (0.0, 0.0)
    assert type(d_cos) is float


def test_velocity_distances_shape_mismatch():
    with pytest.raises(ValueError, match=r"same shape, got \(2, 3\) and \(3, 2\)"):
        velocity_distances(torch.zeros(2, 3), torch.zeros(3, 2))


def test_velocity_distances_rejects_nan():
    with pytest.raises(ValueError, match="v_small contains NaN or Inf"):
        velocity_distances(torch.ones(4), torch.tensor([1.0, float("nan"), 1.0, 1.0]))


def test_per_sample_distances_hand_values():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [3.0, 4.0]]).reshape(3, 1, 2)
    b = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]).reshape(3, 1, 2)
    cos, l2 = per_sample_distances(a, b)
    assert cos.shape == (3,) and l2.shape == (3,)
    np.testing.assert_allclose(cos, [1.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(l2, [math.sqrt(2), 0.0, 5.0], atol=1e-12)


def test_per_sample_differs_from_whole_call():
    # Rows: [1,0] vs [1,0] (distance 0) and [0,1] vs [0,-1] (distance 2); the whole call has dot 0 -> 1.
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    cos, _ = per_sample_distances(a, b)
    np.testing.assert_allclose(cos, [0.0, 2.0], atol=1e-12)
    assert velocity_distances(a, b)[0] == pytest.approx(1.0)


def test_per_sample_needs_batch_dim():
    with pytest.raises(ValueError, match="batch dimension"):
        per_sample_distances(torch.ones(3), torch.ones(3))


# ---- per-step stats ----


def test_divergence_stats_population_std():
    stats = divergence_stats([[1.0, 2.0], [3.0, 6.0]])
    np.testing.assert_array_equal(stats["mean"], [2.0, 4.0])
    np.testing.assert_array_equal(stats["std"], [1.0, 2.0])  # ddof=0; ddof=1 would give sqrt(2), 2 sqrt(2)
    assert stats["count"] == 2


def test_divergence_stats_single_prompt_has_zero_std():
    stats = divergence_stats([[0.3, 0.2, 0.4]])
    np.testing.assert_array_equal(stats["std"], [0.0, 0.0, 0.0])
    assert stats["count"] == 1


def test_divergence_stats_rejects_bad_input():
    with pytest.raises(ValueError, match=r"2-D array \(prompts, steps\)"):
        divergence_stats([0.1, 0.2])
    with pytest.raises(ValueError, match=r"values\[1, 0\] is nan"):
        divergence_stats([[0.1, 0.2], [float("nan"), 0.2]])


# ---- proxy boundaries from the U-curve ----


def test_u_curve_20_steps_known_valley():
    # Valley 0.20 on steps 5..14, ramps of 0.04 on both sides; range 0.2, band 0.1 * 0.2 = 0.02.
    mean = [0.40, 0.36, 0.32, 0.28, 0.24] + [0.20] * 10 + [0.24, 0.28, 0.32, 0.36, 0.40]
    std = [0.01] * 20
    early, late = divergence_boundaries(mean, std)
    assert (early, late) == (5 / 20, 15 / 20)
    assert divergence_premise(mean, std, early, late) == []


def test_early_boundary_follows_variance():
    # Mean settles at step 3 but the spread stays high until step 4 (sec 5.1 early stage).
    mean = [0.25, 0.25, 0.22, 0.20, 0.20, 0.20, 0.20, 0.25, 0.30, 0.35]
    std = [0.20, 0.15, 0.10, 0.10, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02]
    # v = 4, range = max(0.15, 0.18) = 0.18, band 0.018: settled steps 4..6; step 7's mean 0.25 > 0.218.
    assert divergence_boundaries(mean, std) == (0.4, 0.7)


def test_late_boundary_at_onset_of_variance():
    # Flat late mean, but the spread rises from step 6: "onset of increasing variance" (sec 5.1).
    mean = [0.40, 0.30, 0.20, 0.20, 0.20, 0.20, 0.20, 0.20]
    std = [0.05, 0.02, 0.02, 0.02, 0.02, 0.02, 0.06, 0.10]
    assert divergence_boundaries(mean, std) == (2 / 8, 6 / 8)


def test_tol_widens_valley():
    mean = [0.40, 0.36, 0.32, 0.28, 0.24] + [0.20] * 10 + [0.24, 0.28, 0.32, 0.36, 0.40]
    # band 0.25 * 0.2 = 0.05: 0.24 now settles, 0.28 does not.
    assert divergence_boundaries(mean, [0.0] * 20, tol=0.25) == (4 / 20, 16 / 20)


def test_five_steps():
    assert divergence_boundaries([0.4, 0.25, 0.2, 0.25, 0.4], [0.0] * 5) == (0.4, 0.6)


def test_flat_curve_is_large_only_and_flagged():
    mean, std = [0.3] * 10, [0.01] * 10
    assert divergence_boundaries(mean, std) == (1.0, 1.0)
    msgs = divergence_premise(mean, std, 1.0, 1.0)
    assert len(msgs) == 1 and msgs[0].startswith("no U-shape: the divergence curve is flat")


def test_nearly_flat_curve_counts_as_flat():
    mean = 0.3 + 1e-4 * np.sin(np.arange(12))
    assert divergence_boundaries(mean, np.full(12, 0.01)) == (1.0, 1.0)


def test_all_zero_curve_is_flat():
    assert divergence_boundaries([0.0] * 5, [0.0] * 5) == (1.0, 1.0)


def test_monotone_decreasing_has_no_late_rise():
    # L2-like curve: v = 4, range 8, band 0.8 -> only step 4 settles.
    mean, std = [10.0, 8.0, 6.0, 4.0, 2.0], [0.0] * 5
    early, late = divergence_boundaries(mean, std)
    assert (early, late) == (0.8, 1.0)
    msgs = divergence_premise(mean, std, early, late)
    assert msgs == ["no U-shape: no late rise, the valley reaches the last step (divergence does not rise at the end)"]


def test_monotone_increasing_has_no_early_stage():
    mean, std = [2.0, 4.0, 6.0, 8.0, 10.0], [0.0] * 5
    early, late = divergence_boundaries(mean, std)
    assert (early, late) == (0.0, 0.2)
    msgs = divergence_premise(mean, std, early, late)
    assert len(msgs) == 1 and msgs[0].startswith("no U-shape: no early stage")


def test_premise_flags_empty_valley_from_caller():
    mean = [0.4, 0.25, 0.2, 0.25, 0.4]
    assert any(m.startswith("empty valley") for m in divergence_premise(mean, [0.0] * 5, 0.6, 0.4))


@pytest.mark.parametrize(
    ("mean", "std", "kwargs", "match"),
    [
        ([0.3, 0.2, 0.3], [0.0, 0.0], {}, "of one length"),
        ([0.3, 0.2], [0.0, 0.0], {}, "at least 3 steps"),
        ([0.3, float("nan"), 0.3], [0.0] * 3, {}, "finite"),
        ([0.3, 0.2, 0.3], [0.0, -0.1, 0.0], {}, r"cos_std\[1\] is -0.1"),
        ([0.3, 0.2, 0.3], [0.0] * 3, {"tol": 0.0}, r"tol must be a number in \(0, 1\)"),
        ([0.3, 0.2, 0.3], [0.0] * 3, {"flat_rtol": 1.0}, r"flat_rtol must be a number in \(0, 1\)"),
    ],
)
def test_divergence_boundaries_rejects_bad_input(mean, std, kwargs, match):
    with pytest.raises(ValueError, match=match):
        divergence_boundaries(mean, std, **kwargs)
