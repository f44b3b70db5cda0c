"""Integer columns whose values are labels of a category: which ones, and which category.

Why: some integer columns are not quantities but names written as numbers, and which names
occur depends on a categorical column. A flight number belongs to one airline and route
(nyc_flights: airline AS flies 6 flight numbers, HA one; 2,711 numbers in 20k rows), a store
number to a region, a product code to a department. The model draws such a column like any
number: a smooth law given the row's classes, so it puts airline AS's flights on numbers AS
never flies (43% of drawn rows held an airline/flight pair the training rows hold, against 95%
of held-out real rows) and a classifier sees it (the pair carrier~flight was the worst of
nyc_flights, pair AUC 0.62). The model keeps the number's place among the others (the order of
its draws given the classes); what it lacks is the exact set of values each class holds and
their frequencies. So for such a column the hybrid family maps its drawn numbers, class by
class, onto the training rows' values of that class (``models.class_maps``), and this module
decides which columns get that and which classes (the *key*, one to three categorical columns)
they are mapped by.

A column is a label of a key when, on held-out rows (a seeded half of the training rows, the
other half counted):

1. knowing the row's key class predicts the exact value better than the column's own
   frequencies, by at least ``MIN_GAIN_NATS`` per row (``P(v | s)`` is the class's counts
   backed off to the column's, ``ALPHA`` rows of prior weight, as ``pooled_parent`` does); and
2. the class's counts of the *exact* value predict it better than the same counts smoothed over
   the neighbouring values (``SMOOTH_STEPS`` distinct-value steps either side), by at least
   ``MIN_LABEL_NATS`` per row (the exact value's probability 1.65 times the smoothed one). A
   quantity (minutes in the air, rooms in a district) has counts that vary smoothly with the
   value, so smoothing costs little or helps; a label's neighbour is another label with an
   unrelated count (flight 5 and flight 6 of different airlines).

The key starts with the categorical column that gains most and takes up to three more while
each adds ``MIN_GAIN_NATS`` (the held-out rows judge it, so a key whose classes split the rows
too finely to count loses to a shorter one).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["find_label_keys", "LabelScore"]

#: Prior weight (rows) of the coarser law a class's counts back off to.
ALPHA = 2.0
MIN_GAIN_NATS = 0.1
MIN_LABEL_NATS = 0.5
#: Distinct-value steps (each side) the smoothed alternative spreads a count over.
SMOOTH_STEPS = 2
#: Integer columns with fewer distinct values are left to the integer codes (``pfcore.codes``)
#: or the number's own law.
MIN_DISTINCT = 30
MAX_KEY_COLUMNS = 4
#: Bound on the product of the key columns' class counts (a class is one int64 number).
MAX_CLASSES = 1 << 40
#: A column whose values span more than this is searched by the values' ranks (a (class,
#: value) pair is one int64: classes up to ``MAX_ROWS`` times this span stay far below 2^63).
MAX_SPAN = 1 << 40
#: Rows the search reads at most (a seeded sample).
MAX_ROWS = 50_000


class LabelScore(dict):  # type: ignore[type-arg]
    """What the search measured for one column (JSON-able): ``key`` (empty: no class gains),
    ``gain_nats``, ``label_nats`` and whether it is a ``label``."""


def _slots(x: np.ndarray, start: int, width: int) -> np.ndarray:
    return np.argmax(x[:, start : start + width], axis=1).astype(np.int64)


def _pair_keys(
    fit_cls: np.ndarray, fit_v: np.ndarray, cls: np.ndarray, v: np.ndarray, margin: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(fit keys, scored keys, fit classes, scored classes) as int64s: classes ranked densely,
    each (class, value) pair one number with ``margin`` spare values either side of a class's
    range (a window of that half-width never reaches the next class)."""
    ranks = np.unique(np.concatenate([fit_cls, cls]), return_inverse=True)[1]
    f_c, s_c = ranks[: len(fit_cls)], ranks[len(fit_cls) :]
    span = int(max(fit_v.max(initial=0), v.max(initial=0))) + 2 * margin + 1
    return f_c * span + fit_v + margin, s_c * span + v + margin, f_c, s_c


def _class_counts(fit_c: np.ndarray, c: np.ndarray) -> np.ndarray:
    """How many counted rows each scored row's class holds."""
    uniq, counts = np.unique(fit_c, return_counts=True)
    pos = np.clip(np.searchsorted(uniq, c), 0, len(uniq) - 1)
    return np.where(uniq[pos] == c, counts[pos], 0)


def _backed_off(
    fit_cls: np.ndarray, fit_v: np.ndarray, cls: np.ndarray, v: np.ndarray, back: np.ndarray
) -> np.ndarray:
    """``P(v | class)`` of each scored row: the class's count of the value plus ``ALPHA``
    times the coarser law ``back`` (that row's probability under it), over the class's
    count plus ``ALPHA``."""
    key_fit, key, f_c, s_c = _pair_keys(fit_cls, fit_v, cls, v)
    uniq, counts = np.unique(key_fit, return_counts=True)
    pos = np.clip(np.searchsorted(uniq, key), 0, len(uniq) - 1)
    c_vs = np.where(uniq[pos] == key, counts[pos], 0)
    return (c_vs + ALPHA * back) / (_class_counts(f_c, s_c) + ALPHA)


def _smoothed(
    fit_cls: np.ndarray,
    fit_v: np.ndarray,
    cls: np.ndarray,
    v: np.ndarray,
    back: np.ndarray,
    half_width: int,
) -> np.ndarray:
    """As :func:`_backed_off`, the class's counts spread evenly over the values within
    ``half_width`` of each (the smooth alternative a quantity would prefer)."""
    key_fit, key, f_c, s_c = _pair_keys(fit_cls, fit_v, cls, v, half_width)
    key_fit = np.sort(key_fit)
    near = np.searchsorted(key_fit, key + half_width, side="right") - np.searchsorted(
        key_fit, key - half_width, side="left"
    )
    return (near / (2 * half_width + 1) + ALPHA * back) / (_class_counts(f_c, s_c) + ALPHA)


def _score_column(
    v: np.ndarray, classes: dict[str, tuple[np.ndarray, int]], fit: np.ndarray
) -> LabelScore:
    """The key (if any) of one integer column with values ``v`` (shifted to start at 0);
    ``classes``: candidate categorical column -> (its class per row, its class count);
    ``fit``: which rows are counted (the others are scored)."""
    score = ~fit
    uniform = np.full(int(score.sum()), 1.0 / (int(v.max()) + 1))
    zeros = np.zeros(len(v), dtype=np.int64)
    marginal = _backed_off(zeros[fit], v[fit], zeros[score], v[score], uniform)
    base_ll = float(np.log(marginal).mean())
    key: list[str] = []
    cls = zeros
    n_cls = 1
    law, ll = marginal, base_ll
    while len(key) < MAX_KEY_COLUMNS:
        best: tuple[float, str, np.ndarray, np.ndarray] | None = None
        for name, (c, width) in classes.items():
            if name in key or n_cls * width > MAX_CLASSES:
                continue
            joint = cls * width + c
            p = _backed_off(joint[fit], v[fit], joint[score], v[score], law)
            gain = float(np.log(p).mean()) - ll
            if best is None or gain > best[0]:
                best = (gain, name, joint, p)
        if best is None or best[0] < MIN_GAIN_NATS:
            break
        gain, name, cls, law = best
        n_cls *= classes[name][1]
        key.append(name)
        ll += gain
    if not key:
        return LabelScore(key=[], gain_nats=0.0, label_nats=0.0, label=False)
    # the label test: exact counts of the key's classes against the same counts smoothed,
    # both backed off to the column's own frequencies
    exact = _backed_off(cls[fit], v[fit], cls[score], v[score], marginal)
    distinct = np.unique(v)
    step = int(np.median(np.diff(distinct))) if len(distinct) > 1 else 1
    smooth = _smoothed(cls[fit], v[fit], cls[score], v[score], marginal, SMOOTH_STEPS * step)
    label = float(np.log(exact).mean() - np.log(smooth).mean())
    return LabelScore(
        key=key,
        gain_nats=round(ll - base_ll, 4),
        label_nats=round(label, 4),
        label=label >= MIN_LABEL_NATS,
    )


def find_label_keys(
    table: pa.Table,
    transformer: Any,
    x: np.ndarray,
    *,
    seed: int = 0,
    report: dict[str, Any] | None = None,
) -> dict[str, list[str]]:
    """Integer number columns whose values are labels of a key of categorical columns (module
    doc): ``{column: [key columns]}``, in the transform's block names. ``x`` is ``table``
    encoded by ``transformer`` (the classes are read from it: a pooled class is one slot).
    ``report``, when given, receives every scored column's :class:`LabelScore`."""
    from pfcore.transforms.cells import CELL_PREFIX
    from pfcore.transforms.numeric import NumericTransform

    blocks = {b.column: b for b in transformer.blocks}
    numbers = [
        tr.column.name
        for tr in transformer.transforms
        if type(tr) is NumericTransform
        and tr.column.kind == "integer"
        and tr.column.name in blocks
        and tr.column.name in table.column_names
    ]
    categorical = [
        b
        for b in transformer.blocks
        if b.kind == "onehot"
        and b.width > 1
        and not b.column.endswith("__missing__")
        and not b.column.startswith(CELL_PREFIX)  # a latent class of numbers, not a label key
    ]
    if not numbers or not categorical:
        return {}
    n = table.num_rows
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1ABE1]))
    rows = np.sort(rng.permutation(n)[:MAX_ROWS]) if n > MAX_ROWS else np.arange(n)
    fit_all = np.zeros(len(rows), dtype=bool)
    fit_all[rng.permutation(len(rows))[: len(rows) // 2]] = True
    xs = x[rows]
    classes = {b.column: (_slots(xs, b.start, b.width), b.width) for b in categorical}
    out: dict[str, list[str]] = {}
    for name in numbers:
        col = table.column(name).combine_chunks()
        present = ~np.asarray(col.is_null().to_numpy(zero_copy_only=False))[rows]
        if present.sum() < 100:
            continue
        raw = np.asarray(col.to_numpy(zero_copy_only=False))[rows][present].astype(np.int64)
        if len(np.unique(raw)) < MIN_DISTINCT:
            continue
        v = raw - raw.min()
        if int(v.max()) > MAX_SPAN:  # values far apart: their order is what counts
            v = np.unique(raw, return_inverse=True)[1].astype(np.int64)
        own = {k: (c[present], w) for k, (c, w) in classes.items()}
        found = _score_column(v, own, fit_all[present])
        if report is not None:
            report[name] = found
        if found["label"]:
            out[name] = list(found["key"])
    return out
