"""The one promotion decision: gate verdict + champion summary + policy -> alias and reasons."""

from __future__ import annotations

import pytest

from pfcore.errors import InputError
from pfcore.promotion import CHALLENGER, CHAMPION, PromotionPolicy, decide

CHAMP = {"quality": 0.9, "pair_trends": 0.8, "detection_auc": 0.7, "unknown_metric": 5.0}


def test_first_champion_and_gate_failures() -> None:
    assert decide(CHAMP, True).alias == CHAMPION
    assert "first champion" in decide(CHAMP, True).summary
    failed = decide(CHAMP, False, ["quality 0.41 < 0.85"], champion=None)
    assert failed.alias == CHALLENGER and "quality 0.41 < 0.85" in failed.reasons[0]
    no_gate = decide(CHAMP, None, champion=None)
    assert no_gate.alias == CHALLENGER and not no_gate.promote


def test_regressions_beyond_the_tolerances_keep_the_champion() -> None:
    within = {"quality": 0.895, "pair_trends": 0.795, "detection_auc": 0.715}
    assert decide(within, True, champion=CHAMP, champion_version=3).promote
    worse = {"quality": 0.85, "pair_trends": 0.8, "detection_auc": 0.75, "unknown_metric": 0.0}
    d = decide(worse, True, champion=CHAMP, champion_version=3)
    assert d.alias == CHALLENGER
    assert "v3" in d.reasons[0] and "quality 0.8500" in d.reasons[0]
    assert "detection_auc 0.7500" in d.reasons[0]
    assert "unknown_metric" not in d.reasons[0]  # only the policy's metrics can veto
    loose = PromotionPolicy(quality_tolerance=0.1, detection_auc_tolerance=0.1)
    assert decide(worse, True, champion=CHAMP, policy=loose).promote
    off = PromotionPolicy(check_regression=False)
    assert decide({"quality": 0.1}, True, champion=CHAMP, policy=off).promote


def test_policy_round_trip_and_validation() -> None:
    policy = PromotionPolicy(detection_auc_tolerance=0.05)
    assert PromotionPolicy.from_dict(policy.to_dict()) == policy
    with pytest.raises(InputError, match="unknown PromotionPolicy key 'tolerance'"):
        PromotionPolicy.from_dict({"tolerance": 0.1})
    with pytest.raises(InputError, match="quality_tolerance"):
        PromotionPolicy(quality_tolerance=-1)


def test_flow_form_defaults_come_from_the_library() -> None:
    """The UI form's gate and promotion fields split cleanly into the two pfcore policies."""
    from flows.params import GateParams
    from pfcore.fidelity import GateConfig

    form = GateParams()
    assert PromotionPolicy.from_dict(form.promotion_policy()) == PromotionPolicy()
    gate = GateConfig.from_dict(form.gate_config())
    assert gate == GateConfig()
    custom = GateParams(detection_auc_tolerance=0.07, min_quality=0.9)
    assert PromotionPolicy.from_dict(custom.promotion_policy()).detection_auc_tolerance == 0.07
    assert GateConfig.from_dict(custom.gate_config()).min_quality == 0.9
