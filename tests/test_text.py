"""Free-text columns: inferred from the values, new text from the column's words on decode,
repeated values only where real rows repeat them, and whether a row is new, repeated or
missing learnt with the other columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pfcore.conditions import Conditions
from pfcore.errors import InputError
from pfcore.schema import apply_overrides, infer_schema
from pfcore.transforms import TableTransformer
from pfcore.transforms.base import rng_for
from pfcore.transforms.text import TextTransform, TokenChain

ADJ = ["cosy", "bright", "quiet", "large", "sunny", "modern", "charming", "spacious", "tiny"]
NOUN = ["room", "flat", "loft", "studio", "house", "suite", "cabin", "nest"]
PLACE = ["Harlem", "Soho", "Queens", "the park", "Midtown", "Brooklyn", "the river", "Chelsea"]


def titles(n: int, seed: int) -> list[str]:
    """Listing-like titles: three to six words, nearly all distinct."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(ADJ), rng.choice(NOUN), "near", rng.choice(PLACE)]
        if rng.random() < 0.5:
            words.insert(0, rng.choice(ADJ))
        words.append(str(rng.integers(1, 400)))
        out.append(" ".join(words))
    return out


def text_table(n: int = 1500, seed: int = 0) -> pa.Table:
    """``title`` is new text on group ``a`` rows, one of 12 repeated titles on group ``b`` rows
    and missing on 10% of rows; ``price`` depends on the group."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["a", "b"], n, p=[0.7, 0.3])
    fresh = np.array(titles(n, seed + 1), dtype=object)
    again = np.array([f"Repeated listing number {k}" for k in range(12)], dtype=object)
    title = np.where(group == "b", again[rng.integers(0, 12, n)], fresh)
    missing = rng.random(n) < 0.1
    return pa.table(
        {
            "group": group,
            "title": pa.array(title.tolist(), pa.string(), mask=missing),
            "price": np.where(group == "b", 200.0, 80.0) + rng.normal(0, 10, n).round(2),
        }
    )


# ---------------------------------------------------------------------------------- inference
def test_free_text_is_inferred_and_ids_codes_and_dates_are_not() -> None:
    n = 600
    rng = np.random.default_rng(0)
    codes = [f"{rng.choice(list('ABCDEF'))}{rng.integers(1, 300)}" for _ in range(n)]
    t = pa.table(
        {
            "title": titles(n, 0),
            "cabin": codes,  # near-unique single words with repeats: text, by characters
            "ticket": [f"A{k % 400}" for k in range(n)],  # one prefix: a code kept categorical
            "order": [f"Order {k}" for k in range(n)],  # unique, one prefix: an id
            "key": [f"{k * 7919 % 10007:05x}" for k in range(n)],  # distinct single words: id
            "cid": [f"c:{k * 37 % 5003}" for k in range(n - 1)] + ["c:0"],  # a stray duplicate
            "when": [f"{1 + k % 12}/{1 + k % 28}/{2000 + k % 20}" for k in range(n)],  # dates
            "amount": ["?" if k % 50 == 0 else f"{(k % 450) * 0.37:.2f}" for k in range(n)],
            "city": [["Paris", "New York", "Rome"][k % 3] for k in range(n)],
        }
    )
    s = infer_schema(t)
    kinds = [s[c].kind for c in t.column_names]
    assert kinds[:6] == ["text", "text", "categorical", "id", "id", "id"]
    assert kinds[6:] == ["categorical"] * 3  # dates and decimals, made of characters: malformed
    assert s["title"].categories is None
    # a user may declare it either way
    assert apply_overrides(s, {"columns": {"title": {"kind": "categorical"}}})["title"].kind == (
        "categorical"
    )
    assert apply_overrides(s, {"columns": {"ticket": {"kind": "text"}}})["ticket"].kind == "text"


def test_ingest_says_what_free_text_becomes(tmp_path) -> None:
    from pfcore.ingest import ingest

    src = tmp_path / "listings.csv"
    rows = [f'"{t}",{["x", "y"][k % 2]}' for k, t in enumerate(titles(400, 3))]
    src.write_text("title,area\n" + "\n".join(rows) + "\n")
    res = ingest(src, tmp_path / "out")
    assert res.schema["title"].kind == "text"
    (guess,) = [g for g in res.manifest["guesses"] if "free text" in g]
    assert guess.startswith("column 'title': free text (")
    assert "declare it categorical" in guess


# ------------------------------------------------------------------------------- the chain
def test_the_word_chain_makes_new_texts_from_the_columns_words() -> None:
    real = titles(3000, 5)
    chain = TokenChain.fit(pa.array(real, pa.large_string()))
    made = chain.draw(4000, np.random.default_rng(0)).to_pylist()
    vocab = {w for t in real for w in t.split()}
    assert all(set(t.split()) <= vocab for t in made)
    # consecutive words are pairs some real title holds
    pairs = {p for t in real for p in zip(t.split(), t.split()[1:], strict=False)}
    assert all(p in pairs for t in made for p in zip(t.split(), t.split()[1:], strict=False))
    assert np.mean([t in set(real) for t in made]) < 0.05  # new, not copies
    lengths = [len(t.split()) for t in made]
    assert abs(np.mean(lengths) - np.mean([len(t.split()) for t in real])) < 0.3
    # the same uniforms, the same texts
    again = chain.draw(4000, np.random.default_rng(0)).to_pylist()
    assert again == made


def test_text_transform_cases_round_trip_and_save(tmp_path) -> None:
    t = text_table()
    schema = infer_schema(t)
    assert schema["title"].kind == "text"
    tr = TableTransformer.fit(t, schema, seed=0)
    (tt,) = [x for x in tr.transforms if isinstance(x, TextTransform)]
    # the 12 repeated titles are frequent: a slot each, then new text, then missing
    assert tt.n_kept == 12 and tt.other_slot is None and tt.layout() == [("title", "onehot", 14)]
    assert set(tt.repeated.to_pylist()) == {f"Repeated listing number {k}" for k in range(12)}
    x = tr.encode(t)
    out = tr.decode(x, seed=3)
    title = out.column("title")
    # missing exactly where the real row is, a repeated value exactly where the real row holds
    # one (a value of two or more training rows), new texts elsewhere
    assert title.is_null().equals(t.column("title").is_null())
    real_again = np.asarray(pc.is_in(t.column("title"), value_set=tt.repeated).fill_null(False))
    again = np.asarray(pc.is_in(title, value_set=tt.repeated).fill_null(False))
    assert again[real_again].all() and again[~real_again].mean() < 0.02
    present = np.asarray(title.is_valid())
    fresh = pc.filter(title, pa.array(~again & present)).to_pylist()
    assert np.mean([v in set(t.column("title").to_pylist()) for v in fresh]) < 0.05
    # a frequent title decodes to itself
    kept = np.asarray(pc.is_in(t.column("title"), value_set=tt.repeated).fill_null(False))
    assert pc.filter(title, pa.array(kept)).equals(pc.filter(t.column("title"), pa.array(kept)))
    # saved and loaded: the same rows
    tr.save(tmp_path / "tr")
    back = TableTransformer.load(tmp_path / "tr")
    assert back.decode(x, seed=3).equals(out)
    assert not tr.decode(x, seed=4).equals(out)


def test_frequent_values_get_slots_and_the_rest_of_the_repeated_are_redrawn() -> None:
    """150 values held by 2 to 40 rows each: the 100 most frequent are kept as classes, the
    other 50 pooled (redrawn among themselves by their counts), singletons made new."""
    rng = np.random.default_rng(2)
    heads = [f"Job title number {k}" for k in range(150)]
    counts = np.r_[np.arange(40, 0, -1).clip(2), np.full(110, 2)][:150]
    values = [h for h, c in zip(heads, counts, strict=True) for _ in range(c)]
    values += titles(400, 7)
    rng.shuffle(values)
    arr = pa.array(values)
    tt = TextTransform.fit(infer_schema(pa.table({"v": arr}))["v"], arr, rng_for(0, 0))
    assert tt.n_kept == 100 and tt.other_slot == 100 and tt.new_slot == 101
    assert tt.n_slots == 102  # no nulls: no missing slot
    out = tt.decode(tt.encode(arr, None), len(arr), np.random.default_rng(0), 0).to_pylist()
    kept, tail = set(tt.repeated.to_pylist()[:100]), set(tt.repeated.to_pylist()[100:])
    for real, made in zip(values, out, strict=True):
        if real in kept:
            assert made == real
        elif real in tail:
            assert made in tail
        else:
            assert made not in kept and made not in tail


def test_single_words_are_made_of_their_characters() -> None:
    rng = np.random.default_rng(1)
    cabins = [f"{rng.choice(list('ABCDEF'))}{rng.integers(1, 130)}" for _ in range(2000)]
    arr = pa.array(cabins)
    tt = TextTransform.fit(infer_schema(pa.table({"c": arr}))["c"], arr, rng_for(0, 0))
    assert tt.chain.unit == "char"
    made = tt.chain.draw(3000, np.random.default_rng(0)).to_pylist()
    real_len = np.bincount([len(c) for c in cabins], minlength=5)[:5] / len(cabins)
    made_len = np.bincount([len(c) for c in made], minlength=5)[:5] / len(made)
    assert np.abs(real_len - made_len).max() < 0.03  # lengths as the real ones
    assert all(c[0] in "ABCDEF" and c[1:].isdigit() for c in made if len(c) > 1)
    meta, arrays = tt.state()
    back = TextTransform.from_state(tt.column, meta, arrays)
    assert back.chain.draw(50, np.random.default_rng(4)).equals(
        tt.chain.draw(50, np.random.default_rng(4))
    )


def test_a_text_column_without_nulls_or_repeats_is_not_modelled() -> None:
    t = pa.table({"title": titles(500, 1), "v": np.arange(500.0)})
    tt = TextTransform.fit(infer_schema(t)["title"], t.column("title"), rng_for(0, 0))
    assert tt.layout() == [] and tt.n_slots == 1
    out = tt.decode(np.empty((50, 0), np.float32), 50, np.random.default_rng(0), 0)
    assert out.null_count == 0 and len(out) == 50 and out.type == pa.string()


# ----------------------------------------------------------------------- model and conditions
@pytest.fixture(scope="module")
def text_synth():
    from pfcore.synthesizer import Synthesizer

    table = text_table()
    config = {"max_steps": 300, "n_pairs": 1000, "distill_max_steps": 100}
    return Synthesizer.fit(table, infer_schema(table), preset="tiny", config=config, seed=0)


def test_the_model_learns_which_rows_repeat_a_title(text_synth) -> None:
    out = text_synth.sample(3000, seed=1)
    group = np.asarray(out.column("group"))
    title = out.column("title")
    again = np.asarray(pc.starts_with(title, "Repeated").fill_null(False))
    present = np.asarray(title.is_valid())
    assert 0.05 < 1 - present.mean() < 0.15
    # repeated titles on group b rows, new texts on group a rows, as in the real table
    assert again[(group == "b") & present].mean() > 0.85
    assert again[(group == "a") & present].mean() < 0.15
    assert text_synth.sample(3000, seed=1).equals(out)


def test_text_conditions(text_synth) -> None:
    out = text_synth.sample(500, seed=2, conditions=Conditions.make(where=["title=null"]))
    assert out.column("title").null_count == 500
    with pytest.raises(InputError, match="free text") as info:
        text_synth.sample(10, seed=2, conditions=Conditions.make(where=["title=cosy room"]))
    assert info.value.column == "title"
    with pytest.raises(InputError, match="only '='"):
        text_synth.sample(10, seed=2, conditions=Conditions.make(where=["title>=a"]))
    # a value two or more rows hold is one of the model's cases: exact, and the rows given
    # it are group b rows, as the real ones are
    fixed = "Repeated listing number 3"
    got = text_synth.sample(400, seed=2, conditions=Conditions.make(where=[f"title={fixed}"]))
    assert set(got.column("title").to_pylist()) == {fixed}
    assert np.mean(np.asarray(got.column("group")) == "b") > 0.85
    seed_rows = text_table(40, 9).select(["title"])
    got = text_synth.sample(None, seed=2, conditions=Conditions.make(seed_rows=seed_rows))
    assert got.column("title").equals(seed_rows.column("title"))
    # rows given a repeated title are mostly group b, as real ones are
    group = np.asarray(got.column("group"))
    rep = np.asarray(pc.starts_with(seed_rows.column("title"), "Repeated").fill_null(False))
    assert (group[rep] == "b").mean() > 0.7


def test_the_report_lists_text_columns_beside_the_real_ones(text_synth) -> None:
    """The report says what synthetic texts hold against held-out ones: new (not copied from
    a single training row), as long, as often missing; copying training rows shows."""
    from pfcore.fidelity import evaluate
    from pfcore.fidelity.report import FidelityReport

    train, real = text_table(1500, 0), text_table(600, 5)
    rep = evaluate(real, text_synth.sample(600, seed=3), text_synth.schema, train=train)
    (t,) = rep.text
    assert t["name"] == "title" and "title" in rep.skipped_columns
    assert t["copied_once_synthetic"] < 0.05 and t["copied_once_real"] < 0.05
    assert abs(t["words_real"] - t["words_synthetic"]) < 0.5 and t["words_shape"] > 0.8
    assert abs(t["missing_real"] - t["missing_synthetic"]) < 0.06
    copied = evaluate(real, train.slice(0, 600), text_synth.schema, train=train).text[0]
    assert copied["copied_once_synthetic"] > 0.5
    assert "## Free-text columns" in rep.to_markdown()
    assert FidelityReport.from_dict(rep.to_dict()).text == rep.to_dict()["text"]


EN = ["cosy", "bright", "room", "flat", "near", "the", "park", "river", "quiet", "house"]
FR = ["chambre", "calme", "pres", "du", "parc", "appartement", "lumineux", "maison", "la", "de"]


def lang_table(n: int = 1500, seed: int = 0) -> pa.Table:
    """Titles in English on ``en`` rows and in French on ``fr`` rows, all distinct."""
    rng = np.random.default_rng(seed)
    lang = rng.choice(["en", "fr"], n)
    title = [
        " ".join(rng.choice(EN if g == "en" else FR, rng.integers(3, 7))) + f" {k}"
        for k, g in enumerate(lang)
    ]
    noise = rng.choice(["x", "y", "z"], n)  # a class with nothing to say about the words
    return pa.table({"lang": lang, "noise": noise, "title": title})


def test_new_text_follows_the_class_that_tells_its_words_apart() -> None:
    t = lang_table()
    tr = TableTransformer.fit(t, infer_schema(t), seed=0)
    (tt,) = [x for x in tr.transforms if isinstance(x, TextTransform)]
    assert tt.parent == "lang" and tt.classes == ["en", "fr"]
    out = tr.decode(tr.encode(t), seed=1)
    made = out.column("title").to_pylist()
    lang = out.column("lang").to_pylist()

    def mismatched(texts: list[str], langs: list[str]) -> float:
        """Share of texts whose words are of the other language than their row's."""
        other = {"en": set(FR), "fr": set(EN)}
        return float(
            np.mean([bool(set(w.split()) & other[g]) for w, g in zip(texts, langs, strict=True)])
        )

    assert mismatched(made, lang) == 0.0
    # without the parent a text's language is drawn apart from its row's
    alone = TextTransform.fit(tt.column, t.column("title"), rng_for(0, 0))
    assert alone.parent is None
    z = np.zeros((len(lang), 1), np.float32)
    plain = alone.decode_given(z, len(lang), np.random.default_rng(0), out.column("lang"))
    assert mismatched(plain.to_pylist(), lang) > 0.3
    # saved and loaded, and on the torch decode: the same rows
    from tests.test_torch_decode import assert_same_decode

    x = tr.encode(t)
    assert_same_decode(tr, x, "cpu", on_host={"title"})
    meta, arrays = tt.state()
    back = TextTransform.from_state(tt.column, meta, arrays)
    assert back.parent == "lang" and back.classes == ["en", "fr"]
    z = np.zeros((200, tt.n_slots), np.float32)
    parent = t.column("lang").slice(0, 200).combine_chunks()
    assert back.decode_given(z, 200, np.random.default_rng(3), parent).equals(
        tt.decode_given(z, 200, np.random.default_rng(3), parent)
    )
