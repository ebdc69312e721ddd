"""The package surface: lazy exports of ``flowblending`` and ``flowblending.testing``, and a cheap import."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import flowblending
import flowblending.testing

# names the README and the docs use: they must stay exported (the packages may export more)
DOCUMENTED = {
    "flowblending": {"Profile", "ProfileError", "RoutingTransformer", "apply_profile", "load_pipeline",
                     "load_profile", "load_transformer", "apply_blend_cache", "apply_role_offload"},
    "flowblending.testing": {"TinyPair", "save_tiny_wan_pair", "save_tiny_ltx_pair", "tiny_umt5_config"},
    "calibrate": {"calibrate", "CalibrationConfig", "find_early_boundary", "find_late_boundary", "find_parity_boundary",
                  "divergence_boundaries", "merge", "CalibrationRecord"},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_dir_and_all_list_every_public_name_and_each_resolves(name: str) -> None:
    module = importlib.import_module(name)
    names = list(module.__all__)
    assert DOCUMENTED[name] <= set(names)
    assert set(module._LAZY) == set(names) - {"__version__"}
    assert set(names) <= set(dir(module))
    for attr in names:
        assert getattr(module, attr) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        module.nope  # noqa: B018


def test_lazy_names_are_the_submodules_objects() -> None:
    from flowblending.loading import apply_profile
    from flowblending.router import RoutingTransformer
    from flowblending.testing.text import tiny_umt5_config

    assert flowblending.apply_profile is apply_profile
    assert flowblending.RoutingTransformer is RoutingTransformer
    assert flowblending.testing.tiny_umt5_config is tiny_umt5_config


def test_import_is_cheap() -> None:
    code = (
        "import sys, flowblending, flowblending.testing; "
        "flowblending.load_profile, flowblending.ProfileError, flowblending.testing.tiny_umt5_config; "
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_tiny_umt5_config_takes_overrides() -> None:
    base = flowblending.testing.tiny_umt5_config(100)
    assert base["vocab_size"] == 100 and base["d_model"] == flowblending.testing.TEXT_DIM
    wider = flowblending.testing.tiny_umt5_config(100, d_model=64, num_layers=2)
    assert wider == {**base, "d_model": 64, "num_layers": 2}


def test_every_package_of_the_tree_is_in_the_wheel() -> None:
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(root).parts)
        for top in ("flowblending", "calibrate")
        for init in (root / top).rglob("__init__.py")
    }
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
