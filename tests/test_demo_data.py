"""The demo distribution v2: reproducible clips, prompt helpers, centroid direction, the detail and size scores."""

from __future__ import annotations

import math

import pytest
import torch

from calibrate.demo.data import (
    BACKGROUND,
    COLOURS,
    DIRECTIONS,
    FRAMES,
    PROMPTS,
    SHAPES,
    SIZE,
    centroid_direction,
    detail_energy,
    detail_score,
    foreground_fraction,
    parse_prompt,
    prompt_for,
    reference_frames,
    sample_clips,
    sample_clips_with_geometry,
    size_score,
)


def test_prompts_cover_every_attribute_combination():
    assert len(PROMPTS) == len(COLOURS) * len(SHAPES) * len(DIRECTIONS) == 48
    assert len(set(PROMPTS)) == len(PROMPTS)
    assert "a red circle moving left" in PROMPTS
    for prompt in PROMPTS:
        assert prompt_for(*parse_prompt(prompt)) == prompt


@pytest.mark.parametrize("bad", ["a red circle", "a purple circle moving left", "a red star moving left", ""])
def test_parse_prompt_rejects_other_text(bad):
    with pytest.raises(ValueError):
        parse_prompt(bad)


def test_sample_clips_is_reproducible_and_in_range():
    a, pa = sample_clips(6, 3)
    b, pb = sample_clips(6, 3)
    c, _ = sample_clips(6, 4)
    assert a.shape == (6, 3, FRAMES, SIZE, SIZE) and a.dtype == torch.float32
    assert torch.equal(a, b) and pa == pb and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # The background is exactly grey; corners are background for every clip and frame.
    assert torch.all(a[:, :, :, 0, 0] == BACKGROUND)


def test_prompts_list_is_cycled():
    _, prompts = sample_clips(5, 0, prompts=[PROMPTS[3], PROMPTS[7]])
    assert prompts == [PROMPTS[3], PROMPTS[7], PROMPTS[3], PROMPTS[7], PROMPTS[3]]


def test_shapes_are_striped_with_a_darker_shade():
    batch = sample_clips_with_geometry(8, 11, prompts=["a red bar moving right"])
    video = batch.videos
    red = video[:, 0]
    inside = (video - BACKGROUND).abs().amax(dim=1) > 0.3
    values = red[inside]
    # Both the colour (0.9) and its dark shade (0.45) are present inside every shape.
    assert (values > 0.85).any() and ((values > 0.40) & (values < 0.50)).any()
    assert batch.phases.shape == (8,)


def test_centroid_direction_is_exact_on_real_clips():
    prompts = [p for p in PROMPTS for _ in range(4)]
    videos, prompts = sample_clips(len(prompts), 5, prompts)
    assert [centroid_direction(v) for v in videos] == [parse_prompt(p)[2] for p in prompts]


def test_detail_score_is_one_on_real_and_low_when_blurred():
    videos, prompts = sample_clips(96, 21)
    assert abs(detail_score(videos, prompts, layout="CFHW") - 1.0) < 0.1
    assert detail_score(videos, prompts) == detail_score(videos, prompts)  # pure
    frames = videos.permute(0, 2, 1, 3, 4).reshape(-1, 3, SIZE, SIZE)
    blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(frames, (1, 1, 1, 1), mode="replicate"), 3, 1)
    blurred = blurred.view(96, FRAMES, 3, SIZE, SIZE)
    assert detail_score(blurred, prompts, layout="FCHW") < 0.5
    assert detail_energy(torch.full((2, 3, FRAMES, SIZE, SIZE), 0.5)).abs().max() == 0


def test_detail_score_does_not_count_noise():
    videos, prompts = sample_clips(96, 21)
    generator = torch.Generator().manual_seed(3)
    noise = 0.05 * torch.randn(videos.shape, generator=generator)
    # Noise on top of sharp stripes leaves the score where it was; noise on a flat grey frame scores about 0.
    assert abs(detail_score(videos + noise, prompts) - detail_score(videos, prompts)) < 0.05
    assert abs(detail_score(torch.full_like(videos, 0.5) + noise, prompts)) < 0.02


def test_detail_energy_is_the_stripe_band_by_hand():
    # A pure diagonal wave of the stripes' period along the stripes' diagonal puts all its power in the band:
    # amplitude a gives mean square a^2 / 2 per pixel; the same wave along the other diagonal scores -a^2 / 2.
    pixel = torch.arange(SIZE, dtype=torch.float64)
    # Period 8 px along x and y (an exact FFT bin), 5.7 px across the stripes: inside the band around 4 px.
    along = (pixel.view(1, -1) + pixel.view(-1, 1)) * 2 * math.pi / 8
    mirrored = (pixel.view(1, -1) - pixel.view(-1, 1)) * 2 * math.pi / 8
    for wave, sign in ((along, 1.0), (mirrored, -1.0)):
        video = (0.5 + 0.2 * torch.cos(wave)).to(torch.float32).expand(1, 3, FRAMES, SIZE, SIZE)
        assert abs(float(detail_energy(video)) - sign * 0.2**2 / 2) < 1e-6


def test_foreground_fraction_and_size_score_by_hand():
    # Grey frames with one bright block per frame: its area over the frame's, nothing below the threshold.
    video = torch.full((2, 3, FRAMES, SIZE, SIZE), BACKGROUND)
    video[0, 0, :, :4, :4] = BACKGROUND + 0.2  # 16 pixels, one channel off by more than 0.12
    video[1, 1, :, :4, :8] = BACKGROUND - 0.2  # 32 pixels
    video[1, 2, :, 10:20, 10:20] = BACKGROUND + 0.1  # below the threshold: not foreground
    assert foreground_fraction(video).tolist() == [16 / SIZE**2, 32 / SIZE**2]
    assert foreground_fraction(video.permute(0, 2, 1, 3, 4), "FCHW").tolist() == [16 / SIZE**2, 32 / SIZE**2]
    # Against the first video as the reference, the second covers twice its area, both together 1.5 times.
    assert size_score(video[1:], reference=video[:1]) == pytest.approx(2.0)
    assert size_score(video, reference=video[:1]) == pytest.approx(1.5)


def test_size_score_is_one_on_real_clips_and_grows_with_a_halo():
    videos, prompts = sample_clips(96, 21)
    assert abs(size_score(videos, prompts) - 1.0) < 0.1
    assert size_score(videos, reference=videos) == pytest.approx(1.0)
    # A 3x3 max filter of the deviation from grey grows every shape by a pixel all round (radius ~7 px to ~8 px:
    # about 1.3x the area), as a halo does.
    deviation = (videos.permute(0, 2, 1, 3, 4).reshape(-1, 3, SIZE, SIZE) - BACKGROUND).abs()
    grown = (BACKGROUND + torch.nn.functional.max_pool2d(deviation, 3, 1, padding=1)).view(96, FRAMES, 3, SIZE, SIZE)
    assert 1.2 < size_score(grown, prompts, layout="FCHW") < 1.6


def test_reference_frames_take_all_frames_of_each_clip():
    frames = reference_frames(20, 2)
    videos, _ = sample_clips(3, 2)
    assert frames.shape == (20, 3, SIZE, SIZE)
    assert torch.equal(frames[:FRAMES], videos[0].permute(1, 0, 2, 3))


def test_shapes_differ_in_coarse_layout():
    # The bar is 2.2x as wide as tall (half extents 1.1 and 0.5 x size), the circle round, the triangle pointed
    # up: measured on the rendered mask of the first frame, away from anti-aliased edges.
    batch = sample_clips_with_geometry(
        3, 4, prompts=["a red bar moving up", "a red circle moving up", "a red triangle moving up"]
    )
    mask = (batch.videos[:, :, 0] - BACKGROUND).abs().amax(dim=1) > 0.2  # (3, H, W) shape pixels of frame 0
    widths = mask.any(dim=1).sum(dim=1).tolist()
    heights = mask.any(dim=2).sum(dim=1).tolist()
    size = batch.sizes.tolist()
    assert abs(widths[0] - 2.2 * size[0]) <= 1.5 and abs(heights[0] - 1.0 * size[0]) <= 1.5
    assert abs(widths[1] - 2.0 * size[1]) <= 1.5 and abs(heights[1] - 2.0 * size[1]) <= 1.5
    # The triangle's rows get wider downwards (y points down): its top row is narrower than its bottom row.
    rows = mask[2].sum(dim=1)
    filled = rows.nonzero().flatten()
    assert rows[filled[1]] < rows[filled[-2]]
