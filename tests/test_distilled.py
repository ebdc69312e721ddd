"""A distilled role with its own steps (paper section 6(b), Table 3: LDL): the own-steps rule, format version 2, the
composed run on a tiny LTXConditionPipeline with a third "distilled" role loaded from a single file, guidance 1
without unconditional calls, the cost model and the shipped ltxv-ldl profile."""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel
from diffusers.pipelines.ltx.pipeline_ltx_condition import linear_quadratic_schedule

import flowblending
from flowblending.cli import cli
from flowblending.compose import run_schedule, sigmas_to_give, step_sigmas
from flowblending.cost import schedule_cost
from flowblending.errors import FlowBlendingError, ProfileError
from flowblending.families import UnsupportedPipelineError, schedule_argument
from flowblending.generate import composed_call, generate
from flowblending.loading import PickleWeightsError
from flowblending.profile import Profile, load_profile, save_profile
from flowblending.schedule import (
    Segment,
    merge_segments,
    own_step_starts,
    plan_steps,
    run_plan,
    run_roles,
    segments_from_pattern,
)
from flowblending.testing import (
    cond_half,
    paper_ldl,
    save_tiny_ldl_profile,
    save_tiny_ltx_pair,
    save_tiny_ltx_single_file,
    save_tiny_profile,
)

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red circle moving left"
TFLOP = 1e12

#: LTX-Video's official 8-step distilled sigmas: every 5th sigma of the 40-step linear-quadratic schedule.
DISTILLED_SIGMAS = [1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875]

#: The paper's LDL on 40 base steps: large [0, 15), distilled 4 own steps over [15, 35) without CFG, large [35, 40).
LDL = paper_ldl()


# --- the rule --------------------------------------------------------------------------------------------------
def test_the_own_steps_rule_on_lq40_gives_the_official_distilled_sigmas():
    lq = [float(s) for s in linear_quadratic_schedule(40)]
    assert own_step_starts(15, 35, 4) == (15, 20, 25, 30)
    plan = run_plan(LDL, 40)
    assert len(plan) == 24  # NFE 24 = 15 + 4 + 5 (Table 3)
    middle = [s.base_step for s in plan if s.segment == 1]
    assert middle == [15, 20, 25, 30]
    assert [round(lq[i], 6) for i in middle] == [0.98125, 0.975, 0.909375, 0.725] == DISTILLED_SIGMAS[3:7]
    assert [s.base_step for s in plan] == [*range(15), 15, 20, 25, 30, *range(35, 40)]
    # DDD: one distilled segment of 8 own steps over the whole process gives all 8 official sigmas
    ddd = run_plan((Segment("distilled", 0.0, 1.0, steps=8),), 40)
    assert [s.base_step for s in ddd] == [0, 5, 10, 15, 20, 25, 30, 35]
    assert [round(lq[s.base_step], 6) for s in ddd] == DISTILLED_SIGMAS
    # by hand: a + floor(j (b - a) / k)
    assert own_step_starts(3, 10, 3) == (3, 3 + 7 // 3, 3 + 14 // 3) == (3, 5, 7)
    assert own_step_starts(0, 5, 5) == (0, 1, 2, 3, 4)


def test_too_many_own_steps_name_the_segment_the_value_and_the_fix():
    with pytest.raises(ProfileError) as info:
        run_plan(LDL, 6)  # the middle covers base steps [3, 6): 3 < 4
    message = str(info.value)
    assert "\n" not in message
    assert "$.schedule[1].steps: segment 1 (distilled [0.375, 0.875)) asks for 4 steps" in message
    assert "covers only 3 of the 6 base steps" in message and "give steps <= 3, or run at least 7 base steps" in message
    assert [s.segment for s in run_plan(LDL, 7)] == [0, 0, 0, 1, 1, 1, 1]  # [3, 7): the last segment is empty at 7
    with pytest.raises(ValueError, match="steps 5 exceed the 4 base steps"):
        own_step_starts(0, 4, 5)


def test_segment_steps_is_validated_serialised_only_when_set_and_never_merged():
    for bad in (0, -1, 2.0, True, "4"):
        with pytest.raises(ProfileError, match=r"segment steps must be an integer >= 1"):
            Segment("distilled", 0.0, 1.0, steps=bad)
    assert "steps" not in Segment("large", 0.0, 1.0).to_dict()
    assert Segment("distilled", 0.0, 1.0, steps=4).to_dict() == {
        "model": "distilled",
        "start": 0.0,
        "end": 1.0,
        "steps": 4,
    }
    parts = (Segment("distilled", 0.0, 0.5, steps=2), Segment("distilled", 0.5, 1.0, steps=2))
    assert merge_segments(parts) == parts  # 2 + 2 own steps are not 2 over the whole range
    assert merge_segments((Segment("distilled", 0.0, 0.5), Segment("distilled", 0.5, 1.0, steps=2))) == (
        Segment("distilled", 0.0, 0.5),
        Segment("distilled", 0.5, 1.0, steps=2),
    )
    assert merge_segments(segments_from_pattern("LLSS")) == segments_from_pattern("LS")
    # without own steps the run is the base schedule
    lsl = segments_from_pattern("LSL", (0.4, 0.8))
    assert run_roles(lsl, 50) == plan_steps(lsl, 50)


# --- format versions ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["wan21", "ltxv", "demo"])
def test_shipped_v1_profiles_load_unchanged_and_round_trip_as_version_1(name):
    text = json.loads((ROOT / "profiles" / f"{name}.json").read_text())
    assert text["schema_version"] == 1
    profile = load_profile(name)
    assert profile.format_version == 1
    assert profile.to_dict() == text
    assert Profile.from_dict(profile.to_dict()) == profile


def test_a_tiny_v1_profile_round_trips_as_version_1(tiny_ltx, tmp_path):
    path = save_tiny_profile(tiny_ltx, tmp_path / "v1.json", steps=8, boundaries=(0.375, 0.875))
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1 and all("steps" not in s for s in data["schedule"])
    assert load_profile(path).to_dict() == data


def test_ltxv_ldl_is_version_2_and_round_trips_as_2(tmp_path):
    text = json.loads((ROOT / "profiles" / "ltxv-ldl.json").read_text())
    assert text["schema_version"] == 2
    profile = load_profile("ltxv-ldl")
    assert profile.format_version == 2 and profile.schedule == LDL
    assert profile.to_dict() == text
    saved = save_profile(profile, tmp_path / "again.json")
    assert json.loads(saved.read_text()) == text
    # without its version 2 fields it is a version 1 profile again
    data = profile.to_dict()
    data["schedule"][1].pop("steps")
    data["models"]["distilled"].pop("file")
    data["models"]["distilled"].pop("config")
    data["cost"].update(steps={"large": 20, "distilled": 20}, step_fraction={"large": 0.5, "distilled": 0.5})
    data["cost"].update(flops_total=20 * 87.4 * TFLOP + 20 * 6.375 * TFLOP)
    data["cost"].update(flops_ratio=data["cost"]["flops_total"] / (3496 * TFLOP))
    assert Profile.from_dict(data).to_dict()["schema_version"] == 1


@pytest.mark.parametrize(
    "mutate, path, field",
    [
        (lambda d: None, "$.schedule[1].steps", "steps"),
        (lambda d: d["schedule"][1].pop("steps"), "$.models.distilled.file", "file"),
    ],
)
def test_a_v1_profile_with_a_v2_field_is_refused_naming_the_field(mutate, path, field):
    data = load_profile("ltxv-ldl").to_dict()
    mutate(data)
    data["schema_version"] = 1
    with pytest.raises(ProfileError) as info:
        Profile.from_dict(data)
    lines = info.value.errors
    assert any(
        line.startswith(f"{path}: '{field}' is a format version 2 field") and 'set "schema_version": 2' in line
        for line in lines
    ), lines


def test_a_version_newer_than_2_is_refused_in_one_line():
    data = load_profile("ltxv-ldl").to_dict()
    data["schema_version"] = 3
    with pytest.raises(ProfileError) as info:
        Profile.from_dict(data)
    assert info.value.errors == [
        f"$.schema_version: this profile uses format version 3, newer than the version 2 this flowblending "
        f"{flowblending.__version__} reads; upgrade with `pip install -U flowblending`."
    ]


def test_a_file_needs_its_config_and_own_steps_must_fit_the_calibration_steps():
    data = load_profile("ltxv-ldl").to_dict()
    data["models"]["distilled"].pop("config")
    with pytest.raises(ProfileError, match=r"\$\.models\.distilled: 'config' is a dependency of 'file'"):
        Profile.from_dict(data)
    data = load_profile("ltxv-ldl").to_dict()
    data["schedule"][1]["steps"] = 21
    with pytest.raises(ProfileError, match=r"\$\.schedule\[1\]\.steps: segment 1 .* asks for 21 steps .* only 20"):
        Profile.from_dict(data)


# --- cost ---------------------------------------------------------------------------------------------------------
def test_ltxv_ldl_validates_and_its_cost_is_the_papers():
    result = CliRunner().invoke(cli, ["validate", "ltxv-ldl", "ltxv", "wan21"])
    assert result.exit_code == 0 and result.output.count(": ok") == 3, result.output
    profile = load_profile("ltxv-ldl")
    assert (profile.pipeline_class, profile.image_to_video) == ("LTXConditionPipeline", True)
    assert profile.models["large"].id == "Lightricks/LTX-Video-0.9.7-dev"
    distilled = profile.models["distilled"]
    assert (distilled.id, distilled.file, distilled.config, distilled.subfolder) == (
        "Lightricks/LTX-Video",
        "ltxv-2b-0.9.6-distilled-04-25.safetensors",
        "Lightricks/LTX-Video-0.9.5",
        "transformer",
    )
    cost = profile.cost
    assert cost.flops_per_step == {"large": 87.4 * TFLOP, "distilled": 6.375 * TFLOP}  # 3496 / 40, 51 / 8
    assert cost.steps == {"large": 20, "distilled": 4}
    assert cost.flops_total == pytest.approx(1773.5 * TFLOP)  # 20 x 87.4 + 4 x 6.375 (Table 3: 1774)
    assert cost.flops_large_only == pytest.approx(3496 * TFLOP)
    assert cost.flops_ratio == pytest.approx(0.507294, abs=1e-6)
    assert round(cost.flops_total / TFLOP) == 1774
    # DDD (8 distilled steps) is the table's 51 TFLOPs
    ddd = schedule_cost(["distilled"] * 8, cost.flops_per_step, "distilled", num_steps=8)
    assert ddd.flops_total == pytest.approx(51 * TFLOP)
    assert [(b.step, round(b.sigma, 6)) for b in profile.boundaries] == [(15, 0.98125), (35, 0.421875)]
    # the profile's cost check understands own steps: 20 distilled steps would be another schedule
    data = profile.to_dict()
    data["cost"]["steps"]["distilled"] = 20
    with pytest.raises(ProfileError, match=r"\$\.cost\.steps\.distilled: 20 but the schedule runs distilled for 4"):
        Profile.from_dict(data)


def test_ltxv_ldl_dry_run_shows_the_plan(tmp_path):
    from PIL import Image

    png = tmp_path / "x.png"
    Image.new("RGB", (32, 32)).save(png)
    args = ["run", "--profile", "ltxv-ldl", "--dry-run", "--image", str(png), "--prompt", "a cat"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "plan for 24 steps over 40 base steps, schedule LDL:"
    assert "    15  distilled   0.9812     981.25         15" in lines
    assert "    18  distilled   0.7250     725.00         30" in lines
    assert "    19  large       0.4219     421.88         35" in lines
    assert (
        "  distilled  [0.375, 0.875)  base steps 15-34: 4 own steps, sigma 0.9812 -> 0.7250, guidance 1 (no CFG)"
        in lines
    )
    assert "  large      [0, 0.375)  base steps 0-14: 15 steps, sigma 1.0000 -> 0.9825, guidance 3 (pipeline)" in lines
    assert "steps per role: large: 20, distilled: 4" in lines
    assert "NFE: 24 transformer steps (40 base steps)" in lines
    assert "FLOPs: 1,773.5 TFLOPs vs 3,496.0 large-only = 50.73% (ratio 0.507); predicted speed-up 1.97x" in lines
    # new boundaries keep each segment's own steps and guidance
    moved = CliRunner().invoke(cli, ["run", "--profile", "ltxv-ldl", "--dry-run", "--boundaries", "0.25,0.75"])
    assert "  distilled  [0.25, 0.75)  base steps 10-29: 4 own steps, sigma 0.9875 -> 0.9094, guidance 1 (no CFG)" in (
        moved.output.splitlines()
    )
    short = CliRunner().invoke(cli, ["run", "--profile", "ltxv-ldl", "--dry-run", "--steps", "6"])
    assert short.exit_code == 2 and short.output.count("error:") == 1
    assert "asks for 4 steps of its own but covers only 3 of the 6 base steps" in short.output


# --- the composed run on a tiny LTXConditionPipeline ----------------------------------------------------------------
class CondOnly(torch.nn.Module):
    """By hand, what guidance 1 means for LTX's batched [uncond, cond] call: the model on the cond half, whose
    prediction stands for both halves (CFG ``u + g (c - u)`` with ``u = c`` is ``c``)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def cache_context(self, name):
        return contextlib.nullcontext()

    def forward(self, **kwargs):
        batch = kwargs["hidden_states"].shape[0]
        sample = self.model(**{k: cond_half(batch, v) for k, v in kwargs.items()})[0]
        return (torch.cat([sample, sample]),)


@pytest.fixture(scope="module")
def ldl(tmp_path_factory):
    """A tiny LTXConditionPipeline, a third "distilled" transformer saved as one LTX-layout safetensors file, and
    the paper's LDL profile over 40 base steps (large 15, distilled 4 own steps at guidance 1, large 5)."""
    root = tmp_path_factory.mktemp("ldl")
    pair = save_tiny_ltx_pair(root / "pair", condition=True, image_to_video=True)
    file, config = save_tiny_ltx_single_file(root / "distilled")
    path = save_tiny_ldl_profile(pair, (file, config), root / "tiny-ldl.json", schedule=LDL)
    return {"pair": pair, "file": file, "config": config, "profile": path}


def _call(pipe, pair, **extra):
    return pipe(
        prompt=PROMPT, generator=torch.Generator().manual_seed(0), output_type="pt", **{**pair.call_kwargs, **extra}
    ).frames


def _count_calls(models):
    """Forward pre-hooks recording the batch of every call, per role."""
    seen = {role: [] for role in models}
    handles = [
        model.register_forward_pre_hook(
            lambda m, a, k, role=role: seen[role].append(k["hidden_states"].shape[0]), with_kwargs=True
        )
        for role, model in models.items()
    ]
    return seen, handles


def test_tiny_ldl_profile_is_version_2_with_measured_costs(ldl):
    profile = load_profile(ldl["profile"])
    assert profile.format_version == 2
    assert profile.cost.steps == {"large": 20, "distilled": 4}
    flops = profile.cost.flops_per_step
    assert flops["large"] > 0 and 0 < flops["distilled"] < flops["large"] / 2  # a narrower model, half the batch
    assert profile.cost.flops_large_only == pytest.approx(40 * flops["large"])


def test_ldl_through_the_router_is_bit_identical_to_a_hand_swap_with_the_same_timesteps(ldl):
    pair = ldl["pair"]
    profile = load_profile(ldl["profile"])
    pipe = flowblending.load_pipeline(profile)  # the distilled role goes through from_single_file
    router = pipe.transformer
    assert set(router.roles) == {"large", "distilled"}
    seen, handles = _count_calls({r: router.roles[r] for r in ("large", "distilled")})
    try:
        frames, report = generate(pipe, profile, PROMPT, image=pair.call_kwargs["image"], output_type="pt")
    finally:
        for h in handles:
            h.remove()
    # composed sigmas: the rule's values, computed by hand from LTX's 40-step schedule
    lq = linear_quadratic_schedule(40)
    hand = [*lq[:15], lq[15], lq[20], lq[25], lq[30], *lq[35:40]]
    assert torch.equal(pipe.scheduler.sigmas[:24], torch.tensor([float(s) for s in hand], dtype=torch.float32))
    assert [round(float(s), 6) for s in pipe.scheduler.sigmas[15:19]] == [0.98125, 0.975, 0.909375, 0.725]
    assert "set_timesteps" not in vars(pipe.scheduler)  # timesteps= path: the scheduler was not touched
    # calls: large 15 + 5 batched [uncond, cond] calls (c = 2 branches each), distilled 4 calls of the cond half only
    assert seen == {"large": [2] * 20, "distilled": [1] * 4}
    assert report.num_steps == 24 and report.steps_per_role == {"large": 20, "distilled": 4}
    assert report.calls_per_role == {"large": 20, "distilled": 4}
    assert report.uncond_skipped_per_role == {"distilled": 4}
    flops = profile.cost.flops_per_step
    assert report.flops_total == pytest.approx(20 * flops["large"] + 4 * flops["distilled"])
    assert report.flops_large_only == pytest.approx(40 * flops["large"])
    roles = [router.counters.step_roles[i] for i in range(24)]
    assert roles == ["large"] * 15 + ["distilled"] * 4 + ["large"] * 5 == list(run_roles(LDL, 40))

    # the reference: the plain pipeline, the same composed timesteps=, transformers swapped at step ends, and
    # guidance 1 in the middle applied by hand (CondOnly)
    reference = DiffusionPipeline.from_pretrained(pair.pipeline_dir)
    distilled = LTXVideoTransformer3DModel.from_single_file(
        str(ldl["file"]), config=str(ldl["config"]), local_files_only=True
    )
    models = {"large": reference.transformer, "distilled": CondOnly(distilled)}
    plan = run_roles(LDL, 40)

    def switch(p, i, t, callback_kwargs):
        if i + 1 < len(plan):
            p.transformer = models[plan[i + 1]]
        return {}

    timesteps = list(run_schedule(profile.setting, LDL, 40, "LTXConditionPipeline").timesteps)
    assert [round(t, 4) for t in timesteps[15:19]] == [981.25, 975.0, 909.375, 725.0]
    swapped = _call(reference, pair, num_inference_steps=24, timesteps=timesteps, callback_on_step_end=switch)
    assert torch.equal(frames, swapped[0])
    # the distilled model really ran, and the large one alone over the same 24 noise levels differs
    large_only = _call(
        DiffusionPipeline.from_pretrained(pair.pipeline_dir), pair, num_inference_steps=24, timesteps=timesteps
    )
    assert not torch.equal(frames, large_only[0])


def test_guidance_1_on_the_cond_half_is_guidance_1_on_the_whole_batch(ldl):
    """The cond-half call changes only the batch: CFG on the full batch with the uncond half replaced by the cond
    one (guidance 1 by formula) gives the same video to float tolerance, and a whole run at segment guidance 1 is
    the plain pipeline at guidance_scale 1 bit for bit."""
    pair = ldl["pair"]
    profile = load_profile(ldl["profile"])
    pipe = flowblending.load_pipeline(profile)
    routed, _ = generate(pipe, profile, PROMPT, image=pair.call_kwargs["image"], output_type="pt")

    class FullBatchGuidance1(CondOnly):
        def forward(self, **kwargs):
            batch = kwargs["hidden_states"].shape[0]
            cond = self.model(**kwargs)[0][batch // 2 :]
            return (torch.cat([cond, cond]),)

    reference = DiffusionPipeline.from_pretrained(pair.pipeline_dir)
    distilled = pipe.transformer.roles["distilled"]
    models = {"large": reference.transformer, "distilled": FullBatchGuidance1(distilled)}
    plan = run_roles(LDL, 40)

    def switch(p, i, t, callback_kwargs):
        if i + 1 < len(plan):
            p.transformer = models[plan[i + 1]]
        return {}

    timesteps = list(run_schedule(profile.setting, LDL, 40, "LTXConditionPipeline").timesteps)
    full = _call(reference, pair, num_inference_steps=24, timesteps=timesteps, callback_on_step_end=switch)
    assert torch.allclose(routed, full, atol=1e-5)

    everywhere = (Segment("large", 0.0, 1.0, guidance_scale=1.0),)
    flowblending.apply_profile(pipe, profile, schedule=everywhere)
    at_one = _call(pipe, pair, num_inference_steps=6)  # pipeline guidance 3, segment guidance 1
    assert pipe.transformer.counters.uncond_skipped == {"large": 6}
    plain = _call(DiffusionPipeline.from_pretrained(pair.pipeline_dir), pair, num_inference_steps=6, guidance_scale=1.0)
    assert torch.equal(at_one, plain)


def test_cli_runs_the_tiny_ldl_profile_end_to_end(ldl, tmp_path):
    pair = ldl["pair"]
    png, gif = tmp_path / "first.png", tmp_path / "ldl.gif"
    pair.call_kwargs["image"].save(png)
    args = ["run", "--profile", str(ldl["profile"]), "--image", str(png), "--prompt", PROMPT, "--output", str(gif)]
    result = CliRunner().invoke(cli, [*args, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "steps: large 20, distilled 4 (transformer calls: large 20, distilled 4)" in result.output


def test_the_router_refuses_an_own_steps_schedule_called_without_its_composed_levels(ldl):
    pair = ldl["pair"]
    pipe = flowblending.load_pipeline(ldl["profile"])
    with pytest.raises(FlowBlendingError, match=r"segments that run their own steps .*generate\.composed_call"):
        _call(pipe, pair, num_inference_steps=40)
    profile = load_profile(ldl["profile"])
    given = {"num_inference_steps": 40, "timesteps": [999.0]}
    with (
        pytest.raises(FlowBlendingError, match="leave out timesteps= and sigmas="),
        composed_call(pipe, profile, given),
    ):
        pass
    with pytest.raises(FlowBlendingError, match="routing='sigma' cannot route"):
        flowblending.load_pipeline(ldl["profile"], routing="sigma")


# --- loading the distilled role from a single file ---------------------------------------------------------------
def test_the_single_file_loads_back_the_saved_weights_through_load_transformer(ldl, tmp_path):
    profile = load_profile(ldl["profile"])
    model = flowblending.load_transformer(profile, "distilled", local_files_only=True)
    assert type(model).__name__ == "LTXVideoTransformer3DModel" and not model.training
    from safetensors.torch import load_file

    original = load_file(str(ldl["file"]))
    assert "vae.decoder.last_scale_shift_table" in original  # dropped by the conversion
    state = model.state_dict()
    assert torch.equal(state["proj_in.weight"], original["model.diffusion_model.patchify_proj.weight"])
    assert torch.equal(
        state["transformer_blocks.0.attn1.norm_q.weight"],
        original["model.diffusion_model.transformer_blocks.0.attn1.q_norm.weight"],
    )
    assert len(state) == len(original) - 1

    data = profile.to_dict()
    data["models"]["distilled"]["file"] = "tiny.ckpt"
    with pytest.raises(PickleWeightsError) as info:
        flowblending.load_transformer(Profile.from_dict(data), "distilled")
    assert "not a .safetensors file" in str(info.value) and "--allow-pickle" in str(info.value)
    assert "\n" not in str(info.value)
    data["models"]["distilled"]["file"] = "missing.safetensors"
    with pytest.raises(flowblending.ModelNotAvailableError, match="does not exist"):
        flowblending.load_transformer(Profile.from_dict(data), "distilled")
    data["models"]["distilled"].update(id="Lightricks/LTX-Video", file="ltxv-2b-0.9.6-distilled-04-25.safetensors")
    with pytest.raises(flowblending.ModelNotAvailableError) as info:  # offline (conftest): the hub is not asked
        flowblending.load_transformer(Profile.from_dict(data), "distilled", local_files_only=True)
    assert "huggingface-cli download Lightricks/LTX-Video ltxv-2b-0.9.6-distilled-04-25.safetensors" in str(info.value)
    assert "\n" not in str(info.value)


# --- the other ways noise levels reach a pipeline ----------------------------------------------------------------
def test_ltx_pipelines_that_build_sigmas_get_them_through_the_scheduler(tiny_ltx, ldl):
    """LTXPipeline lists timesteps= but always builds sigmas (passing both raises): the scheduler is given the composed
    sigmas for the call and restored afterwards; its dynamically shifted config with shift_terminal is refused."""
    profile = load_profile(ldl["profile"])
    pipe = DiffusionPipeline.from_pretrained(tiny_ltx.pipeline_dir)
    assert schedule_argument(pipe) == "scheduler"
    distilled = flowblending.load_transformer(profile, "distilled", local_files_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # calibrated with LTXConditionPipeline
        flowblending.apply_profile(pipe, profile, {"distilled": distilled})
    with pytest.raises(FlowBlendingError, match=r"LTXPipeline with FlowMatchEulerDiscreteScheduler: .*shift_terminal"):
        generate(pipe, profile, PROMPT, output_type="latent")
    pipe.scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    _, report = generate(pipe, profile, PROMPT, output_type="latent")
    assert report.steps_per_role == {"large": 20, "distilled": 4}
    linear = [1 - i / 40 for i in (*range(15), 15, 20, 25, 30, *range(35, 40))]
    assert [float(s) for s in pipe.scheduler.sigmas[:24]] == pytest.approx(linear, abs=1e-6)
    assert "set_timesteps" not in vars(pipe.scheduler)


def test_wan_gets_the_composed_sigmas_through_its_shifting_scheduler_and_skips_uncond_calls(tiny_wan, wan_profile_path):
    profile = load_profile(wan_profile_path)
    schedule = (
        Segment("large", 0.0, 0.4),
        Segment("small", 0.4, 0.8, guidance_scale=1.0, steps=2),
        Segment("large", 0.8, 1.0),
    )
    pipe = DiffusionPipeline.from_pretrained(tiny_wan.pipeline_dir)
    assert schedule_argument(pipe) == "scheduler" and pipe.scheduler.config.flow_shift == 3.0
    small = type(pipe.transformer).from_pretrained(tiny_wan.small_dir)
    flowblending.apply_profile(pipe, profile, {"small": small}, schedule=schedule)
    _, report = generate(pipe, profile, PROMPT, num_inference_steps=10, output_type="latent")
    base, _ = step_sigmas(profile.setting, 10, "WanPipeline", scheduler=pipe.scheduler)
    # base steps 0-3 large, the small model's own 2 at base steps 4 and 6, base steps 8-9 large
    expected = [base[i] for i in (0, 1, 2, 3, 4, 6, 8, 9)]
    assert [float(s) for s in pipe.scheduler.sigmas[:8]] == pytest.approx(expected, abs=1e-5)
    assert report.steps_per_role == {"large": 6, "small": 2}
    assert report.calls_per_role == {"large": 12, "small": 2}  # cond + uncond per large step, cond only for small
    assert report.uncond_skipped_per_role == {"small": 2}
    assert "set_timesteps" not in vars(pipe.scheduler)
    # the inverse shift is exact: shifting what is given gives the composed sigmas back
    given = sigmas_to_give(expected, pipe.scheduler.config)
    assert [3 * x / (1 + 2 * x) for x in given] == pytest.approx(expected, abs=1e-12)


def test_a_pipeline_and_scheduler_that_take_no_sigmas_are_refused_naming_both(tiny_wan, wan_profile_path):
    from diffusers import DDIMScheduler

    profile = load_profile(wan_profile_path)
    pipe = DiffusionPipeline.from_pretrained(tiny_wan.pipeline_dir)
    pipe.scheduler = DDIMScheduler()
    small = type(pipe.transformer).from_pretrained(tiny_wan.small_dir)
    schedule = (Segment("large", 0.0, 0.4), Segment("small", 0.4, 0.8, steps=2), Segment("large", 0.8, 1.0))
    flowblending.apply_profile(pipe, profile, {"small": small}, schedule=schedule)
    with pytest.raises(UnsupportedPipelineError) as info:
        generate(pipe, profile, PROMPT, num_inference_steps=10, output_type="latent")
    message = str(info.value)
    assert "\n" not in message
    assert "WanPipeline takes neither timesteps= nor sigmas=" in message
    assert "DDIMScheduler.set_timesteps takes no sigmas" in message
    assert "FlowMatchEulerDiscreteScheduler" in message
