"""Safe loading: safetensors only by default, pickle-only models refused with one line unless allow_pickle=True."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

import flowblending
from flowblending.cli import cli
from flowblending.errors import FlowBlendingError, ModelNotAvailableError
from flowblending.loading import PickleWeightsError, _not_available, load_transformer
from flowblending.profile import ModelSpec


def _pickle_copy(src, dst):
    """A copy of a saved diffusers transformer with its weights as pickle (``.bin``) only."""
    from diffusers import WanTransformer3DModel

    WanTransformer3DModel.from_pretrained(src).save_pretrained(dst, safe_serialization=False)
    assert sorted(p.name for p in dst.iterdir()) == ["config.json", "diffusion_pytorch_model.bin"]
    return dst


def _text_encoder_to_pickle(directory):
    """Rewrite a transformers model folder with ``pytorch_model.bin`` only (transformers 5 saves safetensors)."""
    from safetensors.torch import load_file

    weights = directory / "model.safetensors"
    torch.save(load_file(weights), directory / "pytorch_model.bin")
    weights.unlink()


def _profile_with(wan_profile_path, path, role, location):
    data = json.loads(wan_profile_path.read_text())
    data["models"][role]["id"] = str(location)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def pickled(tiny_wan, wan_profile_path, tmp_path_factory):
    """Profiles whose small model, base transformer or base text encoder has only pickle weights."""
    root = tmp_path_factory.mktemp("pickled")
    small = _pickle_copy(tiny_wan.small_dir, root / "small")
    base = root / "pipeline"
    shutil.copytree(tiny_wan.pipeline_dir, base)
    shutil.rmtree(base / "transformer")
    _pickle_copy(tiny_wan.pipeline_dir / "transformer", base / "transformer")
    text = root / "pipeline_text"
    shutil.copytree(tiny_wan.pipeline_dir, text)
    _text_encoder_to_pickle(text / "text_encoder")
    return {
        "small": _profile_with(wan_profile_path, root / "small.json", "small", small),
        "transformer": _profile_with(wan_profile_path, root / "base.json", "large", base),
        "text_encoder": _profile_with(wan_profile_path, root / "text.json", "large", text),
    }


def _assert_one_line(exc: BaseException, *needles: str) -> None:
    message = str(exc)
    assert "\n" not in message
    assert isinstance(exc, PickleWeightsError) and isinstance(exc, FlowBlendingError)
    for needle in ("only pickle weights", "--allow-pickle", "allow_pickle=True", *needles):
        assert needle in message, message


def test_load_transformer_refuses_pickle_only_and_loads_it_when_allowed(pickled, tiny_wan):
    from diffusers import WanTransformer3DModel

    with pytest.raises(PickleWeightsError) as info:
        load_transformer(pickled["small"], "small")
    _assert_one_line(info.value, "'small' model", "diffusion_pytorch_model.bin")
    model = load_transformer(pickled["small"], "small", allow_pickle=True)
    reference = WanTransformer3DModel.from_pretrained(tiny_wan.small_dir)
    expected = reference.state_dict()
    assert all(torch.equal(value, expected[name]) for name, value in model.state_dict().items())


@pytest.mark.parametrize(
    ("profile", "role", "file"),
    [
        ("small", "'small' model", "diffusion_pytorch_model.bin"),
        ("transformer", "'large' model", "transformer/diffusion_pytorch_model.bin"),
        ("text_encoder", "'large' model", "text_encoder/pytorch_model.bin"),
    ],
)
def test_load_pipeline_refuses_any_pickle_only_component(pickled, profile, role, file):
    with pytest.raises(PickleWeightsError) as info:
        flowblending.load_pipeline(pickled[profile])
    _assert_one_line(info.value, role, f"({file})")


def test_load_pipeline_with_allow_pickle_loads_pickle_components(pickled):
    pipe = flowblending.load_pipeline(pickled["transformer"], allow_pickle=True)
    assert isinstance(pipe.transformer, flowblending.RoutingTransformer)
    pipe = flowblending.load_pipeline(pickled["small"], allow_pickle=True)
    assert set(pipe.transformer.roles) == {"large", "small"}


def test_safetensors_models_are_loaded_with_use_safetensors(wan_profile_path, monkeypatch):
    from diffusers import WanPipeline, WanTransformer3DModel

    seen = []
    for cls in (WanPipeline, WanTransformer3DModel):
        original = cls.from_pretrained.__func__

        def spy(klass, *args, _original=original, **kwargs):
            seen.append((klass.__name__, kwargs.get("use_safetensors"), "trust_remote_code" in kwargs))
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    pipe = flowblending.load_pipeline(wan_profile_path)
    assert isinstance(pipe.transformer, flowblending.RoutingTransformer)
    assert ("WanPipeline", True, False) in seen and ("WanTransformer3DModel", True, False) in seen
    assert all(use is True and not remote for _, use, remote in seen)


@pytest.mark.parametrize("key", ["use_safetensors", "trust_remote_code"])
def test_load_pipeline_refuses_overriding_the_safety_kwargs(wan_profile_path, key):
    with pytest.raises(FlowBlendingError, match=f"does not take {key}=True"):
        flowblending.load_pipeline(wan_profile_path, **{key: True})
    with pytest.raises(FlowBlendingError, match="allow_pickle must be True or False, got 'yes'"):
        flowblending.load_pipeline(wan_profile_path, allow_pickle="yes")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (  # diffusers' pipeline download from a Hub repository (its file listing)
            "Could not find the necessary `safetensors` weights in {'model_index.json', "
            "'transformer/diffusion_pytorch_model.bin', 'transformer/config.json'} (variant=None)",
            "only pickle weights (transformer/diffusion_pytorch_model.bin)",
        ),
        (  # a model from a Hub repository without the safetensors file
            "org/model does not appear to have a file named diffusion_pytorch_model.safetensors.",
            "no safetensors weights, only pickle ones",
        ),
    ],
)
def test_hub_messages_map_to_the_pickle_refusal(message, expected):
    error = _not_available(ModelSpec("org/model", "abc123"), "small", OSError(message))
    assert isinstance(error, PickleWeightsError) and "\n" not in str(error)
    for needle in ("'small' model 'org/model' (revision abc123)", expected, "--allow-pickle", "allow_pickle=True"):
        assert needle in str(error)


def test_other_load_errors_are_not_called_pickle(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    no_weights = OSError(f"Error no file named diffusion_pytorch_model.safetensors found in directory {empty}.")
    for exc in (no_weights, OSError("org/model does not appear to have a file named config.json."), None):
        error = _not_available(ModelSpec(str(empty)), "small", exc)
        assert isinstance(error, ModelNotAvailableError) and not isinstance(error, PickleWeightsError)


def test_cli_run_refuses_pickle_only_with_one_line_and_dry_run_is_unaffected(pickled, tmp_path):
    profile = str(pickled["small"])
    dry = CliRunner().invoke(cli, ["run", "--profile", profile, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    args = ["run", "--profile", profile, "--prompt", "a red circle", "--steps", "2", "--device", "cpu"]
    refused = CliRunner().invoke(cli, [*args, "--output", str(tmp_path / "refused.mp4")])
    assert refused.exit_code == 2, refused.output
    errors = [line for line in refused.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "only pickle weights" in errors[0] and "--allow-pickle" in errors[0]
    assert "Traceback" not in refused.output and not (tmp_path / "refused.mp4").exists()
    allowed = CliRunner().invoke(cli, [*args, "--output", str(tmp_path / "ok.mp4"), "--allow-pickle"])
    assert allowed.exit_code == 0, allowed.output
    assert (tmp_path / "ok.mp4").exists()


def test_calibrator_load_pair_refuses_pickle_only(tiny_wan, pickled, tmp_path):
    from calibrate.config import CalibrationConfig
    from calibrate.runner import load_pair

    small = json.loads(pickled["small"].read_text())["models"]["small"]["id"]
    config = CalibrationConfig(large=str(tiny_wan.pipeline_dir), small=small, prompts=("a red circle",))
    with pytest.raises(PickleWeightsError) as info:
        load_pair(config, "cpu", torch.float32)
    _assert_one_line(info.value, "'small' model")
