"""Train the demo pair (v2) from scratch, reproducibly, on a CPU.

Run from the repository root (``scripts/`` is not an installed package)::

    python -m scripts.train_demo --output calibrate/demo/weights

The stages, in order (all seeds derive from ``--seed``; see :func:`stream_seed`):

1. a word-level tokenizer (``tokenizers`` ``WordLevel`` wrapped as a ``transformers`` fast tokenizer,
   EOS appended and ``<pad>`` = 0 as in UMT5) and a tiny random, frozen ``UMT5EncoderModel``;
2. in parallel, two processes (one CPU thread each):
   a. a small ``AutoencoderKLWan`` with **2x spatial and 2x temporal** compression (9x32x32 clips ->
      latents ``z x 5 x 16 x 16``), trained through the posterior mean with an L1 + L2 loss weighted
      towards the pixels of the shape (plain losses sit on an all-grey plateau), RMS-norm gains started
      at 0.1, cosine learning rate; then ``latents_mean``/``latents_std`` are measured on fresh clips;
   b. the judge's shape classifier (:class:`calibrate.demo.judge.ShapeClassifier`, real frames only) and
      the calibrator's feature model (a tiny ``Dinov2Model`` trained with a 12-way colour-shape head and a
      geometry head on real frames; only the backbone is saved, so ``AutoModel`` loads it cleanly);
3. the large and the small ``WanTransformer3DModel`` (patch ``(1, 4, 4)``: 80 tokens per video) trained in
   lockstep, one process each (identical batches, noise, sigmas and prompt drops), with WAN's
   flow-matching objective: ``x_t = (1 - sigma) x0 + sigma noise``, target ``noise - x0``, timestep
   ``1000 sigma``, sigma uniform in [0, 1] (flow shift 1), 10% empty prompts for classifier-free guidance,
   prompt embeddings exactly as ``WanPipeline.encode_prompt`` produces them at ``max_sequence_length=16``,
   AdamW with warm-up and cosine decay, EMA weights saved (phase 1); then phase 2, a warm restart from
   phase 1's EMA weights (``finetune_steps`` at ``finetune_lr``, sigmas shifted towards high noise by
   ``finetune_sigma_shift``, its own batch stream, fresh optimiser and EMA); then phase 3, a second warm
   restart from phase 2's EMA weights (``refine_steps`` at ``refine_lr``, same sigma shift, its own batch
   stream) of the models in ``refine_models``: by default the large one only, which lifts its large-only
   accuracy from 0.79 to 0.94 while the small model stays as phase 2 left it; refining both moves the
   calibrator's boundaries to large-only (docs/demo-training.md, "Phase 3");
4. measurements (VAE PSNR, judge on VAE reconstructions, held-out flow losses) and saving (safetensors
   only); unless ``--no-eval``, :func:`calibrate.demo.evaluate.run_evaluation` then generates held-out
   videos of LLL, LSL, LSS, SLL and SSS and judges them.

``torch.set_flush_denormal(True)`` is set first: without it, denormal floats made CPU training 10-20x
slower. Progress (losses, ETA) is printed; everything measured goes to ``<output>/training.json``. On the
same machine a rerun gave the same large model (the same verdict on each of 144 held-out videos, v2.3 against
v2.4); on another machine the floats part in the sixth digit within 50 steps and the weights are a different draw
of the same recipe (docs/demo-training.md, "A second run of the command").
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from calibrate.demo.data import (
    COLOURS,
    DIRECTIONS,
    FRAMES,
    PROMPTS,
    SHAPES,
    SIZE,
    STRIPE_PERIOD,
    STRIPE_SHADE,
    class_index,
    class_names,
    parse_prompt,
    sample_clips,
    sample_clips_with_geometry,
)
from calibrate.demo.evaluate import FLOW_SHIFT, MAX_SEQUENCE_LENGTH, build_scheduler
from calibrate.demo.judge import ShapeClassifier, judge_videos
from flowblending.testing.text import tiny_umt5_config

__all__ = [
    "FEATURE_MODEL_CONFIG",
    "LARGE_TRANSFORMER_CONFIG",
    "SMALL_TRANSFORMER_CONFIG",
    "TEXT_ENCODER_CONFIG",
    "VAE_CONFIG",
    "TrainConfig",
    "build_feature_model",
    "build_image_processor",
    "build_text_encoder",
    "build_tokenizer",
    "build_transformer",
    "build_vae",
    "configure_torch",
    "main",
    "prompt_embeddings",
    "stream_seed",
    "train",
]

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")
VOCAB_WORDS: tuple[str, ...] = ("a", "an", "the", "moving", *COLOURS, *SHAPES, *DIRECTIONS)

TEXT_ENCODER_CONFIG: dict[str, Any] = {
    k: v
    for k, v in tiny_umt5_config(
        0,
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=64,
    ).items()
    if k != "vocab_size"
}
"""Tiny UMT5 encoder (random, frozen); ``vocab_size`` is set from the tokenizer."""

VAE_CONFIG: dict[str, Any] = {
    "base_dim": 16,
    "z_dim": 16,
    "dim_mult": [1, 2],
    "num_res_blocks": 1,
    "attn_scales": [],
    "temperal_downsample": [True],
    "dropout": 0.0,
    "scale_factor_temporal": 2,
    "scale_factor_spatial": 2,
}
"""``AutoencoderKLWan`` with one spatio-temporal downsampling (2x, 2x): 9x32x32 -> 16 x 5 x 16 x 16."""

_TRANSFORMER_COMMON: dict[str, Any] = {
    "patch_size": (1, 4, 4),
    "attention_head_dim": 32,
    "in_channels": VAE_CONFIG["z_dim"],
    "out_channels": VAE_CONFIG["z_dim"],
    "text_dim": TEXT_ENCODER_CONFIG["d_model"],
    "freq_dim": 256,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}
LARGE_TRANSFORMER_CONFIG: dict[str, Any] = {
    **_TRANSFORMER_COMMON,
    "num_attention_heads": 4,
    "ffn_dim": 512,
    "num_layers": 6,
}
"""Large model: 6 layers, width 128 (4 heads x 32), FFN 512."""

SMALL_TRANSFORMER_CONFIG: dict[str, Any] = {
    **_TRANSFORMER_COMMON,
    "num_attention_heads": 2,
    "ffn_dim": 128,
    "num_layers": 3,
}
"""Small model: 3 layers, width 64 (2 heads x 32), FFN 128."""

TRANSFORMER_NAMES = ("large", "small")
"""The pair's transformers, as the workers, records and ``refine_models`` name them."""

FEATURE_MODEL_CONFIG: dict[str, Any] = {
    "image_size": SIZE,
    "patch_size": 4,
    "num_channels": 3,
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "mlp_ratio": 2,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}
"""Tiny DINOv2 (64 patches of 4x4 + CLS, width 64, 4 layers): the calibrator's feature model."""

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)

# Seed streams (see stream_seed).
_S_VAE_TRAIN, _S_VAE_EVAL, _S_LATENT_STATS, _S_POOL, _S_DIFFUSION = 1, 2, 3, 4, 5
_S_FEATURE_TRAIN, _S_FEATURE_EVAL = 6, 7
_S_JUDGE_TRAIN, _S_JUDGE_EVAL, _S_INIT_JUDGE = 8, 9, 16
_S_INIT_TEXT, _S_INIT_VAE, _S_INIT_LARGE, _S_INIT_SMALL, _S_INIT_FEATURE = 11, 12, 13, 14, 15


def stream_seed(seed: int, stream: int, index: int = 0) -> int:
    """Deterministic seed for item ``index`` of random stream ``stream`` under master seed ``seed``."""
    return (int(seed) * 1000 + int(stream)) * 1_000_000 + int(index)


@dataclass(frozen=True)
class TrainConfig:
    """All knobs of a training run (recorded in ``training.json``)."""

    seed: int = 0
    vae_steps: int = 1000
    vae_batch_size: int = 8
    vae_lr: float = 2e-3
    vae_foreground_weight: float = 10.0
    vae_kl_weight: float = 1e-5
    latent_stats_clips: int = 512
    pool_clips: int = 4096
    steps: int = 2000
    batch_size: int = 32
    lr: float = 6e-4
    weight_decay: float = 0.01
    warmup_steps: int = 150
    grad_clip: float = 1.0
    ema_decay: float = 0.998
    cond_drop: float = 0.1
    finetune_steps: int = 2000
    finetune_lr: float = 4e-4
    finetune_sigma_shift: float = 3.0
    refine_steps: int = 1500
    refine_lr: float = 3e-4
    refine_models: tuple[str, ...] = ("large",)  # the transformers phase 3 trains; the others keep phase 2
    judge_steps: int = 800
    judge_batch_size: int = 128
    judge_lr: float = 2e-3
    feature_steps: int = 1000
    feature_batch_size: int = 96
    feature_lr: float = 1e-3
    log_every: int = 50
    threads: int = 1

    def __post_init__(self) -> None:
        positive = (
            "vae_steps", "vae_batch_size", "latent_stats_clips", "pool_clips", "steps", "batch_size",
            "judge_steps", "judge_batch_size", "feature_steps", "feature_batch_size", "log_every", "threads",
        )  # fmt: skip
        optional = ("finetune_steps", "refine_steps")  # 0 skips the phase
        for name in (*positive, *optional):
            value, least = getattr(self, name), 0 if name in optional else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                kind = "an int >= 0 (0 skips the phase)" if least == 0 else "a positive int"
                raise ValueError(f"TrainConfig.{name} must be {kind}, got {value!r}.")
        if (
            not isinstance(self.refine_models, tuple)
            or not self.refine_models
            or len(set(self.refine_models)) != len(self.refine_models)
            or not set(self.refine_models) <= set(TRANSFORMER_NAMES)
        ):
            raise ValueError(
                f"TrainConfig.refine_models must be a non-empty tuple of distinct names from {TRANSFORMER_NAMES}, "
                f"got {self.refine_models!r}: pass e.g. ('large',)."
            )
        if not 0.0 <= self.cond_drop < 1.0:
            raise ValueError(f"TrainConfig.cond_drop must be in [0, 1), got {self.cond_drop!r}.")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in (0, 1), got {self.ema_decay!r}.")
        if self.pool_clips < len(PROMPTS):
            raise ValueError(
                f"TrainConfig.pool_clips must be at least {len(PROMPTS)} (one clip per prompt), got {self.pool_clips}."
            )


# --------------------------------------------------------------------------------------------- helpers


def configure_torch(threads: int) -> None:
    """Flush denormals (essential for CPU speed) and fix the number of intra-op threads."""
    torch.set_flush_denormal(True)
    torch.set_num_threads(threads)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _fmt_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def _cosine_lr(step: int, total: int, warmup: int, floor: float = 0.01) -> float:
    """Multiplier of the base learning rate: linear warm-up, then cosine decay to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Ema:
    """Exponential moving average of a model's parameters (decay warmed up as ``(1 + n) / (10 + n)``)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards the model's current parameters."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(self.shadow, params, 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged parameters into ``model``."""
        for p, s in zip(model.parameters(), self.shadow, strict=True):
            p.copy_(s)


class _Progress:
    """Running means of named losses, printed every ``every`` steps with an ETA."""

    def __init__(self, name: str, total: int, every: int) -> None:
        self.name, self.total, self.every = name, total, every
        self.start = time.perf_counter()
        self.sums: dict[str, float] = {}
        self.count = 0
        self.history: list[dict[str, float]] = []

    def update(self, step: int, **losses: float) -> None:
        for key, value in losses.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1
        if (step + 1) % self.every == 0 or step + 1 == self.total:
            means = {key: value / self.count for key, value in self.sums.items()}
            elapsed = time.perf_counter() - self.start
            eta = elapsed / (step + 1) * (self.total - step - 1)
            self.history.append({"step": step + 1, **{k: round(v, 6) for k, v in means.items()}})
            text = " ".join(f"{k} {v:.5f}" for k, v in means.items())
            _log(
                f"{self.name} step {step + 1}/{self.total} {text} | {elapsed / (step + 1):.3f}s/step "
                f"elapsed {_fmt_duration(elapsed)} ETA {_fmt_duration(eta)}"
            )
            self.sums, self.count = {}, 0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


# ------------------------------------------------------------------------------------- text conditioning


def build_tokenizer() -> Any:
    """Word-level tokenizer (``<pad>`` 0, ``</s>`` 1 appended, ``<unk>`` 2) as a transformers fast tokenizer.

    It lower-cases, splits on whitespace and punctuation and saves as ``tokenizer.json`` +
    ``tokenizer_config.json``, which ``AutoTokenizer.from_pretrained`` (and therefore ``WanPipeline``)
    loads offline.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate((*SPECIAL_TOKENS, *VOCAB_WORDS))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=512,
        padding_side="right",
    )


def build_text_encoder(vocab_size: int, seed: int) -> Any:
    """Tiny random ``UMT5EncoderModel`` (frozen, eval mode) initialised from ``seed``."""
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    config = UMT5Config(vocab_size=vocab_size, **TEXT_ENCODER_CONFIG)
    model = UMT5EncoderModel(config).eval()
    model.requires_grad_(False)
    return model


def prompt_embeddings(tokenizer: Any, text_encoder: Any, prompts: Sequence[str]) -> Tensor:
    """Prompt embeddings ``(len(prompts), MAX_SEQUENCE_LENGTH, d_model)`` via ``WanPipeline.encode_prompt``.

    Uses the pipeline's own code path (cleaning, tokenising to ``max_length``, encoding, zero-padding
    each prompt after its real tokens), so training sees exactly what generation feeds the transformer.
    """
    from diffusers import WanPipeline

    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=None,  # encode_prompt needs neither the VAE nor a transformer
        scheduler=build_scheduler(),
        transformer=None,
    )
    with torch.no_grad():
        embeds, _ = pipe.encode_prompt(
            prompt=list(prompts),
            do_classifier_free_guidance=False,
            max_sequence_length=MAX_SEQUENCE_LENGTH,
            device=torch.device("cpu"),
            dtype=torch.float32,
        )
    return embeds.detach().clone()


# ----------------------------------------------------------------------------------------------- VAE


VAE_NORM_GAMMA_INIT = 0.1
"""Initial gain of the VAE's RMS norms (except the decoder's output norm); the stock init is 1.0."""


def build_vae(seed: int, norm_gamma_init: float = VAE_NORM_GAMMA_INIT) -> Any:
    """``AutoencoderKLWan`` (see :data:`VAE_CONFIG`) initialised from ``seed``.

    The architecture is the stock one; only the initial ``gamma`` of its RMS norms is scaled to
    ``norm_gamma_init`` (the stock init is 1.0), which left the all-grey plateau sooner in the pilots
    (21.9 vs 19.4 dB after 50 steps, 24.6 vs 24.0 dB after 150; see docs/demo-training.md).
    """
    from diffusers import AutoencoderKLWan
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanRMS_norm

    torch.manual_seed(seed)
    z_dim = VAE_CONFIG["z_dim"]
    vae = AutoencoderKLWan(**VAE_CONFIG, latents_mean=[0.0] * z_dim, latents_std=[1.0] * z_dim)
    with torch.no_grad():
        for name, module in vae.named_modules():
            if isinstance(module, WanRMS_norm) and not name.endswith("norm_out"):
                module.gamma.mul_(norm_gamma_init)
    return vae


def _psnr(reconstruction: Tensor, target: Tensor) -> Tensor:
    """PSNR in dB per item for values in [0, 1], reduced over all but the first dimension."""
    mse = (reconstruction - target).pow(2).flatten(1).mean(dim=1).clamp(min=1e-12)
    return 10.0 * torch.log10(1.0 / mse)


@torch.no_grad()
def evaluate_vae(vae: Any, clips: int, seed: int, batch_size: int = 32) -> dict[str, Any]:
    """PSNR (dB, [0, 1] range) of reconstructions through the posterior mean, overall and per frame."""
    vae.eval()
    videos, _ = sample_clips(clips, seed)
    squared: list[Tensor] = []
    for start in range(0, clips, batch_size):
        x = videos[start : start + batch_size]
        z = vae.encode(2 * x - 1).latent_dist.mean
        y = ((vae.decode(z).sample + 1) / 2).clamp(0, 1)  # the pipeline's postprocessing clamps too
        squared.append((y - x).pow(2))
    err = torch.cat(squared)  # (n, 3, F, H, W)
    per_frame = 10 * torch.log10(1.0 / err.mean(dim=(0, 1, 3, 4)))
    per_clip = 10 * torch.log10(1.0 / err.flatten(1).mean(dim=1))
    return {
        "psnr_db": round(float(10 * torch.log10(1.0 / err.mean())), 3),
        "psnr_db_mean_of_clips": round(float(per_clip.mean()), 3),
        "psnr_db_worst_clip": round(float(per_clip.min()), 3),
        "psnr_db_per_frame": [round(float(v), 3) for v in per_frame],
        "clips": clips,
    }


def foreground_weight(x: Tensor, weight: float) -> Tensor:
    """Per-pixel loss weight ``1 + weight`` on pixels of the shape (any channel > 0.1 from grey in [0, 1] units)."""
    return 1.0 + weight * (x.abs().amax(dim=1, keepdim=True) > 0.2).to(x.dtype)  # x in [-1, 1]


def train_vae(vae: Any, cfg: TrainConfig) -> dict[str, Any]:
    """Train the VAE on 9-frame clips through the posterior mean.

    Loss: ``mean(w * (|r - x| + (r - x)^2)) + vae_kl_weight * KL`` with ``w`` = :func:`foreground_weight`
    (plain L1/L2 is dominated by the grey background and sits on the all-grey solution for hundreds of
    steps). Batch PSNR is logged in [0, 1] units.
    """
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, betas=(0.9, 0.99), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _cosine_lr(s, cfg.vae_steps, min(50, cfg.vae_steps // 10 + 1), floor=0.02)
    )
    progress = _Progress("vae", cfg.vae_steps, cfg.log_every)
    for step in range(cfg.vae_steps):
        videos, _ = sample_clips(cfg.vae_batch_size, stream_seed(cfg.seed, _S_VAE_TRAIN, step))
        x = 2 * videos - 1
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.mean).sample
        diff = recon - x
        w = foreground_weight(x, cfg.vae_foreground_weight)
        rec = (w * (diff.abs() + diff.pow(2))).mean()
        kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
        loss = rec + cfg.vae_kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        # PSNR of this batch in [0, 1] units: the MSE on [-1, 1] is 4x the MSE on [0, 1].
        mse_value = float(diff.detach().pow(2).mean())
        progress.update(step, loss=float(rec.detach()), kl=float(kl.detach()), psnr=10 * math.log10(4.0 / mse_value))
    vae.eval()
    return {"loss_curve": progress.history, "wall_s": round(progress.elapsed, 1)}


@torch.no_grad()
def latent_statistics(vae: Any, clips: int, seed: int, batch_size: int = 64) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of posterior-mean latents of ``clips`` fresh clips."""
    vae.eval()
    videos, _ = sample_clips(clips, seed)
    latents = torch.cat(
        [vae.encode(2 * videos[s : s + batch_size] - 1).latent_dist.mean for s in range(0, clips, batch_size)]
    )
    channels = latents.transpose(0, 1).flatten(1)
    return channels.mean(dim=1).tolist(), channels.std(dim=1).tolist()


@torch.no_grad()
def encode_pool(vae: Any, clips: int, seed: int, batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """Normalised latents ``(clips, z, 5, 16, 16)`` of a fixed training pool and their prompt ids.

    Prompts cycle through :data:`PROMPTS` so every prompt is equally represented; latents are the
    posterior means normalised with the VAE config's ``latents_mean``/``latents_std`` (what the
    pipeline un-normalises before decoding).
    """
    vae.eval()
    z_dim = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean).view(1, z_dim, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, z_dim, 1, 1, 1)
    out: list[Tensor] = []
    ids: list[int] = []
    start_time = time.perf_counter()
    for start in range(0, clips, batch_size):
        n = min(batch_size, clips - start)
        prompts = [PROMPTS[(start + i) % len(PROMPTS)] for i in range(n)]
        videos, _ = sample_clips(n, seed + start, prompts)
        z = vae.encode(2 * videos - 1).latent_dist.mean
        out.append((z - mean) / std)
        ids.extend(PROMPTS.index(p) for p in prompts)
        if (start // batch_size) % 40 == 0:
            _log(f"encoding latent pool {start + n}/{clips} ({_fmt_duration(time.perf_counter() - start_time)})")
    return torch.cat(out), torch.tensor(ids, dtype=torch.long)


# -------------------------------------------------------------------------------------- transformers


def build_transformer(config: dict[str, Any], seed: int) -> Any:
    """A ``WanTransformer3DModel`` from ``config`` initialised from ``seed``."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(**config)


def _flow_batch(
    latents: Tensor,
    ids: Tensor,
    embeds: Tensor,
    batch_size: int,
    cond_drop: float,
    generator: torch.Generator,
    sigma_shift: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One flow-matching batch: noisy latents, timesteps (1000 sigma), prompt embeddings, velocity target.

    ``sigma_shift`` > 1 moves the (stratified uniform) sigmas towards high noise with the flow-shift map
    ``shift * u / (1 + (shift - 1) u)``.
    """
    idx = torch.randint(latents.shape[0], (batch_size,), generator=generator)
    x0 = latents[idx]
    noise = torch.randn(x0.shape, generator=generator)
    # Stratified uniform sigmas (flow shift 1): one draw per equal-width bin, bins shuffled.
    bins = torch.randperm(batch_size, generator=generator).to(torch.float32)
    sigma = (bins + torch.rand(batch_size, generator=generator)) / batch_size
    if sigma_shift != 1.0:
        sigma = sigma_shift * sigma / (1.0 + (sigma_shift - 1.0) * sigma)
    s = sigma.view(-1, 1, 1, 1, 1)
    x_t = (1.0 - s) * x0 + s * noise
    target = noise - x0
    prompt_ids = ids[idx].clone()
    drop = torch.rand(batch_size, generator=generator) < cond_drop
    prompt_ids[drop] = embeds.shape[0] - 1  # the last row is the empty prompt ""
    return x_t, sigma * 1000.0, embeds[prompt_ids], target


def train_transformers(
    models: dict[str, nn.Module],
    latents: Tensor,
    ids: Tensor,
    embeds: Tensor,
    cfg: TrainConfig,
    checkpoint_dir: str | None = None,
    checkpoint_every: int = 250,
    phase: int = 1,
) -> dict[str, Any]:
    """Train ``models`` in lockstep on identical flow-matching batches; leave their EMA weights in them.

    With ``checkpoint_dir``, the EMA weights are also written to ``<checkpoint_dir>/<name>`` every
    ``checkpoint_every`` steps (a safety net for long runs; it does not change the result).
    ``phase=2`` is the warm restart: ``finetune_steps`` steps at ``finetune_lr`` with sigmas shifted
    towards high noise by ``finetune_sigma_shift`` (where identity and motion are decided), on a batch
    stream of its own, with a fresh optimiser and EMA. ``phase=3`` is a second one: ``refine_steps`` at
    ``refine_lr``, same shift, a batch stream of its own.
    """
    # Per phase: steps, learning rate, batch stream index (1 is the held-out validation noise).
    phases = {
        1: (cfg.steps, cfg.lr, 0),
        2: (cfg.finetune_steps, cfg.finetune_lr, 2),
        3: (cfg.refine_steps, cfg.refine_lr, 3),
    }
    if phase not in phases:
        raise ValueError(f"`phase` must be 1, 2 or 3, got {phase!r}.")
    steps, lr, stream = phases[phase]
    shift = 1.0 if phase == 1 else cfg.finetune_sigma_shift
    warmup = cfg.warmup_steps if phase == 1 else min(cfg.warmup_steps, max(1, steps // 10))
    opts, scheds, emas = {}, {}, {}
    for name, model in models.items():
        model.train()
        opts[name] = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
        scheds[name] = torch.optim.lr_scheduler.LambdaLR(opts[name], lambda s: _cosine_lr(s, steps, warmup))
        emas[name] = Ema(model, cfg.ema_decay)
    generator = torch.Generator().manual_seed(stream_seed(cfg.seed, _S_DIFFUSION, stream))
    progress = _Progress(f"transformer[{'+'.join(models)}] phase {phase}", steps, cfg.log_every)
    seconds = dict.fromkeys(models, 0.0)
    for step in range(steps):
        x_t, timestep, cond, target = _flow_batch(
            latents, ids, embeds, cfg.batch_size, cfg.cond_drop, generator, sigma_shift=shift
        )
        losses = {}
        for name, model in models.items():
            t0 = time.perf_counter()
            pred = model(hidden_states=x_t, timestep=timestep, encoder_hidden_states=cond, return_dict=False)[0]
            loss = (pred.float() - target).pow(2).mean()
            opts[name].zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opts[name].step()
            scheds[name].step()
            emas[name].update(model)
            seconds[name] += time.perf_counter() - t0
            losses[f"loss_{name}"] = float(loss.detach())
        progress.update(step, **losses)
        if checkpoint_dir is not None and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            import copy

            for name, model in models.items():
                snapshot = copy.deepcopy(model)
                emas[name].copy_to(snapshot)
                snapshot.save_pretrained(Path(checkpoint_dir) / name, safe_serialization=True)
                (Path(checkpoint_dir) / name / "step.txt").write_text(f"phase {phase} step {step + 1}")
    for name, model in models.items():
        emas[name].copy_to(model)
        model.eval()
    return {
        "loss_curve": progress.history,
        "wall_s": round(progress.elapsed, 1),
        "train_seconds_per_model": {k: round(v, 1) for k, v in seconds.items()},
    }


def _transformer_worker(
    name: str,
    config: dict[str, Any],
    init_seed: int,
    latents: Tensor,
    ids: Tensor,
    embeds: Tensor,
    cfg: TrainConfig,
    out_dir: str,
    resume_dir: str | None = None,
) -> None:
    """Process entry point: train one transformer on the run's shared batch stream; save it and its record.

    Phase 1 from scratch (or, with ``resume_dir``, phase 1's EMA weights loaded from an earlier run of this
    script with the same seed and config), then phase 2 (the warm restart) if ``cfg.finetune_steps`` > 0
    and phase 3 (the second one) if ``cfg.refine_steps`` > 0 and ``name`` is in ``cfg.refine_models``.

    Every worker draws its batches from the same seeded generator, so the models see identical batches,
    noise, sigmas and prompt drops (lockstep) while each runs on its own core.
    """
    configure_torch(cfg.threads)
    result: dict[str, Any] = {}
    if resume_dir is None:
        model = build_transformer(config, init_seed)
        result["phase1"] = train_transformers(
            {name: model}, latents, ids, embeds, cfg, checkpoint_dir=str(Path(out_dir) / "checkpoint")
        )
        model.save_pretrained(Path(out_dir) / "phase1", safe_serialization=True)
    else:
        from diffusers import WanTransformer3DModel

        model = WanTransformer3DModel.from_pretrained(resume_dir)
        result["phase1"] = {"resumed_from": str(resume_dir)}
    if cfg.finetune_steps > 0:
        result["phase2"] = train_transformers(
            {name: model}, latents, ids, embeds, cfg, checkpoint_dir=str(Path(out_dir) / "checkpoint"), phase=2
        )
    if cfg.refine_steps > 0 and name in cfg.refine_models:
        result["phase3"] = train_transformers(
            {name: model}, latents, ids, embeds, cfg, checkpoint_dir=str(Path(out_dir) / "checkpoint"), phase=3
        )
    model.save_pretrained(out_dir, safe_serialization=True)
    (Path(out_dir) / "result.json").write_text(json.dumps(result))


def _start_transformer_workers(
    configs: dict[str, tuple[dict[str, Any], int]],
    latents: Tensor,
    ids: Tensor,
    embeds: Tensor,
    cfg: TrainConfig,
    scratch: Path,
    resume: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Start one spawned process per transformer (see :func:`_transformer_worker`); return the processes."""
    import importlib

    # Refer to the worker through the importable module (not ``__main__``) so spawn can pickle it.
    worker = importlib.import_module("scripts.train_demo")._transformer_worker
    ctx = torch.multiprocessing.get_context("spawn")
    processes = {}
    for name, (config, init_seed) in configs.items():
        out_dir = scratch / name
        out_dir.mkdir(parents=True, exist_ok=True)
        processes[name] = ctx.Process(
            target=worker,
            args=(name, config, init_seed, latents, ids, embeds, cfg, str(out_dir), (resume or {}).get(name)),
            name=f"demo-train-{name}",
        )
        processes[name].start()
    return processes


def _join_transformer_worker(process: Any, name: str, scratch: Path) -> tuple[Any, dict[str, Any]]:
    """Wait for a worker; load its EMA model (eval mode) and its training record."""
    from diffusers import WanTransformer3DModel

    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"training the {name} transformer failed (worker exit code {process.exitcode}).")
    model = WanTransformer3DModel.from_pretrained(scratch / name).eval()
    return model, json.loads((scratch / name / "result.json").read_text())


@torch.no_grad()
def flow_validation_loss(
    model: nn.Module, latents: Tensor, ids: Tensor, embeds: Tensor, seed: int, batches: int = 8
) -> dict[str, float]:
    """Mean flow-matching loss on fixed held-out noise, overall and for low/mid/high sigma thirds."""
    generator = torch.Generator().manual_seed(seed)
    sums = {"all": 0.0, "sigma<1/3": 0.0, "1/3<=sigma<2/3": 0.0, "sigma>=2/3": 0.0}
    counts = dict.fromkeys(sums, 0)
    model.eval()
    for _ in range(batches):
        x_t, timestep, cond, target = _flow_batch(latents, ids, embeds, 48, 0.0, generator)
        pred = model(hidden_states=x_t, timestep=timestep, encoder_hidden_states=cond, return_dict=False)[0]
        per_item = (pred - target).pow(2).flatten(1).mean(dim=1)
        sigma = timestep / 1000.0
        for key, mask in (
            ("all", torch.ones_like(sigma, dtype=torch.bool)),
            ("sigma<1/3", sigma < 1 / 3),
            ("1/3<=sigma<2/3", (sigma >= 1 / 3) & (sigma < 2 / 3)),
            ("sigma>=2/3", sigma >= 2 / 3),
        ):
            sums[key] += float(per_item[mask].sum())
            counts[key] += int(mask.sum())
    return {k: round(sums[k] / max(1, counts[k]), 5) for k in sums}


# ------------------------------------------------------------------------------------- feature model


def build_feature_model(seed: int) -> Any:
    """Tiny ``Dinov2ForImageClassification`` over the 12 colour-shape classes, initialised from ``seed``."""
    from transformers import Dinov2Config, Dinov2ForImageClassification

    torch.manual_seed(seed)
    names = class_names()
    config = Dinov2Config(
        **FEATURE_MODEL_CONFIG,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
    )
    return Dinov2ForImageClassification(config)


def build_image_processor() -> Any:
    """DINOv2-style processor for 32x32 frames (no crop; ImageNet mean/std); loads without torchvision."""
    from transformers import BitImageProcessor

    return BitImageProcessor(
        do_resize=True,
        size={"height": SIZE, "width": SIZE},
        resample=3,
        do_center_crop=False,
        crop_size={"height": SIZE, "width": SIZE},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(IMAGE_MEAN),
        image_std=list(IMAGE_STD),
        do_convert_rgb=True,
    )


def normalise_frames(frames: Tensor) -> Tensor:
    """What the saved image processor does to 32x32 frames in [0, 1]: round to uint8, rescale, normalise."""
    quantised = (frames.clamp(0, 1) * 255).round() / 255
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (quantised - mean) / std


def _blur(frames: Tensor, sigma: Tensor) -> Tensor:
    """Gaussian blur of each frame with its own ``sigma`` (5-tap separable kernel; sigma 0 = identity)."""
    offsets = torch.arange(-2, 3, dtype=torch.float32)
    s = sigma.clamp(min=1e-3).view(-1, 1)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / s) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (n, 5)
    n = frames.shape[0]
    x = frames.reshape(1, n * 3, SIZE, SIZE)
    kx = kernel.repeat_interleave(3, dim=0).view(n * 3, 1, 1, 5)
    ky = kernel.repeat_interleave(3, dim=0).view(n * 3, 1, 5, 1)
    x = nn.functional.conv2d(nn.functional.pad(x, (2, 2, 0, 0), mode="replicate"), kx, groups=n * 3)
    x = nn.functional.conv2d(nn.functional.pad(x, (0, 0, 2, 2), mode="replicate"), ky, groups=n * 3)
    return x.view(n, 3, SIZE, SIZE)


def _frame_batch(n: int, seed: int, augment: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` single frames (one random frame per clip), class labels and geometry targets (cx, cy, size)."""
    batch = sample_clips_with_geometry(n, seed)
    generator = torch.Generator().manual_seed(seed)
    frame = torch.randint(FRAMES, (n,), generator=generator)
    rows = torch.arange(n)
    frames = batch.videos[rows, :, frame]
    centre = batch.centres[rows, frame]
    geometry = torch.stack([centre[:, 0] / SIZE, centre[:, 1] / SIZE, batch.sizes / 6.0], dim=1)
    labels = torch.tensor([class_index(*parse_prompt(p)[:2]) for p in batch.prompts])
    if augment:
        # Half of the frames get a mild blur and pixel noise, like a decoder's output.
        which = torch.rand(n, generator=generator) < 0.5
        sigma = torch.rand(n, generator=generator) * 0.8 * which
        scale = 0.02 * torch.rand(n, generator=generator) * which
        noise = torch.randn(frames.shape, generator=generator) * scale.view(n, 1, 1, 1)
        frames = _blur(frames, sigma) + noise
    return normalise_frames(frames), labels, geometry


def train_feature_model(model: Any, cfg: TrainConfig) -> dict[str, Any]:
    """Train the feature model on real frames (half blurred/noisy): 12-way colour-shape cross-entropy plus a
    geometry regression (centre, size) on the CLS output, so its features see identity and layout.

    Only ``model.dinov2`` (the backbone, what the calibrator loads with ``AutoModel``) is saved; the heads
    are training aids.
    """
    hidden = model.config.hidden_size
    geometry_head = nn.Linear(hidden, 3)
    params = list(model.parameters()) + list(geometry_head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.feature_lr, betas=(0.9, 0.99), weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _cosine_lr(s, cfg.feature_steps, min(100, cfg.feature_steps // 10 + 1))
    )
    progress = _Progress("feature", cfg.feature_steps, cfg.log_every)
    model.train()
    for step in range(cfg.feature_steps):
        pixels, labels, geometry = _frame_batch(
            cfg.feature_batch_size, stream_seed(cfg.seed, _S_FEATURE_TRAIN, step), augment=True
        )
        tokens = model.dinov2(pixel_values=pixels).last_hidden_state
        cls = tokens[:, 0]
        logits = model.classifier(torch.cat([cls, tokens[:, 1:].mean(dim=1)], dim=1))
        ce = nn.functional.cross_entropy(logits, labels)
        geo = nn.functional.mse_loss(geometry_head(cls), geometry)
        loss = ce + geo
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        sched.step()
        acc = float((logits.argmax(dim=1) == labels).float().mean())
        progress.update(step, ce=float(ce.detach()), geometry=float(geo.detach()), acc=acc)
    model.eval()
    with torch.no_grad():
        pixels, labels, _ = _frame_batch(1024, stream_seed(cfg.seed, _S_FEATURE_EVAL), augment=False)
        accuracy = float((model(pixel_values=pixels).logits.argmax(dim=1) == labels).float().mean())
    return {
        "loss_curve": progress.history,
        "wall_s": round(progress.elapsed, 1),
        "heldout_frame_accuracy_of_training_head": round(accuracy, 4),
        "heldout_frames": 1024,
        "saved": "Dinov2Model backbone only (what calibrate.features loads with AutoModel); heads not saved",
    }


def _augment_frames(frames: Tensor, generator: torch.Generator) -> Tensor:
    """Judge augmentation: colour-channel permutation, contrast, blur (up to sigma 1.2) and pixel noise."""
    n = frames.shape[0]
    perms = torch.stack([torch.randperm(3, generator=generator) for _ in range(n)])
    frames = torch.gather(frames, 1, perms.view(n, 3, 1, 1).expand_as(frames))
    contrast = 0.6 + 0.6 * torch.rand(n, 1, 1, 1, generator=generator)
    frames = 0.5 + (frames - 0.5) * contrast
    which = torch.rand(n, generator=generator) < 0.7
    sigma = torch.rand(n, generator=generator) * 1.2 * which
    noise = torch.randn(frames.shape, generator=generator) * (0.04 * torch.rand(n, 1, 1, 1, generator=generator))
    return (_blur(frames, sigma) + noise).clamp(0, 1)


def train_judge(model: ShapeClassifier, cfg: TrainConfig) -> dict[str, Any]:
    """Train the judge's shape classifier on single real frames (augmented), cross-entropy over SHAPES."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.judge_lr, betas=(0.9, 0.99), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _cosine_lr(s, cfg.judge_steps, 50))
    progress = _Progress("judge", cfg.judge_steps, cfg.log_every)
    model.train()
    for step in range(cfg.judge_steps):
        seed = stream_seed(cfg.seed, _S_JUDGE_TRAIN, step)
        batch = sample_clips_with_geometry(cfg.judge_batch_size, seed)
        generator = torch.Generator().manual_seed(seed)
        frame = torch.randint(FRAMES, (cfg.judge_batch_size,), generator=generator)
        frames = batch.videos[torch.arange(cfg.judge_batch_size), :, frame]
        labels = torch.tensor([SHAPES.index(parse_prompt(p)[1]) for p in batch.prompts])
        logits = model(_augment_frames(frames, generator))
        loss = nn.functional.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        progress.update(step, ce=float(loss.detach()), acc=float((logits.argmax(dim=1) == labels).float().mean()))
    model.eval()
    videos, prompts = sample_clips(512, stream_seed(cfg.seed, _S_JUDGE_EVAL))
    real = judge_videos(videos, prompts, model, layout="CFHW")
    return {"loss_curve": progress.history, "wall_s": round(progress.elapsed, 1), "heldout_real_clips": real}


def _aux_worker(cfg: TrainConfig, out_dir: str) -> None:
    """Process entry point: train the judge's shape classifier and the feature model; save both and a record."""
    configure_torch(cfg.threads)
    out = Path(out_dir)
    judge = build_judge(stream_seed(cfg.seed, _S_INIT_JUDGE))
    judge_record = train_judge(judge, cfg)
    judge.save(out / "judge")
    feature_model = build_feature_model(stream_seed(cfg.seed, _S_INIT_FEATURE))
    feature_record = train_feature_model(feature_model, cfg)
    feature_model.dinov2.save_pretrained(out / "feature_model", safe_serialization=True)
    build_image_processor().save_pretrained(out / "feature_model")
    record = {
        "judge": judge_record,
        "feature_model": feature_record,
        "parameters": {"judge": count_parameters(judge), "feature_model": count_parameters(feature_model.dinov2)},
    }
    (out / "result.json").write_text(json.dumps(record))


def build_judge(seed: int) -> ShapeClassifier:
    """The judge's shape classifier initialised from ``seed``."""
    torch.manual_seed(seed)
    return ShapeClassifier()


@torch.no_grad()
def reconstruct(vae: Any, videos: Tensor, batch_size: int = 32) -> Tensor:
    """VAE reconstructions (posterior mean, clamped to [0, 1]) of clips ``(n, 3, F, H, W)`` in [0, 1]."""
    out = []
    for start in range(0, videos.shape[0], batch_size):
        x = videos[start : start + batch_size]
        out.append(((vae.decode(vae.encode(2 * x - 1).latent_dist.mean).sample + 1) / 2).clamp(0, 1))
    return torch.cat(out)


# --------------------------------------------------------------------------------------------- main


def _versions() -> dict[str, str]:
    import diffusers
    import tokenizers
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "platform": platform.platform(),
    }


def _portable_tokenizer_class(pipeline_dir: Path) -> None:
    """Name the saved tokenizer class ``PreTrainedTokenizerFast`` (in model_index.json and tokenizer_config.json).

    transformers 5 saves its fast tokenizers under the new class name ``TokenizersBackend``, which
    transformers 4.x (allowed by the project's ``transformers>=4.51``) does not have;
    ``PreTrainedTokenizerFast`` exists in both (in 5.x it is an alias of ``TokenizersBackend``) and loads
    the same ``tokenizer.json``.
    """
    index_path = pipeline_dir / "model_index.json"
    index = json.loads(index_path.read_text())
    index["tokenizer"] = ["transformers", "PreTrainedTokenizerFast"]
    _write_json(index_path, index)
    config_path = pipeline_dir / "tokenizer" / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config.pop("backend", None)
    _write_json(config_path, config)


def _write_json(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)


def _seed_record(cfg: TrainConfig) -> dict[str, Any]:
    return {
        "vae_train_batch_k": stream_seed(cfg.seed, _S_VAE_TRAIN, 0),
        "vae_eval": stream_seed(cfg.seed, _S_VAE_EVAL),
        "latent_stats": stream_seed(cfg.seed, _S_LATENT_STATS),
        "latent_pool": stream_seed(cfg.seed, _S_POOL),
        "diffusion_batches": stream_seed(cfg.seed, _S_DIFFUSION),
        "feature_train_batch_k": stream_seed(cfg.seed, _S_FEATURE_TRAIN, 0),
        "feature_eval": stream_seed(cfg.seed, _S_FEATURE_EVAL),
        "judge_train_batch_k": stream_seed(cfg.seed, _S_JUDGE_TRAIN, 0),
        "judge_eval": stream_seed(cfg.seed, _S_JUDGE_EVAL),
        "init": {
            "text_encoder": stream_seed(cfg.seed, _S_INIT_TEXT),
            "vae": stream_seed(cfg.seed, _S_INIT_VAE),
            "large": stream_seed(cfg.seed, _S_INIT_LARGE),
            "small": stream_seed(cfg.seed, _S_INIT_SMALL),
            "feature_model": stream_seed(cfg.seed, _S_INIT_FEATURE),
            "judge": stream_seed(cfg.seed, _S_INIT_JUDGE),
        },
    }


def train(
    cfg: TrainConfig,
    output: Path,
    evaluate: bool = True,
    argv: Sequence[str] | None = None,
    resume: Path | None = None,
) -> dict[str, Any]:
    """Run all stages and save the weights under ``output``; return the training record.

    ``resume`` (a development shortcut, recorded): take the VAE, the judge, the feature model and phase 1
    of both transformers from an earlier output of this script *with the same seed and config* (what a
    full run recomputes, deterministically) and run only the rest.
    """
    from diffusers import AutoencoderKLWan, WanPipeline

    configure_torch(cfg.threads)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "format_version": 2,
        "command": "python -m scripts.train_demo " + " ".join(argv or []),
        "config": asdict(cfg),
        "seed_streams": _seed_record(cfg),
        "versions": _versions(),
        "data": {
            "frames": FRAMES,
            "size": SIZE,
            "prompts": len(PROMPTS),
            "value_range": "[0, 1] (VAE input 2x - 1)",
            "colours": list(COLOURS),
            "shapes": list(SHAPES),
            "directions": list(DIRECTIONS),
            "texture": f"diagonal stripes, period {STRIPE_PERIOD} px, dark shade = {STRIPE_SHADE} x colour",
        },
        "generation_settings": {
            "max_sequence_length": MAX_SEQUENCE_LENGTH,
            "flow_shift": FLOW_SHIFT,
            "scheduler": "UniPCMultistepScheduler(prediction_type='flow_prediction', use_flow_sigmas=True)",
            "num_frames": FRAMES,
            "height": SIZE,
            "width": SIZE,
        },
    }
    wall: dict[str, float] = {}
    t_all = time.perf_counter()
    scratch = output / ".scratch"
    scratch.mkdir(parents=True, exist_ok=True)

    # 1. Text conditioning.
    t0 = time.perf_counter()
    tokenizer = build_tokenizer()
    text_encoder = build_text_encoder(len(tokenizer), stream_seed(cfg.seed, _S_INIT_TEXT))
    embeds = prompt_embeddings(tokenizer, text_encoder, [*PROMPTS, ""])
    wall["text"] = round(time.perf_counter() - t0, 1)
    _log(f"tokenizer ({len(tokenizer)} tokens) and text encoder ({count_parameters(text_encoder)} params) built")

    resumed_record: dict[str, Any] = {}
    if resume is not None:
        resume = Path(resume)
        resumed_record = json.loads((resume / "training.json").read_text())
        record["resumed_from"] = {
            "path": str(resume),
            "command": resumed_record.get("command"),
            "stages_taken": "VAE, judge, feature model, transformer phase 1",
        }
        t0 = time.perf_counter()
        vae = AutoencoderKLWan.from_pretrained(resume / "pipeline" / "vae").eval()
        vae_record = resumed_record["vae"]
        for name in ("judge", "feature_model"):
            shutil.copytree(resume / name, scratch / "aux" / name)
        aux_record = {
            "judge": {k: v for k, v in resumed_record["judge"].items() if k != "vae_reconstructions"},
            "feature_model": resumed_record["feature_model"],
            "parameters": {k: resumed_record["parameters"][k] for k in ("judge", "feature_model")},
        }
        wall.update({k: v for k, v in resumed_record.get("wall_seconds", {}).items() if k in ("vae", "text")})
        wall["judge_and_feature_model_process"] = resumed_record["wall_seconds"]["judge_and_feature_model_process"]
    else:
        # 2a. Judge + feature model in a second process, meanwhile 2b. the VAE here.
        ctx = torch.multiprocessing.get_context("spawn")
        import importlib

        aux_worker = importlib.import_module("scripts.train_demo")._aux_worker
        aux = ctx.Process(target=aux_worker, args=(cfg, str(scratch / "aux")), name="demo-train-aux")
        aux.start()
        t_aux = time.perf_counter()
        vae = build_vae(stream_seed(cfg.seed, _S_INIT_VAE))
        _log(f"training VAE ({count_parameters(vae)} params) for {cfg.vae_steps} steps of {cfg.vae_batch_size} clips")
        vae_record = train_vae(vae, cfg)
        t0 = time.perf_counter()
        vae_record["eval"] = evaluate_vae(vae, 256, stream_seed(cfg.seed, _S_VAE_EVAL))
        _log(
            f"VAE held-out PSNR {vae_record['eval']['psnr_db']:.2f} dB, "
            f"per frame {vae_record['eval']['psnr_db_per_frame']}"
        )
        mean, std = latent_statistics(vae, cfg.latent_stats_clips, stream_seed(cfg.seed, _S_LATENT_STATS))
        vae.register_to_config(latents_mean=[round(v, 6) for v in mean], latents_std=[round(v, 6) for v in std])
        vae_record["latents_mean"] = vae.config.latents_mean
        vae_record["latents_std"] = vae.config.latents_std
        aux.join()
        wall["judge_and_feature_model_process"] = round(time.perf_counter() - t_aux, 1)
        if aux.exitcode != 0:
            raise RuntimeError(f"training the judge / feature model failed (worker exit code {aux.exitcode}).")
        aux_record = json.loads((scratch / "aux" / "result.json").read_text())
    from calibrate.demo.judge import load_shape_classifier

    judge = load_shape_classifier(scratch / "aux" / "judge")
    latents, ids = encode_pool(vae, cfg.pool_clips, stream_seed(cfg.seed, _S_POOL))
    if resume is None:
        wall["vae"] = round(vae_record["wall_s"] + time.perf_counter() - t0, 1)
    vae_record["pool_normalised_std"] = round(float(latents.std()), 4)
    vae_record["latent_shape"] = list(latents.shape[1:])
    record["vae"] = vae_record
    _log(f"latent pool {tuple(latents.shape)}, normalised std {vae_record['pool_normalised_std']}")

    # 3. Transformers in lockstep, one process each.
    configs = {
        "large": (LARGE_TRANSFORMER_CONFIG, stream_seed(cfg.seed, _S_INIT_LARGE)),
        "small": (SMALL_TRANSFORMER_CONFIG, stream_seed(cfg.seed, _S_INIT_SMALL)),
    }
    record["parameters"] = {
        "text_encoder": count_parameters(text_encoder),
        "vae": count_parameters(vae),
        "large_transformer": count_parameters(build_transformer(LARGE_TRANSFORMER_CONFIG, 0)),
        "small_transformer": count_parameters(build_transformer(SMALL_TRANSFORMER_CONFIG, 0)),
        **aux_record["parameters"],
    }
    record["parameters"]["large_over_small"] = round(
        record["parameters"]["large_transformer"] / record["parameters"]["small_transformer"], 2
    )
    _log(
        f"training transformers in lockstep: large {record['parameters']['large_transformer']} params, "
        f"small {record['parameters']['small_transformer']} params, {cfg.steps} steps of {cfg.batch_size}"
    )
    t0 = time.perf_counter()
    resume_dirs = (
        None
        if resume is None
        else {"large": str(resume / "pipeline" / "transformer"), "small": str(resume / "small_transformer")}
    )
    processes = _start_transformer_workers(configs, latents, ids, embeds, cfg, scratch, resume_dirs)

    # Meanwhile: the judge on VAE reconstructions of held-out real clips (the VAE keeps every attribute?).
    videos, prompts = sample_clips(512, stream_seed(cfg.seed, _S_JUDGE_EVAL, 1))
    recon = reconstruct(vae, videos)
    aux_record["judge"]["vae_reconstructions"] = judge_videos(recon, prompts, judge, layout="CFHW")
    aux_record["judge"]["vae_reconstructions"]["clips"] = 512
    record["judge"] = aux_record["judge"]
    record["feature_model"] = aux_record["feature_model"]
    _log(
        f"judge on held-out real clips {aux_record['judge']['heldout_real_clips']}, "
        f"on their VAE reconstructions {aux_record['judge']['vae_reconstructions']}"
    )
    del videos, recon

    small, small_record = _join_transformer_worker(processes["small"], "small", scratch)
    wall["small_transformer_process"] = round(time.perf_counter() - t0, 1)
    large, large_record = _join_transformer_worker(processes["large"], "large", scratch)
    wall["large_transformer_process"] = round(time.perf_counter() - t0, 1)
    if resume is not None:
        for name, rec in (("large", large_record), ("small", small_record)):
            rec["phase1"] = resumed_record["transformers"][name]
        record["phase1_validation_loss_ema"] = resumed_record["transformers"].get("validation_loss_ema")
    tr_record = {
        "lockstep": "one process per model, identical batches from the same seeded generator",
        "large": large_record,
        "small": small_record,
    }
    val_seed = stream_seed(cfg.seed, _S_DIFFUSION, 1)
    val_latents, val_ids = encode_pool(vae, 512, stream_seed(cfg.seed, _S_POOL, 500_000))
    tr_record["validation_loss_ema"] = {
        name: flow_validation_loss(model, val_latents, val_ids, embeds, val_seed)
        for name, model in (("large", large), ("small", small))
    }
    _log(f"held-out flow loss (EMA weights): {tr_record['validation_loss_ema']}")
    record["transformers"] = tr_record
    wall["transformers"] = wall["large_transformer_process"]
    del latents

    # 4. Save (safetensors only).
    t0 = time.perf_counter()
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=build_scheduler(),
        transformer=large,
    )
    pipe.save_pretrained(output / "pipeline", safe_serialization=True)
    small.save_pretrained(output / "small_transformer", safe_serialization=True)
    for name in ("feature_model", "judge"):
        if (output / name).exists():
            shutil.rmtree(output / name)
        shutil.copytree(scratch / "aux" / name, output / name)
    _portable_tokenizer_class(output / "pipeline")
    shutil.rmtree(scratch)
    wall["save"] = round(time.perf_counter() - t0, 1)
    wall["total_training"] = round(time.perf_counter() - t_all, 1)
    record["wall_seconds"] = wall
    _write_json(output / "training.json", record)
    _log(f"saved to {output} (training wall time {_fmt_duration(wall['total_training'])})")

    if evaluate:
        from calibrate.demo.evaluate import run_evaluation

        record = run_evaluation(output)
    return record


def _names(value: str) -> tuple[str, ...]:
    """``"large,small"`` -> ``("large", "small")`` (validated by :class:`TrainConfig`)."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m scripts.train_demo",
        description="Train the FlowBlending demo pair (CPU, fixed seeds).",
    )
    parser.add_argument("--output", type=Path, required=True, help="output directory (e.g. calibrate/demo/weights)")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="transformer training steps")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="master seed")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="transformer batch size")
    parser.add_argument("--vae-steps", type=int, default=defaults.vae_steps, help="VAE training steps")
    parser.add_argument("--feature-steps", type=int, default=defaults.feature_steps, help="feature model steps")
    parser.add_argument("--judge-steps", type=int, default=defaults.judge_steps, help="judge shape classifier steps")
    parser.add_argument("--pool-clips", type=int, default=defaults.pool_clips, help="clips in the latent pool")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="torch intra-op threads")
    parser.add_argument("--log-every", type=int, default=defaults.log_every, help="steps between progress lines")
    parser.add_argument("--no-eval", action="store_true", help="skip the generation/accuracy evaluation")
    parser.add_argument("--finetune-steps", type=int, default=defaults.finetune_steps, help="phase-2 steps (0: none)")
    parser.add_argument("--refine-steps", type=int, default=defaults.refine_steps, help="phase-3 steps (0: none)")
    parser.add_argument(
        "--refine-models",
        type=_names,
        default=defaults.refine_models,
        help=f"comma-separated transformers phase 3 trains, from {','.join(TRANSFORMER_NAMES)} (default: large)",
    )
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        help="development shortcut: take VAE, judge, feature model and transformer phase 1 from this earlier output",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse_args(argv)
    try:
        cfg = TrainConfig(
            seed=args.seed,
            steps=args.steps,
            batch_size=args.batch_size,
            vae_steps=args.vae_steps,
            feature_steps=args.feature_steps,
            judge_steps=args.judge_steps,
            finetune_steps=args.finetune_steps,
            refine_steps=args.refine_steps,
            refine_models=args.refine_models,
            pool_clips=args.pool_clips,
            threads=args.threads,
            log_every=args.log_every,
        )
    except ValueError as exc:  # one line naming the field, as argparse reports a bad flag
        raise SystemExit(f"python -m scripts.train_demo: error: {exc}") from None
    train(cfg, args.output, evaluate=not args.no_eval, argv=argv, resume=args.resume)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
