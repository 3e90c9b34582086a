"""Peak host memory of CPU training steps, with and without freed memory kept for reuse.

One process per setting (the environment decides it): a uint8 store of ``--n`` random
32x32x3 images, ``backbone`` built as ``TSimCNE`` builds it, then one stage of ``--steps``
steps at ``--batch`` through ``simcne.train.train_stage`` with the step-memory estimate
that ``fit`` passes (so ``simcne._heap.reuse_fits`` decides as in ``fit``). Prints the
estimate, the decision, the resident memory before the stage and the peak (``ru_maxrss``).

Usage::

    PYTHONPATH=. python benchmarks/step_memory.py                          # reuse if it fits
    SIMCNE_REUSE_FREED_MEMORY=0 PYTHONPATH=. python benchmarks/step_memory.py
    SIMCNE_MEMORY_LIMIT=3G PYTHONPATH=. python benchmarks/step_memory.py   # a 3 GB machine
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import torch

from simcne import _heap
from simcne.augment import Augment
from simcne.data import load
from simcne.losses import info_nce
from simcne.models import make_model
from simcne.estimator import default_training
from simcne.train import Stage, step_memory, train_stage

GB = 1e9


def rss() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet_small")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (a.batch * a.steps, 32, 32, 3),
                                               dtype=np.uint8)
    store = load(images)
    model = make_model(a.backbone, image_size=(32, 32))
    need = step_memory(model, (3, 32, 32), a.batch)
    fits, why = _heap.reuse_fits(need)
    avail = _heap.available_memory()
    before = rss()
    aug, gen = Augment(size=32), torch.Generator().manual_seed(1)
    t = time.perf_counter()
    train_stage(model, store, Stage(1, 1, 0.06, 0, info_nce),
                default_training(batch_size=a.batch, augment=lambda x: aug(x, generator=gen),
                                 device=torch.device("cpu"),
                                 generator=torch.Generator().manual_seed(2), step_bytes=need))
    seconds = (time.perf_counter() - t) / a.steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    env = {k: v for k, v in os.environ.items()
           if k in ("SIMCNE_REUSE_FREED_MEMORY", "SIMCNE_MEMORY_LIMIT")}
    print(f"{a.backbone} batch {a.batch}, {a.threads} threads, {env or 'defaults'}: estimate "
          f"{need / GB:.2f} GB, available {avail / GB:.1f} GB, reuse "
          f"{'on' if fits and _heap.enabled() else 'off'}{' (' + why + ')' if why else ''}; "
          f"RSS before the stage {before / GB:.2f} GB, peak {peak / GB:.2f} GB "
          f"(+{(peak - before) / GB:.2f} GB); {seconds:.2f} s a step")


if __name__ == "__main__":
    main()
