"""Record and replay transformer outputs so that no calibration branch recomputes a call it already has.

The large-only run records every transformer output; a branch that switches to the small model at step k
replays the recorded outputs for steps < k (bit-identical) and computes only the rest. Each recorded call
carries a fingerprint of its inputs; a replay whose inputs differ from the recording's is an error, never
silent. While the large model runs, the small model can be evaluated on the same inputs ("shadow"), giving
the velocity divergence of paper sec 5.1 / Appendix C in the same pass; the shadow's outputs can be kept
and *reused* by a later branch whose inputs have the same fingerprint (the first small step after a large
prefix), so that call is not computed twice. See docs/architecture.md, "Record and replay".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from flowblending.errors import FlowBlendingError
from flowblending.router import RoutingTransformer
from flowblending.schedule import Segment

from .divergence import per_sample_distances


class ReplayMismatchError(FlowBlendingError):
    """A replayed call's inputs differ from the recorded call's inputs."""


class NonFiniteVelocityError(FlowBlendingError):
    """A model produced NaN or Inf."""


def fingerprint(args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """A digest of every tensor (bytes, shape, dtype) and plain value of a transformer call's inputs."""
    h = hashlib.blake2b(digest_size=16)

    def add(name: str, value: Any) -> None:
        h.update(name.encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu()
            h.update(f"{tuple(t.shape)}{t.dtype}".encode())
            dense = torch.empty(t.numel(), dtype=t.dtype).copy_(t.reshape(-1))  # expanded tensors have stride 0
            h.update(dense.view(torch.uint8).numpy().tobytes())
        elif isinstance(value, int | float | str | bool | type(None)):
            h.update(repr(value).encode())
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                add(f"{name}[{i}]", v)
        elif isinstance(value, Mapping):
            for k in sorted(value):
                add(f"{name}.{k}", value[k])
        else:
            h.update(type(value).__name__.encode())

    for i, a in enumerate(args):
        add(f"arg{i}", a)
    for k in sorted(kwargs):
        add(k, kwargs[k])
    return h.hexdigest()


@dataclass
class Recording:
    """The outputs of one generation's transformer calls, keyed by (step, call index within the step)."""

    outputs: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)
    fingerprints: dict[tuple[int, int], str] = field(default_factory=dict)

    def add(self, step: int, call: int, output: torch.Tensor, digest: str) -> None:
        self.outputs[(step, call)] = output.detach()
        self.fingerprints[(step, call)] = digest

    def steps(self) -> list[int]:
        return sorted({s for s, _ in self.outputs})

    def restrict(self, steps: Sequence[int] | range) -> Recording:
        """The recorded calls of the given steps only."""
        keep = set(steps)
        return Recording(
            {k: v for k, v in self.outputs.items() if k[0] in keep},
            {k: v for k, v in self.fingerprints.items() if k[0] in keep},
        )

    def save(self, path: str | Path) -> None:
        """Write as safetensors (tensors ``"<step>.<call>"``, fingerprints in the metadata), atomically."""
        from safetensors.torch import save_file

        from flowblending.atomic import atomic_write

        tensors = {f"{s}.{c}": t.contiguous().cpu() for (s, c), t in self.outputs.items()}
        meta = {"fingerprints": json.dumps({f"{s}.{c}": d for (s, c), d in self.fingerprints.items()})}
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Recording:
        from safetensors import safe_open

        rec = cls()
        with safe_open(str(path), framework="pt", device=str(device)) as fh:
            digests = json.loads(fh.metadata()["fingerprints"])
            for key in fh.keys():  # noqa: SIM118 - safe_open is not a mapping
                s, c = (int(x) for x in key.split("."))
                rec.add(s, c, fh.get_tensor(key), digests[key])
        return rec


#: A step's source: a role name to compute it, or a Recording to replay it from.
StepSource = str | Recording


@dataclass
class DivergenceLog:
    """Per-step, per-call velocity divergence of a shadow model against the main-stream model (App. C)."""

    cosine: dict[tuple[int, str], float] = field(default_factory=dict)
    l2: dict[tuple[int, str], float] = field(default_factory=dict)

    def add(self, step: int, label: str, cos: float, l2: float) -> None:
        self.cosine[(step, label)] = cos
        self.l2[(step, label)] = l2

    def labels(self) -> list[str]:
        return sorted({label for _, label in self.cosine})

    def per_step(self, metric: str, label: str | None = None) -> list[float]:
        """Mean over the step's calls (or one call label) of ``metric`` ("cosine" or "l2"), step by step."""
        values = getattr(self, metric)
        steps = sorted({s for s, _ in values})
        out = []
        for s in steps:
            picked = [v for (st, lab), v in values.items() if st == s and (label is None or lab == label)]
            out.append(sum(picked) / len(picked))
        return out


class ReplayTransformer(RoutingTransformer):
    """A router whose steps are either computed by a role or replayed from a recording.

    Args:
        models: role -> transformer (the base role first supplies config, dtype and device).
        sources: one entry per step: a role name (compute) or a :class:`Recording` (replay that step).
        base_role: the pipeline's own role.
        record: keep every call's output (computed or replayed) in :attr:`recording`.
        shadow: a role evaluated on the same inputs whenever ``shadow_of`` computes, for divergence.
        shadow_of: the main-stream role (default: base role).
        keep_shadow: steps whose shadow outputs are kept in :attr:`shadow_outputs` (fingerprint -> output).
        reuse: role -> {fingerprint: output} computed earlier on the same inputs (e.g. a shadow's
            :attr:`shadow_outputs`); a call of that role with a known fingerprint is reused, not computed.
        capture_first_step: keep meta-device copies of step 0's call inputs (shapes for FLOP counting).
    """

    def __init__(
        self,
        models: Mapping[str, torch.nn.Module],
        sources: Sequence[StepSource],
        base_role: str = "large",
        *,
        record: bool = False,
        shadow: str | None = None,
        shadow_of: str | None = None,
        keep_shadow: Sequence[int] | range = (),
        reuse: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
        capture_first_step: bool = False,
    ):
        roles = [s for s in sources if isinstance(s, str)]
        super().__init__(models, [Segment(base_role, 0.0, 1.0)], base_role=base_role)
        unknown = sorted(set(roles) - set(models) | ({shadow} - set(models) if shadow else set()))
        if unknown:
            raise FlowBlendingError(f"sources/shadow name role(s) {', '.join(unknown)} with no model given.")
        self.sources = list(sources)
        self.record = record
        self.recording = Recording()
        self.shadow = shadow
        self.shadow_of = shadow_of or base_role
        self.divergence = DivergenceLog()
        self.keep_shadow = frozenset(keep_shadow)
        self.shadow_outputs: dict[str, torch.Tensor] = {}
        self.reuse = {role: dict(outputs) for role, outputs in (reuse or {}).items() if outputs}
        self.replayed = 0
        self.reused = 0
        self.capture_first_step = capture_first_step
        self.first_step_inputs: list[tuple[tuple, dict]] = []
        self._step_calls: dict[int, int] = {}

    def _start_run(self, scheduler: Any, timesteps: torch.Tensor) -> None:
        super()._start_run(scheduler, timesteps)
        if len(timesteps) != len(self.sources):
            raise FlowBlendingError(
                f"the replay plan has {len(self.sources)} steps but the pipeline runs {len(timesteps)}; pass "
                f"num_inference_steps={len(self.sources)}."
            )
        self._step_calls = {}

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        step = self._current_step()
        call = self._step_calls.get(step, 0)
        self._step_calls[step] = call + 1
        source = self.sources[step]
        if self.capture_first_step and step == 0:
            from flowblending.cost import to_meta

            self.first_step_inputs.append((to_meta(args), to_meta(kwargs)))
        computes = isinstance(source, str)
        needs_digest = self.record or not computes or source in self.reuse
        needs_digest = needs_digest or (source == self.shadow_of and step in self.keep_shadow)
        digest = fingerprint(args, kwargs) if needs_digest else ""
        if computes and digest in self.reuse.get(source, {}):
            sample = self.reuse[source][digest]
            self.reused += 1
        elif isinstance(source, Recording):
            if (step, call) not in source.outputs:
                raise ReplayMismatchError(
                    f"step {step} call {call} was not recorded; the recording holds steps {source.steps()[:3]}..."
                )
            if source.fingerprints[(step, call)] != digest:
                raise ReplayMismatchError(
                    f"replay of step {step} call {call}: the inputs differ from the recording's (prompt, seed, "
                    "setting or earlier steps changed); recompute instead of replaying."
                )
            sample = source.outputs[(step, call)]
            self.replayed += 1
        else:
            model = self.roles[source]
            cargs, ckwargs = self.model_inputs(source, args, kwargs)  # VACE's scale fitted, floats cast
            out = model(*cargs, **{**ckwargs, "return_dict": False})
            sample = out[0]
            if not torch.isfinite(sample).all():
                raise NonFiniteVelocityError(f"the {source!r} model produced NaN/Inf at step {step} (call {call}).")
            self.counters.record(step, source)
            if self.shadow is not None and source == self.shadow_of:
                self._measure(step, call, args, kwargs, sample, digest)
            sample = sample.to(self._dtypes[self.base_role])
        if self.record:
            self.recording.add(step, call, sample, digest)
        if kwargs.get("return_dict", True) is False:
            return (sample,)
        from diffusers.models.modeling_outputs import Transformer2DModelOutput

        return Transformer2DModelOutput(sample=sample)

    def _measure(self, step: int, call: int, args: tuple, kwargs: dict, main: torch.Tensor, digest: str) -> None:
        shadow_model = self.roles[self.shadow]
        sargs, skwargs = self.model_inputs(self.shadow, args, kwargs)
        other = shadow_model(*sargs, **{**skwargs, "return_dict": False})[0]
        self.counters.record(step, self.shadow)
        if not torch.isfinite(other).all():
            raise NonFiniteVelocityError(f"the {self.shadow!r} model produced NaN/Inf at step {step} (call {call}).")
        if step in self.keep_shadow:  # what the shadow role would return here in a run of its own
            self.shadow_outputs[digest] = other.detach().to(self._dtypes[self.base_role])
        cos, l2 = per_sample_distances(main, other)
        branch = self._branch(call)  # the pipeline's cache_context name, or its family's call order (Cosmos)
        if branch == "cond_uncond" and len(cos) % 2 == 0:  # one batched call [uncond, cond] (LTX)
            half = len(cos) // 2
            self.divergence.add(step, "uncond", float(cos[:half].mean()), float(l2[:half].mean()))
            self.divergence.add(step, "cond", float(cos[half:].mean()), float(l2[half:].mean()))
        else:
            label = branch if branch in ("cond", "uncond") else f"call{call}"
            self.divergence.add(step, label, float(cos.mean()), float(l2.mean()))


def install(pipe: Any, transformer: ReplayTransformer) -> ReplayTransformer:
    """Set ``transformer`` as ``pipe.transformer`` (both slots of a two-expert pipeline) and attach it."""
    from flowblending.experts import install_transformer

    install_transformer(pipe, transformer)
    transformer.attach(pipe)
    return transformer
