"""Log a trained synthesizer to MLflow, register it, and give it the right alias.

One call, :func:`log_synthesizer`, does the whole hand-over from training to the registry:

* an MLflow run with params, the fidelity summary as metrics, the gate verdict, the training
  curve (as step metrics and a CSV), the fidelity report files, and provenance tags (dataset
  checksum, git SHA when available, package version, config fingerprint);
* the model, logged with *models-from-code* (``pyfunc_model.py``) and the synthesizer directory
  as an artifact, so nothing is pickled; ``pfcore`` itself is shipped as ``code_paths`` so the
  model loads where pushforward is not installed; explicit ``pip_requirements`` (inference picks
  the local CPU torch build and takes seconds);
* a registered model version with alias ``champion`` when the gate passed and the summary does
  not regress against the current champion, else ``challenger``.

Atomicity: if anything fails after the run started, the new version (if created) is deleted,
the aliases are restored, the run is marked FAILED, and RegistryError is raised — a version
either exists complete with its alias or not at all.

Idempotency: every version carries a *registration fingerprint* tag, a hash of
(dataset checksum, config fingerprint, seed). Registering the same fingerprint under the same
name again returns the existing version (``LoggedModel.reused = True``) without a new run.
Without a dataset checksum the fingerprint falls back to a hash of the synthesizer directory's
content, so re-registering the same saved model is still a no-op. Two processes registering the
same fingerprint at the same instant may both create a version; schedule-level concurrency limits
(the Prefect flow) prevent that.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pfcore import __version__
from pfcore.errors import InputError, PushforwardError, RegistryError
from pfcore.promotion import CHAMPION, PromotionPolicy, decide
from pfcore.registry import tracking
from pfcore.registry.register import (
    INTERNAL_METRIC_PREFIX,
    ModelVersionInfo,
    alias_version,
    summary_of_run,
)

__all__ = [
    "LoggedModel",
    "Registration",
    "log_synthesizer",
    "config_fingerprint",
    "registration_fingerprint",
    "RUNTIME_REQUIREMENTS",
    "TAG_FINGERPRINT",
]

TAG_PREFIX = "pushforward."
TAG_FINGERPRINT = TAG_PREFIX + "fingerprint"
MODEL_NAME = "synthesizer"  # the model's name inside the run (``name=`` of log_model)
PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # pfcore/

#: What a loading environment needs besides pfcore (shipped as code). Lower bounds only: an
#: exact pin of the training machine's torch (e.g. ``+cpu``) breaks GPU or newer workers.
RUNTIME_REQUIREMENTS: tuple[str, ...] = (
    "torch>=2.4",
    "numpy>=1.26",
    "pandas>=2.1",
    "pyarrow>=15",
    "safetensors>=0.4",
    "scikit-learn>=1.4",
    "scipy>=1.11",
    "pyyaml>=6",
)
_MAX_CURVE_POINTS = 500  # per metric key: enough for a plot, cheap to log
_MAX_PARAM_LEN = 6000  # MLflow's limit on a param value


@dataclass(frozen=True)
class LoggedModel:
    """Result of :func:`log_synthesizer`.

    ``model_uri`` is the registry URI of this version (``models:/<name>/<version>``);
    ``reused`` is True when an identical registration existed and was returned instead.
    ``reasons`` says why the version is *not* champion (empty when it is); ``decision`` is the
    one-line verdict either way (also stored as the version's ``pushforward.decision`` tag).
    """

    name: str
    version: int
    alias: str | None
    run_id: str | None
    model_uri: str
    fingerprint: str
    reused: bool = False
    reasons: tuple[str, ...] = ()
    tracking_uri: str = ""
    decision: str = ""

    @property
    def alias_uri(self) -> str | None:
        return None if self.alias is None else f"models:/{self.name}@{self.alias}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "alias_uri": self.alias_uri,
            "fingerprint": self.fingerprint,
            "reused": self.reused,
            "reasons": list(self.reasons),
            "decision": self.decision,
            "tracking_uri": self.tracking_uri,
        }


# ------------------------------------------------------------------------------ fingerprints
def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def config_fingerprint(config: Mapping[str, Any] | None) -> str:
    """Stable hash of a training configuration (key order and formatting do not matter)."""
    return hashlib.sha256(_canonical(dict(config or {}))).hexdigest()[:16]


def _dir_digest(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        h.update(path.relative_to(directory).as_posix().encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def registration_fingerprint(dataset_checksum: str, config_fp: str, seed: int | None) -> str:
    """The idempotency key of a registration: same data, same config, same seed."""
    return hashlib.sha256(
        _canonical({"dataset": dataset_checksum, "config": config_fp, "seed": seed})
    ).hexdigest()[:32]


# ------------------------------------------------------------------------------ inputs
def _gate_fields(gate_result: Any) -> tuple[bool | None, list[str], list[Any]]:
    """(passed, reasons, checks) from a GateResult, a mapping, or None (= no gate ran)."""
    if gate_result is None:
        return None, [], []
    if isinstance(gate_result, Mapping):
        get = gate_result.get
    else:

        def get(key: str, default: Any = None) -> Any:
            return getattr(gate_result, key, default)

    passed = get("passed")
    if passed is None:
        raise InputError("gate result has no 'passed' field")
    return bool(passed), [str(r) for r in (get("reasons") or [])], list(get("checks") or [])


def _read_curve(curve: Sequence[Mapping[str, Any]] | str | os.PathLike[str] | None) -> list[dict]:
    """A training curve from rows or a JSON file (a list of objects, as the train task writes)."""
    if curve is None:
        return []
    if isinstance(curve, (str, os.PathLike)):
        path = Path(curve)
        if not path.exists():
            raise InputError("training curve file not found", path=path)
        text = path.read_text()
        if path.suffix.lower() == ".json":
            try:
                rows = json.loads(text)
            except ValueError as exc:
                raise InputError(f"not valid JSON: {exc}", path=path) from exc
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise InputError("expected a JSON list of objects", path=path)
            return rows
        raise InputError("training curve must be a .json file (a list of objects)", path=path)
    return [dict(r) for r in curve]


def _curve_csv(rows: list[dict]) -> str:
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in row if k not in keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


_BAD_METRIC_CHARS = re.compile(r"[^\w\-. :/]")


def _metric_names(summary: Mapping[str, float]) -> dict[str, float]:
    """Summary metrics under names MLflow accepts: per-column metrics carry the column's name
    (``shape/<column>``), and a name like ``prix (€)`` or ``a/..`` is refused by MLflow, which
    would fail a registration after the whole training. Characters MLflow refuses become ``_``,
    empty or dot path segments become ``_``, and a name taken twice gets a ``_2`` suffix."""
    out: dict[str, float] = {}
    for key, value in summary.items():
        parts = _BAD_METRIC_CHARS.sub("_", str(key)).split("/")
        name = "/".join("_" if p.strip() in ("", ".", "..") else p for p in parts)
        base, i = name, 2
        while name in out:
            name, i = f"{base}_{i}", i + 1
        out[name] = value
    return out


def _curve_metrics(rows: list[dict]) -> list[tuple[str, float, int]]:
    """(key, value, step) triples; at most _MAX_CURVE_POINTS evenly spaced per key."""
    series: dict[str, list[tuple[float, int]]] = {}
    for i, row in enumerate(rows):
        step = row.get("step", i)
        try:
            step = int(float(step))
        except (TypeError, ValueError):
            step = i
        phase = row.get("phase")
        prefix = f"{INTERNAL_METRIC_PREFIX}train." + (
            f"{phase}." if isinstance(phase, str) and phase else ""
        )
        for key, value in row.items():
            if key in {"step", "total_steps", "phase"} or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)) and math.isfinite(float(value)):
                series.setdefault(prefix + str(key), []).append((float(value), step))
    out: list[tuple[str, float, int]] = []
    for key, points in series.items():
        if len(points) > _MAX_CURVE_POINTS:
            idx = sorted(
                {
                    round(j * (len(points) - 1) / (_MAX_CURVE_POINTS - 1))
                    for j in range(_MAX_CURVE_POINTS)
                }
            )
            points = [points[j] for j in idx]
        out.extend((key, v, s) for v, s in points)
    return out


def _flat_params(params: Mapping[str, Any] | None, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (params or {}).items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat_params(value, full + "."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            out[full] = text[:_MAX_PARAM_LEN]
    return out


def _finite_metrics(metrics: Mapping[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        if isinstance(value, bool):
            value = float(value)
        if isinstance(value, (int, float)) and not math.isnan(float(value)):
            out[str(key)] = float(value)
    return out


def _git_sha() -> str | None:
    """The commit of the pfcore checkout, or None outside git / with no commits."""
    try:
        res = subprocess.run(
            ["git", "-C", str(PACKAGE_DIR), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = res.stdout.strip()
    return sha if res.returncode == 0 and len(sha) == 40 else None


def _shippable_code(tmp: Path) -> Path:
    """A copy of pfcore without caches or bundled example data, for ``code_paths``."""
    dest = tmp / "pfcore"
    shutil.copytree(
        PACKAGE_DIR,
        dest,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.parquet", "*.egg-info"),
    )
    return dest


def _existing_version(
    mlc: Any, cfg: tracking.TrackingConfig, name: str, fingerprint: str
) -> ModelVersionInfo | None:
    """A live version of ``name`` registered with ``fingerprint``, newest first."""
    with tracking.registry_errors(cfg, f"search versions of {name!r}"):
        versions = mlc.search_model_versions(f"name = '{name}'")
    hits = [mv for mv in versions if (mv.tags or {}).get(TAG_FINGERPRINT) == fingerprint]
    if not hits:
        return None
    newest = max(hits, key=lambda mv: int(mv.version))
    with tracking.registry_errors(cfg, f"read {name} version {newest.version}"):
        return ModelVersionInfo.from_mlflow(mlc.get_model_version(name, newest.version))


# ------------------------------------------------------------------------------ main entry
@dataclass(frozen=True)
class Registration:
    """What to register a saved synthesizer as, and the evidence logged beside it.

    Attributes:
        model_name: the registry name (``models:/<name>@champion``).
        params: training parameters; logged flattened (``a.b``) and as ``config/params.json``.
        metrics: the fidelity report's ``summary`` (flat name -> float), logged as run metrics.
        report_dir: the fidelity report directory (JSON, Markdown, plots), logged under
            ``fidelity/``.
        gate_result: a ``GateResult`` or a mapping with ``passed`` / ``reasons`` (``checks``
            optional). None means no gate ran: the version is never made champion.
        training_curve: rows of progress (dicts with ``step``, ``phase``, ``loss``, ...) or a
            JSON file of them.
        tags: extra run tags (also copied onto the model version).
        experiment: the MLflow experiment of the run.
        dataset_checksum / config_fp / seed: the idempotency key. ``dataset_checksum``
            defaults to ``tags["dataset_checksum"]``; ``config_fp`` to
            :func:`config_fingerprint` of ``params``; ``seed`` to the synthesizer's seed.
        policy: how the summary is compared with the current champion's
            (``pfcore.promotion.PromotionPolicy``; its defaults when None). The verdict of
            ``pfcore.promotion.decide`` sets the alias and is recorded on the version.
        run_name: the MLflow run's name (default ``<name>-<family>-seed<seed>``).
        ship_code: include pfcore as ``code_paths`` so the model loads without pushforward
            installed.
    """

    model_name: str
    params: Mapping[str, Any] | None = None
    metrics: Mapping[str, float] | None = None
    report_dir: str | os.PathLike[str] | None = None
    gate_result: Any = None
    training_curve: Sequence[Mapping[str, Any]] | str | os.PathLike[str] | None = None
    tags: Mapping[str, str] | None = None
    experiment: str = tracking.DEFAULT_EXPERIMENT
    dataset_checksum: str | None = None
    config_fp: str | None = None
    seed: int | None = None
    policy: PromotionPolicy | None = None
    run_name: str | None = None
    ship_code: bool = True


@dataclass(frozen=True)
class _Record:
    """Everything the writing step logs, decided before anything is written."""

    name: str
    experiment_id: str
    run_name: str
    run_tags: dict[str, str]
    params: Mapping[str, Any] | None
    summary: dict[str, float]
    gate: dict[str, Any]
    curve: list[dict]
    report_dir: str | os.PathLike[str] | None
    meta: dict[str, Any]
    alias: str
    decision: list[str]
    fingerprint: str
    ship_code: bool


def log_synthesizer(synth_dir: str | os.PathLike[str], registration: Registration) -> LoggedModel:
    """Log, register and alias a saved synthesizer; see the module docstring for guarantees.

    ``synth_dir`` is a directory written by ``Synthesizer.save``; ``registration`` says what to
    register it as (see :class:`Registration`).

    Returns the registered version and its alias. Raises RegistryError when the store is
    unreachable or refuses an operation (nothing is left registered), InputError for bad input.
    """
    reg = registration
    registered_model_name, report_dir, params = reg.model_name, reg.report_dir, reg.params
    synth_dir = Path(synth_dir)
    meta_path = synth_dir / "synthesizer.json"
    if not meta_path.is_file():
        raise InputError("not a saved synthesizer (no synthesizer.json)", path=synth_dir)
    if not registered_model_name or not registered_model_name.strip():
        raise InputError("registered_model_name must not be empty")
    if any(ch in registered_model_name for ch in "'\"`/\\:%"):
        raise InputError(
            f"registered_model_name {registered_model_name!r} must not contain quotes, "
            "slashes, ':' or '%' (they break registry URIs and searches)"
        )
    if report_dir is not None and not Path(report_dir).is_dir():
        raise InputError("fidelity report directory not found", path=report_dir)
    meta = json.loads(meta_path.read_text())
    name = registered_model_name.strip()
    passed, reasons, checks = _gate_fields(reg.gate_result)
    curve = _read_curve(reg.training_curve)
    summary = _finite_metrics(reg.metrics)
    user_tags = {str(k): str(v) for k, v in (reg.tags or {}).items()}

    seed = meta.get("seed") if reg.seed is None else reg.seed
    dataset_checksum = reg.dataset_checksum or user_tags.get("dataset_checksum")
    config_fp = reg.config_fp or config_fingerprint(params)
    fingerprint = registration_fingerprint(
        dataset_checksum or f"content:{_dir_digest(synth_dir)}", config_fp, seed
    )

    cfg = tracking.configure()  # probes a remote server before anything is written
    mlc = tracking.client(cfg)
    existing = _existing_version(mlc, cfg, name, fingerprint)
    if existing is not None:
        stored = existing.tags.get(TAG_PREFIX + "decision", "")
        alias = (
            CHAMPION
            if CHAMPION in existing.aliases
            else (existing.aliases[0] if existing.aliases else None)
        )
        return LoggedModel(
            name=name,
            version=existing.version,
            alias=alias,
            run_id=existing.run_id,
            model_uri=existing.model_uri,
            fingerprint=fingerprint,
            reused=True,
            reasons=() if alias == CHAMPION else (stored or "not champion",),
            tracking_uri=cfg.uri,
            decision="identical registration exists (same dataset, config and seed): "
            + (stored or f"alias {alias}"),
        )
    experiment_id = tracking.ensure_experiment(cfg, reg.experiment)

    provenance = {
        TAG_FINGERPRINT: fingerprint,
        TAG_PREFIX + "config_fingerprint": config_fp,
        TAG_PREFIX + "registered_model": name,
        TAG_PREFIX + "package_version": __version__,
        TAG_PREFIX + "family": str(meta.get("family", "")),
        TAG_PREFIX + "seed": str(seed),
        TAG_PREFIX + "gate": "none" if passed is None else ("passed" if passed else "failed"),
    }
    if dataset_checksum:
        provenance[TAG_PREFIX + "dataset_checksum"] = dataset_checksum
    sha = _git_sha()
    if sha:
        provenance[TAG_PREFIX + "git_sha"] = sha
    run_tags = {**user_tags, **provenance}

    with tracking.registry_errors(cfg, "read the current champion"):
        champ = alias_version(mlc, cfg, name, CHAMPION)
        champ_summary = summary_of_run(mlc, champ.run_id) if champ and champ.run_id else None
    verdict = decide(
        summary,
        passed,
        reasons,
        champion=champ_summary,
        champion_version=None if champ is None else champ.version,
        policy=reg.policy,
    )
    record = _Record(
        name=name,
        experiment_id=experiment_id,
        run_name=reg.run_name or f"{name}-{meta.get('family', 'model')}-seed{seed}",
        run_tags=run_tags,
        params=params,
        summary=summary,
        gate={"passed": passed, "reasons": reasons, "checks": checks},
        curve=curve,
        report_dir=report_dir,
        meta=meta,
        alias=verdict.alias,
        decision=[verdict.summary],
        fingerprint=fingerprint,
        ship_code=reg.ship_code,
    )
    return _log_and_register(cfg, mlc, synth_dir, record)


def _log_and_register(
    cfg: tracking.TrackingConfig, mlc: Any, synth_dir: Path, record: _Record
) -> LoggedModel:
    """The part that writes: every step inside one try, undone on failure (see module doc)."""
    import time

    import mlflow
    from mlflow.entities import Metric

    from pfcore.registry.frames import input_example, signature_for
    from pfcore.schema import TableSchema

    r = record
    name, alias, decision, passed = r.name, r.alias, r.decision, r.gate["passed"]
    schema = TableSchema.load(synth_dir / "schema.json")
    version: int | None = None
    previous_alias_holder: ModelVersionInfo | None = None
    alias_moved = False
    with tracking.registry_errors(cfg, "start a run"):
        run = mlc.create_run(r.experiment_id, run_name=r.run_name, tags=r.run_tags)
    run_id = run.info.run_id
    try:
        with mlflow.start_run(run_id=run_id), tempfile.TemporaryDirectory() as tmp_s:
            tmp = Path(tmp_s)
            flat = _flat_params(r.params)
            if flat:
                mlflow.log_params(flat)
            now = int(time.time() * 1000)
            batch = [Metric(k, v, now, 0) for k, v in _metric_names(r.summary).items()]
            if passed is not None:
                batch.append(Metric(INTERNAL_METRIC_PREFIX + "gate_passed", float(passed), now, 0))
            batch += [Metric(k, v, now, s) for k, v, s in _curve_metrics(r.curve)]
            for i in range(0, len(batch), 1000):
                mlc.log_batch(run_id, metrics=batch[i : i + 1000])

            cfg_dir = tmp / "config"
            cfg_dir.mkdir()
            (cfg_dir / "params.json").write_text(
                json.dumps(dict(r.params or {}), indent=2, default=str)
            )
            (cfg_dir / "synthesizer.json").write_text(json.dumps(r.meta, indent=2, default=str))
            mlflow.log_artifacts(str(cfg_dir), "config")
            gate_doc = {**r.gate, "decision": decision, "alias": alias}
            mlflow.log_dict(json.loads(json.dumps(gate_doc, default=str)), "fidelity/gate.json")
            if r.report_dir is not None:
                mlflow.log_artifacts(str(r.report_dir), "fidelity")
            if r.curve:
                mlflow.log_text(_curve_csv(r.curve), "training/curve.csv")

            code_paths = [str(_shippable_code(tmp))] if r.ship_code else None
            model_info = mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=str(PYFUNC_FILE),
                artifacts={"synthesizer": str(synth_dir)},
                code_paths=code_paths,
                pip_requirements=list(RUNTIME_REQUIREMENTS),
                signature=signature_for(schema),
                input_example=input_example(),
            )

            version_tags = {**r.run_tags, TAG_PREFIX + "decision": " | ".join(decision)[:5000]}
            mv = mlflow.register_model(model_info.model_uri, name, tags=version_tags)
            version = int(mv.version)
            mlc.set_registered_model_tag(name, TAG_PREFIX + "managed", "true")

            previous_alias_holder = alias_version(mlc, cfg, name, alias)
            mlc.set_registered_model_alias(name, alias, str(version))
            alias_moved = True
            mlflow.set_tags(
                {TAG_PREFIX + "registered_version": str(version), TAG_PREFIX + "alias": alias}
            )
        # leaving start_run marks the run FINISHED
    except BaseException as exc:
        _undo(
            cfg, mlc, name, version, alias if alias_moved else None, previous_alias_holder, run_id
        )
        if isinstance(exc, PushforwardError):
            raise
        if not isinstance(exc, Exception):
            raise
        raise RegistryError(
            f"MLflow at {cfg.describe()}: logging {synth_dir} as {name!r} failed, nothing was "
            f"registered (run {run_id} marked FAILED): {exc}"
        ) from exc
    return LoggedModel(
        name=name,
        version=version,
        alias=alias,
        run_id=run_id,
        model_uri=f"models:/{name}/{version}",
        fingerprint=r.fingerprint,
        reused=False,
        reasons=() if alias == CHAMPION else tuple(decision),
        tracking_uri=cfg.uri,
        decision=" | ".join(decision),
    )


def _undo(
    cfg: tracking.TrackingConfig,
    mlc: Any,
    name: str,
    version: int | None,
    moved_alias: str | None,
    previous: ModelVersionInfo | None,
    run_id: str,
) -> None:
    """Best effort: restore the alias, delete the new version, mark the run FAILED."""
    import mlflow

    steps = []
    if moved_alias is not None and previous is not None:
        steps.append(
            lambda: mlc.set_registered_model_alias(name, moved_alias, str(previous.version))
        )
    if version is not None:
        steps.append(lambda: mlc.delete_model_version(name, str(version)))
    steps.append(lambda: mlc.set_terminated(run_id, status="FAILED"))
    for step in steps:
        try:
            step()
        except Exception:  # noqa: BLE001 - the original error is what the user needs to see
            pass
    if mlflow.active_run() is not None:
        try:
            mlflow.end_run("FAILED")
        except Exception:  # noqa: BLE001
            pass
