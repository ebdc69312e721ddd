"""Write profiles/wan21.json, profiles/ltxv.json and profiles/ltxv-ldl.json from the facts in
docs/profile-sources.md.

Every number is either a published setting (paper, model repositories) or derived from one: per-step FLOPs
are the paper's Table 2 (Table 3 for the distilled model) single-model TFLOPs divided by the step count, boundary
sigmas come from the repositories' scheduler configs through diffusers' own ``set_timesteps``. Run:

    python scripts/build_shipped_profiles.py          # rewrites the files (or only those named: ltxv-ldl)
    python scripts/build_shipped_profiles.py --check  # exit 1 if the files differ from what this builds
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flowblending.compose import make_profile
from flowblending.profile import ModelSpec, Profile, SchedulerSpec, Setting, save_profile
from flowblending.schedule import Segment, segments_from_pattern

ROOT = Path(__file__).resolve().parents[1]
TFLOP = 1e12

# Wan-AI/Wan2.1-T2V-14B-Diffusers scheduler/scheduler_config.json at commit b6cfe0b (docs/profile-sources.md 1.3)
WAN_SCHEDULER = {
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "disable_corrector": [],
    "dynamic_thresholding_ratio": 0.995,
    "final_sigmas_type": "zero",
    "flow_shift": 3.0,
    "lower_order_final": True,
    "num_train_timesteps": 1000,
    "predict_x0": True,
    "prediction_type": "flow_prediction",
    "rescale_betas_zero_snr": False,
    "sample_max_value": 1.0,
    "solver_order": 2,
    "solver_p": None,
    "solver_type": "bh2",
    "steps_offset": 0,
    "thresholding": False,
    "timestep_spacing": "linspace",
    "trained_betas": None,
    "use_beta_sigmas": False,
    "use_exponential_sigmas": False,
    "use_flow_sigmas": True,
    "use_karras_sigmas": False,
}
# Lightricks/LTX-Video-0.9.7-dev scheduler/scheduler_config.json (docs/profile-sources.md 2.3); LTXConditionPipeline
# passes no mu, so it works only without dynamic shifting, as here
LTX_SCHEDULER = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "invert_sigmas": False,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "shift_terminal": None,
    "stochastic_sampling": False,
    "time_shift_type": "exponential",
    "use_beta_sigmas": False,
    "use_dynamic_shifting": False,
    "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}
PAPER = "FlowBlending (paper), Table 2 and Appendix A"
LTX_SIGMA_SCHEDULE = (
    "LTXConditionPipeline without timesteps=: 1000 * linear_quadratic_schedule(40) (threshold_noise 0.025, 20 linear "
    "steps) as timesteps to FlowMatchEulerDiscreteScheduler.set_timesteps (diffusers "
    "pipelines/ltx/pipeline_ltx_condition.py), the port of LTX-Video's own schedule (the paper keeps the official "
    "repository's default noise schedule); LTX's 8-step distilled timesteps are every 5th of its 40 sigmas, and 4 "
    "of them (0.98125 to 0.725) fall in the small segment, the 4 steps the paper's LDL gives the distilled model."
)


def wan21() -> Profile:
    steps = 50
    return make_profile(
        name="wan21",
        description="WAN 2.1 T2V 14B (large) + 1.3B (small), the paper's LSL: large [0, 0.4), small [0.4, 0.8), "
        "large [0.8, 1) at 50 UniPC steps, 832x480, 61 frames.",
        pipeline_class="WanPipeline",
        models={
            "large": ModelSpec(
                "Wan-AI/Wan2.1-T2V-14B-Diffusers",
                "b6cfe0b5cbe332b0738df0426ef401889d5430fb",
                "transformer",
                "WanTransformer3DModel",
                14_288_491_584,
            ),
            "small": ModelSpec(
                "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
                None,
                "transformer",
                "WanTransformer3DModel",
                1_418_996_800,
            ),
        },
        setting=Setting(
            num_inference_steps=steps,
            scheduler=SchedulerSpec("UniPCMultistepScheduler", 3.0, WAN_SCHEDULER),
            guidance_scale=5.0,
            height=480,
            width=832,
            num_frames=61,
            max_sequence_length=512,
            fps=16,
        ),
        schedule=segments_from_pattern("LSL", (0.4, 0.8)),
        flops_per_step={"large": 29950 * TFLOP / steps, "small": 3129 * TFLOP / steps},
        cost_source="paper Table 2(b): LLL 29950 and SSS 3129 TFLOPs (DiT blocks) over 50 steps",
        provenance={"source": PAPER, "seeds": []},
    )


def ltxv() -> Profile:
    steps = 40
    return make_profile(
        name="ltxv",
        description="LTX-Video 13B (large) + 2B (small), image-to-video in LTXConditionPipeline (the first frame "
        "as image=), the paper's LSL: large [0, 0.375), small [0.375, 0.875), large [0.875, 1) at 40 steps (from "
        "Table 2: LSS = 15 and LSL = 20 large steps). Without timesteps= the pipeline runs LTX's linear-quadratic "
        "schedule, so the switches fall at sigma 0.98125 (step 15) and 0.421875 (step 35); in LTXPipeline or "
        "LTXImageToVideoPipeline (linear sigmas) route by sigma (--routing sigma) to switch at the same noise "
        "levels.",
        pipeline_class="LTXConditionPipeline",
        image_to_video=True,
        models={
            "large": ModelSpec(
                "Lightricks/LTX-Video-0.9.7-dev",
                None,
                "transformer",
                "LTXVideoTransformer3DModel",
                13_042_569_344,
            ),
            "small": ModelSpec(
                "Lightricks/LTX-Video-0.9.5", None, "transformer", "LTXVideoTransformer3DModel", 1_923_385_472
            ),
        },
        setting=Setting(
            num_inference_steps=steps,
            scheduler=SchedulerSpec("FlowMatchEulerDiscreteScheduler", 1.0, LTX_SCHEDULER),
            guidance_scale=3.0,
            height=480,
            width=832,
            num_frames=65,
            max_sequence_length=128,
            fps=25,
        ),
        schedule=segments_from_pattern("LSL", (0.375, 0.875)),
        flops_per_step={"large": 3496 * TFLOP / steps, "small": 514 * TFLOP / steps},
        cost_source="paper Table 2(a): LLL 3496 and SSS 514 TFLOPs (DiT blocks) over 40 steps",
        provenance={"source": PAPER, "sigma_schedule": LTX_SIGMA_SCHEDULE, "seeds": []},
    )


LTX_LARGE = ModelSpec(
    "Lightricks/LTX-Video-0.9.7-dev", None, "transformer", "LTXVideoTransformer3DModel", 13_042_569_344
)
# Lightricks/LTX-Video holds the 2B distilled checkpoints as single files only; its diffusers config is the 2B one
# of Lightricks/LTX-Video-0.9.5 (the config diffusers' own single-file loader picks for a 2B checkpoint with the
# 0.9.5+ VAE) (docs/profile-sources.md 2.7)
LTX_DISTILLED_FILE = "ltxv-2b-0.9.6-distilled-04-25.safetensors"


def ltxv_ldl() -> Profile:
    steps = 40
    return make_profile(
        name="ltxv-ldl",
        description="LTX-Video 13B (large) + the official 2B distilled model (distilled), image-to-video in "
        "LTXConditionPipeline, the paper's LDL (section 6(b), Table 3): large for base steps [0, 15) and [35, 40) of "
        "40, the distilled model for 4 steps of its own over the noise range of steps [15, 35), without CFG "
        "(guidance_scale 1): 24 NFE at sigma 0.98125, 0.975, 0.909375 and 0.725 in the middle, every 5th sigma of "
        "LTX's 40-step linear-quadratic schedule and the distilled model's own 8-step sigmas.",
        pipeline_class="LTXConditionPipeline",
        image_to_video=True,
        models={
            "large": LTX_LARGE,
            "distilled": ModelSpec(
                "Lightricks/LTX-Video",
                None,
                "transformer",
                "LTXVideoTransformer3DModel",
                1_923_385_472,
                file=LTX_DISTILLED_FILE,
                config="Lightricks/LTX-Video-0.9.5",
            ),
        },
        setting=Setting(
            num_inference_steps=steps,
            scheduler=SchedulerSpec("FlowMatchEulerDiscreteScheduler", 1.0, LTX_SCHEDULER),
            guidance_scale=3.0,
            height=480,
            width=832,
            num_frames=65,
            max_sequence_length=128,
            fps=25,
        ),
        schedule=(
            Segment("large", 0.0, 0.375),
            Segment("distilled", 0.375, 0.875, guidance_scale=1.0, steps=4),
            Segment("large", 0.875, 1.0),
        ),
        flops_per_step={"large": 3496 * TFLOP / steps, "distilled": 51 * TFLOP / 8},
        cost_source="paper Table 2(a) / Table 3: LLL 3496 TFLOPs over 40 steps (large, CFG), DDD 51 TFLOPs over 8 "
        "steps (distilled, no CFG); LDL = 20 x 87.4 + 4 x 6.375 = 1773.5 (Table 3: 1774)",
        provenance={
            "source": "FlowBlending (paper), section 6(b), Table 3 and Appendix A",
            "sigma_schedule": LTX_SIGMA_SCHEDULE,
            "distilled_file": "the paper names no file; ltxv-2b-0.9.6-distilled-04-25 is the official 2B distilled "
            "model that samples in one pass of 8 steps (docs/profile-sources.md 2.7)",
            "seeds": [],
        },
    )


BUILDERS = {"wan21": wan21, "ltxv": ltxv, "ltxv-ldl": ltxv_ldl}


def _comparable(data: dict) -> dict:
    data = json.loads(json.dumps(data))
    for key in ("created", "diffusers", "torch", "tool"):
        data["provenance"].pop(key, None)
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("names", nargs="*", choices=[[], *BUILDERS], help="profiles to build (default: all)")
    args = parser.parse_args(argv)
    stale = []
    for name, build in BUILDERS.items():
        if args.names and name not in args.names:
            continue
        path = ROOT / "profiles" / f"{name}.json"
        profile = build()
        if args.check:
            current = json.loads(path.read_text()) if path.exists() else None
            if current is None or _comparable(current) != _comparable(profile.to_dict()):
                stale.append(name)
        else:
            save_profile(profile, path)
            print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}; run python scripts/build_shipped_profiles.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
