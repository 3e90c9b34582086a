"""Map quality under bf16 autocast against fp32: the same settings and seeds, side by side.

For each dataset, each precision ("bf16" and "fp32") and each training seed, it trains
simcne on CPU and scores the final 2-D map by kNN accuracy (k=15, stratified 20 % test
split, mean over split seeds 0, 1, 2: ``benchmarks/quality.py``'s ``score``). It also
counts the distinct x-coordinates (a map rounded to bf16 has a few hundred) and the
training seconds. Runs go ``--jobs`` at a time, each in its own process with ``--threads``
torch threads, so the precisions are interleaved on a shared machine; the times are for
comparison within one run only.

Datasets:

- ``digits``: scikit-learn's 1,797 digits with the paper's defaults, short:
  ``TSimCNE(total_epochs=[6, 2, 4], batch_size=256)`` (ResNet18);
- ``demo``: the same digits with the settings of ``simcne demo`` (``simcne.cli.DEMO``);
- ``fmnist10k``: ``quality.py``'s 10,000 Fashion-MNIST images with its ``FMNIST`` preset,
  ``total_epochs`` from ``--fmnist-epochs`` (default: the preset's fp32 length,
  [30, 5, 200], so that six runs fit in an hour of 2 cores).

Usage::

    PYTHONPATH=. python benchmarks/precision.py --datasets digits demo --seeds 0 1 2
    PYTHONPATH=. python benchmarks/precision.py --datasets fmnist10k --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

PRECISIONS = ("bf16", "fp32")


def settings(name: str, fmnist_epochs) -> dict:
    """The TSimCNE parameters of dataset ``name`` (without the precision and the seed)."""
    if name == "digits":
        return dict(total_epochs=[6, 2, 4], batch_size=256)
    if name == "demo":
        from simcne.cli import DEMO

        return dict(DEMO)
    if name == "fmnist10k":
        from quality import FMNIST

        return {**FMNIST, "total_epochs": list(fmnist_epochs)}
    raise SystemExit(f"unknown dataset {name!r}")


def images(name: str):
    """(X, labels) of dataset ``name``: digits for "digits" and "demo"."""
    from quality import load_dataset

    X, labels, _ = load_dataset("digits" if name in ("digits", "demo") else name)
    return X, labels


def one_run(name: str, precision: str, seed: int, threads: int, fmnist_epochs) -> dict:
    """Train once on CPU; the map's kNN accuracy, distinct x-coordinates and seconds."""
    import torch

    from quality import score
    from simcne import TSimCNE

    torch.set_num_threads(threads)
    X, labels = images(name)
    params = {**settings(name, fmnist_epochs), "random_state": seed, "precision": precision,
              "device": "cpu"}
    t0 = time.perf_counter()
    Y = TSimCNE(**params).fit_transform(X)
    seconds = time.perf_counter() - t0
    knn, _ = score(Y, labels)
    out = dict(dataset=name, precision=precision, seed=seed, knn=knn, seconds=seconds,
               distinct_x=int(len(np.unique(Y[:, 0]))), n=len(Y))
    print(json.dumps(out), flush=True)
    return out


def table(runs: list[dict]) -> list[str]:
    lines = ["| data | precision | kNN per seed | mean ± sd | distinct x (min) | seconds (mean) |",
             "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["dataset"] for r in runs):
        for prec in PRECISIONS:
            rs = sorted((r for r in runs if r["dataset"] == name and r["precision"] == prec),
                        key=lambda r: r["seed"])
            if not rs:
                continue
            k = np.array([r["knn"] for r in rs])
            lines.append(
                f"| {name} | {prec} | {', '.join(f'{v:.3f}' for v in k)} | {k.mean():.3f} ± "
                f"{k.std():.3f} | {min(r['distinct_x'] for r in rs)} of {rs[0]['n']} | "
                f"{np.mean([r['seconds'] for r in rs]):.0f} |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["digits", "demo"],
                   choices=["digits", "demo", "fmnist10k"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="training seeds (random_state), each run in both precisions")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    p.add_argument("--fmnist-epochs", type=int, nargs=3, default=[30, 5, 200],
                   help="total_epochs of the fmnist10k runs (default 30 5 200)")
    p.add_argument("--json", type=Path, default=None, help="also write every run here")
    args = p.parse_args(argv)
    jobs = [(name, prec, seed) for name in args.datasets for seed in args.seeds
            for prec in PRECISIONS]
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(one_run, *job, args.threads, args.fmnist_epochs)
                   for job in jobs]
        runs = [f.result() for f in futures]
    if args.json is not None:
        args.json.write_text(json.dumps(runs, indent=1))
    from quality import machine

    cmd = "PYTHONPATH=. python benchmarks/precision.py " + shlex.join(argv or sys.argv[1:])
    print("\n".join([f"On {machine()}; `{cmd.strip()}`.", "", *table(runs)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
