"""Integer columns that are labels of a class: the same fits sampled with and without the maps.

``pfcore.labels`` finds integer columns whose values are labels of a key of categorical
columns (a flight number of an airline and route) and the hybrid maps their drawn numbers onto
the values each class holds (``pfcore.models.class_maps``). The maps are fitted after the
networks, so one fit answers both sides: each fit (``fidelity.py``'s protocol: its
``train.parquet`` and ``holdout.parquet`` under ``PUSHFORWARD_BENCH_WORK``, the default family
and preset, ``--minutes`` per fit, one torch thread) samples 100,000 rows (seed 1) with its
maps and again with them switched off, and both are scored on the holdout like
``fidelity.py`` (a seeded subsample of as many rows as the holdout): detection AUC, Quality, the
share of rows whose (key, value) pair the training rows hold, the worst pairs, and rows/s.

A CSV path instead of a dataset name is ingested as a new user's table and split 80/20 as
``csv_fit`` splits it. ``--min-label-nats`` overrides ``pfcore.labels.MIN_LABEL_NATS`` in this
process (what a lower threshold would map, and whether that helps).

```bash
PUSHFORWARD_BENCH_WORK=W OMP_NUM_THREADS=1 python benchmarks/label_maps.py nyc_flights \
    --seeds 0 1 2 --out benchmarks/results/label_maps.json
OMP_NUM_THREADS=1 python benchmarks/label_maps.py clamp.csv --minutes 2 --out F.json
```
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fidelity import _worst_pairs  # noqa: E402
from scoring import _align, detection_auc, quality  # noqa: E402

import pfcore.labels as labels  # noqa: E402

WORK = Path(os.environ.get("PUSHFORWARD_BENCH_WORK", Path(__file__).parent / "work" / "fidelity"))
SAMPLE_ROWS = 100_000


def seen_share(train: pd.DataFrame, rows: pd.DataFrame, column: str, key: list[str]) -> float:
    """Share of ``rows`` whose (key..., column) values some training row holds."""
    cols = [*key, column]
    seen = set(map(tuple, train[cols].astype(str).to_numpy()))
    return float(np.mean([tuple(r) in seen for r in rows[cols].astype(str).to_numpy()]))


def _tables(dataset: str) -> tuple[Any, Any]:
    """(training, held-out) Arrow tables of a ``fidelity.py`` dataset or a CSV."""
    if dataset.endswith(".csv"):
        from csv_fit import ingest_csv

        from pfcore.synthesizer import split_train_holdout

        return split_train_holdout(ingest_csv(Path(dataset))[0], 0.2, 0, 20_000)
    return (
        pq.read_table(WORK / dataset / "train.parquet"),
        pq.read_table(WORK / dataset / "holdout.parquet"),
    )


def run(dataset: str, seed: int, minutes: float) -> list[dict[str, Any]]:
    import torch

    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer

    torch.set_num_threads(1)
    train_t, hold_t = _tables(dataset)
    hold, train = hold_t.to_pandas(), train_t.to_pandas()
    synth = Synthesizer.fit(
        train_t,
        infer_schema(train_t),
        seed=seed,
        config={"threads": 1, "max_minutes": minutes},
    )
    keys = dict(getattr(synth.model.config, "class_keys", {}) or {})
    maps = synth.model.class_maps
    out = []
    for variant in ("maps", "none"):
        synth.model.class_maps = maps if variant == "maps" else None
        t0 = time.perf_counter()
        rows = synth.sample(SAMPLE_ROWS, seed=1).to_pandas()
        secs = time.perf_counter() - t0
        sub = _align(hold, rows.sample(len(hold), random_state=0).reset_index(drop=True))
        rec = {
            "dataset": Path(dataset).stem if dataset.endswith(".csv") else dataset,
            "min_label_nats": labels.MIN_LABEL_NATS,
            "seed": seed,
            "variant": variant,
            "budget_minutes": minutes,
            "class_keys": keys,
            "detection_auc": round(detection_auc(hold, sub), 4),
            "quality": round(quality(hold, sub)["quality"], 4),
            "rows_per_second": round(SAMPLE_ROWS / secs, 1),
            "seen_share": {c: round(seen_share(train, rows, c, k), 4) for c, k in keys.items()},
            "seen_share_real": {
                c: round(seen_share(train, hold, c, k), 4) for c, k in keys.items()
            },
            "worst_pairs": _worst_pairs(hold, sub),
        }
        shown = ("dataset", "seed", "variant", "detection_auc", "quality", "seen_share")
        print(json.dumps({k: rec[k] for k in shown}), flush=True)
        out.append(rec)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("datasets", nargs="+")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--min-label-nats", type=float, default=None)
    args = ap.parse_args(argv)
    if args.min_label_nats is not None:
        labels.MIN_LABEL_NATS = args.min_label_nats
    records = json.loads(args.out.read_text()) if args.out.exists() else []
    for ds in args.datasets:
        for seed in args.seeds:
            new = run(ds, seed, args.minutes)
            done = {(r["dataset"], r["seed"], r["min_label_nats"]) for r in new}
            records = [
                r for r in records if (r["dataset"], r["seed"], r.get("min_label_nats")) not in done
            ] + new
            args.out.write_text(json.dumps(records, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
