"""Shared steps of the benchmarks that sample one fitted model twice, with a feature of the
sampling path on and off (``code_orders.py``, ``order_repair.py``): the table, its split and the
fit, and the results file they append to."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa


def load_split(
    path: Path, *, seed: int, train_rows: int
) -> tuple[pa.Table, Any, pa.Table, pa.Table]:
    """(table, schema, train rows, holdout rows): ingest, 80/20 split at ``seed``, at most
    ``train_rows`` training rows."""
    from pfcore.ingest import ingest, read_dataset
    from pfcore.schema import infer_schema
    from pfcore.synthesizer import split_train_holdout

    with tempfile.TemporaryDirectory() as tmp:
        table = read_dataset(ingest(path, Path(tmp) / "ds").out_dir)
    schema = infer_schema(table)
    train, holdout = split_train_holdout(table, 0.2, seed)
    return table, schema, train.slice(0, train_rows), holdout


def fit_default(
    train: pa.Table, schema: Any, holdout: pa.Table, *, seed: int, minutes: float
) -> Any:
    """The default family fitted through the product path on one thread."""
    from pfcore.synthesizer import Synthesizer

    config = {"max_minutes": minutes, "threads": 1}
    return Synthesizer.fit(train, schema, holdout=holdout, config=config, seed=seed)


def save_records(out: Path, records: list[dict[str, Any]], seed: int, minutes: float) -> None:
    """Append ``records`` to the JSON list at ``out``, replacing earlier ones of the same
    table and seed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(out.read_text()) if out.exists() else []
    new = {(r["table"], seed) for r in records}
    keep = [r for r in old if (r.get("table"), r.get("seed")) not in new]
    for r in records:
        r["seed"], r["minutes"] = seed, minutes
    out.write_text(json.dumps(keep + records, indent=2) + "\n")
    print(f"wrote {out}")
