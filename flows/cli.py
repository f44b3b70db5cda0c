"""``pushforward`` command line: the same flows the Prefect UI runs, from a terminal.

Exit codes (scripts and schedulers branch on them):
  0 success · 1 the fidelity gate rejected the model · 2 bad input or usage ·
  3 another pushforward error (registry unreachable, no champion, ...) · 4 unexpected error.

Imports are lazy: ``import torch``/``mlflow``/``prefect`` cost seconds each, so ``--help`` stays
instant and each command pays only for what it uses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_GATE, EXIT_INPUT, EXIT_PF, EXIT_BUG = 0, 1, 2, 3, 4


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


def build_parser() -> argparse.ArgumentParser:
    """Subcommands; the train, generate and run options come from ``flows.params``."""
    from flows.options import add_model_options
    from flows.params import GenerateParams, PipelineParams, TrainParams

    parser = argparse.ArgumentParser(
        prog="pushforward",
        description="Synthetic tabular data: ingest, train, validate, register, generate.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("ingest", help="ingest a table to a Parquet dataset + schema.json")
    p.add_argument("source")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--overrides", default=None)

    p = sub.add_parser("train", help="flow train-pipeline: ingest → train → validate → register")
    add_model_options(p, TrainParams, positional=("source",))

    p = sub.add_parser(
        "validate", help="score a saved synthesizer against an ingested dataset's holdout"
    )
    p.add_argument("synthesizer", help="saved synthesizer folder")
    p.add_argument("dataset", help="ingested dataset folder")
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
    args = build_parser().parse_args(argv)
    from pfcore.errors import GateFailed, InputError, PushforwardError

    try:
        return _dispatch(args)
    except GateFailed as exc:
        print(f"pushforward: {exc}", file=sys.stderr)
        return EXIT_GATE
    except InputError as exc:
        print(f"pushforward: bad input: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except PushforwardError as exc:
        print(f"pushforward: {exc}", file=sys.stderr)
        return EXIT_PF
    except Exception as exc:  # pydantic validation of parameters is bad input too
        if type(exc).__name__ == "ValidationError":
            print(f"pushforward: invalid parameters: {exc}", file=sys.stderr)
            return EXIT_INPUT
        raise


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "ingest":
        from pfcore.ingest import ingest

        res = ingest(args.source, args.out, overrides=args.overrides)
        _print(
            {
                "dataset_dir": str(res.out_dir),
                "rows": res.manifest.get("rows"),
                "columns": {c.name: c.kind for c in res.schema.columns},
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
        validation = validate_synthesizer(
            args.dataset, args.synthesizer, target=args.target, split=split
        )
        report, result = validation.report, validation.result
        report.save(args.out)
        _print({"passed": result.passed, "reasons": result.reasons, "summary": report.summary})
        return EXIT_OK if result.passed else EXIT_GATE

    # Parameters are validated before paying for the Prefect import.
    from flows.options import model_values
    from flows.params import EXAMPLE_DATASET, GenerateParams, PipelineParams, TrainParams

    _prefect_env()  # before any Prefect import below
    if args.command == "train":
        params = TrainParams(**model_values(args, TrainParams))
        from flows.train_pipeline import train_pipeline

        _print(train_pipeline(params))
        return EXIT_OK

    if args.command == "generate":
        params = GenerateParams(**model_values(args, GenerateParams))
        from flows.generate_batch import generate_batch

        _print(generate_batch(params))
        return EXIT_OK

    if args.command == "run":
        values = model_values(args, PipelineParams)
        if args.example:
            values.setdefault("train", {})["source"] = str(EXAMPLE_DATASET)
        params = PipelineParams(**values)
        from flows.pipeline import pipeline

        _print(pipeline(params))
        return EXIT_OK

    if args.command == "serve":
        from deployments.serve import serve_all

        serve_all(cron=args.cron, model_name=args.model_name, rows=args.rows)
        return EXIT_OK
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
