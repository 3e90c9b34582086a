"""The fast paths keep results: embedding streams in batches, the store never copies the data,
and channels_last views train the same network as contiguous ones (up to float rounding).
Issue 6 (speed and memory)."""

import numpy as np
import torch

from simcne.augment import Augment
from simcne.data import load
from simcne.losses import info_nce
from simcne.models import make_model
from simcne.train import device_batches, embed


def _model(channels=3):
    torch.manual_seed(0)
    return make_model("resnet_small", in_channels=channels, image_size=(8, 8))


def test_embed_does_not_depend_on_the_batch_size_and_keeps_features_only_when_asked(rgb):
    store = load(rgb)
    model = _model()
    cpu = torch.device("cpu")
    z = embed(model, store, image_size=(12, 12), device=cpu)
    z7, h7 = embed(model, store, image_size=(12, 12), device=cpu, batch_size=7,
                   backbone_features=True)
    assert isinstance(z, np.ndarray) and z.shape == (len(rgb), 128) and z.dtype == np.float32
    assert h7.shape == (len(rgb), 128)
    assert np.allclose(z, z7, atol=1e-5)
    with torch.no_grad():
        want = model.eval()(store.batch(np.arange(5)).float() / 255)[0].numpy()
    assert np.allclose(z[:5], want, atol=1e-5)


def test_load_keeps_a_uint8_array_without_copying(rgb):
    store = load(rgb)
    assert np.shares_memory(store.images, rgb)
    assert store.batch(np.array([3, 1])).dtype == torch.uint8


def test_device_batches_on_cpu_are_the_store_batches(rgb):
    store = load(rgb)
    chunks = [np.array([5, 2, 9]), np.array([0, 1])]
    got = list(device_batches(store, iter(chunks), torch.device("cpu")))
    assert all(torch.equal(g, store.batch(c)) for g, c in zip(got, chunks))


def test_channels_last_views_give_the_loss_and_gradients_of_contiguous_ones(tiny):
    # train_step feeds channels_last views on every device (faster convolutions on CPU too)
    X, _ = tiny
    x = torch.from_numpy(X[:32]).unsqueeze(1).float() / 255
    views = torch.cat([Augment(size=8)(x, generator=torch.Generator().manual_seed(s))
                       for s in (0, 1)])
    model = _model(channels=1).train()
    out = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        model.zero_grad(set_to_none=True)
        loss = info_nce(model(views.contiguous(memory_format=fmt))[0])
        loss.backward()
        out.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (l0, g0), (l1, g1) = out
    assert torch.allclose(l0, l1, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-4, rtol=1e-3) for a, b in zip(g0, g1))
