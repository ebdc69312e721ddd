"""How much stripe detail survives a rank-r linear map onto the transformers' (1, 4, 4) latent patches.

Both demo transformers end in a linear projection from their width (large 128, small 64) onto the 256 latent
values of a patch (16 channels x 4 x 4), so their output patches lie in a subspace of that rank. This encodes
real clips with the shipped VAE, keeps the best rank-r subspace of their patches (SVD), decodes, and prints the
detail score (calibrate.demo.data.detail_score) and PSNR: if detail survives at rank 64, the output layer is
not what blurs the stripes. Results: docs/demo.md, "Other small models".

    python -m scripts.demo_patch_rank --clips 256 --ranks 256,128,64,32
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

VAE = Path(__file__).resolve().parents[1] / "calibrate" / "demo" / "weights" / "pipeline" / "vae"
PATCH = 4


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--ranks", type=_ints, default=[256, 128, 64, 32])
    parser.add_argument("--seed", type=int, default=4242, help="clip seed (not a training seed)")
    args = parser.parse_args()
    if args.clips < 2:
        parser.error(f"--clips must be at least 2, got {args.clips}")
    ranks = args.ranks
    if any(not 1 <= r <= 16 * PATCH * PATCH for r in ranks):
        parser.error(f"--ranks must lie in 1..{16 * PATCH * PATCH}, got {ranks}")

    from diffusers import AutoencoderKLWan

    from calibrate.demo.data import detail_score, sample_clips

    torch.set_num_threads(2)
    vae = AutoencoderKLWan.from_pretrained(VAE).eval()
    with torch.no_grad():
        videos, prompts = sample_clips(args.clips, args.seed)
        z = vae.encode(2 * videos - 1).latent_dist.mean
        n, c, f, h, w = z.shape
        shape = (n, c, f, h // PATCH, PATCH, w // PATCH, PATCH)
        patches = z.reshape(shape).permute(0, 2, 3, 5, 1, 4, 6).reshape(-1, c * PATCH * PATCH)
        mean = patches.mean(0)
        _, s, vt = torch.linalg.svd(patches - mean, full_matrices=False)
        for r in ranks:
            kept = (patches - mean) @ vt[:r].T @ vt[:r] + mean
            z_r = kept.reshape(n, f, h // PATCH, w // PATCH, c, PATCH, PATCH).permute(0, 4, 1, 2, 5, 3, 6)
            decoded = ((vae.decode(z_r.reshape(z.shape)).sample + 1) / 2).clamp(0, 1)
            psnr = -10 * torch.log10((decoded - videos).pow(2).mean())
            energy = float(s[:r].pow(2).sum() / s.pow(2).sum())
            print(
                f"rank {r:>3}: detail {detail_score(decoded, prompts):.3f}  PSNR {float(psnr):.2f} dB  "
                f"patch energy kept {energy:.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
