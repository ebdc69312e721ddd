"""The demo pair's training script at toy size: its three transformer phases, their batch streams and config checks.

``scripts/`` is not an installed package, so the script is loaded from its file like a user runs it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def train_demo(script_module):
    with script_module("train_demo") as module:
        yield module


def _tiny(train_demo):
    cfg = train_demo.TrainConfig(steps=3, finetune_steps=2, refine_steps=2, warmup_steps=1, batch_size=2, log_every=1)
    config = {**train_demo.SMALL_TRANSFORMER_CONFIG, "num_layers": 1, "ffn_dim": 16}
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(6, config["in_channels"], 2, 8, 8, generator=gen)
    ids = torch.arange(6) % 3
    embeds = torch.randn(4, 16, config["text_dim"], generator=gen)  # 3 prompts + the empty one
    return cfg, config, latents, ids, embeds


def test_each_phase_trains_its_own_steps_on_its_own_batch_stream(train_demo):
    cfg, config, latents, ids, embeds = _tiny(train_demo)
    records = {}
    for phase in (1, 2, 3):
        model = train_demo.build_transformer(config, 0)
        before = [p.detach().clone() for p in model.parameters()]
        records[phase] = train_demo.train_transformers({"m": model}, latents, ids, embeds, cfg, phase=phase)
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert [len(records[p]["loss_curve"]) for p in (1, 2, 3)] == [3, 2, 2]
    # The same initial model on another batch stream sees other batches: the first losses differ.
    first = {p: records[p]["loss_curve"][0]["loss_m"] for p in (1, 2, 3)}
    assert len(set(first.values())) == 3


def test_phase_must_exist(train_demo):
    cfg, config, latents, ids, embeds = _tiny(train_demo)
    with pytest.raises(ValueError, match="`phase` must be 1, 2 or 3, got 4"):
        train_demo.train_transformers(
            {"m": train_demo.build_transformer(config, 0)}, latents, ids, embeds, cfg, phase=4
        )


def test_worker_runs_phase_three_only_when_asked(train_demo, tmp_path):
    cfg, config, latents, ids, embeds = _tiny(train_demo)
    cases = (
        ("large", 2, ("large",), ["phase1", "phase2", "phase3"]),
        ("large", 0, ("large",), ["phase1", "phase2"]),
        ("small", 2, ("large",), ["phase1", "phase2"]),  # not among the refined models: phase 2's weights
        ("small", 2, ("large", "small"), ["phase1", "phase2", "phase3"]),
    )
    for i, (name, refine, models, phases) in enumerate(cases):
        out = tmp_path / f"case{i}"
        out.mkdir()
        run_cfg = replace(cfg, refine_steps=refine, refine_models=models)
        train_demo._transformer_worker(name, config, 0, latents, ids, embeds, run_cfg, str(out))
        assert sorted(json.loads((out / "result.json").read_text())) == phases
        assert (out / "diffusion_pytorch_model.safetensors").exists()


def test_refine_models_default_and_command_line(train_demo):
    assert train_demo.TrainConfig().refine_models == ("large",)
    args = train_demo._parse_args(["--output", "x", "--refine-models", "large, small"])
    assert args.refine_models == ("large", "small")
    assert train_demo._parse_args(["--output", "x"]).refine_models == ("large",)


@pytest.mark.parametrize("models", [(), ("large", "large"), ("medium",), ["large"]])
def test_bad_refine_models_are_refused(train_demo, models):
    with pytest.raises(ValueError, match=r"TrainConfig.refine_models must be a non-empty tuple of distinct names"):
        train_demo.TrainConfig(refine_models=models)


def test_refine_steps_is_on_the_command_line(train_demo):
    args = train_demo._parse_args(["--output", "x", "--refine-steps", "7"])
    assert args.refine_steps == 7
    assert train_demo._parse_args(["--output", "x"]).refine_steps == train_demo.TrainConfig().refine_steps


def test_a_negative_phase_length_is_refused(train_demo):
    with pytest.raises(ValueError, match=r"TrainConfig.refine_steps must be an int >= 0 \(0 skips the phase\), got -1"):
        train_demo.TrainConfig(refine_steps=-1)


def test_each_phase_uses_its_own_learning_rate(train_demo):
    cfg, config, latents, ids, embeds = _tiny(train_demo)
    frozen = replace(cfg, refine_lr=0.0)  # AdamW at lr 0 (weight decay included) leaves every weight as it is
    for phase, moves in ((2, True), (3, False)):
        model = train_demo.build_transformer(config, 0)
        before = [p.detach().clone() for p in model.parameters()]
        train_demo.train_transformers({"m": model}, latents, ids, embeds, frozen, phase=phase)
        changed = any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
        assert changed is moves


def test_a_bad_step_count_on_the_command_line_is_one_line(train_demo, capsys):
    with pytest.raises(SystemExit) as info:
        train_demo.main(["--output", "unused", "--refine-steps", "-1"])
    assert str(info.value) == (
        "python -m scripts.train_demo: error: TrainConfig.refine_steps must be an int >= 0 (0 skips the phase), got -1."
    )
