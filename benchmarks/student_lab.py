"""The hybrid's student with its teacher held fixed: losses, student nets, pairs, regularisers.

One job per table: fit the hybrid (balanced preset, conditional networks off) with step budgets
close to what the 5-minute product fit reaches on one CPU thread with bf16 matmuls
(``--teacher-steps`` flow steps, default 6,000; 4,000 discrete-network steps), score its flow
teacher's sampler with and without a marginal map of its own, then for each ``--variants`` entry
distil a fresh student from the same teacher's pairs for ``--seconds`` and score it two ways: as it
is (``auc``) and with the product's marginal maps (``auc_map``: ``HybridModel._fit_marginals``,
which picks the space by a classifier, as every product fit does). Also the student's squared
error on its training pairs and on 8,192 fresh pairs (``train_mse`` / ``test_mse``: overfitting),
and ``push`` rows/s on 100,000 rows. Detection AUC is the mean over two sample seeds
(``design_sweep``'s scoring).

Variants are ``+``-joined tokens: ``huber`` (default) / ``mse`` / ``l1`` (the loss; Huber's
threshold 0.05 whitened units, ``huberX`` sets it), ``WxD`` (student size, default 256x3, the
product's), ``fourier`` (random Fourier features of the latent as extra inputs) or ``res``
(output = latent + MLP), ``esW`` (plus W times the energy score of two student draws against data
rows given their discrete columns, encoded space; ``eswW``: whitened space), ``pN`` (N thousand
pairs, default 150), ``sN`` (N seconds), ``kN`` (N network evaluations: ``N - 1`` refiners of the
student's size, refiner ``i`` reading ``[(1 - i/N) z + (i/N) x_prev, d]`` and trained on the
straight line to the teacher's endpoint; ``ksN``: on the line to the previous network's own,
detached, estimate), ``wdX`` (AdamW with weight decay X), ``advW`` (plus W
times a non-saturating adversarial loss: a 256x2 discriminator, trained alongside, tells data rows
from student rows, both as whitened numbers plus the discrete columns; from ``astartF`` of the
seconds on, default 0.5).

    OMP_NUM_THREADS=1 python benchmarks/student_lab.py --work /path/to/work \\
        --datasets california_housing --variants huber p300+s66 wd1e-4 traj \\
        --out benchmarks/results/student_lab.json

Distillation is time-budgeted, so a loaded machine gives every variant fewer steps; run one job
per core. Inputs are what ``fidelity.py prepare`` writes.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

HUBER = 0.05


def _auc(model: Any, tr: Any, hold: Any) -> float:
    """Mean detection AUC over sample seeds 1 and 2."""
    import numpy as np
    from scoring import detection_auc

    aucs = []
    for s in (1, 2):
        syn = tr.decode(model.sample(len(hold), seed=s), seed=s).to_pandas()
        aucs.append(detection_auc(hold, syn))
    return round(float(np.mean(aucs)), 4)


def _parse(name: str, seconds: float, n_pairs: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"loss": "huber", "net": "mlp", "width": 256, "depth": 3}
    spec.update(seconds=seconds, pairs=n_pairs, es=0.0, es_space="encoded", huber=HUBER)
    spec.update(weight_decay=0.0, adv=0.0, adv_start=0.5, evals=1, refine_input="teacher")
    for tok in name.split("+"):
        if tok in ("mse", "huber", "l1"):
            spec["loss"] = tok
        elif tok.startswith("huber"):
            spec.update(loss="huber", huber=float(tok[5:]))
        elif tok in ("fourier", "res"):
            spec["net"] = tok
        elif tok.startswith("adv"):
            spec["adv"] = float(tok[3:])
        elif tok.startswith("astart"):
            spec["adv_start"] = float(tok[6:])
        elif tok.startswith("ks") and tok[2:].isdigit():
            spec.update(evals=int(tok[2:]), refine_input="student")
        elif tok.startswith("k") and tok[1:].isdigit():
            spec["evals"] = int(tok[1:])
        elif tok.startswith("wd"):
            spec["weight_decay"] = float(tok[2:])
        elif tok.startswith("esw"):
            spec.update(es=float(tok[3:]), es_space="white")
        elif tok.startswith("es"):
            spec["es"] = float(tok[2:])
        elif tok.startswith("p") and tok[1:].isdigit():
            spec["pairs"] = int(tok[1:]) * 1000
        elif tok.startswith("s") and tok[1:].isdigit():
            spec["seconds"] = float(tok[1:])
        elif "x" in tok:
            spec["width"], spec["depth"] = (int(v) for v in tok.split("x"))
        else:
            raise SystemExit(f"unknown variant token {tok!r} in {name!r}")
    return spec


def _student(spec: dict[str, Any], n_num: int, d: int) -> Any:
    import torch
    from torch import nn

    from pfcore.models.nets import MLP, mlp_on_signed_onehots

    width, depth = spec["width"], spec["depth"]

    class Refined(nn.Module):
        """``k`` evaluations: ``nets[0]([z, d])`` is an endpoint; ``nets[i]`` reads
        ``[(1 - t_i) z + t_i x_prev, d]`` (``t_i = i / k``) and predicts the endpoint again."""

        def __init__(self, k: int, from_teacher: bool) -> None:
            super().__init__()
            self.nets = nn.ModuleList(MLP(n_num + d, n_num, width, depth) for _ in range(k))
            self.from_teacher = from_teacher
            self.last: tuple | None = None

        def _chain(self, first: Any, z: Any, step: Any) -> Any:
            out, k = first, len(self.nets)
            for i, net in enumerate(self.nets[1:], 1):
                t = i / k
                out = step(net, (1 - t) * z + t * out)
            return out

        def forward(self, x: Any) -> Any:
            z, dd = x[:, :n_num], x[:, n_num:]
            first = self.nets[0](x)
            self.last = (z, dd, first)
            return self._chain(first, z, lambda net, p: net(torch.cat([p, dd], dim=1)))

        def on_dims(self, z: Any, dims: Any) -> Any:
            first = mlp_on_signed_onehots(self.nets[0], z, dims)
            return self._chain(first, z, lambda net, p: mlp_on_signed_onehots(net, p, dims))

        def train_loss(self, target: Any, base: Any) -> Any:
            """Every network's loss against the teacher's endpoint ``target``."""
            assert self.last is not None
            z, dd, first = self.last
            total, prev, k = base(first, target), first, len(self.nets)
            for i, net in enumerate(self.nets[1:], 1):
                t = i / k
                src = target if self.from_teacher else prev.detach()
                prev = net(torch.cat([(1 - t) * z + t * src, dd], dim=1))
                total = total + base(prev, target)
            return total

    if spec["evals"] > 1:
        return Refined(spec["evals"], spec["refine_input"] == "teacher")
    if spec["net"] == "mlp":
        return MLP(n_num + d, n_num, width, depth)

    class Fourier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            b = torch.randn(n_num, 16, generator=torch.Generator().manual_seed(7))
            self.register_buffer("b", b)
            self.mlp = MLP(n_num + 32 + d, n_num, width, depth)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = x[:, :n_num] @ self.b
            return self.mlp(torch.cat([x, torch.sin(a), torch.cos(a)], dim=1))

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = MLP(n_num + d, n_num, width, depth)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, :n_num] + self.mlp(x)

    return Fourier() if spec["net"] == "fourier" else Residual()


def run(
    work: Path,
    ds: str,
    variants: list[str],
    seconds: float,
    seed: int,
    teacher_steps: int,
    quick: bool = False,
) -> list[dict]:
    import torch
    import torch.nn.functional as F
    from design_sweep import load_job

    import pfcore.models.hybrid as hybrid
    from pfcore import models
    from pfcore.models.cond_student import energy_score
    from pfcore.models.nets import MLP
    from pfcore.models.phase import PhaseData

    lookup = hybrid.mlp_on_signed_onehots
    if not hasattr(lookup, "refined"):  # the sampler's one-hot lookup, through every network

        def through_all(net: Any, z: Any, dims: Any) -> Any:
            return net.on_dims(z, dims) if hasattr(net, "on_dims") else lookup(net, z, dims)

        through_all.refined = True  # type: ignore[attr-defined]
        hybrid.mlp_on_signed_onehots = through_all
    torch.set_num_threads(1)
    tr, x_train, x_valid, hold = load_job(work, ds)
    cfg = dict(device="cpu", max_steps=teacher_steps, distill_max_steps=4000, ar_max_steps=4000)
    cfg.update(seed=seed, epochs=None, max_minutes=60.0, threads=1, conditional_max_steps=0)
    if quick:  # a smoke run of the script itself
        cfg.update(max_steps=20, distill_max_steps=20, ar_max_steps=20, min_steps=1)
    model = models.build("hybrid", cfg, preset="balanced")
    model.fit(x_train, tr.blocks, valid=x_valid)
    x = torch.from_numpy(x_train)
    d_data, num_data = model._split(x)
    white_data = model.to_white(num_data)
    ref: dict[str, Any] = {"dataset": ds, "seed": seed, "kind": "teacher"}
    model.continuous_sampler = "teacher"
    ref["auc"] = _auc(model, tr, hold)
    model.calibrate_teacher()
    ref["auc_map"] = _auc(model, tr, hold)
    model.continuous_sampler = "student"
    print("RESULT " + json.dumps(ref), flush=True)
    out = [ref]
    k, d, n_num = model._dims()
    mcfg = model.config
    mcfg.distill_max_steps = 10**9
    pair_sets: dict[int, Any] = {}
    for name in variants:
        spec = _parse(name, seconds, 150_000)
        n = spec["pairs"]
        if n not in pair_sets:
            mcfg.n_pairs = n + 8192
            z, dd, xo = model._make_pairs(x)
            pair_sets[n] = ((z[:n], dd[:n], xo[:n]), (z[n:], dd[n:], xo[n:]))
        train, test = pair_sets[n]
        torch.manual_seed(seed + 3)
        model.student = _student(spec, n_num, d)
        for m in (model.marginal, model.white_marginal):
            if m is not None:
                m.copy_from(None)
        gen = torch.Generator().manual_seed(99)
        disc = MLP(n_num + d, 1, 256, 2)
        dopt = torch.optim.Adam(disc.parameters(), lr=5e-4, betas=(0.5, 0.99))
        clock: dict[str, float] = {}

        def adversarial(gen: Any, disc: Any = disc, dopt: Any = dopt) -> torch.Tensor:
            b = torch.randint(0, len(x), (512,), generator=gen)
            b2 = torch.randint(0, len(x), (512,), generator=gen)
            zz = torch.randn(512, n_num, generator=gen)
            fake = torch.cat([model.student(torch.cat([zz, d_data[b2]], dim=1)), d_data[b2]], 1)
            real = torch.cat([white_data[b], d_data[b]], dim=1)
            d_loss = F.softplus(-disc(real)).mean() + F.softplus(disc(fake.detach())).mean()
            dopt.zero_grad(set_to_none=True)
            d_loss.backward()
            dopt.step()
            disc.requires_grad_(False)
            g_loss = F.softplus(-disc(fake)).mean()
            disc.requires_grad_(True)
            return g_loss

        def base(p: torch.Tensor, y: torch.Tensor, spec: dict = spec) -> torch.Tensor:
            if spec["loss"] == "huber":
                return F.smooth_l1_loss(p, y, beta=spec["huber"])
            if spec["loss"] == "l1":
                return (p - y).abs().mean()
            return F.mse_loss(p, y)

        def loss(
            pred: torch.Tensor,
            target: torch.Tensor,
            spec: dict = spec,
            gen: Any = gen,
            clock: dict = clock,
            adversarial: Any = adversarial,
            base: Any = base,
        ) -> torch.Tensor:
            if spec["evals"] > 1:
                value = model.student.train_loss(target, base)
            else:
                value = base(pred, target)
            if spec["es"]:
                b = torch.randint(0, len(x), (512,), generator=gen)
                zz = torch.randn(1024, n_num, generator=gen)
                y = model.student(torch.cat([zz, torch.cat([d_data[b], d_data[b]])], dim=1))
                real = num_data[b]
                if spec["es_space"] == "white":
                    real = model.to_white(real)
                else:
                    y = model.from_white(y)
                value = value + spec["es"] * energy_score(y[:512], y[512:], real).mean()
            if spec["adv"]:
                now = time.perf_counter()
                start = clock.setdefault("t0", now)
                if now - start >= spec["adv_start"] * spec["seconds"]:
                    value = value + spec["adv"] * adversarial(gen)
            return value

        original, adam = hybrid.distill_loss, torch.optim.Adam
        hybrid.distill_loss = lambda *_a, loss=loss: loss
        if spec["weight_decay"]:
            torch.optim.Adam = functools.partial(  # type: ignore[misc]
                torch.optim.AdamW, weight_decay=spec["weight_decay"]
            )
        try:
            summary = model._distill(PhaseData(x, None, None), train, [], budget_s=spec["seconds"])
        finally:
            hybrid.distill_loss, torch.optim.Adam = original, adam
        with torch.no_grad():

            def mse(p: Any) -> float:
                pred = model.student(torch.cat([p[0][:8192], p[1][:8192]], dim=1))
                return round(float(F.mse_loss(pred, p[2][:8192])), 5)

            rec = {"dataset": ds, "seed": seed, "variant": name, **spec}
            rec.update(steps=summary["distill"]["steps"], train_mse=mse(train), test_mse=mse(test))
        rec["auc"] = _auc(model, tr, hold)
        rec["space"] = model._fit_marginals(x)["space"]
        rec["auc_map"] = _auc(model, tr, hold)
        model.sample(1000, seed=5)
        t0 = time.perf_counter()
        model.sample(100_000, seed=5)
        rec["push_rows_per_second_with_map"] = round(100_000 / (time.perf_counter() - t0))
        print("RESULT " + json.dumps(rec), flush=True)
        out.append(rec)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "work")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--datasets", nargs="*", default=["california_housing"])
    ap.add_argument("--variants", nargs="*", default=["mse", "huber"])
    ap.add_argument("--seconds", type=float, default=70.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--teacher-steps", type=int, default=6000)
    ap.add_argument("--append", action="store_true", help="keep the records already in --out")
    ap.add_argument("--quick", action="store_true", help="tiny step budgets: check the script")
    args = ap.parse_args()
    records = json.loads(args.out.read_text()) if args.append and args.out.exists() else []
    for ds in args.datasets:
        records += run(
            args.work, ds, args.variants, args.seconds, args.seed, args.teacher_steps, args.quick
        )
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(records, indent=2))
        tmp.replace(args.out)
    cols = ["dataset", "variant", "steps", "train_mse", "test_mse", "auc", "auc_map", "space"]
    print(" | ".join(cols))
    for r in records:
        print(" | ".join(str(r.get(c, "")) for c in cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
