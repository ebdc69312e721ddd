"""The family table: what `flowblending models` prints, docs/models.md, and the pipelines refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import flowblending
from flowblending.cli import cli
from flowblending.families import (
    FAMILIES,
    Family,
    UnsupportedPipelineError,
    check_pipeline,
    family_of,
    family_of_transformer,
    markdown_table,
)

ROOT = Path(__file__).resolve().parent.parent


def test_models_lists_every_family_and_shows_one_in_full():
    result = CliRunner().invoke(cli, ["models"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines[: len(FAMILIES)]] == list(FAMILIES)
    one = CliRunner().invoke(cli, ["models", "wan22"])
    assert one.exit_code == 0 and "transformer_2" in one.output and "tests/test_experts.py" in one.output
    data = json.loads(CliRunner().invoke(cli, ["models", "--format", "json"]).output)
    assert [d["key"] for d in data] == list(FAMILIES)
    bad = CliRunner().invoke(cli, ["models", "wan3"])
    assert bad.exit_code == 2 and "unknown family 'wan3'" in bad.output


def test_docs_models_md_shows_the_table_as_the_code_has_it():
    text = (ROOT / "docs" / "models.md").read_text()
    start, end = "<!-- families table: flowblending models --format markdown -->\n", "<!-- end of families table -->"
    assert start in text and end in text
    assert text.split(start, 1)[1].split(end, 1)[0].strip() == markdown_table().strip()


@pytest.mark.parametrize("family", [f for f in FAMILIES.values() if f.status == "tested"], ids=lambda f: f.key)
def test_a_tested_family_names_existing_test_files(family):
    assert family.tests
    for path in family.tests:
        assert (ROOT / path).is_file(), f"{family.key} names {path}, which does not exist"


def test_a_status_note_says_what_the_status_covers():
    assert family_of("WanVACEPipeline").key == "wan21-vace" and family_of("WanPipeline").key == "wan21"
    rows = {row.split(" | ")[0].lstrip("| "): row for row in markdown_table().splitlines()[2:]}
    cosmos = FAMILIES["cosmos-predict2"]
    assert cosmos.status == "tested" and "tests/test_cosmos.py" in cosmos.tests
    assert "| tested (tiny, with stand-ins for the guardrail and torchvision's resize) |" in rows[cosmos.title]
    vace = FAMILIES["wan21-vace"]
    assert vace.status == "tested" and "other counts per role (as the 14B's 8 vs the 1.3B's 15" in rows[vace.title]
    assert all(f"| {f.status} |" in rows[f.title] for f in FAMILIES.values() if not f.status_note and not f.refusal)


def test_refused_pipelines_are_refused_in_one_line_everywhere():
    assert family_of("CogVideoXPipeline").key == "cogvideox"
    assert family_of("SkyReelsV2DiffusionForcingPipeline").key == "skyreels-v2-df"
    assert family_of("WanPipeline").key == "wan21" and family_of("FluxPipeline") is None
    check_pipeline("WanPipeline")  # supported: no error
    check_pipeline("FluxPipeline")  # unknown: not refused
    with pytest.raises(UnsupportedPipelineError, match=r"1\.15 vs 0\.7") as info:
        check_pipeline("CogVideoXPipeline")
    assert "\n" not in str(info.value)
    with pytest.raises(UnsupportedPipelineError, match=r"one scheduler per frame.*use SkyReelsV2Pipeline"):
        check_pipeline("SkyReelsV2DiffusionForcingPipeline")
    fake = type("CogVideoXPipeline", (), {"transformer": object()})()
    with pytest.raises(UnsupportedPipelineError, match="CogVideoXPipeline cannot be blended"):
        flowblending.apply_profile(fake, "wan21")


def test_load_pipeline_refuses_before_loading_anything(tmp_path):
    from flowblending.profile import load_profile, save_profile

    profile = load_profile("wan21")
    data = profile.to_dict()
    data["pipeline"]["class"] = "SkyReelsV2DiffusionForcingPipeline"
    data["models"]["large"]["id"] = str(tmp_path / "does-not-exist")  # never reached: refused first
    path = save_profile(data, tmp_path / "df.json")
    with pytest.raises(UnsupportedPipelineError, match="names pipeline SkyReelsV2DiffusionForcingPipeline"):
        flowblending.load_pipeline(path)


def test_the_calibrator_refuses_before_loading_weights(tmp_path):
    from calibrate.config import CalibrationConfig
    from calibrate.runner import load_pair

    repo = tmp_path / "cogvideox"
    repo.mkdir()
    (repo / "model_index.json").write_text(json.dumps({"_class_name": "CogVideoXPipeline"}))
    config = CalibrationConfig(large=str(repo), small=str(repo), prompts=("a cat",), local_files_only=True)
    with pytest.raises(UnsupportedPipelineError, match="is a CogVideoXPipeline cannot be blended"):
        load_pair(config, "cpu", __import__("torch").float32)


def test_the_table_holds_the_cfg_pattern_the_router_reads():
    for family in FAMILIES.values():
        order = ("cond", "uncond") if family.cfg_call == "separate" else ("uncond", "cond")
        assert family.cfg_order == order, family.key
        assert family.cfg_formula.startswith(f"{family.cfg_anchor} + g (cond - uncond)"), family.key
    anchors = {key: f.cfg_anchor for key, f in FAMILIES.items()}
    assert {key for key, anchor in anchors.items() if anchor == "cond"} == {"cosmos-predict2"}
    fields = {**vars(FAMILIES["wan21"]), "key": "bad"}
    with pytest.raises(ValueError, match="is not cond-anchored"):
        Family(**{**fields, "cfg_anchor": "cond"})
    with pytest.raises(ValueError, match="batched CFG as \\[uncond, cond\\]"):
        Family(**{**fields, "cfg_call": "batched"})
    with pytest.raises(ValueError, match="'cond' and 'uncond' once"):
        Family(**{**fields, "cfg_order": ("cond", "cond")})


def test_the_vace_layer_input_is_in_the_table_and_shown():
    assert family_of_transformer("WanVACETransformer3DModel").key == "wan21-vace"
    assert family_of_transformer("WanTransformer3DModel").key == "wan21"
    assert family_of_transformer("CogVideoXTransformer3DModel") is None  # refused family
    assert family_of_transformer("FluxTransformer2DModel") is None
    assert [f.key for f in FAMILIES.values() if f.layer_input is not None] == ["wan21-vace"]
    one = CliRunner().invoke(cli, ["models", "wan21-vace"])
    assert one.exit_code == 0, one.output
    assert "layer_input: control_hidden_states_scale: one entry per vace_layers (from conditioning_scale)" in one.output
    assert "cfg_order: cond; uncond" in one.output
    data = json.loads(CliRunner().invoke(cli, ["models", "--format", "json", "wan21-vace"]).output)
    assert data[0]["layer_input"]["config_field"] == "vace_layers" and data[0]["cfg_anchor"] == "uncond"
