"""The project's own exceptions.

Every error raised on purpose derives from ``PushforwardError`` so callers (CLI, Prefect tasks)
can tell a user-facing problem from a bug and print it without a traceback.
"""

from __future__ import annotations

from os import PathLike

__all__ = [
    "PushforwardError",
    "InputError",
    "SchemaError",
    "ModelError",
    "GateFailed",
    "RegistryError",
    "GenerationError",
]


class PushforwardError(Exception):
    """Base class of all deliberate pushforward errors."""


class InputError(PushforwardError):
    """Bad user input: names the file and column so the user can find the problem."""

    def __init__(
        self,
        problem: str,
        *,
        path: str | PathLike[str] | None = None,
        column: str | None = None,
    ) -> None:
        self.problem = problem
        self.path = None if path is None else str(path)
        self.column = column
        parts = []
        if self.path is not None:
            parts.append(self.path)
        if column is not None:
            parts.append(f"column {column!r}")
        parts.append(problem)
        super().__init__(": ".join(parts))


class SchemaError(PushforwardError):
    """A schema or schema override that cannot be applied."""


class ModelError(PushforwardError):
    """A model configuration, training or loading problem."""


class GateFailed(PushforwardError):
    """The fidelity gate rejected a model; ``reasons`` lists every failed check."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = list(reasons)
        super().__init__("fidelity gate failed: " + "; ".join(self.reasons))


class RegistryError(PushforwardError):
    """The MLflow tracking/registry server is unreachable or refused an operation."""


class GenerationError(PushforwardError):
    """A synthetic batch could not be generated or published."""
