"""``--compare``: a given schedule (the paper's LDL with a third "distilled" role running its own steps) scored
against large-only and the calibrated L-S-L on a tiny LTXConditionPipeline, through the runtime's router; values
against hand counts and independent runs, the checks made before any work, and resuming after a kill."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from calibrate.config import CalibrationConfig, CalibrationError
from calibrate.record import CalibrationRecord, CompareRecord
from calibrate.runner import calibrate
from flowblending.profile import load_profile, save_profile
from flowblending.schedule import Segment, pattern_of
from flowblending.testing import (
    save_reference_frames,
    save_tiny_dinov2,
    save_tiny_ldl_profile,
    save_tiny_ltx_pair,
    save_tiny_ltx_single_file,
)

PROMPTS = ("a red circle moving left",)
#: Large-only written as two segments: the same frames as large-only, but a schedule of its own (its own work file)
ALL_LARGE = (Segment("large", 0.0, 0.5), Segment("large", 0.5, 1.0))


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny text-to-video LTXConditionPipeline pair, a distilled transformer in one file, the paper's LDL and an
    all-large profile at 40 base steps, a tiny DINOv2 and reference frames."""
    root = tmp_path_factory.mktemp("compare")
    pair = save_tiny_ltx_pair(root / "pair", condition=True)
    distilled = save_tiny_ltx_single_file(root / "distilled")
    return {
        "pair": pair,
        "distilled": distilled,
        "ldl": save_tiny_ldl_profile(pair, distilled, root / "tiny-ldl.json"),
        "lll": save_tiny_ldl_profile(pair, distilled, root / "tiny-lll.json", schedule=ALL_LARGE, name="tiny-lll"),
        "dino": save_tiny_dinov2(root / "dino"),
        "reference": save_reference_frames(root / "reference", count=40, size=(32, 32)),
    }


def _config(assets, **kw):
    pair = assets["pair"]
    kwargs = dict(
        large=str(pair.pipeline_dir),
        small=str(pair.small_dir),
        prompts=PROMPTS,
        seeds=(0, 1),
        reference=str(assets["reference"]),
        num_inference_steps=40,
        guidance_scale=3.0,
        height=32,
        width=32,
        num_frames=9,
        max_sequence_length=16,
        feature_model=str(assets["dino"]),
        early_grid=0.5,
        late_grid=0.25,
        early_boundary=0.5,  # step 20 (on the early grid): the late sweep runs from there whatever the curve says
        samples=0,
        compare=(str(assets["ldl"]), str(assets["lll"])),
    )
    kwargs.update(kw)
    return CalibrationConfig(**kwargs)


def _run(config, tmp_path, name="p", **kw):
    return calibrate(config, output=tmp_path / f"{name}.json", work_dir=tmp_path / f"{name}.work", progress=False,
                     log=lambda s: None, **kw)  # fmt: skip


def _without_timestamp(path):
    data = json.loads(path.read_text())
    data["provenance"].pop("created")
    return data


class WidthCounter:
    """Counts forward calls and batch rows of the LTX transformers from outside (a global module hook), by width:
    32 is the large model, 16 the small and the distilled one. Weightless meta-device copies (FLOP counting) are
    not counted."""

    def __init__(self):
        from diffusers import LTXVideoTransformer3DModel

        self.cls = LTXVideoTransformer3DModel
        self.calls = {32: 0, 16: 0}
        self.rows = {32: 0, 16: 0}

    def __enter__(self):
        def hook(module, args, kwargs, output):
            if isinstance(module, self.cls) and not next(module.parameters()).is_meta:
                width = module.config.num_attention_heads * module.config.attention_head_dim
                self.calls[width] += 1
                self.rows[width] += kwargs["hidden_states"].shape[0]

        self.handle = torch.nn.modules.module.register_module_forward_hook(hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


@pytest.fixture(scope="module")
def full(assets, tmp_path_factory):
    """The full method with both profiles compared, counted from outside, with a report."""
    root = tmp_path_factory.mktemp("full")
    with WidthCounter() as counter:
        out = _run(_config(assets), root, report_dir=root / "report")
    return {"out": out, "root": root, "counter": counter}


def _rows(record):
    return {row.name: row for row in record.compare.rows}


def test_the_three_kinds_of_rows_score_as_the_calibrator_scores_its_candidates(assets, full):
    record = full["out"].record
    compare = record.compare
    assert [(r.name, r.kind) for r in compare.rows] == [
        ("large-only", "large-only"),
        ("calibrated", "calibrated"),
        ("tiny-ldl", "compared"),
        ("tiny-lll", "compared"),
    ]
    assert (compare.units, compare.num_steps, compare.feature) == (2, 40, str(assets["dino"]))
    rows = _rows(record)
    lll, calibrated, ldl, all_large = rows["large-only"], rows["calibrated"], rows["tiny-ldl"], rows["tiny-lll"]
    # large-only comes from the full method's own pass 1 (its FID features are the DINO features): nothing ran
    assert lll.reused and lll.similarity == pytest.approx(1.0, abs=1e-12) and lll.similarity_std == pytest.approx(0)
    assert (lll.nfe, dict(lll.steps), dict(lll.calls), lll.flops_ratio) == (40, {"large": 40}, {"large": 40}, 1.0)
    # a compared schedule that is large-only, generated again through the runtime's router: the same frames
    assert not all_large.reused and all_large.pattern == "LL"
    assert all_large.similarity == pytest.approx(1.0, abs=1e-12)
    assert all_large.late == pytest.approx(lll.late, rel=1e-12) and all_large.others == pytest.approx(lll.others)
    assert (all_large.nfe, dict(all_large.calls), all_large.flops_ratio) == (40, {"large": 40}, 1.0)
    # LDL by hand: 15 + 4 + 5 = 24 steps of 40; LTX makes one batched [uncond, cond] call per step (CFG: 2 rows), and
    # the distilled model at guidance 1 runs on the cond half (1 row), its uncond half skipped
    assert (ldl.pattern, ldl.nfe) == ("LDL", 24)
    assert dict(ldl.steps) == {"large": 20, "distilled": 4}
    assert dict(ldl.calls) == {"large": 20, "distilled": 4} and dict(ldl.uncond_skipped) == {"distilled": 4}
    assert ldl.flops_ratio == pytest.approx(load_profile(assets["ldl"]).cost.flops_ratio, rel=1e-12)
    assert ldl.source == str(assets["ldl"]) and ldl.schedule[1]["steps"] == 4
    assert 0 < ldl.similarity < 1 and ldl.late is not None
    # the calibrated row is the profile's schedule; its late metric is the late curve's value at the chosen point
    profile = full["out"].profile
    assert calibrated.pattern == pattern_of(profile.schedule)
    assert list(calibrated.schedule) == [s.to_dict() for s in profile.schedule]
    assert calibrated.flops_ratio == pytest.approx(profile.cost.flops_ratio, rel=1e-12)
    late = record.late
    assert compare.metric == late.metric == "kid" and compare.subset_size == late.subset_size == 18  # 2 x 9 frames
    assert calibrated.late == pytest.approx(late.values[late.chosen.index], rel=1e-9)
    assert lll.late == pytest.approx(late.values[0], rel=1e-9)  # x at the early boundary: large-only
    assert calibrated.nfe == 40 and sum(calibrated.calls.values()) == 40 and 0 < calibrated.similarity < 1


def test_calls_counted_from_outside_are_the_methods_and_the_comparisons(full):
    record, counter = full["out"].record, full["counter"]
    rows, computed = _rows(record), record.calls.computed
    compare_calls = record.compare.calls
    # computed by the comparison: every row that was not reused (large-only was), for 2 units
    assert not rows["calibrated"].reused and rows["large-only"].reused
    expected = {"large": 2 * (rows["calibrated"].calls["large"] + 20 + 40), "distilled": 2 * 4}
    expected["small"] = 2 * rows["calibrated"].calls.get("small", 0)
    assert dict(compare_calls) == {r: n for r, n in sorted(expected.items()) if n}
    assert counter.calls == {32: computed["large"] + compare_calls["large"],
                             16: computed["small"] + compare_calls["small"] + compare_calls["distilled"]}  # fmt: skip
    # rows: every large call is a batched [uncond, cond] pair; the distilled calls are one row (the cond half)
    assert counter.rows[32] == 2 * counter.calls[32]
    assert counter.rows[16] == 2 * (computed["small"] + compare_calls["small"]) + compare_calls["distilled"]


def test_the_record_round_trips_and_the_profile_validates(full):
    out = full["out"]
    data = json.loads(json.dumps(out.record.to_dict(), allow_nan=False))
    assert CalibrationRecord.from_dict(data) == out.record
    assert CompareRecord.from_dict(data["compare"]) == out.record.compare
    saved = load_profile(full["root"] / "p.json")  # validated against the schema
    assert saved.calibration["compare"] == data["compare"]


def test_compare_does_not_change_the_decision_and_merge_rebuilds_it(assets, full, tmp_path):
    """A copy of the work dir without --compare (nothing is recomputed) writes the same profile, less the block;
    --merge of the work dir rebuilds the same block without a model."""
    from calibrate.finalize import merge

    work = shutil.copytree(full["root"] / "p.work", tmp_path / "p.work")
    merged = merge(work, output=tmp_path / "merged.json", log=lambda s: None)
    assert merged.record.compare == full["out"].record.compare
    plain = _run(_config(assets, compare=()), tmp_path, name="p")
    assert plain.record.compare is None and "compare" not in plain.profile.calibration
    with_compare = _without_timestamp(full["root"] / "p.json")
    with_compare["calibration"].pop("compare")
    assert _without_timestamp(tmp_path / "p.json") == with_compare


def test_the_report_has_the_table_and_the_chart(full):
    report = full["root"] / "report"
    text = (report / "report.md").read_text()
    assert "## Comparing given schedules" in text and "![similarity and KID" in text
    assert (report / "compare.png").stat().st_size > 0
    line = next(line for line in text.splitlines() if line.startswith("| tiny-ldl |"))
    assert "| LDL | 24 |" in line and "large 20, distilled 4" in line
    assert "compared on 2 unit(s) at 40 base steps" in full["out"].summary


def test_a_run_killed_in_the_compare_stage_resumes_to_the_same_record(assets, full, tmp_path, monkeypatch):
    from calibrate.methods.base import InjectedFailure

    config = _config(assets)
    monkeypatch.setenv("FLOWBLENDING_FAIL_AT", "compare-row:6")  # the second unit, after its calibrated row
    with pytest.raises(InjectedFailure, match="compare-row"):
        _run(config, tmp_path)
    monkeypatch.delenv("FLOWBLENDING_FAIL_AT")
    done = list((tmp_path / "p.work" / "units").glob("*/compare-*.pt"))
    assert len(done) == 4 + 2  # every row of the first unit, large-only and calibrated of the second
    resumed = _run(config, tmp_path)
    assert resumed.record == full["out"].record
    assert _without_timestamp(tmp_path / "p.json") == _without_timestamp(full["root"] / "p.json")
    assert "the rest was resumed from the work dir" in resumed.summary


def test_without_a_stored_large_only_the_divergence_method_generates_it(assets, tmp_path):
    config = _config(assets, method="divergence", reference=None, seeds=(0,), compare=(str(assets["lll"]),))
    record = _run(config, tmp_path).record
    rows = _rows(record)
    assert not rows["large-only"].reused and dict(rows["large-only"].calls) == {"large": 40}
    assert rows["large-only"].similarity == pytest.approx(1.0, abs=1e-12)
    assert rows["tiny-lll"].similarity == pytest.approx(1.0, abs=1e-12)
    assert record.compare.metric is None and rows["tiny-lll"].late is None
    assert record.early is None and record.feature_model is None  # the method itself still loads no features


# --- checks before any work -------------------------------------------------------------------------------------


def _save_changed(path, target, change):
    data = load_profile(path).to_dict()
    change(data)
    return save_profile(data, target)


def test_profiles_are_checked_before_any_weight_loads(assets, tmp_path, monkeypatch):
    import calibrate.runner as runner

    def refuse(*args, **kwargs):
        raise AssertionError("a --compare profile must be checked before the pair loads")

    monkeypatch.setattr(runner, "load_pair", refuse)
    other = _save_changed(assets["ldl"], tmp_path / "other.json", lambda d: d["models"]["large"].update(id="org/x"))
    with pytest.raises(CalibrationError) as info:
        _run(_config(assets, compare=(str(other),)), tmp_path)
    message = str(info.value)
    assert f"--compare {str(other)!r}: its base role's models.large.id is 'org/x'" in message
    assert f"but --large is {str(assets['pair'].pipeline_dir)!r}" in message and "\n" not in message

    def to_ltx(data):
        data["pipeline"]["class"] = "LTXPipeline"

    ltx = _save_changed(assets["ldl"], tmp_path / "ltx.json", to_ltx)
    with pytest.raises(CalibrationError, match=r"its pipeline.class is 'LTXPipeline' but --large .* is a "
                       r"LTXConditionPipeline; compare a profile of the calibrated pipeline"):  # fmt: skip
        _run(_config(assets, compare=(str(ltx),)), tmp_path)
    with pytest.raises(CalibrationError, match=r"--compare 'nope.json' is not a usable profile: .*does not exist"):
        _run(_config(assets, compare=("nope.json",)), tmp_path)
    with pytest.raises(CalibrationError, match=r"--compare 'a' is given 2 times; give each profile once"):
        _config(assets, compare=("a", "a"))


def test_roles_are_loaded_as_the_runtime_loads_them_and_checked_before_the_method_runs(assets, tiny_wan, tmp_path):
    def to_wan(data):  # the distilled role becomes the tiny Wan pair's small transformer
        spec = data["models"]["distilled"]
        spec.update(id=str(tiny_wan.small_dir), subfolder=None, transformer_class="WanTransformer3DModel")
        del spec["file"], spec["config"]

    wan = _save_changed(assets["ldl"], tmp_path / "wan.json", to_wan)
    with pytest.raises(CalibrationError) as info:
        _run(_config(assets, compare=(str(wan),)), tmp_path)
    message = str(info.value)
    assert f"--compare {str(wan)!r}, role 'distilled' (models.distilled): transformer of role 'distilled' is a " in (
        message
    )
    assert "WanTransformer3DModel but the 'large' pipeline uses LTXVideoTransformer3DModel" in message
    pickle = _save_changed(assets["ldl"], tmp_path / "pickle.json", lambda d: d["models"]["distilled"].update(
        file="tiny.ckpt"))  # fmt: skip
    with pytest.raises(CalibrationError, match=r"role 'distilled' .*not a \.safetensors file.*--allow-pickle"):
        _run(_config(assets, compare=(str(pickle),)), tmp_path)
    with pytest.raises(CalibrationError, match=r"cannot run at the calibration's 6 steps: \$\.schedule\[1\]\.steps"):
        _run(_config(assets, num_inference_steps=6), tmp_path)
    assert not list((tmp_path / "p.work" / "units").glob("*/*"))  # the method computed nothing


def test_the_cli_takes_repeated_compare_options(assets, tmp_path):
    from flowblending.cli import cli

    help_text = CliRunner().invoke(cli, ["calibrate", "--help"]).output
    assert "--compare PROFILE" in help_text and "the method's decision does not change" in " ".join(help_text.split())
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(PROMPTS[0] + "\n")
    pair = assets["pair"]
    args = ["calibrate", "--large", str(pair.pipeline_dir), "--small", str(pair.small_dir), "--prompts", str(prompts),
            "--steps", "8", "--height", "32", "--width", "32", "--num-frames", "9", "--max-sequence-length", "16",
            "--method", "divergence", "--feature-model", str(assets["dino"]), "--compare", str(assets["lll"]),
            "--compare", str(assets["ldl"]), "--output", str(tmp_path / "cli.json")]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "cli.json").read_text())["calibration"]["compare"]["rows"]
    assert [(r["name"], r["nfe"]) for r in rows] == [("large-only", 8), ("calibrated", 8), ("tiny-lll", 8),
                                                     ("tiny-ldl", 3 + 4 + 1)]  # fmt: skip
