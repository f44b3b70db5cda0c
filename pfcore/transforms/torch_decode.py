"""Decode on the model's device: raw model output (a torch tensor) to final column buffers.

Why: on a GPU the model's forward pass is an order of magnitude faster than the host-side
NumPy decode, so decoding on the host bounds generation. Here every modelled step runs as torch
operations on the tensor's own device -- argmax and category codes, pooled-category redraws,
the numeric inverse (segment search by ``torch.searchsorted`` + :mod:`canonical` interpolation),
grid/decimal snapping, bounds, missing indicators, derived-column lookups as gathers and the
rule-built columns -- and the host receives each column once, as a final buffer:

* numbers: int64 values (integers, datetimes in their unit since epoch) or float64, plus a
  missing mask; :func:`pfcore.transforms.base.arrow_values` casts them to the column's type
  (narrow integers, float32, decimals, time zones), exactly as the NumPy decode does;
* categories (strings and any other categorical, derived values): int64 dictionary codes and
  the dictionary (``DecodedColumn.dictionary_array()`` gives an Arrow ``DictionaryArray``
  without copying the codes).

The output equals ``TableTransformer.decode`` on the same rows bit for bit (tested on CPU, and
on CUDA where present): floats come from the same :mod:`canonical` formulas, integers and
comparisons are exact, and the random redraws of pooled categories use the same NumPy streams
(the few uniforms for the rows that need them are drawn on the host and uploaded).

Host work that remains: constant and id columns (no model data), free text (strings made
of words), a derived column whose source is neither categorical nor integer, and the
rule-built steps that have no exact torch form (identities with fractional coefficients or
non-integer operands, which NumPy computes in long double; clock arithmetic on a float base;
decimal operands; sentinels that NumPy compares as strings; formula columns, whose logs and
powers NumPy and torch may round differently in the last bit): these run the NumPy code on host
copies of their inputs (``TorchDecoder.on_host``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from pfcore.transforms.base import arrow_values, decode_rng
from pfcore.transforms.canonical import clip, interpolate, snap
from pfcore.transforms.categorical import CategoricalTransform, draw_pooled
from pfcore.transforms.derived import DerivedTransform
from pfcore.transforms.numeric import NumericTransform
from pfcore.transforms.regenerated import ConstantTransform, IdTransform
from pfcore.transforms.ruled import (
    ClockTransform,
    ComputedTransform,
    ConditionedTransform,
    DateSnapTransform,
    GapTransform,
    PinnedTransform,
    RuleTransform,
    TiedTransform,
)
from pfcore.transforms.text import TextTransform

if TYPE_CHECKING:
    from pfcore.transforms.table import TableTransformer

__all__ = ["DecodedColumn", "TorchDecoder", "decoder_for"]


@dataclass
class DecodedColumn:
    """One decoded column: on the device while decoding, on the host after ``to_host``.

    Exactly one form is set: ``values`` (+ ``missing``), ``codes`` + ``dictionary``, or
    ``array`` (built on the host: constant and id columns, host fallbacks).
    """

    type: pa.DataType
    values: Any = None  # tensor / ndarray: int64 or float64
    missing: Any = None  # bool tensor / ndarray, or None
    codes: Any = None  # int64 tensor / ndarray into ``dictionary``
    dictionary: pa.Array | None = None
    array: pa.Array | None = None

    def to_host(self) -> DecodedColumn:
        """Start the copy of this column's buffers to (pinned) host memory, asynchronously."""
        return DecodedColumn(
            self.type,
            _to_host(self.values),
            _to_host(self.missing),
            _to_host(self.codes),
            self.dictionary,
            self.array,
        )

    def numpy(self) -> DecodedColumn:
        """Host form with NumPy buffers (after the device copies have finished)."""
        return DecodedColumn(
            self.type,
            _np(self.values),
            _np(self.missing),
            _np(self.codes),
            self.dictionary,
            self.array,
        )

    def dictionary_array(self) -> pa.DictionaryArray:
        """Codes + dictionary as an Arrow DictionaryArray (host form, categorical columns)."""
        assert self.codes is not None and self.dictionary is not None
        return pa.DictionaryArray.from_arrays(pa.array(_np(self.codes)), self.dictionary)

    def arrow(self) -> pa.Array:
        """The column as the NumPy decode returns it (host form)."""
        if self.array is not None:
            return self.array
        if self.codes is not None:
            assert self.dictionary is not None
            return self.dictionary.take(pa.array(_np(self.codes), type=pa.int64()))
        return arrow_values(_np(self.values), _np(self.missing), self.type)


def _to_host(t: Any) -> Any:
    if not isinstance(t, torch.Tensor) or t.device.type == "cpu":
        return t
    out = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    out.copy_(t, non_blocking=True)
    return out


def _tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array on ``device`` (copied first if Arrow handed out a read-only view)."""
    return torch.from_numpy(np.require(a, requirements=["C", "W"])).to(device)


def _np(t: Any) -> Any:
    return t.numpy() if isinstance(t, torch.Tensor) else t


class TorchDecoder:
    """A transformer's decode tables as tensors on one device (built once, reused per block)."""

    def __init__(self, transformer: TableTransformer, device: torch.device | str) -> None:
        self.tr = transformer
        self.device = torch.device(device)
        self._tensors: dict[tuple[int, str], torch.Tensor] = {}
        #: columns whose last decode ran NumPy code on the host (see the module docstring)
        self.on_host: set[str] = set()

    # -- cached constants ----------------------------------------------------------------
    def _const(self, key: tuple[int, str], make: Any) -> torch.Tensor:
        if key not in self._tensors:
            self._tensors[key] = _tensor(make(), self.device)
        return self._tensors[key]

    def _upload(self, a: np.ndarray) -> torch.Tensor:
        return _tensor(a, self.device)

    # -- entry points ----------------------------------------------------------------------
    def decode(self, x: torch.Tensor, *, seed: int = 0, row_offset: int = 0) -> pa.Table:
        """Same table as ``TableTransformer.decode(x.cpu().numpy(), seed=, row_offset=)``."""
        cols = self.decode_columns(x, seed=seed, row_offset=row_offset)
        return columns_to_table(cols, self.tr._arrow_schema)

    def decode_columns(
        self, x: torch.Tensor, *, seed: int = 0, row_offset: int = 0
    ) -> list[DecodedColumn]:
        """Final column buffers on the host (one asynchronous copy per buffer, one sync)."""
        on_device = self.device_columns(x, seed=seed, row_offset=row_offset)
        host = [c.to_host() for c in on_device]
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        return [c.numpy() for c in host]

    def device_columns(
        self, x: torch.Tensor, *, seed: int = 0, row_offset: int = 0
    ) -> list[DecodedColumn]:
        """Decoded columns, buffers still on the device."""
        with torch.inference_mode():
            return self._device_columns(x, seed, row_offset)

    def _device_columns(self, x: torch.Tensor, seed: int, row_offset: int) -> list[DecodedColumn]:
        tr = self.tr
        if x.ndim != 2 or x.shape[1] != tr.n_features:
            raise ValueError(f"decode expects shape (n, {tr.n_features}), got {tuple(x.shape)}")
        x = x.to(self.device)
        n = int(x.shape[0])
        self.on_host = set()
        slots: dict[int, torch.Tensor] = {}

        def slots_of(j: int) -> torch.Tensor:
            if j not in slots:
                a, b = tr._slices[j]
                slots[j] = _argmax_slots(x[:, a:b])
            return slots[j]

        def rng(name: str) -> np.random.Generator:
            return decode_rng(seed, row_offset, name)

        cols: list[DecodedColumn | None] = []
        for i, (t, (a, b)) in enumerate(zip(tr.transforms, tr._slices, strict=True)):
            if isinstance(t, CategoricalTransform):
                parent = None if t.link is None else slots_of(tr._index_of[t.link.parent])
                cols.append(self._categorical(i, t, slots_of(i), n, rng(t.column.name), parent))
            elif isinstance(t, NumericTransform):
                cols.append(self._numeric(i, t, x[:, a:b]))
            elif isinstance(t, (ConstantTransform, IdTransform)):
                cols.append(DecodedColumn(t.type, array=t.decode(None, n, None, row_offset)))  # type: ignore[arg-type]
            else:
                cols.append(None)  # built from other columns (text: after its parent), below
        for i, t in enumerate(tr.transforms):
            if isinstance(t, TextTransform):  # words on the host; its case from x
                self.on_host.add(t.column.name)
                a, b = tr._slices[i]
                flag = x[:, a:b].float().cpu().numpy()
                parent = (
                    None if t.parent is None else _host_arrow(cols[tr._index_of[t.parent]])  # type: ignore[arg-type]
                )
                array = t.decode_given(flag, n, rng(t.column.name), parent)
                cols[i] = DecodedColumn(t.type, array=array)
        for i in tr._late:
            t = tr.transforms[i]
            if isinstance(t, DerivedTransform):
                cols[i] = self._derived(i, t, cols[tr._index_of[t.source]])  # type: ignore[arg-type]
            else:
                assert isinstance(t, RuleTransform)
                a, b = tr._slices[i]
                resolved = {c: cols[tr._index_of[c]] for c in t.depends_on}
                cols[i] = self._ruled(i, t, x[:, a:b], n, rng(t.column.name), row_offset, resolved)  # type: ignore[arg-type]
                if isinstance(t, DateSnapTransform):  # on the host, as its date (see _ruled)
                    host = {c: _host_arrow(col) for c, col in resolved.items()}  # type: ignore[union-attr]
                    date = _host_arrow(cols[i])  # type: ignore[arg-type]
                    for name, arr in t.parts_of(date, host).items():
                        cols[tr._index_of[name]] = DecodedColumn(arr.type, array=arr)
        return cols  # type: ignore[return-value]

    # -- categorical -----------------------------------------------------------------------
    def _categorical(
        self,
        i: int,
        t: CategoricalTransform,
        slot: torch.Tensor,
        n: int,
        rng: np.random.Generator,
        parent_slots: torch.Tensor | None,
    ) -> DecodedColumn:
        if len(t._combined) == 0:
            return DecodedColumn(t.type, array=pa.nulls(n, type=t.type))
        if t.has_other:
            other = slot == t._other_slot
            idx = torch.nonzero(other).squeeze(1)
            m = int(idx.numel())  # one scalar sync per pooled column and block
            if m:
                slot = slot.clone()
                base = len(t.kept) + int(t.has_null)
                cdf = t._pooled_cdf
                if cdf.size and t.link is not None and parent_slots is not None:
                    draws = self._parent_draw(i, t, parent_slots[idx], rng, m)
                    slot[idx] = base + draws
                elif cdf.size:
                    draws = self._upload(draw_pooled(m, t.pooled_counts, rng))
                    slot[idx] = base + draws.to(slot.dtype)
                elif len(t.kept):
                    slot[idx] = 0
                else:
                    slot[idx] = t._null_slot
        return DecodedColumn(t.type, codes=slot, dictionary=t._combined)

    def _parent_draw(
        self,
        i: int,
        t: CategoricalTransform,
        pslots: torch.Tensor,
        rng: np.random.Generator,
        m: int,
    ) -> torch.Tensor:
        """``ParentLink.draw`` as tensor operations (same uniforms, same comparisons)."""
        link = t.link
        assert link is not None
        u = self._upload(rng.random(m))
        r = self._upload(rng.random(m))
        weight = self._const((i, "parent_weight"), lambda: link.weight)
        cdf = self._const((i, "parent_cdf"), lambda: link.cdf)
        values = self._const((i, "parent_values"), lambda: link.values)
        marginal = (
            self._const((i, "pooled_cdf"), lambda: t._pooled_cdf)
            if link.marginal is None
            else self._const((i, "parent_marginal"), lambda: link.marginal)
        )
        s = torch.clamp(pslots, max=link.weight.size - 1)
        out = torch.clamp(torch.searchsorted(marginal, r, right=True), max=marginal.numel() - 1)
        cond = u < weight[s]
        pos = torch.searchsorted(cdf, s.to(torch.float64) + r, right=True)
        cond_value = values[torch.clamp(pos, max=values.numel() - 1)]
        return torch.where(cond, cond_value, out)

    # -- numeric ---------------------------------------------------------------------------
    def _numeric_values(
        self, i: int, t: NumericTransform, xs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``NumericTransform.decode_values`` on the device."""
        qn = t.qn
        zp = self._const((i, "z_pts"), lambda: qn.z_pts)
        vp = self._const((i, "v_pts"), lambda: qn.v_pts)
        z = xs[:, 0].to(torch.float64)
        zc = z.clamp(min=float(qn.z_pts[0]), max=float(qn.z_pts[-1]))
        last = int(zp.numel()) - 1
        j = torch.searchsorted(zp, zc, right=True) - 1
        j = j.clamp(min=0, max=max(last - 1, 0))
        v = snap(interpolate(zc, j, zp, vp), t.grid, t.decimals)
        v = clip(v, t.lo, t.hi)
        missing = (xs[:, 2] > xs[:, 1]) if t.has_missing else None
        if t.integral:
            return v.to(torch.int64) + int(t.offset), missing
        return v, missing

    def _numeric(self, i: int, t: NumericTransform, xs: torch.Tensor) -> DecodedColumn:
        values, missing = self._numeric_values(i, t, xs)
        return DecodedColumn(t.type, values=values, missing=missing)

    # -- derived ---------------------------------------------------------------------------
    def _derived(self, i: int, t: DerivedTransform, src: DecodedColumn) -> DecodedColumn:
        if src.codes is not None:  # categorical source: one lookup per dictionary entry
            assert src.dictionary is not None
            dictionary = src.dictionary  # fixed per source column: looked up once
            table = self._const((i, "positions"), lambda: t.positions(dictionary))
            return DecodedColumn(t.type, codes=table[src.codes], dictionary=t.values)
        if src.values is not None and t._numeric_keys and src.values.dtype == torch.int64:
            return DecodedColumn(t.type, codes=self._nearest_key(i, t, src), dictionary=t.values)
        source = _host_arrow(src)  # other sources: the NumPy lookup on the host
        self.on_host.add(t.column.name)
        return DecodedColumn(t.type, array=t.decode_from(source))

    def _nearest_key(self, i: int, t: DerivedTransform, src: DecodedColumn) -> torch.Tensor:
        """``DerivedTransform.positions`` for an integer source, as tensor operations."""
        v = src.values
        keys = t._sorted_keys
        null_pos = t.null_key_position()
        if keys.size == 0:
            pos = torch.zeros_like(v)
        else:
            sk = self._const((i, "sorted_keys"), lambda: keys)
            sp = self._const((i, "sorted_pos"), lambda: t._sorted_pos)
            if keys.size == 1:
                pos = sp[torch.zeros_like(v)]
            else:
                j = torch.searchsorted(sk, v).clamp(min=1, max=keys.size - 1)
                left, right = sk[j - 1], sk[j]
                j = torch.where((v - left).abs() <= (right - v).abs(), j - 1, j)
                pos = sp[j]
        if src.missing is not None:
            pos = torch.where(src.missing, torch.full_like(pos, null_pos), pos)
        return pos

    # -- rule-built ------------------------------------------------------------------------
    def _ruled(
        self,
        i: int,
        t: RuleTransform,
        xs: torch.Tensor,
        n: int,
        rng: np.random.Generator,
        row_offset: int,
        resolved: dict[str, DecodedColumn],
    ) -> DecodedColumn:
        out = None
        if isinstance(t, ClockTransform):
            out = self._clock(i, t, xs, resolved)
        elif isinstance(t, GapTransform):
            out = self._gap(i, t, xs, resolved)
        elif isinstance(t, ComputedTransform):
            out = self._computed(i, t, xs, n, resolved)
        elif isinstance(t, ConditionedTransform):
            out = self._conditioned(i, t, xs, resolved)
        elif isinstance(t, PinnedTransform):
            out = self._pinned(i, t, xs, resolved)
        elif isinstance(t, TiedTransform):
            out = self._tied(i, t, xs, resolved)
        if out is not None:
            return out
        # No exact torch form for this one: the NumPy code on host copies of its inputs.
        self.on_host.add(t.column.name)
        host = {c: _host_arrow(col) for c, col in resolved.items()}
        xh = xs.cpu().numpy()
        return DecodedColumn(t.type, array=t.decode_with(xh, n, rng, row_offset, host))

    def _tied(
        self, i: int, t: TiedTransform, xs: torch.Tensor, resolved: dict[str, DecodedColumn]
    ) -> DecodedColumn | None:
        """``TiedTransform.decode_with``: the source's value where the flag is set."""
        w = t.inner.width
        try:
            a, present = self._inner(i, t.inner, xs[:, :w])
            b, pb = _numeric_of(resolved[t.source])
        except _NoTorchForm:
            return None
        if a.dtype != b.dtype:
            return None
        copy = (xs[:, w + 1] > xs[:, w]) & present & pb & (b >= t.lo) & (b <= t.hi)
        return _numbers(t.type, torch.where(copy, b, a), present)

    def _pinned(
        self, i: int, t: PinnedTransform, xs: torch.Tensor, resolved: dict[str, DecodedColumn]
    ) -> DecodedColumn | None:
        """``PinnedTransform.decode_with`` (``ValueSets.snap``) for keys decoded as codes."""
        keys = [resolved[k] for k in t.keys]
        if any(k.codes is None or k.dictionary is None for k in keys):
            return None  # integer keys: the NumPy lookup on the host
        try:
            v, present = self._inner(i, t.inner, xs)
        except _NoTorchForm:
            return None
        sets = t.sets
        out = v.to(torch.float64)
        if not len(sets.combos):
            return _numbers(t.type, out, present)
        combo = torch.zeros_like(keys[0].codes)
        seen = torch.ones_like(present)
        for j, (k, stride) in enumerate(zip(keys, sets.strides, strict=True)):
            # each key column's dictionary is fixed: its positions in the sets are found once
            d, dk = sets.dictionaries[j], k.dictionary
            pos = self._const(
                (i, f"key{j}"),
                lambda d=d, dk=dk: np.asarray(
                    pc.index_in(dk.cast(d.type), value_set=d, skip_nulls=False).fill_null(-1),
                    dtype=np.int64,
                ),
            )[k.codes]
            seen = seen & (pos >= 0)
            combo = combo + pos.clamp(min=0) * stride
        combos = self._const((i, "combos"), lambda: sets.combos)
        offsets = self._const((i, "offsets"), lambda: sets.offsets)
        values = self._const((i, "values"), lambda: sets.values)
        at = torch.searchsorted(combos, combo).clamp(max=len(sets.combos) - 1)
        hit = seen & present & (combos[at] == combo)
        lo, hi = offsets[at], offsets[at + 1]
        start, end = lo.clone(), hi.clone()
        last = len(sets.values) - 1
        while True:  # the same binary search as ValueSets.snap, on every row at once
            open_ = lo < hi
            if not bool(open_.any()):
                break
            mid = (lo + hi) // 2
            below = values[mid.clamp(max=last)] < out
            lo = torch.where(open_ & below, mid + 1, lo)
            hi = torch.where(open_ & ~below, mid, hi)
        up = values[torch.minimum(lo, end - 1)]
        down = values[torch.maximum(lo - 1, start)]
        near = torch.where((out - down).abs() <= (up - out).abs(), down, up)
        return _numbers(t.type, torch.where(hit, near, out), present)

    def _inner(
        self, i: int, t: NumericTransform, xs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``numeric_values(inner.decode(...))``: (values with nulls as 0, present)."""
        values, missing = self._numeric_values(i, t, xs)
        return _numeric_of(DecodedColumn(t.type, values=values, missing=missing))

    def _clock(
        self, i: int, t: ClockTransform, xs: torch.Tensor, resolved: dict[str, DecodedColumn]
    ) -> DecodedColumn | None:
        try:
            m, present = self._inner(i, t.inner, xs)
            base = None if t.base is None else _numeric_of(resolved[t.base])
        except _NoTorchForm:
            return None
        if m.dtype != torch.int64:
            return None
        if base is not None:
            b, b_present = base
            if b.dtype != torch.int64:
                return None  # NumPy rounds a float base half to even: keep to the common case
            m = torch.where(b_present, _clock_minutes(b) + m, m)
        return _numbers(t.type, _clock_from_minutes(m, t.midnight), present)

    def _gap(
        self, i: int, t: GapTransform, xs: torch.Tensor, resolved: dict[str, DecodedColumn]
    ) -> DecodedColumn | None:
        try:
            g, present = self._inner(i, t.inner, xs)
            parents = [_numeric_of(resolved[p]) for p in t.parents]
        except _NoTorchForm:
            return None
        base = parents[0][0]
        for v, _ in parents[1:]:
            base = torch.maximum(base, v) if t.direction > 0 else torch.minimum(base, v)
        if base.dtype != g.dtype and t.mode != "ratio":
            # int/float mixes promote like NumPy, but keep to the common case
            base, g = _promote(base, g)
        integral = _integral(t.type)
        if t.mode == "ratio":
            value = base.to(torch.float64) * g if base.dtype != g.dtype else base * g
            if integral:
                value = value.round().to(torch.int64)
        elif t.mode == "clamp":
            value = g
        else:
            value = base + t.direction * g
        gap_min = _scalar_like(t.gap_min, base)
        floor = base + t.direction * gap_min
        value, floor = _promote(value, floor)
        if t.lo is not None:
            value = _clip_like_numpy(value, t.lo, t.hi)
        if t.decimals is not None:
            if t.decimals < 0 and not (value.is_floating_point() and floor.is_floating_point()):
                return None  # NumPy rounds integers to tens in integer arithmetic
            value = snap(value, None, t.decimals) if value.is_floating_point() else value
            floor = snap(floor, None, t.decimals) if floor.is_floating_point() else floor
        value, floor = _promote(value, floor)
        if t.mass is not None:  # a "missing" gap is the point mass (the column has no nulls)
            value = torch.where(present, value, torch.full_like(value, t.mass))
            present = torch.ones_like(present)
        value = torch.maximum(value, floor) if t.direction > 0 else torch.minimum(value, floor)
        if t.grid_decimals is not None:
            if not (value.is_floating_point() and floor.is_floating_point()):
                return None  # integer operands: the NumPy path rounds them
            value = t._on_grid(value, floor)
        if t.overwrite is not None:
            o = t.overwrite
            try:
                hit = _triggered_of(resolved, o["trigger"], o["when"])
            except _NoTorchForm:
                return None
            value = torch.where(hit, torch.full_like(value, o["sentinel"]), value)
            present = present | hit
        return _numbers(t.type, value, present)

    def _computed(
        self,
        i: int,
        t: ComputedTransform,
        xs: torch.Tensor,
        n: int,
        resolved: dict[str, DecodedColumn],
    ) -> DecodedColumn | None:
        f = t.formula
        if f["type"] not in ("clock", "linear"):
            return None  # calendar timestamps go through pandas' time-zone rules on the host
        try:
            ops = [_numeric_of(resolved[c]) for c in f["operands"]]
        except _NoTorchForm:
            return None
        present = torch.ones(n, dtype=torch.bool, device=self.device)
        for _, p in ops:
            present = present & p
        if f["type"] == "clock":
            (b, _), (d, _) = ops
            if b.dtype != torch.int64:
                return None
            d = d if d.dtype == torch.int64 else d.round().to(torch.int64)
            value = _clock_from_minutes(_clock_minutes(b) + d, int(f.get("midnight", 2400)))
        else:
            coefficients, intercept = f["coefficients"], f["intercept"]
            exact = all(float(k).is_integer() for k in coefficients)
            if not (exact and float(intercept).is_integer()):
                return None  # NumPy computes it in long double: no torch equivalent
            if any(v.dtype != torch.int64 for v, _ in ops):
                return None
            value = torch.full((n,), int(intercept), dtype=torch.int64, device=self.device)
            for k, (v, _) in zip(coefficients, ops, strict=True):
                value = value + int(k) * v
        if not _integral(t.type):
            value = value.to(torch.float64)
            if t.column.decimals is not None:
                value = snap(value, None, int(t.column.decimals))
        if t.inner is not None and not bool(present.all()):
            try:
                own, own_present = self._inner(i, t.inner, xs)
            except _NoTorchForm:
                return None
            if f["type"] == "clock":
                if own.dtype != torch.int64:
                    return None
                own = _clock_from_minutes(own, int(f.get("midnight", 2400)))
            value = torch.where(present, value, own.to(value.dtype))
            present = present | own_present
        return _numbers(t.type, value, present)

    def _conditioned(
        self,
        i: int,
        t: ConditionedTransform,
        xs: torch.Tensor,
        resolved: dict[str, DecodedColumn],
    ) -> DecodedColumn | None:
        inner = t.inner
        if t.type != inner.type or not (inner.integral or pa.types.is_floating(inner.type)):
            return None
        sentinel = None
        if not t.special.get("null"):
            if not (pa.types.is_integer(t.type) or pa.types.is_floating(t.type)):
                return None
            sentinel = pa.array([t.special["sentinel"]]).cast(t.type)[0].as_py()
        try:
            cond = _triggered_of(resolved, *t.triggers)
        except _NoTorchForm:
            return None
        values, _ = self._numeric_values(i, inner, xs)  # every row present (see NumPy path)
        if sentinel is None:
            return DecodedColumn(t.type, values=values, missing=cond)
        fill = torch.full_like(values, sentinel)
        return DecodedColumn(t.type, values=torch.where(cond, fill, values))


def _triggered_of(
    resolved: dict[str, DecodedColumn], triggers: list[str], whens: list[dict[str, Any]]
) -> torch.Tensor:
    """``rules.model.triggered`` on decoded columns still on the device."""
    cond = _special_of(resolved[triggers[0]], whens[0])
    for b, w in zip(triggers[1:], whens[1:], strict=True):
        cond = cond | _special_of(resolved[b], w)
    return cond


class _NoTorchForm(Exception):
    """This rule step has no exact torch equivalent; the caller runs the NumPy code."""


def _argmax_slots(x: torch.Tensor) -> torch.Tensor:
    """``CategoricalTransform.decoded_slots``: first maximal slot; two slots by comparison."""
    if x.shape[1] == 2:
        return (x[:, 1] > x[:, 0]).to(torch.int64)
    return torch.argmax(x, dim=1)


def _integral(t: pa.DataType) -> bool:
    from pfcore.schema import is_temporal

    return pa.types.is_integer(t) or is_temporal(t)


def _numbers(t: pa.DataType, value: torch.Tensor, present: torch.Tensor) -> DecodedColumn:
    """``ruled._to_arrow`` input: int64 for integral types, float64 otherwise."""
    if _integral(t):
        value = value.to(torch.int64)
    else:
        value = value.to(torch.float64)
    return DecodedColumn(t, values=value, missing=~present)


def _numeric_of(col: DecodedColumn) -> tuple[torch.Tensor, torch.Tensor]:
    """``rules.model.numeric_values`` of a decoded column still on the device: int64 for
    integers, booleans and datetimes, float64 otherwise, nulls (and NaN) as 0 and not present.

    A categorical column: the NumPy function on its dictionary, gathered by the codes (it is
    elementwise). Numbers: their final type's rounding (float32) applied on the device.
    Decimals would round through Arrow's decimal cast: no torch form."""
    if col.codes is not None:
        from pfcore.rules.model import numeric_values

        assert col.dictionary is not None
        try:
            v, present = numeric_values(col.dictionary)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise _NoTorchForm from None
        dv, dp = _tensor(v, col.codes.device), _tensor(present, col.codes.device)
        return dv[col.codes], dp[col.codes]
    if col.values is None:
        raise _NoTorchForm
    t = col.type
    v = col.values
    if pa.types.is_floating(t) and t.bit_width == 32:
        v = v.to(torch.float32).to(torch.float64)
    elif not (_integral(t) or (pa.types.is_floating(t) and t.bit_width == 64)):
        raise _NoTorchForm
    present = torch.ones(v.shape, dtype=torch.bool, device=v.device)
    if col.missing is not None:
        present = ~col.missing
        v = torch.where(col.missing, torch.zeros_like(v), v)
    if v.dtype.is_floating_point:
        nan = torch.isnan(v)
        present = present & ~nan
        v = torch.where(nan, torch.zeros_like(v), v)
    return v, present


def _special_of(col: DecodedColumn, spec: dict[str, Any]) -> torch.Tensor:
    """``rules.model._special`` (null, or equal to a value) of a decoded column on the device."""
    from pfcore.rules.model import _special
    from pfcore.schema import is_temporal, temporal_storage

    if col.codes is not None:
        assert col.dictionary is not None
        table = _tensor(_special(col.dictionary, spec), col.codes.device)
        return table[col.codes]
    t, v = col.type, col.values
    if v is None or not (_integral(t) or (pa.types.is_floating(t) and t.bit_width == 64)):
        raise _NoTorchForm
    null = torch.zeros(v.shape, dtype=torch.bool, device=v.device)
    if col.missing is not None:
        null = col.missing
    if v.dtype.is_floating_point:
        null = null | torch.isnan(v)
    if spec.get("null"):
        return null
    value = spec["sentinel" if "sentinel" in spec else "equals"]
    try:
        target = pa.scalar(value).cast(temporal_storage(t) if is_temporal(t) else t).as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise _NoTorchForm from None  # NumPy compares as strings then
    return (v == target) & ~null


def _promote(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.dtype == b.dtype:
        return a, b
    return a.to(torch.float64), b.to(torch.float64)


def _scalar_like(x: float | int, ref: torch.Tensor) -> torch.Tensor:
    """A Python number as a 0-d tensor, typed the way NumPy types it against ``ref``."""
    if isinstance(x, int) and not ref.dtype.is_floating_point:
        return torch.tensor(x, dtype=torch.int64, device=ref.device)
    return torch.tensor(float(x), dtype=torch.float64, device=ref.device)


def _clip_like_numpy(v: torch.Tensor, lo: float | int, hi: float | int) -> torch.Tensor:
    if not v.dtype.is_floating_point and (isinstance(lo, float) or isinstance(hi, float)):
        v = v.to(torch.float64)
    return v.clamp(min=lo, max=hi)


def _clock_minutes(v: torch.Tensor) -> torch.Tensor:
    return torch.div(v, 100, rounding_mode="floor") * 60 + torch.remainder(v, 100)


def _clock_from_minutes(m: torch.Tensor, midnight: int) -> torch.Tensor:
    from pfcore.rules.model import MINUTES_PER_DAY

    m = torch.remainder(m, MINUTES_PER_DAY)
    v = torch.div(m, 60, rounding_mode="floor") * 100 + torch.remainder(m, 60)
    if midnight == 2400:
        v = torch.where(v == 0, torch.full_like(v, 2400), v)
    return v


def _host_arrow(col: DecodedColumn) -> pa.Array:
    """A decoded column as its final Arrow array on the host (for host fallbacks)."""
    return DecodedColumn(
        col.type,
        _cpu(col.values),
        _cpu(col.missing),
        _cpu(col.codes),
        col.dictionary,
        col.array,
    ).arrow()


def _cpu(t: Any) -> Any:
    return t.cpu().numpy() if isinstance(t, torch.Tensor) else t


def columns_to_table(cols: list[DecodedColumn], schema: pa.Schema) -> pa.Table:
    """Host columns to the source's Arrow table (exactly ``schema``)."""
    return pa.Table.from_arrays([c.arrow() for c in cols], schema=schema)


def decoder_for(transformer: TableTransformer, device: torch.device | str) -> TorchDecoder:
    """The transformer's decoder for ``device`` (built on first use, then cached on it)."""
    cache: dict[str, TorchDecoder] = transformer.__dict__.setdefault("_torch_decoders", {})
    key = str(torch.device(device))
    if key not in cache:
        cache[key] = TorchDecoder(transformer, device)
    return cache[key]
