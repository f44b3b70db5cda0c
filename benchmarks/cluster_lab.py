"""Prototype: a hidden cluster column for the hybrid's discrete part.

Question: does a k-means label of the encoded numeric dims, added to the table as one more
categorical column (drawn by the discrete network, given to the flow and the student as part of
their condition, dropped after sampling), make the numeric map easier to learn? Each job fits
the hybrid (balanced preset, conditional networks off, ``--minutes``) on the prepared training
rows with ``--clusters K`` (0 = the table as it is) and scores the student and the flow teacher
(both with their marginal maps) by detection AUC against the holdout, mean over sample seeds 1
and 2, with the cluster column dropped.

    OMP_NUM_THREADS=1 python benchmarks/cluster_lab.py --work /path/to/work \\
        --datasets california_housing --clusters 0 24 --out /tmp/cluster_lab.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CLUSTER = "__cluster"


def _with_clusters(table: Any, k: int, seed: int) -> Any:
    """``table`` plus a string column of k-means labels over its encoded numeric dims."""
    import numpy as np
    import pyarrow as pa
    from sklearn.cluster import KMeans

    from pfcore.schema import infer_schema
    from pfcore.transforms import TableTransformer

    tr = TableTransformer.fit(table, infer_schema(table), seed=0)
    x = tr.encode(table, seed=0)
    cols = [i for b in tr.blocks if b.kind == "numeric" for i in range(b.start, b.start + b.width)]
    num = x[:, cols]
    rng = np.random.default_rng(seed)
    fit_rows = num[rng.permutation(len(num))[:20_000]]
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(fit_rows)
    labels = km.predict(num)
    return table.append_column(CLUSTER, pa.array([f"c{v}" for v in labels]))


def _auc(model: Any, tr: Any, hold: Any) -> float:
    import numpy as np
    from scoring import detection_auc

    aucs = []
    for s in (1, 2):
        syn = tr.decode(model.sample(len(hold), seed=s), seed=s).to_pandas()
        syn = syn.drop(columns=[CLUSTER], errors="ignore")
        aucs.append(detection_auc(hold, syn))
    return round(float(np.mean(aucs)), 4)


def run(work: Path, ds: str, k: int, seed: int, minutes: float) -> dict[str, Any]:
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq
    import torch

    from pfcore import models
    from pfcore.schema import infer_schema
    from pfcore.transforms import TableTransformer

    torch.set_num_threads(1)
    table = pq.read_table(work / ds / "train.parquet")
    hold = pd.read_parquet(work / ds / "holdout.parquet")
    t0 = time.perf_counter()
    if k:
        table = _with_clusters(table, k, seed)
    cluster_s = time.perf_counter() - t0
    tr = TableTransformer.fit(table, infer_schema(table), seed=0)
    x = tr.encode(table, seed=0)
    perm = np.random.default_rng(0).permutation(len(x))
    nv = len(x) // 10
    cfg = dict(device="cpu", seed=seed, threads=1, max_minutes=minutes, conditional_max_steps=0)
    model = models.build("hybrid", cfg, preset="balanced")
    summary = model.fit(x[perm[nv:]], tr.blocks, valid=x[perm[:nv]])
    rec: dict[str, Any] = {"dataset": ds, "clusters": k, "seed": seed, "minutes": minutes}
    rec["cluster_seconds"] = round(cluster_s, 1)
    rec["teacher_steps"] = summary["teacher"]["steps"]
    rec["distill_steps"] = summary["distill"]["steps"]
    rec["auc"] = _auc(model, tr, hold)
    model.calibrate_teacher()
    model.continuous_sampler = "teacher"
    rec["teacher_auc"] = _auc(model, tr, hold)
    print("RESULT " + json.dumps(rec), flush=True)
    return rec


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--datasets", nargs="*", default=["california_housing"])
    ap.add_argument("--clusters", nargs="*", type=int, default=[0, 24])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=4.0)
    args = ap.parse_args()
    records = json.loads(args.out.read_text()) if args.out.exists() else []
    for ds in args.datasets:
        for k in args.clusters:
            records.append(run(args.work, ds, k, args.seed, args.minutes))
            tmp = args.out.with_suffix(".tmp")
            tmp.write_text(json.dumps(records, indent=2))
            tmp.replace(args.out)
    for r in records:
        print(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
