"""diffusers' cache hooks on a blended L-S-L run: per-stretch step counts, resets at switches, real skipping."""

from __future__ import annotations

import pytest
import torch

import flowblending
from flowblending.caching import BlendCacheConfig, parse_cache_spec
from flowblending.errors import FlowBlendingError

PROMPT = "a red circle moving left"
STEPS = 10
PLAN = ["large"] * 4 + ["small"] * 4 + ["large"] * 2  # boundaries 0.4, 0.8 at 10 steps
STRETCHES = [(0, 4), (4, 4), (8, 2)]  # (first step, length) of each stretch of one role
RATIOS = {
    "large": [1.0, 1.01, 0.99, 1.0, 1.02, 1.0, 0.98, 1.01, 1.0, 0.99],
    "small": [1.0, 0.99, 1.01, 1.0, 1.0, 1.01, 0.99, 1.0, 1.02, 1.0],
}


@pytest.fixture(scope="module")
def pair(tiny_wan_deep):
    return tiny_wan_deep


@pytest.fixture(scope="module")
def profile(tiny_wan_deep_profile):
    return tiny_wan_deep_profile


def _kwargs(pair, **extra):
    return {
        **pair.call_kwargs,
        "prompt": PROMPT,
        "generator": torch.Generator().manual_seed(0),
        "num_inference_steps": STEPS,
        "output_type": "latent",
        **extra,
    }


def _plain(pair):
    from diffusers import WanPipeline

    return WanPipeline.from_pretrained(pair.pipeline_dir)


def _load(pair, role):
    from diffusers import WanTransformer3DModel

    if role == "large":
        return WanTransformer3DModel.from_pretrained(pair.pipeline_dir / "transformer").eval()
    return WanTransformer3DModel.from_pretrained(pair.small_dir).eval()


def _blended(pair, profile, cache):
    pipe = _plain(pair)
    return flowblending.apply_profile(pipe, profile, {"small": _load(pair, "small")}, cache=cache)


def _reference(pair, config_for_stretch):
    """No router: one plainly cached copy of the role's model per stretch, swapped in by a step-end callback."""
    pipe = _plain(pair)
    models = []
    for start, length in STRETCHES:
        model = _load(pair, PLAN[start])
        model.enable_cache(config_for_stretch(PLAN[start], start, length))
        models.append(model)
    starts = {start: k for k, (start, _) in enumerate(STRETCHES)}
    pipe.transformer = models[0]

    def swap(p, i, t, callback_kwargs):
        if i + 1 in starts:
            p.transformer = models[starts[i + 1]]
        return {}

    return pipe(**_kwargs(pair, callback_on_step_end=swap)).frames


def _fbc(threshold):
    from diffusers import FirstBlockCacheConfig

    return FirstBlockCacheConfig(threshold=threshold)


def _taylorseer():
    from diffusers import TaylorSeerCacheConfig

    return TaylorSeerCacheConfig(cache_interval=2, disable_cache_before_step=1, use_lite_mode=True)


def _magcache(role, start=0, length=STEPS):
    from diffusers import MagCacheConfig

    return MagCacheConfig(threshold=0.06, mag_ratios=RATIOS[role][start : start + length], num_inference_steps=length)


class _CallCounter:
    """Counts calls of each role's first-block attention (computed blocks) per step, via forward pre-hooks."""

    def __init__(self, models):
        self.calls = {role: 0 for role in models}
        for role, model in models.items():
            for block in model.blocks:
                block.attn1.register_forward_pre_hook(lambda *_, role=role: self._count(role))

    def _count(self, role):
        self.calls[role] += 1


@pytest.mark.parametrize(
    "name, blend_cache, stretch_config",
    [
        ("first-block", lambda: _fbc(0.05), lambda role, start, length: _fbc(0.05)),
        ("first-block-skip-all", lambda: _fbc(10.0), lambda role, start, length: _fbc(10.0)),
        ("taylorseer", _taylorseer, lambda role, start, length: _taylorseer()),
        (
            "magcache",
            lambda: {"large": _magcache("large"), "small": _magcache("small")},
            lambda role, start, length: _magcache(role, start, length),
        ),
    ],
)
def test_cached_blend_equals_per_stretch_reference(pair, profile, name, blend_cache, stretch_config):
    pipe = _blended(pair, profile, blend_cache())
    counter = _CallCounter(dict(pipe.transformer.roles))
    blended = pipe(**_kwargs(pair)).frames
    reference = _reference(pair, stretch_config)
    assert torch.equal(blended, reference), f"{name}: max diff {(blended - reference).abs().max():.3g}"
    uncached = _blended(pair, profile, None)
    uncached_counter = _CallCounter(dict(uncached.transformer.roles))
    plain = uncached(**_kwargs(pair)).frames
    # two calls (cond, uncond) per step, one attn1 per block
    assert uncached_counter.calls == {"large": 6 * 2 * 3, "small": 4 * 2 * 2}
    if name == "first-block":
        return  # a threshold that may or may not skip on random weights: equality is the check
    assert counter.calls["large"] < uncached_counter.calls["large"], counter.calls
    assert counter.calls["small"] < uncached_counter.calls["small"], counter.calls
    assert not torch.equal(blended, plain)


def test_first_block_skip_all_computes_only_the_first_step_of_each_stretch(pair, profile):
    pipe = _blended(pair, profile, _fbc(10.0))
    counter = _CallCounter(dict(pipe.transformer.roles))
    pipe(**_kwargs(pair))
    # every later call of a stretch reuses the residual: only the head block runs (cond + uncond, 3 stretches)
    large_first, small_first = 2 * 2 * 3, 1 * 2 * 2  # two large stretches, one small: full blocks on the first step
    large_rest, small_rest = (6 - 2) * 2, (4 - 1) * 2  # head block only
    assert counter.calls == {"large": large_first + large_rest, "small": small_first + small_rest}


def _magcache_head(model):
    return model.blocks[0]._diffusers_hook.get_hook("mag_cache_leader_block_hook")


def _magcache_probe(role, head, seen):
    """A pre-hook recording what the MagCache head hook holds as a call starts: context, step counter, config."""

    def probe(module, args):
        context, state = head.state_manager.context, head.state_manager.get_state()
        seen.append(
            (
                role,
                context.name,
                context.step_index,
                context.num_inference_steps,
                state.step_index,
                head.config.num_inference_steps,
                round(float(head.config.mag_ratios[0]), 4),
            )
        )

    return probe


def test_magcache_and_taylorseer_count_steps_per_stretch(pair, profile):
    seen: dict[str, list] = {"magcache": [], "taylorseer": []}
    for kind, cache in (
        ("magcache", {"large": _magcache("large"), "small": _magcache("small")}),
        ("taylorseer", _taylorseer()),
    ):
        pipe = _blended(pair, profile, cache)
        roles = pipe.transformer.roles
        if kind == "magcache":
            # the context the running model's hooks hold during the call: stretch-relative step and length
            for role, model in roles.items():
                model.blocks[0].register_forward_pre_hook(
                    _magcache_probe(role, _magcache_head(model), seen["magcache"])
                )

        def record(p, i, t, callback_kwargs, kind=kind, roles=roles):
            if kind == "taylorseer":
                for role, model in roles.items():
                    hook = model.proj_out._diffusers_hook.get_hook("taylorseer_cache")
                    states = hook.state_manager._state_cache
                    if PLAN[i] == role:
                        seen["taylorseer"].append((i, role, {n: s.current_step for n, s in states.items()}))
            return {}

        pipe(**_kwargs(pair, callback_on_step_end=record))

    local = [i - start for start, length in STRETCHES for i in range(start, start + length)]
    lengths = [length for _, length in STRETCHES for _ in range(length)]
    expected_mag = []
    for i in range(STEPS):
        role, start = PLAN[i], i - local[i]
        for name in ("cond", "uncond"):
            expected_mag.append((role, name, local[i], lengths[i], local[i], lengths[i], RATIOS[role][start]))
    assert seen["magcache"] == expected_mag
    # TaylorSeer numbers each stretch's steps from 0 (the small model: its 4 of 10 steps, numbered 0..3)
    assert seen["taylorseer"] == [(i, PLAN[i], {"cond": local[i], "uncond": local[i]}) for i in range(STEPS)]
    small = [entry for entry in seen["taylorseer"] if entry[1] == "small"]
    assert [entry[2]["cond"] for entry in small] == [0, 1, 2, 3]


def test_reapplying_a_profile_keeps_magcache_bookkeeping(pair, profile):
    pipe = _blended(pair, profile, {"large": _magcache("large"), "small": _magcache("small")})
    first = pipe(**_kwargs(pair)).frames
    flowblending.apply_profile(pipe, profile)  # a new router over the same cached models
    assert set(pipe.transformer.stretch_callbacks) == {"magcache:large", "magcache:small"}
    assert torch.equal(pipe(**_kwargs(pair)).frames, first)


def test_refusals(pair, profile):
    from diffusers import MagCacheConfig, PyramidAttentionBroadcastConfig

    with pytest.raises(FlowBlendingError, match="mag_ratios are model-dependent"):
        _blended(pair, profile, _magcache("large"))
    with pytest.raises(FlowBlendingError, match="calibrate each model alone"):
        _blended(pair, profile, {"small": MagCacheConfig(calibrate=True)})
    with pytest.raises(FlowBlendingError, match="only FirstBlockCacheConfig"):
        _blended(pair, profile, PyramidAttentionBroadcastConfig(current_timestep_callback=lambda: 0))
    with pytest.raises(FlowBlendingError, match="role\\(s\\) medium"):
        _blended(pair, profile, {"medium": _fbc(0.1)})
    from diffusers import TaylorSeerCacheConfig

    with pytest.raises(FlowBlendingError, match="matches no module of role 'large'"):
        _blended(pair, profile, TaylorSeerCacheConfig())


def test_parse_cache_spec(tmp_path):
    from diffusers import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

    config = parse_cache_spec("first-block:0.05")
    assert isinstance(config.default, FirstBlockCacheConfig) and config.default.threshold == 0.05
    config = parse_cache_spec("taylorseer:4:2")
    assert isinstance(config.default, TaylorSeerCacheConfig)
    assert (config.default.cache_interval, config.default.disable_cache_before_step) == (4, 2)
    ratios = tmp_path / "ratios.json"
    ratios.write_text('{"large": [1.0, 1.1, 1.0], "small": [1.0, 0.9]}')
    config = parse_cache_spec(f"magcache:0.1:{ratios}")
    assert isinstance(config, BlendCacheConfig) and set(config.per_role) == {"large", "small"}
    assert isinstance(config.per_role["small"], MagCacheConfig) and config.per_role["small"].threshold == 0.1
    for bad, message in (
        ("magcache", "needs each model's mag_ratios"),
        ("magcache:0.1:/nonexistent.json", "does not exist"),
        ("first-block:abc", "not a number"),
        ("teacache", "not a cache this runtime supports"),
    ):
        with pytest.raises(FlowBlendingError, match=message):
            parse_cache_spec(bad)


def test_cli_run_with_cache_and_offload(profile, tmp_path):
    from click.testing import CliRunner

    from flowblending.cli import cli

    runner = CliRunner()
    args = ["run", "--profile", str(profile), "--prompt", "a red circle", "--steps", "10", "--device", "cpu"]
    result = runner.invoke(cli, [*args, "--cache", "teacache"])
    assert result.exit_code == 2 and "error: --cache 'teacache' is not a cache this runtime supports" in result.output
    target = tmp_path / "out.gif"
    result = runner.invoke(cli, [*args, "--cache", "first-block:10", "--offload", "model", "--output", str(target)])
    assert result.exit_code == 0, result.output
    assert target.exists() and "steps: large 6, small 4" in result.output
