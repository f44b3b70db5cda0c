"""``pushforward`` command line: the same flows the Prefect UI runs, from a terminal.

Exit codes (scripts and schedulers branch on them; decided in ``flows.guard``):
  0 success · 1 the fidelity gate rejected the model · 2 bad input or parameters ·
  3 environment (registry unreachable, no champion, storage not writable) · 4 unexpected error ·
  143 terminated by SIGTERM.

Imports are lazy: ``import torch``/``mlflow``/``prefect`` cost seconds each, so ``--help`` stays
instant and each command pays only for what it uses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from pfcore.errors import EXIT_BUG, EXIT_ENV, EXIT_GATE, EXIT_INPUT, EXIT_OK  # noqa: F401

EXIT_PF = EXIT_ENV  # former name


def _prefect_env() -> None:
    """Defaults that make Prefect's embedded server work on small machines (PLATFORM_NOTES)."""
    from pfcore.paths import pushforward_home

    home = pushforward_home()
    os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    # Prefect's SQLite store cannot create its folder itself ("unable to open database file").
    Path(os.environ["PREFECT_HOME"]).expanduser().mkdir(parents=True, exist_ok=True)
    import prefect.main  # noqa: F401 - configures Prefect's logging handlers, filtered next

    from flows.guard import quiet_tracebacks

    quiet_tracebacks()


def _train_params(args: argparse.Namespace):
    from flows.params import EXAMPLE_DATASET, GateParams, TrainParams

    source = (
        str(EXAMPLE_DATASET) if getattr(args, "example", False) or not args.source else args.source
    )
    return TrainParams(
        source=source,
        dataset_name=args.dataset_name,
        model_name=args.model_name,
        family=args.family,
        preset=args.preset,
        max_minutes=args.max_minutes,
        seed=args.seed,
        holdout_fraction=args.holdout_fraction,
        max_train_rows=args.max_train_rows,
        target=args.target,
        device=args.device,
        overrides=args.overrides,
        protect_extremes=args.protect_extremes,
        delimiter=args.delimiter,
        quote_char=args.quote_char,
        encoding=args.encoding,
        null_tokens=args.null_tokens,
        gate=GateParams(min_quality=args.min_quality, max_detection_auc=args.max_detection_auc),
    )


def _add_read_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--delimiter", default=None, help="CSV delimiter, or tab/semicolon/pipe (default: detected)"
    )
    p.add_argument("--quote-char", default='"', help='CSV quote character (default ")')
    p.add_argument("--encoding", default="utf8", help="CSV encoding, e.g. latin-1 (default utf8)")
    p.add_argument(
        "--null-tokens",
        default=None,
        help="comma-separated CSV cells read as null (default: ,NA,N/A,null,NULL,-,?,NaN)",
    )


def _read_options(args: argparse.Namespace) -> dict:
    from flows.params import csv_read_options

    return csv_read_options(args.delimiter, args.quote_char, args.encoding, args.null_tokens)


def _add_train_args(p: argparse.ArgumentParser, *, example: bool = False) -> None:
    p.add_argument("source", nargs="?", help="CSV, Parquet (file or folder) or JSON Lines table")
    if example:
        p.add_argument(
            "--example",
            action="store_true",
            help="use the bundled example dataset (california_housing)",
        )
    p.add_argument("--dataset-name")
    p.add_argument("--model-name", help="registered model name (default pushforward-<dataset>)")
    p.add_argument("--family", default="onestep", choices=["onestep", "flow", "energy"])
    p.add_argument(
        "--preset",
        default=None,
        choices=["tiny", "fast", "balanced", "best"],
        help="default: balanced",
    )
    p.add_argument("--max-minutes", type=float, default=None, help="training time budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--holdout-fraction", type=float, default=0.2)
    p.add_argument("--max-train-rows", type=int, default=None)
    p.add_argument("--target", default=None, help="target column for ML-efficacy scoring")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--overrides", default=None, help="YAML/JSON schema overrides")
    p.add_argument(
        "--protect-extremes",
        type=int,
        default=5,
        help="never decode beyond a column's (k+1)-th most extreme value; 0 = full range",
    )
    _add_read_args(p)
    p.add_argument("--min-quality", type=float, default=0.85)
    p.add_argument("--max-detection-auc", type=float, default=0.85)


def _add_generate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-name", default=None)
    p.add_argument("--alias", default="champion")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seed-policy", default="fixed", choices=["fixed", "run_date"])
    p.add_argument("--output", default=None, help="root folder of published batches")
    p.add_argument("--rows-per-shard", type=int, default=1_048_576)
    p.add_argument("--runner", default="threads", choices=["threads", "dask"])
    p.add_argument("--dask-address", default=None)
    p.add_argument("--workers", type=int, default=2)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pushforward",
        description="Synthetic tabular data: ingest, train, validate, register, generate.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of an unexpected error"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="ingest a table to a Parquet dataset + schema.json")
    p.add_argument("source")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--overrides", default=None)
    _add_read_args(p)

    p = sub.add_parser("train", help="flow train-pipeline: ingest → train → validate → register")
    _add_train_args(p)

    p = sub.add_parser(
        "validate", help="score a saved synthesizer against an ingested dataset's holdout"
    )
    p.add_argument("synthesizer", help="saved synthesizer folder")
    p.add_argument("dataset", help="ingested dataset folder")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--holdout-fraction", type=float, default=0.2)
    p.add_argument("--target", default=None)

    p = sub.add_parser("generate", help="flow generate-batch: champion → Parquet batch")
    _add_generate_args(p)

    p = sub.add_parser("run", help="flow pipeline: train, register, then generate a batch")
    _add_train_args(p, example=True)
    p.add_argument("--rows", type=int, default=100_000, help="rows of the generated batch")
    p.add_argument("--output", default=None)

    p = sub.add_parser("serve", help="serve the deployments on this machine (no worker needed)")
    p.add_argument(
        "--cron", default="0 3 * * *", help="generation schedule (default daily 03:00 UTC)"
    )
    p.add_argument("--model-name", default="pushforward-california_housing")
    p.add_argument("--rows", type=int, default=1_000_000)
    return parser


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    """Parse and run one command under the exit-code contract (``flows.guard``)."""
    from flows.guard import run_guarded, split_debug_flag

    args_list, debug = split_debug_flag(argv)
    return run_guarded(lambda: _dispatch(build_parser().parse_args(args_list)), debug=debug)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "ingest":
        from pfcore.ingest import ingest

        res = ingest(args.source, args.out, overrides=args.overrides, **_read_options(args))
        _print(
            {
                "dataset_dir": str(res.out_dir),
                "rows": res.manifest.get("rows"),
                "columns": {c.name: c.kind for c in res.schema.columns},
                "guesses": res.manifest.get("guesses", []),
            }
        )
        return EXIT_OK

    if args.command == "validate":
        from pfcore.fidelity import evaluate, gate
        from pfcore.ingest import read_dataset
        from pfcore.schema import TableSchema
        from pfcore.synthesizer import Synthesizer, split_train_holdout

        table = read_dataset(args.dataset)
        schema = TableSchema.load(Path(args.dataset) / "schema.json")
        train, holdout = split_train_holdout(table, args.holdout_fraction, args.seed)
        synth = Synthesizer.load(args.synthesizer)
        synthetic = synth.sample(max(holdout.num_rows, 1000), seed=args.seed + 1)
        report = evaluate(
            holdout, synthetic, schema, train=train, target=args.target, seed=args.seed
        )
        result = gate(report)
        report.save(args.out)
        _print({"passed": result.passed, "reasons": result.reasons, "summary": report.summary})
        return EXIT_OK if result.passed else EXIT_GATE

    if args.command in ("train", "run") and args.preset is None:
        args.preset = "balanced"
    if args.command == "train":
        params = _train_params(args)
        params.preflight(ingest=True)  # fail in seconds, before Prefect starts
        _prefect_env()  # before any Prefect import below
        from flows.train_pipeline import train_pipeline

        _print(train_pipeline(params))
        return EXIT_OK

    if args.command == "generate":
        from flows.params import GenerateParams

        fields = {
            k: v
            for k, v in {
                "model_name": args.model_name,
                "alias": args.alias,
                "rows": args.rows,
                "seed": args.seed,
                "seed_policy": args.seed_policy,
                "output": args.output,
                "rows_per_shard": args.rows_per_shard,
                "runner": args.runner,
                "dask_address": args.dask_address,
                "workers": args.workers,
            }.items()
            if v is not None
        }
        params = GenerateParams(**fields)  # validate before paying for the Prefect import
        params.preflight()
        _prefect_env()
        from flows.generate_batch import generate_batch

        _print(generate_batch(params))
        return EXIT_OK

    if args.command == "run":
        from flows.params import PipelineParams

        params = PipelineParams(train=_train_params(args), rows=args.rows, output=args.output)
        params.train.preflight(ingest=True)
        if params.output:
            from pfcore.preflight import check_writable_dir

            check_writable_dir(params.output, "the output folder")
        _prefect_env()
        from flows.pipeline import pipeline

        _print(pipeline(params))
        return EXIT_OK

    if args.command == "serve":
        _prefect_env()
        from deployments.serve import serve_all

        serve_all(cron=args.cron, model_name=args.model_name, rows=args.rows)
        return EXIT_OK
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
