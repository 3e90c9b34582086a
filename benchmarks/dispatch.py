"""Aten operations and host syncs of one augmentation call and of one training step.

On a GPU every aten operation the host dispatches is (about) one kernel launch, and in eager
mode the host's dispatch time is the floor of a step once the network is fast. This counts,
with a ``torch.utils._python_dispatch.TorchDispatchMode`` on the CPU, the operations one
:class:`simcne.augment.Augment` call issues on 512 RGB 32x32 images (and on 512 one-channel
28x28 ones), the views of one training step, and one whole step of
:func:`simcne.train.train_step` (augmentation, forward, loss, backward, clipping, optimiser;
ResNet18 at batch 512 by default, smaller with ``--model``), and the host syncs among them:
``aten._local_scalar_dense`` (``.item()``, ``bool(t)``, ``float(t)``), ``aten.nonzero``,
``aten.is_nonzero``, ``aten.masked_select``, ``aten.equal``, ``aten.unique*``, and
``aten.index`` with a boolean mask (a nonzero inside). A copy from the device to the host
is a sync too; on the CPU it is no operation and cannot be counted here, so the counts
are a floor for what a GPU run waits on.

Counted on the CPU, the same code as on a GPU: the augmentation has one path for every
device. (In a tree from before issue 27, whose colour jitter had a CPU branch with a host
sync, the CUDA branch is forced: :func:`force_device_branch`.)

Usage::

    PYTHONPATH=. python benchmarks/dispatch.py                  # prints the table
    PYTHONPATH=. python benchmarks/dispatch.py --json out.json  # and writes the counts
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

aten = torch.ops.aten
SYNCS = {aten._local_scalar_dense, aten.nonzero, aten.is_nonzero, aten.masked_select,
         aten.equal, aten._unique, aten._unique2, aten.unique_dim, aten.unique_consecutive,
         aten.repeat_interleave}


class OpCounter(TorchDispatchMode):
    """Counts the aten operations dispatched inside the block, by name, and the host syncs.

    >>> with OpCounter() as c:
    ...     _ = torch.ones(3).add(1).sum().item()
    >>> c.total, c.syncs
    (4, 1)
    """

    def __init__(self):
        super().__init__()
        self.ops: collections.Counter = collections.Counter()
        self.sync_ops: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func.overloadpacket.__name__)
        self.ops[name] += 1
        if func.overloadpacket in SYNCS or (
                func.overloadpacket is aten.index
                and any(isinstance(i, torch.Tensor) and i.dtype == torch.bool
                        for i in (args[1] if len(args) > 1 else []) if i is not None)):
            self.sync_ops[name] += 1
        return func(*args, **kwargs)

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    @property
    def syncs(self) -> int:
        return sum(self.sync_ops.values())


def count(fn, *args, **kwargs) -> OpCounter:
    """Run ``fn(*args, **kwargs)`` once under an :class:`OpCounter`; return the counter."""
    with OpCounter() as c:
        fn(*args, **kwargs)
    return c


def force_device_branch() -> str | None:
    """A tree whose ``Augment.color_jitter`` takes ``sync_free`` (before issue 27: on CPU it
    gathered the hue's samples with a host sync, on CUDA it did not) is made to take its
    CUDA branch here; returns a note saying so, or None."""
    import inspect

    from simcne.augment import Augment

    real = Augment.color_jitter
    if "sync_free" not in inspect.signature(real).parameters:
        return None

    def device_branch(self, x, p, sync_free=None):
        return real(self, x, p, sync_free=True)

    Augment.color_jitter = device_branch
    return "Augment.color_jitter(sync_free=True): the CUDA branch, forced"


def augment_counts(n: int = 512, seed: int = 0) -> dict:
    """Operations and syncs of one Augment call (uint8 input, as training gives it): RGB
    32x32 and one-channel 28x28, one view; and both views of the RGB batch in one call
    where the augmentation can (``Augment.bind(...).two_views``), else two calls and a cat
    (what ``train_step`` did before)."""
    from simcne.augment import Augment

    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, (c, s) in {"rgb32": (3, 32), "gray28": (1, 28)}.items():
        x = torch.randint(0, 256, (n, c, s, s), dtype=torch.uint8, generator=g)
        aug = Augment(size=s)
        aug(x, generator=g)  # constants made (once)
        k = count(aug, x, generator=g)
        out[name] = dict(ops=k.total, syncs=k.syncs, by_op=dict(k.ops.most_common()))
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    aug = Augment(size=32)
    if hasattr(aug, "bind"):
        two = aug.bind(g).two_views
        two(x)
        k = count(two, x)
        how = "one call: Augment.bind(g).two_views(x)"
    else:
        def two(x):
            xf = x.float().div_(255)
            return torch.cat([aug(xf, generator=g), aug(xf, generator=g)])

        two(x)
        k = count(two, x)
        how = "x.float().div_(255), two calls and a cat"
    out["rgb32_two_views"] = dict(ops=k.total, syncs=k.syncs, how=how,
                                  by_op=dict(k.ops.most_common()))
    return out


def step_counts(backbone: str = "resnet18", n: int = 512, size: int = 32, steps: int = 2) -> dict:
    """Operations and syncs of one training step (the last of ``steps``), as train_stage
    runs it on a batch of ``n`` uint8 RGB images: views, forward, loss, backward, clip,
    optimiser step (SGD with momentum and weight decay, foreach where this tree does)."""
    from simcne import train
    from simcne.augment import Augment
    from simcne.losses import info_nce
    from simcne.models import make_model

    torch.manual_seed(0)
    model = make_model(backbone, image_size=(size, size)).train()
    model = model.to(memory_format=torch.channels_last)  # as on CUDA
    params = [p for p in model.parameters() if p.requires_grad]
    opt = train.make_optimizer("sgd", params, 0.06, 0.9, 5e-4)
    g = torch.Generator().manual_seed(1)
    aug = Augment(size=size)
    augment = aug.bind(g) if hasattr(aug, "bind") else (lambda x: aug(x, generator=g))
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    takes_uint8 = hasattr(aug, "bind")  # this tree's train_stage hands train_step uint8
    batch = x if takes_uint8 else x.float().div_(255)
    kw = {}
    import contextlib

    for _ in range(steps - 1):
        train.train_step(model, opt, batch, augment, info_nce, 4.0, contextlib.nullcontext(),
                         **kw)

    def one():
        b = x if takes_uint8 else x.float().div_(255)
        train.train_step(model, opt, b, augment, info_nce, 4.0, contextlib.nullcontext(), **kw)

    k = count(one)
    return dict(backbone=backbone, batch=n, size=size, ops=k.total, syncs=k.syncs,
                by_op=dict(k.ops.most_common()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet18", help="backbone of the step count")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--json", default=None, help="write the counts here")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    note = force_device_branch()
    res = dict(augment=augment_counts(a.batch), step=step_counts(a.model, a.batch), note=note)
    if note:
        print(note)
    for name, r in res["augment"].items():
        print(f"Augment {name:16s} {r['ops']:5d} aten ops, {r['syncs']} host syncs"
              + (f"  ({r['how']})" if "how" in r else ""))
    s = res["step"]
    print(f"train_step {s['backbone']} batch {s['batch']}: {s['ops']} aten ops, "
          f"{s['syncs']} host syncs")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
