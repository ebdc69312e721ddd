"""Scale-out on CPU (gloo): torchrun / accelerate launch with 2 processes give the single-process profile."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowblending.distributed import LaunchError, Processes, processes
from flowblending.testing import save_reference_frames, save_tiny_dinov2

pytestmark = pytest.mark.slow

PROMPTS = "a red circle moving left\na blue square moving up\n"


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_wan):
    root = tmp_path_factory.mktemp("dist")
    (root / "prompts.txt").write_text(PROMPTS)
    save_tiny_dinov2(root / "dino")
    save_reference_frames(root / "reference", count=40)
    return root, tiny_wan


def _args(root: Path, pair, out: Path, work: Path) -> list[str]:
    return [
        "calibrate",
        "--large",
        str(pair.pipeline_dir),
        "--small",
        str(pair.small_dir),
        "--prompts",
        str(root / "prompts.txt"),
        "--reference",
        str(root / "reference"),
        "--seeds",
        "0,1",
        "--steps",
        "8",
        "--height",
        "48",
        "--width",
        "64",
        "--num-frames",
        "9",
        "--max-sequence-length",
        "16",
        "--feature-model",
        str(root / "dino"),
        "--early-grid",
        "0.25",
        "--late-grid",
        "0.25",
        "--samples",
        "0",
        "--output",
        str(out),
        "--work-dir",
        str(work),
    ]


def _env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _torchrun(args: list[str], **env: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "flowblending",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(**env), timeout=600)


def _single(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flowblending", *args], capture_output=True, text=True, env=_env(), timeout=600
    )


def _comparable(path: Path) -> dict:
    data = json.loads(path.read_text())
    data["provenance"].pop("created")
    return data


def _assert_close(a, b, where="$"):
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), (where, a, b)
    else:
        assert a == b, (where, a, b)


@pytest.fixture(scope="module")
def single_profile(setup, tmp_path_factory):
    root, pair = setup
    tmp = tmp_path_factory.mktemp("single")
    result = _single(_args(root, pair, tmp / "p.json", tmp / "work"))
    assert result.returncode == 0, result.stderr[-3000:]
    return _comparable(tmp / "p.json")


def test_torchrun_two_ranks_equal_one_process_and_survive_a_dead_rank(setup, single_profile, tmp_path):
    root, pair = setup
    out, work = tmp_path / "p.json", tmp_path / "work"
    crashed = _torchrun(_args(root, pair, out, work), FLOWBLENDING_FAIL_AFTER="1:1")
    assert crashed.returncode != 0 and "injected failure after 1 unit(s) on rank 1/2" in crashed.stderr + crashed.stdout
    assert not out.exists()
    resumed = _torchrun(_args(root, pair, out, work))
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    assert "[rank 0/2] started as rank 0/2" in log and "[rank 1/2] started as rank 1/2" in log
    assert log.count("calibration summary") == 1  # rank 0 alone finalizes
    _assert_close(_comparable(out), single_profile)
    # the merge command rebuilds the same profile from the finished work dir, loading no diffusion model
    merged = _single(["calibrate", "--merge", str(work), "--output", str(tmp_path / "merged.json")])
    assert merged.returncode == 0, merged.stderr[-2000:]
    _assert_close(_comparable(tmp_path / "merged.json"), single_profile)


@pytest.mark.skipif(
    shutil.which("accelerate") is None and not Path(sys.executable).with_name("accelerate").exists(),
    reason="accelerate CLI not installed",
)
def test_accelerate_launch_two_processes_equal_one_process(setup, single_profile, tmp_path):
    root, pair = setup
    launcher = Path(sys.executable).with_name("accelerate")
    cmd = [
        str(launcher) if launcher.exists() else "accelerate",
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
        "-m",
        "flowblending",
        *_args(root, pair, tmp_path / "p.json", tmp_path / "work"),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    _assert_close(_comparable(tmp_path / "p.json"), single_profile)


def test_run_prompts_with_two_processes_writes_each_video_once(setup, tmp_path):
    _root, pair = setup
    from flowblending.testing import save_tiny_profile

    profile = save_tiny_profile(pair, tmp_path / "tiny.json", steps=4)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one red circle\ntwo blue squares\nthree green dots\n")
    out = tmp_path / "videos"
    args = ["run", "--profile", str(profile), "--prompts", str(prompts), "--output-dir", str(out)]
    result = _torchrun(args)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "0000-one-red-circle-0.mp4",
        "0001-two-blue-squares-0.mp4",
        "0002-three-green-dots-0.mp4",
    ]
    assert log.count("wrote ") == 3


class _FakeState:
    def __init__(self, n: int):
        self.num_processes, self.process_index = n, 0


def test_a_launch_whose_process_group_has_one_process_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(LaunchError, match=r"started 2 processes .* has 1"):
        processes(lambda: _FakeState(1))
    assert processes(lambda: _FakeState(2)).world_size == 2
    monkeypatch.delenv("WORLD_SIZE")
    assert processes() == Processes()
