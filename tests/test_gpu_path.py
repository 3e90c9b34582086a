"""The GPU path's decisions, tested on the CPU (issue 20): the map in fp32 under bf16, one
device name, where the store goes, the memory refusal, resume across device types.

What only a GPU can show (the store on the GPU, host syncs, NCCL) is in test_cuda.py.
"""

import warnings

import numpy as np
import pytest
import torch
from conftest import quick
from PIL import Image

from simcne import devices, estimator
from simcne.data import load
from simcne.models import OutputLinear, WrappedModel, make_model, replace_last_linear
from simcne.train import autocast_for, channels_last, step_memory


@pytest.fixture(scope="module")
def bf16_fit(tiny):
    """A bf16 fit on 120 digits (emulated where the CPU has no native bf16: still small)."""
    return quick(precision="bf16").fit(tiny[0])


def test_bf16_map_has_fp32_resolution(bf16_fit, tiny):
    Y = bf16_fit.embedding_
    assert Y.dtype == np.float32
    for axis in range(Y.shape[1]):  # a map rounded to bf16 had about a quarter distinct
        assert len(np.unique(Y[:, axis])) >= 0.99 * len(Y)
    bf16 = torch.from_numpy(Y).bfloat16().float().numpy()
    assert np.mean(Y == bf16) < 0.05  # not values that bf16 holds exactly
    for stage in bf16_fit.stage_embeddings_:
        assert len(np.unique(stage[:, 0])) >= 0.99 * len(stage)


def test_bf16_transform_same_pixels_same_coordinates(bf16_fit, tiny):
    X, y = tiny
    as_array = bf16_fit.transform(X[:50])
    as_pil = bf16_fit.transform([(Image.fromarray(x), int(label)) for x, label in
                                 zip(X[:50], y[:50])])
    alone = bf16_fit.transform(X[:7])  # another batch composition
    assert np.abs(as_array - as_pil).max() <= 1e-4
    assert np.abs(as_array[:7] - alone).max() <= 1e-4


def test_canonical_channels_last_strides():
    a = load(np.zeros((4, 8, 8), np.uint8)).batch(np.arange(4))
    b = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)  # as a list of PIL images gives
    assert a.stride() != b.stride()  # two readers, two stride patterns of the same pixels
    assert channels_last(a.float()).stride() == channels_last(b.float()).stride() == (64, 1, 8, 1)
    rgb = torch.rand(2, 3, 5, 6)
    out = channels_last(rgb)
    assert out.stride() == (90, 1, 18, 3) and torch.equal(out, rgb)


def test_head_and_new_layer_run_outside_autocast():
    model = make_model("resnet_tiny", in_channels=1, image_size=(8, 8), pretrain_out_dim=8)
    replace_last_linear(model, 2)
    x = torch.rand(4, 1, 8, 8)
    with autocast_for(torch.device("cpu"), "bf16"):
        z, h = model(x)
    assert z.dtype == torch.float32 and h.dtype == torch.float32
    # a user's whole model: its stage-2 layer is an OutputLinear, fp32 under autocast too
    whole = WrappedModel(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16),
                                             torch.nn.ReLU(), torch.nn.Linear(16, 8)))
    layer = replace_last_linear(whole, 2)
    assert isinstance(layer, OutputLinear)
    with autocast_for(torch.device("cpu"), "bf16"):
        z, _ = whole(x)
    assert z.dtype == torch.float32


# -- one device name ----------------------------------------------------------------------

def test_resolve_device_cpu_and_auto_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.resolve_device("auto") == torch.device("cpu")
    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert devices.resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_resolve_device_gives_cuda_an_index(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    for given in ("auto", "cuda", torch.device("cuda")):
        assert devices.resolve_device(given) == torch.device("cuda", 1)
    assert devices.resolve_device("cuda:0") == torch.device("cuda", 0)
    # under torchrun each process takes its LOCAL_RANK
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert devices.resolve_device("cuda") == torch.device("cuda", 3)


class _FakeStore:
    """A store whose images claim to be on ``device`` (no GPU needed)."""

    def __init__(self, device, nbytes=1000):
        self.device, self.nbytes, self.moved = torch.device(device), nbytes, None

    def to(self, device):
        self.moved = torch.device(device)
        return self


def test_store_already_on_the_resolved_gpu_stays(monkeypatch):
    # a store moved to the GPU reports cuda:0; the resolved device is cuda:0 too, so no new
    # placement is tried (an unresolved "cuda" would not have been equal)
    def no_gpu(*_):
        raise AssertionError("asked the GPU's memory for a store already there")

    monkeypatch.setattr(estimator, "gpu_free_memory", no_gpu)
    store = _FakeStore("cuda:0")
    assert estimator._place(store, torch.device("cuda", 0)) is store and store.moved is None
    assert torch.device("cuda") != store.device  # the trap resolve_device closes


@pytest.mark.parametrize("free,step,moved", [(10_000, 5_000, True), (10_000, 8_500, False),
                                             (10_000, None, True), (1_500, None, False)])
def test_host_store_goes_to_the_gpu_when_it_fits_beside_the_step(monkeypatch, free, step,
                                                                  moved):
    monkeypatch.setattr(estimator, "gpu_free_memory", lambda device: free)
    store = _FakeStore("cpu", nbytes=1000)
    estimator._place(store, torch.device("cuda", 0), step)
    assert (store.moved == torch.device("cuda", 0)) is moved


def test_cpu_store_never_moves():
    store = _FakeStore("cpu")
    assert estimator._place(store, torch.device("cpu"), 1) is store and store.moved is None


def test_store_fits_rule():
    assert devices.store_fits(40, 100, step_bytes=50)  # 90 <= 90 % of 100
    assert not devices.store_fits(41, 100, step_bytes=50)
    assert devices.store_fits(50, 100) and not devices.store_fits(51, 100)


def test_embed_batches_by_image_size():
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert devices.embed_batch_size(cuda, (32, 32)) == 4096
    assert devices.embed_batch_size(cuda, (8, 8)) == 4096
    assert devices.embed_batch_size(cuda, (224, 224)) == 83
    assert devices.embed_batch_size(cuda, (4096, 4096)) == 1
    assert devices.embed_batch_size(cpu, (224, 224)) == 64


def test_cudnn_autotune_only_on_cuda_and_restored():
    before = torch.backends.cudnn.benchmark
    with devices.cudnn_autotune(torch.device("cpu")):
        assert torch.backends.cudnn.benchmark == before
    with devices.cudnn_autotune(torch.device("cuda", 0)):
        assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cudnn.benchmark == before


# -- the memory refusal on a GPU ----------------------------------------------------------

def _resolved(est, X):
    est._validate_params()
    est._resolve(load(X))
    return make_model(est.backbone, in_channels=est.in_channels_, image_size=est.image_size_)


def test_gpu_memory_refusal_names_batch_size(monkeypatch, tiny):
    est = quick(batch_size=64, precision="fp32")  # no CUDA autocast without CUDA
    model = _resolved(est, tiny[0])
    monkeypatch.setattr(estimator, "gpu_free_memory", lambda device: 1_000_000)
    with pytest.raises(ValueError, match=r"'batch_size' parameter of TSimCNE is too large for "
                       r"the memory of GPU cuda:0: .*\(about \d+ would fit\)"):
        est._check_memory(model, torch.device("cuda", 0))
    monkeypatch.setenv("SIMCNE_MEMORY_CHECK", "0")
    assert est._check_memory(model, torch.device("cuda", 0)) > 1_000_000


def test_step_estimate_counts_bf16_activations_at_their_size():
    model = make_model("resnet_small", in_channels=3, image_size=(16, 16))
    fp32 = step_memory(model, (3, 16, 16), 64)
    bf16 = step_memory(model, (3, 16, 16), 64, autocast=autocast_for(torch.device("cpu"), "bf16"))
    assert bf16 < 0.8 * fp32


# -- resume across device types -----------------------------------------------------------

def test_resume_from_a_checkpoint_of_another_device_type(tiny, tmp_path):
    X, _ = tiny
    ckpt = tmp_path / "run.ckpt"
    quick(checkpoint=ckpt, checkpoint_every=1, callbacks=lambda s, e, *_: s == 1 and e == 1
          ).fit(X)
    state = torch.load(ckpt, weights_only=True)
    assert state["rng"]["augment"].numel() == torch.Generator().get_state().numel()
    # a CUDA generator's state: 16 bytes (seed and offset), which no CPU generator takes
    state["rng"]["augment"] = torch.zeros(16, dtype=torch.uint8)
    torch.save(state, ckpt)
    with pytest.warns(UserWarning, match="another device type .* differs from an "
                      "uninterrupted run"):
        est = quick(checkpoint=ckpt, checkpoint_every=1).fit(X)
    assert est.resumed_from_ == (1, 1) and np.isfinite(est.embedding_).all()
    assert not ckpt.exists()  # completed


def test_resume_on_the_same_device_type_says_nothing(tiny, tmp_path):
    X, _ = tiny
    ckpt = tmp_path / "run.ckpt"
    quick(checkpoint=ckpt, checkpoint_every=1, callbacks=lambda s, e, *_: s == 1 and e == 1
          ).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        est = quick(checkpoint=ckpt, checkpoint_every=1).fit(X)
    assert est.resumed_from_ == (1, 1)
