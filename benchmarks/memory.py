"""Peak host memory (RSS) of ``TSimCNE.fit`` on 1,000,000 32x32x3 uint8 images (CPU).

What runs, in one process:

1. the images: one uint8 (N, 32, 32, 3) numpy array (3.07 GB for N = 1,000,000), filled in
   chunks so that making it needs no temporary copy;
2. ``TSimCNE(backbone="resnet_small", total_epochs=[1, 1, 1], batch_size=--batch).fit(images)``:
   the whole of ``fit`` (reading the array, the three stages, the stage-2 surgery, the
   embedding of all N images after each stage), except that in each stage only the first
   ``--steps`` steps compute. The other steps of the epoch still gather and convert their
   batches (the data path), but ``train_step`` returns the last loss instead of training:
   a 1M-image epoch of ``resnet_small`` takes hours on this CPU, and the memory a step
   needs is the same every step.

RSS is read after each phase (``/proc/self/statm``) and the peak is the kernel's high-water
mark (``ru_maxrss``); the peak is compared with the uint8 images plus the model (parameters,
buffers and SGD momentum). Freed memory is kept for reuse during training and embedding on
CPU (``simcne._heap``); ``SIMCNE_REUSE_FREED_MEMORY=0`` in the environment measures glibc's
default behaviour instead. The result goes to BENCHMARKS.md (one block per setting).

Usage::

    PYTHONPATH=. python benchmarks/memory.py                  # N = 1,000,000, batch 512
    SIMCNE_REUSE_FREED_MEMORY=0 PYTHONPATH=. python benchmarks/memory.py
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_reference import machine, write_block  # noqa: E402
import simcne.estimator  # noqa: E402
import simcne.train  # noqa: E402
from simcne import TSimCNE, _heap  # noqa: E402

GB = 1e9


def peak() -> float:
    """Peak RSS of this process so far, bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class FewSteps:
    """Stands in for ``simcne.train.train_step``: the first ``steps`` calls of each stage
    train, later ones return the last loss (their batches were still gathered and converted)."""

    def __init__(self, real, steps):
        self.real, self.steps, self.done, self.loss, self.seconds = real, steps, 0, None, 0.0

    def new_stage(self):
        self.done = 0

    def __call__(self, *args, **kwargs):
        if self.done >= self.steps:
            return self.loss
        t = time.perf_counter()
        self.loss = self.real(*args, **kwargs)
        self.seconds += time.perf_counter() - t
        self.done += 1
        return self.loss


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=2, help="training steps per stage")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    started = datetime.datetime.now(datetime.timezone.utc)
    rows = []

    def note(what):
        rows.append((what, current(), peak()))
        print(f"{what:<70s} RSS {current() / GB:6.2f} GB, peak {peak() / GB:6.2f} GB", flush=True)

    note("python + torch + simcne imported")
    base = current()
    rng = np.random.default_rng(0)
    images = np.empty((a.n, 32, 32, 3), np.uint8)
    for s in range(0, a.n, 10_000):  # in chunks: no full-size temporary
        images[s:s + 10_000] = rng.integers(0, 256, images[s:s + 10_000].shape, dtype=np.uint8)
    data_bytes = images.nbytes
    note(f"{a.n:,} images, uint8 ({data_bytes / GB:.2f} GB)")

    steps = FewSteps(simcne.train.train_step, a.steps)
    real_stage, real_embed = simcne.train.train_stage, simcne.estimator.embed
    t_embed = [0.0]

    def train_stage(model, store, stage, **kw):
        steps.new_stage()
        t = time.perf_counter()
        out = real_stage(model, store, stage, **kw)
        note(f"stage {stage.number}: {a.steps} steps of {a.batch} trained, "
             f"{len(store) // a.batch - a.steps} gathered only ({time.perf_counter() - t:.0f} s)")
        return out

    def embed(model, store, **kw):
        t = time.perf_counter()
        out = real_embed(model, store, **kw)
        t_embed[0] += time.perf_counter() - t
        note(f"  embedding of all {len(store):,} images ({time.perf_counter() - t:.0f} s)")
        return out

    simcne.train.train_step = steps
    simcne.estimator.train_stage = train_stage
    simcne.estimator.embed = embed
    t = time.perf_counter()
    est = TSimCNE(backbone="resnet_small", total_epochs=[1, 1, 1], batch_size=a.batch,
                  random_state=0, device="cpu").fit(images)
    note(f"fit returned ({time.perf_counter() - t:.0f} s)")
    assert est.embedding_.shape == (a.n, 2)
    model = est.model_
    model_bytes = 2 * sum(t.numel() * t.element_size() for t in model.parameters())
    model_bytes += sum(t.numel() * t.element_size() for t in model.buffers())

    top = peak()
    budget = data_bytes + model_bytes
    reuse = _heap.enabled()
    setting = ("freed memory kept for reuse (the default on CPU)" if reuse else
               "glibc's default allocation (SIMCNE_REUSE_FREED_MEMORY=0)")
    print(f"\n{setting}\npeak RSS {top / GB:.2f} GB = {top / budget:.2f} x (images "
          f"{data_bytes / GB:.2f} GB + model {model_bytes / 1e6:.1f} MB); interpreter + torch "
          f"alone {base / GB:.2f} GB; training step {steps.seconds / max(1, 3 * a.steps):.2f} s")
    if a.no_write:
        return
    cmd = ("" if reuse else "SIMCNE_REUSE_FREED_MEMORY=0 ") + \
        "PYTHONPATH=. python benchmarks/memory.py " + " ".join(
            sys.argv[1:] if argv is None else argv)
    lines = [
        f"Measured {started:%Y-%m-%d %H:%M} UTC on {machine(torch.device('cpu'))}, "
        f"{a.threads} torch threads. {setting[0].upper() + setting[1:]}.",
        "",
        "```sh",
        cmd.rstrip(),
        "```",
        "",
        "| after | RSS | peak RSS so far |",
        "|---|---:|---:|",
    ]
    lines += [f"| {w.strip()} | {c / GB:.2f} GB | {pk / GB:.2f} GB |" for w, c, pk in rows]
    lines += [
        "",
        f"Peak RSS {top / GB:.2f} GB = **{top / budget:.2f} x** (uint8 images "
        f"{data_bytes / GB:.2f} GB + model with SGD momentum {model_bytes / 1e6:.1f} MB), "
        f"{(top - data_bytes - base) / GB:.2f} GB above the images and the interpreter with "
        f"torch loaded ({base / GB:.2f} GB). A training step took "
        f"{steps.seconds / max(1, 3 * a.steps):.2f} s on average (the first of each stage "
        "included).",
    ]
    write_block("\n".join(lines), f"memory:cpu-batch{a.batch}" + ("" if reuse else "-default-malloc"))


if __name__ == "__main__":
    main()
