"""The routing transformer: one module set as ``pipe.transformer`` that runs the planned model at each step.

Stock diffusers pipelines are never forked (docs/architecture.md#routing). The router holds every role's
transformer, exposes the base (large) model's ``config``, ``dtype`` and ``device`` (any other attribute a pipeline
reads, such as Kandinsky 5's ``visual_cond``, resolves on the base model), and on each call looks up the current
step to pick the model of the planned segment: from ``scheduler.step_index``, which is exact even when UniPC
repeats a timestep, or, for schedulers without one (DDIM, PNDM, CogVideoX's), from the pipeline's current
timestep (a new tensor each loop iteration) matched in order against ``scheduler.timesteps``. All calls of one
step (Wan's cond and uncond calls, LTX's batched call) therefore go to the same model.

For diffusers' cache hooks each *stretch* (the maximal run of consecutive steps of one role) is a complete run of
its own: the role's stateful hooks are reset when a stretch starts, and the cache context the pipeline passes is
given to the running model with ``step_index`` counted from the stretch's first step and ``num_inference_steps``
set to the stretch's length (docs/acceleration.md).

A schedule whose segments run their own step count (``Segment.steps``, paper section 6(b)) needs the pipeline to
run the composed noise levels; :func:`flowblending.generate.composed_call` passes them and tells the router the
segment of each run step (:meth:`RoutingTransformer.expect_run`), which the router checks against the scheduler.
Which CFG branch a call is comes from the pipeline's ``cache_context`` name (``"cond"``, ``"uncond"``,
``"cond_uncond"``) or, for a pipeline that names none (Cosmos, Sana, SD3), from its family in
:mod:`flowblending.families`: the branch order of its calls or batch halves (``cfg_order``), and the CFG formula a
per-segment ``guidance_scale`` is rewritten through (``cfg_anchor``: ``uncond + g (cond - uncond)`` or Cosmos'
``cond + g (cond - uncond)``). A segment's ``guidance_scale`` means what the pipeline's own ``guidance_scale``
argument means. A segment with ``guidance_scale`` 1 computes no unconditional branch while the pipeline runs CFG:
a batched [uncond, cond] call (LTX) runs the model on the cond half only and returns it for both halves, a separate
uncond call (Wan, Cosmos) is answered with the step's cond output without calling the model; CFG then gives exactly
the cond prediction. A call input the pipeline sizes for the base model (VACE's per-layer
``control_hidden_states_scale``) is fitted to the running model by its family (:meth:`Family.fit_inputs`).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from diffusers.models.modeling_utils import ModelMixin

from .errors import FlowBlendingError
from .families import Branch, Family, family_of
from .schedule import Segment, has_own_steps, plan_by_sigma, plan_segments

Routing = Literal["fraction", "sigma"]

_MISSING = object()

# called as callback(role, model, start, length, num_steps) when a stretch of ``length`` steps of ``role`` begins
StretchCallback = Callable[[str, torch.nn.Module, int, int, int], None]


@dataclass
class RunCounters:
    """Per-run counters: transformer calls and distinct steps per role, and the role of every step.

    ``uncond_skipped``: per role, the unconditional branches not computed because the segment runs with
    ``guidance_scale`` 1 (one per step: LTX's half batch, Wan's or Cosmos' uncond call, which is then not in
    ``calls``).
    """

    num_steps: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)
    step_roles: dict[int, str] = field(default_factory=dict)
    uncond_skipped: dict[str, int] = field(default_factory=dict)

    def record(self, step: int, role: str) -> None:
        self.calls[role] = self.calls.get(role, 0) + 1
        if step not in self.step_roles:
            self.step_roles[step] = role
            self.steps[role] = self.steps.get(role, 0) + 1

    def record_skip(self, step: int, role: str) -> None:
        self.uncond_skipped[role] = self.uncond_skipped.get(role, 0) + 1
        if step not in self.step_roles:
            self.step_roles[step] = role
            self.steps[role] = self.steps.get(role, 0) + 1


class RoutingTransformer(ModelMixin):
    """Routes each transformer call of a diffusers pipeline to the model planned for the current step.

    Args:
        models: role -> transformer; the ``base_role`` model supplies ``config``, ``dtype`` and ``device``.
        schedule: segments over fractions of the process (see :mod:`flowblending.schedule`).
        base_role: the role whose pipeline this router is installed in (usually ``"large"``).
        routing: ``"fraction"`` (step i of N runs the segment holding i/N) or ``"sigma"``
            (the segment whose noise-level range holds the step's sigma; needs ``boundary_sigmas``).
        boundary_sigmas: sigma at each boundary of the calibration setting (profile ``boundaries[*].sigma``).
    """

    _supports_gradient_checkpointing = False

    def __init__(
        self,
        models: Mapping[str, torch.nn.Module],
        schedule: Sequence[Segment],
        base_role: str = "large",
        routing: Routing = "fraction",
        boundary_sigmas: Sequence[float] | None = None,
    ):
        super().__init__()
        if base_role not in models:
            raise FlowBlendingError(
                f"base_role {base_role!r} is not among the models ({', '.join(models)}); pass the role whose "
                "pipeline holds the text encoder and VAE."
            )
        unknown = sorted({s.model for s in schedule} - set(models))
        if unknown:
            raise FlowBlendingError(
                f"the schedule uses role(s) {', '.join(unknown)} but no transformer was given for them; "
                f"pass transformers={{{unknown[0]!r}: ...}}."
            )
        if routing not in ("fraction", "sigma"):
            raise FlowBlendingError(f"routing must be 'fraction' or 'sigma', got {routing!r}.")
        if routing == "sigma" and (boundary_sigmas is None or len(boundary_sigmas) != len(schedule) - 1):
            raise FlowBlendingError(
                "routing='sigma' needs one boundary sigma per switch (the profile's boundaries[*].sigma); "
                f"got {boundary_sigmas!r} for {len(schedule)} segments."
            )
        if routing == "sigma" and has_own_steps(schedule):
            raise FlowBlendingError(
                "routing='sigma' cannot route a schedule whose segments run their own steps (segment steps): the run's "
                "noise levels are composed from the schedule itself; use routing='fraction' (--routing fraction)."
            )
        ordered = {base_role: models[base_role], **{k: v for k, v in models.items() if k != base_role}}
        self.roles = torch.nn.ModuleDict(ordered)
        self.base_role = base_role
        self.schedule = tuple(schedule)
        self.routing = routing
        self.boundary_sigmas = tuple(boundary_sigmas or ())
        self._pipeline_ref: weakref.ReferenceType | None = None
        self._run_timesteps: torch.Tensor | None = None
        self._plan: tuple[int, ...] = ()
        self._call_name: str | None = None
        self._call_context: dict[str, Any] = {}
        # the attached pipeline's family (its CFG call pattern and formula, inputs fitted per role), set per run
        self._family: Family | None = None
        # (step, index of the latest call within that step)
        self._call_count: tuple[int, int] = (-1, -1)
        # per step: (first step, length) of the stretch of consecutive steps of one role that holds it
        self._stretches: tuple[tuple[int, int], ...] = ()
        self._active_stretch: int | None = None
        self.stretch_callbacks: dict[str, StretchCallback] = {}
        self._pending_cond: tuple[int, torch.Tensor] | None = None
        self._pending_out: tuple[int, Any] | None = None
        self._dtypes: dict[str, torch.dtype] = {}
        # for schedulers without step_index: the run's timesteps as floats, the last step and its timestep object
        self._timestep_values: tuple[float, ...] = ()
        self._last_step = -1
        self._last_timestep: torch.Tensor | None = None
        # a composed run (own-steps segments): the segment of each run step and the noise levels it must have
        self._expected: tuple[tuple[int, ...], tuple[float, ...] | None] | None = None
        self.counters = RunCounters()

    def __getattr__(self, name: str) -> Any:
        """Parameters, buffers and submodules as in ``nn.Module``; any other public attribute from the base model."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            pass
        # Read only __dict__ here: attribute access on self would re-enter __getattr__ (e.g. during __init__).
        # Private and dunder names are never forwarded, so hooks (accelerate's _hf_hook, diffusers' hooks) and
        # copy/pickle protocols see the router itself.
        roles = self.__dict__.get("_modules", {}).get("roles")
        base_role = self.__dict__.get("base_role")
        base = roles._modules.get(base_role) if roles is not None and base_role is not None else None
        if base is None or name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        try:
            return getattr(base, name)
        except AttributeError:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}, and neither has its base model "
                f"{type(base).__name__} (role {base_role!r})"
            ) from None

    # --- what the pipeline reads -------------------------------------------------------------------------
    @property
    def base(self) -> torch.nn.Module:
        return self.roles[self.base_role]

    @property
    def config(self):
        return self.base.config

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    @property
    def device(self) -> torch.device:
        return self.base.device

    @contextlib.contextmanager
    def cache_context(self, name: str, **kwargs: Any):
        """Remember the call's name and cache context; ``forward`` gives it to the running model, stretch-relative."""
        self._call_name, self._call_context = name, kwargs
        try:
            yield
        finally:
            self._call_name, self._call_context = None, {}

    def enable_group_offload(self, onload_device: torch.device, **kwargs: Any) -> None:
        """Group offloading on each role's transformer (what ``pipe.enable_group_offload`` calls), never the router."""
        for model in self.roles.values():
            model.enable_group_offload(onload_device, **kwargs)

    def _reset_stateful_cache(self, recurse: bool = True) -> None:
        """Reset every role's stateful hooks (the pipeline calls this when a run ends) and forget the stretch."""
        self._active_stretch = None
        for model in self.roles.values():
            if hasattr(model, "_reset_stateful_cache"):
                model._reset_stateful_cache(recurse=recurse)

    # --- wiring -----------------------------------------------------------------------------------------
    def attach(self, pipeline: Any) -> None:
        """Remember the pipeline (weakly) to read its scheduler's step index and guidance scale on each call."""
        self._pipeline_ref = weakref.ref(pipeline)

    def expect_run(self, segments: Sequence[int] | None, sigmas: Sequence[float] | None = None) -> None:
        """Plan the next runs by these segment indices per run step (a composed run), or by fraction again (None).

        ``sigmas``: the noise level each run step must start from; the router refuses a run whose scheduler made
        other ones (it would route the right model at the wrong noise level).
        """
        if segments is None:
            self._expected = None
            return
        segments = tuple(int(k) for k in segments)
        if any(not 0 <= k < len(self.schedule) for k in segments):
            raise FlowBlendingError(
                f"expect_run got segment indices {segments} for a {len(self.schedule)}-segment schedule."
            )
        self._expected = (segments, None if sigmas is None else tuple(float(x) for x in sigmas))
        self._run_timesteps = None  # the next call starts a new run

    def _pipeline(self) -> Any:
        pipe = self._pipeline_ref() if self._pipeline_ref is not None else None
        if pipe is None:
            raise FlowBlendingError(
                "the routing transformer is not attached to a pipeline; install it with "
                "flowblending.apply_profile(pipe, profile, ...) rather than constructing it by hand."
            )
        return pipe

    def _current_step(self) -> int:
        scheduler = self._pipeline().scheduler
        timesteps = getattr(scheduler, "timesteps", None)
        if timesteps is None or len(timesteps) == 0:
            raise FlowBlendingError(
                f"{type(scheduler).__name__} has no timesteps; the router can only be called from inside a "
                "pipeline call (after scheduler.set_timesteps)."
            )
        if timesteps is not self._run_timesteps:  # set_timesteps ran: a new generation starts
            self._start_run(scheduler, timesteps)
        index = getattr(scheduler, "step_index", _MISSING)
        if index is _MISSING:
            return self._step_from_current_timestep(scheduler)
        step = 0 if index is None else int(index)
        if not 0 <= step < len(self._plan):
            raise FlowBlendingError(
                f"scheduler step_index {step} is outside the {len(self._plan)} planned steps; the scheduler "
                f"{type(scheduler).__name__} takes several model evaluations per step, which the router does not plan."
            )
        return step

    def _step_from_current_timestep(self, scheduler: Any) -> int:
        """The step of a call for a scheduler without ``step_index``, from the pipeline's ``_current_timestep``.

        Pipelines set ``_current_timestep = t`` once per loop iteration, and iterating the timesteps tensor gives a
        new tensor object each iteration: a new object is the next step, whose value is looked up in
        ``scheduler.timesteps`` after the previous step's index. Repeated timesteps (PNDM repeats one) are thus
        counted in call order, and a run that starts late (img2img strength) starts at its first timestep.
        """
        pipe = self._pipeline()
        current = getattr(pipe, "_current_timestep", None)
        name = type(scheduler).__name__
        if not isinstance(current, torch.Tensor) or current.numel() != 1:
            raise FlowBlendingError(
                f"scheduler {name} has no step_index and {type(pipe).__name__} does not record its current timestep "
                f"(pipe._current_timestep is {type(current).__name__}), so the router cannot tell which step a call "
                "belongs to; use a scheduler with step_index (e.g. FlowMatchEulerDiscreteScheduler, "
                "UniPCMultistepScheduler, DPMSolverMultistepScheduler)."
            )
        if current is self._last_timestep:  # another call of the same step (Wan's uncond call)
            return self._last_step
        value = float(current)
        start = self._last_step + 1
        for step in range(start, len(self._timestep_values)):
            if self._timestep_values[step] == value:
                self._last_step, self._last_timestep = step, current
                return step
        raise FlowBlendingError(
            f"the pipeline's current timestep {value:g} is not among scheduler {name}'s timesteps after step "
            f"{start - 1} ({len(self._timestep_values)} planned); the router maps calls to steps by timestep for "
            "schedulers without step_index, so the pipeline must step through scheduler.timesteps in order."
        )

    def _start_run(self, scheduler: Any, timesteps: torch.Tensor) -> None:
        n = len(timesteps)
        if self._expected is not None:
            self._plan = self._composed_plan(scheduler, n)
        elif has_own_steps(self.schedule):
            raise FlowBlendingError(
                "this schedule has segments that run their own steps (segment steps), so the pipeline must run the "
                "composed noise levels; generate with flowblending.generate.generate(pipe, profile, ...) or call the "
                "pipeline inside flowblending.generate.composed_call(pipe, profile, kwargs)."
            )
        elif self.routing == "sigma":
            if getattr(scheduler, "sigmas", None) is None:
                raise FlowBlendingError(
                    f"routing='sigma' needs the scheduler's sigmas, but {type(scheduler).__name__} has none; "
                    "use routing='fraction' (--routing fraction) with this scheduler."
                )
            sigmas = [float(s) for s in scheduler.sigmas[:n]]
            self._plan = plan_by_sigma(self.schedule, self.boundary_sigmas, sigmas)
        else:
            self._plan = plan_segments(self.schedule, n)
        self._stretches = _stretches(tuple(self.schedule[k].model for k in self._plan))
        self._active_stretch = None
        self._run_timesteps = timesteps
        self._pending_cond = self._pending_out = None
        self._last_step, self._last_timestep = -1, None
        self._family = family_of(type(self._pipeline()).__name__)
        self._call_count = (-1, -1)
        self._timestep_values = () if hasattr(scheduler, "step_index") else tuple(float(t) for t in timesteps)
        # ModelMixin.dtype walks every module: read it once per run (pipe.to() between runs is picked up)
        self._dtypes = {role: model.dtype for role, model in self.roles.items()}
        self.counters = RunCounters(num_steps=n)

    def _composed_plan(self, scheduler: Any, n: int) -> tuple[int, ...]:
        """The expected segment per run step, once the scheduler's step count and noise levels are checked."""
        segments, sigmas = self._expected
        name = type(scheduler).__name__
        if n != len(segments):
            raise FlowBlendingError(
                f"the pipeline runs {n} steps but the composed schedule has {len(segments)}; pass the composed noise "
                "levels with flowblending.generate.composed_call and do not override num_inference_steps or timesteps."
            )
        if sigmas is not None:
            got = getattr(scheduler, "sigmas", None)
            if got is not None:
                got = [float(x) for x in got[:n]]
                worst = max(abs(a - b) for a, b in zip(got, sigmas, strict=True))
                if worst > 1e-5:
                    i = next(i for i, (a, b) in enumerate(zip(got, sigmas, strict=True)) if abs(a - b) > 1e-5)
                    raise FlowBlendingError(
                        f"scheduler {name} made noise level {got[i]:.6g} at run step {i} where the composed schedule "
                        f"has {sigmas[i]:.6g} (its config transforms the sigmas it is given: flow shift, dynamic "
                        "shifting, shift_terminal or karras sigmas); run this schedule with a scheduler that keeps "
                        "them, e.g. FlowMatchEulerDiscreteScheduler with shift 1 and no dynamic shifting."
                    )
        return segments

    # --- the call -------------------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        step = self._current_step()
        call = self._count_call(step)
        segment = self.schedule[self._plan[step]]
        model = self.roles[segment.model]
        start, length = self._stretches[step]
        if start != self._active_stretch:
            self._enter_stretch(segment.model, model, start, length)
        branch = self._branch(call)
        cond_only = segment.guidance_scale == 1.0 and branch is not None and self._cfg_active()
        if cond_only and branch == "uncond":
            pending = self._pending_out
            if pending is None or pending[0] != step:
                raise FlowBlendingError(
                    f"step {step}: the pipeline made its uncond call before the cond call; guidance_scale 1 answers "
                    "the uncond call with the cond output, so it needs the cond call first (as in Wan and Cosmos)."
                )
            # answer u := c: u + g (c - u) = c and c + g (c - u) = c (also on Cosmos' shared x0 = c_skip x + c_out F)
            self._pending_out = None
            self.counters.record_skip(step, segment.model)
            return pending[1]
        halves = cond_only and branch == "cond_uncond"
        if halves:
            args, kwargs = _cond_half(args, kwargs)
        args, kwargs = self.model_inputs(segment.model, args, kwargs)
        if self._call_name is not None and hasattr(model, "cache_context"):
            context = dict(self._call_context)
            if "step_index" in context:
                context["step_index"] = step - start
            if "num_inference_steps" in context:
                context["num_inference_steps"] = length
            with model.cache_context(self._call_name, **context):
                out = model(*args, **kwargs)
        else:
            out = model(*args, **kwargs)
        self.counters.record(step, segment.model)
        sample = out[0] if isinstance(out, tuple) else out.sample
        sample = sample.to(self._dtypes[self.base_role])
        if halves:  # LTX: the cond prediction stands for both halves of the batched [uncond, cond] call
            self.counters.record_skip(step, segment.model)
            sample = torch.cat([sample, sample])
        elif segment.guidance_scale is not None and not cond_only:
            sample = self._guide(step, sample, segment.guidance_scale, branch)
        if isinstance(out, tuple):
            out = (sample, *out[1:])
        else:
            out.sample = sample
        if cond_only and branch == "cond":  # separate calls: the step's uncond call gets this output
            self._pending_out = (step, out)
        return out

    def model_inputs(self, role: str, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        """A call's inputs as ``role``'s model takes them: fitted by the pipeline's family, floats cast to its dtype."""
        if self._family is not None and self._family.layer_input is not None:
            kwargs = self._family.fit_inputs(kwargs, getattr(self.roles[role], "config", None) or {}, role)
        return cast_inputs(args, kwargs, self._dtypes[role])

    def _count_call(self, step: int) -> int:
        """The index of this call within its step (0 for the step's first call)."""
        last, index = self._call_count
        index = index + 1 if last == step else 0
        self._call_count = (step, index)
        return index

    def _branch(self, call: int) -> str | None:
        """Which CFG branch the ``call``-th call of a step is: ``"cond"``, ``"uncond"``, ``"cond_uncond"`` or None.

        The pipeline's ``cache_context`` name when it gives one of these; otherwise, while the pipeline runs CFG, the
        family table's order (``cfg_order``): the separate calls of a step in that order, or one batched call on
        [uncond, cond]. A call beyond the pattern (SD3's skip-layer call) or of an unknown pipeline is None.
        """
        if self._call_name in ("cond", "uncond", "cond_uncond"):
            return self._call_name
        family = self._family
        if self._call_name is not None or family is None or not self._cfg_active():
            return None
        if family.cfg_call == "batched":
            return "cond_uncond" if call == 0 else None
        return family.cfg_order[call] if call < len(family.cfg_order) else None

    def _cfg_active(self) -> bool:
        """Whether the pipeline runs classifier-free guidance now (both branches), as its own property says."""
        pipe = self._pipeline()
        active = getattr(pipe, "do_classifier_free_guidance", None)
        if active is None:
            return float(getattr(pipe, "guidance_scale", 1.0) or 0.0) > 1.0
        return bool(active)

    def _enter_stretch(self, role: str, model: torch.nn.Module, start: int, length: int) -> None:
        """Start a stretch: reset the role's stateful hooks (cache state never crosses a switch), run the callbacks."""
        self._active_stretch = start
        if hasattr(model, "_reset_stateful_cache"):
            model._reset_stateful_cache()
        for callback in self.stretch_callbacks.values():
            callback(role, model, start, length, len(self._plan))

    def _guide(self, step: int, sample: torch.Tensor, scale: float, branch: str | None) -> torch.Tensor:
        """Turn the pipeline's CFG with its scale ``g`` into its CFG with a per-segment scale ``g'``.

        The formula is the family's (``uncond + g (cond - uncond)`` unless the table says ``cond + g (cond - uncond)``);
        a batched call's cond half is rewritten, a separate uncond call's output (see :func:`guided_uncond`).
        """
        if not self._cfg_active():
            if scale == 1.0:  # no CFG in the pipeline: the cond prediction is already what scale 1 gives
                return sample
            raise FlowBlendingError(
                f"a segment has guidance_scale {scale:g} but the pipeline runs without classifier-free guidance "
                "(its guidance_scale is <= 1); give the pipeline a guidance_scale > 1 (e.g. --guidance-scale 3) or set "
                "the segment's guidance_scale to 1."
            )
        pipe = self._pipeline()
        pipeline_scale = float(getattr(pipe, "guidance_scale", 1.0))
        anchor = self._family.cfg_anchor if self._family is not None else "uncond"
        if anchor == "cond" and scale < 1.0:
            raise FlowBlendingError(
                f"a segment has guidance_scale {scale:g}, but {type(pipe).__name__}'s guidance_scale is the g of "
                "cond + g (cond - uncond) and turns CFG off at g <= 1 (the conditional prediction); set the segment's "
                "guidance_scale to 1 for that, or to a value above 1."
            )
        if branch == "cond_uncond":  # one batched call [uncond, cond] (uncond-anchored: families.py checks)
            if pipeline_scale == 0:
                raise FlowBlendingError("per-segment guidance needs a pipeline guidance_scale > 0.")
            uncond, cond = sample.chunk(2)
            return torch.cat([uncond, uncond + (scale / pipeline_scale) * (cond - uncond)])
        if branch == "cond":  # separate calls, cond first: the step's uncond output is rewritten
            self._pending_cond = (step, sample)
            return sample
        if branch == "uncond" and self._pending_cond is not None and self._pending_cond[0] == step:
            cond = self._pending_cond[1]
            self._pending_cond = None
            return guided_uncond(cond, sample, pipeline_scale, scale, anchor)
        raise FlowBlendingError(
            f"per-segment guidance_scale is set but {type(pipe).__name__}'s call (cache_context {self._call_name!r}) "
            "is not a CFG branch the router knows (cond/uncond calls or one batched [uncond, cond] call, named by "
            "cache_context or in flowblending.families); remove guidance_scale from the schedule's segments for "
            "this pipeline."
        )


def guided_uncond(
    cond: torch.Tensor, uncond: torch.Tensor, scale: float, new_scale: float, anchor: Branch = "uncond"
) -> torch.Tensor:
    """The uncond output ``u'`` for which a pipeline's CFG with ``scale`` g gives its CFG with ``new_scale`` g'.

    ``anchor`` ``"uncond"``: ``u' + g (c - u') = u + g' (c - u)``, so ``u' = (u + g' (c - u) - g c) / (1 - g)``;
    ``"cond"`` (Cosmos): ``c + g (c - u') = c + g' (c - u)``, so ``u' = c + (g' / g) (u - c)``. Both rewrites are
    affine in the outputs, so they also hold when the pipeline applies CFG to a prediction that is the same affine
    map of the transformer output in both branches (Cosmos' x0 = c_skip x + c_out F, and its conditioning frames,
    which both branches replace by the same latents).
    """
    if anchor == "cond":
        if scale == 0:
            raise FlowBlendingError("per-segment guidance needs a pipeline guidance_scale > 1 (CFG enabled), got 0.")
        return cond + (new_scale / scale) * (uncond - cond)
    if scale == 1.0:
        raise FlowBlendingError("per-segment guidance needs a pipeline guidance_scale != 1 (CFG enabled).")
    return (uncond + new_scale * (cond - uncond) - scale * cond) / (1.0 - scale)


def _cond_half(args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
    """The cond half of a batched [uncond, cond] call: every tensor input batched like ``hidden_states``, sliced."""
    hidden = kwargs.get("hidden_states", args[0] if args else None)
    if not isinstance(hidden, torch.Tensor) or hidden.dim() == 0 or hidden.shape[0] % 2:
        raise FlowBlendingError(
            "guidance_scale 1 on a batched CFG call needs hidden_states with an even batch [uncond, cond]; got "
            f"{type(hidden).__name__} {tuple(getattr(hidden, 'shape', ()))}."
        )
    batch = hidden.shape[0]

    def half(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch:
            return value[batch // 2 :]
        return value

    return tuple(half(a) for a in args), {k: half(v) for k, v in kwargs.items()}


def _stretches(roles: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Per step, the (first step, length) of the maximal run of consecutive steps with the same role."""
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(roles):
        j = i
        while j < len(roles) and roles[j] == roles[i]:
            j += 1
        out.extend([(i, j - i)] * (j - i))
        i = j
    return tuple(out)


#: Keyword inputs the pipelines pass in float32 whatever the model's dtype, and the models read in float32: the
#: timestep (bf16 would round 999.x to 1000) and LTXConditionPipeline's RoPE coordinates (bf16 would move the
#: frame positions, which are frame index / frame rate).
UNCAST_INPUTS = frozenset({"timestep", "video_coords"})


def cast_inputs(args: tuple, kwargs: dict[str, Any], dtype: torch.dtype) -> tuple[tuple, dict[str, Any]]:
    """Floating tensors cast to a model's dtype, except the keyword inputs in :data:`UNCAST_INPUTS`."""

    def cast(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != dtype:
            return value.to(dtype)
        return value

    return tuple(cast(a) for a in args), {k: (v if k in UNCAST_INPUTS else cast(v)) for k, v in kwargs.items()}
