"""The lean step of issue 27, held: aten operations and host syncs counted with
benchmarks/dispatch.py's TorchDispatchMode on the CPU (one code path on every device)."""

import numpy as np
import pytest
import torch
from conftest import load_script

from simcne.augment import Augment


D = load_script("benchmarks/dispatch.py")


@pytest.mark.parametrize("channels, size, budget", [(3, 32, 150), (1, 28, 80)])
def test_one_augment_call_stays_within_its_budget_without_host_syncs(channels, size, budget):
    # before issue 27: 463 (RGB) and 225 (one channel), on CUDA; 4 host syncs on the CPU
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (512, channels, size, size), dtype=torch.uint8, generator=g)
    aug = Augment(size=size)
    aug(x, generator=g)  # the constants, made once
    c = D.count(aug, x, generator=g)
    assert c.total <= budget, c.ops.most_common()
    assert c.syncs == 0, c.sync_ops
    c2 = D.count(aug.bind(g).two_views, x)  # both views in one call: one more op (a cat)
    assert c2.total <= c.total + 1 and c2.ops["grid_sampler_2d"] == 1 and c2.syncs == 0


def test_constants_are_made_once():
    aug = Augment(size=16)
    x = torch.rand(8, 3, 16, 16)
    aug(x)
    c = D.count(aug, x)
    assert not {"arange", "tensor", "lift_fresh", "eye", "linspace"} & set(c.ops), c.ops


def test_the_two_views_are_one_call_on_the_doubled_batch_with_independent_draws():
    x = torch.randint(0, 256, (6, 3, 12, 12), dtype=torch.uint8)
    aug = Augment(size=12)
    both = aug.bind(torch.Generator().manual_seed(4)).two_views(x)
    same = aug(torch.cat([x, x]), generator=torch.Generator().manual_seed(4), views=2)
    assert both.shape == (12, 3, 12, 12) and torch.equal(both, same)
    assert not torch.equal(both[:6], both[6:])  # each view its own draws
    assert both.is_contiguous(memory_format=torch.channels_last)
    assert both.stride() == (432, 1, 36, 3)
    assert aug.bind().two_views(x, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_each_process_gets_its_rows_of_both_views():
    # two processes, each with its half of the batch twice: the rows one process would
    # give those images, view by view (what the gathered loss expects)
    x = torch.rand(8, 3, 10, 10)
    aug = Augment(size=8)
    whole = aug.bind(torch.Generator().manual_seed(0)).two_views(x)
    for k in range(2):
        part = aug.bind(torch.Generator().manual_seed(0), (k, 2)).two_views(x[4 * k:4 * k + 4])
        torch.testing.assert_close(part[:4], whole[4 * k:4 * k + 4], rtol=0, atol=0)
        torch.testing.assert_close(part[4:], whole[8 + 4 * k:8 + 4 * k + 4], rtol=0, atol=0)


def test_a_training_step_has_no_host_sync_and_one_augmentation():
    counts = D.step_counts("resnet_tiny", n=32, size=8)
    assert counts["syncs"] == 0
    assert counts["by_op"].get("grid_sampler_2d", 0) == 1


def test_the_loss_makes_no_mask_or_index_per_step():
    from simcne.losses import info_nce

    z = torch.randn(16, 2, requires_grad=True)
    info_nce(z)
    c = D.count(lambda: info_nce(z).backward())
    assert not {"eye", "arange", "roll", "masked_fill"} & set(c.ops), c.ops
    # the value, by hand: row i against all others, positive at i +- 8
    zz = z.detach().double()
    d2 = ((zz[:, None] - zz[None]) ** 2).sum(-1)
    logk = -torch.log1p(d2)
    logk.fill_diagonal_(-float("inf"))
    pos = (torch.arange(16) + 8) % 16
    want = (torch.logsumexp(logk, 1) - logk[torch.arange(16), pos]).mean()
    assert float(info_nce(z.detach())) == pytest.approx(float(want), rel=1e-5)


def test_embed_reads_consecutive_rows_without_an_index():
    from simcne.data import load
    from simcne.models import make_model
    from simcne.train import embed

    store = load(np.random.default_rng(0).integers(0, 256, (20, 8, 8), dtype=np.uint8))
    store = store.to("cpu")  # a tensor store, as on the GPU
    model = make_model("resnet_tiny", in_channels=1, image_size=(8, 8))
    c = D.count(embed, model, store, image_size=(8, 8), device=torch.device("cpu"),
                batch_size=8)
    assert "index" not in c.ops and c.syncs == 0
    Y = embed(model, store, image_size=(8, 8), device=torch.device("cpu"), batch_size=8)
    Z = embed(model, store, image_size=(8, 8), device=torch.device("cpu"), batch_size=20)
    np.testing.assert_allclose(Y, Z, atol=1e-5)


def test_the_optimiser_step_is_fused():
    from simcne.train import make_optimizer

    p = [torch.nn.Parameter(torch.zeros(3))]
    for name in ("sgd", "adam", "adamw"):
        opt = make_optimizer(name, p, 0.1, 0.9, 5e-4)
        assert opt.defaults["fused"] is True
