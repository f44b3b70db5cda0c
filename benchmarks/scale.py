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

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale.py --rows 1000000 10000000 --seeds 0 1 2
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/scale.py --rows 100000000

Records are merged into the results file by (rows, stage, seed), so sizes can be run apart;
``--merge FILE`` merges another run's results file and prints the table.

``--replicate 10`` also measures train and validate on ten hard-linked copies of each ingested
dataset's part files (records carry ``replicated_from_rows``): the read path of a 10x larger
table (part files, row groups, footers, row keys) at no build or ingest cost.

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


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process: on a machine shared with other jobs, wall
    seconds follow their load, CPU seconds much less."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------------------ child stages
def _child(stage: str, args: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    out: dict = {}
    if stage == "build":
        from pfcore.generate import BatchTarget, RunOptions, generate_batch
        from pfcore.synthesizer import Synthesizer

        synth = Synthesizer.load(args["synth"])
        manifest = generate_batch(
            synth,
            args["rows"],
            0,
            BatchTarget(args["out"], "scale"),
            run=RunOptions(workers=1, executor="thread"),
        )
        out["rows"] = int(getattr(manifest, "rows", args["rows"]) or args["rows"])
    elif stage == "ingest":
        from pfcore.ingest import ingest

        res = ingest(args["source"], args["dataset"])
        out["columns"] = len(res.schema.columns)
        out["reused"] = res.reused
    elif stage == "train":
        import tasks._common
        from tasks.train import train_task

        # outside a flow run a progress artifact would start a temporary Prefect server (~25 s
        # of CPU, and a process that outlives this one): not part of training
        tasks._common.ThrottledProgress._update_artifact = lambda self, pct: None

        res = train_task.fn(
            args["dataset"],
            args["work"],
            preset=args["preset"],
            max_minutes=args["max_minutes"],
            seed=int(args.get("seed", 0)),
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
    out["cpu_seconds"] = round(_cpu_seconds() - cpu0, 2)
    out["peak_rss_mb"] = round(_peak_mb(), 1)
    return out


def run_stage(stage: str, args: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    import tempfile

    # files, not pipes: a process the stage leaves behind must not keep this one waiting
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        res = subprocess.run(
            [sys.executable, __file__, "--child", stage, json.dumps(args)],
            stdout=out,
            stderr=err,
            text=True,
            env=env,
            cwd=ROOT,
        )
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if res.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{stderr[-4000:]}")
    return json.loads(stdout.strip().splitlines()[-1])


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


def _key(r: dict) -> tuple[int, str, int]:
    return (int(r["rows"]), r["stage"], int(r.get("seed", 0)))


def merge_records(path: Path, new: list[dict], header: dict) -> list[dict]:
    """``new`` records over those already in ``path`` (same rows, stage and seed replaced)."""
    old = json.loads(path.read_text()).get("records", []) if path.exists() else []
    by_key = {_key(r): r for r in old}
    by_key.update({_key(r): r for r in new})
    records = sorted(
        by_key.values(),
        key=lambda r: (r["rows"], ["ingest", "train", "validate"].index(r["stage"]), _key(r)[2]),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**header, "records": records}, indent=2, default=str))
    return records


def print_table(records: list[dict]) -> None:
    """Each (rows, stage): mean over seeds, and its ratio to the smallest table's."""
    import statistics as st

    groups: dict[tuple[int, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["rows"], r["stage"]), []).append(r)
    base_rows = min(k[0] for k in groups)

    def mean(rs: list[dict], f: str) -> float:
        return st.fmean(float(r[f]) for r in rs)

    def sd(v: list[float]) -> float:
        return st.stdev(v) if len(v) > 1 else 0.0

    print(
        f"\n{'rows':>12} {'stage':<9} {'seeds':>5} {'s':>7} {'RSS MB':>7} {'train rows':>11} "
        f"{'x time':>7} {'x RSS':>6}  quality / detection AUC (mean, sd over seeds)"
    )
    for (n, stage), rs in sorted(
        groups.items(), key=lambda kv: (kv[0][0], ["ingest", "train", "validate"].index(kv[0][1]))
    ):
        b = groups[(base_rows, stage)]
        extra = ""
        if stage == "validate":
            q = [r["quality"] for r in rs]
            d = [r["detection_auc"] for r in rs]
            extra = f"  {st.fmean(q):.3f} ({sd(q):.3f}) / {st.fmean(d):.3f} ({sd(d):.3f})"
        print(
            f"{n:>12,} {stage:<9} {len(rs):>5} {mean(rs, 'seconds'):>7.1f} "
            f"{mean(rs, 'peak_rss_mb'):>7.0f} {int(mean(rs, 'training_rows_used')):>11,} "
            f"{mean(rs, 'seconds') / mean(b, 'seconds'):>7.2f} "
            f"{mean(rs, 'peak_rss_mb') / mean(b, 'peak_rss_mb'):>6.2f}{extra}"
        )


def measure(
    a: argparse.Namespace, dataset: Path, n: int, ing: dict, *, include_ingest: bool
) -> list[dict]:
    """Train and validate on ``dataset`` (``n`` rows) for every seed: one record per stage."""
    new: list[dict] = []
    for seed in a.seeds:
        run = a.work / f"run-{n}-s{seed}"
        shutil.rmtree(run, ignore_errors=True)
        tr = run_stage(
            "train",
            {
                "dataset": str(dataset),
                "work": str(run),
                "preset": a.preset,
                "max_minutes": a.max_minutes,
                "seed": seed,
            },
        )
        va = run_stage("validate", {"dataset": str(dataset), "synth": tr["synth_dir"]})
        stages = [("train", tr), ("validate", va)]
        if seed == a.seeds[0] and include_ingest:
            stages.insert(0, ("ingest", ing))
        for stage, res in stages:
            rec = {
                "rows": n,
                "columns": ing["columns"],
                "stage": stage,
                "seed": seed,
                "seconds": res["seconds"],
                "cpu_seconds": res.get("cpu_seconds"),
                "peak_rss_mb": res["peak_rss_mb"],
                "training_rows_used": tr["training_rows_used"],
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
            new.append(rec)
            print(
                f"{n:>12,} {stage:<9} seed {seed} {res['seconds']:>8.1f} s "
                f"{res['peak_rss_mb']:>8.0f} MB",
                flush=True,
            )
    return new


def replicate_dataset(src: Path, dst: Path, factor: int) -> Path:
    """An ingested dataset of ``factor`` x the rows of ``src``: its part files hard-linked
    ``factor`` times (no bytes copied), manifest and whole-table statistics scaled to match.

    Why: building and ingesting 100M rows takes about 20 minutes on 2 cores, while training and
    validation only depend on the layout they read (part files, row groups, footers, row keys),
    which this reproduces at the larger size in seconds.
    """
    shutil.rmtree(dst, ignore_errors=True)
    (dst / "data").mkdir(parents=True)
    manifest = json.loads((src / "manifest.json").read_text())
    files = []
    for rep in range(factor):
        for i, f in enumerate(manifest["files"]):
            path = f"data/part-{rep * len(manifest['files']) + i:05d}.parquet"
            os.link(src / f["path"], dst / path)
            files.append({**f, "path": path})
    manifest.update(files=files, rows=manifest["rows"] * factor)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    shutil.copy(src / "schema.json", dst / "schema.json")
    stats_path = src / "stats.json"
    if stats_path.exists():
        stats = json.loads(stats_path.read_text())
        stats["rows"] *= factor
        for col in stats["columns"]:
            for key in ("rows", "nulls", "other_rows"):
                if col.get(key) is not None:
                    col[key] *= factor
            if col.get("counts"):
                col["counts"] = [c * factor for c in col["counts"]]
        (dst / "stats.json").write_text(json.dumps(stats))
    return dst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="train + validate per seed")
    p.add_argument("--preset", default="tiny", help="training preset of the measured runs")
    p.add_argument("--max-minutes", type=float, default=1.0)
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    p.add_argument("--source-preset", default="fast")
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work" / "scale")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument(
        "--merge", type=Path, nargs="+", help="only merge these results files into --results"
    )
    p.add_argument("--keep", action="store_true", help="keep source batches and datasets")
    p.add_argument(
        "--reuse-dataset",
        action="store_true",
        help="keep an ingested dataset of the same source (kept by --keep): no ingest record",
    )
    p.add_argument(
        "--build-only", action="store_true", help="only build (and keep) the source batches"
    )
    p.add_argument(
        "--replicate",
        type=int,
        default=1,
        help="also train + validate on FACTOR hard-linked copies of each ingested dataset",
    )
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.child[0], json.loads(a.child[1])), default=str))
        return 0
    header = {
        "benchmark": "scale",
        "preset": a.preset,
        "max_minutes": a.max_minutes,
        "source": a.source.name,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    if a.merge:
        new = [r for f in a.merge for r in json.loads(f.read_text())["records"]]
        print_table(merge_records(a.results, new, header))
        print(f"wrote {a.results}")
        return 0

    a.work.mkdir(parents=True, exist_ok=True)
    synth = source_synthesizer(a.work, a.source, a.source_preset)
    for n in a.rows:
        src_root = a.work / f"source-{n}"
        dataset = a.work / f"dataset-{n}"
        if not a.reuse_dataset:
            shutil.rmtree(dataset, ignore_errors=True)
        # a batch already published under src_root (kept by --keep or --build-only) is reused:
        # generate_batch returns it as is, so a 100M build (21 min on 2 shared cores) is paid once
        built = run_stage("build", {"synth": str(synth), "rows": n, "out": str(src_root)})
        batch = _find_batch(src_root)
        print(f"{n:>12,} rows built in {built['seconds']} s ({batch})", flush=True)
        if a.build_only:
            continue
        ing = run_stage("ingest", {"source": str(batch), "dataset": str(dataset)})
        if not a.keep:
            shutil.rmtree(src_root, ignore_errors=True)
        new = measure(a, dataset, n, ing, include_ingest=not ing.get("reused"))
        if a.replicate > 1:
            # the same rows linked a.replicate times: the read path of a table a.replicate times
            # larger (part files, row groups, footers, keys) without building and ingesting it
            big = replicate_dataset(dataset, a.work / f"dataset-{n}x{a.replicate}", a.replicate)
            for rec in measure(a, big, n * a.replicate, ing, include_ingest=False):
                new.append({**rec, "replicated_from_rows": n})
            if not a.keep:
                shutil.rmtree(big, ignore_errors=True)
        if not a.keep:
            shutil.rmtree(dataset, ignore_errors=True)
        records = merge_records(a.results, new, header)
    if a.build_only:
        return 0
    print_table(records)
    print(f"wrote {a.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
