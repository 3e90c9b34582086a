"""The out_dim stages' options beyond the paper: neighbour positives, the negative bank, the
PCA start of the new layer (simcne.neighbors) and their parameters."""

import math

import numpy as np
import pytest
import torch

from simcne import TSimCNE
from simcne.losses import info_nce
from simcne.neighbors import NegativeBank, NeighborPairs, StepExtras, knn_table, pca_layer_

from conftest import quick


def _cauchy(a, b):
    return 1.0 / (1.0 + float(np.sum((a - b) ** 2)))


def test_extra_negatives_join_the_denominator_by_hand():
    rng = np.random.default_rng(0)
    z, extra = rng.normal(size=(6, 2)), rng.normal(size=(5, 2))
    mask = np.zeros((6, 5), bool)
    mask[0, 1] = mask[4, 0] = mask[4, 3] = True
    total = 0.0
    for i in range(6):
        pos = (i + 3) % 6
        denom = sum(_cauchy(z[i], z[j]) for j in range(6) if j != i)
        denom += sum(_cauchy(z[i], extra[m]) for m in range(5) if not mask[i, m])
        total += -math.log(_cauchy(z[i], z[pos]) / denom)
    got = info_nce(torch.tensor(z), extra=torch.tensor(extra), extra_mask=torch.tensor(mask))
    assert got.item() == pytest.approx(total / 6, rel=1e-6)


def test_extra_negatives_get_no_gradient():
    z = torch.randn(8, 2, requires_grad=True)
    extra = torch.randn(4, 2, requires_grad=True)
    info_nce(z, extra=extra).backward()
    assert z.grad is not None and extra.grad is None


def test_knn_table_equals_brute_force():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(200, 16)).astype(np.float32)
    table = knn_table(f, 5, chunk=64)
    g = f / np.linalg.norm(f, axis=1, keepdims=True)
    sims = g @ g.T
    np.fill_diagonal(sims, -np.inf)
    want = np.argsort(-sims, axis=1)[:, :5]
    assert table.shape == (200, 5)
    assert (np.sort(table.numpy(), 1) == np.sort(want, 1)).mean() > 0.99  # float ties aside
    assert not (table.numpy() == np.arange(200)[:, None]).any()  # never itself


def test_knn_table_caps_k_and_refuses_one_image():
    assert knn_table(np.eye(3), 10).shape == (3, 2)
    with pytest.raises(ValueError, match="at least 2 images"):
        knn_table(np.ones((1, 4)), 3)


def test_partners_are_neighbours_or_the_image_itself_and_seeded():
    table = torch.tensor([[1, 2], [0, 2], [0, 1], [0, 1]])
    pairs = NeighborPairs(table)
    index = torch.arange(4).repeat(500)
    p = pairs.partners(index, torch.Generator().manual_seed(0))
    allowed = [{0, 1, 2}, {1, 0, 2}, {2, 0, 1}, {3, 0, 1}]
    assert all(int(b) in allowed[int(a)] for a, b in zip(index, p))
    share_self = (p == index).float().mean().item()
    assert share_self == pytest.approx(1 / 3, abs=0.05)  # k/(k+1) = 2/3 neighbours
    again = pairs.partners(index, torch.Generator().manual_seed(0))
    assert torch.equal(p, again)


def test_bank_size_sampling_and_refresh():
    bank = NegativeBank(np.zeros((10, 2)), size=100, device="cpu")
    idx, values = bank.negatives(torch.Generator().manual_seed(0))
    assert torch.equal(idx, torch.arange(10)) and values.shape == (10, 2)  # capped at N
    small = NegativeBank(np.zeros((10, 2)), size=4, device="cpu")
    idx, values = small.negatives(torch.Generator().manual_seed(0))
    assert idx.shape == (4,) and values.shape == (4, 2)
    bank.update(torch.tensor([3, 7]), torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert bank.pos[3].tolist() == [1.0, 2.0] and bank.pos[7].tolist() == [3.0, 4.0]
    assert bank.pos[0].tolist() == [0.0, 0.0]


def test_step_extras_mask_the_rows_own_and_positive_images():
    bank = NegativeBank(np.arange(12.0).reshape(6, 2), size=6, device="cpu")
    extras = StepExtras(bank, torch.Generator().manual_seed(0))
    a, b = torch.tensor([0, 1]), torch.tensor([2, 1])
    extras.set_batch(torch.cat([a, b]), torch.cat([b, a]), torch.cat([a, b]))
    mask = extras.loss_kw()["extra_mask"]
    assert mask.shape == (4, 6)
    assert mask[0].nonzero().flatten().tolist() == [0, 2]
    assert mask[1].nonzero().flatten().tolist() == [1]
    extras.after(torch.full((4, 2), -1.0))
    assert bank.pos[[0, 1, 2]].eq(-1).all() and bank.pos[3].tolist() == [6.0, 7.0]


def test_pca_layer_projects_on_the_top_components_at_a_random_layers_spread():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 20, generator=gen) * torch.linspace(0.1, 1, 20) + 3.0
    x[:, 7] *= 10  # the largest direction: axis 7
    x[:, 3] *= 5   # the second: axis 3
    layer = torch.nn.Linear(20, 2)
    pca_layer_(layer, x, std=0.1)
    y = layer(x).detach()
    assert y.mean(0).abs().max() < 1e-3  # centred
    w = layer.weight.detach()
    assert w[0].abs().argmax() == 7 and w[1].abs().argmax() == 3
    want = 0.1 ** 2 * 2 * (x * x).sum(1).mean()  # a random N(0, 0.1^2) layer's output variance
    assert (y.var(0).sum() / want).item() == pytest.approx(1.0, rel=0.01)


@pytest.fixture(scope="module")
def papers_map(tiny):
    return quick().fit_transform(tiny[0])


@pytest.mark.parametrize("kw", [dict(neighbor_positives=3), dict(bank_negatives=1000),
                                dict(out_layer_init="pca"),
                                dict(neighbor_positives=3, bank_negatives=16,
                                     out_layer_init="pca")])
def test_same_seed_same_map_and_other_than_the_papers(tiny, papers_map, kw):
    a = quick(**kw).fit_transform(tiny[0])
    b = quick(**kw).fit_transform(tiny[0])
    paper = papers_map
    assert np.array_equal(a, b)
    assert np.isfinite(a).all() and not np.allclose(a, paper)


def test_the_bank_is_refreshed_while_training(tiny, monkeypatch):
    import simcne.neighbors as nb

    seen = []
    real = nb.NegativeBank.update

    def spy(self, index, z):
        seen.append((self.pos.clone(), index.clone()))
        real(self, index, z)

    monkeypatch.setattr(nb.NegativeBank, "update", spy)
    est = quick(bank_negatives=10_000, total_epochs=[1, 1, 1])
    est.fit(tiny[0])
    n = len(tiny[0])
    assert len(seen) == 2 * (n // 32)  # every step of stages 2 and 3
    assert all(pos.shape == (n, 2) for pos, _ in seen)
    first, last = seen[0][0], seen[-1][0]
    assert not torch.equal(first, last)


@pytest.mark.parametrize("name,value", [("neighbor_positives", -1), ("neighbor_positives", 2.5),
                                        ("bank_negatives", -3), ("bank_negatives", "all"),
                                        ("out_layer_init", "svd")])
def test_bad_values_name_the_parameter(tiny, name, value):
    with pytest.raises(ValueError, match=f"'{name}' parameter of TSimCNE must be"):
        quick(**{name: value}).fit(tiny[0])


def test_defaults_keep_the_papers_recipe():
    est = TSimCNE()
    assert (est.neighbor_positives, est.bank_negatives, est.out_layer_init) == (0, 0, "random")


@pytest.mark.parametrize("stop", [(2, 1), (3, 1)])
def test_resumed_run_with_neighbours_and_bank_equals_an_uninterrupted_one(tiny, tmp_path,
                                                                          stop):
    X = tiny[0]
    params = dict(total_epochs=[2, 2, 2], random_state=5, neighbor_positives=3,
                  bank_negatives=50)
    full = quick(**params).fit(X)
    path = tmp_path / "run.ckpt"
    quick(**params, checkpoint=str(path), checkpoint_every=1,
          callbacks=lambda s, e, loss, model: (s, e) == stop).fit(X)
    state = torch.load(path, weights_only=True)
    assert state["extras"]["neighbors"].shape == (len(X), 3)
    assert state["extras"]["bank"].shape == (len(X), 2)
    second = quick(**params, checkpoint=str(path), checkpoint_every=1).fit(X)
    np.testing.assert_array_equal(second.loss_history_, full.loss_history_)
    np.testing.assert_array_equal(second.embedding_, full.embedding_)
