"""Video metrics of the calibrator: frame similarity, PSNR/SSIM and FID (docs/architecture.md, "Metrics").

Video convention: a batch of videos is a tensor ``(B, F, C, H, W)`` (C = 3) with float values in
[0, 1]: what a diffusers video pipeline returns with ``output_type="pt"``
(``VideoProcessor.postprocess_video`` permutes each decoded ``(C, F, H, W)`` video to ``(F, C, H, W)``
and stacks the batch). A single video ``(F, C, H, W)`` counts as ``B = 1``. uint8 tensors are
accepted and scaled by 1/255. Videos are compared frame by frame after :func:`frames_of` reshapes them
to ``(B*F, C, H, W)``.

- :func:`frame_similarity`: eq. 2 with d = cosine similarity of frame embeddings (DINO/CLIP
  similarity, section 4.2, Appendix B.1).
- :func:`psnr_ssim`: eq. 2 with d = PSNR and SSIM (torchmetrics functional, data range 1).
- :class:`FeatureFID`: FID (section 4.3) by ``torchmetrics``' ``FrechetInceptionDistance`` with an
  injected feature extractor, mergeable across processes, reusable reference statistics.
- :func:`load_reference_frames` / :func:`iter_reference_frames`: the ``--reference`` set.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from calibrate.features import FrameFeatures, check_frames

if TYPE_CHECKING:
    from torchmetrics.image.fid import FrechetInceptionDistance

__all__ = [
    "FID_STATE_KEYS",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "FeatureFID",
    "choose_late_metric",
    "feature_similarity",
    "fid_against_reference",
    "fid_state",
    "frame_similarity",
    "frames_of",
    "iter_reference_frames",
    "kid_against_reference",
    "kid_subset_size",
    "late_metric_curves",
    "late_metric_values",
    "load_reference_frames",
    "psnr_ssim",
    "video_uint8",
]

_INSTALL_CALIBRATE = 'pip install "flowblending[calibrate]"'

FID_STATE_KEYS = (
    "real_features_sum",
    "real_features_cov_sum",
    "real_features_num_samples",
    "fake_features_sum",
    "fake_features_cov_sum",
    "fake_features_num_samples",
)
"""The running sums torchmetrics' FrechetInceptionDistance keeps (all reduced by sum across processes)."""

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".gif", ".webm", ".mov", ".avi", ".mkv", ".m4v"})


def _torchmetrics() -> Any:
    try:
        import torchmetrics
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ModuleNotFoundError(
            f"the calibrator's metrics need torchmetrics, which is not installed; run `{_INSTALL_CALIBRATE}`."
        ) from err
    return torchmetrics


# --------------------------------------------------------------------------------------------- videos


def frames_of(video: Tensor, *, arg: str = "video") -> Tensor:
    """Reshape videos (B, F, C, H, W) (or one video (F, C, H, W)) to frames (B*F, C, H, W) in [0, 1]."""
    if not isinstance(video, Tensor):
        raise TypeError(
            f"`{arg}` must be a torch.Tensor (B, F, 3, H, W) in [0, 1], got {type(video).__name__}; call the "
            "pipeline with output_type='pt', or convert an (B, F, H, W, 3) uint8 array with "
            "torch.from_numpy(x).permute(0, 1, 4, 2, 3)."
        )
    if video.ndim == 4:
        video = video.unsqueeze(0)
    if video.ndim != 5:
        raise ValueError(
            f"`{arg}` must have shape (B, F, 3, H, W) or (F, 3, H, W), got {tuple(video.shape)}; "
            "diffusers pipelines give (B, F, 3, H, W) with output_type='pt'."
        )
    if video.shape[2] != 3:
        hint = (
            " It looks like (B, C, F, H, W) (a decoded latent layout); use video.permute(0, 2, 1, 3, 4)."
            if video.shape[1] == 3
            else " For channels-last (B, F, H, W, 3) use video.permute(0, 1, 4, 2, 3)."
            if video.shape[-1] == 3
            else ""
        )
        raise ValueError(f"`{arg}` must have 3 channels at dim 2, (B, F, 3, H, W), got {tuple(video.shape)}.{hint}")
    b, f = video.shape[:2]
    return check_frames(video.reshape(b * f, *video.shape[2:]), arg=arg)


def _video_pair(video_a: Tensor, video_b: Tensor) -> tuple[Tensor, Tensor, int, int]:
    a = frames_of(video_a, arg="video_a")
    b = frames_of(video_b, arg="video_b")
    shape_a = tuple(video_a.shape) if video_a.ndim == 5 else (1, *video_a.shape)
    shape_b = tuple(video_b.shape) if video_b.ndim == 5 else (1, *video_b.shape)
    if shape_a[:2] != shape_b[:2]:
        raise ValueError(
            f"`video_a` and `video_b` must have the same batch and frame counts (B, F) to compare frame i "
            f"with frame i (eq. 2), got {shape_a[:2]} and {shape_b[:2]}; decode both with the same "
            "num_frames."
        )
    return a, b, shape_a[0], shape_a[1]


def feature_similarity(features_a: Tensor, features_b: Tensor) -> float:
    """Mean over frames of the cosine similarity of corresponding frame features (eq. 2), in float64."""
    if features_a.shape != features_b.shape or features_a.ndim != 2:
        raise ValueError(
            f"`features_a` and `features_b` must both be (frames, dim) of the same shape, got "
            f"{tuple(features_a.shape)} and {tuple(features_b.shape)}; extract both with the same feature model."
        )
    return float(F.cosine_similarity(features_a.double(), features_b.double(), dim=1, eps=1e-12).mean())


def video_uint8(video: Tensor) -> np.ndarray:
    """(F, H, W, 3) uint8 array of one float video (1, F, 3, H, W) or (F, 3, H, W) in [0, 1] (for files)."""
    from .features import to_uint8

    frames = video[0] if video.ndim == 5 else video
    return to_uint8(frames).permute(0, 2, 3, 1).numpy()


def fid_state(features: Tensor, dim: int, name: str, *, real: bool = False) -> dict[str, Any]:
    """FeatureFID statistics of frame features as generated ("fake") or reference ("real") frames."""
    f = features.to(torch.float64).cpu()
    empty = {
        "features_sum": torch.zeros(dim, dtype=torch.float64),
        "features_cov_sum": torch.zeros(dim, dim, dtype=torch.float64),
        "features_num_samples": torch.tensor(0),
    }
    filled = {
        "features_sum": f.sum(dim=0),
        "features_cov_sum": f.t().mm(f),
        "features_num_samples": torch.tensor(f.shape[0]),
    }
    ours, other = ("real", "fake") if real else ("fake", "real")
    state: dict[str, Any] = {f"{ours}_{k}": v for k, v in filled.items()}
    state.update({f"{other}_{k}": v for k, v in empty.items()})
    return {**state, "feature_name": name, "num_features": dim}


def fid_against_reference(
    extractor: FrameFeatures, reference_state: Mapping[str, Any], features: Sequence[Tensor]
) -> float:
    """FID (sec 4.3) of the union of generated frame ``features`` (one tensor per unit) against the reference."""
    metric = FeatureFID(extractor)
    metric.merge(reference_state)
    for part in features:
        metric.merge(fid_state(part, metric.dim, metric.name))
    return float(metric.compute())


KID_RULE_FACTOR = 10
"""``--late-metric auto`` uses KID when the generated frames per candidate are fewer than this x the feature width."""


def choose_late_metric(requested: str, generated_frames: int, feature_width: int) -> str:
    """``fid`` or ``kid``: the requested one, or for ``auto`` KID below ``KID_RULE_FACTOR x width`` frames.

    FID's covariance estimate is biased and unreliable when the frames are not many times the feature width;
    KID (an unbiased MMD estimate) is not (docs/calibration.md, "Late metric").
    """
    if requested in ("fid", "kid"):
        return requested
    if requested != "auto":
        raise ValueError(f"late metric must be 'fid', 'kid' or 'auto', got {requested!r}.")
    return "kid" if generated_frames < KID_RULE_FACTOR * feature_width else "fid"


def kid_subset_size(num_real: int, num_fake: int, requested: int | None = None) -> int:
    """KID's subset size: ``requested``, else torchmetrics' 1000 capped by the smaller set."""
    size = requested if requested is not None else min(1000, num_real, num_fake)
    if size < 2 or size > min(num_real, num_fake):
        raise ValueError(
            f"KID subset size {size} must be between 2 and the smaller set ({num_real} real, {num_fake} generated "
            "frames); use more frames or a smaller --kid-subset-size."
        )
    return size


def kid_against_reference(
    reference_features: Tensor,
    features: Sequence[Tensor],
    *,
    subset_size: int | None = None,
    subsets: int = 100,
    seed: int = 0,
) -> tuple[float, float, int]:
    """KID (mean, std over subsets, subset size) of generated frame ``features`` against the reference features.

    torchmetrics' ``KernelInceptionDistance`` on injected features (an identity feature module), its subsets
    drawn from a fixed seed so the same features always give the same value.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    real = reference_features.to(torch.float64).cpu()
    fake = torch.cat([f.to(torch.float64).cpu() for f in features])
    size = kid_subset_size(real.shape[0], fake.shape[0], subset_size)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*will save all extracted features in buffer.*")
        metric = KernelInceptionDistance(feature=nn.Identity(), subsets=subsets, subset_size=size)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std), size


def late_metric_values(
    metric: str,
    extractor: FrameFeatures,
    reference: Mapping[str, Any],
    candidates: Sequence[Sequence[Tensor]],
    *,
    subset_size: int | None = None,
) -> tuple[list[float], list[float] | None, int | None]:
    """The late metric of each candidate (its per-unit feature tensors) against the reference statistics.

    Returns the values, KID's spread over subsets (None for FID) and KID's subset size (None for FID).
    """
    if metric == "fid":
        return [fid_against_reference(extractor, reference["state"], c) for c in candidates], None, None
    results = [kid_against_reference(reference["features"], c, subset_size=subset_size) for c in candidates]
    return [r[0] for r in results], [r[1] for r in results], results[0][2]


def late_metric_leave_one_out(
    metric: str,
    extractor: FrameFeatures,
    reference: Mapping[str, Any],
    candidates: Sequence[Sequence[Tensor]],
    *,
    subset_size: int | None = None,
) -> list[list[float]]:
    """The late metric of each candidate recomputed without each unit: row ``i`` leaves unit ``i`` out.

    ``candidates[c][i]`` are candidate ``c``'s frame features of unit ``i`` (one prompt and seed). The rows feed
    :func:`calibrate.boundaries.difference_se` (the jackknife SE of each candidate's difference to the minimum).
    """
    units = len(candidates[0])
    if units < 2 or any(len(c) != units for c in candidates):
        raise ValueError(
            f"every candidate needs the same units, at least 2, got {[len(c) for c in candidates]}: "
            "calibrate on two or more prompts x seeds"
        )
    rows = []
    for i in range(units):
        kept = [[part for j, part in enumerate(c) if j != i] for c in candidates]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the full curve warned already if it had to
            rows.append(late_metric_values(metric, extractor, reference, kept, subset_size=subset_size)[0])
    return rows


def late_metric_curves(
    chosen: str,
    extractor: FrameFeatures,
    reference: Mapping[str, Any],
    candidates: Sequence[Sequence[Tensor]],
    *,
    subset_size: int | None = None,
) -> dict[str, tuple[list[float], list[float] | None, int | None]]:
    """FID and KID of every candidate (:func:`late_metric_values`); only the ``chosen`` one may warn."""
    curves = {}
    for name in (chosen, *(m for m in ("fid", "kid") if m != chosen)):
        with warnings.catch_warnings():
            if name != chosen:  # e.g. FID's small-sample warning when KID was chosen for that reason
                warnings.simplefilter("ignore", UserWarning)
            curves[name] = late_metric_values(name, extractor, reference, candidates, subset_size=subset_size)
    return curves


def frame_similarity(features: FrameFeatures, video_a: Tensor, video_b: Tensor) -> Tensor:
    """Per-video mean over frames of the cosine similarity of corresponding frame embeddings (eq. 2, sec 4.2).

    Returns a float64 tensor (B,); 1 means identical embeddings on every frame. Average it over
    prompts and seeds for the early-boundary curve (Appendix B.1).
    """
    a, b, n_videos, n_frames = _video_pair(video_a, video_b)
    fa = features(a).double().reshape(n_videos, n_frames, -1)
    fb = features(b).double().reshape(n_videos, n_frames, -1)
    return torch.tensor([feature_similarity(x, y) for x, y in zip(fa, fb, strict=True)], dtype=torch.float64)


def psnr_ssim(video_a: Tensor, video_b: Tensor) -> tuple[Tensor, Tensor]:
    """Per-video mean over frames of PSNR (dB) and SSIM of corresponding frames (eq. 2, Appendix B.1).

    torchmetrics functional PSNR/SSIM with ``data_range=1`` on each frame pair, in float64, then the
    mean over frames; returns two float64 tensors (B,). Identical frames have PSNR ``inf`` (zero
    error, as torchmetrics defines it), so a video with an identical frame has mean PSNR ``inf``.
    Frames need H, W >= 11 (SSIM's Gaussian window).
    """
    _torchmetrics()
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    a, b, n_videos, n_frames = _video_pair(video_a, video_b)
    if a.shape != b.shape:
        raise ValueError(
            f"`video_a` and `video_b` frames must have the same size for PSNR/SSIM, got {tuple(a.shape[1:])} "
            f"and {tuple(b.shape[1:])}; decode both at the same height and width."
        )
    if min(a.shape[-2:]) < 11:
        raise ValueError(f"frames must be at least 11x11 for SSIM's 11x11 Gaussian window, got {tuple(a.shape[-2:])}.")
    a = a.double()
    b = b.double()
    psnr = peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3))
    ssim = structural_similarity_index_measure(a, b, data_range=1.0, reduction="none")
    return psnr.reshape(n_videos, n_frames).mean(dim=1), ssim.reshape(n_videos, n_frames).mean(dim=1)


# ------------------------------------------------------------------------------------------------ FID


class _FeatureModule(nn.Module):
    """nn.Module view of a FrameFeatures for torchmetrics' ``feature=`` argument.

    torchmetrics passes the images given to ``update`` straight to a custom module (no uint8
    conversion when the feature extractor is custom) and reads ``num_features`` instead of probing
    with a dummy image. Features come back in float64, which makes ``compute`` return float64.
    """

    def __init__(self, features: FrameFeatures) -> None:
        super().__init__()
        self.features = features
        self.num_features = int(features.dim)

    def forward(self, imgs: Tensor) -> Tensor:
        return self.features(imgs).to(torch.float64)


@functools.cache
def _fid_class() -> type[FrechetInceptionDistance]:
    _torchmetrics()
    from torchmetrics.image.fid import FrechetInceptionDistance

    class _InjectedFeatureFID(FrechetInceptionDistance):
        """torchmetrics FID on an injected extractor; ``compute`` also works on statistics merged into a fresh
        instance (torchmetrics sets ``orig_dtype`` only in ``update``)."""

        def __init__(self, module: _FeatureModule) -> None:
            super().__init__(
                feature=module,
                reset_real_features=False,  # reset() keeps the reference statistics (reset_fake)
                normalize=True,  # float [0, 1] images; a custom extractor receives them unchanged
                sync_on_compute=False,  # processes are merged explicitly (export_state / merge)
                compute_with_cache=False,  # merge() must never return a stale cached value
            )
            self.orig_dtype = torch.float64

    return _InjectedFeatureFID


def _fid_metric(features: FrameFeatures) -> FrechetInceptionDistance:
    return _fid_class()(_FeatureModule(features))


def _add_states(metric: FrechetInceptionDistance, incoming: Mapping[str, Tensor]) -> None:
    """Add running sums into ``metric`` with torchmetrics' ``merge_state`` (>= 1.6), else by hand."""
    if hasattr(metric, "merge_state"):
        metric.merge_state(dict(incoming))
    else:  # torchmetrics < 1.6 has no merge_state; every FID state is reduced by "sum"
        for key in FID_STATE_KEYS:
            setattr(metric, key, getattr(metric, key) + incoming[key])


class FeatureFID:
    """FID between reference ("real") frames and generated ("fake") frames on injected features (sec 4.3).

    Backed by ``torchmetrics.image.fid.FrechetInceptionDistance(feature=<nn.Module>)``: the running
    sums (feature sum, outer-product sum, count, for real and fake) are float64. One reference set
    serves many candidate schedules: ``update(..., real=True)`` once, then per candidate
    ``update(..., real=False)``, ``compute()``, ``reset_fake()``. Across processes, send
    ``export_state()`` to one rank and ``merge()`` it there (sums add exactly).
    """

    def __init__(self, features: FrameFeatures) -> None:
        if not callable(features) or not isinstance(getattr(features, "dim", None), int):
            raise TypeError(
                f"`features` must be a FrameFeatures (callable with an int `dim`), got "
                f"{type(features).__name__}; "
                "build one with calibrate.features.load_feature_extractor(...)."
            )
        self.features = features
        self.name = str(getattr(features, "name", type(features).__name__))
        self.dim = int(features.dim)
        self._metric = _fid_metric(features)

    # -- accumulation -------------------------------------------------------------------------------

    def update(self, frames: Tensor, real: bool) -> None:
        """Add frames (N, 3, H, W) or videos (B, F, 3, H, W), float in [0, 1], to the real or fake set."""
        if not isinstance(real, bool):
            raise TypeError(f"`real` must be a bool (True: reference set, False: generated), got {real!r}.")
        is_video = isinstance(frames, Tensor) and frames.ndim == 5
        frames = frames_of(frames, arg="frames") if is_video else check_frames(frames)
        if frames.shape[0] == 0:
            return
        self._metric.update(frames, real=real)

    @property
    def num_real(self) -> int:
        return int(self._metric.real_features_num_samples)

    @property
    def num_fake(self) -> int:
        return int(self._metric.fake_features_num_samples)

    def compute(self) -> Tensor:
        """FID (float64 scalar) of the accumulated fake frames against the real frames.

        Warns when either set has fewer frames than the feature width: the covariance is then
        rank-deficient and the value is unreliable (compare candidates only on equal set sizes).
        """
        for label, count in (("real (reference)", self.num_real), ("fake (generated)", self.num_fake)):
            if count < 2:
                raise ValueError(
                    f"FID needs at least 2 {label} frames, got {count}; call update(frames, real="
                    f"{label.startswith('real')}) with more frames first."
                )
        if self.num_real < self.dim or self.num_fake < self.dim:
            warnings.warn(
                f"FID on {self.name!r} features with {self.num_real} real and {self.num_fake} fake frames is "
                f"unreliable: fewer frames than the feature width {self.dim}, so the covariance estimate is "
                f"rank-deficient; use at least {self.dim} frames in each set (several times more is better).",
                UserWarning,
                stacklevel=2,
            )
        with warnings.catch_warnings():
            # After merge() into a fresh instance torchmetrics saw no update() call; counts are checked above.
            warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
            value = self._metric.compute()
        return value.to(torch.float64)

    def reset_fake(self) -> None:
        """Forget the generated frames and keep the reference statistics (next candidate schedule)."""
        self._metric.reset()  # built with reset_real_features=False

    def reset(self) -> None:
        """Forget both the reference and the generated statistics."""
        self._metric = _fid_metric(self.features)

    # -- statistics across processes ----------------------------------------------------------------

    def export_state(self) -> dict[str, Any]:
        """The running sums (CPU copies, float64/int64) plus the feature name and width, for merge()."""
        state: dict[str, Any] = {
            key: getattr(self._metric, key).detach().to(torch.device("cpu")).clone() for key in FID_STATE_KEYS
        }
        state["feature_name"] = self.name
        state["num_features"] = self.dim
        return state

    def merge(self, other: FeatureFID | Mapping[str, Any]) -> None:
        """Add another FeatureFID's statistics (or an export_state() dict) to this one's, real and fake."""
        _add_states(self._metric, self._incoming(other))

    def load_state(self, state: FeatureFID | Mapping[str, Any]) -> None:
        """Replace this FID's statistics with the given ones (e.g. cached reference statistics)."""
        incoming = self._incoming(state)
        self._metric = _fid_metric(self.features)
        _add_states(self._metric, incoming)

    def _incoming(self, other: FeatureFID | Mapping[str, Any]) -> dict[str, Tensor]:
        state = other.export_state() if isinstance(other, FeatureFID) else other
        if not isinstance(state, Mapping):
            raise TypeError(
                f"`other` must be a FeatureFID or a dict from FeatureFID.export_state(), got {type(other).__name__}."
            )
        missing = [key for key in FID_STATE_KEYS if key not in state]
        if missing:
            raise ValueError(f"FID state is missing {missing}; pass the dict returned by FeatureFID.export_state().")
        name = state.get("feature_name")
        if name is not None and name != self.name:
            raise ValueError(
                f"cannot merge FID statistics of features {name!r} into a FeatureFID on {self.name!r}; "
                "use the same --feature-model / --fid-features in every process."
            )
        if tuple(state["real_features_sum"].shape) != (self.dim,):
            raise ValueError(
                f"FID state has feature width {tuple(state['real_features_sum'].shape)}, expected "
                f"({self.dim},); "
                "it was computed with another feature extractor."
            )
        out: dict[str, Tensor] = {}
        for key in FID_STATE_KEYS:
            local = getattr(self._metric, key)
            out[key] = torch.as_tensor(state[key]).to(device=local.device, dtype=local.dtype)
        return out

    def __repr__(self) -> str:
        return f"FeatureFID(features={self.name!r}, dim={self.dim}, real={self.num_real}, fake={self.num_fake})"


# --------------------------------------------------------------------------------- reference frames


def _reference_files(path: Path) -> list[Path]:
    suffixes = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    if path.is_file():
        files = [path] if path.suffix.lower() in suffixes else []
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    return files


def _normalize_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, int) and not isinstance(size, bool):
        dims: tuple[int, ...] = (size, size)
    else:
        dims = tuple(size)
    if len(dims) != 2 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(f"`size` must be None, a positive int or (height, width) of positive ints, got {size!r}.")
    return dims[0], dims[1]


def _decode(file: Path) -> Iterator[Any]:
    """RGB uint8 arrays (H, W, 3) of an image or of every frame of a video, in order."""
    import numpy as np
    from PIL import Image

    suffix = file.suffix.lower()
    try:
        if suffix in IMAGE_SUFFIXES:
            with Image.open(file) as img:
                yield np.asarray(img.convert("RGB"))
            return
        import imageio.v3 as iio

        if suffix == ".gif":
            frames = iio.imiter(file, plugin="pillow", mode="RGB")
        else:
            frames = iio.imiter(file, plugin="FFMPEG")
        for frame in frames:
            arr = np.asarray(frame)
            if arr.ndim == 2:
                arr = np.stack([arr] * 3, axis=-1)
            yield arr[..., :3]
    except (OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"cannot decode reference file {str(file)!r}: {type(err).__name__}: {err}") from err


def _to_tensor(arr: Any, size: tuple[int, int] | None) -> Tensor:
    import numpy as np
    from PIL import Image

    if size is not None and tuple(arr.shape[:2]) != size:
        arr = np.asarray(Image.fromarray(arr).resize((size[1], size[0]), resample=Image.BICUBIC))
    return torch.from_numpy(np.array(arr, dtype=np.uint8)).permute(2, 0, 1)  # a writable copy


def iter_reference_frames(
    path: str | os.PathLike[str],
    size: int | tuple[int, int] | None = None,
    max_frames: int | None = None,
    *,
    batch_size: int = 64,
) -> Iterator[Tensor]:
    """Yield batches (n, 3, H, W) float32 in [0, 1] of the reference frames under ``path`` (FID, sec 4.3).

    Same files, order and checks as :func:`load_reference_frames`, without holding every frame at once.
    """
    root = Path(path).expanduser()
    target = _normalize_size(size)
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1):
        raise ValueError(f"`max_frames` must be None or a positive int, got {max_frames!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int, got {batch_size!r}.")
    if not root.exists():
        raise FileNotFoundError(
            f"reference path {str(path)!r} does not exist; pass --reference DIR with real videos "
            f"({', '.join(sorted(VIDEO_SUFFIXES))}) or frames ({', '.join(sorted(IMAGE_SUFFIXES))})."
        )
    files = _reference_files(root)
    if not files:
        raise ValueError(
            f"reference path {str(path)!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) or videos "
            f"({', '.join(sorted(VIDEO_SUFFIXES))}), searched recursively; put real frames or videos there."
        )
    batch: list[Tensor] = []
    first_shape: tuple[int, ...] | None = None
    first_file: Path | None = None
    count = 0
    for file in files:
        for arr in _decode(file):
            frame = _to_tensor(arr, target)
            if first_shape is None:
                first_shape, first_file = tuple(frame.shape), file
            elif tuple(frame.shape) != first_shape:
                raise ValueError(
                    f"reference frames differ in size: {str(first_file)!r} has {first_shape[1:]} (H, W) and "
                    f"{str(file)!r} has {tuple(frame.shape[1:])}; pass size=(H, W) to resize them all."
                )
            batch.append(frame)
            count += 1
            if len(batch) == batch_size:
                yield torch.stack(batch).float().div_(255.0)
                batch = []
            if max_frames is not None and count >= max_frames:
                break
        if max_frames is not None and count >= max_frames:
            break
    if batch:
        yield torch.stack(batch).float().div_(255.0)
    if count == 0:
        raise ValueError(f"reference path {str(path)!r}: its files decoded to no frames; check the files.")


def load_reference_frames(
    path: str | os.PathLike[str],
    size: int | tuple[int, int] | None = None,
    max_frames: int | None = None,
) -> Tensor:
    """All reference frames under ``path`` as float32 (N, 3, H, W) in [0, 1] (the FID real set, sec 4.3).

    ``path`` is a directory searched recursively in sorted order (or one file): images are one frame
    each, videos (mp4/webm/... through imageio-ffmpeg, GIF through Pillow) give every frame. ``size``
    (int or (H, W)) resizes every frame (bicubic); without it all frames must share one size.
    ``max_frames`` stops reading after that many frames.
    """
    return torch.cat(list(iter_reference_frames(path, size=size, max_frames=max_frames)))
