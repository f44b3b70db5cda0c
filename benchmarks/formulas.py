"""Numbers that follow a formula of others: the default with and without formula columns.

Each table (a CSV ingested as a new user's, or a shared dataset's Parquet) is split 80/20 as
``csv_fit`` splits it and fitted twice with the default, ``--minutes`` each, fit seeds from
``--fit-seeds``: as it is (the formulas ``pfcore.transforms.formulas`` finds become columns
modelled as their difference from the formula) and with no formula found (the finder replaced
by one that finds none, everything else the same). Each fit samples as many rows as the
holdout has, per sample seed, and is scored on the holdout:

* ``detection_auc``: the benchmark's classifier on the modelled columns (``scoring``);
* ``detection_auc_with_differences``: the same with each formula's difference (target minus
  formula) added as a column to both sides, what a detector that knew the formula would see;
* ``on_formula`` / ``on_formula_real``: per formula, the share of synthetic / held-out rows
  within the fidelity report's tolerance (``pfcore.fidelity.formulas``: the training rows'
  90% quantile of ``|target - formula|`` plus half a unit of the target's last decimal);
* ``quality``: sdmetrics' Quality score.

``--fidelity-runs W DATASET METHOD...`` scores instead the synthetic rows that
``fidelity.py ours`` saved under ``W`` (its ``PUSHFORWARD_BENCH_WORK``) for those methods, every
seed, on the same measures, with the formulas the finder names on that run's training rows.

```bash
OMP_NUM_THREADS=1 python benchmarks/formulas.py patient.csv parkinsons.csv --minutes 2 \
    --out benchmarks/results/formulas.json
OMP_NUM_THREADS=1 python benchmarks/formulas.py --fidelity-runs W diamonds \
    pushforward-hybrid-formula pushforward-hybrid-noformula --out benchmarks/results/formulas.json
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
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from csv_fit import fit_table, ingest_csv  # noqa: E402
from scoring import detection_auc, quality  # noqa: E402

import pfcore.transforms.table as table_module  # noqa: E402
from pfcore.fidelity.formulas import difference, formula_shares  # noqa: E402
from pfcore.transforms.formulas import Formula  # noqa: E402

VARIANTS = ("formulas", "none")


def _load(path: Path) -> pa.Table:
    return pq.read_table(path) if path.suffix == ".parquet" else ingest_csv(path)[0]


def _fit(table: pa.Table, variant: str, minutes: float, seed: int) -> Any:
    found = table_module.find_formulas
    if variant == "none":
        table_module.find_formulas = lambda *a, **k: {}  # type: ignore[assignment]
    try:
        return fit_table(table, minutes, seed=seed)
    finally:
        table_module.find_formulas = found


def run(paths: list[Path], minutes: float, fit_seeds: list[int], seeds: list[int]) -> list[dict]:
    records = []
    for path in paths:
        table = _load(path)
        for fit_seed in fit_seeds:
            formulas: list[Formula] = []
            for variant in VARIANTS:
                fit = _fit(table, variant, minutes, fit_seed)
                if variant == "formulas":
                    formulas = fit.synth.transformer.formulas()
                real = fit.frame(fit.hold)
                d_real = {f.target: difference(real, f) for f in formulas}
                train = fit.frame(fit.train)
                for seed in seeds:
                    t0 = time.perf_counter()
                    syn = fit.frame(fit.synth.sample(len(real), seed=seed))
                    sample_s = time.perf_counter() - t0
                    d_syn = {f.target: difference(syn, f) for f in formulas}
                    shares = formula_shares(formulas, real, syn, train, fit.synth.schema)
                    r2, s2 = real.copy(), syn.copy()
                    for k in d_real:
                        r2[f"{k}~formula"], s2[f"{k}~formula"] = d_real[k], d_syn[k]
                    rec = {
                        "dataset": path.stem,
                        "variant": variant,
                        "fit_seed": fit_seed,
                        "seed": seed,
                        "minutes": minutes,
                        "fit_seconds": fit.fit_seconds,
                        "formulas": [f.text() for f in formulas],
                        "detection_auc": round(detection_auc(real, syn), 4),
                        "detection_auc_with_differences": round(detection_auc(r2, s2), 4),
                        "on_formula": {x["target"]: round(x["synthetic_share"], 4) for x in shares},
                        "on_formula_real": {x["target"]: round(x["real_share"], 4) for x in shares},
                        "quality": round(quality(real, syn)["quality"], 4),
                        "sample_seconds": round(sample_s, 3),
                    }
                    print(json.dumps(rec), flush=True)
                    records.append(rec)
    return records


def rescore(work: Path, ds: str, methods: list[str]) -> list[dict]:
    """The measures above on ``fidelity.py``'s saved synthetic rows (see the module docstring)."""
    from pfcore.schema import infer_schema
    from pfcore.transforms.formulas import find_formulas

    train_t = pq.read_table(work / ds / "train.parquet")
    schema = infer_schema(train_t)
    formulas = list(find_formulas(train_t, list(schema.columns)).values())
    real = pq.read_table(work / ds / "holdout.parquet").to_pandas()
    train = train_t.to_pandas()
    records = []
    for method in methods:
        for run in sorted((work / ds / method).glob("seed-*")):
            syn = pq.read_table(run / "synthetic.parquet").to_pandas()[list(real.columns)]
            shares = formula_shares(formulas, real, syn, train, schema)
            r2, s2 = real.copy(), syn.copy()
            for f in formulas:
                r2[f"{f.target}~formula"] = difference(real, f)
                s2[f"{f.target}~formula"] = difference(syn, f)
            rec = {
                "dataset": ds,
                "variant": method,
                "fit_seed": int(run.name.split("-")[1]),
                "seed": 1,
                "minutes": None,
                "formulas": [f.text() for f in formulas],
                "detection_auc": round(detection_auc(real, syn), 4),
                "detection_auc_with_differences": round(detection_auc(r2, s2), 4),
                "on_formula": {x["target"]: round(x["synthetic_share"], 4) for x in shares},
                "on_formula_real": {x["target"]: round(x["real_share"], 4) for x in shares},
                "quality": None,
            }
            print(json.dumps(rec), flush=True)
            records.append(rec)
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table", nargs="*", type=Path, help="CSV or Parquet files")
    ap.add_argument(
        "--fidelity-runs",
        nargs="+",
        metavar=("WORK", "DATASET"),
        help="WORK DATASET METHOD...: score fidelity.py's saved runs instead of fitting",
    )
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--fit-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="sample seeds")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.fidelity_runs:
        work, ds, *methods = args.fidelity_runs
        records = rescore(Path(work), ds, methods)
    else:
        records = run(args.table, args.minutes, args.fit_seeds, args.seeds)
    old = json.loads(args.out.read_text()) if args.out.exists() else []
    keys = {(r["dataset"], r["variant"], r["fit_seed"], r["seed"]) for r in records}
    kept = [r for r in old if (r["dataset"], r["variant"], r["fit_seed"], r["seed"]) not in keys]
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(kept + records, indent=1))
    os.replace(tmp, args.out)
    by: dict[tuple[str, str], list[dict]] = {}
    for r in kept + records:
        by.setdefault((r["dataset"], r["variant"]), []).append(r)
    print(f"{'dataset':<28} {'variant':<9} {'AUC':>14} {'AUC+diff':>14} {'quality':>8} on formula")
    for (ds, v), rs in sorted(by.items()):
        a = np.array([r["detection_auc"] for r in rs])
        b = np.array([r["detection_auc_with_differences"] for r in rs])
        q = np.mean([r["quality"] for r in rs if r["quality"] is not None] or [np.nan])
        on = {k: round(float(np.mean([r["on_formula"][k] for r in rs])), 3)
              for k in rs[0]["on_formula"]}  # fmt: skip
        print(f"{ds:<28} {v:<9} {a.mean():.3f} ± {a.std():.3f} {b.mean():.3f} ± {b.std():.3f} "
              f"{q:8.3f} {on}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
