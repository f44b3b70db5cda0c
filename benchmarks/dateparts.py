"""Dates moved to their drawn parts (``pfcore.rules.dateparts``): what the snap costs and
whether conditional requests on a date and its parts keep every rule.

For a table with a date whose calendar parts other columns hold (UCI bike sharing: ``dteday``
with ``yr``, ``mnth``, ``weekday``, ``season``), it fits (or loads) the default synthesizer and

* times, on 100k rows and one thread (best of three), the networks (``push``), the whole
  decode, the date's snap with the part check, and the date's plain decode;
* samples 100k rows for each of: the first part fixed to its most frequent value, a six-week
  range of the date, the last two parts fixed together, the last part rebalanced to uniform,
  and seed rows of the holdout giving the date and two other columns; it reports the share of
  rows that meet the request, every active rule's hold rate, and rows/s against unconditional.

    OMP_NUM_THREADS=1 python benchmarks/dateparts.py --table <dir>/bike_sharing/train.parquet \\
        --holdout <dir>/bike_sharing/holdout.parquet --model /tmp/bike_model
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ROWS = 100_000


def _best(fn: Any, reps: int = 3) -> float:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def _timings(synth: Any, snap: Any) -> dict[str, float]:
    import torch

    from pfcore.transforms.base import decode_rng

    tr = synth.transformer
    z = torch.randn(ROWS, synth.latent_dim, generator=torch.Generator().manual_seed(0))
    x = synth.push(z).numpy()
    table = tr.decode(x)
    i = [t.column.name for t in tr.transforms].index(snap.column.name)
    a, b = tr._slices[i]
    parts = {c: table.column(c).combine_chunks() for c in snap.depends_on}
    rng = decode_rng(0, 0, snap.column.name)

    def snapped() -> None:
        snap.parts_of(snap.decode_with(x[:, a:b], ROWS, rng, 0, parts), parts)

    return {
        "push_s": _best(lambda: synth.push(z)),
        "decode_s": _best(lambda: tr.decode(x)),
        "snap_and_parts_s": _best(snapped),
        "plain_date_decode_s": _best(lambda: snap.inner.decode(x[:, a:b], ROWS, rng, 0)),
    }


def _requests(synth: Any, snap: Any, train: Any, holdout: Any) -> list[tuple[str, dict, Any]]:
    """(label, Conditions.make arguments, row predicate over the output or None)."""
    import pyarrow.compute as pc

    date, keys = snap.column.name, snap.keys
    first, last = keys[0], keys[-1]
    top = pc.mode(train.column(first))[0]["mode"].as_py()
    stamps = train.column(date).drop_null()
    start, end = pc.min(stamps).as_py(), pc.max(stamps).as_py()
    lo = start + (end - start) / 2
    hi = lo + datetime.timedelta(days=42)
    pair = train.select(keys[-2:]).slice(0, 1).to_pylist()[0] if len(keys) > 1 else None
    others = [c for c in holdout.column_names if c != date and c not in keys][:2]
    out: list[tuple[str, dict, Any]] = [
        (f"{first}={top}", {"where": [f"{first}={top}"]}, lambda t: pc.equal(t[first], top)),
        (
            f"{date} in a six-week range",
            {"where": {date: (lo.isoformat(), hi.isoformat())}},
            lambda t: pc.and_(
                pc.greater_equal(t[date], pa_scalar(lo, t[date].type)),
                pc.less_equal(t[date], pa_scalar(hi, t[date].type)),
            ),
        ),
    ]
    if pair:
        where = [f"{k}={v}" for k, v in pair.items()]
        out.append((" & ".join(where), {"where": where}, None))
    out.append((f"rebalance {last} uniform", {"rebalance": f"{last}=uniform"}, None))
    seeds = holdout.select([date, *others]).slice(0, 3000)
    out.append(
        (
            f"seed rows giving {date}, {', '.join(others)}",
            {"seed_rows": seeds},
            lambda t: _same(t.select(seeds.column_names), seeds),
        )
    )
    return out


def _same(a: Any, b: Any) -> Any:
    """Per row, whether every column of ``a`` equals ``b``'s (two nulls are equal)."""
    import pyarrow.compute as pc

    ok = None
    for name in b.column_names:
        x, y = a.column(name), b.column(name)
        eq = pc.or_kleene(pc.equal(x, y), pc.and_(pc.is_null(x), pc.is_null(y))).fill_null(False)
        ok = eq if ok is None else pc.and_(ok, eq)
    return ok


def pa_scalar(value: Any, t: Any) -> Any:
    """``value`` as an Arrow scalar of the column's type ``t`` (for a comparison)."""
    import pyarrow as pa

    return pa.scalar(value).cast(t)


def main() -> int:
    import pyarrow.parquet as pq
    import torch

    from pfcore.conditions import Conditions
    from pfcore.rules.model import hold_rate
    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer
    from pfcore.transforms.ruled import DateSnapTransform

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--table", required=True)
    p.add_argument("--holdout", required=True)
    p.add_argument("--model", required=True, help="a saved synthesizer (fitted here if absent)")
    p.add_argument("--minutes", type=float, default=4.6)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "dateparts_cond.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    train, holdout = pq.read_table(args.table), pq.read_table(args.holdout)
    if not Path(args.model, "synthesizer.json").exists():
        cfg = {"max_minutes": args.minutes, "threads": 1}
        Synthesizer.fit(train, infer_schema(train), config=cfg).save(args.model)
    synth = Synthesizer.load(args.model)
    snaps = [t for t in synth.transformer.transforms if isinstance(t, DateSnapTransform)]
    if not snaps:
        print("no date whose parts other columns hold: nothing to measure")
        return 1
    snap = snaps[0]
    rules = [r for r in synth.rules.rules if r.active]
    timing = _timings(synth, snap)
    t0 = time.perf_counter()
    base = synth.sample(ROWS, seed=3)
    base_rate = ROWS / (time.perf_counter() - t0)
    records = [{"request": "unconditional", "rows": ROWS, "rows_per_second": round(base_rate)}]
    records[0]["rules"] = {r.name: hold_rate(r, base) for r in rules}
    for label, request, meets in _requests(synth, snap, train, holdout):
        n = None if "seed_rows" in request else ROWS
        t0 = time.perf_counter()
        rows = synth.sample(n, seed=3, conditions=Conditions.make(**request))
        rate = rows.num_rows / (time.perf_counter() - t0)
        match = None
        if meets is not None:
            match = float(sum(meets(rows).to_pylist()) / rows.num_rows)
        records.append(
            {
                "request": label,
                "rows": rows.num_rows,
                "match_rate": match,
                "rows_per_second": round(rate),
                "ratio_to_unconditional": round(rate / base_rate, 3),
                "rules": {r.name: hold_rate(r, rows) for r in rules},
            }
        )
    print(f"per {ROWS} rows: " + ", ".join(f"{k} {v:.3f}" for k, v in timing.items()))
    print("| request | rows | match | rows/s (x unconditional) | lowest rule hold rate |")
    print("|---|---|---|---|---|")
    for r in records:
        low = min(r["rules"].values()) if r["rules"] else None
        print(
            f"| {r['request']} | {r['rows']} | {r.get('match_rate')} | {r['rows_per_second']} "
            f"({r.get('ratio_to_unconditional', 1.0)}) | {low} |"
        )
    out = {
        "model": f"{Path(args.model).name}: a saved default synthesizer of {Path(args.table).name}",
        "date": snap.column.name,
        "timing": timing,
        "records": records,
    }
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
