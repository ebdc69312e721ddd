"""Calibration cost: prefix sharing against the naive per-schedule sweep, side by side in one run.

Runs the paper's WAN protocol shape (50 steps; early candidates every 10 steps; late candidates every 10
steps; divergence pass) on a tiny Wan pair built offline, twice:

* shared: ``calibrate.runner.calibrate`` (record/replay, divergence in the same pass);
* naive:  every schedule generated from scratch, divergence measured in a separate pass.

Prints transformer calls per role (counted by the routers, not by a formula), wall time, and the peak RSS of
a calibration with 4 and with 16 prompts (each in its own process) to show memory does not grow with prompts.

    python benchmarks/calibration_cost.py [--prompts 4] [--steps 50]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from calibrate.demo.data import PROMPTS


def _assets(root: Path) -> dict:
    from flowblending.testing import save_reference_frames, save_tiny_dinov2, save_tiny_wan_pair

    return {
        "pair": save_tiny_wan_pair(root / "pair"),
        "dino": save_tiny_dinov2(root / "dino"),
        "reference": save_reference_frames(root / "reference", count=64),
    }


def _config(assets: dict, prompts: int, steps: int):
    from calibrate.config import CalibrationConfig

    return CalibrationConfig(
        large=str(assets["pair"].pipeline_dir),
        small=str(assets["pair"].small_dir),
        prompts=tuple(PROMPTS[:prompts]),
        seeds=(0,),
        reference=str(assets["reference"]),
        num_inference_steps=steps,
        height=48,
        width=64,
        num_frames=9,
        max_sequence_length=16,
        feature_model=str(assets["dino"]),
        early_grid=0.2,
        late_grid=0.2,
        samples=0,
        name="bench",
        early_boundary=0.4,
    )


def shared(assets: dict, prompts: int, steps: int, work: Path) -> dict:
    from calibrate.runner import calibrate

    start = time.perf_counter()
    out = calibrate(_config(assets, prompts, steps), work_dir=work, progress=False, log=lambda s: None)
    assert out is not None
    seconds = time.perf_counter() - start
    cal = out.calibration
    return {
        "seconds": seconds,
        "calls": cal["calls"]["computed"],
        "naive_formula": cal["calls"]["naive"],
        "early_step": cal["late"]["steps"][0],
    }


def naive(assets: dict, prompts: int, steps: int, early_step: int) -> dict:
    """Every schedule of the protocol from scratch, the divergence in its own pass, same metrics work."""
    from diffusers import DiffusionPipeline

    from calibrate.features import load_feature_extractor
    from calibrate.metrics import feature_similarity, frames_of, psnr_ssim
    from calibrate.sampling import ReplaySampler, Unit, grid_steps

    pipe = DiffusionPipeline.from_pretrained(assets["pair"].pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    small = type(pipe.transformer).from_pretrained(assets["pair"].small_dir)
    cfg = _config(assets, prompts, steps)
    kwargs = {"height": 48, "width": 64, "num_frames": 9, "max_sequence_length": 16, "guidance_scale": 5.0}
    gen = ReplaySampler(pipe, {"large": pipe.transformer, "small": small}, kwargs, steps)
    dino = load_feature_extractor(cfg.feature_model)
    early = grid_steps(cfg.early_grid, steps, include_zero=True)
    late = [r for r in grid_steps(cfg.late_grid, steps, include_zero=False) if early_step < r < steps]
    start = time.perf_counter()
    for i, prompt in enumerate(cfg.prompts):
        unit = Unit(i, prompt, 0)
        gen.run(unit, ["large"] * steps, shadow="small")  # divergence pass
        ref, _ = gen.run(unit, ["large"] * steps)  # large-only reference
        ref_feats = dino(frames_of(ref))
        for k in early:
            frames, _ = gen.run(unit, ["large"] * k + ["small"] * (steps - k))
            feature_similarity(dino(frames_of(frames)), ref_feats)
            psnr_ssim(frames, ref)
        for r in late:
            frames, _ = gen.run(unit, ["large"] * early_step + ["small"] * (r - early_step) + ["large"] * (steps - r))
            dino(frames_of(frames))
    return {"seconds": time.perf_counter() - start, "calls": dict(gen.calls)}


def peak_rss_child(prompts: int, steps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        assets = _assets(Path(tmp))
        shared(assets, prompts, steps, Path(tmp) / "work")
    print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rss-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--skip-rss", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    if args.rss_child is not None:
        peak_rss_child(args.rss_child, args.steps)
        return
    with tempfile.TemporaryDirectory() as tmp:
        assets = _assets(Path(tmp))
        s = shared(assets, args.prompts, args.steps, Path(tmp) / "work")
        n = naive(assets, args.prompts, args.steps, s["early_step"])
    print(
        f"tiny Wan pair, {args.prompts} prompts x 1 seed, {args.steps} steps, candidates every 20% "
        f"(every {args.steps // 5} steps); early boundary fixed at step {s['early_step']} (the paper's 40%)"
    )
    print(f"{'':24}{'shared (record/replay)':>24}{'naive (from scratch)':>24}{'ratio':>10}")
    for role in ("large", "small"):
        a, b = s["calls"].get(role, 0), n["calls"].get(role, 0)
        print(f"{role + ' transformer calls':24}{a:>24}{b:>24}{b / a:>9.2f}x")
    print(f"{'wall time (s)':24}{s['seconds']:>24.1f}{n['seconds']:>24.1f}{n['seconds'] / s['seconds']:>9.2f}x")
    print(f"naive large calls by formula: {s['naive_formula']['large']} (counted above: {n['calls'].get('large')})")
    if not args.skip_rss:
        for count in (4, 16):
            out = subprocess.run(
                [sys.executable, __file__, "--rss-child", str(count), "--steps", str(args.steps)],
                capture_output=True,
                text=True,
                check=True,
            )
            rss = json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]
            print(f"peak RSS, calibration of {count:>2} prompts: {rss:.0f} MB")


if __name__ == "__main__":
    main()
