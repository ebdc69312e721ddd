"""The CLI through click's runner: validate, inspect, run --dry-run, and every bad input -> one clear line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from flowblending.cli import cli
from flowblending.profile import load_profile


@pytest.fixture
def runner():
    return CliRunner()


def _invoke(runner, *args):
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_validate_shipped_profiles(runner):
    result = _invoke(runner, "validate", "wan21", "ltxv")
    assert result.exit_code == 0, result.output
    assert result.output.count(": ok") == 2


def test_validate_broken_profile_exits_1_with_one_line_per_error(runner, tmp_path):
    data = load_profile("wan21").to_dict()
    data["schedule"][1]["model"] = "medium"
    data["setting"]["num_inference_steps"] = -3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    result = runner.invoke(cli, ["validate", str(bad), "wan21"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if str(bad) in line]
    assert len(lines) == 1  # schema errors first: the step count; role checks run once the schema passes
    assert "$.setting.num_inference_steps" in lines[0]
    assert "wan21.json: ok" in result.output


def test_dry_run_plans_without_weights(runner):
    result = _invoke(runner, "run", "--profile", "wan21", "--dry-run")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "plan for 50 steps, schedule LSL" in out
    assert "steps per role: large: 30, small: 20" in out
    assert "predicted speed-up 1.56x" in out
    rows = [line.split() for line in out.splitlines() if line.strip() and line.split()[0].isdigit()]
    assert len(rows) == 50 and rows[19][1] == "large" and rows[20][1] == "small" and rows[40][1] == "large"


def test_dry_run_scales_with_steps_and_takes_overrides(runner):
    result = _invoke(runner, "run", "--profile", "wan21", "--dry-run", "--steps", "20", "--schedule", "LSS")
    assert "plan for 20 steps, schedule LS" in result.output
    assert "steps per role: large: 8, small: 12" in result.output
    result = _invoke(runner, "run", "--profile", "ltxv", "--dry-run", "--boundaries", "0.25,0.75")
    assert "steps per role: large: 20, small: 20" in result.output


def test_ltxv_dry_run_plans_on_the_linear_quadratic_schedule(runner):
    result = _invoke(runner, "run", "--profile", "ltxv", "--dry-run")
    lines = result.output.splitlines()
    assert "    14  large       0.9825     982.50" in lines
    assert "    15  small       0.9812     981.25" in lines
    assert "    34  small       0.4920     492.00" in lines
    assert "    35  large       0.4219     421.88" in lines
    assert "steps per role: large: 20, small: 20" in lines


def test_inspect_shows_boundaries_and_cost(runner):
    result = _invoke(runner, "inspect", "ltxv")
    assert "pipeline LTXConditionPipeline, base role large" in result.output
    assert "switch large->small at 0.375 = step 15, sigma 0.9812" in result.output
    assert "switch small->large at 0.875 = step 35, sigma 0.4219" in result.output
    assert "57.35%" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--profile", "nope", "--dry-run"], "unknown profile 'nope'"),
        (["run", "--profile", "missing/file.json", "--dry-run"], "does not exist"),
        (["run", "--profile", "wan21", "--dry-run", "--schedule", "LXL"], "letters"),
        (["run", "--profile", "wan21", "--dry-run", "--schedule", "LDL"], "distilled"),
        (["run", "--profile", "wan21", "--dry-run", "--boundaries", "0.8,0.4"], "strictly increasing"),
        (["run", "--profile", "wan21", "--dry-run", "--boundaries", "a,b"], "comma-separated"),
        (["run", "--profile", "wan21"], "no prompt"),
        (["run", "--profile", "ltxv", "--prompt", "x"], "give the first frame with --image"),
        (["run", "--profile", "wan21", "--prompt", "x", "--output", "x.avi"], "use .mp4 or .gif"),
        (["inspect", "wan99"], "known: "),
    ],
)
def test_bad_input_exits_2_with_a_clear_error_and_no_traceback(runner, args, message):
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_bad_profile_files_exit_2(runner, tmp_path):
    not_json = tmp_path / "p.json"
    not_json.write_text("{ broken")
    result = runner.invoke(cli, ["run", "--profile", str(not_json), "--dry-run"])
    assert result.exit_code == 2 and "line 1, column 3" in result.output
    data = load_profile("wan21").to_dict()
    data["schedule"][0]["end"] = 0.5
    overlapping = tmp_path / "o.json"
    overlapping.write_text(json.dumps(data))
    result = runner.invoke(cli, ["run", "--profile", str(overlapping), "--dry-run"])
    assert result.exit_code == 2 and "$.schedule[1].start: 0.4 overlaps" in result.output


def test_empty_prompt_file_and_missing_image_exit_2(runner, tmp_path):
    empty = tmp_path / "prompts.txt"
    empty.write_text("# only a comment\n\n")
    result = runner.invoke(cli, ["run", "--profile", "wan21", "--prompts", str(empty)])
    assert result.exit_code == 2 and "holds no prompt" in result.output
    result = runner.invoke(cli, ["run", "--profile", "ltxv", "--prompt", "x", "--image", str(tmp_path / "no.png")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_missing_model_offline_is_one_message(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(cli, ["run", "--profile", "wan21", "--prompt", "a dog", "--output", str(tmp_path / "d.mp4")])
    assert result.exit_code == 2
    assert "Wan-AI/Wan2.1-T2V-14B-Diffusers" in result.output
    assert "huggingface-cli download" in result.output
    assert "Traceback" not in result.output


def test_python_dash_m_is_the_same_command():
    out = subprocess.run(
        [sys.executable, "-m", "flowblending", "run", "--profile", "wan21", "--dry-run", "--steps", "10"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "steps per role: large: 6, small: 4" in out.stdout
