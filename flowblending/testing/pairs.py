"""``TinyPair`` and the helpers every tiny pair builder shares: seeded fp32 construction, hub-shaped saving."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class TinyPair:
    """A saved tiny pipeline (large transformer inside) and a saved small transformer.

    ``call_kwargs`` holds the size settings (height, width, num_frames, max_sequence_length, guidance_scale, and
    ``image`` for image-to-video); treat it as read-only and use ``kwargs(**overrides)`` for a fresh dict.
    """

    pipeline_dir: Path
    small_dir: Path
    pipeline_class: str
    call_kwargs: dict[str, Any]
    transformer_class: str = ""
    family: str = ""

    def kwargs(self, **overrides: Any) -> dict[str, Any]:
        """A fresh copy of ``call_kwargs`` updated with ``overrides``."""
        return {**self.call_kwargs, **overrides}


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Build modules in fp32 from torch's global RNG seeded with ``seed``; restore both afterwards."""
    import torch

    dtype = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_default_dtype(torch.float32)
        try:
            yield
        finally:
            torch.set_default_dtype(dtype)


def check_layers(name: str, value: int) -> None:
    """Raise ValueError unless ``value`` is a positive int (a number of transformer blocks)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int (number of transformer blocks), got {value!r}")


def save_pipeline(pipe: Any, pipeline_dir: Path) -> None:
    """``save_pretrained`` (safetensors), then name the tokenizer ``T5TokenizerFast`` as the hub repos do."""
    pipe.save_pretrained(pipeline_dir, safe_serialization=True)
    index_path = pipeline_dir / "model_index.json"
    index = json.loads(index_path.read_text())
    # In transformers 5 T5TokenizerFast is T5Tokenizer (the class that wrote the files): only the name changes.
    index["tokenizer"] = ["transformers", "T5TokenizerFast"]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
