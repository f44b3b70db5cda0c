"""Validate task: score synthetic rows against the held-out real rows and apply the gate."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from tasks._common import logger


@task(name="validate")
def validate_task(
    dataset_dir: str,
    synth_dir: str,
    work_dir: str,
    *,
    seed: int = 0,
    holdout_fraction: float = 0.2,
    max_train_rows: int | None = None,
    target: str | None = None,
    gate_config: dict | None = None,
    champion: dict | None = None,
) -> dict:
    """Returns the summary and the gate verdict; never raises on a failed gate.

    The flow decides what a failure means (stop before registering, mark the run failed), so
    the report is always written and published even when the model is rejected.
    """
    from pfcore.fidelity import GateConfig, evaluate, gate
    from pfcore.ingest import read_dataset
    from pfcore.schema import TableSchema
    from pfcore.synthesizer import Synthesizer, split_train_holdout

    table = read_dataset(dataset_dir)
    schema = TableSchema.load(Path(dataset_dir) / "schema.json")
    train, holdout = split_train_holdout(table, holdout_fraction, seed, max_train_rows)
    synth = Synthesizer.load(synth_dir)
    n = max(holdout.num_rows, min(train.num_rows, 5000))
    synthetic = synth.sample(n, seed=seed + 1)
    report = evaluate(
        holdout, synthetic, schema, train=train, target=target, seed=seed, rules=synth.rules
    )
    result = gate(report, GateConfig.from_dict(gate_config or {}), champion=champion)
    report_dir = Path(work_dir) / "report"
    report.save(report_dir)
    (report_dir / "gate.md").write_text(_gate_markdown(result))
    log = logger()
    log.info(
        "fidelity: %s", ", ".join(f"{k}={v:.4f}" for k, v in sorted(report.summary.items())[:12])
    )
    if result.passed:
        log.info("gate passed")
    else:
        log.warning("gate failed: %s", "; ".join(result.reasons))
    _publish_artifacts(report, result)
    return {
        "report_dir": str(report_dir),
        "summary": dict(report.summary),
        "passed": bool(result.passed),
        "reasons": list(result.reasons),
    }


def _gate_markdown(result) -> str:
    head = "## Gate: PASSED\n" if result.passed else "## Gate: FAILED\n"
    lines = [f"- {r}" for r in result.reasons] or ["- all checks passed"]
    return head + "\n".join(lines) + "\n"


def _publish_artifacts(report, result) -> None:
    """Fidelity table and Markdown report as Prefect artifacts (visible on the run page)."""
    try:
        from prefect.artifacts import create_markdown_artifact, create_table_artifact

        rows = [
            {"metric": k, "value": round(float(v), 4)} for k, v in sorted(report.summary.items())
        ]
        create_table_artifact(
            rows, key="fidelity-metrics", description="Fidelity metrics (holdout vs synthetic)"
        )
        create_markdown_artifact(
            _gate_markdown(result) + "\n" + report.to_markdown(),
            key="fidelity-report",
            description="Fidelity report and gate verdict",
        )
    except Exception as exc:  # noqa: BLE001 - outside a run (tests via .fn) there is no API
        logger().debug("no Prefect artifacts: %s", exc)
