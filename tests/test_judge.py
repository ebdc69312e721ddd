"""The demo judge: exact analytic parts on real clips, and the shipped classifier on VAE reconstructions."""

from __future__ import annotations

import pytest
import torch

from calibrate.demo import PIPELINE_DIR
from calibrate.demo.data import (
    COLOURS,
    DIRECTIONS,
    PROMPTS,
    SHAPES,
    centroid_direction,
    foreground_fraction,
    parse_prompt,
    sample_clips,
    size_score,
)
from calibrate.demo.judge import (
    JUDGE_DIR,
    ShapeClassifier,
    colour_of,
    judge_videos,
    load_shape_classifier,
    paired_difference,
)


def _every_class(per_prompt: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    return sample_clips(len(PROMPTS) * per_prompt, seed, [p for p in PROMPTS for _ in range(per_prompt)])


def test_analytic_parts_are_exact_on_real_clips_of_every_class():
    videos, prompts = _every_class(3, 101)
    truth = [parse_prompt(p) for p in prompts]
    for colour in COLOURS:
        got = [colour_of(v, layout="CFHW") for v, t in zip(videos, truth, strict=True) if t[0] == colour]
        assert got == [colour] * len(got)
    for direction in DIRECTIONS:
        got = [centroid_direction(v) for v, t in zip(videos, truth, strict=True) if t[2] == direction]
        assert got == [direction] * len(got)
    # The same through the pipeline's layout (B, F, 3, H, W).
    fchw = videos.permute(0, 2, 1, 3, 4)
    assert [colour_of(v) for v in fchw] == [t[0] for t in truth]


def test_colour_of_a_blank_video_is_none():
    assert colour_of(torch.full((9, 3, 32, 32), 0.5)) == "none"


def test_judge_checks_its_inputs(tmp_path):
    model = ShapeClassifier()
    model.save(tmp_path)
    loaded = load_shape_classifier(tmp_path)
    x = torch.rand(4, 3, 32, 32)
    assert torch.allclose(model.eval()(x), loaded(x))
    videos, prompts = sample_clips(2, 0)
    with pytest.raises(ValueError, match="prompts"):
        judge_videos(videos, prompts[:1], loaded, layout="CFHW")


@pytest.mark.skipif(not (JUDGE_DIR / "model.safetensors").exists(), reason="shipped judge weights missing")
def test_shipped_judge_on_real_clips_of_every_class():
    videos, prompts = _every_class(2, 202)
    result = judge_videos(videos, prompts, layout="CFHW")
    assert result["colour"] == 1.0 and result["direction"] == 1.0
    assert result["shape"] >= 0.99
    for shape in SHAPES:
        rows = [i for i, p in enumerate(prompts) if parse_prompt(p)[1] == shape]
        assert judge_videos(videos[rows], [prompts[i] for i in rows], layout="CFHW")["shape"] >= 0.98


@pytest.mark.slow
@pytest.mark.skipif(not (JUDGE_DIR / "model.safetensors").exists(), reason="shipped judge weights missing")
def test_shipped_vae_keeps_every_attribute_for_the_judge():
    from diffusers import AutoencoderKLWan

    torch.set_flush_denormal(True)
    vae = AutoencoderKLWan.from_pretrained(PIPELINE_DIR / "vae", local_files_only=True).eval()
    videos, prompts = sample_clips(96, 303)
    with torch.no_grad():
        recon = ((vae.decode(vae.encode(2 * videos - 1).latent_dist.mean).sample + 1) / 2).clamp(0, 1)
    psnr = float(10 * torch.log10(1 / (recon - videos).pow(2).mean()))
    result = judge_videos(recon, prompts, layout="CFHW")
    assert psnr >= 32.0, psnr
    assert result["all"] >= 0.97, result
    # stripe energy of the reconstructions relative to real clips: 1.12 measured (the VAE keeps the stripes,
    # slightly over-sharpened); a VAE that blurred them would score well below 1
    assert 0.8 <= result["detail"] <= 1.3, result
    # the shapes' area relative to real clips: 1.12 measured (the VAE's ringing next to the edges), the floor a
    # generated video can reach; a VAE that smeared the shapes would score far higher
    assert 1.0 <= result["size"] <= 1.25, result


def test_judge_videos_reports_size_in_either_layout():
    videos, prompts = sample_clips(16, 8)
    cfhw = judge_videos(videos, prompts, layout="CFHW")
    fchw = judge_videos(videos.permute(0, 2, 1, 3, 4), prompts)
    assert cfhw["size"] == fchw["size"] == round(size_score(videos, prompts), 4)
    assert 0.8 < cfhw["size"] < 1.2  # real clips against other real clips of the same prompts


@pytest.mark.skipif(not (JUDGE_DIR / "model.safetensors").exists(), reason="shipped judge weights missing")
def test_per_video_verdicts_match_the_pooled_scores():
    videos, prompts = sample_clips(12, 9)
    # a blank first video: its colour is "none", so it is wrong, and it covers no pixels
    videos[0] = 0.5
    result = judge_videos(videos, prompts, layout="CFHW", per_video=True)
    assert result["right"][0] == 0 and result["foreground"][0] == 0.0
    assert result["right"][1:] == [1] * 11  # real clips: the shipped judge gets every attribute right
    assert round(sum(result["right"]) / 12, 4) == result["all"]
    assert result["foreground"] == [round(float(f), 5) for f in foreground_fraction(videos)]
    assert "right" not in judge_videos(videos, prompts, layout="CFHW")


def test_paired_difference_averages_each_prompt_over_seeds_first():
    # per seed: [1, 0, 0] and [0, 1, 0]; per prompt [0.5, 0.5, 0]: mean 1/3, sample std sqrt(1/12), SE 1/6
    mean, se = paired_difference([[1, 0, 1], [1, 1, 1]], [[0, 0, 1], [1, 0, 1]])
    assert mean == pytest.approx(1 / 3) and se == pytest.approx(1 / 6)
    assert paired_difference([[2.0], [4.0]], [[1.0], [1.0]]) == (2.0, 0.0)  # one prompt: no spread to measure
    with pytest.raises(ValueError, match=r"same shape, got \(2, 3\) and \(2, 2\)"):
        paired_difference([[1, 0, 1], [1, 1, 1]], [[0, 0], [1, 0]])
