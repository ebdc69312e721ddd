"""The demo's evaluation scripts: the schedule grid's pooled summary (paired size differences and their SEs)."""

from __future__ import annotations

import pytest

from calibrate.demo.data import PROMPTS, foreground_fraction, reference_clips


@pytest.fixture(scope="module")
def grid(script_module):
    with script_module("demo_schedule_grid") as module:
        yield module


def _results(area: float, sizes: dict[str, tuple[list[float], list[float]]]) -> dict[str, dict]:
    """Grid rows whose per-video shape areas are ``size x area`` at seeds "1" and "2" (two prompts)."""
    return {
        name: {
            "flops_ratio": 1.0,
            "seeds": {
                seed: {"right": [1, 0], "foreground": [v * area for v in values]}
                for seed, values in zip(("1", "2"), per_seed, strict=True)
            },
        }
        for name, per_seed in sizes.items()
    }


def test_summarise_pairs_by_prompt_and_ignores_blank_videos(grid):
    prompts = list(PROMPTS[:2])
    area = float(foreground_fraction(reference_clips(len(prompts), prompts)).mean())
    results = _results(
        area,
        {
            "large-only": ([1.30, 1.40], [1.32, 1.38]),
            "0.4/0.6": ([1.20, 1.30], [1.24, 1.34]),
            "0.4/0.8": ([0.0, 0.0], [0.0, 0.0]),  # blank: size 0 must not be the best re-entry
            "0.4/1": ([1.40, 1.50], [1.44, 1.46]),
        },
    )
    grid.summarise(results, prompts)
    row = results["0.4/0.6"]
    assert row["pooled"] == 0.5 and row["pooled_size"] == pytest.approx(1.27)
    # per prompt, averaged over the seeds: -0.09 and -0.07; mean -0.08, SE std([-0.09, -0.07]) / sqrt(2) = 0.01
    assert row["size_vs_large_only"] == pytest.approx(-0.08)
    assert row["size_vs_large_only_se"] == pytest.approx(0.01)
    assert results["0.4/1"]["size_best_at_this_early_boundary"] == "0.4/0.6"
    # per prompt 0.20 and 0.16: mean 0.18, SE std([0.20, 0.16]) / sqrt(2) = 0.02
    assert results["0.4/1"]["size_vs_best"] == pytest.approx(0.18)
    assert results["0.4/1"]["size_vs_best_se"] == pytest.approx(0.02)
    assert "size_vs_best" not in results["large-only"]


def test_summarise_needs_the_same_seeds_and_areas_everywhere(grid):
    prompts = list(PROMPTS[:2])
    results = _results(1.0, {"large-only": ([1.0, 1.0], [1.0, 1.0]), "0.4/0.6": ([1.0, 1.0], [1.0, 1.0])})
    del results["0.4/0.6"]["seeds"]["2"]
    with pytest.raises(ValueError, match=r"'0.4/0.6' must hold per-video 'foreground' fractions for the seeds"):
        grid.summarise(results, prompts)
