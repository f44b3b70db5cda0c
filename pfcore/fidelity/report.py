"""The fidelity report: one object, three audiences.

- Machines: ``to_dict()`` / ``save()`` -> ``report.json`` with ``"schema_version": 1``. A
  consumer checks the version before reading; fields are only ever added within a version.
- MLflow: ``summary`` -> flat ``{metric name: float}`` with MLflow-safe names (letters, digits,
  ``_ - . /``); NaN values are left out because MLflow charts cannot show them.
- People: ``to_markdown()`` (Prefect artifact) and ``save()`` -> ``report.md`` +
  ``plots/columns.png`` + ``plots/correlation_diff.png`` (MLflow artifacts).

JSON layout (version 1)::

    {"schema_version": 1, "kind": "pushforward.fidelity_report", "created_at": ISO-8601,
     "package_version": str, "seed": int, "target": str | null, "config": {...EvalConfig},
     "rows": {"real": n, "synthetic": n, "train": n | null},
     "metric_rows": {metric: {"real": n, "synthetic": n, "train": n}} (rows each metric used),
     "source_rows": {"dataset", "holdout_available", "train_available"} | null (what the scored
                    rows were drawn from, when validation read a bounded subset),
     "scores": {"quality", "column_shapes", "pair_trends", "pair_trends_all",
                "missing_rate_max_abs_diff", "validity_invalid_rate_max", "reference_quality",
                "reference_column_shapes", "reference_pair_trends": float | null},
     "columns": [{"name", "role", "metric", "shape", "missing_real", "missing_synthetic",
                  "missing_diff", "detection_auc", "reference_shape", "validity": {...}}],
     "skipped_columns": {name: reason}, "pairs": [...PairScore.to_dict()],
     "detection": {...} | null, "privacy": {...} | null, "efficacy": {...} | null,
     "pair_detection": {"worst": [...], "pairs": [{"column_1", "column_2", "auc",
                        "auc_column_1", "auc_column_2", "lift", "explained_by", "screen_auc"}],
                        "n_real", "n_synthetic", "n_pairs_total", "n_screened", "n_scored",
                        "settings"} | null,
     "reference": {"source", "n_a", "n_b", "column_shapes", "pair_trends", "quality"} | null,
     "text": [{"name", "missing_real", "missing_synthetic", "words_real", "words_synthetic",
               "words_shape", "seen_real", "seen_synthetic", "copied_once_real",
               "copied_once_synthetic"}] | null (free-text columns: ``pfcore.fidelity.text``),
     "notes": [str], "timings_s": {section: wall seconds}, "cpu_s": {section: CPU seconds},
     "distributions": {column: {...histogram or frequencies}},
     "correlation": {"columns": [...], "real": [[...]], "synthetic": [[...]]},
     "gate": {"passed", "reasons", "checks"} | null,
     "rules": [{"name", "kind", "columns", "origin", "active", "enforcement",
                "train_hold_rate", "holdout_hold_rate", "real_hold_rate",
                "synthetic_hold_rate"}] | null}
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pfcore.atomic import atomic_write
from pfcore.errors import InputError

__all__ = ["FidelityReport", "SCHEMA_VERSION", "mlflow_safe"]

SCHEMA_VERSION = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")


def mlflow_safe(name: str) -> str:
    """Replace characters MLflow rejects in metric names with ``_``."""
    return _UNSAFE.sub("_", str(name))


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _jsonable(x: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, NaN/inf to None, tuples to lists."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (bool, str)) or x is None:
        return x
    if hasattr(x, "item") and not isinstance(x, (list, dict)):
        x = x.item()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    return x


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return "n/a" if not math.isfinite(x) else f"{x:.{digits}f}"
    return str(x)


def _md_cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_md_cell(_fmt(c)) for c in row) + " |")
    return "\n".join(lines)


def _pair_detection_summary(pair_det: dict[str, Any] | None) -> dict[str, Any]:
    """MLflow metrics of the pair diagnostic: its worst pair's AUC and lift over its columns."""
    worst = (pair_det or {}).get("worst") or []
    if not worst:
        return {}
    return {
        "pair_detection_auc_max": max(p["auc"] for p in worst),
        "pair_detection_lift_max": worst[0]["lift"],
    }


def _pair_detection_markdown(pair_det: dict[str, Any] | None, k: int = 5) -> list[str]:
    """The "column pairs that give synthetic rows away" section (empty without the diagnostic)."""
    worst = ((pair_det or {}).get("worst") or [])[:k]
    if not worst:
        return []
    parts = ["## Column pairs that give synthetic rows away", ""]
    parts.append(
        f"Detection ROC AUC of a classifier that sees only the two columns "
        f"({pair_det.get('n_real')} real vs {pair_det.get('n_synthetic')} synthetic rows; "
        f"{pair_det.get('n_scored')} of {pair_det.get('n_pairs_total')} pairs scored after a "
        "cheap screen). Lift = pair AUC minus the larger AUC of either column alone: a high "
        "lift means the relationship between the two columns is off, a high AUC with a low "
        "lift means one column is off on its own."
    )
    parts.append("")
    parts.append(
        _table(
            [
                "column 1",
                "column 2",
                "pair AUC",
                "AUC col 1 alone",
                "AUC col 2 alone",
                "lift",
                "why",
            ],
            [
                [
                    p["column_1"],
                    p["column_2"],
                    p["auc"],
                    p["auc_column_1"],
                    p["auc_column_2"],
                    p["lift"],
                    p.get("explained_by"),
                ]
                for p in worst
            ],
        )
    )
    parts.append("")
    return parts


@dataclass
class FidelityReport:
    """Everything ``evaluate`` measured; see the module docstring for the JSON layout."""

    scores: dict[str, float | None]
    columns: list[dict[str, Any]]
    pairs: list[dict[str, Any]]
    rows: dict[str, int | None]
    config: dict[str, Any]
    seed: int = 0
    target: str | None = None
    skipped_columns: dict[str, str] = field(default_factory=dict)
    detection: dict[str, Any] | None = None
    privacy: dict[str, Any] | None = None
    efficacy: dict[str, Any] | None = None
    pair_detection: dict[str, Any] | None = None
    text: list[dict[str, Any]] | None = None
    reference: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    distributions: dict[str, dict[str, Any]] = field(default_factory=dict)
    correlation: dict[str, Any] | None = None
    gate: dict[str, Any] | None = None
    rules: list[dict[str, Any]] | None = None
    formulas: list[dict[str, Any]] | None = None
    metric_rows: dict[str, dict[str, int]] = field(default_factory=dict)
    source_rows: dict[str, int | None] | None = None
    created_at: str = ""
    package_version: str = ""

    # ------------------------------------------------------------------ machine form
    def to_dict(self) -> dict[str, Any]:
        return _jsonable(
            {
                "schema_version": SCHEMA_VERSION,
                "kind": "pushforward.fidelity_report",
                "created_at": self.created_at,
                "package_version": self.package_version,
                "seed": self.seed,
                "target": self.target,
                "config": self.config,
                "rows": self.rows,
                "metric_rows": self.metric_rows,
                "source_rows": self.source_rows,
                "scores": {k: _finite(v) for k, v in self.scores.items()},
                "columns": self.columns,
                "skipped_columns": self.skipped_columns,
                "pairs": self.pairs,
                "detection": self.detection,
                "privacy": self.privacy,
                "efficacy": self.efficacy,
                "pair_detection": self.pair_detection,
                "text": self.text,
                "reference": self.reference,
                "notes": self.notes,
                "timings_s": self.timings_s,
                "cpu_s": self.cpu_s,
                "distributions": self.distributions,
                "correlation": self.correlation,
                "gate": self.gate,
                "rules": self.rules,
                "formulas": self.formulas,
            }
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FidelityReport:
        """Load a report written by ``to_dict`` (e.g. the champion's ``report.json``)."""
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise InputError(
                f"fidelity report schema_version {version!r} is not supported "
                f"(expected {SCHEMA_VERSION})"
            )
        keys = {
            "scores",
            "columns",
            "pairs",
            "rows",
            "metric_rows",
            "source_rows",
            "config",
            "seed",
            "target",
            "skipped_columns",
            "detection",
            "privacy",
            "efficacy",
            "pair_detection",
            "text",
            "reference",
            "notes",
            "timings_s",
            "cpu_s",
            "distributions",
            "correlation",
            "gate",
            "rules",
            "formulas",
            "created_at",
            "package_version",
        }
        return cls(**{k: v for k, v in data.items() if k in keys})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FidelityReport:
        """Read ``report.json`` (or a directory holding one)."""
        p = Path(path)
        if p.is_dir():
            p = p / "report.json"
        try:
            data = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read fidelity report: {exc}", path=p) from exc
        return cls.from_dict(data)

    @property
    def summary(self) -> dict[str, float]:
        """Flat ``{name: value}`` for ``mlflow.log_metrics``; NaN/None values are left out."""
        out: dict[str, float] = {}

        def put(name: str, value: Any) -> None:
            v = _finite(value)
            if v is not None:
                out[mlflow_safe(name)] = v

        for k, v in self.scores.items():
            put(k, v)
        if self.detection:
            put("detection_auc", self.detection.get("auc"))
        for name, value in _pair_detection_summary(self.pair_detection).items():
            put(name, value)
        if self.privacy:
            put("privacy_dcr_ratio", self.privacy.get("dcr_ratio"))
            put("privacy_dcr_synthetic_p5", self.privacy.get("dcr_synthetic_p5"))
            put("privacy_dcr_holdout_p5", self.privacy.get("dcr_holdout_p5"))
            put("privacy_exact_copy_rate", self.privacy.get("exact_copy_rate"))
            put("privacy_holdout_copy_rate", self.privacy.get("holdout_copy_rate"))
        if self.efficacy:
            put("efficacy_ratio", self.efficacy.get("ratio"))
            for side in ("synthetic", "real"):
                for k, v in (self.efficacy.get(side) or {}).items():
                    put(f"efficacy_{side}_{k}", v)
        for col in self.columns:
            put(f"shape/{col['name']}", col.get("shape"))
        if self.gate is not None:
            out["gate_passed"] = 1.0 if self.gate.get("passed") else 0.0
        return out

    def attach_gate(self, result: Any) -> FidelityReport:
        """Record a ``GateResult`` (or its dict) so JSON and Markdown show the decision."""
        self.gate = result.to_dict() if hasattr(result, "to_dict") else dict(result)
        return self

    # ------------------------------------------------------------------ people form
    def worst_pairs(self, k: int = 10) -> list[dict[str, Any]]:
        scored = [p for p in self.pairs if p.get("score") is not None]
        scored.sort(key=lambda p: (not p.get("meets_threshold", True), p["score"]))
        return scored[:k]

    def to_markdown(self) -> str:
        s = self.scores
        parts = ["# Fidelity report", ""]
        rows = self.rows
        parts.append(
            f"Real (held-out) rows: {rows.get('real')}, synthetic rows: {rows.get('synthetic')}, "
            f"training rows: {'not given' if rows.get('train') is None else rows.get('train')}. "
            f"Seed {self.seed}."
        )
        src = self.source_rows or {}
        if src:
            parts.append(
                f"Drawn from a dataset of {src.get('dataset')} rows: "
                f"{src.get('holdout_available')} held out, the model trained on "
                f"{src.get('train_available')}."
            )
        if self.metric_rows:
            used = "; ".join(
                f"{m}: " + ", ".join(f"{k} {v}" for k, v in sides.items())
                for m, sides in self.metric_rows.items()
            )
            parts.append(f"Rows each metric used: {used}.")
        parts.append("")
        if self.gate is not None:
            verdict = "PASSED" if self.gate.get("passed") else "FAILED"
            parts += [f"## Gate: {verdict}", ""]
            for r in self.gate.get("reasons", []):
                parts.append(f"- {r}")
            if self.gate.get("reasons"):
                parts.append("")
            checks = self.gate.get("checks", [])
            if checks:
                parts.append(
                    _table(
                        ["check", "passed", "value", "threshold"],
                        [
                            [
                                c.get("name"),
                                bool(c.get("passed")),
                                c.get("value"),
                                c.get("threshold"),
                            ]
                            for c in checks
                        ],
                    )
                )
                parts.append("")
        parts += ["## Overall scores", ""]
        overall = [
            ["Quality (mean of shapes and pair trends)", s.get("quality")],
            ["Column shapes", s.get("column_shapes")],
            ["Column pair trends (related pairs)", s.get("pair_trends")],
            ["Column pair trends (all pairs)", s.get("pair_trends_all")],
            ["Missing rate, max abs diff", s.get("missing_rate_max_abs_diff")],
            ["Invalid values, max rate", s.get("validity_invalid_rate_max")],
        ]
        if self.reference:
            src = self.reference.get("source")
            overall.append([f"Reference quality, real vs real ({src})", s.get("reference_quality")])
            overall.append(
                [f"Reference pair trends, real vs real ({src})", s.get("reference_pair_trends")]
            )
        if self.detection:
            overall.append(
                ["Detection ROC AUC (0.5 = indistinguishable)", self.detection.get("auc")]
            )
        if self.privacy:
            overall.append(["DCR 5th pct ratio, synthetic/holdout", self.privacy.get("dcr_ratio")])
            overall.append(["Exact copies of training rows", self.privacy.get("exact_copy_rate")])
            overall.append(
                ["Holdout rows equal to a training row", self.privacy.get("holdout_copy_rate")]
            )
        if self.efficacy:
            e = self.efficacy
            h = e.get("headline")
            overall.append(
                [f"Efficacy {h}, train synthetic / test real", (e.get("synthetic") or {}).get(h)]
            )
            overall.append([f"Efficacy {h}, train real / test real", (e.get("real") or {}).get(h)])
            overall.append(["Efficacy ratio", e.get("ratio")])
        parts += [_table(["metric", "value"], overall), ""]

        parts += ["## Columns", ""]
        col_rows = []
        for c in sorted(
            self.columns, key=lambda c: (c.get("shape") is None, c.get("shape") or 0.0)
        ):
            v = c.get("validity") or {}
            col_rows.append(
                [
                    c["name"],
                    c.get("role"),
                    c.get("metric"),
                    c.get("shape"),
                    c.get("reference_shape"),
                    c.get("missing_real"),
                    c.get("missing_synthetic"),
                    c.get("detection_auc"),
                    v.get("invalid_rate"),
                ]
            )
        parts.append(
            _table(
                [
                    "column",
                    "role",
                    "metric",
                    "shape",
                    "ref shape",
                    "missing real",
                    "missing synth",
                    "1-col AUC",
                    "invalid rate",
                ],
                col_rows,
            )
        )
        parts.append("")
        if self.skipped_columns:
            parts += [
                "Skipped columns: "
                + ", ".join(f"`{k}` ({v})" for k, v in self.skipped_columns.items()),
                "",
            ]
        if self.text:
            parts += [
                "## Free-text columns",
                "",
                "Real (held-out) / synthetic. Seen: values some training row holds; copied "
                "once: values exactly one training row holds. Not read by the gate.",
                "",
                _table(
                    ["column", "missing", "mean words", "word-count shape", "seen", "copied once"],
                    [
                        [
                            f"`{t['name']}`",
                            f"{_fmt(t['missing_real'], 3)} / {_fmt(t['missing_synthetic'], 3)}",
                            f"{_fmt(t['words_real'], 2)} / {_fmt(t['words_synthetic'], 2)}",
                            t["words_shape"],
                            f"{_fmt(t['seen_real'], 3)} / {_fmt(t['seen_synthetic'], 3)}",
                            f"{_fmt(t['copied_once_real'], 3)} / "
                            f"{_fmt(t['copied_once_synthetic'], 3)}",
                        ]
                        for t in self.text
                    ],
                ),
                "",
            ]

        worst = self.worst_pairs()
        if worst:
            parts += ["## Worst column pairs", ""]
            parts.append(
                _table(
                    [
                        "column 1",
                        "column 2",
                        "metric",
                        "score",
                        "real r",
                        "synth r",
                        "real V",
                        "counts",
                    ],
                    [
                        [
                            p["column_1"],
                            p["column_2"],
                            p["metric"],
                            p["score"],
                            p.get("real_correlation"),
                            p.get("synthetic_correlation"),
                            p.get("real_association"),
                            bool(p.get("meets_threshold")),
                        ]
                        for p in worst
                    ],
                )
            )
            parts.append("")
        parts += _pair_detection_markdown(self.pair_detection)
        if self.detection and self.detection.get("column_auc"):
            top = sorted(self.detection["column_auc"].items(), key=lambda t: -t[1])[:5]
            parts += ["## Detection", ""]
            parts.append(
                f"Classifier AUC {self.detection['auc']:.4f} on "
                f"{self.detection.get('n_real')} real vs "
                f"{self.detection.get('n_synthetic')} synthetic rows; most telling single columns: "
                + ", ".join(f"`{c}` {a:.3f}" for c, a in top)
            )
            parts.append("")
        if self.rules:
            parts += ["## Rules", ""]
            parts.append(
                _table(
                    ["rule", "kind", "origin", "enforced", "train", "holdout", "real", "synth"],
                    [
                        [
                            r["name"],
                            r["kind"],
                            r["origin"],
                            r["enforcement"] if r["active"] else "no",
                            r.get("train_hold_rate"),
                            r.get("holdout_hold_rate"),
                            r.get("real_hold_rate"),
                            r.get("synthetic_hold_rate"),
                        ]
                        for r in self.rules
                    ],
                )
            )
            parts.append("")
        if self.formulas:
            parts += ["## Formulas", ""]
            parts.append(
                "Columns modelled as their difference from a formula of others; the share of "
                "rows within the tolerance (the training rows' 90% quantile plus half a unit of "
                "the target's last decimal, which rounding adds):"
            )
            parts.append("")
            parts.append(
                _table(
                    ["formula", "tolerance", "real", "synth"],
                    [
                        [f"`{f['formula']}`", f["tolerance"], f["real_share"], f["synthetic_share"]]
                        for f in self.formulas
                    ],
                )
            )
            parts.append("")
        if self.notes:
            parts += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        if self.timings_s:
            parts.append(
                "Timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in self.timings_s.items())
            )
            parts.append("")
        return "\n".join(parts)

    def save(self, directory: str | os.PathLike[str], *, plots: bool = True) -> Path:
        """Write ``report.json``, ``report.md`` and (unless ``plots=False``) ``plots/*.png``.

        Each file is written atomically. Returns the directory.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(
            out / "report.json", json.dumps(self.to_dict(), indent=2, allow_nan=False).encode()
        )
        atomic_write(out / "report.md", self.to_markdown().encode())
        if plots:
            from pfcore.fidelity.plots import plot_columns, plot_correlation_diff

            plot_columns(self, out / "plots" / "columns.png")
            plot_correlation_diff(self, out / "plots" / "correlation_diff.png")
        return out
