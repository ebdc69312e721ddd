"""load_pipeline / apply_profile: compatibility checks, warnings, offline errors, and `run` end to end."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from click.testing import CliRunner

import flowblending
from flowblending.cli import cli
from flowblending.errors import FlowBlendingError, IncompatibleModelsError, ModelNotAvailableError
from flowblending.loading import check_compatible
from flowblending.profile import load_profile


def test_incompatible_pair_names_the_field(tiny_wan, tiny_ltx):
    from diffusers import LTXVideoTransformer3DModel, WanTransformer3DModel

    wan = WanTransformer3DModel.from_pretrained(tiny_wan.pipeline_dir, subfolder="transformer")
    other = WanTransformer3DModel.from_config({**wan.config, "text_dim": wan.config.text_dim * 2})
    with pytest.raises(IncompatibleModelsError, match="config field 'text_dim'"):
        check_compatible(wan, other)
    ltx = LTXVideoTransformer3DModel.from_pretrained(tiny_ltx.small_dir)
    with pytest.raises(IncompatibleModelsError, match="LTXVideoTransformer3DModel"):
        check_compatible(wan, ltx)


def test_apply_profile_to_an_existing_pipeline_and_other_model_ids_warn(tiny_wan, wan_profile_path, tmp_path):
    from diffusers import DiffusionPipeline, WanTransformer3DModel

    copy = tmp_path / "finetune"
    WanTransformer3DModel.from_pretrained(tiny_wan.small_dir).save_pretrained(copy)
    pipe = DiffusionPipeline.from_pretrained(tiny_wan.pipeline_dir)
    small = WanTransformer3DModel.from_pretrained(copy)
    with pytest.warns(UserWarning, match="calibrated on"):
        flowblending.apply_profile(pipe, str(wan_profile_path), transformers={"small": small})
    assert isinstance(pipe.transformer, flowblending.RoutingTransformer)
    # applying again (another profile or schedule) unwraps the installed router instead of nesting it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flowblending.apply_profile(pipe, str(wan_profile_path))
    assert isinstance(pipe.transformer.roles["large"], WanTransformer3DModel)


def test_missing_role_and_unknown_role_are_clear(tiny_wan, wan_profile_path):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(tiny_wan.pipeline_dir)
    with pytest.raises(FlowBlendingError, match="no transformer was given for them"):
        flowblending.apply_profile(pipe, wan_profile_path)
    with pytest.raises(FlowBlendingError, match="does not define"):
        flowblending.apply_profile(
            pipe, wan_profile_path, transformers={"small": pipe.transformer, "huge": pipe.transformer}
        )


def test_a_local_dir_without_a_model_is_one_message(wan_profile_path, tmp_path):
    data = json.loads(wan_profile_path.read_text())
    data["models"]["small"]["id"] = str(tmp_path / "nothing-here")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    with pytest.raises(ModelNotAvailableError, match="cannot load the 'small' model"):
        flowblending.load_pipeline(broken)


def test_run_writes_one_video_per_prompt_and_skips_existing(wan_profile_path, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red circle\n# skip me\na blue square\n")
    out = tmp_path / "videos"
    args = ["run", "--profile", str(wan_profile_path), "--prompts", str(prompts)]
    args += ["--output-dir", str(out), "--steps", "4"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    videos = sorted(p.name for p in out.iterdir())
    assert videos == ["0000-a-red-circle-0.mp4", "0001-a-blue-square-0.mp4"]
    assert "outside the calibration setting: num_inference_steps 4 (calibrated 10)" in first.output
    assert first.output.count("wrote ") == 2
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0 and "skipping 2 video(s)" in second.output and "wrote " not in second.output


def test_run_reports_steps_calls_and_flops(wan_profile_path, tmp_path):
    gif = tmp_path / "v.gif"
    args = ["run", "--profile", str(wan_profile_path), "--prompt", "a red circle"]
    result = CliRunner().invoke(cli, [*args, "--output", str(gif), "--schedule", "LSL"])
    assert result.exit_code == 0, result.output
    assert "steps: large 6, small 4 (transformer calls: large 12, small 8)" in result.output
    profile = load_profile(wan_profile_path)
    saved = 1 - profile.cost.flops_total / profile.cost.flops_large_only
    assert f"FLOPs saved vs large-only: {saved:.1%}" in result.output
    from PIL import Image

    with Image.open(gif) as img:
        assert img.n_frames == 9


def test_generate_api_returns_frames_and_report(wan_profile_path):
    from flowblending.generate import generate

    profile = load_profile(wan_profile_path)
    pipe = flowblending.load_pipeline(profile, torch_dtype=torch.float32)
    frames, report = generate(pipe, profile, "a red circle", seed=3)
    assert frames.shape[0] == 9 and report.steps_per_role == {"large": 6, "small": 4}
    assert report.setting_differences == ()
