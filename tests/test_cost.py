"""The cost model reproduces the paper's Table 2, and meta-device FLOP counting matches a real count."""

from __future__ import annotations

import pytest
import torch

from flowblending.cost import measure_call_flops, schedule_cost, step_flops
from flowblending.profile import load_profile
from flowblending.schedule import plan_steps, segments_from_pattern

# Paper Table 2, TFLOPs of the DiT blocks per video: (steps, LLL, LSL, LSS, SSS, boundaries)
TABLE_2 = {
    "LTX-Video": (40, 3496, 2005, 1632, 514, (0.375, 0.875)),
    "WAN 2.1": (50, 29950, 19222, 13858, 3129, (0.4, 0.8)),
}


@pytest.mark.parametrize("model", TABLE_2)
def test_table_2_lsl_and_lss_within_half_a_percent(model):
    steps, lll, lsl, lss, sss, bounds = TABLE_2[model]
    per_step = {"large": lll / steps, "small": sss / steps}
    for pattern, expected in (("LSL", lsl), ("LSS", lss)):
        plan = plan_steps(segments_from_pattern(pattern, bounds), steps)
        cost = schedule_cost(plan, per_step)
        assert abs(cost.flops_total - expected) / expected < 0.005, (model, pattern, cost.flops_total)
    assert schedule_cost(("large",) * steps, per_step).flops_total == pytest.approx(lll)


@pytest.mark.parametrize("name", ["wan21", "ltxv"])
def test_shipped_profile_cost_is_table_2(name):
    p = load_profile(name)
    _steps, lll, lsl, _lss, _sss, _ = TABLE_2["WAN 2.1" if name == "wan21" else "LTX-Video"]
    assert p.cost.flops_total / 1e12 == pytest.approx(lsl, rel=0.005)
    assert p.cost.flops_large_only / 1e12 == pytest.approx(lll, rel=1e-9)
    assert p.cost.predicted_speedup == pytest.approx(lll / p.cost.flops_total * 1e12, rel=1e-9)


def test_schedule_cost_names_missing_roles():
    with pytest.raises(ValueError, match="distilled"):
        schedule_cost(("large", "distilled"), {"large": 1.0})


def test_meta_device_count_equals_a_count_on_real_weights(tiny_wan):
    from diffusers import DiffusionPipeline
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from flowblending.cost import capture_step_calls

    pipe = DiffusionPipeline.from_pretrained(tiny_wan.pipeline_dir)
    calls = capture_step_calls(pipe, prompt="a red circle", **tiny_wan.call_kwargs)
    assert len(calls) == 2  # Wan with CFG: cond and uncond
    meta = measure_call_flops(pipe.transformer, *calls[0])
    assert all(t.device.type == "meta" for t in calls[0][1].values() if isinstance(t, torch.Tensor))
    real_kwargs = {
        k: (torch.zeros(v.shape, dtype=v.dtype) if isinstance(v, torch.Tensor) else v) for k, v in calls[0][1].items()
    }
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        pipe.transformer(**real_kwargs)
    assert meta == counter.get_total_flops() > 0
    assert step_flops(pipe.transformer, calls) == 2 * meta
