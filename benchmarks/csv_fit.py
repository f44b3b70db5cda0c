"""A CSV fitted the way a new user's table is: ingested (with overrides), split 80/20 as
``fidelity.py`` splits, the product default fitted on one thread for ``minutes``.

Shared by the benchmarks that compare two treatments of one table's columns
(``pooled_repeats.py``, ``number_text.py``), so both score the same rows the same way.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from pfcore.ingest import ingest
from pfcore.io import read_dataset
from pfcore.schema import apply_overrides, infer_schema
from pfcore.synthesizer import Synthesizer, split_train_holdout

#: Regenerated, not modelled: the gate's scores leave them out too.
REGENERATED = ("id", "constant", "text")


@dataclass
class CsvFit:
    synth: Synthesizer
    train: pa.Table
    hold: pa.Table
    fit_seconds: float

    @property
    def skipped(self) -> list[str]:
        return [c.name for c in self.synth.schema.columns if c.kind in REGENERATED]

    def frame(self, table: pa.Table) -> pd.DataFrame:
        """``table`` (held-out or synthetic rows) as the scores read it: modelled columns."""
        return table.to_pandas().drop(columns=self.skipped)


def ingest_csv(csv: Path, overrides: dict[str, Any] | None = None) -> tuple[pa.Table, list[str]]:
    """The ingested table and ingest's guesses."""
    with tempfile.TemporaryDirectory() as tmp:
        res = ingest(csv, Path(tmp) / "data", overrides=overrides)
        return read_dataset(res.out_dir), list(res.manifest["guesses"])


def fit_table(
    table: pa.Table, minutes: float, overrides: dict[str, Any] | None = None, seed: int = 0
) -> CsvFit:
    """``overrides``: applied to the schema inferred from the training rows (kinds declared);
    ``seed``: the fit's (the split stays the same)."""
    train, hold = split_train_holdout(table, 0.2, 0, 20_000)
    schema = apply_overrides(infer_schema(train), overrides) if overrides else infer_schema(train)
    t0 = time.perf_counter()
    config = {"threads": 1, "max_minutes": minutes}
    synth = Synthesizer.fit(train, schema, config=config, seed=seed)
    return CsvFit(synth, train, hold, round(time.perf_counter() - t0, 1))


def as_text(columns: list[str]) -> dict[str, Any]:
    """Overrides that keep ``columns`` as text (declared categorical)."""
    return {"columns": {c: {"kind": "categorical"} for c in columns}}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The arguments every such benchmark takes: the CSVs, minutes per fit, sample seeds and
    the JSON written."""
    ap.add_argument("csv", nargs="+", type=Path)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", type=Path, required=True)


def text_column_arguments(ap: argparse.ArgumentParser) -> None:
    """The arguments of the free-text benchmarks: ``CSV:COLUMN`` pairs, minutes per fit,
    sample seeds and the JSON written."""
    ap.add_argument("csv", nargs="+", help="CSV:column (the free-text column)")
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="sample seeds")
    ap.add_argument("--out", type=Path, required=True)


def column_specs(specs: list[str]) -> list[tuple[Path, str]]:
    """``CSV:COLUMN`` arguments as (path, column)."""
    return [(Path(p), c) for p, c in (spec.rsplit(":", 1) for spec in specs)]


def summarize(
    records: list[dict[str, Any]],
    by: str,
    variants: tuple[str, ...],
    means: tuple[str, ...],
    firsts: tuple[str, ...],
) -> list[dict[str, Any]]:
    """Per dataset and value of ``by``: the mean of each of ``means`` over its records, and
    ``firsts`` (the same in every record of the group: real-row baselines) from the first."""
    import numpy as np

    out = []
    for ds in dict.fromkeys(r["dataset"] for r in records):
        for variant in variants:
            mine = [r for r in records if r["dataset"] == ds and r[by] == variant]
            if not mine:
                continue
            row = {"dataset": ds, by: variant}
            row.update({k: round(float(np.mean([r[k] for r in mine])), 4) for k in means})
            row.update({k: mine[0][k] for k in firsts})
            out.append(row)
    return out
