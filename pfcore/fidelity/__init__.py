"""Fidelity validation: how close is synthetic data to real data, and may the model ship?

``evaluate(real, synthetic, schema, train=..., target=...)`` -> ``FidelityReport`` (JSON,
MLflow summary, Markdown, PNG plots); ``gate(report, config)`` -> ``GateResult``.
Metrics: column shapes and pair trends (sdmetrics-compatible), missing rates, validity,
classifier detection, privacy (DCR, exact copies) and ML efficacy. sklearn is imported lazily
inside the metrics that need it, so importing this package stays cheap.
"""

from pfcore.fidelity.config import EvalConfig
from pfcore.fidelity.evaluate import evaluate
from pfcore.fidelity.gate import GateConfig, GateResult, gate
from pfcore.fidelity.report import SCHEMA_VERSION, FidelityReport

__all__ = [
    "evaluate",
    "gate",
    "EvalConfig",
    "FidelityReport",
    "GateConfig",
    "GateResult",
    "SCHEMA_VERSION",
]
