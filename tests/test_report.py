"""calibrate.report: plots, sample GIFs and report.md from a synthetic calibration (no models)."""

from __future__ import annotations

import copy
import itertools
import math
import sys

import numpy as np
import pytest
from PIL import Image, ImageSequence

from calibrate.report import side_by_side, write_report

N = 20


def _calibration(holds: bool = True) -> dict:
    f = np.arange(N) / N
    cos_mean = 0.05 + 0.8 * (f - 0.55) ** 2  # U-shaped (sec 5.1)
    cos_std = 0.2 * np.exp(-8 * f)  # high early variance
    l2_mean = 2.0 * np.exp(-4 * f) + 0.3
    l2_std = 0.1 * np.ones(N)
    x_early = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
    dino = [0.55, 0.75, 0.88, 0.94, 0.97, 0.98, 0.985, 0.99, 0.995, 0.998, 1.0]
    fid = [3.0, 2.0, 1.5, 1.23, 1.6, 2.5]  # V-curve, minimum at 80
    per_call = {
        "cond": {"cosine": {"mean": list(cos_mean * 1.1), "std": list(cos_std)}, "l2": {"mean": list(l2_mean)}},
        "uncond": {"cosine": {"mean": list(cos_mean * 0.9), "std": list(cos_std)}, "l2": {"mean": list(l2_mean)}},
    }
    return {
        "method": "full",
        "num_steps": N,
        "num_prompts": 2,
        "seeds": [0, 1],
        "divergence": {
            "fraction": list(f),
            "sigma": [1.0 - i / N for i in range(N - 1)] + [None],  # last sigma unknown -> "n/a"
            "cosine": {"mean": list(cos_mean), "std": list(cos_std)},
            "l2": {"mean": list(l2_mean), "std": list(l2_std)},
            "per_call": per_call,
            "proxy_boundaries": [0.35, 0.75],
            "premise": [],
        },
        "early": {
            "x": x_early,
            "steps": [round(x / 100 * N) for x in x_early],
            "dino": {"mean": dino, "std": [0.02] * 11},
            "clip": {"mean": [min(1.0, d + 0.01) for d in dino], "std": [0.01] * 11},
            "psnr": {"mean": [10.0 + 2 * i for i in range(10)] + [None], "std": [1.0] * 10 + [None]},
            "ssim": None,
            "alpha": 0.5,
            "floor": 0.96,
            "chosen": {"index": 4, "x": 40.0, "y": 0.97},
            "premise": [],
        },
        "late": {
            "x": [50.0, 60.0, 70.0, 80.0, 90.0, 100.0],
            "steps": [10, 12, 14, 16, 18, 20],
            "fid": fid,
            "chosen": {"index": 3, "x": 80.0, "fid": 1.23},
            "source": "fid",
            "feature": "facebook/dinov2-small",
            "reference_frames": 512,
            "premise": [],
        },
        "premise": {"holds": holds, "failed": [] if holds else ["early: Algorithm 1 lands on the last point (100%)"]},
        "calls": {"computed": {"large": 80, "small": 310}, "naive": {"large": 270, "small": 400}},
        "notes": ["demo similarities/FIDs use the demo feature model"],
    }


def _profile(schedule=None, speedup: float = 1.5581) -> dict:
    schedule = schedule or [
        {"model": "large", "start": 0.0, "end": 0.4},
        {"model": "small", "start": 0.4, "end": 0.8},
        {"model": "large", "start": 0.8, "end": 1.0},
    ]
    bounds = [
        {"fraction": s["start"], "step": round(s["start"] * N), "sigma": 1 - s["start"], "from": p["model"],
         "to": s["model"]}
        for p, s in itertools.pairwise(schedule)
    ]  # fmt: skip
    return {
        "name": "tiny-pair",
        "schedule": schedule,
        "boundaries": bounds,
        "cost": {"flops_ratio": 1 / speedup, "predicted_speedup": speedup},
        "setting": {"num_inference_steps": N, "scheduler": {"class": "UniPCMultistepScheduler", "flow_shift": 3.0}},
        "provenance": {"tool": "flowblending 0.1.0", "seeds": [0, 1]},
        "models": {
            "large": {"id": "org/large", "revision": None, "subfolder": "transformer", "parameters": 2290000},
            "small": {"id": "org/small", "revision": "abc123", "subfolder": "transformer", "parameters": 150000},
        },
    }


def _samples() -> dict:
    rng = np.random.default_rng(0)
    labels = ("large-only", "chosen L-S-L", "small-only")
    return {p: {lab: rng.random((9, 32, 32, 3)).astype(np.float32) for lab in labels} for p in ("a cat", "a | dog")}


def _png(path) -> Image.Image:
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG"
        return im.convert("RGB")


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """One full report (written once for the tests below): calibration, its deep copy before, and report.md."""
    cal = _calibration()
    cal["divergence"]["cosine"]["std"][3] = math.nan
    cal["early"]["dino"]["std"][2] = None
    before = copy.deepcopy(cal)
    out = tmp_path_factory.mktemp("report")
    path = write_report(cal, out, profile=_profile(), samples=_samples(), fps=8)
    return cal, before, path


def test_full_report_plots_are_pngs(full):
    _, _, path = full
    for name, min_w in (("divergence.png", 800), ("early.png", 600), ("late.png", 500)):
        im = _png(path.parent / name)
        assert im.width >= min_w and im.height >= 300, (name, im.size)
        assert len(np.unique(np.asarray(im.resize((200, 120))).reshape(-1, 3), axis=0)) > 20, f"{name} looks blank"


def test_full_report_sample_gifs_side_by_side(full):
    _, _, path = full
    for i in range(2):
        with Image.open(path.parent / f"sample-{i}.gif") as gif:
            assert gif.format == "GIF"
            assert gif.n_frames == 9
            assert gif.size == (3 * 32 * 4 + 2 * 2, 128)  # 32 px upscaled 4x to 128 px, two 2-px gaps
            frames = [f.convert("RGB") for f in ImageSequence.Iterator(gif)]
        assert all(px[0] > 200 for px in [frames[0].getpixel((128, 64)), frames[0].getpixel((129, 64))])  # gap
        left = np.asarray(frames[0])[:4, :4].astype(int)  # one source pixel upscaled to a 4x4 block
        assert np.abs(left - left[0, 0]).max() <= 8
    assert not (path.parent / "sample-2.gif").exists()


def test_full_report_markdown(full):
    cal, before, path = full
    assert path.name == "report.md"
    md = path.read_text(encoding="utf-8")
    assert md.startswith("# FlowBlending calibration report: tiny-pair")
    assert "large [0, 0.4) → small [0.4, 0.8) → large [0.8, 1)" in md
    assert "1.56x" in md  # predicted speed-up
    assert "small model from 40.0%" in md and "large model again from 80.0%" in md
    assert "| large | 80 | 270 | 3.38x |" in md  # 270 / 80
    assert "| small | 310 | 400 | 1.29x |" in md
    assert "35.0% / 75.0%" in md  # proxy boundaries
    assert "early -5.0 points, late -5.0 points" in md  # proxy minus DINO/FID
    for link in ("](divergence.png)", "](early.png)", "](late.png)", "](sample-0.gif)", "](sample-1.gif)"):
        assert link in md
    assert "large-only · chosen L-S-L · small-only" in md
    assert "a \\| dog" in md  # a pipe in a prompt does not break the table
    assert "| 19 | 0.950 | n/a |" in md  # None sigma of the last step
    assert "| 3 | 0.150 | 0.8500 | 0.178 | n/a | 1.398 | 0.1 |" in md  # NaN std
    assert "| 20.0 | 0.8800 | n/a |" in md  # None std
    assert "| 100.0 | 1.0000 | 0.0200 | 1.0000 | 0.0100 | n/a | n/a |" in md  # PSNR of large-only vs itself
    assert "| 80.0 | 16 | 1.2300 | ★ |" in md
    assert "demo similarities/FIDs use the demo feature model" in md
    assert "## Setting" in md and "UniPCMultistepScheduler (flow_shift 3)" in md
    assert "## Provenance" in md and "`org/large`" in md
    assert "does not hold" not in md and "Premise: **holds**" in md
    assert cal["early"] == before["early"] and cal["calls"] == before["calls"]  # input not modified


def test_premise_failure_is_stated_plainly(tmp_path):
    cal = _calibration(holds=False)
    cal["late"] = None  # the runner skips the late sweep when the early premise fails
    large_only = [{"model": "large", "start": 0.0, "end": 1.0}]
    path = write_report(cal, tmp_path, profile=_profile(large_only, speedup=1.0))
    md = path.read_text(encoding="utf-8")
    assert "## ⚠ The paper's stage structure does not hold for this pair" in md
    assert "- early: Algorithm 1 lands on the last point (100%)" in md
    assert "**Emitted instead**: a single-model schedule (large [0, 1)), predicted speed-up 1.00x" in md
    assert md.index("does not hold for this pair") < md.index("## Transformer calls")  # before the details


def test_divergence_method_has_no_sweep_sections(tmp_path):
    cal = _calibration()
    cal.update(method="divergence", early=None, late=None)
    cal["divergence"]["per_call"] = {}
    cal["calls"] = {"computed": {"large": 20, "small": 20}, "naive": {"large": 20, "small": 20}}
    out = tmp_path / "rep"
    out.mkdir()
    for stale in ("early.png", "late.png"):  # plots of an earlier full report in the same folder
        (out / stale).write_bytes(b"old")
    path = write_report(cal, out, profile=_profile())
    assert _png(out / "divergence.png").width >= 800
    assert not (out / "early.png").exists() and not (out / "late.png").exists()
    md = path.read_text(encoding="utf-8")
    assert "## Velocity divergence" in md and "](divergence.png)" in md
    assert "Early boundary" not in md and "Late boundary" not in md and "early.png" not in md
    assert "velocity divergence only" in md
    assert "| large | 20 | 20 | 1.00x |" in md


def test_late_boundary_from_divergence_has_no_fid_plot(tmp_path):
    cal = _calibration()
    cal["late"] = {"source": "divergence", "x": None, "fid": None, "chosen": {"index": None, "x": 75.0, "fid": None},
                   "premise": [], "feature": None, "reference_frames": 0}  # fmt: skip
    path = write_report(cal, tmp_path)
    assert not (tmp_path / "late.png").exists() and (tmp_path / "early.png").exists()
    md = path.read_text(encoding="utf-8")
    assert "late boundary comes from the divergence curve, 75.0%" in md
    assert "(FID n/a)" in md
    assert "# FlowBlending calibration report: unnamed profile" in md  # no profile given


def test_side_by_side_by_hand():
    a = np.zeros((2, 1, 1, 3), np.uint8)  # 2 frames, 1x1 black
    b = np.full((1, 2, 1, 3), 100, np.uint8)  # 1 frame, 2x1 grey: taller, held for frame 2
    out = side_by_side([a, b], min_height=4, gap=2)
    assert out.shape == (2, 4, 2 + 2 + 2, 3)  # scale 2 (tallest is 2 px): widths 2 and 2, gap 2
    assert (out[:, :2, :2] == 0).all() and (out[:, 2:, :2] == 255).all()  # a, padded below with white
    assert (out[:, :, 2:4] == 255).all()  # gap
    assert (out[:, :, 4:] == 100).all()  # b, last frame held


def test_bad_sample_shape_names_the_label(tmp_path):
    with pytest.raises(ValueError, match=r"'small-only'.*\(F, H, W, 3\)"):
        write_report(_calibration(), tmp_path, samples={"p": {"small-only": np.zeros((4, 8, 8, 2))}})
    assert list(tmp_path.iterdir()) == []  # checked before anything is written


def test_bad_fps_rejected(tmp_path):
    with pytest.raises(ValueError, match="fps must be a positive integer, got 0"):
        write_report(_calibration(), tmp_path, fps=0)


def test_missing_matplotlib_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "flowblending\[calibrate\]"'):
        write_report(_calibration(), tmp_path)
    assert not (tmp_path / "report.md").exists()
