"""Retrain only the demo pair's small transformer with another phase-2 length or sigma shift (an experiment).

Everything else is the shipped pair: the latent pool is encoded with the shipped VAE from the training run's
pool seed, the prompt embeddings come from the shipped text encoder, and the small transformer starts from the
training run's init seed and draws the run's batch stream, so the only change is the phase-2 setting. One
process per variant (one core each). Each variant lands in ``<output>/shift<s>-steps<n>/``; install one with

    cp <dir>/diffusion_pytorch_model.safetensors calibrate/demo/weights/small_transformer/

before ``flowblending demo`` or ``scripts/demo_schedule_grid.py``, and ``git checkout calibrate/demo/weights``
afterwards. Results: docs/demo.md, "Other small models".

    python -m scripts.demo_small_variants --shifts 1,0.333 --finetune-steps 6000 --output /tmp/small-variants
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from scripts.demo_schedule_grid import _floats

WEIGHTS = Path(__file__).resolve().parents[1] / "calibrate" / "demo" / "weights"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shifts", type=_floats, default=[1.0], help="phase-2 sigma shifts, one variant each")
    parser.add_argument("--finetune-steps", type=int, default=2000, help="phase-2 steps of every variant")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    if not args.shifts or any(s <= 0 for s in args.shifts):
        parser.error(f"--shifts must be positive numbers, got {args.shifts}")
    from scripts import train_demo as td

    base = td.TrainConfig()
    try:
        variants = {s: replace(base, finetune_sigma_shift=s, finetune_steps=args.finetune_steps) for s in args.shifts}
    except ValueError as error:
        parser.error(str(error))

    from diffusers import AutoencoderKLWan
    from transformers import AutoTokenizer, UMT5EncoderModel

    from calibrate.demo.data import PROMPTS

    torch.set_num_threads(2)
    with torch.no_grad():
        vae = AutoencoderKLWan.from_pretrained(WEIGHTS / "pipeline" / "vae").eval()
        latents, ids = td.encode_pool(vae, base.pool_clips, td.stream_seed(base.seed, td._S_POOL))
        tokenizer = AutoTokenizer.from_pretrained(WEIGHTS / "pipeline" / "tokenizer")
        text_encoder = UMT5EncoderModel.from_pretrained(WEIGHTS / "pipeline" / "text_encoder").eval()
        embeds = td.prompt_embeddings(tokenizer, text_encoder, [*PROMPTS, ""])
    ctx = torch.multiprocessing.get_context("spawn")
    init_seed = td.stream_seed(base.seed, td._S_INIT_SMALL)
    processes = {}
    for shift, cfg in variants.items():
        out = args.output / f"shift{shift:g}-steps{args.finetune_steps}"
        out.mkdir(parents=True, exist_ok=True)
        processes[out] = ctx.Process(
            target=td._transformer_worker,
            args=("small", td.SMALL_TRANSFORMER_CONFIG, init_seed, latents, ids, embeds, cfg, str(out), None),
        )
        processes[out].start()
    for out, process in processes.items():
        process.join()
        print(f"{out}: {'done' if process.exitcode == 0 else f'failed (exit code {process.exitcode})'}", flush=True)


if __name__ == "__main__":
    main()
