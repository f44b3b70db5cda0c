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
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pyarrow as pa

from pfcore import __version__
from pfcore.defaults import DEFAULT_FAMILY, DEFAULT_PRESET, PROTECT_EXTREMES
from pfcore.errors import InputError, ModelError
from pfcore.sampling import BLOCK_ROWS

_log = logging.getLogger("pushforward.synthesizer")

if TYPE_CHECKING:
    import torch

    from pfcore.models.base import GenerativeModel, Progress
    from pfcore.rules.ruleset import RuleSet
    from pfcore.schema import TableSchema
    from pfcore.tablestats import TableStats
    from pfcore.transforms import TableTransformer

__all__ = ["Synthesizer", "FORMAT_VERSION", "Split", "SplitRows", "split_train_holdout"]

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
    n_hold = _holdout_count(n, holdout_fraction)
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

    Two methods, chosen by :meth:`plan` from the table's size:

    * ``"permutation"``: the whole table is read and split by a seeded permutation
      (:func:`split_train_holdout`); used whenever the training rows fit ``sample_rows``, so a
      table that fits the budget trains on exactly the rows (and model) it always did;
    * ``"hash"``: for a larger table, rows are split and sampled by a seeded hash of their
      index while streaming (``pfcore.rowsample``): the holdout is the rows whose key is below
      ``holdout_fraction``, training reads the ``min(sample_rows, max_train_rows)`` training
      rows with the smallest keys. Memory is bounded by the sample, not the table. When the
      table holds many more row groups than the sample needs and they look alike, both samples
      are drawn from a seeded choice of row groups only (``row_spans``; see
      ``pfcore.rowsample.choose_row_groups``), so the read does not grow with the table.
    """

    holdout_fraction: float = 0.2
    seed: int = 0
    max_train_rows: int | None = None
    #: Most training rows read from the dataset (None: no bound, the table is read whole).
    sample_rows: int | None = None
    method: str = "permutation"
    #: Rows of the dataset the split was planned on (a changed dataset has another holdout).
    dataset_rows: int | None = None
    #: ``"hash"`` only: the ``[start, stop)`` row spans (whole row groups) both samples are
    #: drawn from; None: every row.
    row_spans: tuple[tuple[int, int], ...] | None = None
    #: How the rows read were chosen, in words (recorded for the reader of synthesizer.json).
    read_note: str | None = None

    @classmethod
    def plan(
        cls,
        dataset_dir: str | os.PathLike[str],
        holdout_fraction: float,
        seed: int,
        max_train_rows: int | None = None,
        sample_rows: int | None = None,
    ) -> Split:
        """The split of an ingested dataset: ``"permutation"`` when its training rows fit
        ``sample_rows``, else ``"hash"`` (see the class docstring)."""
        from pfcore.rowsample import choose_row_groups, dataset_rows

        n = dataset_rows(dataset_dir)
        n_train = n - _holdout_count(n, holdout_fraction)
        if sample_rows is None or n_train <= sample_rows:
            return cls(holdout_fraction, seed, max_train_rows, sample_rows, "permutation", n)
        k = _min_cap(max_train_rows, sample_rows) or n_train
        need = int(np.ceil(k / max(1e-9, 1.0 - float(holdout_fraction))))
        spans, note = choose_row_groups(dataset_dir, seed, need)
        row_spans = None if spans is None else tuple(spans)
        return cls(holdout_fraction, seed, max_train_rows, sample_rows, "hash", n, row_spans, note)

    @property
    def train_rows_cap(self) -> int | None:
        """The most training rows this split yields (None: every training row)."""
        if self.method == "permutation":
            return self.max_train_rows
        return _min_cap(self.max_train_rows, self.sample_rows)

    def apply(self, table: pa.Table) -> tuple[pa.Table, pa.Table]:
        """(train, holdout) rows of ``table``."""
        if self.method == "hash":
            return self._hash_tables(table)
        return split_train_holdout(table, self.holdout_fraction, self.seed, self.max_train_rows)

    def read(
        self,
        dataset_dir: str | os.PathLike[str],
        *,
        holdout_rows: int | None = None,
        train_rows: int | None = None,
    ) -> SplitRows:
        """The training and held-out rows of the ingested dataset in ``dataset_dir``.

        ``holdout_rows`` / ``train_rows`` bound what is returned by a seeded uniform subset
        (validation's bounded read; ``0`` skips that side). With ``"hash"`` only the returned
        rows are ever held in memory.
        """
        from pfcore.rowsample import dataset_rows, holdout_cut, read_key_ranges, sample_ranges

        n = dataset_rows(dataset_dir)
        if self.dataset_rows is not None and n != self.dataset_rows:
            raise InputError(
                f"has {n} rows, but the synthesizer's split was planned on {self.dataset_rows}: "
                "its holdout would hold training rows; validate against the dataset it was "
                "trained on",
                path=dataset_dir,
            )
        if self.method == "permutation":
            from pfcore.io import read_dataset

            train, holdout = self.apply(read_dataset(dataset_dir))
            return SplitRows(
                _bounded(train, train_rows, self.seed, 1),
                _bounded(holdout, holdout_rows, self.seed, 0),
                train.num_rows,
                holdout.num_rows,
            )
        cut = holdout_cut(self.holdout_fraction)
        k_train = _min_cap(self.train_rows_cap, train_rows)
        k_hold = 0 if cut == 0 else holdout_rows
        spans = self.row_spans
        tr, ho = sample_ranges(
            n,
            self.seed,
            [(cut, (1 << 64) - 1, k_train), (0, max(0, cut - 1), k_hold)],
            spans=spans,
        )
        train, holdout = read_key_ranges(dataset_dir, self.seed, [tr, ho], spans=spans)
        cap = self.train_rows_cap
        # with row spans, the held-out rows available are those of the groups read
        hold_total = n - tr.total if spans is None else ho.total
        return SplitRows(train, holdout, min(tr.total, cap or tr.total), hold_total)

    def _hash_tables(self, table: pa.Table) -> tuple[pa.Table, pa.Table]:
        from pfcore.rowsample import holdout_cut, in_spans, row_keys

        keys = row_keys(self.seed, 0, table.num_rows)
        cut = np.uint64(holdout_cut(self.holdout_fraction))
        inside = in_spans(self.row_spans, 0, table.num_rows)
        hold = np.flatnonzero((keys < cut) & inside)
        train = np.flatnonzero((keys >= cut) & inside)
        cap = self.train_rows_cap
        if cap is not None and len(train) > cap:
            train = np.sort(train[np.argsort(keys[train], kind="stable")[:cap]])
        return table.take(pa.array(train)), table.take(pa.array(hold))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "holdout_fraction": float(self.holdout_fraction),
            "seed": int(self.seed),
            "max_train_rows": None if self.max_train_rows is None else int(self.max_train_rows),
        }
        if self.sample_rows is not None or self.method != "permutation":
            d["sample_rows"] = None if self.sample_rows is None else int(self.sample_rows)
            d["method"] = self.method
            d["dataset_rows"] = None if self.dataset_rows is None else int(self.dataset_rows)
        if self.row_spans is not None:
            d["row_spans"] = [[int(a), int(b)] for a, b in self.row_spans]
        if self.read_note is not None:
            d["read_note"] = self.read_note
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Split:
        def opt(key: str) -> int | None:
            return None if d.get(key) is None else int(d[key])

        return cls(
            holdout_fraction=float(d["holdout_fraction"]),
            seed=int(d["seed"]),
            max_train_rows=opt("max_train_rows"),
            sample_rows=opt("sample_rows"),
            method=str(d.get("method", "permutation")),
            dataset_rows=opt("dataset_rows"),
            row_spans=None
            if d.get("row_spans") is None
            else tuple((int(a), int(b)) for a, b in d["row_spans"]),
            read_note=d.get("read_note"),
        )

    def same_holdout(self, other: Split) -> bool:
        """Whether ``other`` holds out the same rows (fraction, seed and method agree)."""
        return (self.holdout_fraction, self.seed, self.method) == (
            other.holdout_fraction,
            other.seed,
            other.method,
        )


class SplitRows(NamedTuple):
    """Rows read for a split, and how many each side holds in the whole dataset."""

    train: pa.Table
    holdout: pa.Table
    #: Training rows the split yields (the sample's size: what the model was fitted on).
    train_total: int
    #: Held-out rows in the dataset (``holdout`` is a uniform subset of them when smaller).
    holdout_total: int


def _holdout_count(n: int, holdout_fraction: float) -> int:
    """Rows :func:`split_train_holdout` holds out of ``n``."""
    n_hold = int(round(n * holdout_fraction))
    if holdout_fraction > 0 and n_hold == 0 and n >= 2:
        n_hold = 1
    return n_hold


def _min_cap(a: int | None, b: int | None) -> int | None:
    caps = [c for c in (a, b) if c is not None]
    return min(caps) if caps else None


def _bounded(table: pa.Table, rows: int | None, seed: int, stream: int) -> pa.Table:
    """``table``, or a seeded uniform subset of ``rows`` of its rows (in their order)."""
    if rows is None or table.num_rows <= rows:
        return table
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xB0D, stream]))
    idx = np.sort(rng.choice(table.num_rows, size=rows, replace=False))
    return table.take(pa.array(idx))


@dataclass
class Synthesizer:
    """Schema, fitted transform and fitted model that together sample Arrow tables."""

    schema: TableSchema
    transformer: TableTransformer
    model: GenerativeModel
    info: dict[str, Any] = field(default_factory=dict)
    rules: RuleSet | None = None

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
        holdout: pa.Table | None = None,
        rules: RuleSet | None = None,
        enforce_rules: bool = True,
        table_stats: TableStats | None = None,
    ) -> Synthesizer:
        """Fit the transform on ``table`` and train a model of ``family`` on its encoding.

        ``valid_fraction`` of the rows are held out of the gradient steps and used only for
        early stopping, so the stopping signal is not fooled by memorisation.
        ``protect_extremes``: numeric value protection (``PROTECT_EXTREMES``).
        ``split``: how ``table`` was cut from the full dataset, recorded so validation scores
        against the same holdout (see :class:`Split`).
        ``holdout``: rows kept out of training; detected rules must hold on >= 99.9% of them.
        ``rules``: declared rules (and ``detect`` / ``ignore``; ``pfcore.rules.RuleSet``); the
        rules in force are decided by ``pfcore.rules.collect_rules`` and enforced by the
        transform; ``self.rules`` records them. ``enforce_rules=False`` records the rules but
        builds the transform as before rules existed (fixed combinations found by
        ``transforms.derived``, nothing else enforced): the baseline the rules benchmark
        compares against.
        ``table_stats``: the whole table's statistics when ``table`` is a sample of it
        (``pfcore.tablestats.stats_for_fit``); the transform takes its categories, their
        pooling and value protection's bounds from them.
        """
        from pfcore.io import plain_table
        from pfcore.models import build
        from pfcore.transforms import TableTransformer

        table = plain_table(table)
        holdout = None if holdout is None else plain_table(holdout)
        if table.num_rows < 2:
            raise ModelError(f"need at least 2 rows to train, got {table.num_rows}")
        schema.require_modelled()
        t0 = time.perf_counter()
        from pfcore.codes import numeric_codes
        from pfcore.rules.collect import collect_rules, force_unique_ids
        from pfcore.rules.ruleset import RuleSet

        found = collect_rules(table, holdout, schema, rules, seed=seed)
        rules_seconds = time.perf_counter() - t0
        fit_schema = force_unique_ids(schema, found) if enforce_rules else schema
        fit_schema = numeric_codes(fit_schema, table, found)
        cfg = dict(config or {})
        cfg.setdefault("seed", seed)
        if device is not None:
            cfg["device"] = device
        model = build(family, cfg, preset=preset)
        transformer = TableTransformer.fit(
            table,
            fit_schema,
            seed=seed,
            protect_extremes=protect_extremes,
            rules=found if enforce_rules else None,
            table_stats=table_stats,
            cells=bool(getattr(model.config, "latent_cells", False)),
        )
        if not enforce_rules:
            for r in found:
                r.active, r.enforcement, r.note = False, "none", "enforcement switched off"

        ruleset = RuleSet(
            rules=found,
            ignore=list(rules.ignore) if rules else [],
            detect=rules.detect if rules else True,
        )
        x = transformer.encode(table, seed=seed)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xFA11D]))
        perm = rng.permutation(len(x))
        n_valid = int(len(x) * valid_fraction) if len(x) >= 20 else 0
        valid = x[perm[:n_valid]] if n_valid else None
        train = x[perm[n_valid:]] if n_valid else x
        bans = _class_bans(found if enforce_rules else [], transformer, model)
        if preset == "gpu" and model.device.type != "cuda":
            _log.warning(
                "preset 'gpu' on %s: its networks are sized for a CUDA device and train far "
                "fewer steps here in the same minutes; preset 'balanced' is sized for a CPU",
                model.device,
            )
        from pfcore.fidelity.detection import decoded_view

        view = decoded_view(lambda enc: transformer.decode(enc, seed=seed), fit_schema)
        from pfcore.labels import find_label_keys

        class_keys = find_label_keys(table, transformer, x, seed=seed)
        summary = model.fit(
            train,
            transformer.blocks,
            valid=valid,
            callbacks=callbacks,
            detector_view=view,
            bans=bans,
            class_keys=class_keys,
        )
        info = {
            "family": family,
            "protect_extremes": int(protect_extremes),
            "preset": preset,
            "seed": seed,
            "train_rows": int(len(train)),
            "valid_rows": int(0 if valid is None else len(valid)),
            "n_features": int(x.shape[1]),
            "fit_seconds": round(time.perf_counter() - t0, 3),
            "rules_seconds": round(rules_seconds, 3),
            "rules_active": len(ruleset.active),
            # what categories, pooling and value protection were counted on
            "transform_counts": "table" if table_stats is not None else "training rows",
            "fit_summary": summary,
        }
        if split is not None:
            info["split"] = split.to_dict()
        return cls(
            schema=fit_schema, transformer=transformer, model=model, info=info, rules=ruleset
        )

    @property
    def split(self) -> Split | None:
        """The recorded train/holdout split (None for a synthesizer saved without one)."""
        d = self.info.get("split")
        return Split.from_dict(d) if d else None

    # ------------------------------------------------------------------ sampling
    @property
    def latent_dim(self) -> int:
        return int(self.model.latent_dim)

    def push(self, z: torch.Tensor) -> torch.Tensor:
        """Map latent noise to encoded rows; a float32 tensor left on the model's device
        (``sampling.forward`` decides whether the decode takes it there or on the host)."""
        return self.model.push(z.to(self.model.device)).float()

    def push_conditional(
        self,
        z: torch.Tensor,
        known: torch.Tensor,
        mask: torch.Tensor,
        seed: int,
        method: str,
        evidence: dict[int, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Encoded rows whose ``mask``ed dims equal ``known``: the family's conditional sampler
        ``method`` (a compiled request's, ``pfcore.condition_plan``), a float32 tensor on the
        model's device, like :meth:`push`. ``evidence``: per discrete block (its first
        feature) ``(rows, classes)`` log-weights of its classes
        (``CompiledConditions.evidence``), for a sampler that draws that block."""
        from pfcore.models.conditional import conditional_push

        cache = self.__dict__.setdefault("_conditional_push", {})
        push = cache.get(method)
        if push is None:
            push = cache[method] = conditional_push(self.model, method=method)
        return push(z.to(self.model.device), known, mask, seed, evidence).float()

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
        meets them exactly. Their ``method`` picks the conditional sampler ("auto": the
        model's student when it has one, else flow inpainting).
        """
        tables = list(
            self.iter_blocks(n, seed, block_rows=block_rows, noise=noise, conditions=conditions)
        )
        if not tables:
            empty = np.zeros((0, int(self.transformer.n_features)), dtype=np.float32)
            return self.transformer.decode(empty, seed=0, row_offset=0)
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the synthesizer atomically: a crash never leaves a half-written directory."""
        from pfcore.models.conditional import save_teacher

        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            self.schema.save(tmp / "schema.json")
            if self.rules is not None:
                self.rules.save(tmp / "rules.json")
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
        from pfcore.rules.ruleset import RuleSet

        # Saved before rules existed: no rules.json, nothing enforced beyond the transform.
        rules = (
            RuleSet.load(directory / "rules.json") if (directory / "rules.json").exists() else None
        )
        attach_teacher(model, directory / "model", device=device)
        return cls(schema=schema, transformer=transformer, model=model, info=meta, rules=rules)


def _class_bans(rules: list[Any], transformer: Any, model: Any) -> np.ndarray:
    """The class pairs the model must never draw together (``rules.masks``); a family that
    cannot mask classes gets none, and its masked rules are switched off with a note."""
    from pfcore.rules.masks import class_bans, unmask

    bans = class_bans(rules, transformer)
    if len(bans) and not model.masks_classes:
        for r in rules:
            if r.active and r.enforcement == "masked":
                unmask(r, f"family {model.family!r} does not draw classes one column at a time")
        return bans[:0]
    return bans
