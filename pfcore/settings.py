"""Settings dataclasses built from user values (JSON, YAML, the Prefect form, the CLI).

One function decides how: unknown keys are refused by name (a typo such as ``min_qualty`` must
not silently fall back to the default), then the dataclass validates the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

from pfcore.errors import InputError

__all__ = ["from_mapping"]

T = TypeVar("T")


def from_mapping(cls: type[T], data: Mapping[str, Any] | None) -> T:
    """``cls(**data)`` for a dataclass ``cls``; an unknown key is an InputError naming it."""
    data = dict(data or {})
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"unknown {cls.__name__} key {unknown[0]!r}; known keys: {sorted(known)}")
    return cls(**data)
