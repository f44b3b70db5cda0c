"""Free-text columns in the fidelity report: what their synthetic values hold, beside the real.

Why not in the detection classifier: its columns are numbers and classes, and a text column
is neither. Read as "how many training rows hold this value", it would fail the gate on a
table whose new rows often repeat a value a single training row holds (36% of held-out
tweets do), which synthetic rows never copy on purpose (a privacy choice,
``pfcore.transforms.text``). So the report lists, per text column, real (held-out) against
synthetic: missing share, mean and distribution of word counts, the share of values some
training row holds and the share that exactly one training row holds (a value copied from a
single row). A user sees whether the texts are new, as long as the real ones, and how often
they repeat training values; the gate does not read them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["text_columns"]

#: Word counts compared up to this many; longer texts count in the last bin.
MAX_WORD_BIN = 64


def _words(values: pd.Series) -> np.ndarray:
    present = values.dropna().astype(str)
    return present.str.split().str.len().to_numpy(dtype=np.int64)


def _held(values: pd.Series, counts: pd.Series | None) -> tuple[float | None, float | None]:
    """Share of non-null values some training row holds, and that exactly one holds."""
    present = values.dropna().astype(str)
    if counts is None or not len(present):
        return None, None
    held = present.map(counts).fillna(0).to_numpy()
    return float(np.mean(held > 0)), float(np.mean(held == 1))


def text_columns(
    real: pd.DataFrame, synthetic: pd.DataFrame, train: pd.DataFrame | None, schema: Any
) -> list[dict[str, Any]]:
    """One record per ``text`` column of ``schema`` present in both tables."""
    if schema is None:
        return []
    out = []
    for col in getattr(schema, "columns", []):
        name = col.name
        if col.kind != "text" or name not in real or name not in synthetic:
            continue
        counts = None
        if train is not None and name in train:
            counts = train[name].dropna().astype(str).value_counts()
        wr, ws = _words(real[name]), _words(synthetic[name])
        bins = np.arange(MAX_WORD_BIN + 2)
        hr = np.histogram(np.minimum(wr, MAX_WORD_BIN), bins)[0] / max(len(wr), 1)
        hs = np.histogram(np.minimum(ws, MAX_WORD_BIN), bins)[0] / max(len(ws), 1)
        seen_r, once_r = _held(real[name], counts)
        seen_s, once_s = _held(synthetic[name], counts)
        out.append(
            {
                "name": name,
                "missing_real": float(real[name].isna().mean()) if len(real) else None,
                "missing_synthetic": (
                    float(synthetic[name].isna().mean()) if len(synthetic) else None
                ),
                "words_real": float(wr.mean()) if len(wr) else None,
                "words_synthetic": float(ws.mean()) if len(ws) else None,
                # 1 - total variation distance between the word-count distributions
                "words_shape": float(1.0 - 0.5 * np.abs(hr - hs).sum()),
                "seen_real": seen_r,
                "seen_synthetic": seen_s,
                "copied_once_real": once_r,
                "copied_once_synthetic": once_s,
            }
        )
    return out
