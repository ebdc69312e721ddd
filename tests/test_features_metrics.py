"""Frame features and metrics : tiny DINOv2/CLIP saved to a temp dir, fakes checked by hand."""

from __future__ import annotations

import importlib.util
import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from calibrate.features import (
    FeatureDependencyError,
    FeatureModelError,
    FeatureModelNotFoundError,
    FrameFeatures,
    HFImageFeatures,
    load_feature_extractor,
)
from calibrate.metrics import (
    FeatureFID,
    frame_similarity,
    frames_of,
    iter_reference_frames,
    load_reference_frames,
    psnr_ssim,
)

transformers = pytest.importorskip("transformers")


# ------------------------------------------------------------------------------------------ fixtures


def _save_processor(cls_name: str, path) -> None:
    # Without torchvision, transformers 5 has only the PIL backend (`...ImageProcessorPil`).
    cls = getattr(transformers, cls_name + "Pil", None) or getattr(transformers, cls_name)
    cls(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    from flowblending.testing import save_tiny_dinov2

    return save_tiny_dinov2(tmp_path_factory.mktemp("tiny-dinov2"))


@pytest.fixture(scope="module")
def dino(dino_dir):
    return load_feature_extractor(str(dino_dir))


def _clip_vision_config():
    return transformers.CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=16,
    )


@pytest.fixture(scope="module")
def clip_vision_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-clip-vision")
    torch.manual_seed(1)
    transformers.CLIPVisionModelWithProjection(_clip_vision_config()).save_pretrained(path)
    _save_processor("CLIPImageProcessor", path)
    return path


class MeanColor(FrameFeatures):
    """Feature = a frame's mean RGB colour, so cosine similarities can be worked out by hand."""

    def __init__(self) -> None:
        self.name, self.dim, self.batch_size = "mean-color", 3, 3

    def _extract(self, frames):
        return frames.mean(dim=(2, 3))


class Pixels(FrameFeatures):
    """Feature = the 2x2 frame's 12 pixel values, so FID of a shifted set is ||shift||^2 by hand."""

    def __init__(self, name: str = "pixels") -> None:
        self.name, self.dim, self.batch_size = name, 12, 7  # 7: chunks with a remainder

    def _extract(self, frames):
        return frames.flatten(1)


def _solid(colors) -> torch.Tensor:
    """Frames (N, 3, 16, 16) of solid RGB colours."""
    return torch.tensor(colors, dtype=torch.float32)[:, :, None, None].expand(-1, -1, 16, 16).clone()


def _pixel_sets(n: int = 200, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.2 + 0.5 * torch.rand(n, 3, 2, 2, generator=gen)


# ---------------------------------------------------------------------------------------- features


def test_tiny_dinov2_loads_from_dir_and_matches_cls_pooler(dino, dino_dir):
    assert isinstance(dino, HFImageFeatures)
    assert (dino.dim, dino.pooling, dino.model_type) == (32, "pooler_output", "dinov2")
    assert not dino.model.training
    frames = torch.rand(5, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    feats = dino(frames)
    assert feats.shape == (5, 32) and feats.dtype == torch.float32
    # Same numbers as the processor on 8-bit images (what a PNG would give) + the model's CLS pooler.
    processor = transformers.AutoImageProcessor.from_pretrained(dino_dir)
    model = transformers.AutoModel.from_pretrained(dino_dir).eval()
    uint8 = (frames * 255).round().to(torch.uint8)
    with torch.no_grad():
        expected = model(**processor(images=list(uint8), return_tensors="pt")).pooler_output
    torch.testing.assert_close(feats, expected, atol=1e-5, rtol=1e-5)


def test_chunking_does_not_change_features(dino_dir):
    frames = torch.rand(7, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    one = load_feature_extractor(str(dino_dir), batch_size=64)(frames)
    chunked = load_feature_extractor(str(dino_dir), batch_size=3)(frames)
    torch.testing.assert_close(chunked, one, atol=1e-5, rtol=1e-5)


def test_tiny_clip_vision_with_projection_gives_image_embeds(clip_vision_dir):
    clip = load_feature_extractor(str(clip_vision_dir))
    assert (clip.dim, clip.pooling) == (16, "image_embeds")  # projection_dim, not hidden_size 32
    frames = torch.rand(3, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    model = transformers.CLIPVisionModelWithProjection.from_pretrained(clip_vision_dir).eval()
    processor = transformers.AutoImageProcessor.from_pretrained(clip_vision_dir)
    uint8 = (frames * 255).round().to(torch.uint8)
    with torch.no_grad():
        expected = model(**processor(images=list(uint8), return_tensors="pt")).image_embeds
    torch.testing.assert_close(clip(frames), expected, atol=1e-5, rtol=1e-5)


def test_tiny_full_clip_model_uses_get_image_features(tmp_path):
    torch.manual_seed(3)
    config = transformers.CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
        },
        vision_config=_clip_vision_config().to_dict(),
        projection_dim=16,
    )
    transformers.CLIPModel(config).save_pretrained(tmp_path)
    _save_processor("CLIPImageProcessor", tmp_path)
    clip = load_feature_extractor(str(tmp_path))
    assert (clip.model_type, clip.dim, clip.pooling) == ("clip", 16, "get_image_features")
    assert clip(torch.rand(2, 3, 32, 32)).shape == (2, 16)


def test_missing_model_offline_is_one_clear_error():
    model_id = "flowblending-test/no-such-feature-model"
    with pytest.raises(FeatureModelNotFoundError) as info:
        load_feature_extractor(model_id, local_files_only=True)
    message = str(info.value)
    assert isinstance(info.value, FeatureModelError) and isinstance(info.value, RuntimeError)
    assert f"huggingface-cli download {model_id}" in message and "local directory" in message


def test_hf_hub_offline_is_respected(monkeypatch, dino_dir):
    from huggingface_hub import constants

    assert HFImageFeatures(str(dino_dir), local_files_only=None).local_files_only is constants.HF_HUB_OFFLINE
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert HFImageFeatures(str(dino_dir)).local_files_only is True
    with pytest.raises(FeatureModelNotFoundError, match="HF_HUB_OFFLINE"):
        HFImageFeatures("flowblending-test/no-such-feature-model")  # local_files_only=None follows the env


def test_missing_local_dir_and_missing_processor(tmp_path, dino_dir):
    with pytest.raises(FeatureModelNotFoundError, match="not an existing directory"):
        load_feature_extractor(str(tmp_path / "nowhere"))
    no_processor = tmp_path / "no-processor"
    transformers.Dinov2Model.from_pretrained(dino_dir).save_pretrained(no_processor)
    with pytest.raises(FeatureModelNotFoundError, match=r"image processor \(preprocessor_config.json\)"):
        load_feature_extractor(str(no_processor), local_files_only=True)


@pytest.mark.skipif(importlib.util.find_spec("torch_fidelity") is not None, reason="torch-fidelity installed")
def test_inception_without_torch_fidelity_gives_install_hint():
    with pytest.raises(FeatureDependencyError, match=r'pip install "flowblending\[inception\]"'):
        load_feature_extractor("inception")


def test_frames_must_be_rgb_in_unit_range(dino):
    with pytest.raises(ValueError, match=r"\(x \+ 1\) / 2"):
        dino(torch.full((2, 3, 32, 32), -0.5))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        dino(torch.rand(2, 32, 32, 3))


# ------------------------------------------------------------------------------------------ videos


def test_frames_of_keeps_batch_then_frame_order():
    b, f = 2, 4
    video = torch.zeros(b, f, 3, 4, 4)
    for i in range(b):
        for j in range(f):
            video[i, j] = (10 * i + j) / 100
    frames = frames_of(video)
    assert frames.shape == (8, 3, 4, 4)
    assert [round(float(x) * 100) for x in frames[:, 0, 0, 0]] == [0, 1, 2, 3, 10, 11, 12, 13]
    assert frames_of(video[0]).shape == (4, 3, 4, 4)  # one video (F, C, H, W)
    with pytest.raises(ValueError, match=r"permute\(0, 2, 1, 3, 4\)"):
        frames_of(video.permute(0, 2, 1, 3, 4))  # (B, C, F, H, W)
    uint8 = torch.full((1, 2, 3, 4, 4), 255, dtype=torch.uint8)
    assert torch.equal(frames_of(uint8), torch.ones(2, 3, 4, 4))


def test_frame_similarity_by_hand():
    # Video 0: red vs green (cos 0) then gray vs darker gray (cos 1) -> mean 0.5.
    # Video 1: red vs yellow (cos 1/sqrt 2) then blue vs blue (cos 1).
    a = torch.stack([_solid([[1, 0, 0], [0.5, 0.5, 0.5]]), _solid([[1, 0, 0], [0, 0, 1]])])
    b = torch.stack([_solid([[0, 1, 0], [0.2, 0.2, 0.2]]), _solid([[1, 1, 0], [0, 0, 1]])])
    sim = frame_similarity(MeanColor(), a, b)
    assert sim.dtype == torch.float64
    torch.testing.assert_close(sim, torch.tensor([0.5, (1 / math.sqrt(2) + 1) / 2], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"same batch and frame counts"):
        frame_similarity(MeanColor(), a, b[:, :1])


def test_frame_similarity_with_tiny_dinov2(dino):
    gen = torch.Generator().manual_seed(4)
    video = torch.rand(2, 3, 3, 40, 48, generator=gen)
    other = torch.rand(2, 3, 3, 40, 48, generator=gen) * 0.3
    self_sim = frame_similarity(dino, video, video)
    assert self_sim.shape == (2,)
    torch.testing.assert_close(self_sim, torch.ones(2, dtype=torch.float64), atol=1e-5, rtol=0)
    assert (frame_similarity(dino, video, other) < 1 - 1e-4).all()


def test_psnr_ssim_by_hand():
    same = torch.rand(1, 2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    psnr, ssim = psnr_ssim(same, same)
    assert torch.isinf(psnr).all() and psnr.item() > 0  # zero error: +inf, as torchmetrics defines it
    torch.testing.assert_close(ssim, torch.ones(1, dtype=torch.float64))

    # Constant frames 0.5 vs 0.6: MSE 0.01 -> PSNR 10 log10(1 / 0.01) = 20 dB;
    # SSIM = (2 * 0.5 * 0.6 + C1) / (0.5^2 + 0.6^2 + C1) with C1 = 0.01^2 (no variance, contrast term 1).
    a = torch.full((1, 1, 3, 16, 16), 0.5)
    psnr, ssim = psnr_ssim(a, a + 0.1)
    assert psnr.item() == pytest.approx(20.0, abs=1e-4)
    assert ssim.item() == pytest.approx((0.6 + 1e-4) / (0.61 + 1e-4), abs=1e-6)

    # Per-video mean over frames: offsets 0.1 (20 dB) and 0.01 (40 dB) -> 30 dB; 0.05 -> 26.02 dB.
    a = torch.full((2, 2, 3, 16, 16), 0.5)
    b = a.clone()
    b[0, 0] += 0.1
    b[0, 1] += 0.01
    b[1] += 0.05
    psnr, _ = psnr_ssim(a, b)
    torch.testing.assert_close(psnr, torch.tensor([30.0, 20 * math.log10(20)], dtype=torch.float64), atol=1e-3, rtol=0)


# --------------------------------------------------------------------------------------------- FID


def _manual_fid(x: torch.Tensor, y: torch.Tensor) -> float:
    from scipy import linalg

    x, y = x.double().numpy(), y.double().numpy()
    mu_x, mu_y = x.mean(0), y.mean(0)
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = linalg.sqrtm(cov_x @ cov_y).real
    return float(((mu_x - mu_y) ** 2).sum() + np.trace(cov_x + cov_y - 2 * covmean))


def test_fid_identical_zero_and_shift_by_hand():
    real = _pixel_sets(200, seed=0)
    fid = FeatureFID(Pixels())
    fid.update(real, real=True)
    fid.update(real, real=False)
    same = fid.compute()
    assert same.dtype == torch.float64 and abs(same.item()) < 1e-8
    fid.reset_fake()
    assert (fid.num_real, fid.num_fake) == (200, 0)
    fid.update(real + 0.1, real=False)  # same covariance, mean moved by 0.1 in 12 dims: FID = 12 * 0.1^2
    assert fid.compute().item() == pytest.approx(0.12, abs=1e-6)  # float32 frames
    other = _pixel_sets(150, seed=1)
    fid.reset_fake()
    fid.update(other, real=False)
    assert fid.compute().item() == pytest.approx(_manual_fid(real.flatten(1), other.flatten(1)), abs=1e-8)


def test_fid_merge_of_halves_equals_one_metric():
    real, fake = _pixel_sets(160, seed=2), _pixel_sets(120, seed=3) * 0.8 + 0.1
    whole = FeatureFID(Pixels())
    whole.update(real, real=True)
    whole.update(fake, real=False)
    first, second = FeatureFID(Pixels()), FeatureFID(Pixels())
    first.update(real[:90], real=True)
    first.update(fake[:50], real=False)
    second.update(real[90:], real=True)
    second.update(fake[50:], real=False)
    merged = FeatureFID(Pixels())  # a fresh instance on "rank 0" that never saw a frame
    merged.merge(first.export_state())
    merged.merge(second.export_state())
    assert (merged.num_real, merged.num_fake) == (160, 120)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torchmetrics "compute before update" warning leaks out
        assert abs(merged.compute().item() - whole.compute().item()) < 1e-6
    assert whole.compute().item() > 0.01
    first.merge(second)
    assert abs(first.compute().item() - whole.compute().item()) < 1e-6
    restored = FeatureFID(Pixels())
    restored.load_state(whole.export_state())
    assert abs(restored.compute().item() - whole.compute().item()) < 1e-12
    with pytest.raises(ValueError, match="'other-pixels'"):
        merged.merge(FeatureFID(Pixels("other-pixels")).export_state())


def test_fid_warns_when_fewer_frames_than_feature_width():
    fid = FeatureFID(Pixels())
    fid.update(_pixel_sets(8, seed=4), real=True)
    fid.update(_pixel_sets(30, seed=5), real=False)
    with pytest.warns(UserWarning, match=r"8 real and 30 fake frames is unreliable.*width 12"):
        fid.compute()
    fid.reset()
    assert (fid.num_real, fid.num_fake) == (0, 0)
    with pytest.raises(ValueError, match="at least 2 real"):
        fid.compute()


def test_fid_with_tiny_dinov2_features(dino):
    gen = torch.Generator().manual_seed(6)
    videos = torch.rand(4, 10, 3, 32, 32, generator=gen)  # 40 frames > 32 features
    fid = FeatureFID(dino)
    fid.update(videos, real=True)
    fid.update(videos, real=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert abs(fid.compute().item()) < 1e-6
    fid.reset_fake()
    fid.update(videos * 0.4, real=False)
    assert fid.compute().item() > 1e-3


# ------------------------------------------------------------------------------------ reference set


def test_load_reference_frames_from_pngs_and_gif(tmp_path):
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    Image.new("RGB", (20, 16), colors[0]).save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    Image.new("L", (20, 16), 128).save(tmp_path / "sub" / "c.png")  # grayscale becomes RGB
    gif = [Image.new("RGB", (20, 16), c) for c in colors]
    gif[0].save(tmp_path / "b.gif", save_all=True, append_images=gif[1:], duration=100, loop=0)
    (tmp_path / "notes.txt").write_text("ignored")

    frames = load_reference_frames(tmp_path)
    assert frames.shape == (6, 3, 16, 20) and frames.dtype == torch.float32
    # sorted order a.png, b.gif (4 frames), sub/c.png; solid colours survive PNG/GIF exactly
    expected = [colors[0], *colors, (128, 128, 128)]
    assert [tuple(round(float(v) * 255) for v in f[:, 5, 5]) for f in frames] == expected
    assert load_reference_frames(tmp_path, max_frames=3).shape[0] == 3
    assert load_reference_frames(tmp_path, size=8).shape == (6, 3, 8, 8)
    assert [b.shape[0] for b in iter_reference_frames(tmp_path, batch_size=4)] == [4, 2]

    Image.new("RGB", (10, 10)).save(tmp_path / "sub" / "d.png")
    with pytest.raises(ValueError, match=r"pass size=\(H, W\)"):
        load_reference_frames(tmp_path)


def test_load_reference_frames_from_mp4(tmp_path):
    import imageio.v3 as iio

    video = np.full((5, 16, 32, 3), 100, dtype=np.uint8)
    iio.imwrite(tmp_path / "clip.mp4", video, plugin="FFMPEG", fps=8, macro_block_size=1)
    frames = load_reference_frames(tmp_path)
    assert frames.shape == (5, 3, 16, 32)
    assert abs(frames.mean().item() - 100 / 255) < 3 / 255  # lossy codec, solid gray


def test_reference_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_reference_frames(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"holds no images"):
        load_reference_frames(tmp_path / "empty")


def test_state_merge_fallback_without_merge_state_sums_states():
    from types import SimpleNamespace

    from calibrate.metrics import FID_STATE_KEYS, _add_states

    old = SimpleNamespace(**{key: torch.ones(2, dtype=torch.float64) for key in FID_STATE_KEYS})  # torchmetrics < 1.6
    _add_states(old, {key: torch.full((2,), 2.0, dtype=torch.float64) for key in FID_STATE_KEYS})
    assert all(torch.equal(getattr(old, key), torch.full((2,), 3.0, dtype=torch.float64)) for key in FID_STATE_KEYS)


def test_a_package_feature_model_keeps_its_package_id_as_name():
    from calibrate.demo import FEATURE_MODEL_DIR

    features = load_feature_extractor("package://calibrate.demo/weights/feature_model")
    assert features.name == "package://calibrate.demo/weights/feature_model"  # no machine-specific path in records
    assert features.model_id == str(FEATURE_MODEL_DIR)
    assert features(torch.full((2, 3, 32, 32), 0.5)).shape == (2, features.dim)
