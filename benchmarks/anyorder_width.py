"""Refit only the any-order discrete network of a saved hybrid fit at another width, for a fixed
number of seconds, and save the synthesizer copy (the same unconditional parts), to score with
``conditional.py --models``. The training rows are the fit's own: the shared table split as
``conditional.py`` splits it, encoded by the saved transform, minus the synthesizer's 10% held out.

    OMP_NUM_THREADS=1 CAP=3000 python benchmarks/anyorder_width.py \
        SAVED_DIR DATASET OUT_DIR WIDTH SECONDS

``SAVED_DIR/DATASET`` is a synthesizer saved by ``conditional.py --models SAVED_DIR``; ``CAP``
caps the steps as ``conditional_max_steps`` does in a fit (default: no cap); ``LR`` sets its
learning rate (default: ``HybridConfig.conditional_discrete_lr``).
"""

import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.saved_fit import training_rows
from pfcore.models.hybrid import HybridConfig
from pfcore.models.hybrid_cond import AnyOrderDiscrete, _fit_discrete
from pfcore.models.phase import PhaseData
from pfcore.synthesizer import Synthesizer

saved, ds, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
width, seconds = int(sys.argv[4]), float(sys.argv[5])
depth = 1
torch.set_num_threads(1)
synth = Synthesizer.load(saved / ds)
xt, xv = training_rows(synth, ds)
model = synth.model
model.config = dataclasses.replace(
    model.config,
    conditional_width=width,
    conditional_depth=depth,
    conditional_max_steps=int(os.environ.get("CAP", 100000)),
    conditional_discrete_lr=float(os.environ.get("LR", HybridConfig.conditional_discrete_lr)),
)
k, d, n_num = model._dims()
widths = [b.width for b in model.blocks if b.kind == "onehot"]
torch.manual_seed(0)
model.cond_discrete = AnyOrderDiscrete(widths, n_num, width, depth)
t0 = time.perf_counter()
s = _fit_discrete(model, PhaseData(xt, xv, None), [], seconds)
print(
    ds,
    width,
    depth,
    {k: s.get(k) for k in ("steps", "seconds", "valid_nll_missing")},
    round(time.perf_counter() - t0, 1),
    flush=True,
)
model.config = dataclasses.replace(model.config, conditional_max_steps=3000)
if out.exists():
    shutil.rmtree(out)
synth.save(out)
