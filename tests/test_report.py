"""calibrate.report: plots, sample GIFs and report.md from a synthetic calibration (no models)."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import sys

import numpy as np
import pytest
from PIL import Image, ImageSequence

from calibrate.record import CalibrationRecord
from calibrate.report import (
    CONTACT_BLOCK_GAP,
    CONTACT_LABEL_WIDTH,
    CONTACT_TITLE_HEIGHT,
    contact_sheet,
    side_by_side,
    write_contact_sheet,
    write_report,
)

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
    l2_call = {"mean": list(l2_mean), "std": list(l2_std)}
    per_call = {
        "cond": {"cosine": {"mean": list(cos_mean * 1.1), "std": list(cos_std)}, "l2": l2_call},
        "uncond": {"cosine": {"mean": list(cos_mean * 0.9), "std": list(cos_std)}, "l2": l2_call},
    }
    return {
        "method": "full",
        "num_steps": N,
        "num_prompts": 2,
        "seeds": [0, 1],
        "divergence": {
            "fraction": list(f),
            "sigma": [1.0 - i / N for i in range(N - 1)] + [math.nan],  # last sigma unknown -> "n/a"
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
        "calls": {
            "computed": {"large": 80, "small": 310},
            "naive": {"large": 270, "small": 400},
            "formula": {"large": 80, "small": 310},
            "calls_per_step": 2,
        },
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
    cal["calls"] |= {"computed": {"large": 20, "small": 20}, "naive": {"large": 20, "small": 20}}
    out = tmp_path / "rep"
    out.mkdir()
    for stale in ("early.png", "late.png", "contact-sheet.png"):  # images of an earlier full report in the folder
        (out / stale).write_bytes(b"old")
    path = write_report(cal, out, profile=_profile())
    assert _png(out / "divergence.png").width >= 800
    assert not (out / "early.png").exists() and not (out / "late.png").exists()
    assert not (out / "contact-sheet.png").exists()
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
    assert "- Late boundary (divergence curve): large model again from 75.0%\n" in md
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


def test_full_report_links_contact_sheet_above_gifs(full):
    _, _, path = full
    md = path.read_text(encoding="utf-8")
    assert "](contact-sheet.png)" in md
    assert md.index("](contact-sheet.png)") < md.index("](sample-0.gif)")
    sheet = _png(path.parent / "contact-sheet.png")
    cell = 32 * 3  # 32 px frames, smallest factor that reaches the 96 px minimum cell
    assert sheet.size == (CONTACT_LABEL_WIDTH + 9 * (2 + cell), 2 * (CONTACT_TITLE_HEIGHT + 3 * cell + 2 * 2) + 8)
    assert not [p.name for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary files left


def _video(frames: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (frames, size, size, 3), dtype=np.uint8)


def test_write_contact_sheet_size_by_hand(tmp_path):
    labels = ("large-only", "calibrated", "small-only")
    samples = {p: {lab: _video(4, 8, i) for i, lab in enumerate(labels)} for p in ("a cat", "a dog")}
    path = write_contact_sheet(samples, tmp_path / "sheet.png", scale=4)
    assert path == tmp_path / "sheet.png"
    sheet = np.asarray(_png(path))
    # per block: label column, then 4 x (2 px gap + 32 px cell) across; 3 rows of 32 px with 2 gaps of 2 px down
    width = CONTACT_LABEL_WIDTH + 4 * (2 + 32)
    block = CONTACT_TITLE_HEIGHT + 3 * 32 + 2 * 2
    assert sheet.shape == (2 * block + CONTACT_BLOCK_GAP, width, 3)
    assert CONTACT_BLOCK_GAP == 8 and CONTACT_LABEL_WIDTH == 120 and CONTACT_TITLE_HEIGHT == 20
    assert sheet.shape == (248, 256, 3)
    # second prompt, middle row ("calibrated"), third frame: every source pixel is a 4x4 block of itself
    top, left = block + CONTACT_BLOCK_GAP + CONTACT_TITLE_HEIGHT + 32 + 2, CONTACT_LABEL_WIDTH + 2 * (2 + 32) + 2
    cell = sheet[top : top + 32, left : left + 32]
    assert np.array_equal(cell, samples["a dog"]["calibrated"][2].repeat(4, axis=0).repeat(4, axis=1))
    title = sheet[block + CONTACT_BLOCK_GAP : block + CONTACT_BLOCK_GAP + CONTACT_TITLE_HEIGHT]
    assert (title < 128).any()  # the prompt is written in its title line
    assert not [p.name for p in tmp_path.iterdir() if p.name != "sheet.png"]  # written atomically, nothing left


def test_contact_sheet_nearest_neighbour_and_white_gaps():
    rows = {"large-only": _video(4, 8, 0), "calibrated": _video(4, 8, 1), "L-S-S": _video(2, 8, 2)}
    grid = contact_sheet(rows, scale=4, label_width=50)
    assert grid.dtype == np.uint8 and grid.shape == (3 * 32 + 2 * 2, 50 + 4 * (2 + 32), 3)
    for r, video in enumerate(rows.values()):
        top = r * (32 + 2)
        for f, frame in enumerate(video):
            left = 50 + 2 + f * (32 + 2)
            assert np.array_equal(grid[top : top + 32, left : left + 32], np.kron(frame, np.ones((4, 4, 1), np.uint8)))
        assert (grid[top : top + 32, 50:52] == 255).all()  # gap between label and first frame
        for f in range(1, 4):  # gaps between frames
            gap = 50 + f * (32 + 2)
            assert (grid[top : top + 32, gap : gap + 2] == 255).all()
        assert (grid[top : top + 32, :50] < 128).any()  # the row label
    for r in (1, 2):  # gaps between rows
        assert (grid[r * 34 - 2 : r * 34, 50:] == 255).all()
    assert (grid[68:100, 50 + 2 * 34 :] == 255).all()  # the 2-frame row ends early on white


def test_contact_sheet_default_scale_float_frames_and_errors():
    video = _video(3, 10, 5)
    grid = contact_sheet({"small-only": video.astype(np.float32) / 255}, label_width=0, gap=1)
    assert grid.shape == (100, 3 * (1 + 100), 3)  # ceil(96 / 10) = 10: a 100 px cell
    assert np.array_equal(grid[:, 1:101], video[0].repeat(10, axis=0).repeat(10, axis=1))
    assert contact_sheet({"a": video}, min_cell=1, label_width=0).shape == (10, 3 * 12, 3)  # no enlargement
    with pytest.raises(ValueError, match="scale must be a positive integer"):
        contact_sheet({"a": video}, scale=0)
    with pytest.raises(ValueError, match=r"'bad'.*\(F, H, W, 3\)"):
        contact_sheet({"bad": np.zeros((2, 4, 4, 2))})


def test_record_and_dict_give_the_same_report(tmp_path, full):
    cal, _, path = full
    record = CalibrationRecord.from_dict(cal)
    again = write_report(record, tmp_path, profile=_profile(), samples=_samples())
    assert again.read_text(encoding="utf-8") == path.read_text(encoding="utf-8")


def test_the_early_record_keeps_its_reference_slope():
    from calibrate.record import EarlyRecord

    data = {k: v for k, v in _calibration()["early"].items() if k != "reference"}
    early = EarlyRecord.from_dict({**data, "reference": "steepest"})
    assert early.reference == "steepest" and EarlyRecord.from_dict(early.to_dict()) == early
    # a record written before the option existed was computed with the printed rule
    assert EarlyRecord.from_dict(data).reference == "first"


def test_kid_metric_is_named_with_its_generated_frames(tmp_path):
    cal = _calibration()
    late = cal["late"]
    late["kid"] = [v / 100 for v in late.pop("fid")]
    late["chosen"] = {"index": 3, "x": 80.0, "kid": 0.0123}
    late |= {"metric": "kid", "source": "kid", "generated_frames": 96}
    path = write_report(cal, tmp_path, profile=_profile())
    md = path.read_text(encoding="utf-8")
    assert "## Late boundary: KID sweep (paper sec 4.3)" in md and "](late.png)" in md
    assert "over 96 generated frames against 512 reference frames" in md
    assert "| x (%) | step | KID | chosen |" in md and "| 80.0 | 16 | 0.0123 | ★ |" in md
    assert "Late boundary (KID minimum): large model again from 80.0% (KID 0.0123)" in md
    assert "DINO early sweep, KID late sweep" in md and "FID" not in md.split("## Notes")[0]
    assert _png(tmp_path / "late.png").width >= 500


def _sweep_calibration() -> dict:
    patterns = ["".join(p) for p in itertools.product("LS", repeat=3)]
    flops = [float(3 - p.count("S") * 0.8) * 1e9 for p in patterns]
    fid = [1.0 + p.count("S") * 0.3 + 0.05 * i for i, p in enumerate(patterns)]
    cal = _calibration()
    cal.update(method="sweep", early=None, late=None, premise={"holds": True, "failed": [], "tested": False})
    cal["sweep"] = {
        "segments": 3, "patterns": patterns, "flops": flops, "fid": fid, "dino": [1 - f / 10 for f in fid],
        "front_fid": [0, 1, 7], "front_dino": [0, 7], "tolerance": 0.5,
        "rule": "cheapest schedule with FID <= large-only FID x (1 + 0.5)",
        "chosen": {"index": 2, "pattern": "LSL", "flops": flops[2], "fid": fid[2], "dino": 0.9},
        "large_only": {"pattern": "LLL", "fid": fid[0]}, "reference_frames": 64,
        "cost": {"summary": ["24 segment evaluations instead of 48"]},
    }  # fmt: skip
    return cal


def test_sweep_report_has_front_and_schedule_table(tmp_path):
    path = write_report(_sweep_calibration(), tmp_path, profile=_profile())
    md = path.read_text(encoding="utf-8")
    assert "## Schedule sweep: every segment pattern (paper sec 5.2)" in md and "](front.png)" in md
    assert "- Chosen: `LSL` (cheapest schedule with FID <= large-only FID x (1 + 0.5))" in md
    assert "- 24 segment evaluations instead of 48" in md
    assert "Premise: not tested" in md and "does not hold" not in md
    assert _png(tmp_path / "front.png").width >= 500
    csv = (tmp_path / "schedules.csv").read_text(encoding="utf-8").splitlines()
    assert csv[0] == "pattern,flops,fid,dino" and len(csv) == 9 and csv[3].startswith("LSL,")


def test_a_late_point_tied_with_the_minimum_within_noise_is_reported_with_its_margin(tmp_path):
    cal = _calibration()
    late = cal["late"]
    late["fid"] = [3.0, 2.0, 1.0, 1.05, 1.5, 2.5]  # minimum at 70 %; 80 % is 0.05 above it, within 1 SE (0.08)
    late |= {"chosen": {"index": 3, "x": 80.0, "fid": 1.05}, "se": [0.5, 0.3, 0.0, 0.08, 0.2, 0.4], "noise_se": 1.0}
    cal["early"] |= {"se": [0.01] * 11, "noise_se": 1.0}
    md = write_report(cal, tmp_path, profile=_profile()).read_text(encoding="utf-8")
    text = "Late boundary (latest point within 1 SE of the FID minimum): large model again from 80.0% (FID 1.0500, "
    assert text + "+0.0500 from the minimum 1.0000 at 70.0%, within 0.0800)" in md
    assert "| x (%) | step | FID | SE of the difference to the minimum (allowed: 1 SE) | chosen |" in md
    assert "| 70.0 | 14 | 1.0000 | 0.0000 |  |" in md and "| 80.0 | 16 | 1.0500 | 0.0800 | ★ |" in md
    assert "| 40.0 | 0.9700 | 0.0200 |" in md and "| 0.0100 | ★ |" in md  # the early table's SE column
    assert CalibrationRecord.from_dict(cal).to_dict()["late"]["se"] == late["se"]


def test_a_late_choice_at_the_end_of_the_grid_is_named_l_s_s():
    from calibrate.record import LateChoice, LateRecord

    x, values = (40.0, 70.0, 100.0), (2.0, 1.5, 1.0)
    end = LateRecord(source="fid", chosen=LateChoice(2, 100.0, 1.0), x=x, steps=(8, 14, 20), values=values)
    assert end.choice_text() == "(FID minimum): no re-entry (L-S-S) (FID 1.0000)"
    tied = LateRecord(
        source="kid", metric="kid", chosen=LateChoice(2, 100.0, 1.2), x=x, steps=(8, 14, 20), values=(2.0, 1.0, 1.2),
        se=(0.5, 0.0, 0.3), noise_se=1.0,
    )  # fmt: skip
    assert tied.choice_text() == (
        "(latest point within 1 SE of the KID minimum): no re-entry (L-S-S) (KID 1.2000, +0.2000 from the minimum "
        "1.0000 at 70.0%, within 0.3000)"
    )


def test_a_parity_choice_is_described_against_large_only_and_survives_json(tmp_path):
    from calibrate.record import LateChoice, LateRecord

    x, values = (40.0, 70.0, 90.0, 100.0), (0.44, 0.418, 0.439, 0.475)
    late = LateRecord(
        source="kid", metric="kid", chosen=LateChoice(2, 90.0, 0.439), x=x, steps=(8, 14, 18, 20), values=values,
        se=(0.0, 0.03, 0.06, 0.1), noise_se=0.0, rule="parity",
    )  # fmt: skip
    assert late.choice_text() == (
        "(latest re-entry no worse than large-only's KID): large model again from 90.0% (KID 0.4390, -0.0010 "
        "against large-only's 0.4400)"
    )
    loose = LateRecord.from_dict({**late.to_dict(), "noise_se": 0.5})
    assert loose.rule == "parity" and loose.values == values
    assert loose.choice_text().endswith("-0.0010 against large-only's 0.4400, within 0.0300 (0.5 SE))")
    none = LateRecord.from_dict({**late.to_dict(), "chosen": {"index": 0, "x": 40.0, "kid": 0.44}})
    assert none.choice_text() == "(latest re-entry no worse than large-only's KID): none, large-only (KID 0.4400)"
    # a record written before the rule existed reads as the minimum rule
    old = {k: v for k, v in late.to_dict().items() if k != "rule"}
    assert LateRecord.from_dict(old).rule == "minimum"


def _early_with_stability(stability: tuple[float, ...]):
    """A three-point early record (0, 50, 100 %) choosing 50 %, with the given bootstrap shares."""
    from calibrate.record import EarlyChoice, EarlyRecord, Stat

    return EarlyRecord(
        x=(0.0, 50.0, 100.0),
        steps=(0, 10, 20),
        alpha=0.25,
        floor=0.96,
        metrics={"dino": Stat(mean=(0.6, 0.95, 1.0), std=(0.1, 0.05, 0.0))},
        chosen=EarlyChoice(1, 50.0, 0.95),
        stability=stability,
        stability_draws=200,
    )


def test_stability_text_names_the_share_the_runners_up_and_the_advice():
    from calibrate.record import EarlyRecord

    early = _early_with_stability((0.1, 0.4, 0.5))
    assert early.stability_text(16) == (
        "50% in 40% of 200 bootstrap resamples of the 16 unit(s) (also 100%: 50%, 0%: 10%); "
        "not stable at this many units: calibrate on more prompts or seeds"
    )
    steady = dataclasses.replace(early, stability=(0.0, 0.9, 0.1))
    assert steady.stability_text(16) == "50% in 90% of 200 bootstrap resamples of the 16 unit(s) (also 100%: 10%)"
    assert dataclasses.replace(early, stability=None).stability_text(16) is None
    again = EarlyRecord.from_dict(early.to_dict())
    assert again.stability == (0.1, 0.4, 0.5) and again.stability_draws == 200 and "stability" not in again.metrics


def test_the_early_table_shows_each_points_bootstrap_share():
    from calibrate.report import _early_section

    early = _early_with_stability((0.005, 0.41, 0.585))
    table = [line for line in _early_section(early, plotted=False) if line.startswith("| ")]
    assert "chosen in resamples" in table[0]
    assert table[2].endswith("| <1% |  |") and table[3].endswith("| 41% | ★ |") and table[4].endswith("| 58% |  |")
