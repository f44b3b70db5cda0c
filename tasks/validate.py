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
    target: str | None = None,
    gate_config: dict | None = None,
) -> dict:
    """Returns the summary and the gate verdict; never raises on a failed gate.

    The flow decides what a failure means (stop before registering, mark the run failed), so
    the report is always written and published even when the model is rejected. The holdout is
    the split recorded in the synthesizer (``pfcore.validation``).
    """
    from pfcore.validation import validate_synthesizer

    validation = validate_synthesizer(
        dataset_dir, synth_dir, target=target, gate_config=gate_config
    )
    report, result = validation.report, validation.result
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


def pair_artifact_rows(report, k: int = 5) -> list[dict]:
    """The pair diagnostic's worst ``k`` pairs as table-artifact rows (empty when it was off)."""
    worst = ((report.pair_detection or {}).get("worst") or [])[:k]
    return [
        {
            "column_1": p["column_1"],
            "column_2": p["column_2"],
            "pair_auc": round(float(p["auc"]), 4),
            "auc_column_1_alone": round(float(p["auc_column_1"]), 4),
            "auc_column_2_alone": round(float(p["auc_column_2"]), 4),
            "lift": round(float(p["lift"]), 4),
            "explained_by": p.get("explained_by"),
        }
        for p in worst
    ]


def _publish_artifacts(report, result) -> None:
    """Fidelity table, worst column pairs and Markdown report as Prefect artifacts (visible on
    the run page)."""
    try:
        from prefect.artifacts import create_markdown_artifact, create_table_artifact

        rows = [
            {"metric": k, "value": round(float(v), 4)} for k, v in sorted(report.summary.items())
        ]
        create_table_artifact(
            rows, key="fidelity-metrics", description="Fidelity metrics (holdout vs synthetic)"
        )
        pair_rows = pair_artifact_rows(report)
        if pair_rows:
            create_table_artifact(
                pair_rows,
                key="fidelity-pairs",
                description="Column pairs that give synthetic rows away (detection AUC per pair)",
            )
        create_markdown_artifact(
            _gate_markdown(result) + "\n" + report.to_markdown(),
            key="fidelity-report",
            description="Fidelity report and gate verdict",
        )
    except Exception as exc:  # noqa: BLE001 - outside a run (tests via .fn) there is no API
        logger().debug("no Prefect artifacts: %s", exc)
