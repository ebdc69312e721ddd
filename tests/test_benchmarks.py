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


@pytest.mark.slow
@pytest.mark.parametrize("cache", [None, "first-block:10"])
def test_cache_blend_toy(tmp_path, cache):
    bench = load_script("cache_blend")
    out = tmp_path / "cache.json"
    returned = bench.main(["--toy", "--json", str(out), *(["--cache", cache] if cache else [])])
    r = json.loads(out.read_text())
    v = r["variants"]
    assert list(v) == ["LLL", "LLL+cache", "LSL", "LSL+cache"] and r["variants"].keys() == returned["variants"].keys()
    assert r["toy"] is True and r["repeats"] == 1 and r["cache"]["spec"] == (cache or "first-block:0.05")
    assert r["cache"]["per_role"] == {"large": "FirstBlockCacheConfig", "small": "FirstBlockCacheConfig"}
    # 6 steps, boundaries 0.4, 0.8: L L L S S L; two calls (cond, uncond) per step
    assert r["setting"]["num_inference_steps"] == 6 and r["blend"]["steps"] == {"large": 4, "small": 2}
    assert [(s["role"], s["start"], s["length"]) for s in r["blend"]["stretches"]] == [
        ("large", 0, 3),
        ("small", 3, 2),
        ("large", 5, 1),
    ]
    assert v["LLL"]["similarity_to_lll"] == {"psnr_db": None, "cosine": 1.0, "max_abs_diff": 0.0, "identical": True}
    blend = v["LSL"]["similarity_to_lll"]
    assert not blend["identical"] and blend["max_abs_diff"] > 0 and blend["cosine"] < 1.0
    assert math.isfinite(blend["psnr_db"]) and blend["psnr_db"] > 0
    assert r["psnr_peak"]["value"] > 0
    uncached = {"LLL": {"large": 12}, "LSL": {"large": 8, "small": 4}}
    layers = 2  # both toy models
    for base, calls in uncached.items():
        assert v[base]["calls"] == {
            role: {"calls": k, "computed": k, "skipped": 0, "blocks_computed": k * layers, "blocks_total": k * layers}
            for role, k in calls.items()
        }
        cached = v[f"{base}+cache"]["calls"]
        assert cached.keys() == calls.keys()
        for role, c in cached.items():
            assert c["calls"] == calls[role] and c["computed"] + c["skipped"] == c["calls"]
            assert c["computed"] <= v[base]["calls"][role]["computed"]
            assert c["calls"] <= c["blocks_computed"] <= c["blocks_total"] == calls[role] * layers  # block 0 always
    # every stretch starts uncached (state reset at switches): its first step's two calls compute in full
    stretch_starts = {"LLL": {"large": 1}, "LSL": {"large": 2, "small": 1}}
    for base, starts in stretch_starts.items():
        for role, k in starts.items():
            computed = v[f"{base}+cache"]["calls"][role]["computed"]
            if cache == "first-block:10":  # a threshold nothing stays under: only the stretches' first steps compute
                assert computed == 2 * k
            assert computed >= 2 * k
    if cache == "first-block:10":
        assert not v["LLL+cache"]["similarity_to_lll"]["identical"]
    for label, x in v.items():
        assert x["repeat_max_abs_diff"] == 0.0, label  # no cache state leaks from one generation into the next
        assert len(x["seconds_per_video"]["samples"]) == 1 and positive_finite(x["speedup_vs_lll"]["median"])
    assert v["LLL"]["speedup_vs_lll"]["samples"] == [1.0]
    for e in r["cache_effect"].values():
        assert positive_finite(e["speedup"]["median"]) and 0 < e["similarity"]["cosine"] <= 1.0
    assert r["machine"].keys() == {"cpus", "platform", "torch"} and r["torch_threads"] == 1
