"""The shipped demo pair end to end: `flowblending demo --quick` runs every stage; the shipped profile runs."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowblending.cli import cli
from flowblending.profile import load_profile

pytestmark = pytest.mark.slow


def test_demo_weights_ship_as_safetensors_under_30_mb():
    from calibrate.demo import FEATURE_MODEL_DIR, PIPELINE_DIR, SMALL_TRANSFORMER_DIR, WEIGHTS_DIR

    files = [p for p in WEIGHTS_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 30 * 2**20
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt")]
    for folder in (PIPELINE_DIR / "transformer", SMALL_TRANSFORMER_DIR, FEATURE_MODEL_DIR, PIPELINE_DIR / "vae"):
        assert list(folder.glob("*.safetensors")), folder


def test_demo_quick_runs_every_stage(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--quick", "--output-dir", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for stage in ("[1/4]", "[2/4]", "[3/4]", "[4/4]"):
        assert stage in result.output
    profile = load_profile(out / "demo.json")
    assert profile.models["large"].id.startswith("package://calibrate.demo/")
    assert CliRunner().invoke(cli, ["validate", str(out / "demo.json")]).exit_code == 0
    report = (out / "report" / "report.md").read_text()
    assert "demo feature model" in report and "Demo: semantic accuracy" in report
    assert (out / "report" / "divergence.png").exists() and (out / "report" / "early.png").exists()
    results = json.loads((out / "demo-results.json").read_text())
    assert set(results["semantic_accuracy"]) >= {"large-only", "L-S-S", "S-L-L", "small-only"}
    # small-only draws its shapes far too large (1.8 measured on 48 videos); the report's table carries the size
    assert results["semantic_accuracy"]["small-only"]["size"] > 1.3
    assert results["measured_speedup"] > 0 and len(list((out / "videos").glob("*.gif"))) == 12
    from PIL import Image

    # every schedule but S-L-L is a row: large-only, calibrated (the other late rule's when it differs), L-S-S,
    # L-S-L, small-only; 3 prompts x (title + rows) x 9 frames of 32x32 enlarged 3x
    rows = len([k for k in results["semantic_accuracy"] if not k.startswith("S-L-L")])
    assert rows in (5, 6)
    with Image.open(out / "report" / "demo-contact-sheet.png") as sheet:
        width, height = sheet.size
    assert width == 120 + 9 * (2 + 96) and height == 3 * (20 + rows * 96 + (rows - 1) * 2) + 2 * 8
    flops = {k: v["flops"] for k, v in results["semantic_accuracy"].items()}
    assert flops["large-only"] == 1.0 and flops["small-only"] == pytest.approx(63881216 / 523304960)
    assert "| size | FLOPs | videos |" in report
    assert "demo-contact-sheet.png" in report


def test_shipped_demo_profile_runs(tmp_path):
    gif = tmp_path / "circle.gif"
    result = CliRunner().invoke(
        cli, ["run", "--profile", "demo", "--prompt", "a red circle moving left", "--output", str(gif)]
    )
    assert result.exit_code == 0, result.output
    assert gif.exists() and "FLOPs saved vs large-only" in result.output
    profile = load_profile("demo")
    assert profile.calibration is not None and profile.calibration["method"] == "full"


def test_the_shipped_demo_profile_names_no_path_of_the_machine_it_was_made_on():
    from flowblending.profile import resolve_model_location

    text = Path(resolve_model_location("package://flowblending.profiles/demo.json")).read_text()
    strings = re.findall(r'"((?:[^"\\]|\\.)*)"', text)
    assert not [s for s in strings if s.startswith("/") or "\\" in s]


def test_the_demo_table_shows_the_other_late_rule_with_its_flops():
    from calibrate.demo.cli import flops_ratio, other_rule_schedule, schedules_for
    from calibrate.methods.base import lsl

    profile = load_profile("demo")  # early 50 %, the KID minimum at 70 %; parity reads 80 % off the same curve
    label, schedule = other_rule_schedule(profile)
    assert label == "L-S-L (parity rule: 0.5, 0.8)" and schedule == lsl(0.5, 0.8)
    # 14 large and 6 small steps of 20 against 20 large ones, FLOPs per step as the profile measured them
    assert flops_ratio(profile, schedule) == pytest.approx((14 * 523304960 + 6 * 63881216) / (20 * 523304960))
    assert flops_ratio(profile, tuple(profile.schedule)) == pytest.approx(profile.cost.flops_ratio)
    assert list(schedules_for(profile))[:3] == ["large-only", "calibrated LSL", label]
    # a parity profile shows the minimum's choice; no late curve, no extra row
    late = {**profile.calibration["late"], "rule": "parity", "chosen": {"index": 3, "x": 80.0}}
    swapped = dataclasses.replace(profile, calibration={**profile.calibration, "late": late})
    assert other_rule_schedule(swapped) == ("L-S-L (minimum rule: 0.5, 0.7)", lsl(0.5, 0.7))
    bare = dataclasses.replace(profile, calibration={**profile.calibration, "late": None})
    assert other_rule_schedule(bare) is None


def test_demo_config_is_the_demo_setting_for_any_method(tmp_path):
    from calibrate.demo.cli import demo_config, demo_prompts, demo_settings
    from calibrate.demo.data import PROMPTS

    prompts = demo_prompts(16)
    assert len(prompts) == 16 and prompts[:3] == (PROMPTS[0], PROMPTS[3], PROMPTS[6])
    assert demo_prompts(48) == tuple(PROMPTS)
    settings = demo_settings()
    full = demo_config(tmp_path, prompts)
    sweep = demo_config(tmp_path, prompts, method="sweep", segments=8)
    assert (full.method, sweep.method, sweep.segments) == ("full", "sweep", 8)
    assert full.num_inference_steps == sweep.num_inference_steps == settings["num_inference_steps"]
    assert full.guidance_scale == settings["guidance_scale"] and full.reference == str(tmp_path)
    assert dataclasses.replace(full, method="sweep", segments=8) == sweep
