"""End-to-end calibration on a tiny Wan pair through the CLI: profile validates, counts match, resume works."""

from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner

from calibrate.config import CalibrationConfig
from calibrate.methods.full import full_calls, naive_calls
from calibrate.runner import calibrate
from calibrate.sampling import grid_steps
from flowblending.cli import cli
from flowblending.profile import load_profile

STEPS = 10


@pytest.fixture(scope="module")
def assets(tmp_path_factory, calibration_assets):
    prompts = tmp_path_factory.mktemp("calib") / "prompts.txt"
    prompts.write_text("# calibration prompts\na red circle moving left\n\na blue square moving up\n")
    return {**calibration_assets, "prompts": prompts}


def _config(assets, **kw):
    kwargs = dict(
        large=str(assets["pair"].pipeline_dir),
        small=str(assets["pair"].small_dir),
        prompts=("a red circle moving left", "a blue square moving up"),
        seeds=(0,),
        reference=str(assets["reference"]),
        num_inference_steps=STEPS,
        height=48,
        width=64,
        num_frames=9,
        max_sequence_length=16,
        feature_model=str(assets["dino"]),
        early_grid=0.2,
        late_grid=0.2,
        samples=1,
        name="tiny-wan",
    )
    kwargs.update(kw)
    return CalibrationConfig(**kwargs)


def test_cli_calibration_writes_a_valid_profile_that_runs(assets, tmp_path):
    out = tmp_path / "tiny.json"
    args = [
        "calibrate",
        "--large",
        assets["pair"].pipeline_dir,
        "--small",
        assets["pair"].small_dir,
        "--prompts",
        assets["prompts"],
        "--reference",
        assets["reference"],
        "--steps",
        STEPS,
        "--height",
        48,
        "--width",
        64,
        "--num-frames",
        9,
        "--max-sequence-length",
        16,
        "--feature-model",
        assets["dino"],
        "--early-grid",
        0.2,
        "--late-grid",
        0.2,
        "--samples",
        1,
        "--output",
        out,
        "--report",
        tmp_path / "report",
    ]
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "calibration summary" in result.output and "transformer calls" in result.output
    profile = load_profile(out)
    cal = profile.calibration
    assert cal["early"]["x"] == [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
    assert len(cal["divergence"]["cosine"]["mean"]) == STEPS
    assert (tmp_path / "report" / "report.md").exists()
    # the calls actually computed equal the formula for these grids, and beat the naive sweep
    assert cal["calls"]["computed"] == cal["calls"]["formula"]
    assert cal["calls"]["computed"]["large"] < cal["calls"]["naive"]["large"]
    v = CliRunner().invoke(cli, ["validate", str(out)])
    assert v.exit_code == 0, v.output
    gif = tmp_path / "x.gif"
    r = CliRunner().invoke(cli, ["run", "--profile", str(out), "--prompt", "a red circle", "--output", str(gif)])
    assert r.exit_code == 0, r.output
    assert gif.exists() and "FLOPs saved vs large-only" in r.output


def test_call_formulas_on_the_papers_wan_protocol():
    # 50 steps, candidates every 10 steps (App. B), Wan's 2 calls per step, early boundary at step 20
    early = [0, 10, 20, 30, 40]
    late = [10, 20, 30, 40]
    naive = naive_calls(50, 2, early, 20, late)
    shared = full_calls(50, 2, early, [r for r in late if r > 20])
    assert naive["large"] // 2 == 270  # large-step evaluations done naively
    assert shared["large"] // 2 == 80
    assert naive["large"] / shared["large"] >= 3
    assert grid_steps(0.2, 50, include_zero=True) == [0, 10, 20, 30, 40]


def test_interrupted_run_resumes_to_the_same_profile(assets, tmp_path):
    whole = calibrate(
        _config(assets), output=tmp_path / "a.json", work_dir=tmp_path / "wa", progress=False, log=lambda s: None
    )
    with pytest.raises(RuntimeError, match="injected failure"):
        calibrate(
            _config(assets),
            output=tmp_path / "b.json",
            work_dir=tmp_path / "wb",
            progress=False,
            log=lambda s: None,
            fail_after_units=1,
        )
    assert not (tmp_path / "b.json").exists()
    resumed = calibrate(
        _config(assets), output=tmp_path / "b.json", work_dir=tmp_path / "wb", progress=False, log=lambda s: None
    )
    a, b = copy.deepcopy(whole.profile.to_dict()), copy.deepcopy(resumed.profile.to_dict())
    for d in (a, b):
        d["provenance"].pop("created")
    assert a == b
    assert "computed in this run (the rest was resumed from the work dir)" in resumed.summary
    assert "computed in this run" not in whole.summary


def test_resume_with_other_arguments_is_refused(assets, tmp_path):
    calibrate(
        _config(assets, method="divergence"),
        output=tmp_path / "a.json",
        work_dir=tmp_path / "w",
        progress=False,
        log=lambda s: None,
    )
    from calibrate.config import CalibrationError

    with pytest.raises(CalibrationError, match="num_inference_steps"):
        calibrate(
            _config(assets, num_inference_steps=8),
            output=tmp_path / "a.json",
            work_dir=tmp_path / "w",
            progress=False,
            log=lambda s: None,
        )


def test_divergence_method_needs_no_decoding(assets, tmp_path):
    out = calibrate(
        _config(assets, method="divergence", reference=None),
        output=tmp_path / "d.json",
        work_dir=tmp_path / "wd",
        progress=False,
        log=lambda s: None,
    )
    cal = out.calibration
    assert "early" not in cal and cal["method"] == "divergence"
    assert cal["calls"]["computed"] == {"large": 2 * STEPS * 2, "small": 2 * STEPS * 2}  # 2 prompts, cond+uncond
    json.dumps(cal)


def test_image_to_video_pair_takes_one_image_per_prompt(tmp_path, tiny_ltx_i2v, assets):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    for i, colour in enumerate(["red", "blue"]):
        Image.new("RGB", (32, 32), colour).save(images / f"{i}.png")
    cfg = CalibrationConfig(
        large=str(tiny_ltx_i2v.pipeline_dir),
        small=str(tiny_ltx_i2v.small_dir),
        prompts=("a red circle", "a blue square"),
        images=tuple(str(p) for p in sorted(images.iterdir())),
        reference=str(assets["reference"]),
        num_inference_steps=8,
        height=32,
        width=32,
        num_frames=9,
        max_sequence_length=16,
        feature_model=str(assets["dino"]),
        early_grid=0.25,
        late_grid=0.25,
        samples=0,
        name="tiny-i2v",
    )
    out = calibrate(cfg, output=tmp_path / "i2v.json", progress=False, log=lambda s: None)
    profile = load_profile(tmp_path / "i2v.json")
    assert profile.image_to_video and profile.pipeline_class == "LTXImageToVideoPipeline"
    per_call = out.calibration["divergence"]["per_call"]
    assert set(per_call) == {"cond", "uncond"}  # the two halves of LTX's batched call
    assert out.calibration["calls"]["calls_per_step"] == 1
    result = CliRunner().invoke(cli, ["run", "--profile", str(tmp_path / "i2v.json"), "--prompt", "x"])
    assert result.exit_code == 2 and "--image" in result.output


def test_a_nan_velocity_names_step_role_and_prompt(assets, tmp_path):
    import torch
    from diffusers import WanTransformer3DModel

    broken = tmp_path / "nan-small"
    small = WanTransformer3DModel.from_pretrained(assets["pair"].small_dir)
    with torch.no_grad():
        small.proj_out.bias.fill_(float("nan"))
    small.save_pretrained(broken)
    from calibrate.config import CalibrationError

    with pytest.raises(
        CalibrationError,
        match=r"prompt 1 \('a red circle moving left'\), seed 0: the 'small' model "
        r"produced NaN/Inf at step 0",
    ):
        calibrate(_config(assets, small=str(broken)), work_dir=tmp_path / "w", progress=False, log=lambda s: None)


def test_sweep_of_all_patterns_through_the_cli(assets, tmp_path):
    out = tmp_path / "sweep.json"
    args = [
        "calibrate", "--method", "sweep", "--segments", 3, "--tolerance", 0.05,
        "--large", assets["pair"].pipeline_dir, "--small", assets["pair"].small_dir, "--prompts", assets["prompts"],
        "--reference", assets["reference"], "--steps", 6, "--height", 48, "--width", 64, "--num-frames", 9,
        "--max-sequence-length", 16, "--feature-model", assets["dino"], "--samples", 0,
        "--output", out, "--report", tmp_path / "report",
    ]  # fmt: skip
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    profile = load_profile(out)
    sweep = profile.calibration["sweep"]
    assert sorted(sweep["patterns"]) == sorted(a + b + c for a in "LS" for b in "LS" for c in "LS")
    chosen = sweep["chosen"]["pattern"]
    from flowblending.schedule import pattern_of, segments_from_pattern

    assert pattern_of(profile.schedule) == pattern_of(segments_from_pattern(chosen))
    assert sweep["fid"][sweep["patterns"].index(chosen)] <= sweep["large_only"]["fid"] * 1.05 + 1e-12
    # every trie node computed once per unit: 2^K - 1 segment evaluations per role, 2 prompts
    assert sweep["cost"]["segment_evaluations"] == {"large": 14, "small": 14}
    assert sweep["cost"]["from_scratch_segment_evaluations"] == {"large": 24, "small": 24}
    assert (tmp_path / "report" / "front.png").exists() and (tmp_path / "report" / "schedules.csv").exists()
    assert len((tmp_path / "report" / "schedules.csv").read_text().splitlines()) == 9


def test_beam_search_costs_less_than_the_exhaustive_sweep(assets, tmp_path):
    cfg = _config(assets, method="search", segments=4, beam_width=2, tolerance=0.05, num_inference_steps=8)
    out = calibrate(cfg, output=tmp_path / "search.json", work_dir=tmp_path / "w", progress=False, log=lambda s: None)
    search = out.calibration["search"]
    cost = search["cost"]
    done = sum(cost["segment_evaluations"].values())
    assert done < sum(cost["exhaustive_trie_segment_evaluations"].values())  # 2 x (2^5 - 2) for 2 prompts
    assert search["chosen"]["pattern"] in {c["pattern"] for c in search["candidates"]}
    assert load_profile(tmp_path / "search.json").calibration["method"] == "search"


@pytest.mark.parametrize("name", ["noise_se", "late_noise_se"])
@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), True, "1"])
def test_a_bad_noise_margin_is_refused_naming_the_flag(assets, name, bad):
    from calibrate.config import CalibrationError

    flag = "--" + name.replace("_", "-")
    with pytest.raises(CalibrationError, match=rf"{flag} must be a number of standard errors >= 0, got .*; e\.g\. 1"):
        _config(assets, **{name: bad})


def test_early_reference_is_a_decision_parameter_and_a_bad_one_is_refused(assets):
    from calibrate.config import CalibrationError

    with pytest.raises(CalibrationError, match=r"--early-reference must be one of steepest, first, got 'last'; e\.g\."):
        _config(assets, early_reference="last")
    assert _config(assets, early_reference="first").identity() == _config(assets).identity()


def test_a_bad_late_rule_is_refused_naming_the_flag(assets):
    from calibrate.config import CalibrationError

    with pytest.raises(CalibrationError, match=r"--late-rule must be one of minimum, parity, got 'median'; e\.g\."):
        _config(assets, late_rule="median")
    assert _config(assets, late_rule="parity").identity() == _config(assets).identity()  # a re-decision, no new runs
    with pytest.raises(CalibrationError, match=r"--late-rule parity .* but --method sweep has no late curve; add"):
        _config(assets, late_rule="parity", method="sweep")
    no_reference = {**_config(assets).to_json(), "reference": None, "late_rule": "parity"}
    with pytest.raises(CalibrationError, match="but there is no --reference; add --reference REAL_FRAMES_DIR"):
        CalibrationConfig.from_json(no_reference)
