"""The project's own exceptions, and the exit code each one means.

Every error raised on purpose derives from ``PushforwardError`` so callers (CLI, Prefect tasks)
can tell a user-facing problem from a bug and print it without a traceback. Each class states
the exit code the command line returns for it (``exit_code``): a scheduler and an on-call
engineer act on that number, so it is decided by the type of the error, never by its wording.

====  =========================================================================================
code  meaning
====  =========================================================================================
0     success
1     the fidelity gate rejected the model (``GateFailed``)
2     bad input or parameters (``InputError``, ``SchemaError``, ``ModelError``, invalid flow
      parameters): the user must change the data, a file or an option
3     environment: the registry is unreachable or lacks the model (``RegistryError``), storage
      is not writable (``StorageError``), a batch cannot be published (``GenerationError``)
4     unexpected error (a bug): the command line logs the traceback to a file
====  =========================================================================================
"""

from __future__ import annotations

import re
from os import PathLike
from typing import ClassVar

__all__ = [
    "EXIT_OK",
    "EXIT_GATE",
    "EXIT_INPUT",
    "EXIT_ENV",
    "EXIT_BUG",
    "PushforwardError",
    "InputError",
    "SchemaError",
    "ModelError",
    "GateFailed",
    "RegistryError",
    "RegistryUnreachable",
    "ModelNotFound",
    "StorageError",
    "StorageUnreachable",
    "GenerationError",
    "printable",
]

EXIT_OK, EXIT_GATE, EXIT_INPUT, EXIT_ENV, EXIT_BUG = 0, 1, 2, 3, 4


class PushforwardError(Exception):
    """Base class of all deliberate pushforward errors."""

    exit_code: ClassVar[int] = EXIT_ENV


class InputError(PushforwardError):
    """Bad user input: names the file and column so the user can find the problem."""

    exit_code: ClassVar[int] = EXIT_INPUT

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

    exit_code: ClassVar[int] = EXIT_INPUT


class ModelError(PushforwardError):
    """A model configuration, training or loading problem."""

    exit_code: ClassVar[int] = EXIT_INPUT


class GateFailed(PushforwardError):
    """The fidelity gate rejected a model; ``reasons`` lists every failed check."""

    exit_code: ClassVar[int] = EXIT_GATE

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = list(reasons)
        super().__init__("fidelity gate failed: " + "; ".join(self.reasons))


class RegistryError(PushforwardError):
    """The MLflow tracking/registry server is unreachable or refused an operation."""

    exit_code: ClassVar[int] = EXIT_ENV


class RegistryUnreachable(RegistryError):
    """The registry did not answer at all (connection refused, timeout): the one registry
    failure a retry can fix, so retry policies test for this type."""


class ModelNotFound(RegistryError):
    """The registry answered, but has no such model or alias (e.g. no champion yet)."""


class StorageError(PushforwardError):
    """A folder pushforward must write into is missing, not a folder, or not writable; or an
    object store refused an operation."""

    exit_code: ClassVar[int] = EXIT_ENV


class StorageUnreachable(StorageError):
    """An object store did not answer after its bounded retries (connection refused, timeout):
    a storage failure a later retry can fix, so retry policies test for this type."""


class GenerationError(PushforwardError):
    """A synthetic batch could not be generated or published."""

    exit_code: ClassVar[int] = EXIT_ENV


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, limit: int | None = None) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``), cut to ``limit`` chars.

    Error messages quote the input (a CSV row, a column name); a value from a binary file must
    not move the cursor, recolour or clear the terminal of whoever reads the message. Newlines
    and tabs stay.
    """
    out = _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
    if limit is not None and len(out) > limit:
        out = out[: max(0, limit - 3)] + "..."
    return out
