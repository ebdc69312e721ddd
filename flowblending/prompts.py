"""Prompt files: one prompt per line, UTF-8, blank lines and ``#`` comments skipped."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import FlowBlendingError


def read_prompts(path: str | os.PathLike) -> list[str]:
    """Prompts of a text file; an unreadable or empty file is an error naming the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FlowBlendingError(
            f"prompts file {str(p)!r} does not exist; give a text file, one prompt per line."
        ) from None
    except UnicodeDecodeError as exc:
        raise FlowBlendingError(f"prompts file {str(p)!r} is not UTF-8 ({exc.reason} at byte {exc.start}).") from None
    except OSError as exc:
        raise FlowBlendingError(f"cannot read prompts file {str(p)!r}: {exc.strerror or exc}.") from None
    prompts = [line.strip() for line in text.splitlines()]
    prompts = [line for line in prompts if line and not line.startswith("#")]
    if not prompts:
        raise FlowBlendingError(
            f"prompts file {str(p)!r} holds no prompt (only blank lines or # comments); write one prompt per line."
        )
    return prompts


def slug(prompt: str, max_len: int = 40) -> str:
    """A filename-safe stem for a prompt ("a dog running" -> "a-dog-running")."""
    s = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")
    return s[:max_len].rstrip("-") or "prompt"
