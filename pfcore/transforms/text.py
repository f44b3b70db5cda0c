"""Free-text columns (titles, names, descriptions): new text from a word chain, not copies.

Why not a categorical: a column whose values are nearly all distinct cannot be learned as
classes; pooled, its synthetic rows held training values copied verbatim where new real rows
hold new ones, which a detection classifier reads at once (Airbnb listing titles: AUC 0.99)
and which leaks whole training values. Why not an id: a counter keeps nothing of the content.

Each row is one of these cases, a onehot block modelled with the other columns:

* **a frequent value** (held by at least two training rows and 0.1% of them, the 100 most
  frequent at most, as a categorical keeps its classes: a job title, a city): that value,
  so it keeps its relations to the other columns;
* **another repeated value** (held by two or more training rows: a retweet, a bestseller
  listed every year): one of those values, redrawn without replacement by their counts
  (``categorical.draw_pooled``); a value held by a single training row is never copied;
* **new** (the row's value occurs once in the training rows): a text of a drawn number of
  words from a first-order word chain fitted on at most ``MAX_FIT_VALUES`` of those values
  (``TokenChain``: every word and every pair of consecutive words is real, the whole text new;
  whitespace is normalised to single spaces); a column of single words (tickets, cabins,
  codes: ``text_unit``) is made of characters the same way;
* **missing**.

The share of new values among training rows is the Good-Turing estimate of how often a new
real row holds a value never seen before (held-out rows seen in training, four public CSVs:
Airbnb titles 3.7% against 4% estimated, tweets 37% / 46%, bestseller titles 52% / 54%).
What this leaves out on purpose: a new real row may hold a value one training row holds (36%
of held-out tweets do); synthetic rows hold such a value only when the chain makes it again.
A new text's tokens follow one other column at most: the categorical or boolean column of at
most ``MAX_PARENT_CLASSES`` classes whose class its tokens tell best (``parent_score``, the
uncertainty coefficient of the class given a token; Titanic names: the sex, by their titles),
each class with enough single-row values getting a chain of its own; the rest of the row
plays no part in the words.

Walking the chain is a push-forward of uniform noise: ``searchsorted`` of ``state + u`` into
each state's cumulative transition probabilities (stored as one increasing array, state ``s``
spanning ``(s, s + 1]``), so every row of a block is drawn at once per word position.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pfcore.schema import ColumnSchema
from pfcore.transforms.base import ColumnTransform, onehot
from pfcore.transforms.categorical import draw_pooled

#: Values the chain is fitted on at most (a seeded subset beyond).
MAX_FIT_VALUES = 20_000
#: Longest text in words: longer training values count as this long.
MAX_WORDS = 256
#: Words still to come up to which the chain is conditioned exactly; further from the end a
#: word is drawn as if this many were to come (its keys are cached per count: 8 bytes per
#: transition each).
MAX_EXACT_REST = 24


def _strings(words: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes and offsets of a string array (safetensors holds numbers only)."""
    encoded = [w.encode("utf-8") for w in words.to_pylist()]
    offsets = np.r_[0, np.cumsum([len(b) for b in encoded], dtype=np.int64)].astype(np.int64)
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), offsets


def _from_strings(blob: np.ndarray, offsets: np.ndarray) -> pa.Array:
    offsets = np.asarray(offsets, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(
        len(offsets) - 1,
        pa.py_buffer(offsets.tobytes()),
        pa.py_buffer(np.asarray(blob, dtype=np.uint8).tobytes()),
    )


def _keys(state: np.ndarray, weight: np.ndarray, first: np.ndarray, last: np.ndarray):
    """``state + cumulative probability`` of each transition by ``weight`` (positive in total
    for every state) within its state: state-major, so increasing overall, and a zero-weight
    transition repeats the key before it, so ``searchsorted(keys, state + u, "right")`` with
    ``u`` in [0, 1) never lands on it."""
    run, sizes = np.cumsum(weight), last - first + 1
    base = np.repeat((run - weight)[first], sizes)  # weight before the state's transitions
    cum = (run - base) / (np.repeat(run[last], sizes) - base)
    cum[last] = 1.0  # exactly 1, so a state's keys never reach into the next state's
    return state + cum


UNITS = ("word", "char")


def _words(values: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(vocabulary, token ids from 1 in reading order, tokens per value): words split on
    whitespace."""
    split = pc.utf8_split_whitespace(values)
    flat, parent = pc.list_flatten(split), np.asarray(pc.list_parent_indices(split))
    word = np.asarray(pc.greater(pc.utf8_length(flat), 0), dtype=bool)  # edges split to ""
    flat = flat.filter(pa.array(word))
    lengths = np.bincount(parent[word], minlength=len(values)).astype(np.int64)
    if not len(flat):
        return pa.array([], type=pa.large_string()), np.zeros(0, dtype=np.int64), lengths
    enc = pc.dictionary_encode(flat)
    return enc.dictionary, np.asarray(enc.indices, dtype=np.int64) + 1, lengths


def _characters(values: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """The same for characters (values cut to ``MAX_WORDS`` of them): code points of a
    fixed-width NumPy string array, read row by row."""
    cut = pc.utf8_slice_codeunits(values.cast(pa.large_string()), 0, MAX_WORDS)
    text = np.array(cut.to_pylist(), dtype=str)
    points = text.view(np.uint32).reshape(len(text), -1) if text.dtype.itemsize else None
    if points is None or not points.size:
        return (
            pa.array([], type=pa.large_string()),
            np.zeros(0, dtype=np.int64),
            np.zeros(len(text), dtype=np.int64),
        )
    present = points != 0
    uniq, ids = np.unique(points[present], return_inverse=True)
    vocab = pa.array([chr(c) for c in uniq], type=pa.large_string())
    return vocab, ids.astype(np.int64) + 1, present.sum(axis=1).astype(np.int64)


class TokenChain:
    """A first-order chain of words (or of characters: ``unit``), walked for a drawn length.

    Words for text of several words; characters for single words (codes such as tickets and
    cabins: ``A/5 21171``, ``C85``), whose words a word chain could only copy whole.
    Token ``t > 0`` is ``words[t - 1]`` (and state ``t``: after that word), token 0 ends the
    text (state 0: the start). ``source``, ``tokens`` and ``counts`` list every transition seen,
    state-major. A text's length ``L`` is drawn from the lengths of the values the chain was
    fitted on (``length_counts``), then each word from the chain conditioned on that length:
    word ``t`` after state ``s`` with ``r`` words still to come has weight
    ``P(t | s) * beta_r(t)``, where ``beta_r(t)`` is the chance that the chain from ``t`` emits
    exactly ``r`` more words and then ends (``beta_0`` = how often ``t`` ends a text). So the
    lengths are the real ones and a text ends on a word that ends texts. The plain chain,
    which stops whenever it draws the end, gave Airbnb titles of 2 to 20+ words where real
    ones hold 4 to 9 (a classifier on the word count alone: AUC 0.44).
    """

    def __init__(
        self,
        words: pa.Array,
        source: np.ndarray,
        tokens: np.ndarray,
        counts: np.ndarray,
        length_counts: np.ndarray,
        unit: str = "word",
    ) -> None:
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, not {unit!r}")
        self.unit = unit
        self.words = words
        self.source = np.asarray(source, dtype=np.int64)
        self.tokens = np.asarray(tokens, dtype=np.int64)
        self.counts = np.asarray(counts, dtype=np.float64)
        self.length_counts = np.asarray(length_counts, dtype=np.int64)
        self._length_cdf = np.cumsum(self.length_counts) / max(1, self.length_counts.sum())
        n_states = len(words) + 1
        self._first = np.r_[0, np.flatnonzero(np.diff(self.source)) + 1]
        self._last = np.r_[self._first[1:] - 1, len(self.source) - 1]
        out = np.bincount(self.source, weights=self.counts, minlength=n_states)
        self._p = self.counts / out[self.source]  # P(token | source)
        ends = np.bincount(self.source, weights=self._p * (self.tokens == 0), minlength=n_states)
        self._beta = [ends / max(ends.max(), 1e-300)]
        # a word never followed by another ends the text wherever it is drawn
        go = self.counts * (self.tokens > 0)
        self._go = np.where(self._per_state(go) > 0, go, self.counts)
        self._keys: dict[int, np.ndarray] = {}

    def _per_state(self, w: np.ndarray) -> np.ndarray:
        """Each transition's state's total of ``w``."""
        return np.bincount(self.source, weights=w)[self.source]

    def keys(self, r: int) -> np.ndarray:
        """Keys for a word followed by exactly ``r`` more (computed once per ``r``)."""
        r = min(r, MAX_EXACT_REST)
        if r not in self._keys:
            while len(self._beta) <= r:  # beta_r(s) = sum_t P(t | s) beta_{r-1}(t), t a word
                prev = self._beta[-1]
                w = self._p * np.where(self.tokens > 0, prev[self.tokens], 0.0)
                beta = np.bincount(self.source, weights=w, minlength=len(prev))
                self._beta.append(beta / max(beta.max(), 1e-300))
            w = self.counts * np.where(self.tokens > 0, self._beta[r][self.tokens], 0.0)
            # no path of exactly that length from a state: go on as the plain chain would
            w = np.where(self._per_state(w) > 0, w, self._go)
            self._keys[r] = _keys(self.source, w, self._first, self._last)
        return self._keys[r]

    @classmethod
    def fit(cls, values: pa.Array, unit: str = "word") -> TokenChain:
        if not len(values):  # nothing to learn from (no value held by one row): empty texts
            values = pa.array([""], pa.large_string())
        words, ids, lengths = (_words if unit == "word" else _characters)(values)
        # Each value contributes (start -> w1), (w1 -> w2), ..., (wk -> end): previous states are
        # 0 then its words, next tokens its words then 0. Word j of row r is pair j + r (one
        # extra pair per row).
        prev = np.zeros(len(ids) + len(lengths), dtype=np.int64)
        nxt = np.zeros_like(prev)
        slot = np.arange(len(ids)) + np.repeat(np.arange(len(lengths)), lengths)
        nxt[slot] = ids
        prev[slot + 1] = ids
        n_states = len(words) + 1
        uniq, counts = np.unique(prev * n_states + nxt, return_counts=True)
        length_counts = np.bincount(np.minimum(lengths, MAX_WORDS))
        return cls(
            words.cast(pa.large_string()),
            uniq // n_states,
            uniq % n_states,
            counts,
            length_counts,
            unit,
        )

    def draw(self, m: int, rng: np.random.Generator) -> pa.Array:
        """``m`` texts: lengths first, then every row walks the chain, all rows one word
        position at a time (a row whose word no other follows stops there)."""
        length = np.searchsorted(self._length_cdf, rng.random(m), side="right")
        length = np.minimum(length, len(self.length_counts) - 1)
        state = np.zeros(m, dtype=np.int64)
        active = np.flatnonzero(length > 0)
        rows, toks = [], []
        pos = 0
        while len(active):
            pos += 1
            at = state[active] + rng.random(len(active))
            rest = np.minimum(length[active] - pos, MAX_EXACT_REST)
            e = np.empty(len(active), dtype=np.int64)
            for r in np.unique(rest):
                mine = rest == r
                e[mine] = np.searchsorted(self.keys(int(r)), at[mine], side="right")
            t = self.tokens[np.minimum(e, len(self.tokens) - 1)]
            keep = t > 0
            rows.append(active[keep])
            toks.append(t[keep])
            state[active[keep]] = t[keep]
            active = active[keep & (length[active] > pos)]
        row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        tok = np.concatenate(toks) if toks else np.zeros(0, dtype=np.int64)
        order = np.argsort(row, kind="stable")  # per row, in word order (appended by position)
        offsets = np.r_[0, np.cumsum(np.bincount(row, minlength=m))].astype(np.int64)
        words = self.words.take(pa.array(tok[order] - 1))
        lists = pa.LargeListArray.from_arrays(pa.array(offsets), words)
        sep = " " if self.unit == "word" else ""
        return pc.binary_join(lists, pa.scalar(sep, pa.large_string()))

    def state(self) -> dict[str, np.ndarray]:
        blob, offsets = _strings(self.words)
        return {
            "word_bytes": blob,
            "word_offsets": offsets,
            "source": self.source,
            "tokens": self.tokens,
            "counts": self.counts.astype(np.int64),
            "length_counts": self.length_counts,
        }

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], unit: str) -> TokenChain:
        return cls(
            _from_strings(arrays["word_bytes"], arrays["word_offsets"]),
            arrays["source"],
            arrays["tokens"],
            arrays["counts"],
            arrays["length_counts"],
            unit,
        )


def text_unit(values: pa.Array) -> str:
    """``word`` when most values hold several words (``schema.TEXT_WORD_SHARE``), else
    ``char``: the one decision, for inference's guess and the transform alike."""
    from pfcore.schema import MULTI_WORD, TEXT_WORD_SHARE

    if not len(values):
        return "word"
    several = pc.sum(pc.match_substring_regex(values, MULTI_WORD)).as_py() or 0
    return "word" if several >= TEXT_WORD_SHARE * len(values) else "char"


#: A parent column (its class picks the chain a new text is drawn from) has at most this
#: many classes, each with at least ``MIN_CLASS_VALUES`` single-row values for a chain of its
#: own (fewer: the chain of all of them), and tells the words apart by at least
#: ``MIN_PARENT_SCORE`` (the uncertainty coefficient of the class given a word).
MAX_PARENT_CLASSES = 16
MIN_CLASS_VALUES = 30
MIN_PARENT_SCORE = 0.02
#: Most frequent tokens the parent's score reads.
SCORE_TOKENS = 1000


def parent_score(values: pa.Array, classes: pa.Array, unit: str) -> float:
    """How much a token tells about a row's class: I(class; token) / H(class) over every token
    occurrence of the ``SCORE_TOKENS`` most frequent tokens (0: the class is no help)."""
    vocab, ids, lengths = (_words if unit == "word" else _characters)(values)
    codes = pc.dictionary_encode(classes.cast(pa.string())).indices
    row_class = np.asarray(codes.fill_null(-1), dtype=np.int64)
    token_class = np.repeat(row_class, lengths)
    keep = token_class >= 0
    if not keep.any() or len(vocab) == 0:
        return 0.0
    ids, token_class = ids[keep], token_class[keep]
    top = np.argsort(-np.bincount(ids))[:SCORE_TOKENS]
    inside = np.isin(ids, top)
    ids, token_class = ids[inside], token_class[inside]
    if not len(ids):
        return 0.0
    _, col = np.unique(ids, return_inverse=True)
    table = np.zeros((token_class.max() + 1, col.max() + 1))
    np.add.at(table, (token_class, col), 1.0)
    p = table / table.sum()
    pc_, pw = p.sum(axis=1, keepdims=True), p.sum(axis=0, keepdims=True)
    nz = p > 0
    mi = float(np.sum(p[nz] * np.log(p[nz] / (pc_ @ pw)[nz])))
    h = float(-np.sum(pc_[pc_ > 0] * np.log(pc_[pc_ > 0])))
    return mi / h if h > 0 else 0.0


class TextTransform(ColumnTransform):
    """A free-text column: a modelled case per row (a frequent value, another repeated one,
    new text, missing); the text itself written on decode, from the chain of the row's class
    of ``parent`` when one was chosen (a name's title follows the passenger's sex, a tweet's
    words its label)."""

    kind = "text"

    def __init__(
        self,
        column: ColumnSchema,
        chain: TokenChain,
        repeated: pa.Array,
        repeated_counts: np.ndarray,
        n_kept: int,
        has_missing: bool,
        parent: str | None = None,
        classes: list[str] | None = None,
        class_chains: list[TokenChain] | None = None,
    ) -> None:
        super().__init__(column)
        self.chain = chain
        #: values held by two or more training rows, most frequent first, and their counts;
        #: the first ``n_kept`` have a slot of their own (modelled with the other columns)
        self.repeated = repeated
        self.repeated_counts = np.asarray(repeated_counts, dtype=np.int64)
        self.n_kept = int(n_kept)
        self.has_missing = bool(has_missing)
        self.other_slot = self.n_kept if len(repeated) > self.n_kept else None
        self.new_slot = self.n_kept + int(self.other_slot is not None)
        self.missing_slot = self.new_slot + 1 if self.has_missing else None
        self.n_slots = self.new_slot + 1 + int(self.has_missing)
        #: the column whose class (as text) picks ``class_chains[k]`` for ``classes[k]``
        self.parent = parent
        self.classes = list(classes or [])
        self.class_chains = list(class_chains or [])

    @classmethod
    def fit(
        cls,
        column: ColumnSchema,
        arr: pa.ChunkedArray | pa.Array,
        rng: np.random.Generator,
        candidates: dict[str, pa.Array] | None = None,
    ) -> TextTransform:
        """``candidates``: columns of the same rows that may be the parent (few classes)."""
        from pfcore.transforms.categorical import MAX_KEPT, MIN_FREQUENCY

        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        values = pc.drop_null(arr).cast(pa.large_string())
        vc = pc.value_counts(values)
        counts = np.asarray(vc.field("counts"), dtype=np.int64)
        many = np.flatnonzero(counts >= 2)
        order = many[np.lexsort((np.arange(len(many)), -counts[many]))]  # most frequent first
        repeated = vc.field("values").take(pa.array(order, type=pa.int64()))
        # as a categorical keeps its classes: those holding 0.1% of the rows, at most 100
        floor = max(2, int(np.ceil(MIN_FREQUENCY * len(arr))))
        n_kept = int(min(MAX_KEPT, np.sum(counts[order] >= floor)))
        # the chain makes the new values: it learns from the rows whose value no other holds
        once = vc.field("values").filter(pa.array(counts == 1))
        rows = np.flatnonzero(
            np.asarray(pc.is_in(arr.cast(pa.large_string()), value_set=once).fill_null(False))
        )
        if len(rows) > MAX_FIT_VALUES:
            rows = np.sort(rng.choice(rows, MAX_FIT_VALUES, replace=False))
        fit_on = arr.cast(pa.large_string()).take(pa.array(rows, type=pa.int64()))
        unit = text_unit(values)
        parent, classes, chains = None, [], []
        scores = {
            name: parent_score(fit_on, c.take(pa.array(rows, type=pa.int64())), unit)
            for name, c in (candidates or {}).items()
            if name != column.name
        }
        best = max(scores, key=lambda k: (scores[k], k), default=None)
        if best is not None and scores[best] >= MIN_PARENT_SCORE:
            of = pc.cast(candidates[best].take(pa.array(rows, type=pa.int64())), pa.string())
            by = pc.value_counts(of.drop_null())
            for value, count in zip(
                by.field("values").to_pylist(), by.field("counts").to_pylist(), strict=True
            ):
                if count >= MIN_CLASS_VALUES:
                    mine = pc.equal(of, value).fill_null(False)
                    classes.append(value)
                    chains.append(TokenChain.fit(fit_on.filter(mine), unit))
            order_ = np.argsort(classes, kind="stable")  # a fixed order: the rng is read by it
            classes = [classes[k] for k in order_]
            chains = [chains[k] for k in order_]
            parent = best if classes else None
        return cls(
            column,
            TokenChain.fit(fit_on, unit),
            repeated,
            counts[order],
            n_kept,
            arr.null_count > 0,
            parent,
            classes,
            chains,
        )

    def layout(self) -> list[tuple[str, str, int]]:
        return [(self.column.name, "onehot", self.n_slots)] if self.n_slots >= 2 else []

    def slots(self, arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Each row's case: its frequent value's slot, another repeated value, new, missing."""
        idx = pc.index_in(arr.cast(pa.large_string()), value_set=self.repeated)
        idx = np.asarray(idx.fill_null(-1), dtype=np.int64)
        slot = np.where(idx < 0, self.new_slot, np.minimum(idx, self.n_kept))
        if self.missing_slot is not None:
            slot[np.asarray(arr.is_null(), dtype=bool)] = self.missing_slot
        return slot

    def encode(self, arr: pa.ChunkedArray | pa.Array, rng: np.random.Generator) -> np.ndarray:
        if self.n_slots < 2:
            return np.empty((len(arr), 0), dtype=np.float32)
        return onehot(self.slots(arr), self.n_slots)

    def decode(self, x: np.ndarray, n: int, rng: np.random.Generator, row_offset: int) -> pa.Array:
        return self.decode_given(x, n, rng, None)

    def decode_given(
        self, x: np.ndarray, n: int, rng: np.random.Generator, parent: pa.Array | None
    ) -> pa.Array:
        """``parent``: the row's decoded parent values (None: every new text from the chain of
        all single-row values)."""
        slot = np.argmax(x, axis=1) if self.n_slots >= 2 else np.full(n, self.new_slot)
        # an index into the repeated values, then the new texts after them; -1: missing
        out = np.where(slot < self.n_kept, slot, -1).astype(np.int64)
        if self.other_slot is not None:
            other = np.flatnonzero(slot == self.other_slot)
            rest = self.repeated_counts[self.n_kept :]
            out[other] = self.n_kept + draw_pooled(len(other), rest, rng)
        new = np.flatnonzero(slot == self.new_slot)
        out[new] = len(self.repeated) + np.arange(len(new))
        values = pa.concat_arrays([self.repeated, self._texts(new, rng, parent)])
        return values.take(pa.array(out, mask=out < 0)).cast(self.type)

    def _texts(self, rows: np.ndarray, rng: np.random.Generator, parent: pa.Array | None):
        """New texts for ``rows``: each class's rows from its chain, in the order of
        ``classes``, then the rest from the chain of all."""
        if not self.classes or parent is None:
            return self.chain.draw(len(rows), rng)
        of = pc.cast(parent.take(pa.array(rows, type=pa.int64())), pa.string())
        k = pc.index_in(of, value_set=pa.array(self.classes, pa.string()))
        k = np.asarray(k.fill_null(-1), dtype=np.int64)
        pieces, where = [], []
        for j, chain in [*enumerate(self.class_chains), (-1, self.chain)]:
            mine = np.flatnonzero(k == j)
            pieces.append(chain.draw(len(mine), rng))
            where.append(mine)
        placed = np.concatenate(where)
        return pa.concat_arrays(pieces).take(pa.array(np.argsort(placed), type=pa.int64()))

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        blob, offsets = _strings(self.repeated)
        arrays = {
            **self.chain.state(),
            "repeated_bytes": blob,
            "repeated_offsets": offsets,
            "repeated_counts": self.repeated_counts,
        }
        for j, chain in enumerate(self.class_chains):
            arrays.update({f"class{j}.{k}": v for k, v in chain.state().items()})
        meta = {
            "has_missing": self.has_missing,
            "n_kept": self.n_kept,
            "unit": self.chain.unit,
            "parent": self.parent,
            "classes": self.classes,
        }
        return meta, arrays

    @classmethod
    def from_state(
        cls, column: ColumnSchema, meta: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> TextTransform:
        unit = str(meta["unit"])
        chains = []
        for j in range(len(meta.get("classes") or [])):
            mine = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith(f"class{j}.")}
            chains.append(TokenChain.from_state(mine, unit))
        return cls(
            column,
            TokenChain.from_state(arrays, unit),
            _from_strings(arrays["repeated_bytes"], arrays["repeated_offsets"]),
            arrays["repeated_counts"],
            int(meta["n_kept"]),
            bool(meta["has_missing"]),
            meta.get("parent"),
            meta.get("classes"),
            chains,
        )
