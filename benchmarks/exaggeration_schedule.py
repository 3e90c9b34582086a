"""Exaggeration changed within stage 3: an experiment of issue 26, not an option of simcne.

The demo's digits map keeps exaggeration 4 in stage 3 because every lower constant value
measured cost kNN, and at 4 it draws the 0s and 6s as strokes (``map_shape`` flags it). This
tries t-SNE's idea of exaggerating early and letting go late *inside* stage 3: the loss's
exaggeration follows a schedule over the stage's epochs, set after each epoch by a callback
(the value of epoch ``e`` of ``E``, counted from 0):

- ``const:A``: A throughout (the dataset's settings when A is theirs);
- ``lin:A:B``: from A at the first epoch linearly towards B (``A + (B - A) e / E``);
- ``hold:A:B:F``: A until the fraction F of the stage, then linearly to B;
- ``step:A:B:F``: A until the fraction F of the stage, then B.

Each run fits the dataset's ``benchmarks/quality.py`` settings (digits: the demo's) from
scratch, with ``--params`` on top, and prints one JSON line: kNN (k=15, stratified 20 %
split, mean over split seeds 0, 1, 2, as quality.py scores), each stage's kNN, and the
shape measures of :func:`simcne.metrics.map_shape`.

Usage::

    PYTHONPATH=. python benchmarks/exaggeration_schedule.py --schedules step:4:2.5:0.5 lin:4:2 \\
        --seeds 0 1 2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from simcne import TSimCNE  # noqa: E402
from simcne.losses import LOSSES  # noqa: E402
from simcne.metrics import map_shape  # noqa: E402
from simcne.train import Stage  # noqa: E402


def parse_schedule(text: str):
    """``rho(e, E)``, the exaggeration of epoch ``e`` (from 0) of a stage of ``E``."""
    kind, *rest = text.split(":")
    v = [float(x) for x in rest]
    arity = {"const": 1, "lin": 2, "hold": 3, "step": 3}
    if kind not in arity or len(v) != arity[kind]:
        raise SystemExit(f"--schedules: expected const:A, lin:A:B, hold:A:B:F or step:A:B:F, "
                         f"got {text!r}")
    if kind == "const":
        return lambda e, E: v[0]
    if kind == "lin":
        return lambda e, E: v[0] + (v[1] - v[0]) * e / E
    if kind == "hold":
        return lambda e, E: (v[0] if e / E < v[2] else
                             v[0] + (v[1] - v[0]) * (e / E - v[2]) / (1 - v[2]))
    return lambda e, E: v[0] if e / E < v[2] else v[1]


class Scheduled(TSimCNE):
    """TSimCNE whose stage-3 loss reads its exaggeration from ``self.rho_now``."""

    rho_now = 1.0

    def _stages(self):
        stages = super()._stages()
        metric, temperature, loss_fn = self._metric, self.temperature, LOSSES[self.loss]
        s = stages[2]
        stages[2] = Stage(s.number, s.epochs, s.lr, s.warmup,
                          lambda z, **more: loss_fn(z, metric, temperature,
                                                    exaggeration=self.rho_now, **more))
        return stages


def run(X, labels, params: dict, schedule: str) -> dict:
    from quality import score

    rho = parse_schedule(schedule)
    E = params["total_epochs"][2]
    used = []

    def follow(stage, epoch, loss, model):  # after epoch `epoch` (1-based) of a stage
        if stage == 3 and epoch < E:
            est.rho_now = rho(epoch, E)
            used.append(est.rho_now)
        return False

    est = Scheduled(**params, callbacks=[follow])
    est.rho_now = rho(0, E)
    used.append(est.rho_now)
    t = time.perf_counter()
    est.fit(X)
    seconds = time.perf_counter() - t
    shape = map_shape(est.embedding_, labels)
    return {"schedule": schedule, "knn": score(est.embedding_, labels)[0],
            "stages": [score(Y, labels)[0] for Y in est.stage_embeddings_],
            "line_share": shape["line_share"], "elongation": shape["elongation"],
            "inner_share": shape["inner_share"], "flags": shape["flags"],
            "seconds": seconds, "rho_first_last": [used[0], used[-1]],
            "Y": est.embedding_}


def main(argv=None) -> int:
    from quality import load_dataset

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="digits", choices=("digits", "fmnist10k", "clipart"))
    p.add_argument("--schedules", nargs="+", default=["const:4", "step:4:2.5:0.5"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--params", default="{}", help="JSON: TSimCNE parameters on top")
    p.add_argument("--save", help="a folder for each map's .npy")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    X, labels, base = load_dataset(a.dataset)
    for schedule in a.schedules:
        parse_schedule(schedule)  # every one checked before the first fit
    for schedule in a.schedules:
        for seed in a.seeds:
            params = {**base, **json.loads(a.params), "random_state": seed}
            out = run(X, labels, params, schedule)
            Y = out.pop("Y")
            if a.save:
                Path(a.save).mkdir(parents=True, exist_ok=True)
                np.save(Path(a.save) / f"{a.dataset}-{schedule}-s{seed}.npy", Y)
            print(json.dumps({"dataset": a.dataset, "seed": seed, **out}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
