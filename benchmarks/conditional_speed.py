"""Rows/s of the conditional benchmark's five requests as a share of the same
model's unconditional rows/s, for saved fits, in one process: every fit's requests alternate
with its unconditional draws, 100k rows each, best of three, one torch thread.

Why a script of its own: ``conditional.py`` times each request once, right after scoring it,
and its two processes (one per core) share the memory bus; there a few requests timed as low
as 42-49% of the unconditional rate that reach 54-66% alone. Run it with nothing beside it.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/conditional_speed.py \\
        --datasets california_housing diamonds --models M [M2 ...] --out speed.json

``--models``: folders saved by ``conditional.py --models`` (the fit seed 0's folder, named
after the dataset, of each).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROWS = 100_000
REPEATS = 3


def _requests(synth, ds, train, hold) -> dict:
    """The benchmark's five requests (``conditional._requests``: a frequent and a rare class,
    a numeric range, seed rows, rebalancing), each as (rows, Conditions); the seed rows (the
    holdout with half of the modelled columns removed) tiled to ``ROWS``."""
    import pyarrow as pa

    from benchmarks.conditional import TARGETS, _categorical, _requests, _seed_rows
    from pfcore.conditions import Conditions
    from pfcore.schema import infer_schema

    schema = infer_schema(train)
    target = TARGETS.get(ds) or _categorical(schema, synth.transformer)[0]
    out = {}
    for label, cond, _pred in _requests(synth, schema, train, hold, target):
        if cond is not None:
            out[label.split(" (")[0]] = (ROWS, cond)
            continue
        kept, hold_s = _seed_rows(synth, hold)
        given = hold_s.select(kept)
        tiled = pa.concat_tables([given] * -(-ROWS // given.num_rows)).slice(0, ROWS)
        out["seed rows"] = (None, Conditions.make(seed_rows=tiled))
    return out


def main(argv: list[str] | None = None) -> None:
    import pyarrow.parquet as pq
    import torch

    from benchmarks.conditional import _split
    from benchmarks.saved_fit import SHARED
    from pfcore.synthesizer import Synthesizer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", required=True)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--out", default="conditional_speed.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    records = []
    print(f"{'dataset':20s} {'models':28s} {'request':36s} {'share':>6s} {'uncond. rows/s':>15s}")
    for ds in args.datasets:
        train, hold = _split(pq.read_table(SHARED / f"{ds}.parquet"))
        synths = {m: Synthesizer.load(Path(m) / ds) for m in args.models}
        reqs = _requests(next(iter(synths.values())), ds, train, hold)
        best: dict[tuple[str, str], float] = {}
        for _ in range(REPEATS):
            for m, synth in synths.items():
                for name, (n, cond) in [("unconditional", (ROWS, None)), *reqs.items()]:
                    t0 = time.perf_counter()
                    synth.sample(n, 4, conditions=cond)
                    secs = time.perf_counter() - t0
                    best[(m, name)] = min(best.get((m, name), np.inf), secs)
        for m in args.models:
            unc = best[(m, "unconditional")]
            for name in reqs:
                rec = {
                    "dataset": ds,
                    "models": m,
                    "request": name,
                    "rows": ROWS,
                    "speed_ratio": round(unc / best[(m, name)], 3),
                    "unconditional_rows_per_second": round(ROWS / unc, 1),
                    "rows_per_second": round(ROWS / best[(m, name)], 1),
                }
                records.append(rec)
                print(f"{ds:20s} {m[-28:]:28s} {name:36s} {rec['speed_ratio']:6.1%} "
                      f"{rec['unconditional_rows_per_second']:15,.0f}")  # fmt: skip
    Path(args.out).write_text(json.dumps({"repeats": REPEATS, "records": records}, indent=1))


if __name__ == "__main__":
    main()
