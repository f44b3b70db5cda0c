"""``--set KEY=JSON`` model config overrides, parsed the same way by every benchmark script."""

from __future__ import annotations

import json
from typing import Any


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["width=512", 'net="resmlp"']`` -> ``{"width": 512, "net": "resmlp"}``; a pair
    without ``=`` or with a value that is not JSON stops the script naming it."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {pair!r}: expected KEY=JSON")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"--set {pair!r}: the value is not JSON ({exc.msg})") from exc
    return out
