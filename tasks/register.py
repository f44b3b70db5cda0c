"""Register task: log the synthesizer, its report and curve to MLflow and set its alias."""

from __future__ import annotations

from prefect import task

from tasks._common import logger, retry_if_transient


@task(
    name="register",
    retries=2,
    retry_delay_seconds=[5, 10],
    retry_condition_fn=retry_if_transient,
)
def register_task(
    *,
    synth_dir: str,
    model_name: str,
    report_dir: str,
    summary: dict,
    passed: bool,
    reasons: list[str],
    training_curve: str,
    dataset_checksum: str,
    params: dict,
    seed: int,
    promotion: dict | None = None,
) -> dict:
    """Retried: the tracking server is the one flaky dependency, and registration is idempotent
    (same dataset checksum, config and seed return the existing version), so a retry after a
    half-seen success cannot create a duplicate. ``promotion``: a
    ``pfcore.promotion.PromotionPolicy`` as a dict; the registry applies it once."""
    from pfcore.promotion import PromotionPolicy
    from pfcore.registry import Registration, log_synthesizer, resolve_tracking

    registration = Registration(
        model_name,
        params=params,
        metrics=summary,
        report_dir=report_dir,
        gate_result={"passed": passed, "reasons": reasons},
        training_curve=training_curve,
        dataset_checksum=dataset_checksum,
        seed=seed,
        tags={"dataset_checksum": dataset_checksum},
        policy=PromotionPolicy.from_dict(promotion),
    )
    logged = log_synthesizer(synth_dir, registration)
    log = logger()
    log.info(
        "registered %s version %s alias=%s%s",
        logged.name,
        logged.version,
        logged.alias,
        " (reused identical registration)" if logged.reused else "",
    )
    if logged.reasons:
        log.warning("not champion: %s", "; ".join(logged.reasons))
    _link_artifact(logged, resolve_tracking().describe())
    return {
        "model_name": logged.name,
        "version": logged.version,
        "alias": logged.alias,
        "run_id": logged.run_id,
        "model_uri": logged.model_uri,
        "reused": logged.reused,
        "not_champion_reasons": list(logged.reasons),
    }


def _link_artifact(logged, tracking_uri: str) -> None:
    try:
        from prefect.artifacts import create_markdown_artifact

        where = f"MLflow run `{logged.run_id}`" + (f" at {tracking_uri}" if tracking_uri else "")
        create_markdown_artifact(
            f"## Registered model\n\n- name: `{logged.name}`\n- version: {logged.version}\n"
            f"- alias: `{logged.alias}`\n- model URI: `{logged.model_uri}`\n- {where}\n"
            + ("".join(f"- not champion: {r}\n" for r in logged.reasons)),
            key="registered-model",
            description="MLflow registry entry",
        )
    except Exception as exc:  # noqa: BLE001 - no API outside a run
        logger().debug("no Prefect artifact: %s", exc)
