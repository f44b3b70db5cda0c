"""Shared pieces of the registry tests: a tiny real synthesizer and a fake fidelity report.

The synthesizer is trained for a few dozen steps on a small generated table that has every
dtype the pyfunc must round-trip (int64, float64, string, bool, a nullable integer). Quality
does not matter here; only that it is a real Synthesizer saved with ``Synthesizer.save``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

TINY_CONFIG = {
    "max_steps": 30,
    "min_steps": 0,
    "warmup_steps": 5,
    "eval_every": 15,
    "n_eval": 64,
    "log_every": 10,
    "checkpoint_every": 1000,
    "batch_size": 128,
    "max_minutes": 1.0,
    "device": "cpu",
    "threads": 1,
    "width": 32,
    "depth": 2,
}


def tiny_table(n: int = 400, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    children = rng.integers(0, 4, n)
    mask = rng.random(n) < 0.1
    return pa.table(
        {
            "age": pa.array(rng.integers(18, 90, n), pa.int64()),
            "income": pa.array(np.round(rng.lognormal(10, 0.5, n), 2), pa.float64()),
            "city": pa.array(
                rng.choice(["Lisbon", "Porto", "Faro"], n, p=[0.5, 0.3, 0.2]).tolist(), pa.string()
            ),
            "member": pa.array(rng.random(n) < 0.4, pa.bool_()),
            "children": pa.array(children, pa.int64(), mask=mask),
        }
    )


def train_tiny(
    out_dir: Path, *, seed: int = 0, family: str = "flow", extra: dict | None = None
) -> Path:
    """Train and save a tiny synthesizer; returns its directory."""
    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer

    table = tiny_table()
    config = {**TINY_CONFIG, **(extra or {})}
    synth = Synthesizer.fit(
        table, infer_schema(table), family=family, preset="tiny", config=config, seed=seed
    )
    return synth.save(out_dir)


def fake_report(out_dir: Path, summary: dict[str, float]) -> Path:
    """A report directory shaped like FidelityReport.save() writes (JSON, Markdown, a plot)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps({"version": 1, "summary": summary}))
    (out_dir / "report.md").write_text(
        "# Fidelity\n" + "\n".join(f"- {k}: {v}" for k, v in summary.items())
    )
    (out_dir / "plots").mkdir(exist_ok=True)
    (out_dir / "plots" / "age.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(16))
    return out_dir


def files_under(root: Path) -> list[Path]:
    return [p for p in Path(root).rglob("*") if p.is_file()]
