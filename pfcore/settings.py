"""Settings dataclasses built from user values (JSON, YAML, the Prefect form, the CLI).

One function decides how: unknown keys are refused by name (a typo such as ``min_qualty`` must
not silently fall back to the default), then the dataclass validates the values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

from pfcore.errors import InputError

__all__ = ["check_non_negative", "from_mapping"]

T = TypeVar("T")


def from_mapping(cls: type[T], data: Mapping[str, Any] | None) -> T:
    """``cls(**data)`` for a dataclass ``cls``; an unknown key is an InputError naming it."""
    data = dict(data or {})
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"unknown {cls.__name__} key {unknown[0]!r}; known keys: {sorted(known)}")
    return cls(**data)


def check_non_negative(obj: Any) -> None:
    """Every numeric field of dataclass ``obj`` is finite and >= 0 (booleans pass, and None
    where the field is declared optional): thresholds and tolerances, where a negative or NaN
    value would silently pass or fail everything."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, bool) or (value is None and "None" in str(f.type)):
            continue
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InputError(
                f"{type(obj).__name__}.{f.name} must be a finite non-negative number, got {value!r}"
            )
