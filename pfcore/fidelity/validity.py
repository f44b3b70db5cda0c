"""Validity: would a consumer's checks reject synthetic values?

Per column, the share of synthetic rows that are
- ``unseen``: a category outside the schema's categories (or, without a schema or when the
  schema lists only the most frequent levels, outside those plus the categories seen in the real
  and training rows);
- ``out_of_bounds``: a number outside the schema's [min, max] (or, without schema bounds, the
  range observed in the real and training rows);
- ``non_integral``: a non-whole number in an integer column.

``invalid_rate`` (gated by ``GateConfig.max_invalid_rate``) counts unseen categories,
non-integral values and values outside *schema* bounds. Bounds merely observed in the real rows
are narrower than the true range -- fresh real rows exceed them now and then -- so those
out-of-bounds rates are gated separately with a looser limit
(``GateConfig.max_observed_out_of_bounds_rate``). Pass a schema to make the bounds exact.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pfcore.fidelity.prepare import Prepared

__all__ = ["validity", "rule_validity"]


def _observed_bounds(prep: Prepared, name: str) -> tuple[float | None, float | None]:
    lo, hi = np.inf, -np.inf
    for table in ("real", "train"):
        if table in prep.values:
            v = prep.values[table][name]
            v = v[np.isfinite(v)]
            if v.size:
                lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
    return (lo, hi) if np.isfinite(lo) else (None, None)


def validity(prep: Prepared) -> dict[str, dict]:
    """``{column: {"unseen": rate, "out_of_bounds": rate, "non_integral": rate, ...}}``."""
    out: dict[str, dict] = {}
    for info in prep.columns:
        syn = prep.values["synthetic"][info.name]
        n = max(len(syn), 1)
        entry: dict = {"unseen": 0.0, "out_of_bounds": 0.0, "non_integral": 0.0}
        if info.is_numeric:
            finite = syn[np.isfinite(syn)]
            if info.min is not None and info.max is not None:
                lo, hi, source = info.min, info.max, info.bounds_source
            else:
                lo, hi = _observed_bounds(prep, info.name)
                source = "observed"
            if lo is not None:
                # Relative slack for float round-trips (datetimes in seconds, decoded decimals).
                tol = 1e-9 * max(abs(lo), abs(hi), 1.0)
                entry["out_of_bounds"] = float(
                    ((finite < lo - tol) | (finite > hi + tol)).sum() / n
                )
                entry["min"], entry["max"], entry["bounds_source"] = float(lo), float(hi), source
            if info.integer:
                entry["non_integral"] = float((np.abs(finite - np.round(finite)) > 1e-9).sum() / n)
        else:
            levels = prep.levels[info.name]
            ok = np.zeros(len(levels), dtype=bool)
            if info.categories is not None:
                allowed = set(info.categories)
                ok = np.array([lv in allowed for lv in levels], dtype=bool)
            if not info.categories_complete:
                # The schema lists only the top levels (or none): rows seen in real data count too.
                for table in ("real", "train"):
                    if table in prep.values:
                        codes = prep.values[table][info.name]
                        ok[np.unique(codes[codes >= 0])] = True
            valid = syn >= 0
            bad = valid.copy()
            bad[valid] = ~ok[syn[valid]]
            entry["unseen"] = float(bad.sum() / n)
            if bad.any():
                examples = [levels[i] for i in np.unique(syn[bad])[:5]]
                entry["unseen_examples"] = [str(e) for e in examples]
        # Observed bounds are only an estimate of the true range: a sample from the true
        # distribution exceeds them now and then, so they are gated separately and loosely.
        hard_oob = entry["out_of_bounds"] if entry.get("bounds_source") == "schema" else 0.0
        entry["invalid_rate"] = max(entry["unseen"], hard_oob, entry["non_integral"])
        out[info.name] = entry
    return out


def rule_validity(rules: Any, real: Any, synthetic: Any) -> list[dict]:
    """Each rule with its hold rate on the real (held-out) and the synthetic rows.

    ``rules``: a ``pfcore.rules.RuleSet`` or a list of ``Rule``. Active rules are enforced by
    construction, so their synthetic hold rate is 1.0 unless something is broken; the gate
    fails any that is not. Inactive ones are reported so users see how the model does on them.
    """
    import pyarrow as pa

    from pfcore.rules.model import hold_rate

    items = list(getattr(rules, "rules", rules) or [])
    tables = {}
    for name, t in (("real", real), ("synthetic", synthetic)):
        tables[name] = (
            t if isinstance(t, pa.Table) else pa.Table.from_pandas(t, preserve_index=False)
        )
    out = []
    for r in items:
        entry = {
            "name": r.name,
            "kind": r.kind,
            "columns": list(r.columns),
            "origin": r.origin,
            "active": bool(r.active),
            "enforcement": r.enforcement,
            "train_hold_rate": r.train_hold_rate,
            "holdout_hold_rate": r.holdout_hold_rate,
        }
        for name, t in tables.items():
            try:
                entry[f"{name}_hold_rate"] = hold_rate(r, t)
            except Exception as exc:  # noqa: BLE001 - a rule the table cannot evaluate is reported
                entry[f"{name}_hold_rate"] = None
                entry["error"] = f"{type(exc).__name__}: {exc}"
        out.append(entry)
    return out
