"""The benchmark scripts at toy size: JSON keys, step counts per role, finite figures (never wall-clock values)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` (not a package) as a module."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    return module


def positive_finite(value: float) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_timing_helpers():
    from flowblending.timing import interleaved_times, paired_ratio, spread

    s = spread([3.0, 1.0, 2.0])
    assert (s.median, s.low, s.high) == (2.0, 1.0, 3.0)
    assert f"{s:.1f}" == "2.0 [1.0, 3.0]"
    assert paired_ratio([2.0, 4.0], [1.0, 1.0]).samples == (2.0, 4.0)
    with pytest.raises(ValueError):
        paired_ratio([1.0], [1.0, 2.0])
    order: list[str] = []
    times = interleaved_times(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=2, warmup=1, prepare=order.append
    )
    assert {k: len(v) for k, v in times.items()} == {"a": 2, "b": 2}
    # warm-up a b, then repeat 0 a b, repeat 1 rotated b a; prepare runs before each call
    assert order[1::2] == ["a", "b", "a", "b", "b", "a"]


@pytest.mark.slow
def test_gpu_speedup_toy(tmp_path):
    import flowblending
    from flowblending.schedule import count_steps, plan_steps

    gpu = load_script("gpu_speedup")
    out = tmp_path / "gpu.json"
    returned = gpu.main(["--toy", "--repeats", "1", "--json", str(out)])
    results = json.loads(out.read_text())
    assert results["pairs"].keys() == {"wan21", "ltxv"}
    assert results["toy"] is True and results["pairs"].keys() == returned["pairs"].keys()
    for name, r in results["pairs"].items():
        profile = flowblending.load_profile(name)
        n = profile.setting.num_inference_steps
        assert r["num_inference_steps"] == n
        assert r["plan_steps"] == count_steps(plan_steps(profile.schedule, n))
        assert r["timed_plan"] == list(plan_steps(profile.schedule, r["timed_steps"]))
        assert {role: k * n for role, k in count_steps(r["timed_plan"]).items()} == {
            role: k * r["timed_steps"] for role, k in r["plan_steps"].items()
        }
        assert r["step_ms"].keys() == {"large-only", "blend", "small-only"}
        assert r["step_ms"]["blend"].keys() == {"large", "small"}
        for key in ("measured_speedup", "small_only_speedup"):
            assert positive_finite(r[key]["median"]) and all(positive_finite(x) for x in r[key]["samples"])
        for key in ("paper_speedup", "flop_speedup_profile", "flop_speedup_counted", "measured_over_paper"):
            assert positive_finite(r[key]), key
        assert r["flop_speedup_profile"] == pytest.approx(profile.cost.predicted_speedup)
        assert r["peak_memory_gib"] == {"large-only": None, "blend": None}  # CPU: no CUDA allocator
        assert all(positive_finite(v["median"]) for v in r["extrapolated_s"].values())
        assert r["models"]["large"]["parameters"] > r["models"]["small"]["parameters"]


def test_gpu_configs_match_the_shipped_profiles():
    import diffusers
    import torch

    import flowblending

    gpu = load_script("gpu_speedup")
    for name, spec in gpu.PAIRS.items():
        profile = flowblending.load_profile(name)
        cls = getattr(diffusers, spec.transformer_class)
        for role, config in (("large", spec.large), ("small", spec.small)):
            with torch.device("meta"):
                model = cls.from_config(config)
            assert sum(p.numel() for p in model.parameters()) == profile.models[role].parameters


@pytest.mark.slow
def test_runtime_speedup_toy(tmp_path):
    bench = load_script("runtime_speedup")
    out = tmp_path / "runtime.json"
    tiny = ["--large-layers", "1", "--large-heads", "2", "--large-ffn", "64", "--small-layers", "1"]
    tiny += ["--small-heads", "1", "--small-ffn", "32", "--head-dim", "16", "--width", "32", "--height", "32"]
    bench.main([*tiny, "--steps", "5", "--repeats", "2", "--warmup", "0", "--threads", "1", "--json", str(out)])
    r = json.loads(out.read_text())
    assert r["blend"]["steps"] == {"large": 3, "small": 2}
    assert r["seconds_per_video"].keys() == {"plain large", "router all-large", "router blend", "plain small"}
    for key in ("router_overhead", "blend_efficiency", "measured_speedup", "ideal_speedup", "measured_over_flop"):
        assert len(r[key]["samples"]) == 2 and all(positive_finite(x) for x in r[key]["samples"]), key
    assert positive_finite(r["flop_speedup"])
