"""A trained synthesizer: schema + reversible transform + push-forward model, as one unit.

Why a separate object: the registry, the generator and the fidelity gate all need the same three
pieces together and must never pair a model with the wrong transform. A synthesizer directory is
the single artifact that travels (MLflow, generation workers); it holds only JSON and
safetensors, so loading it executes no pickled code.

Layout of a saved synthesizer::

    synthesizer.json   # format version, package version, family, seeds, fit summary
    schema.json        # pfcore.schema.TableSchema
    transform/         # pfcore.transforms.TableTransformer.save()
    model/             # pfcore.models.GenerativeModel.save()
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from pfcore import __version__
from pfcore.defaults import DEFAULT_FAMILY, DEFAULT_PRESET, PROTECT_EXTREMES
from pfcore.errors import ModelError
from pfcore.sampling import BLOCK_ROWS

if TYPE_CHECKING:
    import torch

    from pfcore.models.base import GenerativeModel, Progress
    from pfcore.schema import TableSchema
    from pfcore.transforms import TableTransformer

__all__ = ["Synthesizer", "FORMAT_VERSION", "Split", "split_train_holdout"]

FORMAT_VERSION = 1


def split_train_holdout(
    table: pa.Table, holdout_fraction: float, seed: int, max_train_rows: int | None = None
) -> tuple[pa.Table, pa.Table]:
    """Random row split; the holdout is what fidelity and privacy are scored against.

    Training on all rows and scoring on the same rows would hide memorisation, so the split is
    part of training, seeded and recorded.
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ModelError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    n = table.num_rows
    perm = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED])).permutation(n)
    n_hold = int(round(n * holdout_fraction))
    if holdout_fraction > 0 and n_hold == 0 and n >= 2:
        n_hold = 1
    hold_idx = np.sort(perm[:n_hold])
    train_idx = perm[n_hold:]
    if max_train_rows is not None and len(train_idx) > max_train_rows:
        train_idx = train_idx[:max_train_rows]
    train_idx = np.sort(train_idx)
    return table.take(pa.array(train_idx)), table.take(pa.array(hold_idx))


@dataclass(frozen=True)
class Split:
    """The train/holdout split a synthesizer was fitted with, recorded in ``synthesizer.json``.

    Why recorded: validation must score against exactly the rows training never saw. Re-deriving
    the split from parameters passed again by each caller (seed, fraction, row cap) let the CLI
    and the flow disagree; reading it back from the saved synthesizer cannot.
    """

    holdout_fraction: float = 0.2
    seed: int = 0
    max_train_rows: int | None = None

    def apply(self, table: pa.Table) -> tuple[pa.Table, pa.Table]:
        """(train, holdout) rows of ``table``."""
        return split_train_holdout(table, self.holdout_fraction, self.seed, self.max_train_rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "holdout_fraction": float(self.holdout_fraction),
            "seed": int(self.seed),
            "max_train_rows": None if self.max_train_rows is None else int(self.max_train_rows),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Split:
        return cls(
            holdout_fraction=float(d["holdout_fraction"]),
            seed=int(d["seed"]),
            max_train_rows=None if d.get("max_train_rows") is None else int(d["max_train_rows"]),
        )


@dataclass
class Synthesizer:
    """Schema, fitted transform and fitted model that together sample Arrow tables."""

    schema: TableSchema
    transformer: TableTransformer
    model: GenerativeModel
    info: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ training
    @classmethod
    def fit(
        cls,
        table: pa.Table,
        schema: TableSchema,
        *,
        family: str = DEFAULT_FAMILY,
        preset: str = DEFAULT_PRESET,
        config: dict[str, Any] | None = None,
        seed: int = 0,
        valid_fraction: float = 0.1,
        protect_extremes: int = PROTECT_EXTREMES,
        device: str | None = None,
        callbacks: Sequence[Callable[[Progress], None]] = (),
        split: Split | None = None,
    ) -> Synthesizer:
        """Fit the transform on ``table`` and train a model of ``family`` on its encoding.

        ``valid_fraction`` of the rows are held out of the gradient steps and used only for
        early stopping, so the stopping signal is not fooled by memorisation.
        ``protect_extremes``: numeric value protection (``PROTECT_EXTREMES``).
        ``split``: how ``table`` was cut from the full dataset, recorded so validation scores
        against the same holdout (see :class:`Split`).
        """
        from pfcore.models import build
        from pfcore.transforms import TableTransformer

        if table.num_rows < 2:
            raise ModelError(f"need at least 2 rows to train, got {table.num_rows}")
        t0 = time.perf_counter()
        transformer = TableTransformer.fit(
            table, schema, seed=seed, protect_extremes=protect_extremes
        )
        x = transformer.encode(table, seed=seed)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xFA11D]))
        perm = rng.permutation(len(x))
        n_valid = int(len(x) * valid_fraction) if len(x) >= 20 else 0
        valid = x[perm[:n_valid]] if n_valid else None
        train = x[perm[n_valid:]] if n_valid else x
        cfg = dict(config or {})
        cfg.setdefault("seed", seed)
        if device is not None:
            cfg["device"] = device
        model = build(family, cfg, preset=preset)
        summary = model.fit(train, transformer.blocks, valid=valid, callbacks=callbacks)
        info = {
            "family": family,
            "protect_extremes": int(protect_extremes),
            "preset": preset,
            "seed": seed,
            "train_rows": int(len(train)),
            "valid_rows": int(0 if valid is None else len(valid)),
            "n_features": int(x.shape[1]),
            "fit_seconds": round(time.perf_counter() - t0, 3),
            "fit_summary": summary,
        }
        if split is not None:
            info["split"] = split.to_dict()
        return cls(schema=schema, transformer=transformer, model=model, info=info)

    @property
    def split(self) -> Split | None:
        """The recorded train/holdout split (None for a synthesizer saved without one)."""
        d = self.info.get("split")
        return Split.from_dict(d) if d else None

    # ------------------------------------------------------------------ sampling
    @property
    def latent_dim(self) -> int:
        return int(self.model.latent_dim)

    def push(self, z: torch.Tensor) -> np.ndarray:
        """Map latent noise to encoded rows on the model's device; returns a CPU float32 array."""
        out = self.model.push(z.to(self.model.device))
        return out.float().cpu().numpy()

    def push_conditional(
        self, z: torch.Tensor, known: torch.Tensor, mask: torch.Tensor, seed: int
    ) -> np.ndarray:
        """Encoded rows whose ``mask``ed dims equal ``known``: the family's conditional sampler."""
        from pfcore.models.conditional import conditional_push

        if getattr(self, "_conditional_push", None) is None:
            self._conditional_push = conditional_push(self.model)
        out = self._conditional_push(z.to(self.model.device), known, mask, seed)
        return out.float().cpu().numpy()

    def compile_conditions(self, conditions: Any) -> Any:
        """``conditions`` (``pfcore.conditions.Conditions``, or None) checked against this model.

        Raises ``InputError`` naming the column before anything is sampled.
        """
        from pfcore.condition_plan import compile_conditions

        return compile_conditions(conditions, self)

    def iter_blocks(
        self,
        n: int | None,
        seed: int = 0,
        *,
        block_rows: int = BLOCK_ROWS,
        noise: str = "cpu",
        conditions: Any = None,
    ) -> Iterator[pa.Table]:
        """The rows of ``sample(n, seed)`` one canonical block at a time, in bounded memory."""
        from pfcore import sampling

        condition = self.compile_conditions(conditions)
        n = sampling.condition_rows(n, condition)
        return sampling.iter_tables(
            self, n, seed, block_rows=block_rows, noise=noise, condition=condition
        )

    def sample(
        self,
        n: int | None,
        seed: int = 0,
        *,
        block_rows: int = BLOCK_ROWS,
        noise: str = "cpu",
        conditions: Any = None,
    ) -> pa.Table:
        """``n`` synthetic rows with exactly the source's Arrow schema.

        The same rows as a batch of ``n`` rows published by ``pfcore.generate`` with ``seed``,
        whatever its shard layout or worker count: both run ``pfcore.sampling``'s blocks. For
        batches beyond memory use ``iter_blocks`` or ``pfcore.generate``.

        ``conditions`` (``pfcore.conditions.Conditions``): fixed values, seed rows (then ``n``
        may be None: one row per seed row, in order) or a rebalanced column; every output row
        meets them exactly.
        """
        from pfcore import sampling

        condition = self.compile_conditions(conditions)
        n = sampling.condition_rows(n, condition)
        return sampling.sample_table(
            self, n, seed, block_rows=block_rows, noise=noise, condition=condition
        )

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the synthesizer atomically: a crash never leaves a half-written directory."""
        from pfcore.models.conditional import save_teacher

        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            self.schema.save(tmp / "schema.json")
            self.transformer.save(tmp / "transform")
            self.model.save(tmp / "model")
            save_teacher(self.model, tmp / "model")
            meta = {
                "format_version": FORMAT_VERSION,
                "package_version": __version__,
                "columns": [c.name for c in self.schema.columns],
                **self.info,
            }
            (tmp / "synthesizer.json").write_text(json.dumps(meta, indent=2, default=str))
            if directory.exists():
                shutil.rmtree(directory)
            os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str], device: str = "cpu") -> Synthesizer:
        """Load on ``device`` (CPU by default, so a GPU-trained model samples anywhere)."""
        from pfcore.models import load as load_model
        from pfcore.models.conditional import attach_teacher
        from pfcore.schema import TableSchema
        from pfcore.transforms import TableTransformer

        directory = Path(directory)
        meta_path = directory / "synthesizer.json"
        if not meta_path.exists():
            raise ModelError(f"{directory}: not a saved synthesizer (no synthesizer.json)")
        meta = json.loads(meta_path.read_text())
        if int(meta.get("format_version", -1)) > FORMAT_VERSION:
            raise ModelError(
                f"{directory}: saved with format {meta.get('format_version')} by pushforward "
                f"{meta.get('package_version')}; this pushforward {__version__} reads format "
                f"<= {FORMAT_VERSION}: upgrade pushforward"
            )
        schema = TableSchema.load(directory / "schema.json")
        transformer = TableTransformer.load(directory / "transform")
        model = load_model(directory / "model", device=device)
        attach_teacher(model, directory / "model", device=device)
        return cls(schema=schema, transformer=transformer, model=model, info=meta)
