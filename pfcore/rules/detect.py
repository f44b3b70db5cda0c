"""Detect rules on the training rows; keep those that also hold on the held-out rows.

A candidate is searched on a seeded sample of at most ``DETECT_ROWS`` training rows, then must
hold on **every** training row (the transform enforces it exactly, so one exception would make
the encode -> decode round trip wrong) and on at least ``MIN_HOLDOUT_RATE`` of the held-out rows
(a rule that only fits the rows it was found on is chance, not structure).

The search is bounded so wide tables stay fast (each bound is a module constant):

* inequalities and signs: the first ``MAX_PAIR_COLUMNS`` numeric/datetime columns (pairs);
* linear identities: the first ``MAX_IDENTITY_COLUMNS`` numeric columns; every target x
  operand pair is screened by R^2 from one correlation matrix (``SCREEN_ROWS`` rows), and only
  pairs with R^2 ~ 1 get a least-squares fit (survivors are checked on more rows, then all);
  three operands (a total of three parts) among the first ``MAX_TRIPLE_COLUMNS``, for a target
  that has no one- or two-operand identity and that the other columns predict exactly;
* composite keys: pairs among the first ``MAX_KEY_COLUMNS`` discrete columns;
* clock times: HHMM columns (whole numbers 0-2400, minute part < 60, at least
  ``MIN_CLOCK_DISTINCT`` values) x other HHMM columns x numeric columns, for
  minutes(time) == minutes(base) + delta modulo a day;
* calendar timestamps: the first ``MAX_CALENDAR_TARGETS`` timestamp columns x the integer
  columns, for a timestamp that is the local time built from year/month/day/hour/... columns; a
  tz-aware one is tried in UTC, then (when its dates already agree in UTC, so only the clock is
  shifted) in the zones of ``PREFERRED_ZONES`` and then every other IANA zone, each screened on
  ``ZONE_SCREEN_ROWS`` rows;
* missingness: every numeric column against every column's null mask and values whose count
  matches (a hash lookup, linear in the number of columns).

Linear identities are an exact fit, not a list of formulas: least squares on a few rows gives the
coefficients, which are snapped to the nearest fraction with a denominator up to
``MAX_DENOMINATOR`` and kept only if the target then matches on every training row within its
decimals (``declare.tolerance``).
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pfcore.errors import InputError
from pfcore.rules.declare import _fill_map, tolerance
from pfcore.rules.model import (
    CALENDAR_PARTS,
    DATE_PARTS,
    PER_SECOND,
    TIME_PARTS,
    Rule,
    date_part,
    hold_rate,
    numbered_codes,
    numeric_values,
)
from pfcore.schema import is_temporal

__all__ = ["detect_rules", "MIN_HOLDOUT_RATE"]

MIN_HOLDOUT_RATE = 0.999
DETECT_ROWS = 50_000
MAX_PAIR_COLUMNS = 64
MAX_IDENTITY_COLUMNS = 200
MAX_KEY_COLUMNS = 16
#: Inequalities and signs need mass at their boundary (see ``_near_boundary``). Two columns
#: that merely lie apart (values near 1 vs values near 23) are ordered on every one of 50k rows
#: too, but only by chance: their gap thins out like a Gaussian tail towards 0, while a real
#: rule (rooms >= bedrooms, end >= start) has many rows at or near the smallest gap.
NEAR_SHARE_OF_SPREAD = 0.01
MAX_MIN_SHARE_OF_SPREAD = 0.1
MIN_ROWS_NEAR_BOUNDARY = 0.001
#: Identity candidates are screened by R^2 from one correlation matrix on this many rows:
#: exact for every triple of the first ``MAX_IDENTITY_COLUMNS`` numeric columns at O(m^3)
#: arithmetic on numbers, not on rows (100 columns: 160k pairs of operands per target).
SCREEN_ROWS = 2_000
#: Three-operand identities are searched exhaustively (every triple, from the correlation
#: matrix) among this many columns, and only for a target whose least-squares fit on all of them
#: is exact: 60 columns are 34k triples per such target, milliseconds of arithmetic.
MAX_TRIPLE_COLUMNS = 60
#: At most this many exact triples per target go on to the least-squares fit.
MAX_TRIPLES_PER_TARGET = 8
FIT_ROWS = 24
CHECK_ROWS = 2_000
MAX_DENOMINATOR = 1000
#: Fewer training rows than this and "no two rows share it" is no evidence of a key.
MIN_KEY_ROWS = 200
#: A missingness rule needs at least this many special rows.
MIN_SPECIAL_ROWS = 5
#: A value is a candidate sentinel when it is the column's minimum or maximum and at least this
#: share of the rows holds it.
MIN_SENTINEL_SHARE = 0.01
NUMERIC = ("continuous", "integer", "datetime")
#: An implication (``_implications``) must be this unlikely to hold by chance on its trigger
#: rows, were the column's sentinel drawn independently of the trigger.
MAX_IMPLY_CHANCE = 1e-6
#: At most this many trigger columns per implication (each adds at least ``MIN_SPECIAL_ROWS``
#: rows the earlier ones did not have).
MAX_IMPLY_TRIGGERS = 4
#: At most this many trigger masks are compared (those with the most rows): a wide table of
#: many-valued columns would otherwise hold a mask per value (1,024 masks of 50k rows are
#: 200 MB as the float32 matrix the comparison multiplies).
MAX_IMPLY_MASKS = 1024
#: An HHMM clock column has at least this many distinct values (minute and hour columns, whose
#: values also pass the format test, have fewer).
MIN_CLOCK_DISTINCT = 100
MAX_CALENDAR_TARGETS = 8
MAX_CALENDAR_PARTS = 64
#: Zones tried first, in this order, so a timestamp stored in UTC is read in the zone its users
#: would name (many IANA zones share today's rules: America/Detroit agrees with
#: America/New_York on every date since 1976).
PREFERRED_ZONES = (
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
    "America/Sao_Paulo", "America/Mexico_City", "America/Toronto", "Europe/London",
    "Europe/Paris", "Europe/Berlin", "Europe/Madrid", "Europe/Rome", "Europe/Amsterdam",
    "Europe/Moscow", "Asia/Tokyo", "Asia/Shanghai", "Asia/Kolkata", "Asia/Singapore",
    "Asia/Dubai", "Asia/Seoul", "Australia/Sydney", "Africa/Johannesburg", "Pacific/Auckland",
)  # fmt: skip
ZONE_SCREEN_ROWS = 64
#: Share of rows whose date parts must already agree in UTC before other zones are searched.
MIN_DATE_AGREEMENT = 0.8


def detect_rules(
    train: pa.Table,
    holdout: pa.Table | None,
    schema: Any,
    *,
    seed: int = 0,
    ignore: tuple[str, ...] | list[str] = (),
) -> list[Rule]:
    """Detected rules, each with its training and held-out hold rate."""
    n = train.num_rows
    if n < 10:
        return []
    rows = np.arange(n)
    if n > DETECT_ROWS:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x21E5]))
        rows = np.sort(rng.choice(n, DETECT_ROWS, replace=False))
    sample = train.take(pa.array(rows)) if n > DETECT_ROWS else train
    cols = [c for c in schema.columns if c.name in train.column_names]
    found: list[Rule] = []
    found += _signs(sample, cols)
    found += _inequalities(sample, cols)
    found += _identities(sample, cols)
    found += _clocks(sample, cols)
    found += _calendars(sample, cols)
    missing = _missing(sample, cols)
    found += missing + _implications(sample, cols, missing)
    found += _keys(train, cols)
    fixed = _fixed(train, cols, seed)
    found += fixed
    fixed_targets = {r.columns[1] for r in fixed}
    built = {(r.columns[0], c) for r in found if r.kind == "calendar" for c in r.columns[1:]}
    found += [  # a part column a calendar rule builds its timestamp from says nothing new
        r
        for r in _date_parts(train, cols, seed, fixed_targets)
        if (r.columns[0], r.columns[1]) not in built
    ]
    found += _pinned(train, cols, seed, fixed_targets)
    out = []
    skip = set(ignore)
    for r in found:
        if r.name in skip:
            continue
        if r.kind != "fixed":
            r.train_hold_rate = hold_rate(r, train)
            if r.train_hold_rate != 1.0:
                continue
        else:
            r.train_hold_rate = 1.0
        r.holdout_hold_rate = hold_rate(r, holdout) if holdout is not None else None
        if r.holdout_hold_rate is not None and r.holdout_hold_rate < MIN_HOLDOUT_RATE:
            continue
        out.append(r)
    return out


def _signs(sample: pa.Table, cols: list[Any]) -> list[Rule]:
    out = []
    for c in cols:
        if c.kind not in ("continuous", "integer"):
            continue
        v, present = numeric_values(sample.column(c.name))
        v = v[present]
        if v.size < 2 or v.min() == v.max():
            continue
        lo, hi = v.min(), v.max()
        if not _near_boundary(v if lo >= 0 else -v):
            continue  # e.g. a column of values near 30: "> 0" is true but says nothing
        if lo >= 0:
            out.append(Rule("sign", [c.name], {"min": 0.0, "min_strict": bool(lo > 0),
                                               "max": None}))  # fmt: skip
        elif hi <= 0:
            out.append(Rule("sign", [c.name], {"max": 0.0, "max_strict": bool(hi < 0),
                                               "min": None}))  # fmt: skip
    return out


def _inequalities(sample: pa.Table, cols: list[Any]) -> list[Rule]:
    """Orders between two numeric (or two datetime) columns, and between two numbered codes
    (``numbered_codes``); each family of candidates has its own ``MAX_PAIR_COLUMNS``, so codes
    never push a numeric column out of the search."""
    out = _ordered_pairs(sample, [c for c in cols if c.kind in NUMERIC][:MAX_PAIR_COLUMNS])
    return out + _ordered_pairs(sample, [c for c in cols if numbered_codes(c)][:MAX_PAIR_COLUMNS])


def _ordered_pairs(sample: pa.Table, cand: list[Any]) -> list[Rule]:
    vals = {c.name: numeric_values(sample.column(c.name)) for c in cand}
    out = []
    for a, b in itertools.permutations(cand, 2):
        if (a.kind == "datetime") != (b.kind == "datetime"):
            continue
        if a.kind == "datetime" and a.arrow_type != b.arrow_type:
            continue
        va, pa_ = vals[a.name]
        vb, pb = vals[b.name]
        both = pa_ & pb
        if both.sum() < 2:
            continue
        x, y = va[both], vb[both]
        if not np.all(x <= y) or np.all(x == y):
            continue
        if x.max() <= y.min():
            continue  # implied by the two columns' ranges: nothing to enforce between them
        if not _near_boundary(y - x):
            continue  # no mass at the boundary: ordered by chance, not by a rule
        out.append(Rule("inequality", [a.name, b.name], {"strict": bool(np.all(x < y))}))
    return out


def _near_boundary(gap: np.ndarray) -> bool:
    """Smallest gap (>= 0) within ``MAX_MIN_SHARE_OF_SPREAD`` of the gap's spread from 0, and at
    least ``MIN_ROWS_NEAR_BOUNDARY`` of the rows within ``NEAR_SHARE_OF_SPREAD`` of it."""
    lo, hi = float(gap.min()), float(gap.max())
    spread = hi - lo
    if spread <= 0 or lo > MAX_MIN_SHARE_OF_SPREAD * spread:
        return False
    near = float((gap <= lo + NEAR_SHARE_OF_SPREAD * spread).mean())
    return near >= MIN_ROWS_NEAR_BOUNDARY


def _identities(sample: pa.Table, cols: list[Any]) -> list[Rule]:
    """c = k0 + sum k_i a_i for one to three operands a_i, by exact fit (see module
    docstring)."""
    cand = []
    for c in cols:
        integer_code = c.kind == "categorical" and pa.types.is_integer(c.type)
        if c.kind not in NUMERIC and not integer_code:
            continue
        v, present = numeric_values(sample.column(c.name))
        n_distinct = np.unique(v[present][:SCREEN_ROWS]).size
        if n_distinct > 2:
            pre = v[:CHECK_ROWS].astype(np.float64), present[:CHECK_ROWS]
            cand.append((n_distinct, c, (v, present, *pre)))
    cand = cand[:MAX_IDENTITY_COLUMNS]
    if len(cand) < 2:
        return []
    order = {c.name: i for i, c in enumerate(cols)}
    candidates: list[tuple[tuple[Any, ...], Rule]] = []
    pair_sets: set[frozenset[str]] = set()
    two_sets: set[frozenset[str]] = set()
    for t_i, ops_i in _screen(cand):
        t_nd, t_col, t_vals = cand[t_i]
        if t_col.kind not in NUMERIC:
            continue  # an integer code is an operand, never computed
        ops = sorted((cand[j] for j in ops_i), key=lambda o: order[o[1].name])
        names = frozenset([t_col.name, *[o[1].name for o in ops]])
        smaller = {1: set(), 2: pair_sets, 3: pair_sets | two_sets}[len(ops)]
        if any(p <= names for p in smaller):
            continue  # contains a smaller identity: the fit is not unique
        dated = [o[1] for o in ops if o[1].kind == "datetime"]
        if dated and t_col.kind != "datetime" and len(dated) != 2:
            continue  # a number from datetimes: only a duration, one minus the other
        rule = _fit(t_col, t_vals, [(o[1], o[2]) for o in ops])
        if rule is None or (dated and t_col.kind != "datetime" and not _duration(rule, ops)):
            continue
        ks = rule.params["coefficients"]
        ints = all(float(k).is_integer() for k in ks)
        total = all(k > 0 for k in ks)
        candidates.append(((not total, -t_nd, not ints, order[t_col.name]), rule))
        if len(ops) == 1:
            pair_sets.add(names)
        elif len(ops) == 2:
            two_sets.add(names)
    # One rule per set of columns: a total of its parts (every coefficient positive, so the
    # parts stay modelled and keep their own signs), then the target with the most distinct
    # values (a clock time from hour and minute), then integer coefficients.
    best: dict[frozenset[str], tuple[tuple[Any, ...], Rule]] = {}
    for key, rule in candidates:
        s = frozenset(rule.columns)
        if s not in best or key < best[s][0]:
            best[s] = (key, rule)
    return [r for _, r in sorted(best.values(), key=lambda t: t[0])]


def _screen(cand: list[tuple]) -> list[tuple[int, tuple[int, ...]]]:
    """(target, operands) whose R^2 on the screening rows is 1 up to the target's rounding:
    first single operands, then pairs. Rows with a missing value in any candidate column are
    left out; the most-missing columns are dropped from the screen until 50 rows remain."""
    m = len(cand)
    present = np.stack([c[2][3][:SCREEN_ROWS] for c in cand])
    keep = np.ones(m, dtype=bool)
    while present[keep].all(axis=0).sum() < 50 and keep.sum() > 2:
        nulls = np.where(keep, (~present).sum(axis=1), -1)
        keep[int(np.argmax(nulls))] = False
    rows = present[keep].all(axis=0)
    if rows.sum() < 10:
        return []
    idx = np.flatnonzero(keep)
    X = np.stack([cand[i][2][2][:SCREEN_ROWS][rows] for i in idx])
    X = X - X.mean(axis=1, keepdims=True)
    var = (X * X).mean(axis=1)
    ok = var > 0
    idx, X, var = idx[ok], X[ok], var[ok]
    k = idx.size
    if k < 2:
        return []
    R = np.clip((X @ X.T) / X.shape[1] / np.sqrt(np.outer(var, var)), -1.0, 1.0)
    # Residual variance allowed: the target's rounding (uniform within +-tol) plus float noise.
    tol = np.array([tolerance(cand[i][1]) for i in idx])
    allowed = (tol**2 / 3.0 * 1.5 + 1e-10 * var) / var  # as a share of var: 1 - R^2 limit
    out: list[tuple[int, tuple[int, ...]]] = []
    one = (1.0 - R**2) <= allowed[:, None]
    np.fill_diagonal(one, False)
    for t, a in zip(*np.nonzero(one), strict=True):
        out.append((int(idx[t]), (int(idx[a]),)))
    for t in range(k):
        r_t = R[t]
        # R^2 of t on (a, b) for every pair a < b, from the correlation matrix alone.
        num = r_t[:, None] ** 2 + r_t[None, :] ** 2 - 2 * r_t[:, None] * r_t[None, :] * R
        den = 1.0 - R**2
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(den > 1e-12, num / den, 0.0)
        hit = (1.0 - r2) <= allowed[t]
        hit[t, :] = hit[:, t] = False
        hit = np.triu(hit, 1) & ~one[t][:, None] & ~one[t][None, :]
        for a, b in zip(*np.nonzero(hit), strict=True):
            out.append((int(idx[t]), (int(idx[a]), int(idx[b]))))
    found = {t for t, _ in out} | {a for _, ops in out for a in ops}
    out += _screen_triples(X, R, allowed, found, idx)
    return out


def _screen_triples(
    X: np.ndarray, R: np.ndarray, allowed: np.ndarray, found: set[int], idx: np.ndarray
) -> list[tuple[int, tuple[int, ...]]]:
    """(target, three operands) whose R^2 is 1 up to the target's rounding, for targets that
    the other ``MAX_TRIPLE_COLUMNS`` columns predict exactly (one least-squares fit each).
    Columns in ``found`` (indices into the candidates: every column of a one- or two-operand
    screen hit, confirmed by the exact fit or not) are neither targets nor operands."""
    k = min(idx.size, MAX_TRIPLE_COLUMNS)
    if k < 4 or X.shape[1] < 2 * k + 10:
        return []  # too few rows: every column would be in the span of the others
    out: list[tuple[int, tuple[int, ...]]] = []
    triples = np.array(list(itertools.combinations(range(k), 3)))
    eye = np.eye(3)
    for t in range(k):
        if int(idx[t]) in found:
            continue
        others = np.array([j for j in range(k) if j != t and int(idx[j]) not in found])
        if others.size < 3:
            continue
        coef, *_ = np.linalg.lstsq(X[others].T, X[t], rcond=None)
        resid = X[t] - X[others].T @ coef
        if (resid @ resid) / X.shape[1] / max((X[t] @ X[t]) / X.shape[1], 1e-300) > allowed[t]:
            continue
        tri = triples[np.isin(triples, others).all(axis=1)]
        S = R[tri[:, :, None], tri[:, None, :]] + 1e-12 * eye
        r = R[t, tri]
        with np.errstate(all="ignore"):
            det = np.linalg.det(S)
            ok = np.abs(det) > 1e-9
            sol = np.linalg.solve(S[ok], r[ok][:, :, None])[:, :, 0]
        r2 = (r[ok] * sol).sum(axis=1)
        hits = np.flatnonzero((1.0 - r2) <= allowed[t])
        best = hits[np.argsort(1.0 - r2[hits])][:MAX_TRIPLES_PER_TARGET]
        for a, b, c in tri[ok][best]:
            out.append((int(idx[t]), (int(idx[a]), int(idx[b]), int(idx[c]))))
    return out


def _fit(t_col: Any, t: tuple, ops: list[tuple[Any, tuple]]) -> Rule | None:
    """Least squares on ``FIT_ROWS`` rows; most candidates fail right there. Survivors get
    their coefficients snapped to fractions and must match within tolerance on the first
    ``CHECK_ROWS`` rows, then on all of them. ``t`` and each operand carry (values, present)
    for all sample rows and a float64 prefix of ``CHECK_ROWS``."""
    t_v, t_p, t_pre, t_ppre = t
    present = t_ppre.copy()
    for _, (_, _, _, p) in ops:
        present &= p
    idx = np.flatnonzero(present)
    if idx.size < len(ops) + 2:
        return None
    tol = tolerance(t_col)
    # A part that is mostly zero (low-quality floor area: 0 on 98% of rows) leaves the first
    # rows rank-deficient; then the fit takes every checked row.
    for fit in (idx[:FIT_ROWS], idx):
        y = t_pre[fit]
        xs = [o[1][2][fit] for o in ops]
        # Centre each column so datetimes (1e18 ns) do not swamp the least-squares fit.
        ym = y.mean()
        xm = [x.mean() for x in xs]
        A = np.column_stack([x - mu for x, mu in zip(xs, xm, strict=True)] + [np.ones(fit.size)])
        # ... and scale each to unit norm: a duration's datetimes (1e14 microseconds apart)
        # beside the intercept's ones would read as rank-deficient.
        norm = np.linalg.norm(A, axis=0)
        norm[norm == 0] = 1.0
        coef, _, rank, _ = np.linalg.lstsq(A / norm, y - ym, rcond=None)
        coef = coef / norm
        if rank == A.shape[1] or fit.size == idx.size:
            break
    if rank < A.shape[1]:
        return None
    scale = max(float(np.abs(y).max()), 1.0)
    if np.abs(A @ coef - (y - ym)).max() > 10 * tol + 1e-7 * scale:
        return None  # not even approximately linear on the fit rows
    per_day = [_per_day(o[0], t_col) for o in ops]
    ks = [_snap(k * u) / u for k, u in zip(coef[:-1], per_day, strict=True)]
    if any(k == 0 for k in ks):
        return None
    k0 = _snap_intercept(ym - sum(k * mu for k, mu in zip(ks, xm, strict=True)) + coef[-1], tol)
    names = [o[0].name for o in ops]
    params = {"coefficients": ks, "intercept": k0, "tolerance": tol}
    from pfcore.rules.model import linear_value

    for vals, keep in (
        ([o[1][2][idx] for o in ops], t_pre[idx]),
        ([o[1][0] for o in ops], t_v),
    ):
        f = linear_value(ks, k0, vals)
        ok = np.abs(np.asarray(keep).astype(f.dtype) - f) <= tol
        if keep is t_v:
            full = t_p.copy()
            for o in ops:
                full &= o[1][1]
            ok |= ~full
        if not np.all(ok):
            return None
    return Rule("identity", [t_col.name, *names], params)


def _duration(rule: Rule, ops: list[tuple]) -> bool:
    """A number computed from two datetimes reads only their difference (an age in years from
    a founding and a funding date): their coefficients cancel."""
    ks = [
        k for k, o in zip(rule.params["coefficients"], ops, strict=True) if o[1].kind == "datetime"
    ]
    return len(ks) == 2 and abs(ks[0] + ks[1]) <= 1e-9 * abs(ks[0])


def _per_day(col: Any, target: Any) -> float:
    """Units of ``col`` per day when it is a datetime read into a number (a duration's
    coefficient, 1 / 365 of a day in years, is snapped in days), else 1."""
    t = col.type
    if col.kind != "datetime" or target.kind == "datetime":
        return 1.0
    if pa.types.is_date32(t) or pa.types.is_date64(t):
        return 1.0 if pa.types.is_date32(t) else 86_400_000.0
    return 86_400.0 * PER_SECOND[t.unit]


def _snap(k: float) -> float:
    """The nearest fraction with a small denominator (exact coefficients: 2, 0.5, 1/3)."""
    if not np.isfinite(k):
        return 0.0
    fr = Fraction(float(k)).limit_denominator(MAX_DENOMINATOR)
    return float(fr) if abs(float(fr) - k) <= 1e-6 * max(1.0, abs(k)) else float(k)


def _snap_intercept(k0: float, tol: float) -> float:
    r = round(k0)
    if abs(r - k0) <= max(tol, 1e-6 * max(1.0, abs(k0))):
        return float(r)
    return float(_snap(k0))


def _clocks(sample: pa.Table, cols: list[Any]) -> list[Rule]:
    """HHMM clock columns, and clock arithmetic between two of them and a minutes column."""
    from pfcore.rules.model import clock_minutes, is_clock

    numeric = {}
    for c in cols:
        if c.kind in ("continuous", "integer"):
            v, p = numeric_values(sample.column(c.name))
            if p.sum() >= 2 and np.all(v[p] == np.round(v[p])):
                numeric[c.name] = (v, p)
    clocks = {}
    for name, (v, p) in numeric.items():
        x = v[p]
        if x.min() < 0 or x.max() > 2400 or x.max() < 100 or np.unique(x).size < MIN_CLOCK_DISTINCT:
            continue
        midnight = 2400 if (x == 2400).any() or not (x == 0).any() else 0
        if np.all(is_clock(x, midnight)):
            clocks[name] = midnight
    out = []
    for t, midnight in clocks.items():
        out.append(Rule("clock", [t], {"midnight": midnight}))
        vt, pt = numeric[t]
        for base in clocks:
            if base == t:
                continue
            vb, pb = numeric[base]
            for delta, (vd, pd_) in numeric.items():
                if delta in clocks:
                    continue
                both = pt & pb & pd_
                if both.sum() < 2 or np.unique(vd[both]).size < 2:
                    continue
                m = clock_minutes(vb[both]) + vd[both] - clock_minutes(vt[both])
                if np.all(np.mod(m, 1440) == 0):
                    out.append(Rule("clock", [t, base, delta], {"midnight": midnight}))
                    break
            else:
                continue
            break
    return out


def _special_masks(arr: pa.ChunkedArray, col: Any, n: int) -> list[tuple[dict, np.ndarray]]:
    """Candidate 'special' states of a numeric column: null, or a sentinel at its min / max."""
    v, present = numeric_values(arr)
    out = []
    nulls = int((~present).sum())
    if MIN_SPECIAL_ROWS <= nulls < n:
        out.append(({"null": True}, ~present))
    if nulls == 0 and n:
        vals, counts = np.unique(v, return_counts=True)
        if vals.size > 2:
            for j in (0, vals.size - 1):
                if counts[j] >= max(MIN_SPECIAL_ROWS, MIN_SENTINEL_SHARE * n):
                    value = vals[j].item()
                    if is_temporal(col.type):
                        continue
                    out.append(({"sentinel": value}, v == vals[j]))
    return out


class _TriggerStates(NamedTuple):
    """The states a trigger column may be in: null, or one of its values (only discrete
    columns of at most 1,000 values have value states)."""

    null: np.ndarray  # (n,) bool
    values: list  # the values, in first-seen order
    codes: np.ndarray  # (n,) index into ``values``, -1 for null
    counts: np.ndarray  # rows in each state: null first, then each value


def _trigger_states(arr: pa.ChunkedArray, col: Any) -> _TriggerStates:
    arr = arr.combine_chunks()
    null = np.asarray(arr.is_null(), dtype=bool)
    if pa.types.is_floating(arr.type):
        null |= np.asarray(pc.is_nan(arr).fill_null(False), dtype=bool)
    values: list = []
    codes = np.full(len(arr), -1)
    if col.kind in ("categorical", "boolean", "integer"):
        enc = pc.dictionary_encode(arr)
        if len(enc.dictionary) <= 1000:
            values, codes = enc.dictionary.to_pylist(), np.asarray(enc.indices.fill_null(-1))
    per_value = np.bincount(codes[codes >= 0], minlength=len(values))
    return _TriggerStates(null, values, codes, np.concatenate([[null.sum()], per_value]))


def _trigger_masks(
    states: _TriggerStates, counts_wanted: set[int] | None, min_rows: int = 0
) -> list[tuple[dict, np.ndarray, int]]:
    """(state, mask, rows) of a column's null state and its values (``counts_wanted``: only
    those with one of these row counts; None: every one with at least ``max(min_rows,
    MIN_SPECIAL_ROWS)`` rows). Values are compared as integer codes: a string compare per value
    took 22 s on 60 columns of 800 values and 50k rows."""
    floor = max(min_rows, MIN_SPECIAL_ROWS)

    def wanted(count: int) -> bool:
        return count >= floor if counts_wanted is None else count in counts_wanted

    out = []
    rows = [int(k) for k in states.counts]
    if wanted(rows[0]):
        out.append(({"null": True}, states.null, rows[0]))
    for k, value in enumerate(states.values):  # first-seen order
        if wanted(rows[k + 1]):
            out.append(({"equals": value}, states.codes == k, rows[k + 1]))
    return out


def _missing(sample: pa.Table, cols: list[Any]) -> list[Rule]:
    """A is null / a sentinel exactly when B is null / equals a value. Columns with identical
    masks are linked to the first of them only (a star, not every pair)."""
    n = sample.num_rows
    specials = []
    for c in cols:
        if c.kind in NUMERIC:
            for spec, mask in _special_masks(sample.column(c.name), c, n):
                specials.append((c, spec, mask))
    if not specials:
        return []
    wanted = {int(m.sum()) for _, _, m in specials}
    triggers = []
    for c in cols:
        if c.kind in ("constant", "id", "text"):
            continue
        for when, mask, _rows in _trigger_masks(_trigger_states(sample.column(c.name), c), wanted):
            triggers.append((c, when, mask))
    order = {c.name: i for i, c in enumerate(cols)}
    out = []
    linked: set[str] = set()
    for a, spec, ma in specials:
        if a.name in linked:
            continue
        matches = [
            (b, when) for b, when, mb in triggers
            if b.name != a.name and order[b.name] < order[a.name] and np.array_equal(ma, mb)
        ]  # fmt: skip
        if not matches:
            continue
        b, when = matches[0]
        out.append(Rule("missing", [a.name, b.name], {"special": spec, "when": when}))
        linked.add(a.name)
    return out


def _implications(sample: pa.Table, cols: list[Any], exact: list[Rule]) -> list[Rule]:
    """A is its sentinel (its minimum or maximum) on every row where B is null or equals a
    value, and on other rows too (so not ``_missing``'s "exactly when"): Ames house prices'
    finished basement area is 0 on every house without a basement, and on unfinished basements.
    A model that only learns it nearly holds it (23% of sampled houses without a basement had a
    finished area). One rule per column A, its triggers "or"-ed (largest first, one per
    column, each adding rows); A's sentinel share to the power of the trigger's rows must be
    under ``MAX_IMPLY_CHANCE``, so a small group that holds a common value by chance is not
    taken for a rule."""
    n = sample.num_rows
    specials = [
        (c, spec, mask)
        for c in cols
        if c.kind in NUMERIC and c.name not in {r.columns[0] for r in exact}
        for spec, mask in _special_masks(sample.column(c.name), c, n)
        if "sentinel" in spec
    ]
    if not specials:
        return []
    states = [
        (c, _trigger_states(sample.column(c.name), c))
        for c in cols
        if c.kind not in ("constant", "id", "text")
    ]
    # Masks only for the states with the most rows (the strongest evidence), counted first: one
    # mask per value of every column held 0.5 GB on 60 columns of 800 values and 50k rows.
    counts = np.sort(np.concatenate([st.counts for _, st in states] or [[]]))[::-1]
    floor = int(counts[MAX_IMPLY_MASKS - 1]) if len(counts) > MAX_IMPLY_MASKS else 0
    triggers: list[tuple[Any, dict, np.ndarray, int]] = []  # (column, state, mask, rows)
    for c, st in states:
        triggers += [(c, w, m, rows) for w, m, rows in _trigger_masks(st, None, min_rows=floor)]
    if len(triggers) > MAX_IMPLY_MASKS:  # ties at the floor: the first columns' kept
        triggers.sort(key=lambda t: -t[3])
        del triggers[MAX_IMPLY_MASKS:]
    if not triggers:
        return []
    t_mat = np.stack([t[2] for t in triggers], axis=1).astype(np.float32)
    s_mat = np.stack([m for _, _, m in specials], axis=1).astype(np.float32)
    both = t_mat.T @ s_mat  # (triggers, specials): rows with both (exact below 2^24 rows)
    t_rows = np.array([t[3] for t in triggers])
    s_rows = s_mat.sum(axis=0)
    max_log_chance = np.log(MAX_IMPLY_CHANCE)
    order = {c.name: i for i, c in enumerate(cols)}
    out = []
    for j, (a, spec, _ma) in enumerate(specials):
        log_share = float(np.log(s_rows[j] / n))
        ok = [
            i
            for i, t in enumerate(triggers)
            if order[t[0].name] < order[a.name]
            and both[i, j] == t_rows[i]
            and t_rows[i] < s_rows[j]  # equal masks are "exactly when"
            and t_rows[i] * log_share <= max_log_chance
        ]
        chosen: list[int] = []
        covered = np.zeros(n, dtype=bool)
        for i in sorted(ok, key=lambda i: -t_rows[i]):  # most rows first
            mask = triggers[i][2]
            fresh = int((mask & ~covered).sum())
            if fresh >= MIN_SPECIAL_ROWS and triggers[i][0].name not in {
                triggers[k][0].name for k in chosen
            }:
                chosen.append(i)
                covered |= mask
            if len(chosen) == MAX_IMPLY_TRIGGERS:
                break
        if chosen:
            params = {"special": spec, "when": [triggers[i][1] for i in chosen], "implies": True}
            out.append(Rule("missing", [a.name, *(triggers[i][0].name for i in chosen)], params))
    return out


def _keys(train: pa.Table, cols: list[Any]) -> list[Rule]:
    n = train.num_rows
    if n < MIN_KEY_ROWS:
        return []
    out = []
    discrete = [c for c in cols if c.kind in ("categorical", "integer", "datetime", "id")]
    single = set()
    for c in discrete:
        arr = train.column(c.name)
        if arr.null_count == 0 and pc.count_distinct(arr).as_py() == n:
            out.append(Rule("key", [c.name], {}))
            single.add(c.name)
    cand = [c for c in discrete if c.name not in single and c.kind != "id"][:MAX_KEY_COLUMNS]
    codes = {}
    for c in cand:
        enc = pc.dictionary_encode(train.column(c.name).combine_chunks())
        codes[c.name] = (
            np.asarray(enc.indices.fill_null(len(enc.dictionary))),
            len(enc.dictionary) + 1,
        )  # noqa: E501
    for a, b in itertools.combinations(cand, 2):
        ca, na = codes[a.name]
        cb, nb = codes[b.name]
        if na * nb < n:
            continue
        if np.unique(ca.astype(np.int64) * nb + cb).size == n:
            out.append(Rule("key", [a.name, b.name], {}))
    return out


def _fixed(train: pa.Table, cols: list[Any], seed: int) -> list[Rule]:
    """One column determines another: the links ``transforms.derived`` finds (it checks that
    the map generalises across halves of the rows), as rules with their maps."""
    from pfcore.transforms.derived import find_derived

    out = []
    for target, tr in find_derived(train, cols, seed=seed).items():
        rule = Rule("fixed", [tr.source, target], {})
        _fill_map(rule, train)
        out.append(rule)
    return out


def _date_parts(train: pa.Table, cols: list[Any], seed: int, skip: set[str]) -> list[Rule]:
    """A discrete column that a calendar part of a date determines (a month, a year offset, a
    weekday or a season kept beside the date): the coarsest part (``DATE_PARTS`` order) that is
    a function on every row and whose map, fitted on half of the rows, predicts the other half
    (``transforms.derived.link_coverage``, the test a discrete source passes)."""
    from pfcore.transforms.derived import (
        MIN_ROWS_PER_SOURCE_VALUE,
        _codes,
        detection_sample,
        link_coverage,
    )

    sample = detection_sample(train, seed)
    m = sample.num_rows
    targets = [c for c in cols if c.kind in ("categorical", "boolean", "integer")]
    target_codes = {c.name: _codes(sample.column(c.name)) for c in targets if c.name not in skip}
    out = []
    for a in cols:
        if a.kind != "datetime" or not is_temporal(sample.column(a.name).type):
            continue
        is_date = pa.types.is_date(sample.column(a.name).type)
        linked: set[str] = set()
        for part in DATE_PARTS:
            if is_date and part in TIME_PARTS:
                continue
            ca, na = _codes(date_part(sample.column(a.name), part))
            if na < 2 or na * MIN_ROWS_PER_SOURCE_VALUE > m:
                continue
            for b, (cb, nb) in target_codes.items():
                if b in linked or not 2 <= nb <= na or link_coverage(ca, cb, nb) is None:
                    continue
                rule = Rule("fixed", [a.name, b], {"part": part})
                try:
                    _fill_map(rule, train)  # every training row, not the detection sample
                except InputError:
                    continue
                linked.add(b)
                out.append(rule)
    return out


def _pinned(train: pa.Table, cols: list[Any], seed: int, skip: set[str]) -> list[Rule]:
    """Numbers a discrete key pins to the few values it held (``rules.pinned``)."""
    from pfcore.rules.pinned import find_pinned, pinned_rule

    return [pinned_rule(train, t, keys) for t, keys in find_pinned(train, cols, seed, skip).items()]


def _local_fields(t: np.ndarray, unit: str, zone: str | None) -> dict[str, np.ndarray] | None:
    """Calendar fields of timestamps in ``zone`` (None: naive), or None with sub-second parts."""
    import pandas as pd

    per = PER_SECOND[unit]
    if np.any(np.mod(t, per)):
        return None
    idx = pd.DatetimeIndex((t // per).astype("datetime64[s]"))
    if zone is not None:
        idx = idx.tz_localize("UTC").tz_convert(zone)
    return {f: np.asarray(getattr(idx, f), dtype=np.int64) for f in CALENDAR_PARTS}


def _match_parts(
    local: dict[str, np.ndarray], ints: dict[str, np.ndarray]
) -> tuple[list[str], list[str], dict[str, int]] | None:
    """(fields, columns, constants) when every varying field equals an integer column."""
    parts, names, constants = [], [], {}
    for f in CALENDAR_PARTS:
        col = next((c for c, v in ints.items() if np.array_equal(v, local[f])), None)
        if col is not None and col not in names:
            parts.append(f)
            names.append(col)
        elif np.all(local[f] == local[f][0]):
            constants[f] = int(local[f][0])
        else:
            return None
    return (parts, names, constants) if len(parts) >= 2 else None


def _date_agreement(local: dict[str, np.ndarray], ints: dict[str, np.ndarray]) -> float:
    """Smallest share of rows on which year, month and day each equal their best column."""
    shares = [max((float(np.mean(v == local[f])) for v in ints.values()), default=0.0)
              for f in ("year", "month", "day")]  # fmt: skip
    return min(shares)


def _calendars(sample: pa.Table, cols: list[Any]) -> list[Rule]:
    """Timestamps that are the local time of their year/month/day/... columns."""
    from zoneinfo import available_timezones

    ints_all = [c.name for c in cols if pa.types.is_integer(sample.column(c.name).type)]
    ints_all = ints_all[:MAX_CALENDAR_PARTS]
    targets = [c.name for c in cols if pa.types.is_timestamp(sample.column(c.name).type)]
    out = []
    for name in targets[:MAX_CALENDAR_TARGETS]:
        typ = sample.column(name).type
        t, rows = numeric_values(sample.column(name))
        ints = {}
        for c in ints_all:
            v, present = numeric_values(sample.column(c))
            if present[rows].all():
                ints[c] = v[rows]
        t = t[rows]
        if t.size < 10 or len(ints) < 2:
            continue
        zones: list[str | None] = [None] if typ.tz is None else ["UTC"]
        if typ.tz not in (None, "UTC", "+00:00"):
            zones.append(typ.tz)
        found = None
        for zone in zones:
            local = _local_fields(t, typ.unit, zone)
            if local is None:
                break
            match = _match_parts(local, ints)
            if match is not None:
                found = (zone, match)
                break
        else:
            utc = _local_fields(t, typ.unit, "UTC") if typ.tz is not None else None
            if utc is not None and _date_agreement(utc, ints) >= MIN_DATE_AGREEMENT:
                found = _search_zones(t, typ.unit, ints, sorted(available_timezones()))
        if not found:
            continue
        zone, (parts, names, constants) = found
        params = {"parts": parts, "constants": constants,
                  "timezone": None if typ.tz is None else zone}  # fmt: skip
        out.append(Rule("calendar", [name, *names], params))
    return out


def _search_zones(
    t: np.ndarray, unit: str, ints: dict[str, np.ndarray], every: list[str]
) -> tuple[str, tuple[list[str], list[str], dict[str, int]]] | None:
    """The first zone (preferred ones first) in which the timestamps read as their parts."""
    head = slice(0, ZONE_SCREEN_ROWS)
    few = {c: v[head] for c, v in ints.items()}
    for zone in [*PREFERRED_ZONES, *(z for z in every if z not in PREFERRED_ZONES)]:
        try:
            local = _local_fields(t[head], unit, zone)
        except Exception:  # a zone this machine's tz database lacks
            continue
        if local is None or _match_parts(local, few) is None:
            continue
        match = _match_parts(_local_fields(t, unit, zone), ints)
        if match is not None:
            return zone, match
    return None
