"""Refit only the numbers-given network of a saved hybrid fit (and its marginal map) for a fixed
number of seconds, with config overrides, and save the synthesizer copy (the same unconditional
parts and any-order network), to score with ``conditional.py --models``. The training rows are
the fit's own: the shared table split as ``conditional.py`` splits it, encoded by the saved
transform, minus the synthesizer's 10% held out. The flow teacher is not saved, so the anchor
pairs come from the saved student (its own endpoints for the training rows' classes): the same
for every override compared.

    OMP_NUM_THREADS=1 python benchmarks/numbers_given_refit.py \
        SAVED_DIR DATASET OUT_DIR SECONDS [KEY=JSON ...]

``SAVED_DIR/DATASET`` is a synthesizer saved by ``conditional.py --models SAVED_DIR``;
``SECONDS`` may be ``fit`` (the seconds the fit gave the network); ``KEY=JSON`` overrides
the model config (``conditional_lr=0.008``).
"""

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.overrides import parse_overrides
from benchmarks.saved_fit import training_rows
from pfcore.models.hybrid_cond import (
    _fit_cond_marginal,
    _fit_linear_move,
    _fit_numeric,
    build_networks,
)
from pfcore.models.phase import PhaseData
from pfcore.synthesizer import Synthesizer


def main(argv: list[str]) -> None:
    saved, ds, out, seconds_arg = Path(argv[0]), argv[1], Path(argv[2]), argv[3]
    torch.set_num_threads(1)
    synth = Synthesizer.load(saved / ds)
    fitted = json.loads((saved / ds / "synthesizer.json").read_text())["fit_summary"]
    trained = fitted.get("cond_numeric", {}).get("seconds", 0.0)
    seconds = float(trained) if seconds_arg == "fit" else float(seconds_arg)
    xt, xv = training_rows(synth, ds.split("-seed")[0])  # conditional.py's "<table>-seed<k>"
    model = synth.model
    model.config = dataclasses.replace(model.config, **parse_overrides(argv[4:]))
    _, n_num = model._dims()[1:]
    assert n_num and model.student is not None
    torch.manual_seed(0)
    _, model.cond_numeric = build_networks(model)
    model.latent_move = model.build_latent_move()
    gen = torch.Generator().manual_seed(0)
    n = min(model.config.n_pairs, 60_000)
    d_all = model._split(xt)[0]
    d = d_all[torch.randint(len(xt), (n,), generator=gen)]
    z = torch.randn(n, n_num, generator=gen)
    with torch.no_grad():
        x_p = torch.cat(
            [
                model.student(torch.cat([z[s : s + 8192], d[s : s + 8192]], 1))
                for s in range(0, n, 8192)
            ]
        )
    t0 = time.perf_counter()
    data = PhaseData(xt, xv, None)
    if model.latent_move is not None:  # Newton steps along a line: nothing to train
        s = _fit_linear_move(model, z, d)
    else:
        s = _fit_numeric(model, data, (z, d, x_p), [], seconds)
    if model.cond_marginal is not None and model.config.calibrate:
        _fit_cond_marginal(model, data)
    keys = ("steps", "seconds", "valid_energy_score", "r2_min", "r2_max")
    print(ds, argv[4:], {k: s.get(k) for k in keys}, round(time.perf_counter() - t0, 1), flush=True)
    if out.exists():
        shutil.rmtree(out)
    synth.save(out)


if __name__ == "__main__":
    main(sys.argv[1:])
