"""How well the any-order network draws the discrete columns given one of them (a rebalanced
target), against the unconditional network's exact law of the same columns.

On held-out rows: the NLL of the other discrete columns drawn in block order given the target,
as the conditional sampler draws them (one any-order forward per column, each given the target
and the columns before it), and, when the target is the unconditional network's last column,
that network's exact ``-log p(others | target) = -(log p(row) - log p(target))`` (the target's
class frequencies from the same rows). Nats per row; per column beside each other.

    OMP_NUM_THREADS=1 python benchmarks/anyorder_chain.py SAVED_DIR DATASET TARGET

``SAVED_DIR/DATASET`` is a synthesizer saved by ``conditional.py --models SAVED_DIR``; the
holdout is ``conditional.py``'s (first 5,000 rows).
"""

import sys
from pathlib import Path

import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.saved_fit import SHARED
from pfcore.synthesizer import Synthesizer, split_train_holdout


def main(saved: Path, ds: str, target: str) -> None:
    torch.set_num_threads(1)
    synth = Synthesizer.load(saved / ds)
    _, hold = split_train_holdout(pq.read_table(SHARED / f"{ds}.parquet"), 0.2, 0, 20_000)
    x = torch.from_numpy(synth.transformer.encode(hold.slice(0, 5000), seed=0)).float()
    m = synth.model
    d, num = m._split(x)
    d01 = (d + 1) / 2
    ar, net = m.ar, m.cond_discrete
    assert ar is not None and net is not None, "a hybrid with its conditional networks"
    widths, starts = ar.widths, ar.starts
    names = [tr.column.name for tr in synth.transformer.transforms]
    first = synth.transformer._slices[names.index(target)][0]
    blocks = [b for b in m.blocks if b.kind == "onehot"]
    y = next(i for i, b in enumerate(blocks) if b.start == first)
    k = len(widths)
    with torch.no_grad():
        logits = ar(d01)
        own = torch.stack(
            [
                (F.log_softmax(logits[:, s : s + w], 1) * d01[:, s : s + w]).sum(1)
                for s, w in zip(starts, widths, strict=False)
            ],
            1,
        )
        m_col = torch.zeros(len(x), k, dtype=torch.bool)
        m_col[:, y] = True
        m_num = torch.zeros(len(x), num.shape[1], dtype=torch.bool)
        chain = torch.zeros(len(x))
        for c, (s, w) in enumerate(zip(starts, widths, strict=False)):
            if c == y:
                continue
            nll = -(F.log_softmax(net(d01, m_col, num, m_num)[:, s : s + w], 1) * d01[:, s : s + w])
            chain += nll.sum(1)
            print(
                f"  {c:3d} {w:5d} classes  any-order {float(nll.sum(1).mean()):.4f}  "
                f"unconditional (own prefix) {float(-own[:, c].mean()):.4f}"
            )
            m_col[:, c] = True
        print(f"{ds} given {target}: any-order chain {float(chain.mean()):.3f} nats per row")
        if y == k - 1:
            dy = d01[:, starts[y] : starts[y] + widths[y]]
            log_py = (dy * dy.mean(0).clamp(min=1e-6).log()).sum(1)
            exact = -(own.sum(1) - log_py)
            print(f"{ds} given {target}: unconditional network, exact {float(exact.mean()):.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
