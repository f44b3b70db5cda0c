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
    """Defaults that make Prefect's embedded server work on small machines.

    On 2 cores the temporary server took 15-30 s to start, beyond Prefect's default 20 s limit,
    and its telemetry heartbeat printed "database is locked" tracebacks.
    """
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


#: The ingest command's reading options: the same fields (help, defaults) as the train form's.
_READ_FIELDS = ("overrides", "delimiter", "quote_char", "encoding", "null_tokens")


def _read_options(args: argparse.Namespace) -> dict:
    """``pfcore.ingest.ingest`` reading options from the command line, train-form defaults."""
    from flows.options import model_values
    from flows.params import TrainParams, csv_read_options

    given = model_values(args, TrainParams)
    fields = TrainParams.model_fields
    return csv_read_options(
        **{k: given.get(k, fields[k].default) for k in _READ_FIELDS if k != "overrides"}
    )


def build_parser() -> argparse.ArgumentParser:
    """Subcommands; the train, generate and run options come from ``flows.params``."""
    from flows.options import add_model_options
    from flows.params import GenerateParams, PipelineParams, TrainParams

    parser = argparse.ArgumentParser(
        prog="pushforward",
        description="Synthetic tabular data: ingest, train, validate, register, generate.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of an unexpected error"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="ingest a table to a Parquet dataset + schema.json")
    p.add_argument("source", help="CSV, Parquet (file or folder) or JSON Lines table")
    p.add_argument("--out", required=True, help="output dataset folder or URI (s3://...)")
    add_model_options(p, TrainParams, only=_READ_FIELDS)

    p = sub.add_parser("train", help="flow train-pipeline: ingest → train → validate → register")
    add_model_options(p, TrainParams, positional=("source",))

    p = sub.add_parser(
        "validate", help="score a saved synthesizer against an ingested dataset's holdout"
    )
    p.add_argument("synthesizer", help="saved synthesizer folder")
    p.add_argument("dataset", help="ingested dataset folder or URI")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="split seed, only for a synthesizer saved without its split (default 0)",
    )
    p.add_argument(
        "--holdout-fraction",
        type=float,
        default=None,
        help="holdout fraction, only for a synthesizer saved without its split (default 0.2)",
    )
    p.add_argument("--target", default=None, help="column to score ML efficacy on")

    p = sub.add_parser("generate", help="flow generate-batch: champion → Parquet batch")
    add_model_options(p, GenerateParams)

    p = sub.add_parser("run", help="flow pipeline: train, register, then generate a batch")
    p.add_argument(
        "--example",
        action="store_true",
        help="train on the bundled example dataset (california_housing) instead of SOURCE",
    )
    add_model_options(p, PipelineParams, positional=("source",))

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

        res = ingest(
            args.source, args.out, overrides=getattr(args, "overrides", None), **_read_options(args)
        )
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
        from pfcore.synthesizer import Split
        from pfcore.validation import validate_synthesizer

        split = None
        if args.seed is not None or args.holdout_fraction is not None:
            split = Split(
                0.2 if args.holdout_fraction is None else args.holdout_fraction,
                0 if args.seed is None else args.seed,
            )
        from pfcore.ingest import local_dataset

        validation = validate_synthesizer(
            local_dataset(args.dataset), args.synthesizer, target=args.target, split=split
        )
        report, result = validation.report, validation.result
        report.save(args.out)
        _print({"passed": result.passed, "reasons": result.reasons, "summary": report.summary})
        return EXIT_OK if result.passed else EXIT_GATE

    # Parameters are validated, and preflight checks run, before paying for the Prefect import.
    from flows.options import model_values
    from flows.params import EXAMPLE_DATASET, GenerateParams, PipelineParams, TrainParams

    if args.command == "train":
        params = TrainParams(**model_values(args, TrainParams))
        params.preflight(ingest=True)  # fail in seconds, before Prefect starts
        _prefect_env()  # before any Prefect import below
        from flows.train_pipeline import train_pipeline

        _print(train_pipeline(params))
        return EXIT_OK

    if args.command == "generate":
        params = GenerateParams(**model_values(args, GenerateParams))
        params.preflight()
        _prefect_env()
        from flows.generate_batch import generate_batch

        _print(generate_batch(params))
        return EXIT_OK

    if args.command == "run":
        values = model_values(args, PipelineParams)
        if args.example:
            values.setdefault("train", {})["source"] = str(EXAMPLE_DATASET)
        params = PipelineParams(**values)
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
