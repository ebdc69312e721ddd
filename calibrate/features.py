"""Frame feature extractors for the calibrator's similarity and FID metrics (docs/architecture.md, "Metrics").

The paper measures the early-stage boundary with frame-wise DINO and CLIP embedding similarity
(section 4.2, Appendix B.1, eq. 2) and the late-stage boundary with FID (section 4.3). Both need a
frame -> vector map; this module provides it behind one small interface:

    features = load_feature_extractor("facebook/dinov2-small")   # hub id, local dir, or alias
    vecs = features(frames)        # frames: float (N, 3, H, W) in [0, 1] -> float32 (N, features.dim) on CPU

Implementations:

- :class:`HFImageFeatures`: any `transformers` vision model. DINOv2 (default) gives the CLS token
  after the final layer norm (``pooler_output``); CLIP gives the projected image embedding
  (``get_image_features`` / ``image_embeds``). Frames go through the model's own image processor.
- :class:`InceptionFeatures`: torch-fidelity's InceptionV3 (the classic FID features); optional
  extra ``pip install "flowblending[inception]"``, imported only when asked for.

Preprocessing note (checked on transformers 5.x without torchvision, where ``AutoImageProcessor``
falls back to the PIL backend, e.g. ``BitImageProcessorPil``/``CLIPImageProcessorPil``): float input
with ``do_rescale=False`` is still converted to uint8 inside PIL ``resize`` by *truncation* (a bias of
-0.5/255), and a frame whose values are all exactly 0 or 1 is mistaken for a 0..255 image and comes
back as a {0, 1} uint8 array. We therefore quantize frames to uint8 ourselves (rounding) and let the
processor rescale and normalize as configured, i.e. frames take exactly the path of an image read from
a PNG or a video file, with either backend.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flowblending.errors import FlowBlendingError

from .config import DEFAULT_FEATURE_MODEL

__all__ = [
    "DEFAULT_FEATURE_MODEL",
    "FEATURE_ALIASES",
    "FeatureDependencyError",
    "FeatureModelError",
    "FeatureModelNotFoundError",
    "FrameFeatures",
    "HFImageFeatures",
    "InceptionFeatures",
    "check_frames",
    "load_feature_extractor",
    "to_uint8",
]

FEATURE_ALIASES: Mapping[str, str] = {
    "dino": DEFAULT_FEATURE_MODEL,
    "dinov2": DEFAULT_FEATURE_MODEL,
    "clip": "openai/clip-vit-base-patch32",
}
"""Short names accepted by :func:`load_feature_extractor` (a local directory of the same name wins)."""

INCEPTION_SPECS = frozenset({"inception", "inception-v3", "inception-v3-compat"})

_INSTALL_INCEPTION = 'pip install "flowblending[inception]"'


class FeatureModelError(FlowBlendingError, RuntimeError):
    """A frame feature model cannot be loaded or used."""


class FeatureModelNotFoundError(FeatureModelError):
    """The feature model's files are not available (offline, not cached, or a wrong local path)."""


class FeatureDependencyError(FeatureModelError):
    """An optional dependency of a feature extractor is not installed."""


def check_frames(frames: Tensor, *, arg: str = "frames") -> Tensor:
    """Validate frames (N, 3, H, W), float in [0, 1] (or uint8, scaled by 1/255); return them as float."""
    if not isinstance(frames, Tensor):
        raise TypeError(
            f"`{arg}` must be a torch.Tensor of shape (N, 3, H, W) with values in [0, 1], got "
            f"{type(frames).__name__}; convert with torch.from_numpy(x).permute(0, 3, 1, 2) / 255 for "
            "uint8 (N, H, W, 3) arrays."
        )
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(
            f"`{arg}` must have shape (N, 3, H, W) (RGB, channels first), got {tuple(frames.shape)}; "
            "for videos (B, F, 3, H, W) use calibrate.metrics.frames_of(video)."
        )
    if frames.dtype == torch.uint8:
        return frames.float() / 255.0
    if not frames.is_floating_point():
        raise TypeError(f"`{arg}` must be a float tensor in [0, 1] or uint8, got dtype {frames.dtype}.")
    if frames.numel():
        lo, hi = float(frames.min()), float(frames.max())
        if lo < -1e-3 or hi > 1 + 1e-3 or lo != lo or hi != hi:
            raise ValueError(
                f"`{arg}` must hold values in [0, 1], got min {lo:.4g} and max {hi:.4g}; map [-1, 1] "
                "frames with (x + 1) / 2, 0..255 floats with x / 255, or decode with output_type='pt'."
            )
    return frames


def to_uint8(frames: Tensor) -> Tensor:
    """Quantize float frames in [0, 1] to uint8 on the CPU by rounding (the 8-bit value a file would hold)."""
    return (frames.detach().float().cpu().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


class FrameFeatures(abc.ABC):
    """One frame -> one vector: ``features(frames)`` maps (N, 3, H, W) in [0, 1] to float32 (N, dim) on CPU.

    Frames are processed in chunks of ``batch_size`` to bound memory; the model runs in eval mode
    under ``torch.inference_mode``. Subclasses implement :meth:`_extract` on one chunk.
    """

    name: str
    dim: int
    batch_size: int

    def __call__(self, frames: Tensor) -> Tensor:
        frames = check_frames(frames)
        if frames.shape[0] == 0:
            return torch.zeros(0, self.dim, dtype=torch.float32)
        outs = []
        with torch.inference_mode():
            for start in range(0, frames.shape[0], self.batch_size):
                out = self._extract(frames[start : start + self.batch_size])
                outs.append(out.detach().to(device=torch.device("cpu"), dtype=torch.float32))
        return torch.cat(outs)

    @abc.abstractmethod
    def _extract(self, frames: Tensor) -> Tensor:
        """Features (n, dim) of one chunk of validated frames (n, 3, H, W) in [0, 1]."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive int (frames per forward pass), got {batch_size!r}.")
    return batch_size


def _looks_like_path(spec: str) -> bool:
    return (
        os.path.isabs(spec)
        or spec.startswith(("./", "../", "~", ".\\", "..\\"))
        or spec.count("/") > 1
        or os.path.exists(spec)
    )


def _not_found(spec: str, what: str, err: BaseException) -> FeatureModelNotFoundError:
    offline = "offline mode is on (HF_HUB_OFFLINE=1); " if _offline_mode() else ""
    return FeatureModelNotFoundError(
        f"cannot load the {what} of feature model {spec!r}: {offline}it is neither a local directory nor "
        f"in the Hugging Face cache. Fetch it on a machine with network access with "
        f"`huggingface-cli download {spec}` (or `hf download {spec}`), or pass a local directory holding "
        f"config.json, the weights and preprocessor_config.json (e.g. saved with save_pretrained). "
        f"Cause: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    )


def _offline_mode() -> bool:
    from huggingface_hub import is_offline_mode

    return bool(is_offline_mode())


class HFImageFeatures(FrameFeatures):
    """Image embeddings from a `transformers` vision model (DINO/CLIP similarity of section 4.2, eq. 2).

    ``model_id_or_path`` is a hub id (e.g. ``facebook/dinov2-small``, ``openai/clip-vit-base-patch32``)
    or a local directory saved with ``save_pretrained`` (model plus image-processor config). The
    pooling is chosen from ``config.model_type``:

    - ``clip`` (and other models with ``get_image_features``, e.g. SigLIP): the projected image
      embedding, as used for CLIP similarity;
    - ``*_vision_model`` saved as ``...VisionModelWithProjection``: its ``image_embeds``;
    - DINOv2 and other ViT-style encoders: ``pooler_output`` (the CLS token after the final layer norm).

    ``local_files_only=None`` follows ``HF_HUB_OFFLINE``; a model that is not available locally raises
    :class:`FeatureModelNotFoundError` with the command that fetches it.
    """

    def __init__(
        self,
        model_id_or_path: str | os.PathLike[str] = DEFAULT_FEATURE_MODEL,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        local_files_only: bool | None = None,
        *,
        revision: str | None = None,
        batch_size: int = 32,
        center_crop: bool = True,
    ) -> None:
        import transformers

        spec = os.fspath(model_id_or_path)
        if not spec:
            raise ValueError(
                "`model_id_or_path` must name a hub model or a local directory, got ''; "
                f"use {DEFAULT_FEATURE_MODEL!r} for the default."
            )
        name = spec  # a package:// id stays the name, so records do not depend on where the package lies
        if spec.startswith("package://"):
            from flowblending.profile import resolve_model_location

            spec = resolve_model_location(spec)
        if _looks_like_path(spec):
            path = Path(spec).expanduser()
            if not path.is_dir():
                raise FeatureModelNotFoundError(
                    f"feature model path {spec!r} is not an existing directory; pass a directory saved with "
                    "save_pretrained (config.json, weights, preprocessor_config.json) or a hub id such as "
                    f"{DEFAULT_FEATURE_MODEL!r}."
                )
            spec = str(path)
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"`dtype` must be a floating torch.dtype or None, got {dtype!r}.")
        self.batch_size = _check_batch_size(batch_size)
        self.center_crop = bool(center_crop)
        self.model_id = spec
        self.revision = revision
        self.name = name if name.startswith("package://") else spec
        if local_files_only is None:
            local_files_only = _offline_mode()
        self.local_files_only = bool(local_files_only)
        load_kwargs: dict[str, Any] = {"local_files_only": local_files_only, "revision": revision}

        try:
            config = transformers.AutoConfig.from_pretrained(spec, **load_kwargs)
        except OSError as err:
            raise _not_found(spec, "config", err) from err
        self.model_type: str = config.model_type
        model_kwargs = dict(load_kwargs, dtype=dtype) if dtype is not None else dict(load_kwargs)
        model_kwargs["use_safetensors"] = True  # never unpickle weights named by a profile or a command line
        architectures = list(getattr(config, "architectures", None) or [])
        projection_arch = next((a for a in architectures if a.endswith("VisionModelWithProjection")), None)
        try:
            if projection_arch is not None and hasattr(transformers, projection_arch):
                model = getattr(transformers, projection_arch).from_pretrained(spec, **model_kwargs)
            else:
                model = transformers.AutoModel.from_pretrained(spec, **model_kwargs)
        except OSError as err:
            raise _not_found(spec, "weights", err) from err
        try:
            processor = transformers.AutoImageProcessor.from_pretrained(spec, **load_kwargs)
        except OSError as err:
            raise _not_found(spec, "image processor (preprocessor_config.json)", err) from err

        if device is not None:
            model = model.to(device)
        self.model = model.eval()
        self.processor = processor
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        if projection_arch is not None and hasattr(transformers, projection_arch):
            self.pooling = "image_embeds"
        elif hasattr(model, "get_image_features"):
            self.pooling = "get_image_features"
        else:
            self.pooling = "pooler_output"
        self._size = self._processor_size()
        # One gray frame at the model's input size: checks the whole path and gives the feature width.
        self.dim = 0
        with torch.inference_mode():
            probe = self._extract(torch.full((1, 3, *self._size), 0.5))
        if probe.ndim != 2 or probe.shape[0] != 1:
            raise FeatureModelError(
                f"feature model {spec!r} (model_type {self.model_type!r}, pooling {self.pooling!r}) returned "
                f"features of shape {tuple(probe.shape)} for one frame, expected (1, D); use a DINOv2 or "
                "CLIP model, or another vision encoder with a pooled output."
            )
        self.dim = int(probe.shape[1])

    def _processor_size(self) -> tuple[int, int]:
        crop = getattr(self.processor, "crop_size", None)
        size = getattr(self.processor, "size", None)
        for candidate in (crop, size):
            if candidate is None:
                continue
            h, w = _get(candidate, "height"), _get(candidate, "width")
            if h and w:
                return int(h), int(w)
            edge = _get(candidate, "shortest_edge")
            if edge:
                return int(edge), int(edge)
        image_size = getattr(getattr(self.model.config, "vision_config", self.model.config), "image_size", 224)
        if isinstance(image_size, (list, tuple)):
            return int(image_size[0]), int(image_size[1])
        return int(image_size), int(image_size)

    def _pixel_values(self, frames: Tensor) -> Tensor:
        kwargs: dict[str, Any] = {"return_tensors": "pt", "input_data_format": "channels_first"}
        if not self.center_crop:
            h, w = self._size
            kwargs.update(do_center_crop=False, size={"height": h, "width": w})
        out = self.processor(images=list(to_uint8(frames)), **kwargs)
        return out["pixel_values"].to(device=self.device, dtype=self.dtype)

    def _extract(self, frames: Tensor) -> Tensor:
        pixel_values = self._pixel_values(frames)
        if self.pooling == "image_embeds":
            return self.model(pixel_values=pixel_values).image_embeds
        if self.pooling == "get_image_features":
            out = self.model.get_image_features(pixel_values=pixel_values)
            # transformers < 5 returns the tensor, 5.x a BaseModelOutputWithPooling holding it.
            return out if isinstance(out, Tensor) else out.pooler_output
        out = self.model(pixel_values=pixel_values)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            raise FeatureModelError(
                f"feature model {self.model_id!r} (model_type {self.model_type!r}) has no pooled output "
                "(pooler_output is None); use a DINOv2 or CLIP model, or another vision encoder with a "
                "pooler."
            )
        return pooled.flatten(1)


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


class InceptionFeatures(FrameFeatures):
    """InceptionV3 pool features (2048-d) from torch-fidelity, the classic FID features (section 4.3).

    Optional: needs ``pip install "flowblending[inception]"`` (torch-fidelity). Its weights are
    downloaded on first use unless ``weights_path`` points to a local copy
    (``pt_inception-2015-12-05-6726825d.pth``).
    """

    def __init__(
        self,
        device: torch.device | str | None = None,
        weights_path: str | os.PathLike[str] | None = None,
        *,
        batch_size: int = 32,
    ) -> None:
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as err:
            raise FeatureDependencyError(
                "Inception features need torch-fidelity, which is not installed; install it with "
                f"`{_INSTALL_INCEPTION}` or use the default DINOv2 features (--fid-features dinov2)."
            ) from err
        self.batch_size = _check_batch_size(batch_size)
        try:
            net = FeatureExtractorInceptionV3(
                name="inception-v3-compat",
                features_list=["2048"],
                feature_extractor_weights_path=None if weights_path is None else os.fspath(weights_path),
            )
        except (OSError, RuntimeError) as err:
            raise FeatureModelNotFoundError(
                "cannot load the InceptionV3 weights of torch-fidelity (downloaded from GitHub on first "
                "use); download pt_inception-2015-12-05-6726825d.pth on a machine with network access "
                f"and pass its path as `weights_path`. Cause: {type(err).__name__}: {err}"
            ) from err
        if device is not None:
            net = net.to(device)
        self.model = net.eval()
        self.device = next(net.parameters()).device
        self.name = "inception-v3-compat"
        self.dim = 2048

    def _extract(self, frames: Tensor) -> Tensor:
        # torch-fidelity wants uint8 (n, 3, H, W) and resizes to 299x299 itself.
        out = self.model(to_uint8(frames).to(self.device))
        return out[0].reshape(frames.shape[0], -1)


def load_feature_extractor(
    spec: str | os.PathLike[str] = DEFAULT_FEATURE_MODEL,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    local_files_only: bool | None = None,
    **kwargs: Any,
) -> FrameFeatures:
    """Build the frame feature extractor named by ``spec`` (``--feature-model`` / ``--fid-features``).

    ``spec`` is a local directory, a hub id, an alias from :data:`FEATURE_ALIASES` (``dinov2``,
    ``clip``) or ``inception`` (torch-fidelity, optional extra). Extra keyword arguments go to the
    extractor (``revision``, ``batch_size``, ``center_crop``; ``weights_path`` for Inception).
    """
    text = os.fspath(spec)
    key = text.strip().lower()
    if key in INCEPTION_SPECS and not os.path.isdir(text):
        if dtype is not None or local_files_only is not None:
            raise ValueError(
                f"`dtype`/`local_files_only` do not apply to {text!r} (torch-fidelity InceptionV3); drop "
                "them or pass weights_path=... for an offline copy of the weights."
            )
        return InceptionFeatures(device=device, **kwargs)
    if key in FEATURE_ALIASES and not os.path.isdir(text):
        text = FEATURE_ALIASES[key]
    return HFImageFeatures(text, device=device, dtype=dtype, local_files_only=local_files_only, **kwargs)
