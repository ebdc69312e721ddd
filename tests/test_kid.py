"""KID as the late metric: equal to torchmetrics' own on known features, the auto rule, and its use in a
calibration."""

from __future__ import annotations

import pytest
import torch

from calibrate.boundaries import difference_se, parity_curve_premise
from calibrate.methods.base import lsl
from calibrate.metrics import (
    KID_RULE_FACTOR,
    choose_late_metric,
    kid_against_reference,
    kid_subset_size,
    late_metric_leave_one_out,
)


def test_kid_equals_torchmetrics_on_the_same_features():
    from torchmetrics.image.kid import KernelInceptionDistance

    g = torch.Generator().manual_seed(0)
    real = torch.randn(60, 8, generator=g, dtype=torch.float64)
    fake = [torch.randn(20, 8, generator=g, dtype=torch.float64) + 0.5 for _ in range(2)]
    mean, std, size = kid_against_reference(real, fake, subset_size=30, subsets=7, seed=3)
    reference = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=7, subset_size=30)
    reference.update(real, real=True)
    reference.update(torch.cat(fake), real=False)
    torch.manual_seed(3)
    expected_mean, expected_std = reference.compute()
    assert size == 30
    assert mean == pytest.approx(float(expected_mean), rel=1e-12)
    assert std == pytest.approx(float(expected_std), rel=1e-12)
    assert mean > 0  # the fake set is shifted by 0.5 in every dimension


def test_kid_is_zero_within_its_spread_for_the_same_distribution_and_large_for_a_shifted_one():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(200, 4, generator=g, dtype=torch.float64)
    same, same_std, _ = kid_against_reference(
        real, [torch.randn(200, 4, generator=g, dtype=torch.float64)], subset_size=100
    )
    shifted, _, _ = kid_against_reference(real, [real + 1.0], subset_size=100)
    assert abs(same) < 2 * same_std
    assert shifted > 10 * same_std


def test_the_auto_rule_picks_kid_below_ten_times_the_feature_width():
    assert KID_RULE_FACTOR == 10
    assert choose_late_metric("auto", 3839, 384) == "kid"
    assert choose_late_metric("auto", 3840, 384) == "fid"
    assert choose_late_metric("fid", 10, 384) == "fid" and choose_late_metric("kid", 10**6, 384) == "kid"
    with pytest.raises(ValueError, match="'fid', 'kid' or 'auto'"):
        choose_late_metric("is", 1, 1)


def test_subset_size_defaults_to_1000_capped_by_the_smaller_set():
    assert kid_subset_size(5000, 4000) == 1000
    assert kid_subset_size(5000, 72) == 72
    with pytest.raises(ValueError, match="between 2 and the smaller set"):
        kid_subset_size(50, 40, 41)


def test_a_calibration_records_the_metric_it_used(calibration_assets, tmp_path):
    from calibrate.config import CalibrationConfig
    from calibrate.runner import calibrate

    pair = calibration_assets["pair"]
    base = dict(
        large=str(pair.pipeline_dir), small=str(pair.small_dir), prompts=("a red circle", "a blue square"),
        reference=str(calibration_assets["reference"]), num_inference_steps=6, height=48, width=64, num_frames=9,
        max_sequence_length=16, feature_model=str(calibration_assets["dino"]), early_grid=1 / 3, late_grid=1 / 3,
        samples=0, early_boundary=1 / 3,
    )  # fmt: skip
    work = tmp_path / "w"
    kid = calibrate(CalibrationConfig(**base), work_dir=work, progress=False, log=lambda s: None).record.late
    # 2 units x 9 frames = 18 generated frames per candidate, far fewer than 10 x the 32-wide features: KID
    assert (kid.requested, kid.metric, kid.generated_frames, kid.subset_size) == ("auto", "kid", 18, 18)
    assert len(kid.values) == len(kid.spread) == len(kid.others["fid"]) == 3  # e, one interior point, N
    fid = calibrate(CalibrationConfig(**base, late_metric="fid"), work_dir=work, progress=False, log=lambda s: None)
    # the same work dir: only the decision changes, the FID curve is the one recorded beside KID above
    assert fid.record.late.metric == "fid" and fid.record.late.values == kid.others["fid"]
    assert fid.record.late.others["kid"] == kid.values
    assert fid.profile.calibration["late"]["kid"] == list(kid.values)
    # by default the late rule is the paper's plain minimum; the SEs are measured all the same
    for late in (kid, fid.record.late):
        low = late.values.index(min(late.values))
        assert late.chosen.index == low and late.noise_se == 0.0
        assert len(late.se) == 3 and late.se[low] == 0.0 and all(s > 0 for i, s in enumerate(late.se) if i != low)
    # the one-standard-error rule: the chosen point ties the minimum within its margin, no later point does
    loose = calibrate(CalibrationConfig(**base, late_noise_se=1), work_dir=work, progress=False, log=lambda s: None)
    late = loose.record.late
    assert late.se == kid.se and late.noise_se == 1.0
    tied = [i for i, v in enumerate(late.values) if v <= min(late.values) + late.se[i]]
    assert late.chosen.index == tied[-1]
    plain = calibrate(CalibrationConfig(**base, noise_se=0), work_dir=work, progress=False, log=lambda s: None)
    assert plain.record.early.noise_se == 0 and plain.record.late.chosen == kid.chosen
    # the parity rule on the same curve: the latest candidate no worse than large-only (x[0]), SEs against it
    parity = calibrate(CalibrationConfig(**base, late_rule="parity"), work_dir=work, progress=False, log=lambda s: None)
    late = parity.record.late
    assert late.values == kid.values and late.rule == "parity" and late.se[0] == 0.0
    assert late.chosen.index == max(i for i, v in enumerate(late.values) if v <= late.values[0])
    assert parity.profile.calibration["late"]["rule"] == "parity"
    assert fid.profile.calibration["late"]["rule"] == "minimum"
    assert tuple(parity.profile.schedule) == lsl(1 / 3, late.chosen.x / 100)
    failed = [f"late: {p}" for p in parity_curve_premise(late.x, late.values, late.chosen.index, "KID")]
    assert list(late.premise) == [f[len("late: ") :] for f in failed]
    assert parity.profile.calibration["premise"]["failed"] == failed


def test_leave_one_out_rows_are_the_metric_without_each_unit():
    g = torch.Generator().manual_seed(5)
    real = torch.randn(40, 4, generator=g, dtype=torch.float64)
    units = [[torch.randn(6, 4, generator=g, dtype=torch.float64) + shift for _ in range(3)] for shift in (0, 1)]
    reference = {"features": real}
    rows = late_metric_leave_one_out("kid", None, reference, units, subset_size=10)
    for i, row in enumerate(rows):
        kept = [[u for j, u in enumerate(c) if j != i] for c in units]
        assert row == [kid_against_reference(real, c, subset_size=10)[0] for c in kept]
    full = [kid_against_reference(real, c, subset_size=10)[0] for c in units]
    assert full[1] > full[0]  # the shifted candidate is worse
    se = difference_se(full, rows)
    assert se[0] == 0.0 and se[1] > 0
    with pytest.raises(ValueError, match="at least 2"):
        late_metric_leave_one_out("kid", None, reference, [[units[0][0]]])
