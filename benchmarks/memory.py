"""Peak host memory (RSS) of simcne's training path on 1,000,000 32x32x3 uint8 images (CPU).

What is measured, in one process, in the order ``TSimCNE.fit`` does it:

1. the images: one uint8 (N, 32, 32, 3) numpy array (3.07 GB for N = 1,000,000), filled in
   chunks so that making it needs no temporary copy;
2. ``simcne.data.load(images)``: the store must share the array's memory (checked);
3. ``simcne.train.train_stage`` with ``resnet_small`` for ``--steps`` steps of ``--batch``
   images drawn at random from all N images (a 1M-image epoch takes hours on a CPU, and a
   callback can stop only at the end of an epoch, so the stage runs on a view of the store
   whose "epoch" is ``--steps`` batches, each batch drawn from all N images);
4. ``simcne.train.embed`` over all N images, as fit does at the end of each stage. Running
   ``resnet_small`` over 1M images takes about an hour here, so by default a small network with
   the same outputs (z of ``out_dim`` and 128 backbone features) streams all N images, and
   ``resnet_small`` embeds the first ``--embed-images`` images (with backbone features, as
   ``transform(..., return_backbone_feat=True)`` does).

Peak RSS is the kernel's high-water mark (``ru_maxrss``); it is compared with the uint8
images plus the model (parameters, buffers, SGD momentum). The result goes to BENCHMARKS.md.

Usage::

    PYTHONPATH=. python benchmarks/memory.py                  # N = 1,000,000
    PYTHONPATH=. python benchmarks/memory.py --n 100000 --no-write
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_reference import machine, write_block  # noqa: E402
from simcne.augment import Augment  # noqa: E402
from simcne.data import load  # noqa: E402
from simcne.losses import info_nce  # noqa: E402
from simcne.models import make_model  # noqa: E402
from simcne.train import Stage, embed, train_stage  # noqa: E402

GB = 1e9


def peak() -> float:
    """Peak RSS of this process so far, bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class FirstSteps:
    """A store whose epoch is ``n`` images, each batch drawn at random from all of ``store``."""

    def __init__(self, store, n, seed=0):
        self.store, self.n = store, n
        self.gen = torch.Generator().manual_seed(seed)
        self.device = store.device

    def __len__(self):
        return self.n

    def batch(self, index):
        return self.store.batch(torch.randint(len(self.store), (len(index),), generator=self.gen))


class Tiny(nn.Module):
    """Returns (z, h) like the real model: 128 features from pooled pixels, z of out_dim."""

    def __init__(self, channels=3, out_dim=2):
        super().__init__()
        self.features = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                                      nn.Linear(16 * channels, 128))
        self.head = nn.Linear(128, out_dim)

    def forward(self, x):
        h = self.features(x)
        return self.head(h), h


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--embed-images", type=int, default=2_000,
                   help="images resnet_small embeds (a small network streams all of them)")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    started = datetime.datetime.now(datetime.timezone.utc)
    rows = []

    def note(what):
        rows.append((what, current(), peak()))
        print(f"{what:<60s} RSS {current() / GB:6.2f} GB, peak {peak() / GB:6.2f} GB", flush=True)

    note("python + torch + simcne imported")
    base = current()
    rng = np.random.default_rng(0)
    images = np.empty((a.n, 32, 32, 3), np.uint8)
    for s in range(0, a.n, 10_000):  # in chunks: no full-size temporary
        images[s:s + 10_000] = rng.integers(0, 256, images[s:s + 10_000].shape, dtype=np.uint8)
    data_bytes = images.nbytes
    note(f"{a.n:,} images, uint8 ({data_bytes / GB:.2f} GB)")

    store = load(images)
    assert np.shares_memory(store.images, images), "load copied the images"
    note("simcne.data.load(images): shares the array's memory")

    torch.manual_seed(0)
    model = make_model("resnet_small", image_size=(32, 32))
    model_bytes = 2 * sum(t.numel() * t.element_size() for t in model.parameters())
    model_bytes += sum(t.numel() * t.element_size() for t in model.buffers())
    gen = torch.Generator().manual_seed(1)
    aug = Augment(size=32)
    t = time.perf_counter()
    train_stage(model, FirstSteps(store, a.steps * a.batch), Stage(1, 1, 0.03 * a.batch / 256, 0),
                batch_size=a.batch, augment=lambda x: aug(x, generator=gen), loss_fn=info_nce,
                device=torch.device("cpu"), generator=torch.Generator().manual_seed(2))
    note(f"train_stage, resnet_small: {a.steps} steps of {a.batch} "
         f"({time.perf_counter() - t:.0f} s)")

    k = min(a.embed_images, a.n)
    z, h = embed(model, load(images[:k]), image_size=(32, 32), device=torch.device("cpu"),
                 backbone_features=True)
    note(f"embed, resnet_small, first {k:,} images, with features")
    del z, h
    t = time.perf_counter()
    z = embed(Tiny(), store, image_size=(32, 32), device=torch.device("cpu"))
    out_bytes = z.nbytes
    note(f"embed, small network, all {a.n:,} images, z only as fit does "
         f"({out_bytes / 1e6:.0f} MB out, {time.perf_counter() - t:.0f} s)")

    top = peak()
    budget = data_bytes + model_bytes
    print(f"\npeak RSS {top / GB:.2f} GB = {top / budget:.2f} x (images {data_bytes / GB:.2f} GB "
          f"+ model {model_bytes / 1e6:.1f} MB); interpreter + torch alone {base / GB:.2f} GB; "
          f"embedding {out_bytes / 1e6:.0f} MB")
    if a.no_write:
        return
    cmd = "PYTHONPATH=. python benchmarks/memory.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    lines = [
        f"Measured {started:%Y-%m-%d %H:%M} UTC on {machine(torch.device('cpu'))}, "
        f"{a.threads} torch threads (machine shared with other jobs; memory figures do not "
        "depend on that).",
        "",
        "```sh",
        cmd.rstrip(),
        "```",
        "",
        "| after | RSS | peak RSS so far |",
        "|---|---:|---:|",
    ]
    lines += [f"| {w} | {c / GB:.2f} GB | {pk / GB:.2f} GB |" for w, c, pk in rows]
    lines += [
        "",
        f"Peak RSS {top / GB:.2f} GB = **{top / budget:.2f} x** (uint8 images "
        f"{data_bytes / GB:.2f} GB + model with SGD momentum {model_bytes / 1e6:.1f} MB). Of the "
        f"rest, {base / GB:.2f} GB is the interpreter with torch loaded, "
        f"{out_bytes / 1e6:.0f} MB the (n, 2) embedding, and the remainder working memory: "
        f"the training step's at batch {a.batch} (autograd's saved activations of "
        f"{2 * a.batch} views, oneDNN buffers) or the embedding's, whichever is larger "
        "(see the table).",
    ]
    write_block("\n".join(lines), "memory:cpu")


if __name__ == "__main__":
    main()
