import math

import numpy as np
import pytest
import torch

from simcne.losses import info_nce


def _hand(z, kernel):
    """InfoNCE by explicit loops: -log k(i, pos) / sum_{j != i} k(i, j), averaged."""
    n = len(z)
    total = 0.0
    for i in range(n):
        pos = (i + n // 2) % n
        denom = sum(kernel(z[i], z[j]) for j in range(n) if j != i)
        total += -math.log(kernel(z[i], z[pos]) / denom)
    return total / n


def cauchy(a, b):
    return 1.0 / (1.0 + float(np.sum((a - b) ** 2)))


def gauss(a, b):
    return math.exp(-float(np.sum((a - b) ** 2)))


def cosine(a, b, t=0.5):
    return math.exp(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) / t)


@pytest.mark.parametrize("metric,kernel", [("euclidean", cauchy), ("gauss", gauss),
                                           ("cosine", cosine)])
@pytest.mark.parametrize("dim", [2, 5])
def test_loss_equals_hand_computation(metric, kernel, dim):
    rng = np.random.default_rng(dim)
    z = rng.normal(size=(6, dim))
    got = info_nce(torch.tensor(z, dtype=torch.float64), metric).item()
    assert got == pytest.approx(_hand(z, kernel), rel=1e-5)


def test_cauchy_on_a_known_configuration():
    # 4 points, pairs (0, 2) and (1, 3) coincide: k(pos) = 1, negatives at distance 1
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    # row 0: positives 1 (dist 0), others: point 1 (d2=1 -> 1/2), point 3 (1/2) -> -log(1/2)
    assert info_nce(z).item() == pytest.approx(math.log(2.0))


def test_cosine_uses_temperature():
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
    assert info_nce(z, "cosine", 0.5).item() != pytest.approx(info_nce(z, "cosine", 1.0).item())


def test_loss_is_finite_for_far_points_and_keeps_gradients():
    z = (torch.randn(8, 2) * 1e4).requires_grad_()
    loss = info_nce(z)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def test_odd_batch_is_an_error():
    with pytest.raises(ValueError, match="even number"):
        info_nce(torch.zeros(5, 2))


@pytest.mark.parametrize("rho", [0.5, 1.0, 4.0])
def test_exaggeration_weights_the_positive_term(rho):
    # -rho * log k(i, pos) + log sum_{j != i} k(i, j), by explicit loops
    rng = np.random.default_rng(1)
    z = rng.normal(size=(8, 2))
    n = len(z)
    hand = 0.0
    for i in range(n):
        pos = (i + n // 2) % n
        hand += (-rho * math.log(cauchy(z[i], z[pos]))
                 + math.log(sum(cauchy(z[i], z[j]) for j in range(n) if j != i)))
    got = info_nce(torch.tensor(z, dtype=torch.float64), exaggeration=rho).item()
    assert got == pytest.approx(hand / n, rel=1e-6)
    if rho == 1.0:  # InfoNCE exactly, the same float path
        zt = torch.tensor(z, dtype=torch.float32)
        assert torch.equal(info_nce(zt, exaggeration=1.0), info_nce(zt))


@pytest.mark.parametrize("rho", [1.0, 3.0])
def test_exaggeration_in_the_gathered_loss(monkeypatch, rho):
    # the torchrun path with a one-process "gather" equals the plain loss
    from simcne import dist, losses

    monkeypatch.setattr(dist, "world_size", lambda: 1)
    monkeypatch.setattr(dist, "rank", lambda: 0)
    monkeypatch.setattr(dist, "all_gather_with_grad", lambda z: z)
    z = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    got = losses._info_nce_gathered(z, "euclidean", 0.5, rho)
    assert got.item() == pytest.approx(info_nce(z, exaggeration=rho).item(), rel=1e-6)
