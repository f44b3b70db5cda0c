"""Shared fixtures: where the real datasets live, and skipping cleanly when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / "tests" / "data"
SHARED_DATASETS = Path(
    os.environ.get("PUSHFORWARD_SHARED_DATASETS", ROOT.parent / "shared" / "datasets")
)
SHARED_NAMES = ["california_housing", "credit_default", "diamonds", "nyc_flights", "penguins"]


def _worker_threads() -> int:
    """Torch threads per test process: the cores shared among pytest-xdist's workers, at least
    one. Two processes that each take both of CI's two cores run far slower than one."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(2, os.cpu_count() or 1) // workers)


if "PYTEST_XDIST_WORKER" in os.environ:  # servers and commands the tests start inherit it
    os.environ.setdefault("OMP_NUM_THREADS", str(_worker_threads()))


@pytest.fixture(autouse=True, scope="session")
def _few_threads() -> None:
    """Two cores on CI: keep torch from oversubscribing them when tests run side by side."""
    import torch

    torch.set_num_threads(_worker_threads())


def shared_dataset(name: str) -> Path:
    """Path of a full shared dataset, or skip the test with the reason."""
    path = SHARED_DATASETS / f"{name}.parquet"
    if not path.exists():
        pytest.skip(
            f"{path} not found: the full shared datasets live in ../shared/datasets (CI has them)"
        )
    return path


@pytest.fixture(scope="session")
def penguins_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Synthesizer (transform + one-step model) trained for 2 steps: the generator's
    tests (and the torch decode's) need the real interfaces and saved form, not a good model."""
    import pyarrow.parquet as pq

    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer

    table = pq.read_table(TEST_DATA / "penguins.parquet")
    config = {
        "max_steps": 2,
        "min_steps": 1,
        "eval_every": 2,
        "n_eval": 64,
        "n_pairs": 256,
        "distill_max_steps": 2,
    }
    synth = Synthesizer.fit(
        table, infer_schema(table), family="onestep", preset="tiny", config=config, seed=0
    )
    return synth.save(tmp_path_factory.mktemp("synth") / "penguins")


@pytest.fixture
def tmp_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch project data folder, so tests never write into the repository."""
    monkeypatch.setenv("PUSHFORWARD_HOME", str(tmp_path / "pf-home"))
    return tmp_path
