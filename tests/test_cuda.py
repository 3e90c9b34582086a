"""The CUDA path (issue 20): run where a GPU is (``benchmarks/gpu_check.sh`` runs this file on
the device machine); skipped elsewhere, saying so, so that CI on CPU machines stays green.

The CPU-side decisions of this path (device names, placement, the memory rule, resume
across device types) are tested on every machine in test_gpu_path.py.
"""

import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from conftest import quick

if not torch.cuda.is_available():
    pytest.skip("no CUDA device on this machine: the GPU tests run where one is "
                "(benchmarks/gpu_check.sh)", allow_module_level=True)

from simcne import TSimCNE, estimator, knn_accuracy  # noqa: E402
from simcne.data import load  # noqa: E402
from simcne.losses import info_nce  # noqa: E402
from simcne.models import make_model  # noqa: E402
from simcne.estimator import default_training  # noqa: E402
from simcne.train import Stage, train_stage  # noqa: E402

GPU = torch.device("cuda", torch.cuda.current_device())


def on_gpu(**kw):
    return quick(device="cuda", **kw)


@pytest.fixture
def stores_seen(monkeypatch):
    """The device of the store each training stage got."""
    seen = []
    real = estimator.train_stage

    def spy(model, store, *args, **kw):
        seen.append(store.device)
        return real(model, store, *args, **kw)

    monkeypatch.setattr(estimator, "train_stage", spy)
    return seen


def test_cuda_resolves_to_an_indexed_device_and_the_store_goes_there(tiny, stores_seen):
    est = on_gpu().fit(tiny[0])
    assert est._device == GPU and next(est.model_.parameters()).device == GPU
    assert stores_seen and all(d == GPU for d in stores_seen)
    assert np.isfinite(est.embedding_).all()


def test_store_on_the_host_when_it_does_not_fit(tiny, stores_seen, monkeypatch):
    monkeypatch.setattr(estimator, "store_fits", lambda *a, **k: False)
    est = on_gpu().fit(tiny[0])
    assert stores_seen and all(d.type == "cpu" for d in stores_seen)
    assert np.isfinite(est.embedding_).all()


def test_one_host_sync_per_epoch_with_the_store_on_the_gpu(rgb):
    """Inside an epoch nothing waits for the GPU but the one read of the loss."""
    store = load(rgb).to(GPU)
    model = make_model("resnet_small", image_size=(12, 12)).to(GPU)
    model = model.to(memory_format=torch.channels_last)
    from simcne.augment import Augment

    aug = Augment(size=(12, 12))
    gen = torch.Generator(device=GPU).manual_seed(0)
    epochs = 3
    run = default_training(batch_size=16, augment=lambda x: aug(x, generator=gen), device=GPU,
                           generator=torch.Generator().manual_seed(1), precision="bf16")
    train_stage(model, store, Stage(1, 1, 0.01, 0, info_nce), run)  # warm-up: cuDNN, allocator
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train_stage(model, store, Stage(1, epochs, 0.01, 0, info_nce), run)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == epochs, [str(w.message) for w in syncs]


def test_bf16_fit_on_digits_above_a_quality_floor(digits):
    from simcne.cli import DEMO

    X, y = digits
    est = TSimCNE(**{**DEMO, "device": "cuda", "precision": "bf16"})
    Y = est.fit_transform(X)
    assert len(np.unique(Y[:, 0])) >= 0.99 * len(Y)  # fp32 coordinates under bf16
    assert knn_accuracy(Y, y) > 0.9


def test_save_on_cuda_load_on_cpu_same_map(tiny, tmp_path):
    X, _ = tiny
    est = on_gpu(precision="fp32").fit(X)
    est.save(tmp_path / "m.pt")
    cpu = TSimCNE.load(tmp_path / "m.pt", device="cpu")
    assert cpu._device == torch.device("cpu")
    tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # full fp32 convolutions for the comparison
    try:
        a = est.transform(X)
    finally:
        torch.backends.cudnn.allow_tf32 = tf32
    b = cpu.transform(X)
    assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(a).max())
    gpu = TSimCNE.load(tmp_path / "m.pt", device="cuda")
    assert gpu._device == GPU


@pytest.mark.parametrize("size", [8, 16, 33, 224])
def test_transform_at_several_image_sizes(tiny, size):
    X, _ = tiny
    est = on_gpu(image_size=16).fit(X)
    imgs = np.random.default_rng(0).integers(0, 256, (10, size, size), dtype=np.uint8)
    Y = est.transform(imgs)
    assert Y.shape == (10, 2) and np.isfinite(Y).all()


def test_memory_refusal_names_batch_size():
    X = np.random.default_rng(0).integers(0, 256, (2048, 32, 32, 3), dtype=np.uint8)
    est = TSimCNE(backbone="resnet18", image_size=1024, batch_size=2048, total_epochs=1,
                  device="cuda")
    with pytest.raises(ValueError, match=r"'batch_size' parameter of TSimCNE is too large for "
                       r"the memory of GPU cuda:\d: .*\(about \d+ would fit\)"):
        est.fit(X)


def test_compile_on_cuda(tiny):
    if shutil.which("g++") is None and shutil.which("gcc") is None:
        pytest.skip("torch.compile's inductor needs a C compiler for its launchers")
    est = on_gpu(compile=True).fit(tiny[0])
    assert np.isfinite(est.embedding_).all()


def test_resume_cpu_to_cuda_and_back(tiny, tmp_path):
    X, _ = tiny
    ckpt = tmp_path / "run.ckpt"
    stop = lambda s, e, *_: s == 1 and e == 1  # noqa: E731
    quick(checkpoint=ckpt, checkpoint_every=1, callbacks=stop).fit(X)  # on the CPU
    with pytest.warns(UserWarning, match="another device type"):
        est = on_gpu(checkpoint=ckpt, checkpoint_every=1).fit(X)
    assert est.resumed_from_ == (1, 1) and np.isfinite(est.embedding_).all()
    on_gpu(checkpoint=ckpt, checkpoint_every=1, callbacks=stop).fit(X)  # on the GPU
    with pytest.warns(UserWarning, match="another device type"):
        est = quick(checkpoint=ckpt, checkpoint_every=1).fit(X)
    assert est.resumed_from_ == (1, 1) and np.isfinite(est.embedding_).all()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="two-process NCCL needs 2 GPUs")
def test_two_processes_nccl(tmp_path):
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).integers(0, 256, (512, 16, 16, 3), dtype=np.uint8))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "simcne", "fit", str(x), "--out", str(out), "--backbone", "resnet_small",
           "--total-epochs", "2", "1", "1", "--batch-size", "64", "--random-state", "0",
           "--device", "cuda", "--no-plots", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    Y = np.load(out / "embedding.npy")
    assert Y.shape == (512, 2) and np.isfinite(Y).all()


# -- issue 27 -----------------------------------------------------------------------------

def test_augmentation_and_loss_never_wait_for_the_gpu():
    from simcne.augment import Augment

    x = torch.randint(0, 256, (512, 3, 32, 32), dtype=torch.uint8, device=GPU)
    aug = Augment(size=32).bind(torch.Generator(device=GPU).manual_seed(0))
    aug.two_views(x)  # the constants, made once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        views = aug.two_views(x, dtype=torch.bfloat16)
        z = views.float().flatten(1)[:, :8].requires_grad_()
        info_nce(z).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert views.dtype == torch.bfloat16 and views.is_contiguous(
        memory_format=torch.channels_last)


def test_placing_a_store_takes_the_store_and_one_chunk(monkeypatch):
    import simcne.data.store as store_mod

    monkeypatch.setattr(store_mod, "CHUNK_BYTES", 1 << 20)
    store = load(np.random.default_rng(0).integers(0, 256, (4096, 32, 32, 3), dtype=np.uint8))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(GPU)
    before = torch.cuda.memory_allocated(GPU)
    placed = store.to(torch.device("cuda"))  # unresolved: the same device as cuda:<current>
    peak = torch.cuda.max_memory_allocated(GPU) - before
    assert placed.device == GPU and peak <= store.nbytes + 2 * (1 << 20) + (1 << 20)
    assert placed.to("cuda") is placed  # already there: no copy


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="a tensor on another GPU needs 2")
def test_rows_wait_for_the_copy_on_the_tensors_own_device():
    from simcne.train import _Rows

    recorded = []
    real = torch.cuda.Event

    class Spy(real):
        def record(self, stream=None):
            recorded.append(stream)
            return super().record(stream)

    torch.cuda.set_device(0)
    other = torch.device("cuda", 1)
    rows = _Rows(8)
    try:
        torch.cuda.Event = Spy
        t = torch.arange(16.0, device=other).view(8, 2)
        rows.add(0, t)
    finally:
        torch.cuda.Event = real
    assert recorded and recorded[0].device == other
    np.testing.assert_array_equal(rows.result(), np.arange(16.0).reshape(8, 2))
