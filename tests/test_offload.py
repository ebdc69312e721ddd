"""Offloading per role: which role's weights are on the device at every transformer call of a blended run."""

from __future__ import annotations

import pytest
import torch

import flowblending
from flowblending.errors import FlowBlendingError
from flowblending.offload import RoleOffloadConfig, apply_role_offload

STEPS = 10
PLAN = ["large"] * 4 + ["small"] * 4 + ["large"] * 2
# on CPU the "device" is cpu:0: the same memory, but every move names it, so a recorder can tell the two apart
DEVICE = "cpu:0"


@pytest.fixture(scope="module")
def pair(tiny_wan_deep):
    return tiny_wan_deep


@pytest.fixture(scope="module")
def profile(tiny_wan_deep_profile):
    return tiny_wan_deep_profile


def _pipe(pair, profile):
    from diffusers import WanPipeline, WanTransformer3DModel

    pipe = WanPipeline.from_pretrained(pair.pipeline_dir)
    small = WanTransformer3DModel.from_pretrained(pair.small_dir)
    return flowblending.apply_profile(pipe, profile, {"small": small})


def _run(pipe, pair, **extra):
    kwargs = {**pair.call_kwargs, "num_inference_steps": STEPS, "output_type": "latent", **extra}
    return pipe(prompt="a red circle", generator=torch.Generator().manual_seed(0), **kwargs).frames


class MoveRecorder:
    """Records where ``.to`` last sent each role's model (its own hook's or the router's), and all of them per call."""

    def __init__(self, router, monkeypatch):
        self.where = {role: "cpu" for role in router.roles}
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.tracked = {id(model): [role] for role, model in router.roles.items()}
        self.tracked[id(router)] = list(router.roles)
        for role, model in router.roles.items():
            model.register_forward_hook(lambda *_, role=role: self.calls.append((role, dict(self.where))))
        # on torch.nn.Module itself: accelerate removes ``to`` overrides it finds on instances when it re-hooks
        to = torch.nn.Module.to

        def recorded(module, *args, **kwargs):
            device = args[0] if args else kwargs.get("device")
            if isinstance(device, (str, torch.device)):
                for role in self.tracked.get(id(module), ()):
                    self.where[role] = str(device)
            return to(module, *args, **kwargs)

        monkeypatch.setattr(torch.nn.Module, "to", recorded)


def _expected_calls():
    other = {"large": "small", "small": "large"}
    return [(role, {role: DEVICE, other[role]: "cpu"}) for role in PLAN for _ in ("cond", "uncond")]


def test_model_offload_keeps_only_the_running_role_on_the_device(pair, profile, monkeypatch):
    # diffusers' own model offload moves the run's tensors to cpu:0, which changes float rounding (~2e-6 on CPU)
    # against a run without offload: the reference is the router under diffusers' offload (both roles resident)
    plain_offload = _pipe(pair, profile)
    plain_offload.enable_model_cpu_offload(device=DEVICE)
    reference = _run(plain_offload, pair)
    pipe = apply_role_offload(_pipe(pair, profile), RoleOffloadConfig(kind="model", device=DEVICE))
    recorder = MoveRecorder(pipe.transformer, monkeypatch)
    for _ in range(2):  # the second run checks the hooks diffusers re-installs after each run are split again
        recorder.calls.clear()
        out = _run(pipe, pair)
        assert recorder.calls == _expected_calls()
        assert recorder.where == {"large": "cpu", "small": "cpu"}  # offloaded when the run ended
        assert torch.equal(out, reference), (out - reference).abs().max()
    # the VAE's hook offloads the router through the hook standing for the resident role
    routed = pipe.vae._hf_hook.prev_module_hook
    assert routed is pipe.transformer.stretch_callbacks["offload"]
    routed.resident = "small"
    assert routed.model is pipe.transformer.roles["small"]
    recorder.where = {"large": DEVICE, "small": DEVICE}
    routed.offload()
    assert recorder.where == {"large": "cpu", "small": "cpu"}


def test_plain_model_offload_would_put_both_roles_on_the_device(pair, profile, monkeypatch):
    pipe = _pipe(pair, profile)
    pipe.enable_model_cpu_offload(device=DEVICE)
    recorder = MoveRecorder(pipe.transformer, monkeypatch)
    _run(pipe, pair)
    assert recorder.calls[0] == ("large", {"large": DEVICE, "small": DEVICE})


def test_group_offload_onloads_only_the_running_roles_groups(pair, profile, monkeypatch):
    from diffusers.hooks.group_offloading import ModuleGroup, _is_group_offload_enabled

    reference = _run(_pipe(pair, profile), pair)
    pipe = _pipe(pair, profile)
    router = pipe.transformer
    owner = {}
    for role, model in router.roles.items():
        for module in model.modules():
            owner[id(module)] = role
        for tensor in [*model.parameters(), *model.buffers()]:
            owner[id(tensor)] = role
    resident: set[tuple[str, int]] = set()
    peak_roles: list[set[str]] = []
    onload, offload = ModuleGroup.onload_, ModuleGroup.offload_

    def roles_of(group):
        tensors = [*group.parameters, *group.buffers]
        for module in group.modules:
            tensors += [*module.parameters(), *module.buffers()]
        return {owner[id(t)] for t in tensors if id(t) in owner}

    def recording_onload(self):
        for role in roles_of(self):  # text encoder and VAE groups (no role) are offloaded too
            resident.add((role, id(self)))
        peak_roles.append({role for role, _ in resident})
        return onload(self)

    def recording_offload(self):
        for role in roles_of(self):
            resident.discard((role, id(self)))
        return offload(self)

    monkeypatch.setattr(ModuleGroup, "onload_", recording_onload)
    monkeypatch.setattr(ModuleGroup, "offload_", recording_offload)
    apply_role_offload(pipe, RoleOffloadConfig(kind="group", device="cpu"))
    assert all(_is_group_offload_enabled(model) for model in router.roles.values())
    assert not hasattr(router, "_diffusers_hook") or router._diffusers_hook.get_hook("group_offloading") is None
    out = _run(pipe, pair)
    assert torch.equal(out, reference)
    assert all(len(roles) <= 1 for roles in peak_roles), [r for r in peak_roles if len(r) > 1][:3]
    assert {"large"} in peak_roles and {"small"} in peak_roles


def test_refusals(pair, profile):
    from diffusers import WanPipeline

    with pytest.raises(FlowBlendingError, match="offload kind must be one of model, group, got 'disk'"):
        apply_role_offload(_pipe(pair, profile), "disk")
    with pytest.raises(FlowBlendingError, match="not a RoutingTransformer"):
        apply_role_offload(WanPipeline.from_pretrained(pair.pipeline_dir), "model")
