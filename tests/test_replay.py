"""Record/replay exactness and same-pass divergence on tiny Wan and LTX."""

from __future__ import annotations

import pytest
import torch

from calibrate.replay import Recording, ReplayMismatchError, ReplayTransformer, install

PROMPT = "a red circle moving left"
STEPS = 8


def _load(pair):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(pair.pipeline_dir)
    large = pipe.transformer
    small = type(large).from_pretrained(pair.small_dir)
    return pipe, {"large": large, "small": small}


def _gen(pipe, pair, transformer, seed=0):
    install(pipe, transformer)
    out = pipe(
        prompt=PROMPT,
        generator=torch.Generator().manual_seed(seed),
        num_inference_steps=STEPS,
        output_type="pt",
        **pair.call_kwargs,
    )
    return out.frames


@pytest.fixture(params=["tiny_wan", "tiny_ltx"])
def pair(request):
    return request.getfixturevalue(request.param)


def test_recorded_large_run_is_the_plain_pipeline_and_measures_divergence(pair):
    pipe, models = _load(pair)
    plain = pipe(
        prompt=PROMPT,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=STEPS,
        output_type="pt",
        **pair.call_kwargs,
    ).frames
    rec = ReplayTransformer(models, ["large"] * STEPS, record=True, shadow="small")
    frames = _gen(pipe, pair, rec)
    assert torch.equal(frames, plain)
    calls_per_step = 2 if pair.family == "wan" else 1
    assert len(rec.recording.outputs) == STEPS * calls_per_step
    assert rec.counters.calls == {"large": STEPS * calls_per_step, "small": STEPS * calls_per_step}
    assert rec.divergence.labels() == ["cond", "uncond"]
    cos = rec.divergence.per_step("cosine")
    assert len(cos) == STEPS and all(0.0 <= c <= 2.0 for c in cos) and max(cos) > 0


@pytest.mark.parametrize("switch", [0, 3, 5])
def test_early_branch_from_the_recording_is_bit_identical_to_running_it(pair, switch):
    pipe, models = _load(pair)
    rec = ReplayTransformer(models, ["large"] * STEPS, record=True)
    _gen(pipe, pair, rec)
    scratch = _gen(pipe, pair, ReplayTransformer(models, ["large"] * switch + ["small"] * (STEPS - switch)))
    branch = ReplayTransformer(models, [rec.recording] * switch + ["small"] * (STEPS - switch))
    replayed = _gen(pipe, pair, branch)
    assert torch.equal(replayed, scratch)
    assert "large" not in branch.counters.calls  # the large prefix cost nothing
    assert branch.replayed == len(rec.recording.restrict(range(switch)).outputs)


def test_late_branch_replays_large_prefix_and_small_middle(pair, tmp_path):
    pipe, models = _load(pair)
    early, late = 2, 6
    rec = ReplayTransformer(models, ["large"] * STEPS, record=True)
    _gen(pipe, pair, rec)
    rec.recording.restrict(range(early)).save(tmp_path / "large.safetensors")
    large_rec = Recording.load(tmp_path / "large.safetensors")
    ls = ReplayTransformer(models, [large_rec] * early + ["small"] * (STEPS - early), record=True)
    _gen(pipe, pair, ls)
    plan = ["large"] * early + ["small"] * (late - early) + ["large"] * (STEPS - late)
    scratch = _gen(pipe, pair, ReplayTransformer(models, plan))
    sources = [large_rec] * early + [ls.recording] * (late - early) + ["large"] * (STEPS - late)
    lsl = ReplayTransformer(models, sources)
    assert torch.equal(_gen(pipe, pair, lsl), scratch)
    assert set(lsl.counters.steps) == {"large"} and lsl.counters.steps["large"] == STEPS - late


def test_replay_with_other_inputs_is_refused(tiny_wan):
    pipe, models = _load(tiny_wan)
    rec = ReplayTransformer(models, ["large"] * STEPS, record=True)
    _gen(pipe, tiny_wan, rec, seed=0)
    with pytest.raises(ReplayMismatchError, match="step 0 call 0: the inputs differ"):
        _gen(pipe, tiny_wan, ReplayTransformer(models, [rec.recording] * 2 + ["small"] * (STEPS - 2)), seed=1)
