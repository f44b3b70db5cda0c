"""How closely synthetic rows follow the formulas their columns were modelled by.

Why: a formula column (``pfcore.transforms.formulas``) is not a rule -- a few real rows break
it -- so the gate does not score it, but users should see that the synthetic rows keep it as
the real ones do. Each formula is read as the share of rows whose difference (target minus
formula) is within a tolerance fixed on the training rows (the 90% quantile of its absolute
value there, plus half a unit of the target's last decimal: a synthetic value is rounded to
its decimals after the formula, which adds up to that much), on the real held-out and on the
synthetic rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pfcore.transforms.formulas import Formula, formula_value

__all__ = ["difference", "formula_shares"]

#: The tolerance is this quantile of the training rows' absolute difference.
QUANTILE = 0.9


def difference(df: pd.DataFrame, f: Formula) -> np.ndarray:
    """Target minus formula per row; NaN where the formula or the target is undefined."""
    ops = [pd.to_numeric(df[a], errors="coerce").to_numpy(np.float64) for a in f.operands]
    value, defined = formula_value(f.form, f.coefficients, f.intercept, ops)
    t = pd.to_numeric(df[f.target], errors="coerce").to_numpy(np.float64)
    return np.where(defined & np.isfinite(t), t - value, np.nan)


def _share(d: np.ndarray, tol: float) -> float | None:
    if not d.size:
        return None
    return float(np.mean(np.abs(np.nan_to_num(d, nan=np.inf)) <= tol))


def formula_shares(
    formulas: list[Formula],
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    train: Any = None,
    schema: Any = None,
) -> list[dict[str, Any]]:
    """Per formula: its text, the tolerance and the share of real and synthetic rows within
    it (the tolerance comes from ``train`` when given, else from ``real``; the target's
    decimals from ``schema`` when given)."""
    base = real if train is None else train
    decimals = {c.name: c.decimals for c in getattr(schema, "columns", [])}
    out = []
    for f in formulas:
        if any(
            c not in real.columns or c not in synthetic.columns for c in [f.target, *f.operands]
        ):
            continue
        d_base = difference(base, f)
        finite = np.abs(d_base[np.isfinite(d_base)])
        tol = float(np.quantile(finite, QUANTILE)) if finite.size else 0.0
        dec = decimals.get(f.target)
        if dec is not None and dec >= 0:
            tol += 0.5 * 10.0 ** (-int(dec))
        out.append(
            {
                "formula": f.text(),
                "target": f.target,
                "operands": list(f.operands),
                "tolerance": tol,
                "real_share": _share(difference(real, f), tol),
                "synthetic_share": _share(difference(synthetic, f), tol),
            }
        )
    return out
