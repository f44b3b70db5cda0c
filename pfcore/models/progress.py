"""Progress reports from a running fit.

Its own module because both the model base class and the training loop report progress, and
the loop must not import the base class that drives it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Progress", "ProgressCallback"]


@dataclass
class Progress:
    """One progress report from a running fit (the Prefect task logs these)."""

    phase: str
    step: int
    total_steps: int
    elapsed_s: float
    loss: float
    metrics: dict[str, float] = field(default_factory=dict)


ProgressCallback = Callable[[Progress], None]
