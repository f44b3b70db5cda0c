"""Teacher velocity-network designs: collect design-sweep runs into one table and JSON.

The runs themselves come from ``design_sweep.py`` (variants ``mlp``, ``resmlp``, ``plr``,
``resmlp_plr``, ``mlp_wide``, ...) with ``--save-samples``; this script merges their JSON files,
adds the pair diagnostic's worst pairs (``pfcore.fidelity.pair_detection``, run as
``evaluate`` runs it) for each saved teacher sample, prints mean and spread per dataset and
variant, and writes ``benchmarks/results/teacher_arch.json``.

    python benchmarks/design_sweep.py --work W --out W/out/r1.json --device cpu \\
        --steps 3000 --distill-steps 6000 --variants mlp resmlp plr --save-samples --parallel 2
    python benchmarks/teacher_arch.py --work W W/out/r1.json [W/out/r2.json ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

METRICS = ("flow_auc", "onestep_auc", "flow_shapes", "onestep_shapes", "teacher_seconds_per_step")


def worst_pairs(work: Path, run: dict[str, Any], sampler: str, k: int = 3) -> Any:
    import pandas as pd
    from fidelity import _worst_pairs

    file = work / run["dataset"] / f"syn.{run['variant']}.s{run['seed']}.{sampler}.parquet"
    if not file.exists():
        return None
    hold = pd.read_parquet(work / run["dataset"] / "holdout.parquet")
    worst = _worst_pairs(hold, pd.read_parquet(file), k=k)
    if not isinstance(worst, list):
        return worst
    return [
        {key: p[key] for key in ("column_1", "column_2", "auc", "lift") if key in p} for p in worst
    ]


def step_timing(dataset: Path, variants: list[str], reps: int = 7, steps: int = 5) -> dict:
    """Median seconds per teacher training step (batch 1024, one thread) per variant.

    Variants are timed interleaved, ``steps`` steps at a time for ``reps`` rounds, so a busy
    machine slows all of them alike; the sweep's own ``teacher_seconds_per_step`` is a whole
    run's wall clock and moves with the machine's load.
    """
    import time

    import pyarrow.parquet as pq
    import torch
    from design_sweep import VARIANTS

    from pfcore import models
    from pfcore.models.base import OneHotIndex, normalize_blocks
    from pfcore.schema import infer_schema
    from pfcore.transforms import TableTransformer

    torch.set_num_threads(1)
    table = pq.read_table(dataset / "train.parquet")
    tr = TableTransformer.fit(table, infer_schema(table), seed=0)
    x = torch.from_numpy(tr.encode(table, seed=0)[:4096])
    fields = {}
    for v in variants:
        # the networks of a fit, without fitting: the step is what is timed
        m = models.build("flow", {"device": "cpu", **VARIANTS[v]}, preset="balanced")
        m.n_features = m.latent_dim = x.shape[1]
        m.blocks = normalize_blocks(tr.blocks, x.shape[1])
        m._index = OneHotIndex(m.blocks)
        m._build_networks()
        params = m.velocity_net.parameters()  # type: ignore[attr-defined]
        fields[v] = (m.field(), torch.optim.Adam(params, lr=1e-3))
    gen = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(reps):
        for v in variants:
            field, opt = fields[v]
            t0 = time.perf_counter()
            for _ in range(steps):
                xb = x[torch.randint(len(x), (1024,), generator=gen)]
                loss = field.loss(xb, gen)
                opt.zero_grad()
                loss.backward()
                opt.step()
            times[v].append((time.perf_counter() - t0) / steps)
    return {v: round(statistics.median(t), 4) for v, t in times.items()}


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation (0 for one seed) per dataset and variant."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["dataset"], r["variant"]), []).append(r)
    out = []
    for (ds, variant), rs in sorted(groups.items()):
        row: dict[str, Any] = {"dataset": ds, "variant": variant, "seeds": [r["seed"] for r in rs]}
        row["teacher_parameters"] = rs[0].get("teacher_parameters")
        for m in METRICS:
            vals = [r[m] for r in rs if r.get(m) is not None]
            if vals:
                row[m] = round(statistics.fmean(vals), 4)
                row[f"{m}_std"] = round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0
                row[f"{m}_n"] = len(vals)
        out.append(row)
    return out


def _read_runs(file: Path) -> list[dict[str, Any]]:
    """A sweep's ``--out`` JSON, or one ``--job`` log (its ``RESULT`` line)."""
    if file.suffix == ".json":
        return json.loads(file.read_text())
    lines = [ln for ln in file.read_text().splitlines() if ln.startswith("RESULT ")]
    return [json.loads(lines[-1][7:])] if lines else []


def _pm(row: dict[str, Any], key: str) -> str:
    if key not in row:
        return "-"
    return f"{row[key]:.3f} ± {row[key + '_std']:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path, help="design_sweep.py --out files or --job logs")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/teacher_arch.json")
    ap.add_argument(
        "--import",
        dest="imports",
        nargs=3,
        action="append",
        default=[],
        metavar=("FILE", "VARIANT", "AS"),
        help="take FILE's runs of VARIANT as runs of AS (same protocol, recorded earlier); "
        "runs measured here win",
    )
    ap.add_argument("--note", default="")
    ap.add_argument("--time-variants", nargs="*", default=[], help="also time these variants")
    args = ap.parse_args()
    runs: dict[tuple[str, str, int], dict[str, Any]] = {}
    for file, variant, alias in args.imports:
        for r in json.loads(Path(file).read_text()):
            if r.get("variant") == variant:
                rec = {**r, "variant": alias, "source": f"{Path(file).name}:{variant}"}
                runs[(r["dataset"], alias, r["seed"])] = rec
    for f in args.runs:
        for r in _read_runs(f):
            if "error" in r:
                print(f"skipped failed run {r['dataset']} {r['variant']}", flush=True)
                continue
            runs[(r["dataset"], r["variant"], r["seed"])] = r  # later files win
    records = sorted(runs.values(), key=lambda r: (r["dataset"], r["variant"], r["seed"]))
    for r in records:
        r["flow_worst_pairs"] = worst_pairs(args.work, r, "flow")
    table = summarize(records)
    timing = {}
    for ds in sorted({r["dataset"] for r in records}) if args.time_variants else []:
        timing[ds] = step_timing(args.work / ds, args.time_variants)
        print(f"seconds per teacher step, {ds}: {timing[ds]}", flush=True)
    print(
        f"{'dataset':20s} {'variant':12s} {'params':>8s} {'teacher AUC':>15s} "
        f"{'student AUC':>15s} {'s/step':>7s}  seeds"
    )
    for row in table:
        print(
            f"{row['dataset']:20s} {row['variant']:12s} {row['teacher_parameters'] or 0:8d} "
            f"{_pm(row, 'flow_auc'):>15s} {_pm(row, 'onestep_auc'):>15s} "
            f"{row.get('teacher_seconds_per_step', float('nan')):7.3f}  {row['seeds']}"
        )
    for r in records:
        pairs = r.get("flow_worst_pairs")
        if isinstance(pairs, list):
            text = ", ".join(f"{p['column_1']}~{p['column_2']} {p['auc']:.3f}" for p in pairs)
            print(f"  worst teacher pairs {r['dataset']} {r['variant']} s{r['seed']}: {text}")
    args.out.write_text(
        json.dumps(
            {"note": args.note, "step_seconds": timing, "summary": table, "runs": records},
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
