"""Fidelity benchmark: our push-forward families against SDV and MOSTLY AI, one protocol for all.

Protocol: every dataset in ../shared/datasets except penguins; 80/20 split with seed 0
(``pfcore.synthesizer.split_train_holdout``); at most 20,000 training rows; every method fits on
the same training Parquet and is scored on the holdout by the same code:

- sdmetrics QualityReport: overall, Column Shapes, Column Pair Trends;
- detection: 5-fold cross-validated ROC AUC of a HistGradientBoosting classifier separating real
  holdout rows from as many synthetic rows (0.5 = indistinguishable);
- TSTR / TRTR: a HistGradientBoosting model for the dataset's natural target trained on synthetic
  (or real training) rows, scored on the holdout (R^2 for regression, ROC AUC for binary);
- the pair diagnostic (``pfcore.fidelity.pair_detection``): the column pairs whose relationship
  gives synthetic rows away, printed per method and stored as ``worst_pairs``;
- fit seconds and sampling rows/s: every method samples ``SAMPLE_ROWS`` (100,000) rows in one
  call, timed (wall clock, decode included), so a fixed start-up cost (TabularARGN's generate)
  is spread as it is in real use; the score uses a seeded subsample of as many rows as the
  holdout.

Fair and repeatable: every method gets the same training budget (``--minutes``, 5 by default,
for our fits and TabularARGN's ``max_training_time``); ours and TabularARGN are fitted with
three seeds (``--seeds``; SDV once) and the summary reports mean and sample standard deviation
(``*_std``) over seeds. Each record carries its ``seed``; ``results/fidelity.json`` holds every
run, ``results/fidelity_summary.json`` the per-method means. A fit whose model keeps the flow
teacher it distilled from (``model.teacher``) is also scored through the teacher's ODE sampler
as ``<method>-teacher``: the same fit's best slow sampler, which the default should match.

Scoring uses at most ``SCORE_ROWS`` holdout rows (a seeded subsample) so nyc_flights' 67k-row
holdout costs the same as the others. Peers run in their own venv (``benchmarks/peers.py``).

Stages cache their output under ``benchmarks/work/<dataset>/<method>/seed-<k>/`` so an
interrupted run continues::

    python benchmarks/fidelity.py prepare
    python benchmarks/fidelity.py peers   [--datasets ...] [--methods ...] [--seeds 0 1 2]
    python benchmarks/fidelity.py ours    [--datasets ...] [--families ...] [--seeds 0 1 2]
    python benchmarks/fidelity.py reference
    python benchmarks/fidelity.py frontier [--datasets ...]
    python benchmarks/fidelity.py score   # -> tables + benchmarks/results/fidelity*.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("PUSHFORWARD_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
WORK = Path(os.environ.get("PUSHFORWARD_BENCH_WORK", ROOT / "benchmarks" / "work"))
RESULTS = Path(os.environ.get("PUSHFORWARD_BENCH_RESULTS", ROOT / "benchmarks" / "results"))
PEERS_PY = Path(os.environ.get("PEERS_PYTHON", "/work/peers-venv/bin/python"))
DATASETS = ["california_housing", "credit_default", "diamonds", "nyc_flights"]
TARGETS = {
    "california_housing": ("median_house_value", "regression"),
    "credit_default": ("default_payment_next_month", "binary"),
    "diamonds": ("price", "regression"),
    "nyc_flights": ("arr_delay", "regression"),
    # Not in ../shared, mostly categorical: UCI Adult (census income) and UCI Bank Marketing
    # (bank-full); run them with <name>.parquet in a PUSHFORWARD_SHARED_DATASETS folder.
    "adult": ("class", "binary"),
    "bank_marketing": ("y", "binary"),
    # Also not in ../shared: UCI Bike Sharing (hourly; cnt = casual + registered on every row,
    # the calendar columns follow the date) and IBM's Telco customer churn.
    "bike_sharing": ("cnt", "regression"),
    "telco_churn": ("Churn", "binary"),
    # Also not in ../shared: Kaggle's Ames house prices (1,460 rows, 80 columns, most of them
    # categorical with structural missing values) and the Hass avocado prices (a date, a
    # calendar year that follows it, bag counts that sum to a total).
    "house_prices": ("SalePrice", "regression"),
    "avocado": ("AveragePrice", "regression"),
    # Also not in ../shared: King County house sales (a zip code among 70, sale year-built
    # integers, latitude and longitude).
    "kc_house": ("price", "regression"),
    # Also not in ../shared, from aiplanethub/Datasets read by pfcore.io.read_table:
    # bike_data/bike_train.csv (hourly rentals; temperature, humidity and wind as fractions on
    # grids) and pharma_data/Training_set_advc.csv (flags stored as floats).
    "bike": ("cnt", "regression"),
    "pharma": ("Survived_1_year", "binary"),
}
MAX_TRAIN_ROWS = 20_000
SCORE_ROWS = 20_000
SAMPLE_ROWS = 100_000
SEED = 0  # the split, the holdout subsample and the scoring classifiers; fits vary by --seeds
BUDGET_MINUTES = 5.0
PEER_BUDGETS: dict[str, dict[str, Any]] = {
    "sdv-gaussiancopula": {},
    "sdv-ctgan": {"epochs": 25},
    "sdv-tvae": {"epochs": 40},
    "mostly-tabularargn": {"minutes": BUDGET_MINUTES},
}
# Fits per method when --seeds is not given: three for the comparison that matters (ours against
# TabularARGN), one for the SDV floor.
DEFAULT_SEEDS: dict[str, list[int]] = {"mostly-tabularargn": [0, 1, 2], "pushforward": [0, 1, 2]}
SUMMARY_METRICS = (
    "quality",
    "column_shapes",
    "column_pair_trends",
    "detection_auc",
    "tstr",
    "fit_seconds",
    "sample_rows_per_second",
)


def run_dir(ds: str, method: str, seed: int) -> Path:
    return WORK / ds / method / f"seed-{seed}"


def default_family() -> str:
    """The family ``Synthesizer.fit`` uses when the caller names none: what a new user gets."""
    import inspect

    from pfcore.synthesizer import Synthesizer

    return str(inspect.signature(Synthesizer.fit).parameters["family"].default)


def _write_parquet(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def prepare(datasets: list[str]) -> None:
    """Split each dataset once: ``work/<ds>/train.parquet`` and ``work/<ds>/holdout.parquet``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pfcore.synthesizer import split_train_holdout

    for ds in datasets:
        out = WORK / ds
        if (out / "holdout.parquet").exists():
            continue
        out.mkdir(parents=True, exist_ok=True)
        table = pq.read_table(SHARED / f"{ds}.parquet")
        train, hold = split_train_holdout(table, 0.2, SEED, MAX_TRAIN_ROWS)
        if hold.num_rows > SCORE_ROWS:
            rng = np.random.default_rng(SEED)
            idx = np.sort(rng.choice(hold.num_rows, SCORE_ROWS, replace=False))
            hold = hold.take(pa.array(idx))
        _write_parquet(train, out / "train.parquet")
        _write_parquet(hold, out / "holdout.parquet")
        print(f"{ds}: train {train.num_rows} rows, holdout {hold.num_rows} rows", flush=True)


def run_peers(
    datasets: list[str],
    methods: list[str],
    threads: int,
    seeds: list[int] | None,
    minutes: float,
) -> None:
    """Each peer as a subprocess in the peers venv; skips runs whose output exists.

    Every peer samples ``SAMPLE_ROWS`` rows in one timed call. Without the peers venv nothing
    runs and the reason is printed: peers are measured, never installed by the benchmark.
    """
    if not PEERS_PY.exists():
        print(
            f"peers venv not found: {PEERS_PY} does not exist; create it as benchmarks/README.md "
            "says or point PEERS_PYTHON at its python. No peer was run.",
            flush=True,
        )
        return
    for ds in datasets:
        for method in methods:
            for seed in seeds if seeds is not None else DEFAULT_SEEDS.get(method, [SEED]):
                out = run_dir(ds, method, seed)
                if (out / "run.json").exists():
                    continue
                args = [
                    str(PEERS_PY),
                    str(ROOT / "benchmarks" / "peers.py"),
                    method,
                    str(WORK / ds / "train.parquet"),
                    str(out),
                    str(SAMPLE_ROWS),
                    "--threads",
                    str(threads),
                    "--seed",
                    str(seed),
                ]
                budget = PEER_BUDGETS[method]
                if "epochs" in budget:
                    args += ["--epochs", str(budget["epochs"])]
                if "minutes" in budget:
                    args += ["--minutes", str(minutes)]
                env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
                print(f"[{time.strftime('%H:%M:%S')}] {ds} {method} seed {seed} ...", flush=True)
                out.mkdir(parents=True, exist_ok=True)
                with open(out / "log.txt", "w") as log:
                    rc = subprocess.call(args, stdout=log, stderr=subprocess.STDOUT, env=env)
                print(
                    f"[{time.strftime('%H:%M:%S')}] {ds} {method} seed {seed} rc={rc}", flush=True
                )


def _write_run(out: Path, table: Any, info: dict[str, Any]) -> None:
    import pyarrow.parquet as pq  # noqa: F401 - _write_parquet imports it

    out.mkdir(parents=True, exist_ok=True)
    _write_parquet(table, out / "synthetic.parquet")
    tmp = out / ".run.json.tmp"
    tmp.write_text(json.dumps(info, indent=2, default=str))
    os.replace(tmp, out / "run.json")


def _throughput(model: Any, threads: int, n: int = 65_536, repeats: int = 3) -> dict[str, float]:
    """Encoded rows/s of ``model.sample`` vs the bare network forward on the same batch.

    The ratio checks that the one-step sampler adds no overhead beyond its matrix work.
    """
    import torch

    torch.set_num_threads(threads)
    model.sample(4096, seed=0)  # warm-up
    best_sample = min(_timed(lambda: model.sample(n, seed=1)) for _ in range(repeats))
    out = {"encoded_rows_per_second": n / best_sample}
    net = getattr(model, "student", None) or getattr(model, "generator", None)
    in_dim = getattr(next(iter(net.parameters()), None), "shape", (0, 0))[-1] if net else 0
    if net is not None and in_dim == model.latent_dim:  # a network of z alone (not hybrid's)
        z = torch.randn(n, model.latent_dim, device=model.device)
        with torch.inference_mode():
            best_fwd = min(_timed(lambda: net(z)) for _ in range(repeats))
        out["network_rows_per_second"] = n / best_fwd
        out["overhead_ratio"] = out["encoded_rows_per_second"] / out["network_rows_per_second"]
    return out


def _timed(fn: Any) -> float:
    """Wall seconds of ``fn()``, a CUDA device's queued work included."""
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_initialized() else (lambda: None)
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def _device_name(device: str) -> str:
    """``cpu``, or the CUDA device's name (recorded beside ``device`` in each run)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return "cpu"


def _cpu_sampling(synth: Any, threads: int = 1) -> dict[str, float]:
    """Rows/s of a GPU-trained synthesizer saved and loaded on the CPU, ``threads`` threads.

    Why: in production a GPU worker trains and CPU workers generate, so the sampling rate that
    compares with a CPU peer is this one, not the GPU's."""
    import tempfile

    import torch

    from pfcore.synthesizer import Synthesizer

    before = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        cpu = Synthesizer.load(synth.save(Path(tmp) / "synth"), device="cpu")
        torch.set_num_threads(threads)
        try:
            cpu.sample(4096, seed=0)  # warm-up
            seconds = _timed(lambda: cpu.sample(SAMPLE_ROWS, seed=1))
        finally:
            torch.set_num_threads(before)
    return {"cpu_sample_rows_per_second": round(SAMPLE_ROWS / seconds, 1), "cpu_threads": threads}


def run_ours(
    datasets: list[str],
    families: list[str],
    preset: str,
    threads: int,
    seeds: list[int] | None,
    minutes: float,
    overrides: dict[str, Any] | None = None,
    tag: str | None = None,
    device: str = "cpu",
) -> None:
    """Fit our families through the product path (``Synthesizer.fit``), ``minutes`` per fit.

    A model that keeps the flow teacher it distilled from (``model.teacher``) is also sampled
    through that teacher's ODE and scored as ``pushforward-<family>-teacher``: the same fit's
    slow sampler, the reference the one-step default is held to. Its ``fit_seconds`` is the
    whole fit's (one fit, two samplers); ``teacher_phase_seconds`` is the teacher's share. A
    hybrid's teacher is its conditional flow over the numeric dims (a network, not a model): its
    rows are the same discrete draws with the numbers integrated by that flow's ODE
    (``continuous_sampler = "teacher"``), through a marginal map of its own fitted to the same
    data quantiles as the student's (``calibrate_teacher``), so both samplers get the same
    correction. ``overrides`` (config keys) and ``tag`` (appended to
    the method name) score a design against the default under the same protocol. On a CUDA
    ``device`` each run also records the rate of the same model loaded on a CPU with one thread
    (``cpu_sample_rows_per_second``), where generation workers sample it.
    """
    import pyarrow.parquet as pq
    import torch

    from pfcore.models import GenerativeModel
    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer

    torch.set_num_threads(threads)
    for ds in datasets:
        train = pq.read_table(WORK / ds / "train.parquet")
        schema = infer_schema(train)
        for family in families:
            method = f"pushforward-{family}" + (f"-{tag}" if tag else "")
            for seed in seeds if seeds is not None else DEFAULT_SEEDS["pushforward"]:
                out = run_dir(ds, method, seed)
                if (out / "run.json").exists():
                    continue
                print(f"[{time.strftime('%H:%M:%S')}] {ds} {method} seed {seed} ...", flush=True)
                synth = Synthesizer.fit(
                    train,
                    schema,
                    family=family,
                    preset=preset,
                    seed=seed,
                    config={
                        **(overrides or {}),
                        "threads": threads,
                        "device": device,
                        "max_minutes": minutes,
                    },
                )
                common = {
                    "preset": preset,
                    "seed": seed,
                    "threads": threads,
                    "device": device.split(":")[0],
                    "device_name": _device_name(device),
                    "budget_minutes": minutes,
                    "fit_seconds": synth.info["fit_seconds"],
                }
                t0 = time.perf_counter()
                table = synth.sample(SAMPLE_ROWS, seed=1)
                sample_s = time.perf_counter() - t0
                cpu_rate = _cpu_sampling(synth) if device != "cpu" else {}
                info = {
                    "method": method,
                    **common,
                    "sample_seconds": round(sample_s, 3),
                    "sample_rows": SAMPLE_ROWS,
                    "config": synth.model.config.to_dict(),
                    "fit_summary": synth.info["fit_summary"],
                    **cpu_rate,
                    **_throughput(synth.model, threads),
                }
                _write_run(out, table, info)
                print(
                    f"[{time.strftime('%H:%M:%S')}] {ds} {method} seed {seed} fit "
                    f"{info['fit_seconds']:.0f}s, {SAMPLE_ROWS / sample_s:.0f} rows/s",
                    flush=True,
                )
                teacher = getattr(synth.model, "teacher", None)
                if teacher is None:
                    continue
                hybrid_flow = not isinstance(teacher, GenerativeModel)
                teacher_map = None
                if hybrid_flow:  # the hybrid's conditional flow: its numbers by the ODE
                    teacher_map = synth.model.calibrate_teacher()  # its own marginal map
                    synth.model.continuous_sampler = "teacher"
                    teacher, tsyn = synth.model, synth
                else:
                    tsyn = Synthesizer(
                        schema=synth.schema, transformer=synth.transformer, model=teacher
                    )
                t0 = time.perf_counter()
                table = tsyn.sample(SAMPLE_ROWS, seed=1)
                sample_s = time.perf_counter() - t0
                phase = (synth.info["fit_summary"] or {}).get("teacher") or {}
                tinfo = {
                    "method": f"{method}-teacher",
                    **common,
                    "teacher_phase_seconds": phase.get("seconds"),
                    "sample_seconds": round(sample_s, 3),
                    "sample_rows": SAMPLE_ROWS,
                    "config": teacher.config.to_dict(),
                    "fit_summary": {"teacher": phase},
                    "note": f"ODE teacher of {method}, same fit",
                    "teacher_marginal_map": teacher_map,
                    **_throughput(teacher, threads, n=16_384, repeats=1),
                }
                if hybrid_flow:
                    synth.model.continuous_sampler = "student"
                _write_run(run_dir(ds, f"{method}-teacher", seed), table, tinfo)


def run_reference(datasets: list[str]) -> None:
    """``real-train-rows``: training rows scored as if synthetic — the ceiling real data reaches.

    As many rows as the holdout (a seeded sample; all of them when the training split is
    smaller), scored by the same code as every method. A target above this is above real data.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    for ds in datasets:
        out = run_dir(ds, "real-train-rows", SEED)
        if (out / "run.json").exists():
            continue
        train = pq.read_table(WORK / ds / "train.parquet")
        n = min(pq.read_metadata(WORK / ds / "holdout.parquet").num_rows, train.num_rows)
        rng = np.random.default_rng(SEED + 1)
        idx = np.sort(rng.choice(train.num_rows, n, replace=False))
        info = {
            "method": "real-train-rows",
            "seed": SEED,
            "fit_seconds": 0.0,
            "sample_seconds": None,
            "sample_rows": n,
            "device": "cpu",
            "threads": None,
            "budget": {},
            "note": "real training rows (reference, not a method)",
        }
        _write_run(out, train.take(pa.array(idx)), info)


FRONTIER_SIZES = [(64, 2), (128, 2), (128, 3), (256, 2), (256, 3), (512, 3), (512, 4)]


def run_frontier(datasets: list[str], threads: int, distill_seconds: float, preset: str) -> None:
    """One teacher per dataset, students of several sizes; scored like every other method."""
    import pandas as pd
    import pyarrow.parquet as pq
    import torch

    from pfcore import models
    from pfcore.models.onestep import make_pairs
    from pfcore.schema import infer_schema
    from pfcore.transforms import TableTransformer

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from scoring import score_all

    torch.set_num_threads(threads)
    for ds in datasets:
        out_file = WORK / ds / "frontier.json"
        if out_file.exists():
            continue
        target, task = TARGETS[ds]
        train_t = pq.read_table(WORK / ds / "train.parquet")
        hold = pd.read_parquet(WORK / ds / "holdout.parquet")
        train = train_t.to_pandas()
        schema = infer_schema(train_t)
        tr = TableTransformer.fit(train_t, schema, seed=SEED)
        x = tr.encode(train_t, seed=SEED)
        rng = __import__("numpy").random.default_rng(SEED)
        perm = rng.permutation(len(x))
        n_valid = len(x) // 10
        valid, xfit = x[perm[:n_valid]], x[perm[n_valid:]]
        print(f"[{time.strftime('%H:%M:%S')}] {ds} frontier: teacher ...", flush=True)
        base = models.build("onestep", {"threads": threads, "device": "cpu"}, preset=preset)
        teacher = models.build(
            "flow",
            {
                **base.config.teacher_config().to_dict(),  # type: ignore[attr-defined]
                "max_minutes": base.config.max_minutes * base.config.teacher_share,
            },
            preset=preset,
        )
        t0 = time.perf_counter()
        teacher.fit(xfit, tr.blocks, valid=valid)
        teacher_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        pairs = make_pairs(teacher, base.config.n_pairs, SEED)  # type: ignore[attr-defined]
        pairs_s = time.perf_counter() - t0
        xt, vt = torch.from_numpy(xfit), torch.from_numpy(valid)
        rows = []
        for width, depth in FRONTIER_SIZES:
            cfg = {**base.config.to_dict(), "student_width": width, "student_depth": depth}
            t0 = time.perf_counter()
            student = models.OneStepModel.from_teacher(
                teacher, pairs, xt, vt, cfg, budget_s=distill_seconds
            )
            distill_s = time.perf_counter() - t0
            syn = tr.decode(student.sample(len(hold), seed=1), seed=1).to_pandas()
            scores = score_all(train, hold, syn, target, task, SEED)
            tp = _throughput(student, threads)
            row = {
                "width": width,
                "depth": depth,
                "parameters": student.fit_summary["distill"]["parameters"],
                "distill_steps": student.fit_summary["distill"]["steps"],
                "distill_seconds": round(distill_s, 1),
                **scores,
                **tp,
            }
            rows.append(row)
            print(
                f"  {width}x{depth}: quality {scores['quality']:.3f} auc "
                f"{scores['detection_auc']:.3f} rows/s {tp['encoded_rows_per_second']:.0f}",
                flush=True,
            )
        info = {
            "dataset": ds,
            "teacher_seconds": round(teacher_s, 1),
            "pairs_seconds": round(pairs_s, 1),
            "distill_budget_seconds": distill_seconds,
            "threads": threads,
            "rows": rows,
        }
        out_file.write_text(json.dumps(info, indent=2))


def _score_rows(syn: Any, n: int) -> Any:
    """A seeded subsample of ``n`` synthetic rows (all when fewer): methods sample
    ``SAMPLE_ROWS`` for timing, and every score uses as many rows as the holdout."""
    import numpy as np

    if len(syn) <= n:
        return syn
    idx = np.sort(np.random.default_rng(SEED).choice(len(syn), n, replace=False))
    return syn.iloc[idx].reset_index(drop=True)


def _worst_pairs(hold: Any, syn: Any, k: int = 5) -> list[dict[str, Any]] | str:
    """The pair diagnostic's worst ``k`` pairs (``pfcore.fidelity.pair_detection``), run as
    ``evaluate`` runs it (default settings, one thread); a string saying why when it cannot."""
    from threadpoolctl import threadpool_limits

    from pfcore.errors import InputError
    from pfcore.fidelity.config import EvalConfig
    from pfcore.fidelity.pair_detection import pair_detection
    from pfcore.fidelity.prepare import prepare
    from pfcore.fidelity.sampling import subsample_rows

    cfg = EvalConfig()
    try:
        prep = prepare(hold, syn, None)
    except InputError as exc:
        return f"not run: {exc}"
    n = min(len(hold), len(syn), cfg.pair_detection_max_rows)
    with threadpool_limits(limits=1):
        res = pair_detection(
            prep,
            subsample_rows(len(hold), n, SEED, "pair_detection", 0),
            subsample_rows(len(syn), n, SEED, "pair_detection", 1),
            max_pairs=cfg.pair_detection_max_pairs,
            max_candidates=cfg.pair_detection_max_candidates,
            max_iter=cfg.pair_detection_max_iter,
            seed=SEED,
        )
    return [
        {k: round(v, 4) if isinstance(v, float) else v for k, v in p.items()} for p in res.worst(k)
    ]


def _pairs_text(worst: Any, k: int = 3) -> str:
    if not isinstance(worst, list):
        return str(worst)
    return ", ".join(
        f"{p['column_1']}~{p['column_2']} {p['auc']:.3f} (lift {p['lift']:+.3f}, "
        f"{p['explained_by']})"
        for p in worst[:k]
    )


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation (ddof 1; 0 for a single seed) over seeds, per
    dataset and method."""
    import numpy as np

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        if r.get("status"):
            continue
        groups.setdefault((r["dataset"], r["method"]), []).append(r)
    out = []
    for (ds, method), runs in groups.items():
        row: dict[str, Any] = {
            "dataset": ds,
            "method": method,
            "seeds": sorted(r.get("seed") for r in runs),
            "n_seeds": len(runs),
        }
        for m in SUMMARY_METRICS:
            vals = np.array([r[m] for r in runs if r.get(m) is not None], dtype=float)
            row[m] = round(float(vals.mean()), 4) if vals.size else None
            row[f"{m}_std"] = (
                round(float(vals.std(ddof=1)), 4) if vals.size > 1 else (0.0 if vals.size else None)
            )
        row["sample_rows"] = runs[0].get("sample_rows")
        row["budget_minutes"] = runs[0].get("budget_minutes")
        row["device"] = runs[0].get("device", "cpu")
        out.append(row)
    return out


def _fmt(row: dict[str, Any], m: str, digits: int = 3) -> str:
    v, sd = row.get(m), row.get(f"{m}_std")
    if v is None:
        return "—"
    if row["n_seeds"] > 1 and sd is not None:
        return f"{v:.{digits}f} ± {sd:.{digits}f}"
    return f"{v:.{digits}f}"


def print_summary(summary: list[dict[str, Any]]) -> None:
    """The mean ± std table, then the targets: default vs TabularARGN and vs its own teacher."""
    print()
    print(
        "| dataset | method | seeds | Quality | Pair trends | detection AUC | TSTR | fit s "
        "| rows/s (100k) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in summary:
        rps = r.get("sample_rows_per_second")
        print(
            f"| {r['dataset']} | {r['method']} | {r['n_seeds']} | {_fmt(r, 'quality')} "
            f"| {_fmt(r, 'column_pair_trends')} | {_fmt(r, 'detection_auc')} | {_fmt(r, 'tstr')} "
            f"| {_fmt(r, 'fit_seconds', 0)} | {'—' if rps is None else f'{rps / 1000:.1f}k'} |"
        )
    ours = f"pushforward-{default_family()}"
    by = {(r["dataset"], r["method"]): r for r in summary}
    print()
    print(f"Targets for the default ({ours}), means over seeds:")
    for ds in sorted({r["dataset"] for r in summary}):
        me = by.get((ds, ours))
        if me is None:
            continue
        parts = [f"{ds}:"]
        peer = by.get((ds, "mostly-tabularargn"))
        if peer and peer.get("detection_auc") is not None:
            ok = me["detection_auc"] <= peer["detection_auc"] and me["quality"] >= peer["quality"]
            parts.append(
                f"vs TabularARGN AUC {me['detection_auc']:.3f}/{peer['detection_auc']:.3f} "
                f"Quality {me['quality']:.3f}/{peer['quality']:.3f} "
                f"({'met' if ok else 'MISSED'});"
            )
            if me.get("sample_rows_per_second") and peer.get("sample_rows_per_second"):
                ratio = me["sample_rows_per_second"] / peer["sample_rows_per_second"]
                parts.append(f"speed {ratio:.1f}x ({'met' if ratio >= 5 else 'MISSED'} >= 5x);")
        else:
            parts.append("no TabularARGN record;")
        teacher = by.get((ds, f"{ours}-teacher"))
        if teacher and teacher.get("detection_auc") is not None:
            gap = me["detection_auc"] - teacher["detection_auc"]
            parts.append(
                f"vs own ODE teacher AUC {me['detection_auc']:.3f}/{teacher['detection_auc']:.3f}"
                f" (gap {gap:+.3f}, {'met' if gap <= 0.02 else 'MISSED'} <= 0.02)"
            )
        print(" ".join(parts))


def score(datasets: list[str], merge: bool = False) -> list[dict[str, Any]]:
    """Score every finished run (cached in ``scores.json`` next to its Parquet output).

    ``merge``: keep the records of the results file already there for every (dataset, method)
    this scoring does not produce, so one table's rerun replaces only its own records."""
    import pandas as pd

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from scoring import _align, score_all

    records = []
    for ds in datasets:
        target, task = TARGETS[ds]
        train = pd.read_parquet(WORK / ds / "train.parquet")
        hold = pd.read_parquet(WORK / ds / "holdout.parquet")
        for run_path in sorted((WORK / ds).glob("*/seed-*/run.json")):
            run_dir_ = run_path.parent
            run = json.loads(run_path.read_text())
            cache = run_dir_ / "scores.json"
            scores = None
            if cache.exists() and cache.stat().st_mtime >= run_path.stat().st_mtime:
                scores = json.loads(cache.read_text())
                if "worst_pairs" not in scores or "tstr_rows" not in scores:
                    scores = None
            if scores is None:
                every = pd.read_parquet(run_dir_ / "synthetic.parquet")
                syn = _score_rows(every, len(hold))
                scores = score_all(
                    train, hold, syn, target, task, SEED, _score_rows(every, len(train))
                )
                scores["worst_pairs"] = _worst_pairs(hold, _align(hold, syn))
                cache.write_text(json.dumps(scores))
            worst = scores.pop("worst_pairs")
            seed = run.get("seed", int(run_dir_.name.removeprefix("seed-")))
            rec = {
                "dataset": ds,
                "method": run["method"],
                "seed": seed,
                **{k: round(v, 4) for k, v in scores.items()},
                "fit_seconds": run["fit_seconds"],
                "sample_rows": run.get("sample_rows"),
                "sample_rows_per_second": (
                    round(run["sample_rows"] / max(run["sample_seconds"], 1e-9), 1)
                    if run.get("sample_seconds") is not None
                    else None
                ),
                "budget_minutes": run.get("budget_minutes")
                or (run.get("budget") or {}).get("max_training_time_minutes"),
                "rows": int(len(train)),
                "columns": int(train.shape[1]),
                "cpu_count": os.cpu_count(),
                "device": run.get("device", "cpu"),
                "threads": run.get("threads"),
                "budget": run.get("budget")
                or {
                    k: run["config"].get(k)
                    for k in (
                        "max_minutes",
                        "max_steps",
                        "width",
                        "depth",
                        "student_width",
                        "student_depth",
                    )
                    if k in run.get("config", {})
                },
                "target": target,
                "target_metric": "roc_auc" if task == "binary" else "r2",
                "scored_holdout_rows": int(len(hold)),
                "worst_pairs": worst,
            }
            for k in (
                "encoded_rows_per_second",
                "network_rows_per_second",
                "overhead_ratio",
                "teacher_phase_seconds",
                "note",
                "device_name",
                "cpu_sample_rows_per_second",
                "cpu_threads",
            ):
                if k in run:
                    rec[k] = round(run[k], 3) if isinstance(run[k], float) else run[k]
            records.append(rec)
            print(
                f"{ds:20s} {rec['method']:30s} seed {seed} Q {rec['quality']:.3f} "
                f"shapes {rec['column_shapes']:.3f} "
                f"pairs {rec['column_pair_trends']:.3f} AUC {rec['detection_auc']:.3f} "
                f"TSTR {rec['tstr']:.3f}/{rec['trtr']:.3f} fit {rec['fit_seconds']:.0f}s "
                + (
                    f"{rec['sample_rows_per_second']:.0f} rows/s on {rec['sample_rows']} rows"
                    if rec["sample_rows_per_second"] is not None
                    else "(no sampler)"
                ),
                flush=True,
            )
            print(f"{'':20s}   worst pairs: {_pairs_text(worst)}", flush=True)
        for marker in sorted((WORK / ds).glob("*/seed-*/unfinished.json")):
            info = json.loads(marker.read_text())
            records.append(
                {
                    "dataset": ds,
                    "method": info["method"],
                    "seed": info.get("seed"),
                    "status": info["status"],
                    "reason": info["reason"],
                    "budget": info.get("budget"),
                    "threads": info.get("threads"),
                    "cpu_count": os.cpu_count(),
                    "device": "cpu",
                    **dict.fromkeys(
                        (
                            "quality",
                            "column_shapes",
                            "column_pair_trends",
                            "detection_auc",
                            "tstr",
                            "trtr",
                            "fit_seconds",
                            "sample_rows_per_second",
                        )
                    ),
                }
            )
            print(f"{ds:20s} {info['method']:30s} {info['status']}: {info['reason']}")
    if merge and (RESULTS / "fidelity.json").exists():
        fresh = {(r["dataset"], r["method"]) for r in records}
        kept = json.loads((RESULTS / "fidelity.json").read_text())
        records = [r for r in kept if (r["dataset"], r["method"]) not in fresh] + records
    summary = summarize(records)
    print_summary(summary)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name, payload in (("fidelity.json", records), ("fidelity_summary.json", summary)):
        tmp = RESULTS / f".{name}.tmp"
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, RESULTS / name)
    frontier = [
        json.loads((WORK / ds / "frontier.json").read_text())
        for ds in datasets
        if (WORK / ds / "frontier.json").exists()
    ]
    if frontier:
        tmp = RESULTS / ".frontier.json.tmp"
        tmp.write_text(json.dumps(frontier, indent=2))
        os.replace(tmp, RESULTS / "frontier.json")
        for f in frontier:
            best = min(r["detection_auc"] for r in f["rows"])
            ok = [r for r in f["rows"] if r["detection_auc"] <= best + 0.02]
            pick = min(ok, key=lambda r: r["parameters"])
            print(
                f"frontier {f['dataset']}: best AUC {best:.3f}; smallest within 0.02: "
                f"{pick['width']}x{pick['depth']}"
            )
    return records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="pushforward fidelity benchmark")
    ap.add_argument("stage", choices=["prepare", "peers", "ours", "reference", "frontier", "score"])
    ap.add_argument("--datasets", nargs="*", default=DATASETS)
    ap.add_argument("--methods", nargs="*", default=list(PEER_BUDGETS))
    ap.add_argument("--families", nargs="*", default=None, help="default: the default family")
    ap.add_argument("--preset", default="balanced")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="config override for our fits (repeatable), e.g. --set net='\"resmlp\"'",
    )
    ap.add_argument("--tag", default=None, help="suffix of our method name (with --set)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="where our fits train and sample: cpu or cuda")
    ap.add_argument(
        "--seeds",
        type=int,
        nargs="*",
        default=None,
        help="fit seeds (default: 0 1 2 for ours and TabularARGN, 0 for SDV)",
    )
    ap.add_argument(
        "--minutes",
        type=float,
        default=BUDGET_MINUTES,
        help="training budget of our fits and of TabularARGN (same for both)",
    )
    ap.add_argument("--distill-seconds", type=float, default=60.0)
    ap.add_argument(
        "--merge",
        action="store_true",
        help="score: keep the results file's records of (dataset, method) pairs not rescored",
    )
    args = ap.parse_args(argv)
    prepare(args.datasets)
    if args.stage == "peers":
        run_peers(args.datasets, args.methods, args.threads, args.seeds, args.minutes)
    elif args.stage == "ours":
        families = args.families or [default_family()]
        from benchmarks.overrides import parse_overrides

        overrides = parse_overrides(args.set)
        run_ours(
            args.datasets,
            families,
            args.preset,
            args.threads,
            args.seeds,
            args.minutes,
            overrides,
            args.tag,
            args.device,
        )
    elif args.stage == "frontier":
        run_frontier(args.datasets, args.threads, args.distill_seconds, args.preset)
    elif args.stage == "score":
        score(args.datasets, merge=args.merge)
    elif args.stage == "reference":
        run_reference(args.datasets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
