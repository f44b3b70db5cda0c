"""The training rows of a fit saved by ``conditional.py --models``, for scripts that refit one of
its networks: the shared table split as ``conditional.py`` splits it, encoded by the saved
transform, and cut into the synthesizer's training and held-out rows (10%)."""

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from pfcore.synthesizer import split_train_holdout

SHARED = Path(
    os.environ.get(
        "PUSHFORWARD_SHARED_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"
    )
)


def training_rows(synth: Any, ds: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(training rows, held-out rows) of ``synth``'s fit on ``SHARED/<ds>.parquet``, encoded."""
    train, _ = split_train_holdout(pq.read_table(SHARED / f"{ds}.parquet"), 0.2, 0, 20_000)
    x = synth.transformer.encode(train, seed=0)
    perm = np.random.default_rng(np.random.SeedSequence([0, 0xFA11D])).permutation(len(x))
    nv = int(len(x) * 0.1)
    return torch.from_numpy(x[perm[nv:]]).float(), torch.from_numpy(x[perm[:nv]]).float()
