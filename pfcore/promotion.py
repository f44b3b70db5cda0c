"""The promotion decision: does a model that passed the gate take over as ``champion``?

Why one pure function: the decision used to be made twice, by the gate (against a champion
summary the flow never passed) and by the registry (with a tolerance the register task
hard-coded over the configured ones), so the two could disagree. Now :func:`decide` is the only
place it is made: the registry reads the current champion's summary, calls it once at
registration time and records its verdict on the model version; nothing recomputes it.

Only the metrics named by the policy are compared: a new report metric cannot silently veto
every future model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pfcore.settings import check_non_negative, from_mapping

__all__ = ["CHAMPION", "CHALLENGER", "Decision", "PromotionPolicy", "decide"]

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class PromotionPolicy:
    """How much worse than the current champion a gate-passing model may score and still win.

    Attributes:
        check_regression: compare with the current champion at all; False lets any model whose
            gate passed take over.
        quality_tolerance: quality may drop at most this below the champion's (0.01).
        pair_trends_tolerance: same for pair trends (0.01).
        detection_auc_tolerance: detection AUC may rise at most this above the champion's
            (0.02): two fits of the same model differ by about 0.01 on the shared tables.
    """

    check_regression: bool = True
    quality_tolerance: float = 0.01
    pair_trends_tolerance: float = 0.01
    detection_auc_tolerance: float = 0.02

    def __post_init__(self) -> None:
        check_non_negative(self)

    def rules(self) -> dict[str, tuple[bool, float]]:
        """metric -> (higher is better, tolerance)."""
        return {
            "quality": (True, self.quality_tolerance),
            "pair_trends": (True, self.pair_trends_tolerance),
            "detection_auc": (False, self.detection_auc_tolerance),
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PromotionPolicy:
        """Build from JSON/YAML/UI values; an unknown key is an InputError naming it."""
        return from_mapping(cls, data)


@dataclass(frozen=True)
class Decision:
    """The verdict: the alias to set, why not champion (empty when it is), and one line."""

    alias: str
    reasons: tuple[str, ...]
    summary: str

    @property
    def promote(self) -> bool:
        return self.alias == CHAMPION


def _regressions(
    new: Mapping[str, float], champion: Mapping[str, float], policy: PromotionPolicy
) -> list[str]:
    out: list[str] = []
    for key, (higher_is_better, tol) in policy.rules().items():
        try:
            a, b = float(new[key]), float(champion[key])
        except (KeyError, TypeError, ValueError):
            continue
        if not (math.isfinite(a) and math.isfinite(b)):
            continue
        if higher_is_better and a < b - tol:
            out.append(f"{key} {a:.4f} < champion {b:.4f} - {tol:g}")
        elif not higher_is_better and a > b + tol:
            out.append(f"{key} {a:.4f} > champion {b:.4f} + {tol:g}")
    return out


def decide(
    summary: Mapping[str, float],
    gate_passed: bool | None,
    gate_reasons: tuple[str, ...] | list[str] = (),
    *,
    champion: Mapping[str, float] | None = None,
    champion_version: int | None = None,
    policy: PromotionPolicy | None = None,
) -> Decision:
    """Champion only when the gate passed and the summary does not regress against ``champion``.

    ``gate_passed`` None means no gate ran: never champion. ``champion`` is the current
    champion's fidelity summary (None when there is none yet).
    """
    policy = policy or PromotionPolicy()
    if gate_passed is None:
        why = "no fidelity gate result: not eligible for champion"
        return Decision(CHALLENGER, (why,), why)
    if not gate_passed:
        why = "fidelity gate failed: " + "; ".join(gate_reasons or ["(no reasons given)"])
        return Decision(CHALLENGER, (why,), why)
    name = "the champion" if champion_version is None else f"v{champion_version}"
    if champion and policy.check_regression:
        regress = _regressions(summary, champion, policy)
        if regress:
            why = f"regresses against champion {name}: " + "; ".join(regress)
            return Decision(CHALLENGER, (why,), why)
        return Decision(CHAMPION, (), f"gate passed; no regression against {name}")
    if champion:
        return Decision(CHAMPION, (), f"gate passed; regression check off, replaces {name}")
    return Decision(CHAMPION, (), "gate passed; first champion")
