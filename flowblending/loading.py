"""Load a profile's models into a stock diffusers pipeline and install the routing transformer.

``load_pipeline`` loads the base role's full pipeline (text encoder, VAE, tokenizer, scheduler) with
``DiffusionPipeline.from_pretrained`` and only the transformer of every other role; ``apply_profile`` installs
the router in a pipeline the user already has. Pair compatibility is checked before anything is generated.

A profile names what gets loaded, and profiles are shared, so loading is safe by default: weights are read from
safetensors only (``use_safetensors=True``), a model with only pickle weights is refused unless the caller passes
``allow_pickle=True`` (``--allow-pickle``), and ``trust_remote_code`` is never passed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from .errors import FlowBlendingError, IncompatibleModelsError, ModelNotAvailableError
from .experts import ExpertPair, base_transformer, install_transformer, single_model
from .families import check_pipeline
from .profile import ModelSpec, Profile, load_profile, resolve_model_location
from .router import Routing, RoutingTransformer
from .schedule import Segment


class PickleWeightsError(ModelNotAvailableError):
    """A model has only pickle weights (``.bin``), which are loaded only with ``allow_pickle=True``."""


#: What diffusers 0.42 and transformers 5 raise (OSError) when ``use_safetensors=True`` finds no safetensors file:
#: a local directory (both libraries), a Hub repository without one, and a pipeline repository's file listing.
_NO_SAFETENSORS = (
    re.compile(r"Error no file named (?P<file>[^\s,]+\.safetensors) found in directory (?P<dir>.+?)\.?$"),
    re.compile(r"(?P<repo>\S+) does not appear to have a file named (?P<file>[^\s,]+\.safetensors)"),
    re.compile(r"Could not find the necessary `safetensors` weights in (?P<files>.+) \(variant="),
)
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_PICKLE_NAME = re.compile(r"[\w./-]+\.(?:bin|pt|pth|ckpt|pkl)\b")
_NO_REMOTE_CODE = (
    "trust_remote_code",
    "flowblending never runs code from a model repository (a profile names what gets loaded); "
    "load the pipeline yourself and use apply_profile(pipe, profile, ...)",
)
_PICKLE_OPT_IN = (
    "if you trust its source, pass --allow-pickle (flowblending run) or allow_pickle=True "
    "(load_pipeline / load_transformer), or convert it once with save_pretrained(..., safe_serialization=True)"
)

#: Config fields that must agree between transformers sharing one pipeline (latents in, velocity out, text in).
COMPATIBILITY_FIELDS = (
    "in_channels",
    "out_channels",
    "patch_size",
    "patch_size_t",
    "text_dim",
    "text_embed_dim",
    "caption_channels",
    "image_dim",
    "pos_embed_seq_len",
    "joint_attention_dim",
    "pooled_projection_dim",
    "vace_in_channels",
)


def check_compatible(base: Any, other: Any, base_role: str = "large", other_role: str = "small") -> None:
    """Raise IncompatibleModelsError naming the first config field on which two transformers disagree.

    An :class:`~flowblending.experts.ExpertPair` is described by its high expert (the low one must match it).
    Fields an input is sized by per model may differ (VACE's ``vace_layers``): the router fits those inputs to
    each role (:class:`flowblending.families.LayerInput`).
    """
    if isinstance(base, ExpertPair):
        check_compatible(base.high, base.low, f"{base_role} (high-noise expert)", f"{base_role} (low-noise expert)")
    if isinstance(other, ExpertPair):
        check_compatible(other.high, other.low, f"{other_role} (high-noise expert)", f"{other_role} (low-noise expert)")
    base, other = single_model(base), single_model(other)
    if type(base).__name__ != type(other).__name__:
        raise IncompatibleModelsError(
            f"transformer of role {other_role!r} is a {type(other).__name__} but the {base_role!r} pipeline uses "
            f"{type(base).__name__}; both roles must be the same model family."
        )
    base_cfg, other_cfg = dict(base.config), dict(other.config)
    for name in COMPATIBILITY_FIELDS:
        a, b = base_cfg.get(name), other_cfg.get(name)
        if isinstance(a, list):
            a = tuple(a)
        if isinstance(b, list):
            b = tuple(b)
        if a != b:
            raise IncompatibleModelsError(
                f"transformers of roles {base_role!r} and {other_role!r} differ in config field {name!r}: "
                f"{a!r} vs {b!r}; they cannot share latents and text embeddings. Use a pair of the same family."
            )


def _dtype_kwargs(torch_dtype: torch.dtype | None) -> dict[str, Any]:
    """``dtype=`` for diffusers >= 0.42 (where ``torch_dtype`` is deprecated), ``torch_dtype=`` before."""
    if torch_dtype is None:
        return {}
    import diffusers
    from packaging.version import Version

    key = "dtype" if Version(diffusers.__version__.split(".dev")[0]) >= Version("0.42") else "torch_dtype"
    return {key: torch_dtype}


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE")


def _safe_kwargs(allow_pickle: bool) -> dict[str, Any]:
    """``use_safetensors=True`` unless pickle weights are allowed (then diffusers prefers safetensors, falls back)."""
    if not isinstance(allow_pickle, bool):
        raise FlowBlendingError(f"allow_pickle must be True or False, got {allow_pickle!r}.")
    return {} if allow_pickle else {"use_safetensors": True}


class _DropFetchErrors(logging.Filter):
    """Drops diffusers' "An error occurred while trying to fetch" log line: the error raised says it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("An error occurred while trying to fetch")


@contextlib.contextmanager
def _quiet_fetch_errors() -> Iterator[None]:
    """While loading, keep diffusers from logging the missing-safetensors error that is raised (and mapped) anyway."""
    logger, dropper = logging.getLogger("diffusers.models.modeling_utils"), _DropFetchErrors()
    logger.addFilter(dropper)
    try:
        yield
    finally:
        logger.removeFilter(dropper)


def _pickle_only(exc: BaseException | None) -> tuple[str, list[str]] | None:
    """(directory or "", pickle file names) when ``exc`` is the no-safetensors error of a model with pickle weights.

    A Hub repository that lacks the safetensors file gives no listing: its names are empty.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        message = str(exc).strip()
        for pattern in _NO_SAFETENSORS:
            match = pattern.search(message)
            if match is None:
                continue
            found = match.groupdict()
            if found.get("dir"):  # a local directory: the refusal is about pickle only if pickle files are there
                directory = found["dir"]
                try:
                    names = sorted(n for n in os.listdir(directory) if n.endswith(_PICKLE_SUFFIXES))
                except OSError:
                    return None
                return (directory, names) if names else None
            if found.get("files"):  # a Hub repository's file listing: its pickle files
                names = sorted(set(_PICKLE_NAME.findall(found["files"])))
                return ("", names) if names else None
            return ("", [])  # a Hub repository without the safetensors file
        exc = exc.__cause__ or exc.__context__
    return None


def _not_available(spec: ModelSpec, role: str, exc: BaseException | None) -> ModelNotAvailableError:
    where = f" (revision {spec.revision})" if spec.revision else ""
    pickle = _pickle_only(exc)
    if pickle is not None:
        directory, names = pickle
        root = os.path.abspath(spec.location)
        if directory and os.path.abspath(directory).startswith(root + os.sep):  # a pipeline component
            sub = os.path.relpath(directory, root)
            names = [f"{sub}/{n}" for n in names]
        what = f"only pickle weights ({', '.join(names)})" if names else "no safetensors weights, only pickle ones"
        return PickleWeightsError(
            f"refusing to load the {role!r} model {spec.id!r}{where}: it has {what}, and unpickling can run "
            f"arbitrary code; {_PICKLE_OPT_IN}."
        )
    if os.path.isabs(spec.location) or spec.id.startswith((".", "package://")):
        hint = f"the directory {spec.location} does not hold a diffusers model ({exc.__class__.__name__}: {exc})"
        return ModelNotAvailableError(f"cannot load the {role!r} model: {hint}.")
    mode = "offline mode (HF_HUB_OFFLINE=1)" if _offline() else "local_files_only or no network"
    return ModelNotAvailableError(
        f"cannot load the {role!r} model {spec.id!r}{where}: it is not in the local Hugging Face cache and "
        f"cannot be downloaded ({mode}). Fetch it first with `huggingface-cli download {spec.id}`, or point the "
        "profile's models entry at a local directory."
    )


def _pipeline_class(name: str) -> Any:
    import diffusers

    cls = getattr(diffusers, name, None)
    if cls is None:
        warnings.warn(
            f"diffusers {diffusers.__version__} has no pipeline class {name!r}; falling back to DiffusionPipeline "
            "(the class recorded in the repository's model_index.json).",
            stacklevel=3,
        )
        return diffusers.DiffusionPipeline
    return cls


def load_transformer(
    profile: Profile | str,
    role: str,
    *,
    torch_dtype: torch.dtype | None = None,
    local_files_only: bool | None = None,
    like: Any = None,
    allow_pickle: bool = False,
) -> Any:
    """Load one role's transformer with ``from_pretrained`` (hub id or local path, subfolder, revision).

    A role with ``file`` (format version 2) is one checkpoint file, loaded with ``from_single_file`` and the config
    of ``config``/``subfolder`` (:func:`load_single_file_transformer`). Only safetensors weights are read unless
    ``allow_pickle=True``; a model with only pickle weights raises PickleWeightsError.
    """
    profile = load_profile(profile)
    if role not in profile.models:
        raise FlowBlendingError(f"role {role!r} is not in profile {profile.name!r}; roles: {', '.join(profile.roles)}.")
    spec = profile.models[role]
    import diffusers

    cls = getattr(diffusers, spec.transformer_class, None) if spec.transformer_class else None
    if cls is None:
        if like is None:
            raise FlowBlendingError(
                f"profile {profile.name!r} gives no transformer_class for role {role!r}; add it to models.{role}."
            )
        cls = type(like)
    if spec.file is not None:
        return load_single_file_transformer(
            cls, spec, role, torch_dtype=torch_dtype, local_files_only=local_files_only, allow_pickle=allow_pickle
        )
    kwargs: dict[str, Any] = {"revision": spec.revision, **_dtype_kwargs(torch_dtype), **_safe_kwargs(allow_pickle)}
    if spec.subfolder:
        kwargs["subfolder"] = spec.subfolder
    if local_files_only is not None:
        kwargs["local_files_only"] = local_files_only
    try:
        with _quiet_fetch_errors():
            model = cls.from_pretrained(spec.location, **kwargs)
    except OSError as exc:
        raise _not_available(spec, role, exc) from exc
    return model.eval()


def _first_line(exc: BaseException, limit: int) -> str:
    """The first line of an exception's message, at most ``limit`` characters, without a closing period."""
    return (str(exc).strip().splitlines() or [""])[0][:limit].rstrip(".")


def single_file_source(spec: ModelSpec) -> str:
    """Where ``from_single_file`` reads a role's ``file``: the path in a local folder ``id``, else its Hub URL."""
    location = spec.location
    if os.path.isdir(location):
        return os.path.join(location, spec.file)
    if os.path.isabs(location) or spec.id.startswith((".", "package://")):
        return os.path.join(location, spec.file)  # a local folder that is missing: reported as not available
    return f"https://huggingface.co/{spec.id}/blob/main/{spec.file}"  # the revision goes in revision=


def load_single_file_transformer(
    cls: Any,
    spec: ModelSpec,
    role: str,
    *,
    torch_dtype: torch.dtype | None = None,
    local_files_only: bool | None = None,
    allow_pickle: bool = False,
) -> Any:
    """One role's transformer from a single checkpoint file: ``cls.from_single_file(file, config=..., subfolder=...)``.

    diffusers converts the original key layout (LTX-Video's ``model.diffusion_model.patchify_proj...``) and reads
    the architecture from ``spec.config`` (a diffusers repository or folder) at ``spec.subfolder``, so no default
    config is fetched. Only ``.safetensors`` files are read unless ``allow_pickle=True``.
    """
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    _safe_kwargs(allow_pickle)
    where = f" (revision {spec.revision})" if spec.revision else ""
    if not str(spec.file).lower().endswith(".safetensors") and not allow_pickle:
        raise PickleWeightsError(
            f"refusing to load the {role!r} model file {spec.file!r} of {spec.id!r}{where}: it is not a .safetensors "
            f"file, and unpickling can run arbitrary code; {_PICKLE_OPT_IN}."
        )
    if not hasattr(cls, "from_single_file"):
        raise FlowBlendingError(
            f"models.{role}.file: diffusers cannot load a {cls.__name__} from a single file (no from_single_file); "
            "convert the checkpoint to diffusers layout and give its folder as id without file."
        )
    source = single_file_source(spec)
    local = not source.startswith("https://")
    if local and not os.path.isfile(source):
        raise ModelNotAvailableError(
            f"cannot load the {role!r} model: the file {source} does not exist; check models.{role}.id and file."
        )
    config = resolve_model_location(spec.config)
    kwargs: dict[str, Any] = {"config": config, "subfolder": spec.subfolder, **_dtype_kwargs(torch_dtype)}
    if spec.revision:
        kwargs["revision"] = spec.revision
    if local_files_only is not None:
        kwargs["local_files_only"] = local_files_only
    try:
        with _quiet_fetch_errors():
            model = cls.from_single_file(source, **kwargs)
    except OSError as exc:
        mode = "offline mode (HF_HUB_OFFLINE=1)" if _offline() else "local_files_only or no network"
        raise ModelNotAvailableError(
            f"cannot load the {role!r} model file {spec.file!r} of {spec.id!r}{where} with the config of "
            f"{spec.config!r} ({spec.subfolder or '.'}): it is not in the local Hugging Face cache and cannot be "
            f"downloaded ({mode}): {type(exc).__name__}: {_first_line(exc, 160)}. Fetch "
            f"them first (`huggingface-cli download {spec.id} {spec.file}` and `huggingface-cli download "
            f"{spec.config}`), or point models.{role} at local copies."
        ) from exc
    except (ValueError, KeyError, RuntimeError, TypeError, SingleFileComponentError) as exc:
        raise ModelNotAvailableError(
            f"cannot load the {role!r} model from the single file {source} with the config of {spec.config!r}: "
            f"{type(exc).__name__}: {_first_line(exc, 200)}; check that the file holds a {cls.__name__} "
            "checkpoint of that architecture."
        ) from exc
    return model.eval()


def apply_profile(
    pipe: Any,
    profile: Profile | str | os.PathLike,
    transformers: Mapping[str, Any] | None = None,
    *,
    schedule: tuple[Segment, ...] | None = None,
    routing: Routing = "fraction",
    cache: Any = None,
) -> Any:
    """Install the profile's routing transformer as ``pipe.transformer`` and return the pipeline.

    ``pipe.transformer`` is the base role's model (or a router already installed: it is replaced);
    ``transformers`` gives the other roles' models, e.g. ``{"small": small_transformer}``. A model id that
    differs from the profile's only warns, so a shipped profile can be applied to a fine-tune. ``cache``: a
    diffusers cache config for every role, a mapping role -> config, or a ``BlendCacheConfig``
    (docs/acceleration.md); ``None`` keeps the caches already enabled.
    """
    profile = load_profile(profile)
    check_pipeline(type(pipe).__name__)
    current = pipe.transformer
    given = dict(transformers or {})
    previous = current if isinstance(current, RoutingTransformer) else None
    if isinstance(current, RoutingTransformer):
        given = {**{r: m for r, m in current.roles.items()}, **given}
        current = current.roles[current.base_role]
    else:  # a two-expert pipeline (Wan 2.2 A14B): the base role is both experts, switched as diffusers does
        current = base_transformer(pipe)
    if profile.base_role in given and given[profile.base_role] is not current:
        raise FlowBlendingError(
            f"transformers[{profile.base_role!r}] was given but the base role's transformer is the pipeline's own "
            "(pipe.transformer); leave it out of transformers."
        )
    given[profile.base_role] = current
    segments = schedule or profile.schedule
    needed = {s.model for s in segments}
    missing = sorted(needed - set(given))
    if missing:
        raise FlowBlendingError(
            f"profile {profile.name!r} runs role(s) {', '.join(missing)} but no transformer was given for them; "
            f"pass transformers={{{missing[0]!r}: flowblending.load_transformer(profile, {missing[0]!r})}}."
        )
    unknown = sorted(set(given) - set(profile.models))
    if unknown:
        raise FlowBlendingError(
            f"transformers has role(s) {', '.join(unknown)} that profile {profile.name!r} does not define; "
            f"its roles are {', '.join(profile.roles)}."
        )
    if type(pipe).__name__ != profile.pipeline_class:
        warnings.warn(
            f"profile {profile.name!r} was calibrated with {profile.pipeline_class}, applying it to "
            f"{type(pipe).__name__}.",
            stacklevel=2,
        )
    for role, model in given.items():
        if role != profile.base_role:
            check_compatible(current, model, profile.base_role, role)
        _warn_if_other_model(model, profile.models[role], role)
        model.eval()
    router = RoutingTransformer(
        given,
        segments,
        base_role=profile.base_role,
        routing=routing,
        boundary_sigmas=[b.sigma for b in profile.boundaries] if routing == "sigma" else None,
    )
    if previous is not None:  # caches enabled on the roles keep their per-stretch bookkeeping
        router.stretch_callbacks.update(previous.stretch_callbacks)
    if cache is not None:
        if any(isinstance(m, ExpertPair) for m in given.values()):
            raise FlowBlendingError(
                f"cache={cache!r} is not supported when a role is a two-expert model (here the {profile.base_role!r} "
                "role of a Wan 2.2 A14B pipeline): its experts would share one cache stretch; run without cache."
            )
        from .caching import apply_blend_cache

        apply_blend_cache(router, cache)
    install_transformer(pipe, router)
    router.attach(pipe)
    return pipe


def _warn_if_other_model(model: Any, spec: ModelSpec, role: str) -> None:
    loaded = str(getattr(model.config, "_name_or_path", "") or "")
    if not loaded:
        return
    norm = loaded.rstrip("/")
    if spec.subfolder and norm.endswith("/" + spec.subfolder):
        norm = norm[: -len(spec.subfolder) - 1]
    # a single-file model records where its config came from
    expected = (resolve_model_location(spec.config) if spec.file is not None else spec.location).rstrip("/")
    if norm != expected and not norm.endswith(expected) and not expected.endswith(norm):
        warnings.warn(
            f"role {role!r}: the profile was calibrated on {spec.id!r} but the model given was loaded from "
            f"{loaded!r}; the boundaries may not be optimal for it (recalibrate with `flowblending calibrate`).",
            stacklevel=3,
        )


def load_pipeline(
    profile: Profile | str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    torch_dtype: torch.dtype | None = None,
    local_files_only: bool | None = None,
    routing: Routing = "fraction",
    schedule: tuple[Segment, ...] | None = None,
    roles: tuple[str, ...] | None = None,
    allow_pickle: bool = False,
    cache: Any = None,
    offload: Any = None,
    **from_pretrained_kwargs: Any,
) -> Any:
    """Load the base role's pipeline and the other roles' transformers, then install the router.

    ``roles``: the roles to load (default: those the schedule runs); pass every role to switch schedules later
    with ``apply_profile(pipe, profile, schedule=...)`` without reloading. Every component is read from
    safetensors only unless ``allow_pickle=True``; a model with only pickle weights raises PickleWeightsError.
    ``cache``: as in ``apply_profile``. ``offload``: ``"model"``, ``"group"`` or a ``RoleOffloadConfig``: only
    the running role is on ``device`` (docs/acceleration.md); the pipeline is then not moved as a whole.
    """
    for key, fix in (("use_safetensors", "pass allow_pickle=True to also load pickle weights"), _NO_REMOTE_CODE):
        if key in from_pretrained_kwargs:
            raise FlowBlendingError(f"load_pipeline does not take {key}={from_pretrained_kwargs[key]!r}; {fix}.")
    profile = load_profile(profile)
    check_pipeline(profile.pipeline_class, f"profile {profile.name!r} names pipeline")
    spec = profile.models[profile.base_role]
    if spec.file is not None:
        raise FlowBlendingError(
            f"models.{profile.base_role}.file: the base role {profile.base_role!r} supplies the pipeline (text "
            "encoder, VAE, scheduler), which a single transformer file does not hold; give the base role a diffusers "
            "pipeline repository and use file for the other roles."
        )
    cls = _pipeline_class(profile.pipeline_class)
    kwargs: dict[str, Any] = {
        "revision": spec.revision,
        **_dtype_kwargs(torch_dtype),
        **_safe_kwargs(allow_pickle),
        **from_pretrained_kwargs,
    }
    if local_files_only is not None:
        kwargs["local_files_only"] = local_files_only
    try:
        with _quiet_fetch_errors():
            pipe = cls.from_pretrained(spec.location, **kwargs)
    except OSError as exc:
        raise _not_available(spec, profile.base_role, exc) from exc
    segments = schedule or profile.schedule
    others = {
        role: load_transformer(
            profile,
            role,
            torch_dtype=torch_dtype,
            local_files_only=local_files_only,
            like=pipe.transformer,
            allow_pickle=allow_pickle,
        )
        for role in sorted(set(roles or {s.model for s in segments}) - {profile.base_role})
    }
    apply_profile(pipe, profile, others, schedule=schedule, routing=routing, cache=cache)
    if offload is not None:
        if isinstance(pipe.transformer.base, ExpertPair):
            raise FlowBlendingError(
                f"offload={offload!r} is not supported for a two-expert pipeline (Wan 2.2 A14B) yet: both experts "
                "would be moved as one role; load without offload, or use the pipeline's own enable_model_cpu_offload "
                "without flowblending."
            )
        from .offload import RoleOffloadConfig, apply_role_offload

        config = RoleOffloadConfig(kind=offload) if isinstance(offload, str) else offload
        if config.device is None and device is not None:
            config = dataclasses.replace(config, device=device)
        apply_role_offload(pipe, config)
    elif device is not None:
        pipe.to(device)
    return pipe
