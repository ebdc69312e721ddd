"""The ground-truth script's comparisons on a fake sweep whose answers can be worked out by hand.

``scripts/`` is not an installed package, so the script is loaded from its file like a user runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ground_truth(script_module):
    with script_module("demo_ground_truth") as module:
        yield module


def _row(pattern: str, flops: float, right: list[int], foreground: list[float]) -> dict:
    accuracy = sum(right) / len(right)
    return {
        "pattern": pattern,
        "flops_ratio": flops,
        "accuracy": accuracy,
        "detail": 0.5,
        "size": sum(foreground) / len(foreground) / 0.2,
        "per_seed": [{"seed": 1000, "right": right, "foreground": foreground}],
    }


def _fake_result() -> dict:
    # one seed, three prompts; real shapes cover 0.2 of the frame in these hand-made figures
    rows = [
        _row("LL", 1.0, [1, 1, 1], [0.3, 0.3, 0.3]),
        _row("LS", 0.56, [1, 1, 1], [0.3, 0.3, 0.3]),  # as good as LL on every video, cheaper
        _row("SL", 0.56, [0, 0, 1], [0.3, 0.3, 0.3]),  # loses two of three videos
        _row("SS", 0.12, [0, 0, 0], [0.4, 0.4, 0.4]),
    ]
    marked = {"full method": {**_row("L", 1.0, [1, 1, 1], [0.3, 0.3, 0.3]), "schedule": "L"}}
    return {
        "segments": 2,
        "prompts": 3,
        "videos_per_schedule": 3,
        "flops_ratio_of_one_segment": 0.44,
        "schedules": rows,
        "marked": marked,
    }


def test_advantage_is_paired_by_prompt(ground_truth):
    rows = _fake_result()["schedules"]
    # accuracy LL - SL per prompt: [1, 1, 0], mean 2/3, sample std sqrt(1/3), SE 1/3
    got = ground_truth.advantage(rows[0], rows[2], "accuracy", real_area=0.2)
    assert got["advantage"] == pytest.approx(2 / 3) and got["se"] == pytest.approx(1 / 3)
    # size: SS's shapes 2.0 against LL's 1.5 on every prompt, so LL is better by 0.5 with no spread
    got = ground_truth.advantage(rows[0], rows[3], "size", real_area=0.2)
    assert got["advantage"] == pytest.approx(0.5) and got["se"] == pytest.approx(0.0)


def test_summarise_finds_the_fronts_the_gaps_and_the_cheapest_schedule_as_good(ground_truth):
    result = _fake_result()
    ground_truth.summarise(result)
    assert result["front"] == ["SS", "LS"]
    assert result["size_front"] == ["SS", "LS"]  # LS, SL and LL all draw 1.5; the first of equals stays
    entry = result["marked"]["full method"]
    assert entry["accuracy_gap"] == pytest.approx(0.0)
    assert entry["flops_saved_by_front"] == pytest.approx(0.44)  # LS reaches its accuracy at 0.56
    assert entry["versus_front"]["pattern"] == "LS" and entry["versus_front"]["advantage"] == pytest.approx(0.0)
    assert entry["cheapest_as_good"]["pattern"] == "LS"  # SL is cheaper by nothing and 2 SE worse; SS is worse
    assert entry["cheapest_as_good"]["flops_ratio"] == pytest.approx(0.56)


def test_summarise_flag_rewrites_an_earlier_file_and_refuses_a_foreign_one(tmp_path):
    path = tmp_path / "ground-truth.json"
    path.write_text(json.dumps(_fake_result()))
    script = [sys.executable, str(ROOT / "scripts" / "demo_ground_truth.py"), "--summarise", str(path)]
    done = subprocess.run(script, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "cheapest schedule as good within one SE: LS (FLOPs 0.560, 1.00 segments less)" in done.stdout
    assert json.loads(path.read_text())["front"] == ["SS", "LS"]
    assert (tmp_path / "demo-pareto.png").stat().st_size > 0
    path.write_text(json.dumps({"grid": {}}))
    done = subprocess.run(script, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 2 and "not a ground truth written by this script" in done.stderr
