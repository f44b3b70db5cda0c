"""Benchmark: ingest -> train -> validate on tables of growing size, in bounded memory.

The large tables are made with the project's own generator: a synthesizer trained on the shared
california_housing table (``--source-preset``, cached under ``benchmarks/work/``) samples N rows
to a Parquet batch with ``pfcore.generate``. Each stage then runs in a fresh child process on
that batch, as the train task and the validate task run it, and the child reports its wall time
and peak RSS (``resource.getrusage``). One record per (rows, stage) goes to
``benchmarks/results/scale.json`` with ``rows``, ``columns``, ``stage``, ``seconds``,
``peak_rss_mb`` and ``training_rows_used`` (plus the split method and, for validate, quality and
detection AUC). The table printed at the end gives each stage's ratio to the smallest run.

Targets: peak RSS flat in the source's rows (training and validation read bounded samples);
ingest time linear, training and validation time flat. Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale.py --rows 1000000 10000000
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale.py --rows 100000000 --append

Each source batch is deleted after ingest and each ingested dataset after validation unless
``--keep`` is given (100M rows of california_housing: about 1.3 GB of Parquet each).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
SHARED = Path(os.environ.get("PUSHFORWARD_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
DEFAULT_SOURCE = SHARED / "california_housing.parquet"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# ------------------------------------------------------------------------------ child stages
def _child(stage: str, args: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    out: dict = {}
    if stage == "build":
        from pfcore.generate import generate_batch
        from pfcore.synthesizer import Synthesizer

        synth = Synthesizer.load(args["synth"])
        manifest = generate_batch(
            synth, args["rows"], 0, args["out"], "scale", workers=1, executor="thread"
        )
        out["rows"] = int(getattr(manifest, "rows", args["rows"]) or args["rows"])
    elif stage == "ingest":
        from pfcore.ingest import ingest

        res = ingest(args["source"], args["dataset"])
        out["columns"] = len(res.schema.columns)
    elif stage == "train":
        from tasks.train import train_task

        res = train_task.fn(
            args["dataset"],
            args["work"],
            preset=args["preset"],
            max_minutes=args["max_minutes"],
            seed=0,
        )
        info = res["info"]
        out.update(
            synth_dir=res["synth_dir"],
            training_rows_used=int(info["train_rows"]) + int(info["valid_rows"]),
            split=info.get("split"),
            fit_seconds=info.get("fit_seconds"),
            memory_plan=info.get("memory_plan"),
        )
    elif stage == "validate":
        from pfcore.validation import validate_synthesizer

        v = validate_synthesizer(args["dataset"], args["synth"])
        s = v.report.summary
        out.update(
            quality=s.get("quality"),
            detection_auc=s.get("detection_auc"),
            metric_rows=v.report.metric_rows,
            source_rows=v.report.source_rows,
        )
    else:
        raise SystemExit(f"unknown stage {stage}")
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["peak_rss_mb"] = round(_peak_mb(), 1)
    return out


def run_stage(stage: str, args: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    res = subprocess.run(
        [sys.executable, __file__, "--child", stage, json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    if res.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ parent
def source_synthesizer(work: Path, source: Path, preset: str) -> Path:
    """A synthesizer of the shared table, trained once and cached."""
    synth_dir = work / f"source-synth-{source.stem}-{preset}"
    if (synth_dir / "synthesizer.json").exists():
        return synth_dir
    import torch

    from pfcore.io import read_table
    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer

    torch.set_num_threads(1)
    table = read_table(source)
    synth = Synthesizer.fit(
        table, infer_schema(table), preset=preset, config={"max_minutes": 1.0}, seed=0
    )
    return synth.save(synth_dir)


def _find_batch(out_root: Path) -> Path:
    manifests = sorted(out_root.rglob("_manifest.json"))
    if not manifests:
        raise RuntimeError(f"no published batch under {out_root}")
    return manifests[0].parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--preset", default="tiny", help="training preset of the measured runs")
    p.add_argument("--max-minutes", type=float, default=1.0)
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    p.add_argument("--source-preset", default="fast")
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "scale")
    p.add_argument("--append", action="store_true", help="keep earlier records of other sizes")
    p.add_argument("--keep", action="store_true", help="keep source batches and datasets")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.child[0], json.loads(a.child[1])), default=str))
        return 0

    a.work.mkdir(parents=True, exist_ok=True)
    synth = source_synthesizer(a.work, a.source, a.source_preset)
    records: list[dict] = []
    if a.append and RESULTS.exists():
        old = json.loads(RESULTS.read_text()).get("records", [])
        records = [r for r in old if r["rows"] not in a.rows]
    for n in a.rows:
        src_root = a.work / f"source-{n}"
        dataset = a.work / f"dataset-{n}"
        run = a.work / f"run-{n}"
        for d in (src_root, dataset, run):
            shutil.rmtree(d, ignore_errors=True)
        built = run_stage("build", {"synth": str(synth), "rows": n, "out": str(src_root)})
        batch = _find_batch(src_root)
        print(f"{n:>12,} rows built in {built['seconds']} s ({batch})", flush=True)
        ing = run_stage("ingest", {"source": str(batch), "dataset": str(dataset)})
        if not a.keep:
            shutil.rmtree(src_root, ignore_errors=True)
        tr = run_stage(
            "train",
            {
                "dataset": str(dataset),
                "work": str(run),
                "preset": a.preset,
                "max_minutes": a.max_minutes,
            },
        )
        va = run_stage("validate", {"dataset": str(dataset), "synth": tr["synth_dir"]})
        if not a.keep:
            shutil.rmtree(dataset, ignore_errors=True)
        cols = ing["columns"]
        used = tr["training_rows_used"]
        for stage, res in (("ingest", ing), ("train", tr), ("validate", va)):
            rec = {
                "rows": n,
                "columns": cols,
                "stage": stage,
                "seconds": res["seconds"],
                "peak_rss_mb": res["peak_rss_mb"],
                "training_rows_used": used,
                "split_method": (tr.get("split") or {}).get("method"),
            }
            if stage == "train":
                rec.update(fit_seconds=tr.get("fit_seconds"), memory_plan=tr.get("memory_plan"))
            if stage == "validate":
                rec.update(
                    quality=va.get("quality"),
                    detection_auc=va.get("detection_auc"),
                    metric_rows=va.get("metric_rows"),
                    source_rows=va.get("source_rows"),
                )
            records.append(rec)
            print(
                f"{n:>12,} {stage:<9} {res['seconds']:>8.1f} s {res['peak_rss_mb']:>8.0f} MB",
                flush=True,
            )
    records.sort(key=lambda r: (r["rows"], ["ingest", "train", "validate"].index(r["stage"])))
    doc = {
        "benchmark": "scale",
        "preset": a.preset,
        "max_minutes": a.max_minutes,
        "source": a.source.name,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "records": records,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2, default=str))
    base_rows = min(r["rows"] for r in records)
    base = {r["stage"]: r for r in records if r["rows"] == base_rows}
    print(
        f"\n{'rows':>12} {'stage':<9} {'s':>8} {'RSS MB':>8} {'train rows':>11} "
        f"{'x time':>7} {'x RSS':>6}"
    )
    for r in records:
        b = base[r["stage"]]
        print(
            f"{r['rows']:>12,} {r['stage']:<9} {r['seconds']:>8.1f} {r['peak_rss_mb']:>8.0f} "
            f"{r['training_rows_used']:>11,} {r['seconds'] / b['seconds']:>7.2f} "
            f"{r['peak_rss_mb'] / b['peak_rss_mb']:>6.2f}"
        )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
