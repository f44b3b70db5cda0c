"""The flow's optional velocity networks (``FlowConfig.net`` / ``num_embedding``).

Each option must train and sample like the default, save and load to the same rows, and leave
models saved before the options existed loading with the original network. The mode-coverage
check (the 8-Gaussian toy of ``test_models.py``) shows an option actually learns a field.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pfcore import models
from pfcore.errors import ModelError
from pfcore.models.nets import PeriodicEmbedding, ResVelocityNet, VelocityNet
from tests.test_models import NUMERIC2, TINY, TOY, assert_modes_covered, mixture, tiny_mixed

OPTIONS = {
    "resmlp": {"net": "resmlp"},
    "periodic": {"num_embedding": "periodic"},
    "resmlp+periodic": {"net": "resmlp", "num_embedding": "periodic"},
}


def fit_flow(family: str = "flow", **extra) -> models.GenerativeModel:
    x, blocks = tiny_mixed()
    extra_family = (
        dict(n_pairs=512, distill_max_steps=40, conditional_max_steps=0)
        if family == "onestep"
        else {}
    )
    m = models.build(family, {"seed": 0, **TINY, **extra_family, **extra}, preset="tiny")
    m.fit(x[:500], blocks, valid=x[500:])
    return m


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_option_builds_its_network_and_round_trips(option: str, tmp_path: Path) -> None:
    m = fit_flow(**OPTIONS[option])
    net = m.velocity_net  # type: ignore[attr-defined]
    want_cls = ResVelocityNet if "resmlp" in option else VelocityNet
    assert type(net) is want_cls
    embed = getattr(net, "embed", None)
    if "periodic" in option:
        assert isinstance(embed, PeriodicEmbedding)
        # the two numeric columns of the toy table, not its one-hot blocks
        assert embed.numeric.tolist() == [0, 1]
    else:
        assert embed is None
    out = m.sample(300, seed=3)
    assert out.shape == (300, 7) and np.isfinite(out).all()
    np.testing.assert_array_equal(out, m.sample(300, seed=3))
    m.save(tmp_path / "m")
    loaded = models.load(tmp_path / "m", device="cpu")
    assert type(loaded.velocity_net) is want_cls  # type: ignore[attr-defined]
    np.testing.assert_array_equal(out, loaded.sample(300, seed=3))


@pytest.mark.parametrize("option", ["resmlp+periodic"])
def test_onestep_distils_from_an_optional_teacher(option: str, tmp_path: Path) -> None:
    """The student trains on the teacher's (z, endpoint) pairs whatever net the teacher has."""
    m = fit_flow("onestep", **OPTIONS[option])
    assert type(m.teacher.velocity_net) is ResVelocityNet  # type: ignore[attr-defined]
    assert m.fit_summary["distill"]["steps"] == 40
    out = m.sample(200, seed=1)
    m.save(tmp_path / "m")
    np.testing.assert_array_equal(out, models.load(tmp_path / "m").sample(200, seed=1))


def test_default_net_keeps_the_original_state_dict() -> None:
    m = fit_flow()
    net = m.velocity_net  # type: ignore[attr-defined]
    assert type(net) is VelocityNet
    # tiny preset: depth 2; these are the keys models saved before the options carry
    assert sorted(net.state_dict()) == [
        "net.body.0.bias",
        "net.body.0.weight",
        "net.body.2.bias",
        "net.body.2.weight",
        "net.head.bias",
        "net.head.weight",
    ]


def test_model_saved_without_the_options_loads_with_the_plain_net(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = fit_flow()
    m.save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    for key in ("net", "num_embedding", "embedding_freqs", "embedding_dim", "embedding_sigma"):
        del meta["config"][key]  # the config as saved before these keys existed
    (tmp_path / "model.json").write_text(json.dumps(meta))
    loaded = models.load(tmp_path)
    assert type(loaded.velocity_net) is VelocityNet  # type: ignore[attr-defined]
    assert loaded.config.net == "mlp" and loaded.config.num_embedding == "none"
    np.testing.assert_array_equal(m.sample(200, seed=2), loaded.sample(200, seed=2))
    # the missing keys are filled from SAVED_BEFORE, not from today's defaults: were it to name
    # another net, these weights would not fit
    from pfcore.models.flow import FlowConfig

    monkeypatch.setattr(FlowConfig, "SAVED_BEFORE", {"net": "resmlp"})
    with pytest.raises(ModelError, match="weights do not match the saved config"):
        models.load(tmp_path)


def test_weights_of_one_net_refuse_another_config(tmp_path: Path) -> None:
    m = fit_flow()
    m.save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    meta["config"]["net"] = "resmlp"
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="weights do not match the saved config"):
        models.load(tmp_path)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"net": "transformer"}, r"config\.net must be one of \['mlp', 'resmlp'\]"),
        ({"num_embedding": "plr"}, r"config\.num_embedding must be one of"),
        ({"embedding_freqs": 0}, r"config\.embedding_freqs must be an integer >= 1"),
        ({"embedding_dim": 2.5}, r"config\.embedding_dim must be an integer >= 1"),
        ({"embedding_sigma": 0.0}, r"config\.embedding_sigma must be > 0"),
    ],
)
def test_invalid_option_is_refused(bad: dict, match: str) -> None:
    for family in ("flow", "onestep"):
        with pytest.raises(ModelError, match=match):
            models.build(family, bad)


@pytest.mark.parametrize("option", ["resmlp", "periodic"])
def test_optional_net_covers_every_mode(option: str) -> None:
    # resmlp depth counts blocks of two layers: 2 blocks cost about TOY's 3 plain layers
    depth = {"depth": 2} if option == "resmlp" else {}
    m = models.build("flow", dict(TOY, seed=0, **OPTIONS[option], **depth), preset="tiny")
    m.fit(mixture(4000, 0), NUMERIC2, valid=mixture(1000, 1))
    assert_modes_covered(m.sample(4000, seed=5))


def test_an_input_map_embeds_the_mapped_columns_and_keeps_the_raw_input() -> None:
    import torch

    torch.manual_seed(0)
    emb = PeriodicEmbedding(3, [0, 1, 2], n_freqs=4, dim=5, sigma=1.0)
    x = torch.randn(64, 3)
    matrix, offset = torch.randn(3, 3), torch.randn(3)
    plain = emb(x @ matrix + offset)
    emb.set_input_map(matrix, offset)
    mapped = emb(x)
    torch.testing.assert_close(mapped[:, :3], x)  # the network still sees x itself
    torch.testing.assert_close(mapped[:, 3:], plain[:, 3:])  # and the mapped columns' embedding
    assert not any("map_" in k for k in emb.state_dict())  # fixed by its owner, not saved


def test_a_whitened_hybrid_embeds_its_source_columns() -> None:
    import torch

    from tests.test_hybrid import fit, thin_table

    x, blocks = thin_table(n=300)
    rp = dict(net="resmlp", num_embedding="periodic", width=32, depth=1)
    m = fit(x, blocks, max_steps=5, distill_max_steps=5, ar_max_steps=5, **rp)
    assert m.whitener is not None and m.teacher is not None
    matrix, offset = m.teacher.embed.input_map
    torch.testing.assert_close(matrix, m.whitener.inverse_matrix)
    torch.testing.assert_close(offset, m.whitener.mean)
