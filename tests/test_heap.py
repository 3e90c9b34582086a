"""Freed CPU memory kept for reuse while training and embedding (simcne._heap), issue 6.

glibc's options are set on entry and restored, with the freed memory handed back, on exit;
nothing happens when switched off or for CUDA; and training gives bit for bit the same
result either way (only where memory comes from changes, not the arithmetic)."""

import platform

import numpy as np
import pytest
import torch

from simcne import _heap
from simcne.augment import Augment
from simcne.data import load
from simcne.losses import info_nce
from simcne.models import make_model
from simcne.estimator import default_training
from simcne.train import Stage, embed, train_stage


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


@pytest.fixture
def fake(monkeypatch):
    lib = FakeLibc()
    monkeypatch.setattr(_heap, "_glibc", lambda: lib)
    monkeypatch.delenv("SIMCNE_REUSE_FREED_MEMORY", raising=False)
    return lib


ENTER = [("mallopt", _heap._M_MMAP_MAX, 0), ("mallopt", _heap._M_TRIM_THRESHOLD, 2**31 - 1)]
EXIT = [("mallopt", _heap._M_MMAP_THRESHOLD, 32 * 2**20),
        ("mallopt", _heap._M_TRIM_THRESHOLD, 64 * 2**20),
        ("mallopt", _heap._M_MMAP_MAX, 65536), ("malloc_trim", 0)]


def test_settings_are_restored_once_when_the_outermost_block_exits(fake):
    with _heap.reuse_freed_memory():
        assert fake.calls == ENTER
        with _heap.reuse_freed_memory():  # embed inside fit's stage: nothing more
            pass
        assert fake.calls == ENTER
    assert fake.calls == ENTER + EXIT
    assert _heap._depth == 0


def test_settings_are_restored_when_the_block_raises(fake):
    with pytest.raises(KeyboardInterrupt):
        with _heap.reuse_freed_memory():
            raise KeyboardInterrupt
    assert fake.calls == ENTER + EXIT
    assert _heap._depth == 0


def test_nothing_changes_when_switched_off_or_for_cuda(fake, monkeypatch):
    with _heap.reuse_freed_memory(active=False):
        pass
    monkeypatch.setenv("SIMCNE_REUSE_FREED_MEMORY", "0")
    assert not _heap.enabled()
    with _heap.reuse_freed_memory():
        pass
    assert fake.calls == []


def test_train_stage_and_embed_use_it_on_cpu(fake, rgb):
    store = load(rgb[:16])
    torch.manual_seed(0)
    model = make_model("resnet_small", image_size=(12, 12))
    aug = Augment(size=12)
    train_stage(model, store, Stage(1, 1, 0.01, 0, info_nce),
                default_training(
                    batch_size=8, device=torch.device("cpu"), generator=torch.Generator(),
                    augment=lambda x: aug(x, generator=torch.Generator().manual_seed(0))))
    assert fake.calls == ENTER + EXIT
    embed(model, store, image_size=(12, 12), device=torch.device("cpu"))
    assert fake.calls == 2 * (ENTER + EXIT)


def _train(rgb):
    torch.manual_seed(0)
    model = make_model("resnet_small", image_size=(12, 12))
    aug, gen = Augment(size=12), torch.Generator().manual_seed(1)
    history = []
    train_stage(model, load(rgb[:32]), Stage(1, 2, 0.05, 1, info_nce),
                default_training(batch_size=16, augment=lambda x: aug(x, generator=gen),
                                 device=torch.device("cpu"),
                                 generator=torch.Generator().manual_seed(2), history=history))
    z = embed(model, load(rgb[:32]), image_size=(12, 12), device=torch.device("cpu"))
    return history, z


def test_the_same_training_with_and_without_reuse(rgb, monkeypatch):
    # on this (glibc) machine the real settings change; results must not
    monkeypatch.setenv("SIMCNE_REUSE_FREED_MEMORY", "1")
    assert _heap.enabled() == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    on = _train(rgb)
    monkeypatch.setenv("SIMCNE_REUSE_FREED_MEMORY", "0")
    off = _train(rgb)
    assert on[0] == off[0]
    assert np.array_equal(on[1], off[1])
