"""Numeric ranges on saved fits, each answered three ways: as the product does, without the
latent cells' laws of related numbers (``Cells.related``), and without the model's own draws
inside the range (``condition_plan.OWN_DRAW_MIN_SHARE``); beside the model's own
unconditional rows that meet the range. Detection AUC against the holdout rows that meet it,
mean over two sampling seeds; rows/s of the product's answer as a share of unconditional
sampling (100k rows each, one torch thread).

Why a script of its own: ``conditional.py`` asks for one range per table (the 60th-90th
percentile of its first continuous column); these two rules decide how a range on any number
is drawn, so they are measured on ranges of several columns and widths.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/conditional_ranges.py \\
        --dataset credit_default --models N --fit-seeds 0 1 2 \\
        --ranges PAY_AMT1:0.6:0.9 PAY_AMT2:0.6:0.9 --out ranges.json

``--models``: a folder saved by ``conditional.py --models`` (fits named after the dataset,
``<dataset>-seed<k>`` for fit seed k > 0). A range is ``column:low_quantile:high_quantile`` of
the training rows; a column the model refuses to range alone (a rule rebuilds it) is skipped
with its reason.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SAMPLE_ROWS = 20_000
TIMING_ROWS = 100_000


def _bounds(synth, train, spec: str):
    """(column, low, high) from ``column:q_low:q_high`` on the training rows; integer
    columns get integer bounds."""
    column, q0, q1 = spec.split(":")
    v = train.column(column).to_numpy(zero_copy_only=False).astype(float)
    lo, hi = np.nanquantile(v, [float(q0), float(q1)])
    if synth.schema[column].kind == "integer":
        return column, int(round(lo)), int(round(hi))
    return column, float(lo), float(hi)


def _score(synth, cond, real, seeds=(3, 4)) -> float:
    from benchmarks.scoring import detection_auc

    return float(
        np.mean(
            [detection_auc(real, synth.sample(SAMPLE_ROWS, s, conditions=cond).to_pandas())
             for s in seeds]
        )
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    import pyarrow.parquet as pq
    import torch

    import pfcore.condition_plan as plan_mod
    from benchmarks.conditional import _split
    from benchmarks.saved_fit import SHARED
    from benchmarks.scoring import detection_auc
    from pfcore.conditions import Conditions, Where
    from pfcore.errors import InputError
    from pfcore.synthesizer import Synthesizer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--models", required=True)
    ap.add_argument("--fit-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--ranges", nargs="+", required=True, metavar="COLUMN:QLOW:QHIGH")
    ap.add_argument("--out", default="conditional_ranges.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    ds = args.dataset
    train, hold = _split(pq.read_table(SHARED / f"{ds}.parquet"))
    hold_df = hold.to_pandas()
    records = []
    print(f"{'fit':>3s} {'range':42s} {'product':>8s} {'no rel.':>8s} {'no own':>8s} "
          f"{'own rows':>8s} {'kept':>5s} {'speed':>6s}")  # fmt: skip
    for fit_seed in args.fit_seeds:
        name = ds if fit_seed == 0 else f"{ds}-seed{fit_seed}"
        synth = Synthesizer.load(Path(args.models) / name)
        cells = list(synth.transformer.cells)
        own = synth.sample(200_000, 5).to_pandas()
        for spec in args.ranges:
            column, lo, hi = _bounds(synth, train, spec)
            cond = Conditions(where=(Where(column, ">=", lo), Where(column, "<=", hi)))
            try:
                plan = synth.compile_conditions(cond)
            except InputError as exc:
                print(f"{fit_seed:3d} {spec:42s} skipped: {exc}")
                continue
            real = hold_df[(hold_df[column] >= lo) & (hold_df[column] <= hi)]
            mine = own[(own[column] >= lo) & (own[column] <= hi)].iloc[:SAMPLE_ROWS]
            product = _score(synth, cond, real)
            synth.transformer.cells[:] = [
                replace(c, related=[], related_quantiles=None) for c in cells
            ]
            no_related = _score(synth, cond, real)
            synth.transformer.cells[:] = cells
            threshold = plan_mod.OWN_DRAW_MIN_SHARE
            plan_mod.OWN_DRAW_MIN_SHARE = 2.0
            try:
                no_own = _score(synth, cond, real)
            finally:
                plan_mod.OWN_DRAW_MIN_SHARE = threshold
            t0 = time.perf_counter()
            synth.sample(TIMING_ROWS, 6, conditions=cond)
            t_cond = time.perf_counter() - t0
            t0 = time.perf_counter()
            synth.sample(TIMING_ROWS, 7)
            t_unc = time.perf_counter() - t0
            rec = {
                "dataset": ds,
                "fit_seed": fit_seed,
                "range": f"{lo}<={column}<={hi}",
                "spec": spec,
                "evidence_cells": [c.name for c, *_ in plan.evidence_cells],
                "own_draws": bool(plan.own_ranges),
                "detection_auc": round(product, 4),
                "detection_auc_without_related": round(no_related, 4),
                "detection_auc_without_own_draws": round(no_own, 4),
                "detection_auc_own_rows": round(detection_auc(real, mine), 4),
                "holdout_rows_meeting": len(real),
                "speed_ratio": round(t_unc / t_cond, 3),
            }
            records.append(rec)
            print(f"{fit_seed:3d} {spec:42s} {product:8.3f} {no_related:8.3f} {no_own:8.3f} "
                  f"{rec['detection_auc_own_rows']:8.3f} {str(rec['own_draws']):>5s} "
                  f"{rec['speed_ratio']:6.1%}")  # fmt: skip
            Path(args.out).write_text(json.dumps({"records": records}, indent=1))


if __name__ == "__main__":
    main()
