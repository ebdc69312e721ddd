"""The per-prompt calibration protocol (paper sec 4.2, 4.3, 5.1), made cheap by record and replay.

Pass 1 for one (prompt, seed): the large-only run is recorded while the small model is evaluated on the same
inputs (divergence, App. C); every early candidate L->S(k) replays the recorded large prefix and computes
only the small steps; each is compared frame by frame with large-only (eq. 2). Pass 2, once the early
boundary e is chosen over all prompts: the L->S(e) branch is recorded once, and every late candidate
L->S->L(r) replays the large prefix and the small middle and computes only the final large steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .replay import Recording, ReplayTransformer, install


@dataclass(frozen=True)
class Unit:
    """One (prompt, seed) pair of the calibration set."""

    index: int
    prompt: str
    seed: int
    image: Any = None

    @property
    def key(self) -> str:
        return f"{self.index:04d}-s{self.seed}"


@dataclass
class Generator:
    """Runs the stock pipeline with a replay transformer for a given per-step source plan."""

    pipe: Any
    models: Mapping[str, torch.nn.Module]
    call_kwargs: Mapping[str, Any]
    num_steps: int
    base_role: str = "large"
    calls: dict[str, int] = field(default_factory=dict)
    replayed: int = 0

    def run(
        self,
        unit: Unit,
        sources: Sequence[str | Recording],
        *,
        record: bool = False,
        shadow: str | None = None,
        capture: bool = False,
    ) -> tuple[torch.Tensor, ReplayTransformer]:
        """Frames (1, F, 3, H, W) in [0, 1] of one generation, and the transformer that ran it."""
        transformer = ReplayTransformer(
            self.models, sources, self.base_role, record=record, shadow=shadow, capture_first_step=capture
        )
        install(self.pipe, transformer)
        kwargs = dict(self.call_kwargs)
        if unit.image is not None:
            kwargs["image"] = unit.image
        with torch.no_grad():
            out = self.pipe(
                prompt=unit.prompt,
                generator=torch.Generator(device="cpu").manual_seed(unit.seed),
                num_inference_steps=self.num_steps,
                output_type="pt",
                **kwargs,
            )
        for role, n in transformer.counters.calls.items():
            self.calls[role] = self.calls.get(role, 0) + n
        self.replayed += transformer.replayed
        return out.frames.float().cpu(), transformer


def video_metrics(
    frames: torch.Tensor,
    reference: torch.Tensor,
    extractors: Mapping[str, Any],
    reference_features: Mapping[str, torch.Tensor],
) -> dict[str, float]:
    """Frame-wise similarity of one video to large-only (eq. 2): feature cosine per extractor, PSNR, SSIM."""
    from .metrics import frames_of, psnr_ssim

    out: dict[str, float] = {}
    flat = frames_of(frames)
    for name, extractor in extractors.items():
        feats = extractor(flat)
        cos = torch.nn.functional.cosine_similarity(feats.double(), reference_features[name].double(), dim=1)
        out[name] = float(cos.mean())
    psnr, ssim = psnr_ssim(frames, reference)
    out["psnr"] = float(psnr.mean())
    out["ssim"] = float(ssim.mean())
    return out


@dataclass
class Pass1Result:
    """What pass 1 keeps of one unit (JSON-serialisable) plus the large recording for pass 2."""

    divergence: dict[str, dict[str, list[float]]]  # metric -> label ("all", "cond", ...) -> per step
    early: dict[int, dict[str, float]]  # switch step -> metrics against large-only
    sigmas: list[float]
    recording: Recording
    large_frames: torch.Tensor
    large_fid_features: torch.Tensor | None
    small_frames: torch.Tensor | None
    step_calls: list[tuple[tuple, dict]]  # inputs of step 0's calls on the meta device (FLOP counting)


def run_pass1(
    gen: Generator,
    unit: Unit,
    early_steps: Sequence[int],
    extractors: Mapping[str, Any],
    fid_extractor: Any | None,
    *,
    with_early: bool = True,
    on_branch: Callable[[str], None] | None = None,
) -> Pass1Result:
    """Large-only recorded run with the small model as shadow, then every early branch L->S(k) by replay."""
    from .metrics import frames_of

    n = gen.num_steps
    large_frames, rec = gen.run(unit, ["large"] * n, record=True, shadow="small", capture=True)
    if on_branch:
        on_branch("large-only (recorded, divergence)")
    div = rec.divergence
    divergence = {
        metric: {"all": div.per_step(metric), **{label: div.per_step(metric, label) for label in div.labels()}}
        for metric in ("cosine", "l2")
    }
    sigmas = [float(s) for s in gen.pipe.scheduler.sigmas[:n]]
    early: dict[int, dict[str, float]] = {}
    small_frames = None
    if with_early:
        ref_feats = {name: ex(frames_of(large_frames)) for name, ex in extractors.items()}
        for k in early_steps:
            frames, _ = gen.run(unit, [rec.recording] * k + ["small"] * (n - k))
            early[k] = video_metrics(frames, large_frames, extractors, ref_feats)
            if k == 0:
                small_frames = frames
            if on_branch:
                on_branch(f"early switch at step {k}")
    fid_feats = fid_extractor(frames_of(large_frames)) if fid_extractor is not None else None
    keep = max(early_steps, default=0) if with_early else 0
    return Pass1Result(
        divergence=divergence,
        early=early,
        sigmas=sigmas,
        recording=rec.recording.restrict(range(keep)),
        large_frames=large_frames,
        large_fid_features=fid_feats,
        small_frames=small_frames,
        step_calls=rec.first_step_inputs,
    )


@dataclass
class Pass2Result:
    """FID features of every late candidate of one unit, and its frames for report samples."""

    features: dict[int, torch.Tensor]  # re-entry step -> frame features
    frames: dict[int, torch.Tensor]


def run_pass2(
    gen: Generator,
    unit: Unit,
    large_recording: Recording,
    early_step: int,
    late_steps: Sequence[int],
    fid_extractor: Any,
    *,
    keep_frames: bool = False,
    on_branch: Callable[[str], None] | None = None,
) -> Pass2Result:
    """L->S(e) recorded once, then every late candidate L->S->L(r) replays both and computes r..N on large."""
    from .metrics import frames_of

    n, e = gen.num_steps, early_step
    prefix = [large_recording] * e
    lss_frames, ls = gen.run(unit, [*prefix, *(["small"] * (n - e))], record=True)
    if on_branch:
        on_branch(f"L->S at step {e} (recorded)")
    features = {n: fid_extractor(frames_of(lss_frames))}
    frames = {n: lss_frames} if keep_frames else {}
    for r in late_steps:
        if not e < r < n:
            continue
        sources = [*prefix, *([ls.recording] * (r - e)), *(["large"] * (n - r))]
        out, _ = gen.run(unit, sources)
        features[r] = fid_extractor(frames_of(out))
        if keep_frames:
            frames[r] = out
        if on_branch:
            on_branch(f"late re-entry at step {r}")
    return Pass2Result(features=features, frames=frames)


def naive_calls(
    num_steps: int, calls_per_step: int, early_steps: Sequence[int], early_step: int | None, late_steps: Sequence[int]
) -> dict[str, int]:
    """Transformer calls per role if every schedule were generated from scratch and the divergence measured in
    a separate pass (the paper's protocol run naively): per (prompt, seed)."""
    n, c = num_steps, calls_per_step
    large = n * c  # divergence pass, large main stream
    small = n * c  # ... with the small model on the same inputs
    large += n * c  # large-only reference
    for k in early_steps:
        large += k * c
        small += (n - k) * c
    if early_step is not None:
        for r in late_steps:
            if early_step < r < n:
                large += (early_step + n - r) * c
                small += (r - early_step) * c
    return {"large": large, "small": small}


def shared_calls(
    num_steps: int, calls_per_step: int, early_steps: Sequence[int], early_step: int | None, late_steps: Sequence[int]
) -> dict[str, int]:
    """Transformer calls per role the shared protocol computes per (prompt, seed): the recorded large-only
    run with its small shadow, the small steps of every early branch, the L->S(e) branch once, and the final
    large steps of every late candidate."""
    n, c = num_steps, calls_per_step
    large = n * c
    small = n * c + sum(n - k for k in early_steps) * c
    if early_step is not None:
        small += (n - early_step) * c
        large += sum(n - r for r in late_steps if early_step < r < n) * c
    return {"large": large, "small": small}
