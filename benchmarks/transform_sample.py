"""Benchmark: the transform fitted on a uniform sample of the training rows vs on all of them.

Why: a table larger than the training sample has its transform (quantiles, kept categories,
rare-value pooling, value protection) fitted on the sample (``Split``, ``pfcore.rowsample``),
with the whole table's counts and extremes from ingest (``pfcore.tablestats``). Every shared
dataset fits the default sample (at least 1M rows) and is fitted whole, so to see what fitting
on a sample costs, each is fitted on a pessimistic ``--fraction`` of its training rows (default
10%; penguins: half) three ways: on all of them (``full``), on the sample alone (``sample``,
the fit before whole-table counts) and on the sample with the whole table's statistics as
ingest computes them (``counts``, what training does now; computed here on the training rows,
so that, like the others, it never sees the held-out rows it is scored on), the schema from the
whole table in every case. Three measures per dataset and seed:

* **unreachable**: the share of held-out categorical cells whose value the transform can never
  decode (neither a slot of its own nor pooled): what the sample misses outright;
* **round trip**: held-out rows encoded and decoded by each transform, scored against the
  held-out rows (column shapes and Quality, no model): what the transform alone loses;
* **trained**: a model trained on the encoding of *all* training rows by each transform, with
  the same short step budget and seed, scored on the held-out rows (Quality, column shapes,
  detection AUC). ``noise`` is the spread of the full-table transform over two model seeds,
  the yardstick for the sample's delta.

Records of an earlier run (other datasets or seeds) are kept in the results file; a dataset and
seed run again replaces its record.

Writes ``benchmarks/results/transform_sample.json`` and prints a table. Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/transform_sample.py --steps 300
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "transform_sample.json"
SHARED = Path(os.environ.get("PUSHFORWARD_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
#: Scoring without the costly parts that do not measure shapes (pairs and detection stay);
#: the round trip (no model) skips detection too.
EVAL = {"privacy": False, "pair_detection": False}
EVAL_ROUND_TRIP = {**EVAL, "detection": False}


def sample_of(train: pa.Table, fraction: float, seed: int) -> pa.Table:
    """A seeded uniform subset of ``train`` (half of a table too small for ``fraction``)."""
    n = train.num_rows
    k = max(int(n * fraction), min(n // 2, 2000))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5A3]))
    return train.take(pa.array(np.sort(rng.choice(n, size=k, replace=False))))


def score(real: pa.Table, other: pa.Table, schema: object, seed: int, config: dict = EVAL) -> dict:
    from pfcore.fidelity import evaluate

    s = evaluate(real, other, schema, seed=seed, config=config).summary
    return {
        "quality": s.get("quality"),
        "column_shapes": s.get("column_shapes"),
        "detection_auc": s.get("detection_auc"),
    }


def trained(transformer: object, schema: object, train: pa.Table, steps: int, seed: int) -> object:
    """A synthesizer whose model is trained on ``transformer``'s encoding of ``train``."""
    from pfcore.models import build
    from pfcore.synthesizer import Synthesizer

    x = transformer.encode(train, seed=seed)
    cfg = {"max_steps": steps, "min_steps": steps, "distill_max_steps": steps, "seed": seed}
    model = build("onestep", cfg, preset="tiny")
    model.fit(x, transformer.blocks)
    return Synthesizer(schema=schema, transformer=transformer, model=model, info={"seed": seed})


def unreachable(transformer: object, hold: pa.Table) -> float | None:
    """Share of ``hold``'s non-null categorical cells whose value ``transformer`` can never
    decode (neither kept nor pooled); None without categorical columns."""
    import pyarrow.compute as pc

    from pfcore.transforms.categorical import CategoricalTransform

    missed = cells = 0
    for tr in transformer.transforms:
        if not isinstance(tr, CategoricalTransform):
            continue
        col = hold.column(tr.column.name).drop_null().cast(tr.type)
        known = pa.concat_arrays([tr.kept, tr.pooled])
        missed += int(pc.sum(pc.invert(pc.is_in(col, value_set=known))).as_py() or 0)
        cells += len(col)
    return missed / cells if cells else None


VARIANTS = ("full", "sample", "counts")


def run_dataset(path: Path, fraction: float, steps: int, seed: int) -> dict:
    from pfcore.io import read_table
    from pfcore.schema import infer_schema
    from pfcore.synthesizer import PROTECT_EXTREMES, split_train_holdout
    from pfcore.tablestats import table_stats
    from pfcore.transforms import TableTransformer

    table = read_table(path)
    schema = infer_schema(table)  # counts over the whole table, as ingest computes them
    train, hold = split_train_holdout(table, 0.2, seed)
    # stats.json as ingest writes it, but of the training rows only: training's own statistics
    # include the held-out rows, which here would let the counts fit see what it is scored on
    stats = table_stats(train, schema)
    sample = sample_of(train, fraction, seed)
    rec: dict = {"dataset": path.stem, "rows": table.num_rows, "seed": seed}
    rec["train_rows"], rec["sample_rows"] = train.num_rows, sample.num_rows
    t0 = time.perf_counter()
    kw = {"seed": seed, "protect_extremes": PROTECT_EXTREMES}
    fitted = {
        "full": TableTransformer.fit(train, schema, **kw),
        "sample": TableTransformer.fit(sample, schema, **kw),
        "counts": TableTransformer.fit(sample, schema, table_stats=stats, **kw),
    }
    rec["n_features"] = {k: int(t.n_features) for k, t in fitted.items()}
    rec["unreachable"] = {k: unreachable(t, hold) for k, t in fitted.items()}
    for name, tr in fitted.items():
        back = tr.decode(tr.encode(hold, seed=seed), seed=seed)
        rec[f"round_trip_{name}"] = score(hold, back, schema, seed, EVAL_ROUND_TRIP)
    models = [(name, fitted[name], seed) for name in VARIANTS]
    models.append(("full_seed2", fitted["full"], seed + 1000))
    for name, tr, model_seed in models:
        synth = trained(tr, schema, train, steps, model_seed)
        syn = synth.sample(hold.num_rows, seed=seed + 1)
        rec[f"trained_{name}"] = score(hold, syn, schema, seed)
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    for m in ("quality", "column_shapes", "detection_auc"):
        f, f2 = rec["trained_full"][m], rec["trained_full_seed2"][m]
        rec[f"noise_{m}"] = None if f is None or f2 is None else abs(f2 - f)
        rf = rec["round_trip_full"][m]
        for name, prefix in (("sample", ""), ("counts", "counts_")):
            s, rs = rec[f"trained_{name}"][m], rec[f"round_trip_{name}"][m]
            rec[f"{prefix}delta_{m}"] = None if f is None or s is None else s - f
            rec[f"round_trip_{prefix}delta_{m}"] = None if rf is None or rs is None else rs - rf
    return rec


def _fmt(v: float | None) -> str:
    return "   n/a" if v is None else f"{v:+.4f}"


def _pct(v: float | None) -> str:
    return "    n/a" if v is None else f"{100 * v:6.3f}%"


def print_table(records: list[dict]) -> None:
    print(
        f"\n{'dataset':<20} {'seed':>4} {'sample':>8} {'of':>8} {'fit':>6} {'unreach':>8} "
        f"{'rt dQ':>8} {'rt dShape':>9} {'Q full':>7} {'dQ':>8} {'noise Q':>8} "
        f"{'dShape':>8} {'dAUC':>8} {'noise AUC':>9}"
    )
    for r in records:
        for name, prefix in (("sample", ""), ("counts", "counts_")):
            if f"trained_{name}" not in r:
                continue  # a record from before the counts variant
            print(
                f"{r['dataset']:<20} {r['seed']:>4} {r['sample_rows']:>8,} "
                f"{r['train_rows']:>8,} {name:>6} {_pct(r.get('unreachable', {}).get(name)):>8} "
                f"{_fmt(r[f'round_trip_{prefix}delta_quality']):>8} "
                f"{_fmt(r[f'round_trip_{prefix}delta_column_shapes']):>9} "
                f"{r['trained_full']['quality']:>7.4f} {_fmt(r[f'{prefix}delta_quality']):>8} "
                f"{_fmt(r['noise_quality']):>8} {_fmt(r[f'{prefix}delta_column_shapes']):>8} "
                f"{_fmt(r[f'{prefix}delta_detection_auc']):>8} "
                f"{_fmt(r['noise_detection_auc']):>9}"
            )
    print(
        "\nfit sample: the sample alone; counts: the sample with the whole table's statistics "
        "(training's fit).\nunreach: held-out categorical cells the transform can never decode; "
        "rt: encode+decode of the held-out rows (no model);\nd: minus the full-fitted "
        "transform; noise: |difference| of the full-fitted transform between two model seeds."
    )


def merge_records(path: Path, new: list[dict], header: dict) -> list[dict]:
    """``new`` over the records already in ``path`` with the same fraction and steps (a dataset
    and seed run again replaces its record); the file's header is ``header``."""
    old: list[dict] = []
    if path.exists():
        doc = json.loads(path.read_text())
        if (doc.get("fraction"), doc.get("steps")) == (header["fraction"], header["steps"]):
            old = doc.get("records", [])
    by_key = {(r["dataset"], r["seed"]): r for r in old}
    by_key.update({(r["dataset"], r["seed"]): r for r in new})
    records = [by_key[k] for k in sorted(by_key)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**header, "records": records}, indent=2, default=str))
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", nargs="*", help="stems under the shared folder (default: all)")
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--steps", type=int, default=300, help="flow and distillation steps")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--results", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    paths = sorted(SHARED.glob("*.parquet"))
    if a.datasets:
        paths = [q for q in paths if q.stem in a.datasets]
    if not paths:
        raise SystemExit(f"no shared datasets under {SHARED}")
    records = []
    for path in paths:
        for seed in a.seeds:
            rec = run_dataset(path, a.fraction, a.steps, seed)
            records.append(rec)
            print(f"{path.stem} seed {seed}: {rec['seconds']} s", flush=True)
    header = {
        "benchmark": "transform_sample",
        "fraction": a.fraction,
        "steps": a.steps,
        "family": "onestep",
        "preset": "tiny",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    records = merge_records(a.results, records, header)
    print_table(records)
    print(f"wrote {a.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
