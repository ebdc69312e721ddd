"""The model families FlowBlending knows: one description per family, and the pipelines it refuses.

A family is a set of diffusers pipelines whose transformers come in several sizes that share one VAE latent
space and one text encoder, so a large and a small transformer can be swapped step by step. Each entry says how
the pipeline calls its transformer (which decides how the router and the calibrator split CFG calls: the order of
the branches, and which branch a call is when the pipeline names none), the CFG formula (which the router rewrites
outputs through for a segment's own ``guidance_scale``, always meant as the pipeline's own ``guidance_scale``
argument), a call input each role needs at its own size (VACE's per-layer scale), what carries the step, how
sigmas are made, whether the pipeline takes a custom ``timesteps=`` / ``sigmas=`` list, how latents are decoded,
and how FlowBlending tests it. ``flowblending models`` prints this table and docs/models.md shows it.

Pipelines that cannot be routed step by step are refused in one line by :func:`check_pipeline` before any
weights are loaded.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .errors import FlowBlendingError

__all__ = [
    "FAMILIES",
    "Family",
    "LayerInput",
    "UnsupportedPipelineError",
    "check_pipeline",
    "family_of",
    "family_of_transformer",
    "markdown_table",
    "schedule_argument",
]

CfgCall = Literal["separate", "batched"]
Branch = Literal["cond", "uncond"]
Status = Literal["tested", "untested", "refused"]


class UnsupportedPipelineError(FlowBlendingError):
    """A pipeline FlowBlending cannot route step by step (the message says why and what to use)."""


@dataclass(frozen=True)
class LayerInput:
    """A transformer input with one entry per layer of a config field, which the pipeline sizes for the base model.

    WanVACEPipeline turns its ``conditioning_scale`` argument into ``control_hidden_states_scale`` with one entry per
    ``pipe.transformer.config.vace_layers`` (the base model's: the router exposes its config), and each VACE
    transformer raises on a scale of another length; Wan2.1-VACE-14B has 8 VACE layers and VACE-1.3B 15. A uniform
    scale (what a float ``conditioning_scale``, the default 1.0, gives) means the same for any number of layers, so
    :meth:`fit` repeats its value to the running model's length; a per-layer scale has no such meaning and is refused.
    """

    name: str  # the transformer call's keyword argument
    config_field: str  # the config field with one element per entry
    pipeline_argument: str  # the pipeline argument it is made from
    layers: str  # what the entries are, for messages

    def __str__(self) -> str:
        return f"{self.name}: one entry per {self.config_field} (from {self.pipeline_argument})"

    def fit(self, kwargs: dict[str, Any], config: Mapping[str, Any], role: str) -> dict[str, Any]:
        """``kwargs`` with this input resized to the model of ``config`` (role ``role``); refuses a non-uniform one."""
        value, layers = kwargs.get(self.name), config.get(self.config_field)
        if value is None or layers is None or not hasattr(value, "shape") or value.dim() != 1:
            return kwargs
        have, want = int(value.shape[0]), len(layers)
        if have == want or have == 0:
            return kwargs
        if value.is_meta:  # counting FLOPs (flowblending.cost): no values, only the length matters
            return {**kwargs, self.name: value[:1].expand(want)}
        if not bool((value == value[0]).all()):
            raise FlowBlendingError(
                f"{self.name} has {have} entries (the pipeline's transformer has {have} {self.layers}) but role "
                f"{role!r} has {want} {self.layers}, and its values {value.tolist()} differ per layer, so they cannot "
                f"be mapped to {want}; pass a single float {self.pipeline_argument} (one scale for every layer)."
            )
        return {**kwargs, self.name: value[:1].repeat(want)}  # the same value, dtype and device


@dataclass(frozen=True)
class Family:
    """How one family's pipelines call their transformer, and how FlowBlending supports them.

    ``cfg_call``: ``"separate"`` = one call for the conditional and one for the unconditional branch per step,
    ``"batched"`` = one call on the concatenated batch. ``cfg_order``: the two branches in the order the pipeline
    computes them (its calls of a step, or the halves of its batch); the router labels a call by it when the pipeline
    names none with ``cache_context`` (Cosmos, Sana, SD3). ``cfg_anchor``: the branch the guidance term is added to,
    ``"uncond"`` in ``uncond + g (cond - uncond)``, ``"cond"`` in Cosmos' ``cond + g (cond - uncond)``; a segment's
    ``guidance_scale`` is the pipeline's own ``guidance_scale`` argument, so the router rewrites outputs through this
    formula. ``layer_input``: a call input sized for the base model that each role needs at its own size
    (:class:`LayerInput`; the router applies :meth:`fit_inputs`). ``custom_schedule``: which of ``timesteps=`` and
    ``sigmas=`` the pipeline's ``__call__`` accepts (``"none"``: only the scheduler can be given sigmas).
    ``builds_sigmas``: pipelines of the family whose ``__call__`` lists ``timesteps=`` but always builds sigmas
    too, so that passing ``timesteps`` raises. ``tests``: the test files that run its tiny offline pipelines
    through FlowBlending. ``status_note``: what the status covers exactly, shown with it in the table.
    """

    key: str
    title: str
    pipelines: tuple[str, ...]
    transformer_class: str
    sizes: tuple[str, ...]
    media: Literal["video", "image"]
    cfg_call: CfgCall
    cfg_order: tuple[Branch, Branch]
    cfg_anchor: Branch
    cfg_formula: str
    step_argument: str
    sigmas: str
    custom_schedule: Literal["timesteps", "sigmas", "both", "none"]
    decode: str
    status: Status
    status_note: str = ""
    tests: tuple[str, ...] = ()
    caveats: tuple[str, ...] = ()
    refusal: str | None = None
    builds_sigmas: tuple[str, ...] = ()
    layer_input: LayerInput | None = None

    def __post_init__(self) -> None:
        if (self.status == "refused") != (self.refusal is not None):
            raise ValueError(f"family {self.key!r}: a refused family needs a refusal reason, and only it has one.")
        if sorted(self.cfg_order) != ["cond", "uncond"]:
            raise ValueError(
                f"family {self.key!r}: cfg_order must hold 'cond' and 'uncond' once, got {self.cfg_order}."
            )
        if not self.cfg_formula.startswith(f"{self.cfg_anchor} + g (cond - uncond)"):
            raise ValueError(
                f"family {self.key!r}: cfg_formula {self.cfg_formula!r} is not {self.cfg_anchor}-anchored."
            )
        if self.cfg_call == "batched" and (self.cfg_order, self.cfg_anchor) != (("uncond", "cond"), "uncond"):
            # the router splits a batched call as [uncond, cond] and rewrites its cond half (u + g (c - u))
            raise ValueError(f"family {self.key!r}: the router handles batched CFG as [uncond, cond], uncond-anchored.")

    def fit_inputs(self, kwargs: dict[str, Any], config: Mapping[str, Any], role: str) -> dict[str, Any]:
        """A transformer call's keyword inputs as the model of ``config`` (role ``role``) takes them."""
        return kwargs if self.layer_input is None else self.layer_input.fit(kwargs, config, role)


_WAN_VAE = "AutoencoderKLWan: latents * latents_std + latents_mean, then decode"
_WAN_CFG = "uncond + g (cond - uncond)"
_CALLS: tuple[Branch, Branch] = ("cond", "uncond")  # separate calls: cond first, then uncond
_BATCH: tuple[Branch, Branch] = ("uncond", "cond")  # one batched call on [uncond, cond]

FAMILIES: dict[str, Family] = {
    f.key: f
    for f in (
        Family(
            key="wan21",
            title="Wan 2.1 T2V / I2V",
            pipelines=("WanPipeline", "WanImageToVideoPipeline"),
            transformer_class="WanTransformer3DModel",
            sizes=("Wan-AI/Wan2.1-T2V-14B-Diffusers", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"),
            media="video",
            cfg_call="separate",
            cfg_order=_CALLS,
            cfg_anchor="uncond",
            cfg_formula=_WAN_CFG,
            step_argument="timestep (one per sample)",
            sigmas="UniPC flow matching, flow shift 3 (480p) / 5 (720p)",
            custom_schedule="none",
            decode=_WAN_VAE,
            status="tested",
            tests=("tests/test_router.py", "tests/test_calibrate_e2e.py", "tests/test_families.py"),
            caveats=(
                "diffusers 0.42.1 calls ftfy unguarded in WanImageToVideoPipeline: pip install ftfy",
                "I2V needs the CLIP image encoder of the repository in both roles' pipeline (it is shared)",
            ),
        ),
        Family(
            key="wan21-vace",
            title="Wan 2.1 VACE",
            pipelines=("WanVACEPipeline",),
            transformer_class="WanVACETransformer3DModel",
            sizes=("Wan-AI/Wan2.1-VACE-14B-diffusers", "Wan-AI/Wan2.1-VACE-1.3B-diffusers"),
            media="video",
            cfg_call="separate",
            cfg_order=_CALLS,
            cfg_anchor="uncond",
            cfg_formula=_WAN_CFG,
            step_argument=(
                "timestep (one per sample); every call also gets control_hidden_states (96 channels: the video's "
                "inactive and reactive latents and the mask) and control_hidden_states_scale (one per VACE layer)"
            ),
            sigmas="UniPC flow matching, flow shift 3 (480p) / 5 (720p)",
            custom_schedule="none",
            decode=_WAN_VAE,
            status="tested",
            status_note=(
                "tiny pairs with as many VACE layers and with other counts per role (as the 14B's 8 vs the 1.3B's 15 "
                "VACE layers)"
            ),
            tests=("tests/test_families.py", "tests/test_vace.py"),
            layer_input=LayerInput(
                "control_hidden_states_scale", "vace_layers", "conditioning_scale", layers="VACE layers"
            ),
            caveats=(
                "WanVACEPipeline sizes conditioning_scale by pipe.transformer.config.vace_layers (the large role's) "
                "and a VACE transformer raises on a scale of another length: the router repeats a uniform scale (a "
                "float conditioning_scale, the default 1.0) to each role's number of VACE layers (the real 14B has 8, "
                "the 1.3B 15) and refuses a per-layer conditioning_scale when the counts differ",
                "both roles get the same control latents, so the small model must be a VACE model too (the pair "
                "check compares vace_in_channels)",
                "without video and mask the pipeline conditions on a zero video under an all-ones mask (text to video)",
                "diffusers 0.42.1 calls ftfy unguarded in WanVACEPipeline: pip install ftfy",
            ),
        ),
        Family(
            key="wan22",
            title="Wan 2.2 A14B (two experts) as the large role",
            pipelines=("WanPipeline", "WanImageToVideoPipeline"),
            transformer_class="WanTransformer3DModel",
            sizes=("Wan-AI/Wan2.2-T2V-A14B-Diffusers", "Wan-AI/Wan2.2-I2V-A14B-Diffusers"),
            media="video",
            cfg_call="separate",
            cfg_order=_CALLS,
            cfg_anchor="uncond",
            cfg_formula=_WAN_CFG + " (guidance_scale_2 below the boundary)",
            step_argument="timestep; transformer for t >= boundary_ratio x 1000, transformer_2 below",
            sigmas="UniPC flow matching, the repository's flow shift",
            custom_schedule="none",
            decode=_WAN_VAE,
            status="tested",
            tests=("tests/test_experts.py",),
            caveats=(
                "the large role is both experts (flowblending.experts.ExpertPair); Wan 2.1 1.3B shares the VAE "
                "and text encoder and is the small role",
                "caches and per-role offload are refused for a two-expert role",
            ),
        ),
        Family(
            key="skyreels-v2",
            title="SkyReels-V2 T2V / I2V",
            pipelines=("SkyReelsV2Pipeline", "SkyReelsV2ImageToVideoPipeline"),
            transformer_class="SkyReelsV2Transformer3DModel",
            sizes=(
                "Skywork/SkyReels-V2-I2V-14B-540P-Diffusers",
                "Skywork/SkyReels-V2-I2V-1.3B-540P-Diffusers",
            ),
            media="video",
            cfg_call="separate",
            cfg_order=_CALLS,
            cfg_anchor="uncond",
            cfg_formula=_WAN_CFG,
            step_argument="timestep (one per sample)",
            sigmas="UniPC flow matching, flow shift 8 (T2V) / 5 (I2V)",
            custom_schedule="none",
            decode=_WAN_VAE,
            status="tested",
            tests=("tests/test_families.py",),
            caveats=("T2V comes in 14B only; the I2V pipelines call ftfy unguarded in diffusers 0.42.1",),
        ),
        Family(
            key="skyreels-v2-df",
            title="SkyReels-V2 diffusion forcing",
            pipelines=(
                "SkyReelsV2DiffusionForcingPipeline",
                "SkyReelsV2DiffusionForcingImageToVideoPipeline",
                "SkyReelsV2DiffusionForcingVideoToVideoPipeline",
            ),
            transformer_class="SkyReelsV2Transformer3DModel",
            sizes=("Skywork/SkyReels-V2-DF-14B-540P-Diffusers", "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers"),
            media="video",
            cfg_call="separate",
            cfg_order=_CALLS,
            cfg_anchor="uncond",
            cfg_formula=_WAN_CFG,
            step_argument="one timestep per frame",
            sigmas="one scheduler per frame",
            custom_schedule="none",
            decode=_WAN_VAE,
            status="refused",
            refusal=(
                "diffusion-forcing pipelines denoise every frame on its own schedule (one scheduler per frame), so "
                "there is no single denoising step to route; use SkyReelsV2Pipeline or "
                "SkyReelsV2ImageToVideoPipeline"
            ),
        ),
        Family(
            key="ltx",
            title="LTX-Video",
            pipelines=("LTXConditionPipeline", "LTXPipeline", "LTXImageToVideoPipeline"),
            transformer_class="LTXVideoTransformer3DModel",
            sizes=(
                "Lightricks/LTX-Video-0.9.7-dev",
                "Lightricks/LTX-Video-0.9.7-distilled",
                "Lightricks/LTX-Video-0.9.5",
            ),
            media="video",
            cfg_call="batched",
            cfg_order=_BATCH,
            cfg_anchor="uncond",
            cfg_formula=_WAN_CFG,
            step_argument="timestep (per token for image conditioning)",
            sigmas=(
                "FlowMatchEuler; LTXConditionPipeline: LTX's linear-quadratic schedule, the others linspace(1, 1/N, N)"
            ),
            custom_schedule="timesteps",
            decode="AutoencoderKLLTXVideo: denormalize with latents_mean/std, decode with decode_timestep",
            status="tested",
            tests=("tests/test_router.py", "tests/test_ltx_condition.py"),
            caveats=(
                "LTXPipeline and LTXImageToVideoPipeline always build sigmas: passing timesteps= raises; route the "
                "shipped ltxv profile there by sigma (--routing sigma)",
            ),
            builds_sigmas=("LTXPipeline", "LTXImageToVideoPipeline"),
        ),
        Family(
            key="cosmos-predict2",
            title="Cosmos Predict2 Video2World / Text2Image",
            pipelines=("Cosmos2VideoToWorldPipeline", "Cosmos2TextToImagePipeline"),
            transformer_class="CosmosTransformer3DModel",
            sizes=(
                "nvidia/Cosmos-Predict2-14B-Video2World",
                "nvidia/Cosmos-Predict2-2B-Video2World",
                "nvidia/Cosmos-Predict2-14B-Text2Image",
                "nvidia/Cosmos-Predict2-2B-Text2Image",
            ),
            media="video",
            cfg_call="separate",
            cfg_order=_CALLS,
            cfg_anchor="cond",
            cfg_formula="cond + g (cond - uncond), on the x0 predictions (no CFG at g <= 1)",
            step_argument=(
                "timestep t = sigma / (sigma + 1): one per latent frame for Video2World (the conditioning frame's "
                "near 0), one per sample for Text2Image; the pipeline turns the raw output F into "
                "x0 = (1 - t) x - t F, then into a velocity (x - x0) / sigma, outside the transformer"
            ),
            sigmas=(
                "FlowMatchEuler with Karras sigmas from sigma_max 80 to sigma_min 0.002 (the pipeline sets them and "
                "repeats the last); timesteps = 1000 sigma"
            ),
            custom_schedule="none",
            decode=_WAN_VAE,
            status="tested",
            status_note="tiny, with stand-ins for the guardrail and torchvision's resize",
            tests=("tests/test_families.py", "tests/test_cosmos.py"),
            caveats=(
                "real use needs cosmos_guardrail (the pipelines build CosmosSafetyChecker when given none and refuse "
                "to run without one) and torchvision (CosmosTransformer3DModel resizes its padding mask with it); "
                "the tiny tests run with test-only stand-ins (flowblending.testing.families.cosmos_stand_ins)",
                "Video2World needs a conditioning image: calibrate with --images, run with --image",
                "no cache_context: the router takes a step's first call for cond and its second for uncond (this "
                "table's cfg_order); a segment's guidance_scale is the pipeline's own guidance_scale argument, the g "
                "of cond + g (cond - uncond) (Wan's g is that of uncond + g (cond - uncond)): 1 runs the conditional "
                "branch only (the uncond call is answered with the cond output), g > 1 is applied exactly through the "
                "pipeline's formula, and below 1 is refused (the pipeline turns CFG off at g <= 1: use 1)",
                "the divergence the calibrator measures is on the raw transformer output F, not on the velocity",
                "the safety checker gets the decoded frames as uint8: outputs are multiples of 1/255",
            ),
        ),
        Family(
            key="sana",
            title="Sana (images)",
            pipelines=("SanaPipeline",),
            transformer_class="SanaTransformer2DModel",
            sizes=(
                "Efficient-Large-Model/Sana_1600M_1024px_diffusers",
                "Efficient-Large-Model/Sana_600M_1024px_diffusers",
            ),
            media="image",
            cfg_call="batched",
            cfg_order=_BATCH,
            cfg_anchor="uncond",
            cfg_formula=_WAN_CFG,
            step_argument="timestep (one per sample)",
            sigmas="DPM-Solver++ flow matching, flow shift 3",
            custom_schedule="both",
            decode="AutoencoderDC: latents / scaling_factor, then decode",
            status="tested",
            tests=("tests/test_families.py",),
            caveats=(
                "an image is a one-frame video for the calibrator's metrics",
                "the hub's DPMSolverMultistepScheduler config has lambda_min_clipped = -inf, which a profile (JSON) "
                "cannot hold: calibrate with FlowMatchEulerDiscreteScheduler or a finite lambda_min_clipped",
                "the pipeline bins resolutions by default (tiny tests use 512x512)",
            ),
        ),
        Family(
            key="sd35",
            title="Stable Diffusion 3.5 (images)",
            pipelines=("StableDiffusion3Pipeline",),
            transformer_class="SD3Transformer2DModel",
            sizes=("stabilityai/stable-diffusion-3.5-large", "stabilityai/stable-diffusion-3.5-medium"),
            media="image",
            cfg_call="batched",
            cfg_order=_BATCH,
            cfg_anchor="uncond",
            cfg_formula=_WAN_CFG,
            step_argument="timestep (one per sample)",
            sigmas="FlowMatchEuler, shift 3",
            custom_schedule="sigmas",
            decode="AutoencoderKL: latents / scaling_factor + shift_factor, then decode",
            status="tested",
            tests=("tests/test_families.py",),
            caveats=("3.5 Medium has pos_embed_max_size 384 against Large's 192", "an image is a one-frame video"),
        ),
        Family(
            key="cogvideox",
            title="CogVideoX",
            pipelines=(
                "CogVideoXPipeline",
                "CogVideoXImageToVideoPipeline",
                "CogVideoXVideoToVideoPipeline",
                "CogVideoXFunControlPipeline",
            ),
            transformer_class="CogVideoXTransformer3DModel",
            sizes=("THUDM/CogVideoX-5b", "THUDM/CogVideoX-2b"),
            media="video",
            cfg_call="batched",
            cfg_order=_BATCH,
            cfg_anchor="uncond",
            cfg_formula=_WAN_CFG,
            step_argument="timestep (v-prediction DDIM / DPM)",
            sigmas="CogVideoXDDIM / CogVideoXDPM (no step_index)",
            custom_schedule="timesteps",
            decode="AutoencoderKLCogVideoX",
            status="refused",
            refusal=(
                "CogVideoX 2B and 5B do not share a latent space (VAE scaling factor 1.15 vs 0.7) and use different "
                "positional embeddings (sincos vs RoPE), so their transformers cannot be swapped mid-run"
            ),
        ),
    )
}
"""Family key -> description, in the order ``flowblending models`` prints them."""


def family_of(pipeline_class: str) -> Family | None:
    """The family whose pipelines include ``pipeline_class`` (refused families first), or None if unknown."""
    for family in sorted(FAMILIES.values(), key=lambda f: f.status != "refused"):
        if pipeline_class in family.pipelines:
            return family
    return None


def family_of_transformer(transformer_class: str) -> Family | None:
    """The first family (of those not refused) whose pipelines use ``transformer_class``, or None if unknown."""
    for family in FAMILIES.values():
        if family.refusal is None and family.transformer_class == transformer_class:
            return family
    return None


def check_pipeline(pipeline_class: str, where: str = "pipeline") -> None:
    """Raise UnsupportedPipelineError in one line if FlowBlending refuses ``pipeline_class`` (a refused family)."""
    family = family_of(pipeline_class)
    if family is not None and family.refusal is not None:
        raise UnsupportedPipelineError(f"{where} {pipeline_class} cannot be blended: {family.refusal}.")


ScheduleArgument = Literal["timesteps", "sigmas", "scheduler"]


def schedule_argument(pipeline: Any) -> ScheduleArgument:
    """How a run's own list of noise levels reaches ``pipeline`` (a schedule whose segments run their own steps).

    ``"timesteps"``: its ``__call__`` takes ``timesteps=`` and builds no sigmas of its own (LTXConditionPipeline);
    ``"sigmas"``: its ``__call__`` takes ``sigmas=``; ``"scheduler"``: neither, but ``scheduler.set_timesteps``
    takes ``sigmas`` (Wan, LTXPipeline, LTXImageToVideoPipeline). Known families follow the table
    (``custom_schedule``, ``builds_sigmas``); other pipelines are read from their signature, ``sigmas=`` first.
    Anything else raises UnsupportedPipelineError in one line naming the pipeline and scheduler classes.
    """
    name = type(pipeline).__name__
    try:
        params = set(inspect.signature(type(pipeline).__call__).parameters)
    except (TypeError, ValueError):
        params = set()
    family = family_of(name)
    if family is not None:
        if (
            family.custom_schedule in ("timesteps", "both")
            and name not in family.builds_sigmas
            and "timesteps" in params
        ):
            return "timesteps"
        if family.custom_schedule in ("sigmas", "both") and "sigmas" in params:
            return "sigmas"
    elif "sigmas" in params:
        return "sigmas"
    scheduler = getattr(pipeline, "scheduler", None)
    set_timesteps = getattr(scheduler, "set_timesteps", None)
    try:
        takes_sigmas = set_timesteps is not None and "sigmas" in inspect.signature(set_timesteps).parameters
    except (TypeError, ValueError):
        takes_sigmas = False
    if takes_sigmas:
        return "scheduler"
    raise UnsupportedPipelineError(
        f"{name} takes neither timesteps= nor sigmas= (or builds its own sigmas) and its scheduler "
        f"{type(scheduler).__name__}.set_timesteps takes no sigmas, so a schedule whose segments run their own steps "
        "cannot give it their noise levels; use a scheduler whose set_timesteps takes sigmas "
        "(FlowMatchEulerDiscreteScheduler, or UniPCMultistepScheduler with use_flow_sigmas) or a schedule without "
        "segment steps."
    )


def markdown_table() -> str:
    """The families as the Markdown table of docs/models.md (one row per family)."""
    rows = [
        "| family | pipelines | sizes | CFG calls | custom schedule | status | tested by |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in FAMILIES.values():
        tested = ", ".join(f"`{t}`" for t in f.tests) if f.tests else "-"
        status = f"refused: {f.refusal}" if f.refusal else f.status
        if f.status_note:
            status += f" ({f.status_note})"
        rows.append(
            f"| {f.title} | {', '.join(f'`{p}`' for p in f.pipelines)} | {', '.join(f'`{s}`' for s in f.sizes)} "
            f"| {f.cfg_call} | {f.custom_schedule} | {status} | {tested} |"
        )
    return "\n".join(rows) + "\n"
