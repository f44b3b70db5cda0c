"""Numbers that follow a formula of other numbers on nearly every row, up to rounding.

Why: tables hold measurements computed from others and then rounded, or recorded with a few
slips: a diamond's depth is its height over its mean width in percent (``depth = 200 z / (x +
y)``, within the rounding of its one decimal on 93% of the rows, off by up to 64 on a few), a
body-mass index is weight over height squared, a price per unit is a total over a count. No
exact rule holds (``pfcore.rules`` needs every row within the target's rounding), so the model
learns the link as a tight dependence and blurs it: on diamonds a 5-minute fit put 200 z / (x +
y) - depth within +-0.29 on half of its rows where the real rows are within +-0.027, and a
classifier given that one difference told the rows apart at AUC 0.95. So the column is modelled
as its difference from the formula (``transforms.ruled.FormulaTransform``): decode computes the
formula from the decoded operands and adds the modelled difference, so the rounding-sized
spread of the real rows is what the model has to draw.

A formula is a product of powers, ``t = c * a1^k1 * a2^k2 * a3^k3`` over positive values
(ratios, percentages, areas, rates: linear in logs), or a linear sum ``t = c + k1 a1 + k2 a2 +
k3 a3`` (totals with a few slips). One to three operands. It is found by least squares in its
space (logs for a product) on a seeded sample, trimmed of the rows off the formula, and kept
when the difference's robust scale (the 90% quantile of its absolute deviation from the
median) is at most ``MAX_SCALE_RATIO`` of the target's own in that space: the formula explains
all but ~1e-4 of the target's variance on nine rows in ten. Which column of a formula is its
target matters: on diamonds, modelling ``depth`` as its difference from ``100 z / sqrt(x y)``
(scale 0.019: depth varies little beside its rounding) raised the detection AUC of a 5-minute
fit from 0.685 to 0.705 (one fit), because depth's own narrow law then came from the drawn x, y
and z; ``z`` as the difference from ``0.01 depth sqrt(x y)`` (scale 0.003) left it level (0.683
against 0.682 without formulas, three fits) while 97.5% of rows keep the formula, against 30%.
So a total or product of its parts (every coefficient positive) is preferred, then the
tightest.
A formula with more operands must halve the scale of the best one with fewer.

A column is the target of at most one formula; formulas may chain but never loop. Targets and
operands are plain modelled numbers: columns another construction builds (rules, lookups,
ties) take no part.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa

from pfcore.rules.model import numeric_values

__all__ = ["Formula", "find_formulas", "formula_value"]

KINDS = ("continuous", "integer")
#: Rows a found formula is fitted and checked on (a seeded sample of the fit rows beyond this).
DETECT_ROWS = 20_000
#: Rows the search over operands runs on (the first of the seeded sample).
SCREEN_ROWS = 3_000
#: Candidate columns: the first this many numeric ones.
MAX_COLUMNS = 64
#: Operands tried per target: its most correlated columns (every subset of 1-3 of them).
TOP_OPERANDS = 6
MAX_OPERANDS = 3
#: Difference's robust scale over the target's, in the form's space (logs for a product).
MAX_SCALE_RATIO = 0.02
#: The robust scale is this quantile of the absolute deviation from the median.
SCALE_QUANTILE = 0.9
#: A formula with one more operand must be this many times tighter to be preferred.
PARSIMONY = 2.0
#: The formula must be defined (every value present, and positive for a product) on at least
#: this share of the rows where the target is present.
MIN_DOMAIN = 0.95
#: A target needs this many distinct values (a code or a count of few values is a class).
MIN_DISTINCT = 20
#: The fit on every candidate operand must be within this many times ``MAX_SCALE_RATIO``
#: (the robust scale of a least-squares fit can exceed a subset's by a little).
PRESCREEN_SLACK = 2.0
#: Rows further than this many robust scales from the fit are left out of the refit.
TRIM_SCALES = 5.0
MIN_ROWS = 50
FORMS = ("product", "linear")


@dataclass(frozen=True)
class Formula:
    """``target`` = the formula of ``operands`` (``form``: "product" or "linear"), ``scale``:
    the difference's robust scale over the target's on the fit rows (how tight it is)."""

    target: str
    operands: list[str]
    form: str
    coefficients: list[float]
    intercept: float
    scale: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "operands": list(self.operands),
            "form": self.form,
            "coefficients": [float(k) for k in self.coefficients],
            "intercept": float(self.intercept),
            "scale": float(self.scale),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Formula:
        return cls(
            d["target"],
            list(d["operands"]),
            d["form"],
            [float(k) for k in d["coefficients"]],
            float(d["intercept"]),
            float(d.get("scale", 0.0)),
        )

    def text(self) -> str:
        """The formula as a user reads it (``z ~ 0.005 * depth * x^0.5 * y^0.5``)."""
        ks = [_shown(k) for k in self.coefficients]
        if self.form == "product":
            parts = [f"{np.exp(self.intercept):.4g}"] + [
                a if k == "1" else f"{a}^{k}" for a, k in zip(self.operands, ks, strict=True)
            ]
            return f"{self.target} ~ " + " * ".join(parts)
        terms = [f"{self.intercept:.4g}"] + [
            a if k == "1" else f"{k} * {a}" for a, k in zip(self.operands, ks, strict=True)
        ]
        return f"{self.target} ~ " + " + ".join(terms)


def _shown(k: float) -> str:
    fr = Fraction(k).limit_denominator(12)
    return str(fr) if abs(float(fr) - k) < 1e-12 else f"{k:.4g}"


def formula_value(
    form: str, coefficients: list[float], intercept: float, operands: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(value, defined): the formula per row (float64), and where it is defined (every
    operand finite, and positive for a product). Undefined rows hold 0."""
    ops = [np.asarray(a, dtype=np.float64) for a in operands]
    n = ops[0].shape[0] if ops else 0
    defined = np.ones(n, dtype=bool)
    for a in ops:
        defined &= np.isfinite(a)
        if form == "product":
            defined &= a > 0
    if form == "product":
        acc = np.full(n, float(intercept))
        for k, a in zip(coefficients, ops, strict=True):
            acc += k * np.log(np.where(defined, a, 1.0))
        value = np.exp(acc)
    else:
        value = np.full(n, float(intercept))
        for k, a in zip(coefficients, ops, strict=True):
            value += k * np.where(defined, a, 0.0)
    return np.where(defined, value, 0.0), defined


def find_formulas(
    table: pa.Table,
    columns: list[Any],
    seed: int = 0,
    skip: set[str] | frozenset[str] = frozenset(),
) -> dict[str, Formula]:
    """Formulas found on ``table`` (target name -> formula); ``skip`` names columns another
    construction builds or reads, which are neither targets nor operands."""
    n = table.num_rows
    if n < MIN_ROWS:
        return {}
    # Seeded row order, so the screening rows (the first ones) are a sample too.
    rows = np.random.default_rng([seed, 0xF0F0]).permutation(n)[:DETECT_ROWS]
    table = table.take(pa.array(rows))
    cols = [c for c in columns if c.kind in KINDS and c.name not in skip][:MAX_COLUMNS]
    values: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for c in cols:
        v, present = numeric_values(table.column(c.name))
        v = v.astype(np.float64)
        if np.unique(v[present]).size >= 2:
            values[c.name] = (v, present)
    if len(values) < 2:
        return {}
    targets = [
        c.name
        for c in cols
        if c.name in values and np.unique(values[c.name][0][values[c.name][1]]).size >= MIN_DISTINCT
    ]
    screen = {k: (v[:SCREEN_ROWS], p[:SCREEN_ROWS]) for k, (v, p) in values.items()}
    found: list[Formula] = []
    for form in FORMS:
        for t in targets:
            best = _best_for(t, form, screen)
            if best is not None:  # refitted and checked on every searched row
                best = _best_for(t, form, values, only=best.operands)
            if best is not None:
                found.append(best)
    # A total or product of its parts first (every coefficient positive: the composite
    # quantity is the target, its parts keep their own laws), then the tightest. A column is
    # the target of one formula, and formulas may chain (a blood count's MCHC from haemoglobin
    # and haematocrit, haematocrit itself from the red cell count and MCV) but never loop: the
    # other arrangements of one relation (x from z, depth and y once z is built from them)
    # would close a loop and are left out.
    out: dict[str, Formula] = {}
    for f in sorted(found, key=lambda f: (min(f.coefficients) < 0, f.scale)):
        if f.target in out or any(_reaches(out, a, f.target) for a in f.operands):
            continue
        out[f.target] = f
    return out


def _reaches(formulas: dict[str, Formula], start: str, goal: str) -> bool:
    """Whether ``start`` is ``goal`` or is built, through formulas, from ``goal``."""
    todo, seen = [start], set()
    while todo:
        c = todo.pop()
        if c == goal:
            return True
        if c not in seen and c in formulas:
            seen.add(c)
            todo.extend(formulas[c].operands)
    return False


def _space(v: np.ndarray, present: np.ndarray, form: str) -> tuple[np.ndarray, np.ndarray]:
    if form == "product":
        ok = present & (v > 0)
        return np.log(np.where(ok, v, 1.0)), ok
    return v, present.copy()


def _robust_scale(x: np.ndarray) -> float:
    """The ``SCALE_QUANTILE`` quantile of the absolute deviation from the median: a formula
    must hold tightly on most rows, not only on the half that equal it (a year built that
    equals the year remodelled on 52% of houses is not a formula of it; ties handle that)."""
    return float(np.quantile(np.abs(x - np.median(x)), SCALE_QUANTILE)) if x.size else 0.0


def _best_for(
    t: str,
    form: str,
    values: dict[str, tuple[np.ndarray, np.ndarray]],
    only: list[str] | None = None,
) -> Formula | None:
    """The tightest formula of ``form`` for ``t`` among subsets of its most correlated
    columns (``only``: these operands), or None when none is within ``MAX_SCALE_RATIO``."""
    y, y_ok = _space(*values[t], form)
    t_present = values[t][1]
    if y_ok.sum() < MIN_ROWS:
        return None
    y_scale = _robust_scale(y[y_ok])
    if y_scale <= 0:
        return None
    cands: list[tuple[float, str]] = []
    spaces: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for a in values if only is None else only:
        if a == t:
            continue
        x, x_ok = _space(*values[a], form)
        both = y_ok & x_ok
        if both.sum() < MIN_ROWS or both.sum() < MIN_DOMAIN * t_present.sum():
            continue
        xa, ya = x[both], y[both]
        if xa.std() == 0:
            continue
        spaces[a] = (x, x_ok)
        cands.append((abs(float(np.corrcoef(_ranks(xa), _ranks(ya))[0, 1])), a))
    top = [a for _, a in sorted(cands, reverse=True)[:TOP_OPERANDS]]
    if only is not None:
        if len(top) < len(only):
            return None
        f = _fit(t, form, list(only), y, y_ok, t_present, spaces, y_scale)
        return f if f is not None and f.scale <= MAX_SCALE_RATIO else None
    # One fit on every candidate first: more operands never fit worse, so a target that this
    # fit leaves loose has no formula among them (most targets stop here: one fit, not 41).
    # (None: too few rows where every one is defined; the subsets are searched then.)
    if not top:
        return None
    every = _fit(t, form, top, y, y_ok, t_present, spaces, y_scale)
    if every is not None and every.scale > PRESCREEN_SLACK * MAX_SCALE_RATIO:
        return None
    best: Formula | None = None
    for k in range(1, MAX_OPERANDS + 1):
        best_k: Formula | None = None
        for subset in itertools.combinations(top, k):
            f = _fit(t, form, list(subset), y, y_ok, t_present, spaces, y_scale)
            if f is not None and (best_k is None or f.scale < best_k.scale):
                best_k = f
        if best_k is not None and (best is None or best_k.scale * PARSIMONY < best.scale):
            best = best_k
    return best if best is not None and best.scale <= MAX_SCALE_RATIO else None


def _ranks(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x, kind="stable"), kind="stable").astype(np.float64)


def _fit(
    t: str,
    form: str,
    ops: list[str],
    y: np.ndarray,
    y_ok: np.ndarray,
    t_present: np.ndarray,
    spaces: dict[str, tuple[np.ndarray, np.ndarray]],
    y_scale: float,
) -> Formula | None:
    """Least squares of ``t`` on ``ops`` in the form's space, refitted twice without the rows
    further than ``TRIM_SCALES`` robust scales; exponents snapped to simple fractions where
    that keeps the fit."""
    ok = y_ok.copy()
    for a in ops:
        ok &= spaces[a][1]
    if ok.sum() < max(MIN_ROWS, MIN_DOMAIN * t_present.sum()):
        return None
    X = np.column_stack([spaces[a][0][ok] for a in ops])
    yy = y[ok]
    keep = np.ones(yy.size, dtype=bool)
    coef = icpt = None
    for _ in range(3):
        A = np.column_stack([X[keep], np.ones(int(keep.sum()))])
        sol, *_ = np.linalg.lstsq(A, yy[keep], rcond=None)
        coef, icpt = sol[:-1], float(sol[-1])
        resid = yy - X @ coef - icpt
        s = _robust_scale(resid)
        if s == 0:
            break
        keep = np.abs(resid - np.median(resid)) <= TRIM_SCALES * s
        if keep.sum() < MIN_ROWS:
            return None
    assert coef is not None and icpt is not None
    coef = [float(k) for k in coef]
    scale = _robust_scale(yy - X @ np.asarray(coef) - icpt) / y_scale
    snapped = [float(Fraction(k).limit_denominator(12)) for k in coef]
    r = yy - X @ np.asarray(snapped)
    s_icpt = float(np.median(r[keep]))
    s_scale = _robust_scale(r - s_icpt) / y_scale
    if all(k != 0 for k in snapped) and s_scale <= max(scale * 1.1, scale + 1e-12):
        coef, icpt, scale = snapped, s_icpt, s_scale
    return Formula(t, list(ops), form, coef, icpt, scale)
