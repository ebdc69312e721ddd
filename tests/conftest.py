"""Shared fixtures: tiny model pairs saved to a session temp dir and profiles that point at them."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before diffusers/transformers are imported: nothing downloads
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest
import torch

torch.set_flush_denormal(True)
torch.set_num_threads(1)  # tiny models: threads only add overhead (and CI has 2 cores)


@contextmanager
def _script_module(name: str) -> Iterator[ModuleType]:
    """``scripts/<name>.py`` imported as a module under test (``scripts/`` is not an installed package)."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="session")
def script_module():
    """``with script_module("train_demo") as module:`` imports ``scripts/train_demo.py`` for a test."""
    return _script_module


@pytest.fixture(scope="session")
def tiny_wan(tmp_path_factory):
    from flowblending.testing import save_tiny_wan_pair

    return save_tiny_wan_pair(tmp_path_factory.mktemp("wan"))


@pytest.fixture(scope="session")
def tiny_ltx(tmp_path_factory):
    from flowblending.testing import save_tiny_ltx_pair

    return save_tiny_ltx_pair(tmp_path_factory.mktemp("ltx"))


@pytest.fixture(scope="session")
def tiny_ltx_i2v(tmp_path_factory):
    from flowblending.testing import save_tiny_ltx_pair

    return save_tiny_ltx_pair(tmp_path_factory.mktemp("ltx_i2v"), image_to_video=True)


@pytest.fixture(scope="session")
def wan_profile_path(tiny_wan, tmp_path_factory):
    """An LSL profile (large [0, .4), small [.4, .8), large [.8, 1)) for the tiny Wan pair, 10 steps."""
    from flowblending.testing import save_tiny_profile

    return save_tiny_profile(tiny_wan, tmp_path_factory.mktemp("profiles") / "tiny-wan.json", steps=10)


@pytest.fixture(scope="session")
def calibration_assets(tmp_path_factory, tiny_wan):
    """The tiny Wan pair with a tiny DINOv2 feature model and 40 reference frames, for calibrations."""
    from flowblending.testing import save_reference_frames, save_tiny_dinov2

    root = tmp_path_factory.mktemp("calibration")
    return {
        "dino": save_tiny_dinov2(root / "dino"),
        "reference": save_reference_frames(root / "reference", count=40),
        "pair": tiny_wan,
    }


@pytest.fixture(scope="session")
def tiny_wan_deep(tmp_path_factory):
    """A tiny Wan pair with 3 large and 2 small blocks (block caches and offload groups need head and tail blocks)."""
    from flowblending.testing import save_tiny_wan_pair

    return save_tiny_wan_pair(tmp_path_factory.mktemp("wan-deep"), large_layers=3, small_layers=2)


@pytest.fixture(scope="session")
def tiny_wan_deep_profile(tiny_wan_deep, tmp_path_factory):
    """The paper's L-S-L (0.4, 0.8) profile for :func:`tiny_wan_deep` at 10 steps."""
    from flowblending.testing import save_tiny_profile

    return save_tiny_profile(tiny_wan_deep, tmp_path_factory.mktemp("wan-deep-profile") / "wan.json", steps=10)
