"""Rules every real row satisfies: detected on the training rows, declared by the user, and
enforced by construction in the transform (``pfcore.transforms.ruled``).

No Prefect import; heavy work only inside functions.
"""

from pfcore.rules.collect import collect_rules
from pfcore.rules.declare import check_declared, parse_declared, resolve_declared
from pfcore.rules.detect import detect_rules
from pfcore.rules.model import RULES_FILE, Rule, first_violation, hold_mask, hold_rate
from pfcore.rules.ruleset import RuleSet

__all__ = [
    "RULES_FILE",
    "Rule",
    "RuleSet",
    "check_declared",
    "collect_rules",
    "detect_rules",
    "first_violation",
    "hold_mask",
    "hold_rate",
    "parse_declared",
    "resolve_declared",
]
