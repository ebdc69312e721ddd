"""Exceptions raised by flowblending. Each message names the argument, the bad value and the fix."""

from __future__ import annotations


class FlowBlendingError(Exception):
    """Base class for every error flowblending raises on bad input (the CLI maps it to exit code 2)."""


class ProfileError(FlowBlendingError, ValueError):
    """A profile could not be found, parsed or validated.

    ``errors`` holds one line per problem, each starting with the JSON path it refers to.
    """

    def __init__(self, message: str, errors: list[str] | None = None, source: str | None = None):
        self.errors = list(errors) if errors else [message]
        self.source = source
        super().__init__(message if errors is None else message + "\n" + "\n".join(f"  {e}" for e in errors))


class IncompatibleModelsError(FlowBlendingError, ValueError):
    """Two transformers of a profile cannot share one pipeline (latent channels, patch size, text width...)."""


class ModelNotAvailableError(FlowBlendingError, OSError):
    """A model is neither cached locally nor downloadable (offline mode or no network)."""
