"""Every calibration method on a tiny Wan pair: calls counted from outside equal the documented formulas, values
equal an independent computation, and a run killed at any point resumes to the same profile."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from calibrate.config import CalibrationConfig, CalibrationError
from calibrate.methods.divergence import divergence_calls
from calibrate.methods.full import full_calls
from calibrate.methods.search import search_calls
from calibrate.methods.sweep import sweep_calls
from calibrate.record import CalibrationRecord
from calibrate.runner import calibrate
from calibrate.sampling import grid_steps

PROMPTS = ("a red circle moving left", "a blue square moving up")


@pytest.fixture(scope="module")
def assets(calibration_assets):
    return calibration_assets


def _config(assets, **kw):
    kwargs = dict(
        large=str(assets["pair"].pipeline_dir),
        small=str(assets["pair"].small_dir),
        prompts=PROMPTS,
        reference=str(assets["reference"]),
        num_inference_steps=6,
        height=48,
        width=64,
        num_frames=9,
        max_sequence_length=16,
        feature_model=str(assets["dino"]),
        early_grid=1 / 3,
        late_grid=1 / 3,
        samples=1,
    )
    kwargs.update(kw)
    return CalibrationConfig(**kwargs)


class CallCounter:
    """Counts forward calls of the large and the small transformer from outside (a global module hook).

    Calls of weightless copies on the meta device (FLOP counting: no arithmetic is done) are not counted.
    """

    def __init__(self, assets):
        from diffusers import WanTransformer3DModel

        small = WanTransformer3DModel.load_config(assets["pair"].small_dir)
        self.small_layers = small["num_layers"]
        self.cls = WanTransformer3DModel
        self.calls = {"large": 0, "small": 0}

    def __enter__(self):
        def hook(module, args, output):
            if isinstance(module, self.cls) and not next(module.parameters()).is_meta:
                role = "small" if module.config.num_layers == self.small_layers else "large"
                self.calls[role] += 1

        self.handle = torch.nn.modules.module.register_module_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _run(config, tmp_path, name="p", **kw):
    return calibrate(config, output=tmp_path / f"{name}.json", work_dir=tmp_path / f"{name}.work", progress=False,
                     log=lambda s: None, **kw)  # fmt: skip


def test_full_method_calls_equal_the_formula_and_no_call_is_made_twice(assets, tmp_path):
    config = _config(assets, early_boundary=1 / 3)  # e = step 2, so pass 2 runs whatever the curve says
    with CallCounter(assets) as counter:
        out = _run(config, tmp_path)
    calls = out.record.calls
    early, late = grid_steps(1 / 3, 6, include_zero=True), [4]
    assert early == [0, 2, 4]
    per_unit = full_calls(6, 2, early, late)
    # large: 6 steps x 2 calls + the final 2 steps of L-S(2)-L(4); small: the shadow + early branches minus reuse
    assert per_unit == {"large": 12 + 4, "small": 12 + 2 * (5 + 3 + 1)}
    assert counter.calls == {r: 2 * v for r, v in per_unit.items()} == dict(calls.computed) == dict(calls.formula)
    assert calls.computed["large"] < calls.naive["large"]


def test_divergence_method_loads_no_feature_model_and_decodes_nothing(assets, tmp_path, monkeypatch):
    import calibrate.features as features

    def refuse(*args, **kwargs):
        raise AssertionError("the divergence method must not load a feature model")

    monkeypatch.setattr(features, "load_feature_extractor", refuse)
    config = _config(assets, method="divergence", feature_model="facebook/dinov2-small", reference=None)
    with CallCounter(assets) as counter:
        out = _run(config, tmp_path)
    assert counter.calls == {r: 2 * v for r, v in divergence_calls(6, 2).items()} == dict(out.record.calls.computed)
    assert out.record.early is None and out.record.feature_model is None


def test_sweep_rides_the_divergence_pass_on_the_trie(assets, tmp_path):
    config = _config(assets, method="sweep", segments=3, num_inference_steps=12, prompts=PROMPTS[:1], samples=0)
    with CallCounter(assets) as counter:
        out = _run(config, tmp_path)
    # 3 segments of 4 steps, 2 calls per step: the trie computes 2 x (1 + 2 + 4) x 4 = 56 calls per role; the
    # shadow adds 24 small calls, 6 of which (the first step of L^d S) the trie reuses
    assert sweep_calls(12, 2, 3) == {"large": 56, "small": 56 + 24 - 6}
    assert counter.calls == sweep_calls(12, 2, 3) == dict(out.record.calls.computed)
    assert len(out.record.divergence.cosine.mean) == 12


def test_search_calls_equal_the_formula_over_its_candidates(assets, tmp_path):
    config = _config(assets, method="search", segments=3, beam_width=1, samples=0)
    with CallCounter(assets) as counter:
        out = _run(config, tmp_path)
    search = out.record.search
    formula = {r: v * 2 for r, v in search_calls(6, 2, 3, list(search.candidates)).items()}
    assert counter.calls == formula == dict(out.record.calls.computed)


def test_a_small_model_that_is_the_large_model_gives_similarity_one_and_divergence_zero(assets, tmp_path):
    config = _config(assets, small=str(assets["pair"].pipeline_dir), prompts=PROMPTS[:1])
    record = _run(config, tmp_path).record
    assert record.early.metrics["dino"].mean == pytest.approx([1.0] * 4, abs=1e-9)
    assert record.divergence.cosine.mean == pytest.approx([0.0] * 6, abs=1e-9)
    assert record.divergence.l2.mean == pytest.approx([0.0] * 6, abs=1e-9)
    # nothing to gain from switching: both premise checks fail and the profile is large-only
    assert not record.premise.holds
    assert any("does not rise" in f for f in record.premise.failed)
    assert record.divergence.premise and "flat" in record.divergence.premise[0]


def _plain_run(pipe, pair, seed, switch_at=None, small=None):
    """Frames of one plain pipeline run; with ``switch_at``, the transformer becomes ``small`` from that step."""
    large = pipe.transformer

    def swap(p, step, timestep, kwargs):
        if switch_at is not None and step + 1 == switch_at:
            p.transformer = small
        return {}

    if switch_at == 0:
        pipe.transformer = small
    try:
        out = pipe(
            prompt=PROMPTS[0], num_inference_steps=6, generator=torch.Generator().manual_seed(seed),
            output_type="pt", callback_on_step_end=swap, **pair.kwargs(height=48, width=64),
        )  # fmt: skip
    finally:
        pipe.transformer = large
    return out.frames.float()


def test_similarity_and_divergence_equal_an_independent_computation(assets, tmp_path):
    from diffusers import DiffusionPipeline

    from calibrate.features import load_feature_extractor

    pair = assets["pair"]
    record = _run(_config(assets, prompts=PROMPTS[:1]), tmp_path).record
    pipe = DiffusionPipeline.from_pretrained(pair.pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    pipe.transformer.eval()
    small = type(pipe.transformer).from_pretrained(pair.small_dir).eval()
    dino = load_feature_extractor(str(assets["dino"]))
    with torch.no_grad():
        reference = dino(_plain_run(pipe, pair, 0)[0])
        expected = []
        for k in (0, 2, 4):
            feats = dino(_plain_run(pipe, pair, 0, switch_at=k, small=small)[0])
            cos = (feats.double() * reference.double()).sum(1) / (
                feats.double().norm(dim=1) * reference.double().norm(dim=1)
            )
            expected.append(float(cos.mean()))
    dino_curve = record.early.metrics["dino"].mean
    assert dino_curve[:3] == pytest.approx(expected, abs=1e-6)
    assert dino_curve[3] == 1.0 and max(dino_curve[:3]) < 0.999999  # a different small model: below 1 until 100%

    captured = []
    handle = pipe.transformer.register_forward_pre_hook(lambda m, a, kw: captured.append(kw), with_kwargs=True)
    with torch.no_grad():
        _plain_run(pipe, pair, 0)
        handle.remove()
        first = captured[0]  # step 0, conditional call
        v_large = pipe.transformer(**{**first, "return_dict": False})[0].double().flatten()
        v_small = small(**{**first, "return_dict": False})[0].double().flatten()
    distance = 1 - float(v_large @ v_small / (v_large.norm() * v_small.norm()))
    assert record.divergence.per_call["cond"]["cosine"].mean[0] == pytest.approx(distance, rel=1e-6)
    assert record.divergence.per_call["cond"]["l2"].mean[0] == pytest.approx(
        float((v_large - v_small).norm()), rel=1e-6
    )


def _profile_without_timestamp(path):
    data = json.loads(path.read_text())
    data["provenance"].pop("created")
    return data


KILL_POINTS = [
    ("full", "pass1-unit:2"),  # inside pass 1: the second unit, after its recorded run
    ("full", "between-passes"),
    ("full", "pass2-unit:2"),  # inside pass 2: the second unit
    ("full", "finalize"),  # after the decision, before the profile is written
    ("full", "report"),  # after the profile, before the report
    ("sweep", "sweep-leaf:11"),  # inside the second unit's trie walk
]


@pytest.fixture(scope="module")
def uninterrupted(assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("whole")
    out = {}
    for method in ("full", "sweep"):
        config = _config(assets, method=method, segments=3, early_boundary=1 / 3)
        _run(config, root, name=method)
        out[method] = _profile_without_timestamp(root / f"{method}.json")
    return out


@pytest.mark.parametrize(("method", "point"), KILL_POINTS)
def test_a_run_killed_anywhere_resumes_to_the_same_profile(assets, tmp_path, monkeypatch, uninterrupted, method, point):
    from calibrate.methods.base import InjectedFailure

    config = _config(assets, method=method, segments=3, early_boundary=1 / 3)
    monkeypatch.setenv("FLOWBLENDING_FAIL_AT", point)
    with pytest.raises(InjectedFailure, match="injected failure"):
        _run(config, tmp_path, report_dir=tmp_path / "report")
    monkeypatch.delenv("FLOWBLENDING_FAIL_AT")
    resumed = _run(config, tmp_path, report_dir=tmp_path / "report")
    assert _profile_without_timestamp(tmp_path / "p.json") == uninterrupted[method]
    assert (tmp_path / "report" / "report.md").exists()
    if point not in ("finalize", "report"):
        assert "the rest was resumed from the work dir" in resumed.summary


def test_an_old_format_work_dir_is_refused_with_one_line(assets, tmp_path):
    work = tmp_path / "p.work"
    work.mkdir()
    (work / "config.json").write_text(json.dumps({"large": "x"}))  # written before the layout had a version
    with pytest.raises(CalibrationError, match=r"layout 1, this version reads 2\); delete it") as info:
        _run(_config(assets, method="divergence"), tmp_path)
    assert "\n" not in str(info.value)


def test_the_record_round_trips_through_json(assets, tmp_path):
    out = _run(_config(assets), tmp_path)
    data = json.loads(json.dumps(out.record.to_dict(), allow_nan=False))
    again = CalibrationRecord.from_dict(data)
    assert again.to_dict() == data
    assert copy.deepcopy(data) == out.profile.calibration


def test_a_fixed_early_boundary_is_what_the_summary_reports(assets, tmp_path):
    out = _run(_config(assets, method="full", early_boundary=1 / 3, prompts=PROMPTS[:1]), tmp_path)
    assert "early boundary fixed by --early-boundary 0.333" in out.summary and "(step 2)" in out.summary
    assert "Algorithm 1, alpha" not in out.summary


def test_a_fixed_early_boundary_off_the_grid_is_swept_in_pass_1_and_starts_pass_2(assets, tmp_path):
    config = _config(assets, early_boundary=0.5, prompts=PROMPTS[:1])  # step 3; the 1/3 grid has 0, 2, 4
    with CallCounter(assets) as counter:
        out = _run(config, tmp_path)
    assert out.record.early.steps == (0, 2, 3, 4, 6)
    assert out.record.late.steps == (3, 4, 6)
    assert out.profile.schedule[1].start == 0.5
    # large: 6 steps x 2 calls + the last 2 steps of L-S(3)-L(4); small: the shadow + branches 0, 2, 3, 4 minus reuse
    assert counter.calls == {"large": 12 + 4, "small": 12 + 2 * (5 + 3 + 2 + 1)} == dict(out.record.calls.computed)


def test_the_summary_warns_when_the_default_floor_moves_the_knee_of_another_feature_model(
    assets, tmp_path, monkeypatch
):
    import calibrate.methods.full as full

    # the tiny pair's curve is flat at 1.0; make Algorithm 1 say 0 % and the floor move it to the third point
    monkeypatch.setattr(full, "find_early_boundary", lambda x, y, alpha, reference: (0, 0.0, 1.0))
    monkeypatch.setattr(full, "raise_to_floor", lambda x, y, k, floor, margin: 2)
    out = _run(_config(assets, method="full", prompts=PROMPTS[:1]), tmp_path)
    assert out.record.early.knee.x == 0.0 and out.record.early.chosen.x == pytest.approx(200 / 3)
    note = next(n for n in out.record.notes if n.startswith("the similarity floor"))
    assert "moved the early boundary from Algorithm 1's knee at 0% to 66.6667%" in note
    assert f"({_config(assets).feature_model})" in note and "pass --floor" in note
    assert f"  note: {note}" in out.summary
    # an explicit floor is the user's decision: no warning
    again = _run(_config(assets, method="full", prompts=PROMPTS[:1], floor=0.9), tmp_path, name="q")
    assert not [n for n in again.record.notes if n.startswith("the similarity floor")]


def test_the_early_record_says_how_stable_its_boundary_is_over_bootstrap_resamples(assets, tmp_path):
    out = _run(_config(assets, method="full"), tmp_path)
    early = out.record.early
    units = out.record.num_prompts * len(out.record.seeds)
    # the tiny pair's similarity is 1.0 everywhere: every resample chooses the same boundary
    assert early.stability[early.chosen.index] == 1.0 and sum(early.stability) == pytest.approx(1.0)
    assert early.stability_draws == 200
    text = f"early boundary stability: {early.chosen.x:g}% in 100% of 200 bootstrap resamples of the {units} unit(s)"
    assert text in out.summary and "not stable" not in out.summary
    assert out.profile.calibration["early"]["stability"] == {"draws": 200, "share": list(early.stability)}
