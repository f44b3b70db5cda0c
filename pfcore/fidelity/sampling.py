"""Seeded row subsamples: one independent random stream per metric.

Each metric draws from ``SeedSequence([seed, stream, table])``, so switching one metric off or
changing its size never changes the rows another metric sees.
"""

from __future__ import annotations

import numpy as np

__all__ = ["subsample_rows", "STREAMS"]

STREAMS = {
    "pairs": 1,
    "detection": 2,
    "privacy": 3,
    "efficacy": 4,
    "reference": 5,
    "pair_detection": 6,
}


def subsample_rows(n: int, k: int, seed: int, stream: str, table: int = 0) -> np.ndarray:
    """Sorted row indices: all rows when ``n <= k``, else ``k`` drawn without replacement."""
    if n <= k:
        return np.arange(n)
    rng = np.random.default_rng(np.random.SeedSequence([seed, STREAMS[stream], table]))
    return np.sort(rng.choice(n, size=k, replace=False))
