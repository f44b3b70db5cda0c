"""The rules file: a set of rules plus the user's switches, read from and written to JSON.

Its own module because reading a user's file parses declared rules (``pfcore.rules.declare``),
which are built from ``pfcore.rules.model``; the model module stays free of the parser.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pfcore.errors import InputError, SchemaError
from pfcore.rules.declare import parse_rule
from pfcore.rules.model import FORMAT_VERSION, Rule

__all__ = ["RuleSet"]


@dataclass
class RuleSet:
    """The rules of one table, saved as ``rules.json`` beside ``schema.json``."""

    rules: list[Rule] = field(default_factory=list)
    #: Names of detected rules the user deleted: detection skips them on the next training.
    ignore: list[str] = field(default_factory=list)
    detect: bool = True

    @property
    def active(self) -> list[Rule]:
        return [r for r in self.rules if r.active]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "detect": self.detect,
            "ignore": list(self.ignore),
            "rules": [r.to_dict() for r in self.rules],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RuleSet:
        if int(d.get("format_version", FORMAT_VERSION)) > FORMAT_VERSION:
            raise SchemaError(f"rules format {d['format_version']} is newer than supported")
        rules = []
        for i, r in enumerate(d.get("rules") or []):
            if not isinstance(r, dict):
                raise SchemaError(f"rule #{i + 1} must be a mapping, got {r!r}")
            rules.append(Rule.from_dict(r) if "kind" in r else parse_rule(r, index=i))
        return cls(
            rules=rules, ignore=list(d.get("ignore") or []), detect=bool(d.get("detect", True))
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        from pfcore.atomic import atomic_write

        path = Path(path)
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False)
        atomic_write(path, text + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RuleSet:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise InputError("rules file does not exist", path=path) from None
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise InputError(f"not a valid rules.json ({exc})", path=path) from None
        except SchemaError as exc:
            raise InputError(str(exc), path=path) from None


# ---------------------------------------------------------------------------------------------
# Evaluation: which rows hold
# ---------------------------------------------------------------------------------------------
