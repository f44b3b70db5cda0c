"""Redraw pooled (rare) categories conditionally on a linked low-cardinality column.

Why: a high-cardinality column keeps only its ~100 most frequent categories as model features;
the rest share one ``__other__`` slot and decode redraws a concrete value. Drawn from the pooled
values' overall frequencies, that redraw breaks links users rely on: an aircraft tail number
that flies for one airline, a ZIP code inside one state, a product inside one category
(measured on nyc_flights: sdmetrics' carrier/tailnum contingency 0.16 against 0.78 real vs
real). Here the redraw is conditioned on the decoded slot of one other categorical column, the
*parent*, chosen at fit time by held-out likelihood, so nothing is linked by guesswork.

Model (per child, fitted on the training rows whose value is pooled)::

    P(v | s) = w_s * count(v, s) / count(s) + (1 - w_s) * P(v),  w_s = count(s) / (count(s) + ALPHA)

The parent is the candidate with the best mean held-out log-likelihood (fit on even rows,
scored on odd rows), kept only if it beats the unconditional draw by ``MIN_GAIN_NATS`` per row;
then the counts are refitted on all rows. Parent slots are argmax slots (before the parent's own
redraw), so decode needs no ordering between columns and links cannot form cycles.

Values no training row holds (``unseen``: a transform fitted on a sample of a larger table pools
them with their whole-table counts) have no conditional counts, so the mixture above would draw
them only through its ``1 - w_s`` share, far below their frequency. Their whole-table share
``A`` of the pool is kept instead: the weights become ``w_s * (1 - A)`` and the unconditional
draw uses its own marginal ``M``, with ``M(v) = P(v) / E`` for an unseen value and
``P(v) * (1 - A / E) / (1 - A)`` for a seen one, where ``E = sum_s pi_s (1 - w_s (1 - A))`` is
the unconditional share over the pooled training rows' parent slots ``pi_s``. Each unseen value
is then drawn at exactly its share ``P(v)``, and seen values keep theirs and their parent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ParentLink", "choose_parent"]

ALPHA = 2.0
MIN_GAIN_NATS = 0.05
#: Fewer pooled rows than this: no link (too little evidence to choose a parent).
MIN_POOLED_ROWS = 50


@dataclass
class ParentLink:
    """Conditional redraw table: segments of a global CDF, one per parent slot."""

    parent: str
    cdf: np.ndarray  # float64, segment s holds s + cumulative share, ending at s + 1
    values: np.ndarray  # int64, pooled value index of each cdf entry
    weight: np.ndarray  # float64 (n_parent_slots,), w_s
    #: CDF of the unconditional draw over pooled values when unseen values are pooled (module
    #: doc); None: the pooled values' own frequencies.
    marginal: np.ndarray | None = None

    @classmethod
    def fit(
        cls,
        parent: str,
        child: np.ndarray,
        slots: np.ndarray,
        n_slots: int,
        frequencies: np.ndarray | None = None,
    ) -> ParentLink:
        """``child``: pooled value index per row; ``slots``: the parent's slot per row;
        ``frequencies``: P(v) of every pooled value, needed only when some value never occurs
        in ``child`` (then drawn at its share, see the module doc)."""
        s, v, counts, per_slot = _joint(child, slots, n_slots)
        cum = np.cumsum(counts).astype(np.float64)
        start = np.concatenate([[0.0], np.cumsum(per_slot)])[s]
        cdf = s + (cum - start) / per_slot[s]
        link = cls(parent, cdf, v, _weight(per_slot))
        if frequencies is not None:
            unseen = np.bincount(child, minlength=frequencies.size) == 0
            link._keep_unseen_share(frequencies, unseen, per_slot / per_slot.sum())
        return link

    def _keep_unseen_share(
        self, frequencies: np.ndarray, unseen: np.ndarray, slot_share: np.ndarray
    ) -> None:
        share = float(frequencies[unseen].sum())
        if share <= 0.0:
            return  # every pooled value was seen: the plain mixture, bit for bit
        weight = self.weight * (1.0 - share)
        e = float(np.sum(slot_share * (1.0 - weight[: slot_share.size])))
        m = np.where(unseen, frequencies / e, frequencies * (1.0 - share / e) / (1.0 - share))
        self.weight = weight
        self.marginal = np.cumsum(m) / m.sum()

    def draw(
        self, slots: np.ndarray, marginal_cdf: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Pooled value indexes for rows whose parent slot is ``slots``."""
        m = slots.size
        u, r = rng.random(m), rng.random(m)
        slots = np.minimum(slots, self.weight.size - 1)
        if self.marginal is not None:
            marginal_cdf = self.marginal
        out = np.minimum(np.searchsorted(marginal_cdf, r, side="right"), marginal_cdf.size - 1)
        cond = u < self.weight[slots]
        if cond.any():
            pos = np.searchsorted(self.cdf, slots[cond] + r[cond], side="right")
            out[cond] = self.values[np.minimum(pos, self.values.size - 1)]
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"parent_cdf": self.cdf, "parent_values": self.values, "parent_weight": self.weight}
        if self.marginal is not None:
            out["parent_marginal"] = self.marginal
        return out

    @classmethod
    def from_arrays(cls, parent: str, arrays: dict[str, np.ndarray]) -> ParentLink:
        marginal = arrays.get("parent_marginal")
        return cls(
            parent,
            np.asarray(arrays["parent_cdf"], np.float64),
            np.asarray(arrays["parent_values"], np.int64),
            np.asarray(arrays["parent_weight"], np.float64),
            None if marginal is None else np.asarray(marginal, np.float64),
        )


def choose_parent(
    child: np.ndarray,
    marginal: np.ndarray,
    candidates: dict[str, tuple[np.ndarray, int]],
) -> ParentLink | None:
    """Best parent for one pooled child, or None when no candidate predicts it.

    ``child``: pooled value index per pooled row; ``marginal``: P(v) over pooled values;
    ``candidates``: name -> (slot per pooled row, number of slots). Pooled values that no
    row of ``child`` holds keep their share ``marginal`` of the redraws (module doc).
    """
    if child.size < MIN_POOLED_ROWS or not candidates:
        return None
    even, odd = np.arange(0, child.size, 2), np.arange(1, child.size, 2)
    base = np.log(np.maximum(marginal[child[odd]], 1e-300))
    best_name, best_gain = None, MIN_GAIN_NATS
    for name, (slots, n_slots) in sorted(candidates.items()):
        log_lik = _heldout_log_lik(
            child[even], slots[even], child[odd], slots[odd], n_slots, marginal
        )
        gain = float(np.mean(log_lik - base))
        if gain > best_gain:
            best_name, best_gain = name, gain
    if best_name is None:
        return None
    slots, n_slots = candidates[best_name]
    return ParentLink.fit(best_name, child, slots, n_slots, frequencies=marginal)


def _joint(
    child: np.ndarray, slots: np.ndarray, n_slots: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Observed (slot, value) pairs sorted by slot then value, their counts, rows per slot."""
    n_vals = int(child.max(initial=0)) + 1
    uniq, counts = np.unique(slots.astype(np.int64) * n_vals + child, return_counts=True)
    s, v = uniq // n_vals, uniq % n_vals
    per_slot = np.bincount(s, weights=counts, minlength=n_slots)
    return s, v.astype(np.int64), counts, per_slot


def _weight(per_slot: np.ndarray) -> np.ndarray:
    """w_s: how far the redraw trusts slot s's own counts over the marginal."""
    return per_slot / (per_slot + ALPHA)


def _heldout_log_lik(
    child_fit: np.ndarray,
    slots_fit: np.ndarray,
    child_test: np.ndarray,
    slots_test: np.ndarray,
    n_slots: int,
    marginal: np.ndarray,
) -> np.ndarray:
    """log P(v | s) of the test rows under the mixture fitted on the fit rows."""
    s, v, counts, per_slot = _joint(child_fit, slots_fit, n_slots)
    n_vals = marginal.size
    key_fit = s * n_vals + v  # sorted: (s, v) pairs come sorted from np.unique
    key = slots_test.astype(np.int64) * n_vals + child_test
    pos = np.minimum(np.searchsorted(key_fit, key), key_fit.size - 1)
    cond = np.where(key_fit[pos] == key, counts[pos] / per_slot[s[pos]], 0.0)
    w = _weight(per_slot)[np.minimum(slots_test, n_slots - 1)]
    return np.log(np.maximum(w * cond + (1 - w) * marginal[child_test], 1e-300))
