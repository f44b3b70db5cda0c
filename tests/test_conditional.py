"""Conditional generation: fixed values, seed rows and rebalancing, exact by construction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pfcore.conditions import Conditions, Rebalance, SeedRows, Where
from pfcore.errors import InputError

N_TRAIN = 4000


def toy_table(n: int = N_TRAIN, seed: int = 0) -> pa.Table:
    """A table with a known conditional law: P(y=u | x=a) = 0.9, P(y=u | x=b) = 0.2,
    num ~ N(3 [x=a], 1); ``opt`` is null in 20% of rows; ``r`` is 'rare' in 0.5% of rows;
    ``when`` is a UTC timestamp in 2020; ``day`` an integer code 1..12 (categorical: few values),
    uniform on 1..8 when x=a and on 5..12 when x=b."""
    rng = np.random.default_rng(seed)
    x = rng.choice(["a", "b"], n)
    y = np.where(rng.random(n) < np.where(x == "a", 0.9, 0.2), "u", "v")
    num = rng.normal(size=n) + 3 * (x == "a")
    opt = rng.normal(size=n)
    r = np.where(np.arange(n) % 200 == 7, "rare", "common")
    return pa.table(
        {
            "x": x,
            "y": y,
            "num": num,
            "k": rng.integers(0, 150, n),
            "opt": pa.array(opt, mask=rng.random(n) < 0.2),
            "r": r,
            "day": rng.integers(1, 9, n) + 4 * (x == "b"),
            "when": pa.array(
                1_577_836_800_000_000 + rng.integers(0, 366 * 86_400, n) * 1_000_000,
                type=pa.timestamp("us", tz="UTC"),
            ),
        }
    )


def _fit_saved(tmp_path_factory: pytest.TempPathFactory, family: str, distill_steps: int):
    """A small model of ``toy_table`` of ``family``, saved; returns its folder."""
    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer

    table = toy_table()
    config = {
        "width": 128,
        "depth": 3,
        "max_steps": 600,
        "n_pairs": 4000,
        "distill_max_steps": distill_steps,
        "conditional_max_steps": 1500,
    }
    synth = Synthesizer.fit(
        table, infer_schema(table), family=family, preset="tiny", config=config, seed=0
    )
    return synth.save(tmp_path_factory.mktemp("cond") / family)


@pytest.fixture(scope="module")
def toy_synth(tmp_path_factory: pytest.TempPathFactory):
    """A small one-step model (with its flow teacher and conditional student), saved and loaded
    back."""
    from pfcore.synthesizer import Synthesizer

    path = _fit_saved(tmp_path_factory, "onestep", distill_steps=200)
    assert (path / "model" / "teacher" / "model.json").exists()
    assert (path / "model" / "conditional" / "student.json").exists()
    return Synthesizer.load(path)


@pytest.fixture(scope="module")
def hybrid_synth(tmp_path_factory: pytest.TempPathFactory):
    """A small hybrid model (its conditional networks saved in its weights), loaded back."""
    from pfcore.synthesizer import Synthesizer

    return Synthesizer.load(_fit_saved(tmp_path_factory, "hybrid", distill_steps=300))


@pytest.fixture(params=["toy_synth", "hybrid_synth"])
def synth(request: pytest.FixtureRequest):
    """Each family that supplies its own conditional sampler (onestep: mask-conditioned student;
    hybrid: any-order discrete network + numeric student)."""
    return request.getfixturevalue(request.param)


# ------------------------------------------------------------------------ the request object
def test_where_and_rebalance_parse_and_round_trip_json(tmp_path: Path) -> None:
    assert Where.parse("region = EU") == Where("region", "=", "EU")
    assert Where.parse("age>=30") == Where("age", ">=", "30")
    assert Where.parse("t<2020-01-01T00:00:00") == Where("t", "<", "2020-01-01T00:00:00")
    assert Where.parse("a==1").op == "="
    for bad in ("region", "=EU", "age>="):
        with pytest.raises(InputError):
            Where.parse(bad)
    rb = Rebalance.parse("y=yes:0.3,no:0.7")
    assert rb.weights == (("yes", 0.3), ("no", 0.7))
    assert Rebalance.parse("y=uniform").uniform
    for bad in ("y", "y=yes", "y=yes:x", "y=yes:0.8,no:0.8", "y=yes:-1"):
        with pytest.raises(InputError):
            Rebalance.parse(bad)
    seed = pa.table({"x": ["a", None]})
    path = tmp_path / "seed.parquet"
    import pyarrow.parquet as pq

    pq.write_table(seed, path)
    c = Conditions.make(where=["x=a", "num>=1"], rebalance="y=u:0.5", seed_rows=path)
    back = Conditions.from_dict(json.loads(c.to_json()))
    assert back == c and back.digest() == c.digest()
    assert back.seed_rows is not None and back.seed_rows.table.equals(c.seed_rows.table)
    pq.write_table(pa.table({"x": ["b", None]}), path)  # content changed since the request
    with pytest.raises(InputError, match="changed"):
        Conditions.from_dict(json.loads(c.to_json()))
    d = Conditions.make(where={"num": (1, None), "x": "a"})
    assert d.where == (Where("num", ">=", 1), Where("x", "=", "a"))
    # the conditional sampler travels with the request (and is part of its identity)
    e = Conditions.make(where=["x=a"], method="inpaint")
    assert Conditions.from_dict(json.loads(e.to_json())) == e and e.method == "inpaint"
    assert e.digest() != Conditions.make(where=["x=a"]).digest()
    assert Conditions.from_dict({"where": [{"column": "x", "op": "=", "value": "a"}]}).method == (
        "auto"
    )  # recorded before the method was
    with pytest.raises(InputError, match=r"conditional_method must be one of \['auto', 'student'"):
        Conditions.make(where=["x=a"], method="fast")
    with pytest.raises(InputError, match="conditional_method 'inpaint' applies only to a cond"):
        Conditions.make(method="inpaint")
    assert Conditions.make(method="auto").empty


# ------------------------------------------------------------------------ exactness
def test_fixed_values_are_met_exactly(synth) -> None:
    c = Conditions.make(where=["x=b", "k=7", "num>=0.5", "num<1.25"])
    out = synth.sample(1500, 1, conditions=c).to_pandas()
    assert len(out) == 1500
    assert (out.x == "b").all() and (out.k == 7).all()
    assert out.num.between(0.5, 1.25).all()
    assert out.num.nunique() > 100  # a range is drawn from, not pinned
    assert synth.sample(1500, 1, conditions=c).to_pandas().equals(out)
    assert not synth.sample(200, 2, conditions=c).equals(synth.sample(200, 1, conditions=c))


def test_a_missing_value_can_be_asked_for(synth) -> None:
    """``opt=null`` (``None`` from Python) fixes the number's missing indicator: every row
    has ``opt`` missing, the other columns keep their law (``opt`` is missing at random, so x
    stays near 50/50), and the request round-trips through its JSON form."""
    c = Conditions.make(where=["opt=null", "x=b"])
    out = synth.sample(1500, 6, conditions=c).to_pandas()
    assert out.opt.isna().all() and (out.x == "b").all()
    same = Conditions.make(where={"opt": None, "x": "b"})
    assert synth.sample(1500, 6, conditions=same).to_pandas().equals(out)
    again = Conditions.from_dict(json.loads(json.dumps(c.to_dict())))
    assert synth.sample(1500, 6, conditions=again).to_pandas().equals(out)
    alone = synth.sample(2000, 7, conditions=Conditions.make(where={"opt": None})).to_pandas()
    assert alone.opt.isna().all() and abs((alone.x == "a").mean() - 0.5) < 0.1


def test_a_range_on_an_integer_code_draws_its_classes_by_their_frequency(synth) -> None:
    """``day`` is categorical (12 integer codes); a range on it keeps every class inside, in
    proportion to its training count, and the other columns follow the drawn class."""
    assert synth.schema["day"].kind == "categorical"
    c = Conditions.make(where=["day>=5", "day<8"])
    out = synth.sample(3000, 3, conditions=c).to_pandas()
    assert set(out.day) == {5, 6, 7}
    shares = out.day.value_counts(normalize=True)
    assert all(abs(shares[d] - 1 / 3) < 0.06 for d in (5, 6, 7))
    assert synth.sample(3000, 3, conditions=c).to_pandas().equals(out)
    low = synth.sample(1000, 4, conditions=Conditions.make(where=["day<=3"])).to_pandas()
    assert set(low.day) == {1, 2, 3} and (low.x == "a").mean() > 0.7  # 0.5 unconditionally


def test_seed_rows_keep_given_columns_and_nulls_one_row_each(synth) -> None:
    real = toy_table(500, seed=9)
    given = real.select(["x", "opt"])
    assert given.column("opt").null_count > 50
    out = synth.sample(None, 3, conditions=Conditions.make(seed_rows=given))
    assert out.num_rows == real.num_rows
    assert out.column("x").equals(given.column("x"))
    assert out.column("opt").equals(given.column("opt"))  # nulls given as values are kept
    # generated columns follow the given ones (num is ~3 higher where x=a)
    df = out.to_pandas()
    assert df[df.x == "a"].num.mean() - df[df.x == "b"].num.mean() > 2.0
    with pytest.raises(InputError, match="seed rows hold 500"):
        synth.sample(10, 3, conditions=Conditions.make(seed_rows=given))


def test_rebalancing_hits_the_target_shares(synth) -> None:
    out = synth.sample(2500, 4, conditions=Conditions.make(rebalance="x=a:0.8")).to_pandas()
    assert abs((out.x == "a").mean() - 0.8) < 0.03
    # the other columns follow each class: num ~ 3 for a, ~ 0 for b
    assert out[out.x == "a"].num.mean() - out[out.x == "b"].num.mean() > 2.0
    uni = synth.sample(2500, 4, conditions=Conditions.make(rebalance="r=uniform")).to_pandas()
    assert abs((uni.r == "rare").mean() - 0.5) < 0.03


# ------------------------------------------------------------------------ conditional law
def test_conditional_frequencies_follow_the_known_law(synth) -> None:
    """P(y=u | x=a) = 0.9 and P(y=u | x=b) = 0.2; E[num | x=a] = 3, E[num | x=b] = 0."""
    a = synth.sample(2500, 5, conditions=Conditions.make(where=["x=a"])).to_pandas()
    b = synth.sample(2500, 5, conditions=Conditions.make(where=["x=b"])).to_pandas()
    assert abs((a.y == "u").mean() - 0.9) < 0.08
    assert abs((b.y == "u").mean() - 0.2) < 0.16
    # (a 600-step toy model: the two means are 3 apart, each within 0.35 of its law)
    assert abs(a.num.mean() - 3.0) < 0.35 and abs(b.num.mean()) < 0.35
    # range on num: x=a carries nearly all the mass of num in [3, 4]
    hi = synth.sample(2500, 5, conditions=Conditions.make(where=["num>=3", "num<=4"]))
    assert (hi.to_pandas().x == "a").mean() > 0.7


def test_a_fixed_class_draws_the_columns_before_it_from_the_networks_posterior(
    hybrid_synth,
) -> None:
    """Fixing ``y`` (after ``x`` in the hybrid's discrete order) draws ``x`` per row from the
    discrete network's exact law given ``y`` (``HybridModel.prefix_posterior``), held as
    given, so the sampler draws only what follows: P(x=a | y=u) = 0.45 / 0.55 = 0.82 in the
    data. The same request gives the same rows; a request with a number keeps the any-order
    network (the posterior would ignore the number)."""
    order = [b.column for b in hybrid_synth.model.blocks if b.kind == "onehot"]
    assert order.index("x") < order.index("y")
    request = Conditions.make(where=["y=u"])
    plan = hybrid_synth.compile_conditions(request)
    assert plan.prefix is not None
    spans, combos, cum = plan.prefix
    x_start = next(b.start for b in hybrid_synth.model.blocks if b.column == "x")
    assert spans[0][0] == x_start and combos.shape[1] == len(spans)
    assert np.all(np.diff(cum) >= 0) and abs(cum[-1] - 1.0) < 1e-9
    rows = hybrid_synth.sample(4000, 5, conditions=request).to_pandas()
    assert (rows.y == "u").all()
    share = float((rows.x == "a").mean())
    assert abs(share - 0.82) < 0.08, share  # measured 0.824
    assert hybrid_synth.sample(4000, 5, conditions=request).to_pandas().equals(rows)
    assert hybrid_synth.compile_conditions(Conditions.make(where=["y=u", "num<=3"])).prefix is None


def test_the_project_sampler_keeps_given_numbers_and_the_law(hybrid_synth) -> None:
    """'project' (the hybrid's student at a latent point moved onto the given numbers): a
    range and seed rows are met exactly, the discrete columns follow the given number (x=a
    carries nearly all of num in [3, 4]), and the same request gives the same rows."""
    c = Conditions.make(where=["num>=3", "num<=4"], method="project")
    out = hybrid_synth.sample(2500, 5, conditions=c).to_pandas()
    assert out.num.between(3, 4).all() and (out.x == "a").mean() > 0.7
    assert hybrid_synth.sample(2500, 5, conditions=c).to_pandas().equals(out)
    given = toy_table(500, seed=9).select(["num", "opt"])
    seeded = hybrid_synth.sample(
        None, 3, conditions=Conditions.make(seed_rows=given, method="project")
    )
    assert seeded.column("num").equals(given.column("num"))
    assert seeded.column("opt").equals(given.column("opt"))


def test_rare_condition_is_answered_in_one_pass(synth, monkeypatch) -> None:
    """'rare' is 0.5% of the training rows: every row meets it, one model call per block."""
    calls = []
    real = type(synth).push_conditional

    def counting(self, *args, **kwargs):
        calls.append(args[0].shape[0])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(synth), "push_conditional", counting)
    out = synth.sample(5000, 6, block_rows=2048, conditions=Conditions.make(where=["r=rare"]))
    assert out.num_rows == 5000 and set(out.column("r").to_pylist()) == {"rare"}
    assert calls == [2048, 2048, 904]


# ------------------------------------------------------------------------ refusals
@pytest.mark.parametrize(
    ("where", "rebalance", "column", "match"),
    [
        (["x=c"], None, "x", "never occurs"),
        (["num>=100"], None, "num", "outside the column's bounds"),
        (["k=500"], None, "k", "outside the column's bounds"),
        (["x=a", "x=b"], None, "x", "contradictory"),
        (["num>5", "num<1"], None, "num", "contradictory"),
        (["k=3", "k>=10"], None, "k", "contradictory"),
        (["zz=1"], None, "zz", "unknown column"),
        (["x>=a"], None, "x", "use '='"),
        (["day>=13"], None, "day", "no value seen in training"),
        (["day=3", "day>5"], None, "day", "contradictory"),
        (["x=null"], None, "x", "never missing"),
        (["num=NULL"], None, "num", "never missing"),
        (["opt=null", "opt>=0"], None, "opt", "contradictory"),
        (["opt>=null"], None, "opt", "compares with null"),
        (["k=seven"], None, "k", "not a valid"),
        (["x=a"], "x=a:0.5", "x", "contradictory"),
        ([], "y=w:0.5", "y", "never occurs"),
        ([], "num=1:0.5", "num", "rebalancing applies"),
    ],
)
def test_impossible_and_contradictory_requests_name_the_column(
    toy_synth, where, rebalance, column, match
) -> None:
    with pytest.raises(InputError, match=match) as info:
        toy_synth.sample(10, 1, conditions=Conditions.make(where=where, rebalance=rebalance))
    assert info.value.column == column


def test_bad_seed_rows_are_refused_naming_the_column(toy_synth) -> None:
    for table, column, match in [
        (pa.table({"x": ["a", "zz"]}), "x", "never occurs"),
        (pa.table({"nope": [1, 2]}), "nope", "does not know"),
        (pa.table({"num": pa.array([1.0, None])}), "num", "no missing values"),
    ]:
        with pytest.raises(InputError, match=match) as info:
            toy_synth.sample(None, 1, conditions=Conditions(seed_rows=SeedRows.from_table(table)))
        assert info.value.column == column
    with pytest.raises(InputError, match="contradictory"):
        toy_synth.sample(
            None,
            1,
            conditions=Conditions.make(where=["x=a"], seed_rows=pa.table({"x": ["a"]})),
        )


def test_family_without_a_conditional_sampler_says_so(toy_synth) -> None:
    from pfcore.errors import ModelError
    from pfcore.synthesizer import Synthesizer

    bare = Synthesizer(toy_synth.schema, toy_synth.transformer, toy_synth.model)
    model = bare.model
    teacher, student = model.teacher, model.conditional_student
    model.teacher = model.conditional_student = None
    try:
        with pytest.raises(ModelError, match="teacher"):
            bare.sample(10, 1, conditions=Conditions.make(where=["x=a"]))
    finally:
        model.teacher, model.conditional_student = teacher, student


# ------------------------------------------------------------------------ the two samplers
def _forwards(module) -> tuple[list[int], object]:
    """Count forward calls of ``module`` (one per network evaluation on a block)."""
    calls: list[int] = []
    handle = module.register_forward_hook(lambda _m, args, _out: calls.append(args[0].shape[0]))
    return calls, handle


def test_student_samples_in_one_network_evaluation_per_block(toy_synth) -> None:
    """The student path: exact rows and given values, deterministic, one forward per block;
    inpainting runs the flow ``DEFAULT_STEPS`` times per block for the same request."""
    from pfcore.models.conditional import DEFAULT_STEPS, conditional_method

    model = toy_synth.model
    assert conditional_method(model) == "student"
    request = {"where": ["x=b", "num>=0.5", "num<1.25"], "rebalance": "y=uniform"}
    c = Conditions.make(**request)
    runs = {}
    for sampler in ("auto", "inpaint"):
        student, h1 = _forwards(model.conditional_student)
        teacher, h2 = _forwards(model.teacher.velocity_net)
        try:
            out = toy_synth.sample(
                1200, 4, block_rows=512, conditions=Conditions.make(**request, method=sampler)
            )
        finally:
            h1.remove()
            h2.remove()
        runs[sampler] = (out, student, teacher)
        df = out.to_pandas()
        assert len(df) == 1200 and (df.x == "b").all() and df.num.between(0.5, 1.25).all()
        assert set(df.y) == {"u", "v"}
    out, student, teacher = runs["auto"]
    assert student == [512, 512, 176] and teacher == []
    _, student, teacher = runs["inpaint"]
    assert student == [] and len(teacher) == 3 * DEFAULT_STEPS
    assert not out.equals(runs["inpaint"][0])
    assert toy_synth.sample(1200, 4, block_rows=512, conditions=c).equals(out)
    # seed rows: given columns kept exactly (nulls too), one student forward per block
    given = toy_table(700, seed=5).select(["x", "opt", "k"])
    student, h1 = _forwards(model.conditional_student)
    try:
        done = toy_synth.sample(
            None, 2, block_rows=512, conditions=Conditions.make(seed_rows=given)
        )
    finally:
        h1.remove()
    assert done.select(["x", "opt", "k"]).equals(given) and student == [512, 188]


def test_an_artifact_without_a_student_samples_by_inpainting(toy_synth, tmp_path: Path) -> None:
    """Models saved before the student existed (or fitted without it) still sample
    conditionally: the planner falls back to the flow teacher."""
    import shutil

    from pfcore.errors import ModelError
    from pfcore.models.conditional import conditional_method
    from pfcore.synthesizer import Synthesizer

    path = toy_synth.save(tmp_path / "old")
    shutil.rmtree(path / "model" / "conditional")
    old = Synthesizer.load(path)
    assert old.model.conditional_student is None and conditional_method(old.model) == "inpaint"
    teacher, handle = _forwards(old.model.teacher.velocity_net)
    try:
        out = old.sample(300, 1, conditions=Conditions.make(where=["x=a"])).to_pandas()
    finally:
        handle.remove()
    assert (out.x == "a").all() and len(teacher) > 1
    with pytest.raises(ModelError, match="conditional_method 'student'.*no conditional student"):
        old.sample(10, 1, conditions=Conditions.make(where=["x=a"], method="student"))
    with pytest.raises(
        ModelError, match="'project' needs a hybrid model.*'onestep' model has none"
    ):
        old.sample(10, 1, conditions=Conditions.make(where=["x=a"], method="project"))


# ------------------------------------------------------------------------ batches
def _read(manifest) -> pa.Table:
    import pyarrow.parquet as pq

    return pa.concat_tables([pq.read_table(p) for p in manifest.file_paths])


@pytest.mark.parametrize(
    ("model", "kind", "method"),
    [
        ("toy_synth", "where", "auto"),
        ("toy_synth", "where", "inpaint"),
        ("toy_synth", "seed_rows", "auto"),
        ("hybrid_synth", "where", "auto"),
        ("hybrid_synth", "seed_rows", "auto"),
        ("hybrid_synth", "where", "project"),
        ("hybrid_synth", "seed_rows", "project"),
    ],
)
def test_conditional_batch_same_rows_with_1_and_3_shards(
    request: pytest.FixtureRequest, tmp_path: Path, model, kind, method
) -> None:
    import pyarrow.parquet as pq

    toy_synth = request.getfixturevalue(model)

    from pfcore.generate import BatchLayout, BatchTarget, RunOptions, generate_batch

    if kind == "where":
        conditions = Conditions.make(
            where=["x=a", "num<=3.5"], rebalance="y=uniform", method=method
        )
        n = 1200
        # num <= 3.5 holds on about 85% of the rows: the model's own draws of num are kept
        # where they land inside, the others drawn again (``own_ranges``), as every shard sees
        assert toy_synth.compile_conditions(conditions).own_ranges
    else:
        given = toy_table(1200, seed=3).select(["x", "opt", "k"])
        conditions, n = Conditions.make(seed_rows=given, method=method), None
    manifests = [
        generate_batch(
            toy_synth,
            n,
            11,
            BatchTarget(tmp_path / f"out{shards}", "toy", model_name="toy", model_version="1"),
            layout=BatchLayout(block_rows=256, rows_per_shard=-(-1200 // shards)),
            run=RunOptions(workers=shards, executor="thread"),
            conditions=conditions,
        )
        for shards in (1, 3)
    ]
    one, three = (_read(m) for m in manifests)
    assert len(manifests[0].files) == 1 and len(manifests[1].files) == 3
    if method != "auto":  # the sampler asked for is the one recorded
        assert all(m.data["conditions"]["method"] == method for m in manifests)
    assert one.num_rows == 1200 and one.equals(three)
    assert one.equals(toy_synth.sample(n, 11, block_rows=256, conditions=conditions))
    assert manifests[0].batch_id == manifests[1].batch_id
    recorded = manifests[0].data["conditions"]
    from pfcore.generate.plan import conditions_digest

    # the request as compiled: "auto" replaced by the sampler that ran (the student here)
    resolved = toy_synth.compile_conditions(conditions).conditions
    assert recorded["method"] == resolved.method == {"auto": "student"}.get(method, method)
    assert conditions_digest(recorded) == resolved.digest()  # seed rows: by content hash
    meta = pq.read_schema(manifests[1].file_paths[0]).metadata
    assert json.loads(meta[b"pushforward.conditions"]) == manifests[1].data["conditions"]
    plain = generate_batch(
        toy_synth,
        1200,
        11,
        BatchTarget(tmp_path / "plain", "toy", model_name="toy", model_version="1"),
        layout=BatchLayout(block_rows=256),
        run=RunOptions(executor="thread"),
    )
    assert plain.batch_id != manifests[0].batch_id  # the conditions are part of the identity
    if kind == "seed_rows":
        assert one.select(["x", "opt", "k"]).equals(given)


def test_conditional_method_is_resolved_recorded_and_part_of_the_batch_id(
    toy_synth, tmp_path: Path
) -> None:
    """ "auto" publishes exactly the student's batch (same id, same rows) and records "student";
    inpainting gives other rows for the same seed, under its own batch id."""
    import pyarrow.parquet as pq

    from pfcore.generate import BatchLayout, BatchTarget, RunOptions, generate_batch

    manifests = {
        m: generate_batch(
            toy_synth,
            700,
            5,
            BatchTarget(tmp_path / m, "toy", model_name="toy", model_version="1"),
            layout=BatchLayout(block_rows=256),
            run=RunOptions(executor="thread"),
            conditions=Conditions.make(where=["x=b"], rebalance="y=uniform", method=m),
        )
        for m in ("auto", "student", "inpaint")
    }
    recorded = {m: man.data["conditions"]["method"] for m, man in manifests.items()}
    assert recorded == {"auto": "student", "student": "student", "inpaint": "inpaint"}
    for man in manifests.values():
        meta = pq.read_schema(man.file_paths[0]).metadata
        assert (
            json.loads(meta[b"pushforward.conditions"])["method"]
            == man.data["conditions"]["method"]
        )
    rows = {m: _read(man) for m, man in manifests.items()}
    assert rows["auto"].equals(rows["student"])
    assert manifests["auto"].batch_id == manifests["student"].batch_id
    assert manifests["inpaint"].batch_id != manifests["student"].batch_id
    assert not rows["inpaint"].equals(rows["student"])
    num = {m: np.asarray(t.column("num")) for m, t in rows.items()}
    assert not np.allclose(num["inpaint"], num["student"])  # different rows, not a reordering
    for t in rows.values():  # both meet the request exactly
        assert set(t.column("x").to_pylist()) == {"b"}


def test_conditional_batch_is_refused_before_anything_is_staged(toy_synth, tmp_path: Path) -> None:
    from pfcore.generate import BatchTarget, RunOptions, generate_batch

    with pytest.raises(InputError) as info:
        generate_batch(
            toy_synth,
            100,
            1,
            BatchTarget(tmp_path, "toy"),
            run=RunOptions(executor="thread"),
            conditions=Conditions.make(where=["x=nope"]),
        )
    assert info.value.column == "x"
    assert not (tmp_path / "_staging").exists()


# ------------------------------------------------------------------------ MLflow pyfunc
def test_pyfunc_round_trip_with_conditions_and_seed_rows(
    toy_synth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import pandas as pd

    from pfcore.registry import Registration, log_synthesizer
    from pfcore.registry.frames import predict_frame, to_pandas

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("PUSHFORWARD_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    synth_dir = toy_synth.save(tmp_path / "synth")
    log_synthesizer(
        synth_dir,
        Registration(
            "toy",
            params={"family": "onestep"},
            metrics={"quality": 0.9},
            gate_result={"passed": True, "reasons": [], "checks": []},
            dataset_checksum="toy",
        ),
    )
    model = mlflow.pyfunc.load_model("models:/toy@champion")
    req = pd.DataFrame(
        {
            "n_rows": [300, 200],
            "seed": [7, 8],
            "where": ["x=a; k>=10", None],
            "rebalance": [None, "y=uniform"],
        }
    )
    got = model.predict(req)
    assert len(got) == 500
    assert (got.x[:300] == "a").all() and (got.k[:300] >= 10).all()
    c = Conditions.make(where=["x=a", "k>=10"])
    pd.testing.assert_frame_equal(
        got[:300].reset_index(drop=True),
        to_pandas(toy_synth.sample(300, 7, conditions=c), toy_synth.schema),
    )
    seeds = toy_table(50, seed=4).select(["x", "opt"]).to_pandas()
    done = model.predict(seeds, params={"seed": 3})
    assert len(done) == 50 and list(done.x) == list(seeds.x)
    assert done.opt.isna().tolist() == seeds.opt.isna().tolist()
    assert done.opt[seeds.opt.notna()].tolist() == seeds.opt.dropna().tolist()
    pd.testing.assert_frame_equal(done, predict_frame(toy_synth, seeds, {"seed": 3}))
    with pytest.raises(Exception, match="never occurs"):
        model.predict(pd.DataFrame({"n_rows": [5], "seed": [0], "where": ["x=zz"]}))

    # the conditional sampler: a request column, or a param (seed rows; empty cells)
    req = pd.DataFrame(
        {
            "n_rows": [300, 300, 100],
            "seed": [7, 7, 2],
            "where": ["x=a; k>=10", "x=a; k>=10", None],
            "conditional_method": ["inpaint", "student", None],
        }
    )
    got = model.predict(req)
    inpainted = toy_synth.sample(
        300, 7, conditions=Conditions.make(where=c.where, method="inpaint")
    )
    pd.testing.assert_frame_equal(
        got[:300].reset_index(drop=True), to_pandas(inpainted, toy_synth.schema)
    )
    pd.testing.assert_frame_equal(  # "student" is what "auto" ran above
        got[300:600].reset_index(drop=True),
        to_pandas(toy_synth.sample(300, 7, conditions=c), toy_synth.schema),
    )
    assert not got[:300].reset_index(drop=True).equals(got[300:600].reset_index(drop=True))
    pd.testing.assert_frame_equal(  # the param does not reach a row without conditions
        model.predict(req[2:], params={"conditional_method": "inpaint"}).reset_index(drop=True),
        to_pandas(toy_synth.sample(100, 2), toy_synth.schema),
    )
    by_param = model.predict(
        req[:1].drop(columns="conditional_method"), params={"conditional_method": "inpaint"}
    )
    pd.testing.assert_frame_equal(by_param, got[:300].reset_index(drop=True))
    done_inpaint = model.predict(seeds, params={"seed": 3, "conditional_method": "inpaint"})
    assert list(done_inpaint.x) == list(seeds.x)
    assert not done_inpaint.equals(done)  # same seed rows and seed, the other sampler
    pd.testing.assert_frame_equal(
        done_inpaint, predict_frame(toy_synth, seeds, {"seed": 3, "conditional_method": "inpaint"})
    )
    for bad_req, params in [
        (
            pd.DataFrame(
                {"n_rows": [5], "seed": [0], "where": ["x=a"], "conditional_method": ["fast"]}
            ),
            None,
        ),
        (seeds, {"conditional_method": "fast"}),
    ]:
        with pytest.raises(Exception, match=r"conditional_method must be one of \['auto'"):
            model.predict(bad_req, params=params)
    with pytest.raises(Exception, match="applies only to a conditional request"):
        model.predict(pd.DataFrame({"n_rows": [5], "seed": [0], "conditional_method": ["inpaint"]}))


# ------------------------------------------------------------------------ CLI and flow form
def _cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PUSHFORWARD_HOME", str(tmp_path))


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--where", "region"], "region"),
        (["--where", "age>="], "age"),
        (["--where", "x=1", "--where", ">=3"], ">=3"),
        (["--rebalance", "y=yes:2"], "y"),
        (["--rebalance", "y"], "rebalanc"),
        (["--seed-rows", "nope.parquet"], "nope.parquet"),
        (["--conditional-method", "inpaint"], "conditional_method"),  # nothing to condition
    ],
)
def test_cli_condition_errors_exit_2(
    argv, named, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from flows.cli import main
    from pfcore.errors import EXIT_INPUT

    _cli_env(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert main(["generate", *argv]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1


def test_cli_options_build_typed_conditions(tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    from pydantic import ValidationError

    from flows.cli import build_parser
    from flows.options import model_values
    from flows.params import GenerateParams

    pq.write_table(pa.table({"x": ["a"]}), tmp_path / "s.parquet")
    args = build_parser().parse_args(
        [
            "generate",
            "--where",
            "x=a",
            "--where",
            "num>=1.5",
            "--rebalance",
            "y=uniform",
            "--seed-rows",
            str(tmp_path / "s.parquet"),
            "--conditional-method",
            "inpaint",
        ]
    )
    params = GenerateParams(**model_values(args, GenerateParams))
    assert params.where == ["x=a", "num>=1.5"] and params.rebalance == "y=uniform"
    c = params.conditions()
    assert c.where == (Where("x", "=", "a"), Where("num", ">=", "1.5"))
    assert c.rebalance == Rebalance("y", uniform=True) and c.seed_rows.table.num_rows == 1
    assert params.conditional_method == c.method == "inpaint"
    assert GenerateParams().conditions().empty
    assert GenerateParams(where=["x=a"]).conditions().method == "auto"
    # the Prefect form: the same fields, malformed values rejected with the field named
    schema = GenerateParams.model_json_schema()["properties"]
    assert schema["where"]["type"] == "array" and "rebalance" in schema
    assert schema["conditional_method"]["enum"] == ["auto", "student", "inpaint", "project"]
    assert schema["conditional_method"]["default"] == "auto"
    with pytest.raises(ValidationError, match="where"):
        GenerateParams(where=["x"])
    with pytest.raises(ValidationError, match="conditional_method"):
        GenerateParams(where=["x=a"], conditional_method="fast")
    with pytest.raises(ValidationError, match="conditional_method 'student' applies only"):
        GenerateParams(conditional_method="student")


def test_prefect_form_offers_the_conditional_methods_as_choices() -> None:
    """The generate-batch deployment's form is built from this schema: a choice list whose
    values are the library's, so the UI cannot submit another."""
    from prefect.utilities.callables import parameter_schema

    from flows.generate_batch import generate_batch
    from pfcore.defaults import CONDITIONAL_METHODS

    form = parameter_schema(generate_batch.fn).model_dump()
    field = form["definitions"]["GenerateParams"]["properties"]["conditional_method"]
    assert field["enum"] == list(CONDITIONAL_METHODS) == ["auto", "student", "inpaint", "project"]
    assert field["default"] == "auto" and "inpaint" in field["description"]


def test_cli_rejects_an_unknown_conditional_method_naming_the_choices(capsys) -> None:
    from flows.cli import main

    with pytest.raises(SystemExit) as info:
        main(["generate", "--where", "x=a", "--conditional-method", "fast"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--conditional-method" in err and "invalid choice: 'fast'" in err
    assert "'auto', 'student', 'inpaint'" in err


def test_datetime_ranges_and_values(synth) -> None:
    import datetime as dt

    utc = dt.timezone.utc
    c = Conditions.make(where=["when>=2020-06-01", "when<2020-07-01T00:00:00Z"])
    out = synth.sample(1000, 1, conditions=c).column("when").to_pylist()
    assert min(out) >= dt.datetime(2020, 6, 1, tzinfo=utc)
    assert max(out) < dt.datetime(2020, 7, 1, tzinfo=utc)
    with pytest.raises(InputError, match="outside the column's bounds") as info:
        synth.sample(10, 1, conditions=Conditions.make(where=["when>=2031-01-01"]))
    assert info.value.column == "when"
    with pytest.raises(InputError, match="not a valid"):
        synth.sample(10, 1, conditions=Conditions.make(where=["when>=June"]))


# ------------------------------------------------------------------------ conditions and rules
def test_a_column_a_rule_rebuilds_is_conditioned_only_through_its_inputs() -> None:
    """Fixing ``total`` alone would be written over the value the identity rebuilt from its
    parts, breaking ``total = a + b`` in that row: refused, naming the column and its inputs.
    Seed rows that give the parts too keep the rule (real rows do)."""
    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer

    rng = np.random.default_rng(0)
    a = rng.integers(0, 50, 1500)
    b = rng.integers(0, 50, 1500)
    k = rng.choice(["x", "y"], 1500)
    table = pa.table({"a": a, "b": b, "total": a + b, "k": k})
    config = {"max_steps": 150, "n_pairs": 1000, "distill_max_steps": 50}
    synth = Synthesizer.fit(table, infer_schema(table), preset="tiny", config=config, seed=0)
    assert any(r.kind == "identity" for r in synth.rules.active)
    with pytest.raises(InputError, match="rebuilt on decode from") as info:
        synth.sample(100, 1, conditions=Conditions.make(where=["total=10"]))
    assert info.value.column == "total"
    alone = pa.table({"total": pa.array([10, 20], pa.int64())})
    with pytest.raises(InputError, match="rebuilt on decode"):
        synth.sample(None, 1, conditions=Conditions.make(seed_rows=alone))
    whole = table.select(["a", "b", "total"]).slice(0, 50)
    out = synth.sample(None, 1, conditions=Conditions.make(seed_rows=whole))
    assert out.select(["a", "b", "total"]).equals(whole)
    total = np.asarray(out["total"]) == np.asarray(out["a"]) + np.asarray(out["b"])
    assert total.all()


def test_seed_rows_give_a_rule_built_column_to_the_model_from_its_inputs() -> None:
    """Households never exceed the bedrooms nor the bedrooms the rooms, so the transform models
    the bedrooms by their gap to the column that bounds them and rebuilds them on decode. Seed
    rows that give the bedrooms and that column hold the gap, encoded from them as the training
    rows' was: the model draws the other columns given the given bedrooms, not given bedrooms
    of its own that the given ones are then written over."""
    from pfcore.condition_plan import compile_conditions
    from pfcore.sampling import blocks
    from pfcore.schema import infer_schema
    from pfcore.synthesizer import Synthesizer
    from pfcore.transforms.ruled import RuleTransform

    rng = np.random.default_rng(0)
    rooms = rng.lognormal(7, 0.5, 3000)
    bedrooms = rooms * rng.uniform(0.15, 0.25, 3000)
    households = bedrooms * rng.uniform(0.9, 1.0, 3000)
    table = pa.table({"rooms": rooms, "bedrooms": bedrooms, "households": households})
    config = {"max_steps": 50, "n_pairs": 512, "distill_max_steps": 20}
    synth = Synthesizer.fit(table, infer_schema(table), preset="tiny", config=config, seed=0)
    tr = synth.transformer
    i = tr._index_of["bedrooms"]
    built = tr.transforms[i]
    assert isinstance(built, RuleTransform) and built.layout(), built  # a gap, modelled
    a, b = tr._slices[i]
    given = [*built.depends_on, "bedrooms"]
    seeds = table.select(given).slice(0, 400)
    plan = compile_conditions(Conditions.make(seed_rows=seeds), synth)
    assert plan is not None and plan.mask[a:b].all()
    known, _mask = plan.encoded(next(iter(blocks(400, 7, block_rows=400))))
    trained = tr.encode(table.slice(0, 400), seed=0)[:, a:b]
    np.testing.assert_allclose(known[:, a:b], trained, atol=1e-6)
    out = synth.sample(None, 7, conditions=Conditions.make(seed_rows=seeds))
    assert out.select(given).equals(seeds)
    # given without the column that bounds it, it is refused as before
    with pytest.raises(InputError, match="rebuilt on decode"):
        compile_conditions(Conditions.make(seed_rows=table.select(["bedrooms"])), synth)


def test_an_exact_value_within_the_columns_bounds_beyond_the_fit_rows_is_written(
    toy_synth,
) -> None:
    """A sampled table's fit rows may not reach the bounds its schema (or value protection)
    gives a column: a value between the two is a value of the table, fixed and written on
    every row, not refused; one beyond the bounds is refused."""
    import copy

    synth = copy.deepcopy(toy_synth)
    tr = next(t for t in synth.transformer.transforms if t.column.name == "num")
    knot = float(tr.qn.knots[0])
    tr.lo = knot - 10.0  # as a whole table's minimum below the fit sample's
    value = round(knot - 5.0, 3)
    out = synth.sample(50, 1, conditions=Conditions.make(where=[f"num={value}"]))
    assert out.column("num").to_pylist() == [value] * 50
    with pytest.raises(InputError, match="outside the column's bounds"):
        synth.sample(5, 1, conditions=Conditions.make(where=[f"num={knot - 11.0}"]))
