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

    @classmethod
    def fit(cls, parent: str, child: np.ndarray, slots: np.ndarray, n_slots: int) -> ParentLink:
        """``child``: pooled value index per row; ``slots``: the parent's slot per row."""
        key = slots.astype(np.int64) * (int(child.max(initial=0)) + 1) + child
        uniq, counts = np.unique(key, return_counts=True)  # sorted by (slot, value)
        n_vals = int(child.max(initial=0)) + 1
        s, v = uniq // n_vals, uniq % n_vals
        per_slot = np.bincount(s, weights=counts, minlength=n_slots)
        cum = np.cumsum(counts).astype(np.float64)
        start = np.concatenate([[0.0], np.cumsum(per_slot)])[s]
        cdf = s + (cum - start) / per_slot[s]
        weight = per_slot / (per_slot + ALPHA)
        return cls(parent, cdf, v.astype(np.int64), weight)

    def draw(
        self, slots: np.ndarray, marginal_cdf: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Pooled value indexes for rows whose parent slot is ``slots``."""
        m = slots.size
        u, r = rng.random(m), rng.random(m)
        slots = np.minimum(slots, self.weight.size - 1)
        out = np.minimum(np.searchsorted(marginal_cdf, r, side="right"), marginal_cdf.size - 1)
        cond = u < self.weight[slots]
        if cond.any():
            pos = np.searchsorted(self.cdf, slots[cond] + r[cond], side="right")
            out[cond] = self.values[np.minimum(pos, self.values.size - 1)]
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {"parent_cdf": self.cdf, "parent_values": self.values, "parent_weight": self.weight}

    @classmethod
    def from_arrays(cls, parent: str, arrays: dict[str, np.ndarray]) -> ParentLink:
        return cls(
            parent,
            np.asarray(arrays["parent_cdf"], np.float64),
            np.asarray(arrays["parent_values"], np.int64),
            np.asarray(arrays["parent_weight"], np.float64),
        )


def choose_parent(
    child: np.ndarray,
    marginal: np.ndarray,
    candidates: dict[str, tuple[np.ndarray, int]],
) -> ParentLink | None:
    """Best parent for one pooled child, or None when no candidate predicts it.

    ``child``: pooled value index per pooled row; ``marginal``: P(v) over pooled values;
    ``candidates``: name -> (slot per pooled row, number of slots).
    """
    if child.size < MIN_POOLED_ROWS or not candidates:
        return None
    even, odd = np.arange(0, child.size, 2), np.arange(1, child.size, 2)
    base = np.log(np.maximum(marginal[child[odd]], 1e-300))
    best_name, best_gain = None, MIN_GAIN_NATS
    for name, (slots, n_slots) in sorted(candidates.items()):
        link = ParentLink.fit(name, child[even], slots[even], n_slots)
        gain = float(np.mean(_log_lik(link, child[odd], slots[odd], marginal) - base))
        if gain > best_gain:
            best_name, best_gain = name, gain
    if best_name is None:
        return None
    slots, n_slots = candidates[best_name]
    return ParentLink.fit(best_name, child, slots, n_slots)


def _log_lik(
    link: ParentLink, child: np.ndarray, slots: np.ndarray, marginal: np.ndarray
) -> np.ndarray:
    """log P(v | s) under ``link``'s mixture for held-out rows."""
    n_vals = marginal.size
    key_fit = (np.floor(link.cdf - 1e-12).astype(np.int64)) * n_vals + link.values
    # conditional probability of each fitted (slot, value) entry = its cdf step
    seg_start = np.floor(link.cdf - 1e-12)
    step = np.diff(np.concatenate([[0.0], link.cdf - seg_start]))
    first = np.concatenate([[True], seg_start[1:] != seg_start[:-1]])
    step[first] = (link.cdf - seg_start)[first]
    order = np.argsort(key_fit)
    key = slots.astype(np.int64) * n_vals + child
    pos = np.searchsorted(key_fit[order], key)
    pos = np.minimum(pos, key_fit.size - 1)
    hit = key_fit[order][pos] == key
    cond = np.where(hit, step[order][pos], 0.0)
    w = link.weight[np.minimum(slots, link.weight.size - 1)]
    return np.log(np.maximum(w * cond + (1 - w) * marginal[child], 1e-300))
