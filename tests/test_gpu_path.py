"""The GPU path's decisions, tested on the CPU (issue 20): the map in fp32 under bf16, one
device name, where the store goes, the memory refusal, resume across device types.

What only a GPU can show (the store on the GPU, host syncs, NCCL) is in test_cuda.py.
"""

import warnings

import numpy as np
import pytest
import torch
from conftest import load_script, quick
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
    # under torchrun each process takes its LOCAL_RANK (a machine with 4 GPUs)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
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


# -- issue 27: the CUDA path's defects, shown on the CPU ----------------------------------

def test_devices_are_compared_resolved(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.same_device(torch.device("cuda"), torch.device("cuda", 0))
    assert devices.same_device("cuda:0", torch.device("cuda"))
    assert not devices.same_device("cuda:1", "cuda")
    assert not devices.same_device("cpu", "cuda:0") and devices.same_device("cpu", "cpu")


class _GpuStore:
    """A store that says it is on cuda:0 and hands out CPU tensors (no GPU needed)."""

    device = torch.device("cuda", 0)

    def batch(self, idx):
        return torch.full((2, 1, 2, 2), 7, dtype=torch.uint8)


def test_batches_of_a_store_on_the_gpu_stay_there_with_an_unresolved_cuda(monkeypatch):
    # before: "cuda" != "cuda:0", and every batch went through pinned host memory (here the
    # side stream of that path fails without a GPU)
    from simcne.train import device_batches

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = list(device_batches(_GpuStore(), [[0, 1], [2, 3]], torch.device("cuda")))
    assert len(out) == 2 and all((x == 7).all() for x in out)


class _LiveBytes(torch.utils._python_dispatch.TorchDispatchMode):
    """The most bytes that new (non-view) tensors made in the block held at once."""

    def __init__(self, device):
        super().__init__()
        self.device, self.live, self.peak = torch.device(device), 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        import weakref

        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (list, tuple)) else [out]:
            if (isinstance(t, torch.Tensor) and t.device == self.device and t._base is None
                    and not func.overloadpacket.__name__.endswith("_")):  # not in place
                n = t.numel() * t.element_size()
                self.live += n
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, n)
        return out

    def _free(self, n):
        self.live -= n


def test_placing_a_store_on_a_device_never_holds_it_twice(monkeypatch):
    # before: the chunks were joined with torch.cat, twice the store on the GPU at once
    import simcne.data.store as store_mod

    monkeypatch.setattr(store_mod, "CHUNK_BYTES", 4 * 64)  # 4 images a chunk
    store = load(np.random.default_rng(0).integers(0, 256, (40, 8, 8), dtype=np.uint8))
    with _LiveBytes("meta") as m:
        placed = store.to("meta")
    assert placed.images.shape == (40, 1, 8, 8) and placed.images.device.type == "meta"
    assert store.nbytes <= m.peak <= store.nbytes + 2 * 4 * 64
    cpu = store.to("cpu")  # the same path, with values
    assert torch.equal(cpu.images, store.batch(np.arange(40)))


def test_the_refusal_keeps_a_margin(monkeypatch, tiny):
    est = quick(batch_size=64, precision="fp32")
    model = _resolved(est, tiny[0])
    monkeypatch.setattr(estimator, "gpu_free_memory", lambda device: 10**12)
    need = est._check_memory(model, torch.device("cuda", 0))
    # a step of 95 % of the free memory: refused (before: only above 100 %)
    monkeypatch.setattr(estimator, "gpu_free_memory", lambda device: int(need / 0.95))
    with pytest.raises(ValueError, match=r"'batch_size' .* 90 % of it is the most"):
        est._check_memory(model, torch.device("cuda", 0))
    monkeypatch.setattr(estimator, "gpu_free_memory", lambda device: int(need / 0.85))
    assert est._check_memory(model, torch.device("cuda", 0)) == need


def test_a_failed_probe_warns_instead_of_switching_the_check_off_silently(monkeypatch, tiny):
    est = quick(batch_size=64, precision="fp32")
    model = _resolved(est, tiny[0])

    def cannot(*a, **k):
        raise RuntimeError("the probe cannot run this model")

    monkeypatch.setattr(estimator, "step_memory", cannot)
    with pytest.warns(UserWarning, match="could not be estimated .*the probe cannot run.*"
                      "batch_size=64 is not checked"):
        assert est._check_memory(model, torch.device("cuda", 0)) is None


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to "
                                                          "allocate 2.00 GiB. GPU 0 has a "
                                                          "total capacity of 79 GiB"),
                                   MemoryError()])
def test_the_command_reports_running_out_of_memory_in_one_line(monkeypatch, capsys, error,
                                                                 tmp_path):
    from simcne import TSimCNE
    from simcne.cli import main

    def fit(self, *a, **k):
        raise error

    monkeypatch.setattr(TSimCNE, "fit", fit)
    np.save(tmp_path / "x.npy", np.zeros((20, 8, 8), np.uint8))
    rc = main(["fit", str(tmp_path / "x.npy"), "--out", str(tmp_path / "out"), "--quiet",
               "--no-plots"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    where = "the GPU" if isinstance(error, torch.OutOfMemoryError) else "this machine"
    assert err[0].startswith(f"simcne: error: out of memory on {where}")
    assert "--batch-size" in err[0]


def test_torchrun_checks_each_process_has_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "2")
    # before: cuda:2 on a machine of 2 GPUs, and torch's "invalid device ordinal" later
    with pytest.raises(ValueError, match=r"'device' .* cuda:2 \(LOCAL_RANK=2\), but this "
                       r"machine has 2 CUDA device\(s\): start at most 2"):
        devices.resolve_device("cuda")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert devices.resolve_device("auto") == torch.device("cuda", 1)
    # before: every process on cuda:0
    with pytest.raises(ValueError, match=r"'device' parameter of TSimCNE is 'cuda:0' under "
                       r"torchrun with 4 processes on this machine"):
        devices.resolve_device("cuda:0")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")  # one process per machine: its GPU 0
    assert devices.resolve_device("cuda:0") == torch.device("cuda", 0)


def test_a_resume_across_device_types_reseeds_augmentation_alike_on_every_rank(monkeypatch):
    # the augmentation's draws are the global batch's: every rank must draw the same
    from simcne import dist
    from simcne.checkpoint import Keeper

    seen = []
    for r in (0, 1):
        monkeypatch.setattr(dist, "rank", lambda r=r: r)
        keeper = Keeper(None, {}, 10, 1)
        keeper.state = {"stage": 1, "epoch": 3, "model": {}, "optimizer": {},
                        "rng": {"augment": torch.zeros(16, dtype=torch.uint8),  # a CUDA state
                                "shuffle": torch.Generator().get_state(),
                                "torch": torch.get_rng_state()}}
        gen = torch.Generator()
        keeper.attach(model=torch.nn.Linear(1, 1), seed=5, augment_gen=gen,
                      shuffle_gen=torch.Generator(), history=[], stage_embeddings=[],
                      stage_epochs=[4], reseed=lambda *more, **kw:
                      estimator._rank_seed(5, *more, **kw))
        monkeypatch.setattr(keeper.model, "load_state_dict", lambda sd: None)
        with pytest.warns(UserWarning, match="another device type"):
            keeper.start(1)
        seen.append(gen.get_state())
    assert torch.equal(seen[0], seen[1])


def test_momentum_comes_back_in_the_weights_layout_after_resume():
    from simcne.losses import info_nce
    from simcne.estimator import default_training
    from simcne.train import Stage, make_optimizer, train_stage

    model = make_model("resnet_tiny", in_channels=3, image_size=(8, 8), pretrain_out_dim=8)
    model = model.to(memory_format=torch.channels_last)
    params = list(model.parameters())
    saved = make_optimizer("sgd", params, 0.1, 0.9, 5e-4)
    for p in params:  # momentum as a checkpoint from a CPU run (NCHW) brings it back
        saved.state[p]["momentum_buffer"] = torch.zeros(p.shape)
    state = saved.state_dict()
    seen = {}

    def look(stage, epoch, opt):
        seen.update({id(p): opt.state[p]["momentum_buffer"].stride() for p in params})

    store = load(np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3), dtype=np.uint8))
    aug, gen = __import__("simcne.augment", fromlist=["Augment"]).Augment(size=8), None
    train_stage(model, store, Stage(1, 1, 0.01, 0, info_nce),
                default_training(batch_size=8, augment=lambda x: aug(x, generator=gen),
                                 device=torch.device("cpu"),
                                 generator=torch.Generator().manual_seed(1), on_epoch_end=look),
                optimizer_state=state)
    conv = [p for p in params if p.dim() == 4]
    assert conv and all(seen[id(p)] == p.stride() for p in params)
    assert any(p.stride() != torch.zeros(p.shape).stride() for p in conv)  # channels_last


def test_global_batchnorm_on_every_backend_and_without_host_syncs(monkeypatch):
    from simcne import dist

    dispatch = load_script("benchmarks/dispatch.py")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    monkeypatch.setattr(dist, "is_distributed", lambda: True)
    with dist.global_batchnorm(net, torch.device("cuda", 0)):  # NCCL's device: ours too
        assert isinstance(net[1], dist.GlobalBatchNorm)
    assert isinstance(net[1], torch.nn.BatchNorm2d)
    monkeypatch.setattr(dist, "is_distributed", lambda: False)  # the gather: one process
    bn = dist.GlobalBatchNorm(torch.nn.BatchNorm2d(4))
    x = torch.randn(6, 4, 5, 5)
    with dispatch.OpCounter() as c:
        y = bn(x)
    assert c.syncs == 0 and c.total > 0
    torch.testing.assert_close(y, torch.nn.functional.batch_norm(
        x, None, None, training=True), rtol=1e-4, atol=1e-5)


def test_precision_is_decided_once_per_fit(monkeypatch, tiny):
    from simcne import train

    calls = []
    real = train.cpu_has_native_bf16
    monkeypatch.setattr(train, "cpu_has_native_bf16", lambda: calls.append(1) or real())
    quick(total_epochs=[1, 1, 1]).fit(tiny[0])
    assert len(calls) == 1  # before: at the memory check, in each stage and in each embed
