"""Sampling speed of saved synthesizers, split into the model's forward and the decode.

For each saved synthesizer directory: 100,000 rows in the canonical blocks of
``pfcore.sampling`` (the rows ``Synthesizer.sample`` returns), timed ``--repeats`` times, best
of each part kept: ``forward`` (noise through the model), ``decode`` (encoded rows to the
source's Arrow columns) and ``total``. With ``--code DIR`` the same is timed a second time by
another checkout of the project (a ``git worktree`` of an earlier commit) on the same saved
models, in alternation, so a change is measured against the code before it on the same
machine in the same minutes (this machine's rates move by a third with its load). A sha256 of
each code's rows says whether the two produce the same rows.

    OMP_NUM_THREADS=1 python benchmarks/sample_speed.py DIR... [--code OLD_CHECKOUT] \\
        [--out benchmarks/results/sample_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ROWS = 100_000


def measure(synth_dir: str, repeats: int, seed: int = 3) -> dict[str, Any]:
    """Best-of-``repeats`` seconds of forward, decode and total for ``ROWS`` rows, with the
    sha256 of the decoded rows of one pass (this process's ``pfcore``)."""
    import hashlib

    import pyarrow as pa
    import torch

    from pfcore import sampling
    from pfcore.synthesizer import Synthesizer

    torch.set_num_threads(1)
    synth = Synthesizer.load(synth_dir)
    synth.sample(2000, seed=seed)  # warm-up: lazy imports, allocator
    best: dict[str, float] = {}
    digest = ""
    for _ in range(repeats):
        forward = decode = 0.0
        tables = []
        t0 = time.perf_counter()
        for block in sampling.blocks(ROWS, seed):
            a = time.perf_counter()
            x = sampling.forward(synth, block)
            b = time.perf_counter()
            tables.append(sampling.decode(synth, block, x))
            decode += time.perf_counter() - b
            forward += b - a
        total = time.perf_counter() - t0
        for key, value in (("forward", forward), ("decode", decode), ("total", total)):
            best[key] = min(best.get(key, float("inf")), value)
        if not digest:
            table = pa.concat_tables(tables)
            digest = hashlib.sha256(table.to_pandas().to_csv(index=False).encode()).hexdigest()
    return {
        "synth": synth_dir,
        "rows": ROWS,
        **{f"{k}_s": round(v, 4) for k, v in best.items()},
        "rows_per_second": round(ROWS / best["total"]),
        "sha256": digest,
    }


def _in_checkout(code: Path, synth_dir: str, repeats: int) -> dict[str, Any]:
    """:func:`measure` run by the checkout ``code`` (its own ``pfcore``), one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(code)}
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        "sys.path.insert(0, sys.argv[2]); from sample_speed import measure; "
        "print(json.dumps(measure(sys.argv[3], int(sys.argv[4]))))"
    )
    bench = str(ROOT / "benchmarks")
    out = subprocess.run(
        [sys.executable, "-c", script, str(code), bench, synth_dir, str(repeats)],
        env=env,
        cwd=code,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("synth", nargs="+", help="saved synthesizer directories")
    ap.add_argument("--code", type=Path, default=None, help="another checkout to time beside")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="alternations with --code")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    records = []
    print("| synthesizer | code | rows/s | forward s | decode s | same rows |")
    print("|---|---|---|---|---|---|")
    for synth in args.synth:
        runs: dict[str, list[dict[str, Any]]] = {"this": [], "other": []}
        for _ in range(args.rounds if args.code else 1):
            runs["this"].append(_in_checkout(ROOT, synth, args.repeats))
            if args.code:
                runs["other"].append(_in_checkout(args.code, synth, args.repeats))
        for code, rs in runs.items():
            if not rs:
                continue
            best = min(rs, key=lambda r: r["total_s"])
            rec = {
                **best,
                "code": str(ROOT if code == "this" else args.code),
                "rounds": len(rs),
                "rows_per_second_all": [r["rows_per_second"] for r in rs],
                "same_rows_as_this": best["sha256"] == runs["this"][0]["sha256"],
            }
            records.append(rec)
            print(
                f"| {Path(synth).name} | {code} | {rec['rows_per_second']:,} "
                f"| {rec['forward_s']:.3f} | {rec['decode_s']:.3f} | {rec['same_rows_as_this']} |"
            )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"threads": 1, "records": records}, indent=2))


if __name__ == "__main__":
    main()
