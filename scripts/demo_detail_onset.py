"""Where the demo's stripes are decided: each transformer denoises real latents noised to a step's sigma (SDEdit).

Real clips are encoded with the shipped VAE, noised to the sigma at which step ``k`` of the demo's 20-step
schedule starts (``x = (1 - sigma) z + sigma eps``), and denoised from step ``k`` to the end by one transformer
alone (guidance 4, the demo's scheduler). The judge scores the decoded videos (all attributes right, detail
score). ``k = 0`` is plain generation from pure noise (large-only and small-only). The first ``k`` at which a
model's output keeps the real clips' stripes tells from which noise level on the stripes are already fixed by
the trajectory; where the two models' detail differs most is where the small model costs detail.
Results: docs/demo.md, "Where the stripes are decided".

    python -m scripts.demo_detail_onset --clips 96 --output docs/demo-detail-onset.json      # about 2 min (9 starts)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from scripts.demo_schedule_grid import _floats

WEIGHTS = Path(__file__).resolve().parents[1] / "calibrate" / "demo" / "weights"


@torch.no_grad()
def denoise_from(
    model: torch.nn.Module,
    z0: torch.Tensor,
    step: int,
    embeds: tuple[torch.Tensor, torch.Tensor],
    guidance_scale: float,
    seed: int,
) -> tuple[torch.Tensor, float]:
    """Latents ``z0`` noised to the sigma of ``step``, then denoised by ``model`` from ``step`` to the end."""
    from calibrate.demo.evaluate import NUM_INFERENCE_STEPS, build_scheduler

    scheduler = build_scheduler()
    scheduler.set_timesteps(NUM_INFERENCE_STEPS)
    sigma = float(scheduler.sigmas[step])
    eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(seed))
    x = (1 - sigma) * z0 + sigma * eps
    cond, uncond = embeds
    for t in scheduler.timesteps[step:]:
        timestep = t.expand(x.shape[0])
        c = model(hidden_states=x, timestep=timestep, encoder_hidden_states=cond, return_dict=False)[0]
        u = model(hidden_states=x, timestep=timestep, encoder_hidden_states=uncond, return_dict=False)[0]
        x = scheduler.step(u + guidance_scale * (c - u), t, x, return_dict=False)[0]
    return x, sigma


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=96, help="real clips (cycling through the 48 prompts)")
    parser.add_argument(
        "--fractions",
        type=_floats,
        default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],
        help="start steps as fractions of the 20 steps (0 = from pure noise)",
    )
    parser.add_argument("--guidance-scale", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=4242, help="clip and noise seed (not a training seed)")
    parser.add_argument("--output", type=Path, default=None, help="write every figure as JSON here")
    parser.add_argument("--plot", type=Path, default=None, help="draw detail and accuracy against sigma (PNG)")
    args = parser.parse_args()
    if args.clips < 1:
        parser.error(f"--clips must be at least 1, got {args.clips}")
    if not args.fractions or any(not 0 <= f < 1 for f in args.fractions):
        parser.error(f"--fractions must lie in [0, 1), got {args.fractions}")

    from diffusers import WanTransformer3DModel

    from calibrate.demo.data import PROMPTS, sample_clips
    from calibrate.demo.evaluate import MAX_SEQUENCE_LENGTH, NUM_INFERENCE_STEPS, load_demo_pipeline
    from calibrate.demo.judge import judge_videos, load_shape_classifier

    torch.set_num_threads(2)
    pipe = load_demo_pipeline(WEIGHTS)
    models = {
        "large": pipe.transformer,
        "small": WanTransformer3DModel.from_pretrained(WEIGHTS / "small_transformer", local_files_only=True).eval(),
    }
    vae = pipe.vae
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.clips)]
    real, _ = sample_clips(args.clips, args.seed, prompts)
    judge = load_shape_classifier()
    with torch.no_grad():
        z0 = (vae.encode(2 * real - 1).latent_dist.mean - mean) / std
        embeds = pipe.encode_prompt(prompts, do_classifier_free_guidance=True, max_sequence_length=MAX_SEQUENCE_LENGTH)
        reconstructed = ((vae.decode(z0 * std + mean).sample + 1) / 2).clamp(0, 1)
    record = {
        "command": " ".join(["python -m scripts.demo_detail_onset", *sys.argv[1:]]),
        "clips": args.clips,
        "real": judge_videos(real, prompts, judge, layout="CFHW"),
        "reconstructed": judge_videos(reconstructed, prompts, judge, layout="CFHW"),
        "rows": [],
    }
    print(f"VAE reconstructions: detail {record['reconstructed']['detail']:.3f}", flush=True)
    for fraction in args.fractions:
        step = round(fraction * NUM_INFERENCE_STEPS)
        row = {"start_step": step, "fraction": fraction}
        for name, model in models.items():
            t0 = time.perf_counter()
            x, sigma = denoise_from(model, z0, step, embeds, args.guidance_scale, args.seed + 1)
            with torch.no_grad():
                videos = ((vae.decode(x * std + mean).sample + 1) / 2).clamp(0, 1)
            row["sigma"] = round(sigma, 4)
            row[name] = judge_videos(videos, prompts, judge, layout="CFHW")
            print(
                f"start step {step:>2} (sigma {sigma:.2f}) {name:>5}: all right {row[name]['all']:.3f}  "
                f"detail {row[name]['detail']:.3f}  ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        record["rows"].append(row)
    if args.output is not None:
        args.output.write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote {args.output}")
    if args.plot is not None:
        plot(record, args.plot)
        print(f"wrote {args.plot}")


def plot(record: dict, path: Path) -> None:
    """Detail (solid) and all-attributes accuracy (dashed) of each model against the start sigma."""
    from calibrate.report import _matplotlib

    fig = _matplotlib()(figsize=(7.5, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    sigmas = [row["sigma"] for row in record["rows"]]
    for name, colour in (("large", "tab:blue"), ("small", "tab:orange")):
        ax.plot(sigmas, [row[name]["detail"] for row in record["rows"]], "o-", color=colour, label=f"{name}: detail")
        ax.plot(sigmas, [row[name]["all"] for row in record["rows"]], "s--", color=colour, label=f"{name}: all right")
    ax.axhline(record["reconstructed"]["detail"], color="grey", lw=0.8, ls=":", label="VAE reconstructions: detail")
    ax.set_xlim(1.02, min(sigmas) - 0.02)
    ax.set_xlabel("sigma the real latent is noised to (denoising starts there; 1 = pure noise)")
    ax.set_ylabel("score")
    ax.set_title(f"Where the stripes are decided ({record['clips']} real clips, one model from there on)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
