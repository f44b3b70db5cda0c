"""TableTransformer: a whole table <-> a float32 matrix, built from per-column transforms."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pfcore.atomic import atomic_write
from pfcore.errors import InputError, SchemaError
from pfcore.schema import TableSchema
from pfcore.tablestats import ColumnStats, TableStats
from pfcore.transforms.base import (
    ENCODE_STREAM,
    Block,
    ColumnTransform,
    decode_rng,
    onehot,
    rng_for,
)
from pfcore.transforms.categorical import CategoricalTransform
from pfcore.transforms.cells import FIT_ROWS as CELL_FIT_ROWS
from pfcore.transforms.cells import Cells, find_cells
from pfcore.transforms.derived import DerivedTransform, derived_from, find_derived
from pfcore.transforms.formulas import Formula, find_formulas
from pfcore.transforms.numeric import NumericTransform
from pfcore.transforms.pooled_parent import choose_parent
from pfcore.transforms.regenerated import ConstantTransform, IdTransform
from pfcore.transforms.ruled import (
    RULED,
    ClockTransform,
    ComputedTransform,
    ConditionedTransform,
    DateSnapTransform,
    FormulaTransform,
    GapTransform,
    MonthDayTransform,
    PinnedTransform,
    RuleTransform,
    TiedTransform,
)
from pfcore.transforms.text import TextTransform
from pfcore.transforms.ties import find_ties

if TYPE_CHECKING:
    from pfcore.rules.model import Rule
    from pfcore.rules.repair import OrderRepair

FORMAT_VERSION = 1
_BY_KIND: dict[str, type[ColumnTransform]] = {
    "continuous": NumericTransform,
    "integer": NumericTransform,
    "datetime": NumericTransform,
    "categorical": CategoricalTransform,
    "boolean": CategoricalTransform,
    "constant": ConstantTransform,
    "id": IdTransform,
    "text": TextTransform,
}


class TableTransformer:
    """Fit on a table + schema; encode rows to model features and decode model output to rows.

    ``decode(x, seed=, row_offset=)`` is a pure function of its arguments (all randomness comes
    from ``SeedSequence([seed, stream, row_offset, column name])``), takes raw model output
    (argmax per onehot block, any float for numeric blocks) and returns exactly
    ``schema.arrow_schema()``.
    """

    def __init__(
        self,
        schema: TableSchema,
        transforms: list[ColumnTransform],
        repairs: list[OrderRepair] | None = None,
        cells: list[Cells] | None = None,
    ) -> None:
        self.schema = schema
        self.transforms = transforms
        #: orders no construction builds, kept last on the rows that break them
        self.repairs: list[OrderRepair] = list(repairs or [])
        #: latent classes after every column's blocks (``transforms.cells``): encoded, never
        #: decoded
        self.cells: list[Cells] = list(cells or [])
        self._arrow_schema = schema.arrow_schema()
        self.blocks: list[Block] = []
        self._slices: list[tuple[int, int]] = []
        start = 0
        for tr in transforms:
            col_start = start
            for label, kind, width in tr.layout():
                self.blocks.append(Block(label, kind, start, width))
                start += width
            self._slices.append((col_start, start))
        for cell in self.cells:
            self.blocks.append(Block(cell.name, "onehot", start, cell.width))
            start += cell.width
        self.n_features = start
        self._index_of = {tr.column.name: i for i, tr in enumerate(transforms)}
        self._late = _late_order(transforms, self._index_of)

    # -- fit -----------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        table: pa.Table,
        schema: TableSchema,
        *,
        seed: int = 0,
        protect_extremes: int = 0,
        rules: list[Rule] | None = None,
        table_stats: TableStats | None = None,
        cells: bool = False,
    ) -> TableTransformer:
        """``protect_extremes``: numeric value protection (see ``numeric``); 0 = exact.

        ``table_stats``: statistics of the whole table when ``table`` is a sample of it
        (``pfcore.tablestats.stats_for_fit``): categories and their pooling come from its
        counts, value protection from its extremes (``categorical``, ``numeric``). Columns
        built from others (rules, lookups) and the sources of lookups are fitted on ``table``
        alone: a lookup knows only the source values its rows hold.

        ``rules``: enforce these by construction (``pfcore.rules.plan`` sets each one's
        ``active`` / ``enforcement``); fixed combinations then come only from the rules. None:
        no rules, and fixed combinations are found by ``derived.find_derived`` as before.

        ``cells``: add latent cells of the groups of related numbers (``transforms.cells``).
        """
        from pfcore.rules.plan import Plan, plan_rules

        table = _select(table, schema)
        transforms: list[ColumnTransform] = []
        if rules is None:
            plan = Plan()
            derived = find_derived(table, list(schema.columns), seed=seed)
        else:
            plan = plan_rules(rules, schema, table)
            derived = derived_from(table, list(schema.columns), plan.derived)
        sources = {d.source for d in derived.values()}
        # A detected implication's column is modelled as it is (only a few rows are
        # overwritten), so it may be a tie's partner; a column tied to another keeps its ties
        # instead. A declared one keeps its rule.
        implied = {
            n
            for n, r in plan.conditioned.items()
            if r.params.get("implies") and r.origin != "declared"
        }
        ties = find_ties(
            table,
            list(schema.columns),
            seed,
            skip=(plan.built() - implied) | set(derived),
            reads=plan.reads,
        )
        for name in implied & set(ties):
            r = plan.conditioned.pop(name)
            r.active, r.enforcement = False, "none"
            r.note = f"{name!r} is tied to another column; its ties are modelled instead"
        formulas = find_formulas(
            table,
            list(schema.columns),
            seed,
            skip=plan.built() | set(derived) | set(ties) | set(ties.values()),
        )

        text_parents: dict[str, pa.Array] | None = None  # computed at the first text column

        def whole(name: str) -> ColumnStats | None:
            return None if table_stats is None or name in sources else table_stats.get(name)

        for col in schema.columns:
            kls = _BY_KIND[col.kind]
            rng = rng_for(seed, ENCODE_STREAM, col.name)
            if col.name in plan.computed:
                formula, with_inner = plan.computed[col.name]
                transforms.append(
                    ComputedTransform.fit(
                        col,
                        table,
                        formula,
                        rng,
                        with_inner=with_inner,
                        protect_extremes=protect_extremes,
                    )
                )
            elif col.name in plan.month_days:
                transforms.append(
                    MonthDayTransform.fit(
                        col,
                        table,
                        plan.month_days[col.name],
                        rng,
                        protect_extremes=protect_extremes,
                    )
                )
            elif col.name in plan.clocks:
                transforms.append(
                    ClockTransform.fit(
                        col,
                        table,
                        plan.clocks[col.name],
                        rng,
                        protect_extremes=protect_extremes,
                        base=plan.clock_bases.get(col.name),
                    )
                )
            elif col.name in plan.conditioned:
                r = plan.conditioned[col.name]
                transforms.append(
                    ConditionedTransform.fit(
                        col,
                        table,
                        r.columns[1:] if r.params.get("implies") else r.columns[1],
                        r.params["special"],
                        r.params["when"],
                        rng,
                        protect_extremes=protect_extremes,
                        implies=bool(r.params.get("implies")),
                    )
                )
            elif col.name in plan.gaps:
                direction, parents, _strict = plan.gaps[col.name]
                transforms.append(
                    GapTransform.fit(
                        col,
                        table,
                        parents,
                        direction,
                        rng,
                        [schema[p].decimals for p in parents],
                        protect_extremes=protect_extremes,
                        overwrite=_overwrite(plan.overwrites.get(col.name)),
                    )
                )
            elif col.name in plan.pinned:
                rule = plan.pinned[col.name]
                pinned = PinnedTransform.fit(
                    col,
                    table,
                    rule.columns[1:],
                    rng,
                    protect_extremes=protect_extremes,
                    stats=whole(col.name),
                )
                transforms.append(pinned)
                pinned.restate(rule)
            elif col.name in plan.snapped:
                transforms.append(
                    DateSnapTransform.fit(
                        col,
                        table,
                        plan.snapped[col.name],
                        rng,
                        protect_extremes=protect_extremes,
                        stats=whole(col.name),
                    )
                )
            elif col.name in derived:
                transforms.append(derived[col.name])
            elif col.name in formulas:
                transforms.append(
                    FormulaTransform.fit(
                        col,
                        table,
                        formulas[col.name].to_dict(),
                        rng,
                        protect_extremes=protect_extremes,
                    )
                )
            elif col.name in ties:
                transforms.append(
                    TiedTransform.fit(
                        col,
                        table,
                        ties[col.name],
                        rng,
                        protect_extremes=protect_extremes,
                        stats=whole(col.name),
                    )
                )
            elif kls in (ConstantTransform, IdTransform):
                transforms.append(kls(col))
            elif kls is TextTransform:
                if text_parents is None:
                    text_parents = _text_parents(table, schema)
                transforms.append(TextTransform.fit(col, table.column(col.name), rng, text_parents))
            elif kls is NumericTransform:
                transforms.append(
                    NumericTransform.fit(
                        col,
                        table.column(col.name),
                        rng,
                        protect_extremes=protect_extremes,
                        table=whole(col.name),
                    )
                )
            else:
                transforms.append(
                    CategoricalTransform.fit(
                        col, table.column(col.name), rng, table=whole(col.name)
                    )
                )
        _link_pooled_parents(table, transforms)
        for i, tr in enumerate(transforms):  # a parent must decode as a plain categorical
            if isinstance(tr, TextTransform) and tr.parent is not None:
                parent = next(t for t in transforms if t.column.name == tr.parent)
                if type(parent) is not CategoricalTransform or parent.has_other:
                    rng = rng_for(seed, ENCODE_STREAM, tr.column.name)
                    transforms[i] = TextTransform.fit(tr.column, table.column(tr.column.name), rng)
        repairs = None
        if rules is not None:
            from pfcore.rules.repair import plan_repairs

            by_name = {tr.column.name: tr for tr in transforms}
            repairs = plan_repairs(rules, schema, plan, by_name, table)
        out = cls(schema, transforms, repairs)
        if not cells:
            return out
        rows = np.random.default_rng(np.random.SeedSequence([seed, 0xCE11])).permutation(
            table.num_rows
        )[:CELL_FIT_ROWS]
        x = out.encode(table.take(pa.array(np.sort(rows))), seed=seed)
        numeric = [(b.column, b.start) for b in out.blocks if b.kind == "numeric"]
        slots = [x[:, b.start : b.stop].argmax(1) for b in out.blocks if b.kind == "onehot"]
        classes = np.stack(slots, axis=1) if slots else None
        taken = {c.name for c in schema.columns} | {b.column for b in out.blocks}
        found = find_cells(x, numeric, seed, taken, classes)
        return cls(schema, transforms, repairs, found)

    # -- encode / decode -------------------------------------------------------------------
    def encode(self, table: pa.Table, *, seed: int = 0) -> np.ndarray:
        """(n, n_features) float32; repeated values are spread by a seeded draw (see numeric)."""
        table = _select(table, self.schema)
        out = np.empty((table.num_rows, self.n_features), dtype=np.float32)
        for tr, (a, b) in zip(self.transforms, self._slices, strict=True):
            rng = rng_for(seed, ENCODE_STREAM, tr.column.name)
            if b > a and isinstance(tr, RuleTransform):
                out[:, a:b] = tr.encode_from(table, rng)
            elif b > a:
                out[:, a:b] = tr.encode(table.column(tr.column.name), rng)
        start = self._slices[-1][1] if self._slices else 0
        for cell in self.cells:
            out[:, start : start + cell.width] = onehot(cell.assign(out), cell.width)
            start += cell.width
        return out

    def decode(
        self, x: np.ndarray, *, seed: int = 0, row_offset: int = 0, repair: bool = True
    ) -> pa.Table:
        """Model output to the source's table. A torch tensor decodes on its own device
        (``torch_decode``, bit-identical to this NumPy path); anything else decodes here.
        ``repair=False`` leaves the repaired orders to the caller (a conditional request
        repairs after writing its given values, which must not move)."""
        if _is_tensor(x):
            from pfcore.transforms.torch_decode import decoder_for

            table = decoder_for(self, x.device).decode(x, seed=seed, row_offset=row_offset)
            return self.repaired(table) if repair else table
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"decode expects shape (n, {self.n_features}), got {x.shape}")
        n = x.shape[0]
        slots: dict[int, np.ndarray] = {}  # argmax once per categorical, shared with its children

        def slots_of(j: int) -> np.ndarray:
            if j not in slots:
                tr_j = self.transforms[j]
                assert isinstance(tr_j, CategoricalTransform)
                a_j, b_j = self._slices[j]
                slots[j] = tr_j.decoded_slots(x[:, a_j:b_j])
            return slots[j]

        arrays: list[pa.Array | None] = []
        for i, (tr, (a, b)) in enumerate(zip(self.transforms, self._slices, strict=True)):
            rng = decode_rng(seed, row_offset, tr.column.name)
            if isinstance(tr, CategoricalTransform):
                parent = None if tr.link is None else slots_of(self._index_of[tr.link.parent])
                arrays.append(tr.decode_slots(slots_of(i), n, rng, parent_slots=parent))
            elif isinstance(tr, (DerivedTransform, RuleTransform, TextTransform)):
                arrays.append(None)  # built from other columns (text: after its parent), below
            else:
                arrays.append(tr.decode(x[:, a:b], n, rng, row_offset))
        for i, tr in enumerate(self.transforms):
            if isinstance(tr, TextTransform):
                a, b = self._slices[i]
                rng = decode_rng(seed, row_offset, tr.column.name)
                parent = None if tr.parent is None else arrays[self._index_of[tr.parent]]
                arrays[i] = tr.decode_given(x[:, a:b], n, rng, parent)
        for i in self._late:  # dependencies first (see _late_order)
            tr = self.transforms[i]
            if isinstance(tr, DerivedTransform):
                arrays[i] = tr.decode_from(arrays[self._index_of[tr.source]])
            else:
                assert isinstance(tr, RuleTransform)
                a, b = self._slices[i]
                resolved = {c: arrays[self._index_of[c]] for c in tr.depends_on}
                rng = decode_rng(seed, row_offset, tr.column.name)
                arrays[i] = tr.decode_with(x[:, a:b], n, rng, row_offset, resolved)
                if isinstance(tr, DateSnapTransform):  # its parts feed nothing else (the plan)
                    for name, arr in tr.parts_of(arrays[i], resolved).items():
                        arrays[self._index_of[name]] = arr
        table = pa.Table.from_arrays(arrays, schema=self._arrow_schema)
        return self.repaired(table) if repair else table

    def formulas(self) -> list[Formula]:
        """The formulas its formula columns are modelled by (``transforms.formulas``)."""
        return [
            Formula.from_dict({**t.formula, "target": t.column.name})
            for t in self.transforms
            if isinstance(t, FormulaTransform)
        ]

    def repaired(self, table: pa.Table) -> pa.Table:
        """``table`` with the repaired orders holding (``rules.repair``); a conditional request
        runs them itself, holding its given columns."""
        if not self.repairs:
            return table
        from pfcore.rules.repair import apply_repairs

        return apply_repairs(table, self.repairs)

    # -- persistence -----------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """``transform.json`` (schema + column settings) and ``transform.safetensors`` (arrays)."""
        from safetensors.numpy import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        cols, tensors = [], {}
        for i, tr in enumerate(self.transforms):
            meta, arrays = tr.state()
            entry = {"name": tr.column.name, "kind": tr.column.kind, "meta": meta}
            if isinstance(tr, (DerivedTransform, RuleTransform)):
                entry["transform"] = tr.kind
            cols.append(entry)
            for k, v in arrays.items():
                tensors[f"{i}.{k}"] = np.ascontiguousarray(v)
        for k, rep in enumerate(self.repairs):
            for c, v in rep.values.items():
                tensors[f"repair.{k}.{c}"] = np.ascontiguousarray(v)
        for k, cell in enumerate(self.cells):
            for name, v in cell.arrays().items():
                tensors[f"cells.{k}.{name}"] = v
        doc = {
            "format_version": FORMAT_VERSION,
            "n_features": self.n_features,
            "blocks": [b.__dict__ for b in self.blocks],
            "schema": self.schema.to_dict(),
            "columns": cols,
            "repairs": [rep.to_dict() for rep in self.repairs],
            "cells": [cell.to_dict() for cell in self.cells],
        }
        atomic_write(directory / "transform.safetensors", lambda p: save_file(tensors, str(p)))
        atomic_write(
            directory / "transform.json",
            lambda p: p.write_text(
                json.dumps(doc, ensure_ascii=False, allow_nan=False), encoding="utf-8"
            ),
        )
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> TableTransformer:
        from safetensors.numpy import load_file

        directory = Path(directory)
        try:
            doc = json.loads((directory / "transform.json").read_text(encoding="utf-8"))
            tensors = load_file(str(directory / "transform.safetensors"))
        except FileNotFoundError as exc:
            raise InputError(
                "not a saved TableTransformer (transform.json / .safetensors missing)",
                path=directory,
            ) from exc
        if doc.get("format_version", 0) > FORMAT_VERSION:
            raise SchemaError(
                f"{directory}: transform format {doc['format_version']} is newer than supported"
            )
        schema = TableSchema.from_dict(doc["schema"])
        transforms: list[ColumnTransform] = []
        for i, (col, c) in enumerate(zip(schema.columns, doc["columns"], strict=True)):
            arrays = _prefixed(tensors, f"{i}.")
            if c.get("transform") == DerivedTransform.kind:
                source_type = schema[c["meta"]["source"]].type
                transforms.append(DerivedTransform.from_state(col, c["meta"], arrays, source_type))
            elif c.get("transform") in RULED:
                transforms.append(RULED[c["transform"]].from_state(col, c["meta"], arrays))
            else:
                transforms.append(_BY_KIND[col.kind].from_state(col, c["meta"], arrays))
        repairs = []
        if doc.get("repairs"):  # saved before repairs existed: none
            from pfcore.rules.repair import OrderRepair

            for k, rd in enumerate(doc["repairs"]):
                repairs.append(OrderRepair.from_dict(rd, _prefixed(tensors, f"repair.{k}.")))
        cells = [  # saved before cells existed: none
            Cells.from_dict(d, _prefixed(tensors, f"cells.{k}."))
            for k, d in enumerate(doc.get("cells") or [])
        ]
        out = cls(schema, transforms, repairs, cells)
        if out.n_features != doc["n_features"]:
            raise SchemaError(
                f"{directory}: saved transformer has {doc['n_features']} features, "
                f"rebuilt {out.n_features}"
            )
        return out

    def __repr__(self) -> str:
        return f"TableTransformer(columns={len(self.transforms)}, n_features={self.n_features})"


def _prefixed(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The saved arrays under ``prefix``, keyed by the rest of their name."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _is_tensor(x: object) -> bool:
    """A torch tensor, without importing torch (the CLI imports this module at start-up)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _select(table: pa.Table, schema: TableSchema) -> pa.Table:
    """The schema's columns in order, cast to its types (InputError names a missing one)."""
    missing = [c.name for c in schema.columns if c.name not in table.column_names]
    if missing:
        raise InputError(f"table lacks schema columns {missing}", column=missing[0])
    cols = []
    for c in schema.columns:
        arr = table.column(c.name)
        t = c.type
        if arr.type != t:
            try:
                arr = arr.cast(t)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise InputError(
                    f"has type {arr.type}, schema says {t}: {exc}", column=c.name
                ) from None
        cols.append(arr)
    return pa.Table.from_arrays(cols, names=[c.name for c in schema.columns])


def _link_pooled_parents(table: pa.Table, transforms: list[ColumnTransform]) -> None:
    """Give each categorical with pooled values the parent that best predicts them (if any)."""
    cats = [t for t in transforms if isinstance(t, CategoricalTransform)]
    children = [t for t in cats if t.has_other and len(t.pooled) > 0]
    if not children or len(cats) < 2:
        return
    slots = {t.column.name: t.slots_of(table.column(t.column.name)) for t in cats}
    for child in children:
        idx = child.pooled_index(table.column(child.column.name))
        rows = idx >= 0
        candidates = {
            t.column.name: (slots[t.column.name][rows], t.n_slots) for t in cats if t is not child
        }
        child.link = choose_parent(idx[rows], child.pooled_frequencies, candidates)


def _text_parents(table: pa.Table, schema: TableSchema) -> dict[str, pa.Array]:
    """Columns that may pick a text column's chain: categorical or boolean, with at most
    ``text.MAX_PARENT_CLASSES`` values in ``table``."""
    from pfcore.transforms.text import MAX_PARENT_CLASSES

    out = {}
    for c in schema.columns:
        if c.kind in ("categorical", "boolean"):
            arr = table.column(c.name)
            if 2 <= pc.count_distinct(arr).as_py() <= MAX_PARENT_CLASSES:
                out[c.name] = arr.combine_chunks()
    return out


def _late_order(transforms: list[ColumnTransform], index_of: dict[str, int]) -> list[int]:
    """Indices of columns built from other columns, each after the columns it reads."""
    deps: dict[int, list[int]] = {}
    for i, tr in enumerate(transforms):
        if isinstance(tr, DerivedTransform):
            deps[i] = [index_of[tr.source]]
        elif isinstance(tr, RuleTransform):
            deps[i] = [index_of[c] for c in tr.depends_on]
    order: list[int] = []
    state: dict[int, int] = {}

    def visit(i: int) -> None:
        if state.get(i) == 2:
            return
        if state.get(i) == 1:
            raise SchemaError(f"column {transforms[i].column.name!r} depends on itself")
        state[i] = 1
        for j in deps.get(i, ()):
            if j in deps:
                visit(j)
        state[i] = 2
        order.append(i)

    for i in sorted(deps):
        visit(i)
    return order


def _overwrite(rule: Rule | None) -> dict[str, Any] | None:
    """A gap's implication as ``GapTransform`` keeps it: its triggers, their states and the
    value written over the rows they trigger."""
    if rule is None:
        return None
    return {
        "trigger": list(rule.columns[1:]),
        "when": list(rule.params["when"]),
        "sentinel": rule.params["special"]["sentinel"],
    }
