"""Regional compilation of each role with the router in place: no recompilation per step, per switch or per run."""

from __future__ import annotations

import pytest
import torch

import flowblending

STEPS = 10


@pytest.fixture(scope="module")
def pair(tiny_wan_deep):
    return tiny_wan_deep


@pytest.fixture(scope="module")
def profile(tiny_wan_deep_profile):
    return tiny_wan_deep_profile


@pytest.fixture
def dynamo():
    """A fresh dynamo cache and counters; reset again afterwards so no compiled code leaks into other tests."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    yield counters
    torch._dynamo.reset()
    counters.clear()


def _pipe(pair, profile, cache=None):
    from diffusers import WanPipeline, WanTransformer3DModel

    pipe = WanPipeline.from_pretrained(pair.pipeline_dir)
    small = WanTransformer3DModel.from_pretrained(pair.small_dir)
    return flowblending.apply_profile(pipe, profile, {"small": small}, cache=cache)


def _run(pipe, pair):
    kwargs = {**pair.call_kwargs, "num_inference_steps": STEPS, "output_type": "latent"}
    return pipe(prompt="a red circle", generator=torch.Generator().manual_seed(0), **kwargs).frames


class CountingBackend:
    """A torch.compile backend that runs graphs eagerly and counts how many it was given (one per compilation)."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


def _snapshot(counters, backend):
    return backend.graphs, dict(counters["stats"]), sum(counters["recompiles"].values())


def test_compiled_roles_compile_once_per_role(pair, profile, dynamo):
    pipe = _pipe(pair, profile)
    eager = _run(pipe, pair)
    backend = CountingBackend()
    for model in pipe.transformer.roles.values():
        model.compile_repeated_blocks(backend=backend, fullgraph=True)
    first = _run(pipe, pair)
    after_first = _snapshot(dynamo, backend)
    second = _run(pipe, pair)
    after_second = _snapshot(dynamo, backend)
    # one graph per block shape: the large blocks share one, the small blocks another (widths 32 and 16);
    # 10 steps x 2 calls x (3 or 2) blocks and two switches per run add none, and neither does the second run
    assert after_first[0] == 2 and after_first[1]["unique_graphs"] == 2, after_first
    assert after_second == after_first
    assert after_first[2] == 0
    assert torch.allclose(first, eager, atol=1e-6) and torch.equal(first, second)


def test_compiled_roles_with_first_block_cache_do_not_recompile_after_the_first_run(pair, profile, dynamo):
    from diffusers import FirstBlockCacheConfig

    pipe = _pipe(pair, profile, cache=FirstBlockCacheConfig(threshold=0.05))
    eager = _run(pipe, pair)
    backend = CountingBackend()
    for model in pipe.transformer.roles.values():
        model.compile_repeated_blocks(backend=backend)  # the cache hooks break the graph: no fullgraph
    first = _run(pipe, pair)
    after_first = _snapshot(dynamo, backend)
    second = _run(pipe, pair)
    assert _snapshot(dynamo, backend) == after_first
    assert after_first[0] > 0
    assert torch.allclose(first, eager, atol=1e-6) and torch.equal(first, second)
