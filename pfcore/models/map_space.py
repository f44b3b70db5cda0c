"""Where a hybrid's marginal maps act, chosen per fit by a classifier on the model's own rows.

Why: a per-column monotone map (``marginal.py``) gives the student's numbers the data's
marginals, and which coordinates it should act in depends on the table. In the encoded columns
it lowered the student's detection AUC most on california_housing (0.696 -> 0.647) and
credit_default, but it moves columns tied by an exact relation separately and did nothing on
nyc_flights (clock arithmetic: 0.948 -> 0.943-0.955); in the whitened coordinates
(``whiten.py``), where such a relation is a direction of small variance that the map pins
down, it reached nyc_flights' flow teacher (0.923-0.927) and kept less of the gain elsewhere
(california_housing 0.679) (``benchmarks/student_lab.py``, one fitted teacher per table).
Neither space wins on every table, so the fit tries each (``SPACES``; ``"both"`` is the
whitened map followed by the encoded one, which keeps most of the whitened map's hold on thin
directions and still ends on the data's marginals) and keeps the one whose rows a small
boosted classifier tells from training rows least well: the test the fidelity report runs, on
``SCORE_ROWS`` rows a side of the table's decoded columns (``DetectorView``), 1.3-4.1 s per fit.

Measured in the 5-minute fits of ``benchmarks/fidelity.py`` (3 seeds; detection AUC against the
encoded map alone): california_housing 0.623 against 0.630, diamonds 0.689 against 0.694,
credit_default 0.757 against 0.755, nyc_flights 0.927 against 0.936. The fits chose "both" on 7
of 12 (nyc_flights, credit_default, california_housing), "white" on 2 (diamonds) and "encoded"
on 3. Scoring the encoded dims instead of the decoded columns chose worse (0.636, 0.693, 0.760,
0.931).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from pfcore.models.base import BlockSpec
from pfcore.models.marginal import MarginalMap

__all__ = [
    "SCORE_ROWS",
    "SPACES",
    "DetectorView",
    "choose",
    "detection_features",
    "encoded_view",
    "fit_maps",
]

#: ``(real encoded rows, synthetic encoded rows) -> (real features, synthetic features,
#: categorical mask)``: the rows as the classifier sees them. The synthesizer passes one that
#: decodes them to the table's columns (rules applied) and converts them as the fidelity
#: report's detection does (``pfcore.fidelity.detection.decoded_view``); without one the
#: encoded rows are scored (:func:`encoded_view`).
DetectorView = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]

#: The spaces a fit tries, in this order; ties keep the earlier one.
SPACES = ("encoded", "white", "both")

#: Rows a side for the classifier: at 10k the out-of-fold AUC's spread between seeds of the
#: split is about 0.005, below the 0.02-0.03 that separates the spaces where it matters.
SCORE_ROWS = 10_000

#: HistGradientBoosting's native categorical support needs fewer levels than its bins.
_MAX_NATIVE_CATEGORIES = 250


def detection_features(
    x: torch.Tensor, blocks: Sequence[BlockSpec]
) -> tuple[np.ndarray, np.ndarray]:
    """Encoded rows as a classifier's features: each one-hot block as its category code
    (native categorical when it has under 250 levels), each numeric dim as it is."""
    cols: list[torch.Tensor] = []
    cat: list[bool] = []
    for b in blocks:
        block = x[:, b.start : b.start + b.width]
        if b.kind == "onehot":
            cols.append(block.argmax(dim=1).to(torch.float64))
            cat.append(b.width < _MAX_NATIVE_CATEGORIES)
        else:
            cols.extend(block.T.to(torch.float64))
            cat.extend([False] * b.width)
    return torch.stack(cols, dim=1).cpu().numpy(), np.asarray(cat, dtype=bool)


def encoded_view(blocks: Sequence[BlockSpec]) -> DetectorView:
    """The :data:`DetectorView` of encoded rows (:func:`detection_features`), for models fitted
    on a bare matrix."""

    def view(real: np.ndarray, synthetic: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xr, cat = detection_features(torch.from_numpy(real), blocks)
        return xr, detection_features(torch.from_numpy(synthetic), blocks)[0], cat

    return view


def fit_maps(
    space: str,
    w: torch.Tensor,
    data_white: torch.Tensor,
    data_encoded: torch.Tensor,
    from_white: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[MarginalMap | None, MarginalMap | None]:
    """(map on whitened outputs, map on encoded numbers) for ``space``, fitted on a sampler's
    whitened outputs ``w`` against the training rows' numbers in both spaces; None where the
    space has no map."""
    dim = w.shape[1]
    wmap = emap = None
    if space in ("white", "both"):
        wmap = MarginalMap(dim).to(w.device)
        wmap.fit(w, data_white)
        w = wmap(w)
    if space in ("encoded", "both"):
        emap = MarginalMap(dim).to(w.device)
        emap.fit(from_white(w), data_encoded)
    if wmap is None and emap is None:
        raise ValueError(f"unknown marginal map space {space!r}; expected one of {SPACES}")
    return wmap, emap


def choose(
    candidates: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], seed: int
) -> tuple[str, dict[str, float]]:
    """The space whose rows (``candidates[space] = (real features, synthetic features,
    categorical mask)``, a :data:`DetectorView`'s output) a 2-fold boosted classifier separates
    least, and every space's AUC."""
    from pfcore.fidelity.pair_detection import boosted_auc

    aucs: dict[str, float] = {}
    for space, (real, synthetic, cat) in candidates.items():
        x = np.vstack([real, synthetic])
        y = np.concatenate([np.zeros(len(real)), np.ones(len(synthetic))])
        aucs[space] = round(boosted_auc(x, cat, y, max_iter=100, seed=seed), 4)
    best = min(aucs, key=lambda s: (aucs[s], list(candidates).index(s)))
    return best, aucs
