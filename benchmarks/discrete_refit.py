"""Refit only the any-order discrete network of a saved hybrid fit for a multiple of the
seconds the fit gave it, and save the synthesizer copy (every other part as saved), to score
with ``conditional.py --models``: what more training time would give that network, on the
same fit. The training rows are the fit's own (``saved_fit.training_rows``).

    OMP_NUM_THREADS=1 python benchmarks/discrete_refit.py SAVED_DIR NAME OUT_DIR FACTOR

``SAVED_DIR/NAME`` is a synthesizer saved by ``conditional.py --models`` (``NAME`` the
dataset, or ``<dataset>-seed<k>``); ``FACTOR`` 1 refits for the fit's own seconds (the control:
a refit starts from new weights), 2 for twice that. An optional fifth argument sets the
network's ``conditional_number_bins`` (saved with the copy), e.g. 0 and 8 on the same fit:

    OMP_NUM_THREADS=1 python benchmarks/discrete_refit.py SAVED_DIR NAME OUT_DIR 1 8
"""

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.saved_fit import training_rows
from pfcore.models.hybrid_cond import _fit_discrete, build_networks
from pfcore.models.phase import PhaseData
from pfcore.synthesizer import Synthesizer


def main(argv: list[str]) -> None:
    saved, name, out, factor = Path(argv[0]), argv[1], Path(argv[2]), float(argv[3])
    torch.set_num_threads(1)
    synth = Synthesizer.load(saved / name)
    fitted = json.loads((saved / name / "synthesizer.json").read_text())["fit_summary"]
    seconds = float(fitted["cond_discrete"]["seconds"]) * factor
    xt, xv = training_rows(synth, name.split("-seed")[0])
    model = synth.model
    if len(argv) > 4:
        model.config = dataclasses.replace(model.config, conditional_number_bins=int(argv[4]))
    torch.manual_seed(0)
    model.cond_discrete, _ = build_networks(model)
    t0 = time.perf_counter()
    s = _fit_discrete(model, PhaseData(xt, xv, None), [], seconds)
    keys = ("steps", "seconds", "valid_nll_missing")
    print(name, factor, {k: s.get(k) for k in keys}, round(time.perf_counter() - t0, 1))
    if out.exists():
        shutil.rmtree(out)
    synth.save(out)


if __name__ == "__main__":
    main(sys.argv[1:])
