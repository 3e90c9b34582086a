"""Seconds per training epoch of `TSimCNE` under variants of its settings, side by side.

For the CPU levers of issue 10 that change speed and not the method (``compile``,
``precision``, the batch size): each variant trains stage 1 for ``--epochs`` epochs on the
same images, the variants taking turns (``--repeats`` rounds, so that a machine that
slows down or speeds up weighs on all of them alike). An epoch's time is taken between the
ends of consecutive epochs, so the first epoch (which carries ``torch.compile``'s
compilation, or the first allocation of the step's memory) is reported apart: the table
gives the first epoch and the median of the others.

Data: ``fmnist10k`` (the seeded 10,000-image subset of ``benchmarks/quality.py``) or
``digits``, with that script's settings for it; ``--variants`` is a JSON list of objects
of `TSimCNE` parameters, each laid over those settings.

Usage::

    PYTHONPATH=. python benchmarks/epoch_time.py --threads 2 \\
        --variants '[{}, {"compile": true}]'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import load_dataset  # noqa: E402

from simcne import TSimCNE  # noqa: E402


def epoch_times(X, params: dict, epochs: int) -> list[float]:
    marks = [time.perf_counter()]

    def mark(stage, epoch, loss, model):
        marks.append(time.perf_counter())
        return False

    TSimCNE(**{**params, "total_epochs": [epochs], "callbacks": [mark]}).fit(X)
    return list(np.diff(marks))  # the first also holds the set-up before training


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="fmnist10k", choices=["fmnist10k", "digits"])
    p.add_argument("--variants", type=json.loads, default=[{}, {"compile": True}])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    X, _, base = load_dataset(a.data)
    times: dict[int, list] = {i: [] for i in range(len(a.variants))}
    for _ in range(a.repeats):
        for i, v in enumerate(a.variants):
            times[i].append(epoch_times(X, {**base, **v}, a.epochs))
    shown = {k: v for k, v in base.items() if k != "total_epochs"}
    print(f"{a.data}, {len(X)} images, {a.threads} threads, stage 1 only, {a.epochs} epochs x "
          f"{a.repeats} rounds; settings {json.dumps(shown)}")
    print("| variant | first epoch (s, median of rounds) | later epochs (s, median) |")
    print("|---|---:|---:|")
    for i, v in enumerate(a.variants):
        first = np.median([t[0] for t in times[i]])
        later = np.median([x for t in times[i] for x in t[1:]])
        print(f"| `{json.dumps(v)}` | {first:.2f} | {later:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
