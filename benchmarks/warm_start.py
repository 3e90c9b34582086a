"""Warm starts on Fashion-MNIST: a fit from a saved model against a fit from scratch (issue 22).

Two disjoint subsets of Fashion-MNIST's 70,000 images (Debian's ``dataset-fashion-mnist``):
A, ``quality.py``'s 10,000 (``numpy.random.default_rng(0)``), and B, 10,000 of the other
60,000 (``default_rng(1)``). A *source* model is fitted on A once (seed 0) and saved; then,
on B, for each training seed:

- ``scratch``: ``TSimCNE(**SETTINGS)``, from scratch;
- ``init, stage 1``: the same settings with ``init=source.pt`` (stage 1 starts from the
  source's backbone and head);
- ``init, stage 3``: ``init=source.pt, init_stage=3``: stages 1 and 2 skipped, stage 3 (the
  same epochs and rate) fine-tunes the source's whole network;
- ``source as is``: the source's map of B, no training at all (0 minutes).

Each fit records the 2-D map's kNN accuracy (``quality.score``: k = 15, stratified 20 %
test splits with seeds 0, 1, 2) at the end of stage 2 and every ``--eval-every`` epochs of
stage 3, against seconds of training (evaluation time not counted). The source's own
training time is reported beside, not added: it is paid once, for any number of later fits.

SETTINGS are ``quality.py``'s CPU preset ``FMNIST`` (``resnet_tiny`` at 14x14, batch 128, lr
[0.015, 0.3, 0.1], exaggeration 4, a N(0, 0.1^2) new layer, crops of 50-100 %) with a short
schedule so that a fit takes a few minutes at one torch thread: [20, 5, 60] on B, [30, 5, 110]
for the source. Runs are sequential, one torch thread (the machine is shared).

Usage::

    PYTHONPATH=. python benchmarks/warm_start.py --json warm.json        # about 45 minutes
    PYTHONPATH=. python benchmarks/warm_start.py --seeds 0 --epochs 2 1 4 --source-epochs 2 1 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from quality import FMNIST, machine, score  # noqa: E402
from simcne import TSimCNE  # noqa: E402
from simcne.train import embed  # noqa: E402

BEGIN, END = "<!-- warm-start:begin -->", "<!-- warm-start:end -->"
VARIANTS = ("scratch", "init, stage 1", "init, stage 3")


def subsets():
    """(X_A, y_A), (X_B, y_B): two disjoint 10,000-image subsets, uint8 (n, 28, 28)."""
    from simcne.data import load

    store = load("fashion-mnist", split="all")
    n = len(store)
    a = np.sort(np.random.default_rng(0).choice(n, 10_000, replace=False))  # quality.py's
    rest = np.setdiff1d(np.arange(n), a)
    b = np.sort(np.random.default_rng(1).choice(rest, 10_000, replace=False))
    assert not np.intersect1d(a, b).size
    labels = np.asarray(store.labels)

    def images(idx):
        sub = store.subset(idx)
        return sub.batch(torch.arange(len(sub))).numpy()[:, 0], labels[idx]

    return images(a), images(b)


class Curve:
    """A callback: the 2-D map's kNN at the end of stage 2 and every ``every`` epochs of
    stage 3 (and at its end), against seconds of training without the evaluations."""

    def __init__(self, X, labels, epochs, every: int, image_size: int):
        from simcne.augment import resize
        from simcne.data import load

        self.store, self.labels, self.epochs, self.every = load(X), labels, epochs, every
        self.resize, self.size = resize, (image_size, image_size)
        self.points, self.eval_seconds, self.t0 = [], 0.0, time.perf_counter()

    def train_seconds(self) -> float:
        return time.perf_counter() - self.t0 - self.eval_seconds

    def __call__(self, stage, epoch, loss, model):
        last = epoch == self.epochs[stage - 1]
        if not ((stage == 2 and last) or (stage == 3 and (epoch % self.every == 0 or last))):
            return False
        t = time.perf_counter()
        secs = self.train_seconds()
        Y = embed(model, self.store, image_size=self.size,
                  device=next(model.parameters()).device, resize=self.resize)
        model.train()  # embed leaves the model in eval mode
        self.points.append((secs, stage, epoch, score(Y, self.labels)[0]))
        self.eval_seconds += time.perf_counter() - t
        return False


def fit(X, labels, params: dict, every: int) -> dict:
    epochs = params["total_epochs"]
    curve = Curve(X, labels, epochs, every, params["image_size"])
    est = TSimCNE(**params, callbacks=[curve])
    curve.t0 = time.perf_counter()
    est.fit(X, labels)
    seconds = curve.train_seconds()
    return dict(est=est, seconds=seconds, knn=score(est.embedding_, labels)[0],
                curve=curve.points)


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    (XA, yA), (XB, yB) = subsets()
    base = dict(FMNIST, total_epochs=list(args.epochs))
    out: dict = {"settings": base, "threads": args.threads, "seeds": list(args.seeds),
                 "runs": {v: [] for v in VARIANTS}}
    source_path = Path(args.workdir) / "source.pt"
    source_params = dict(base, total_epochs=list(args.source_epochs), random_state=0)
    source = fit(XA, yA, source_params, every=max(1, args.source_epochs[2] // 4))
    source["est"].save(source_path)
    out["source"] = dict(params=source_params, seconds=source["seconds"], knn_A=source["knn"],
                         knn_B=score(source["est"].transform(XB), yB)[0])
    print(f"source on A: kNN {source['knn']:.3f} in {source['seconds']:.0f} s; its map of B "
          f"without training: kNN {out['source']['knn_B']:.3f}", flush=True)
    for seed in args.seeds:
        for variant in VARIANTS:
            params = dict(base, random_state=seed)
            if variant != "scratch":
                params["init"] = str(source_path)
            if variant == "init, stage 3":
                params["init_stage"] = 3
            r = fit(XB, yB, params, args.eval_every)
            out["runs"][variant].append(dict(seed=seed, seconds=r["seconds"], knn=r["knn"],
                                             curve=r["curve"]))
            print(f"seed {seed}, {variant}: kNN {r['knn']:.3f} in {r['seconds']:.0f} s; "
                  + ", ".join(f"{s / 60:.1f} min {a:.3f}" for s, _, _, a in r["curve"]),
                  flush=True)
    return out


def lines(out: dict, command: str) -> list[str]:
    def mean_sd(v):
        return f"{np.mean(v):.3f} ± {np.std(v):.3f}"

    src = out["source"]
    ep = out["settings"]["total_epochs"]
    rows = ["| start on B | 2-D kNN at the end (mean ± sd, seeds) | after stage 2 | minutes of "
            "training on B (mean) | kNN against minutes (mean over seeds) |",
            "|---|---|---|---:|---|",
            f"| source as is (no training on B) | {src['knn_B']:.3f} | — | 0 | — |"]
    final = {}
    for variant, runs in out["runs"].items():
        if not runs:
            continue
        knn = [r["knn"] for r in runs]
        final[variant] = np.mean(knn)
        k = min(len(r["curve"]) for r in runs)
        pts = [(np.mean([r["curve"][i][0] for r in runs]) / 60,
                np.mean([r["curve"][i][3] for r in runs])) for i in range(k)]
        stage2 = [r["curve"][0][3] for r in runs if r["curve"][0][1] == 2]
        rows.append(f"| {variant} | {mean_sd(knn)} ({', '.join(f'{v:.3f}' for v in knn)}) | "
                    f"{np.mean(stage2):.3f} |" if stage2 else
                    f"| {variant} | {mean_sd(knn)} ({', '.join(f'{v:.3f}' for v in knn)}) | — |")
        rows[-1] += (f" {np.mean([r['seconds'] for r in runs]) / 60:.1f} | "
                     + ", ".join(f"{m:.1f}: {a:.3f}" for m, a in pts) + " |")
    reach = []
    if "scratch" in final:
        for variant in VARIANTS[1:]:
            runs = out["runs"][variant]
            if not runs:
                continue
            k = min(len(r["curve"]) for r in runs)
            first = next((np.mean([r["curve"][i][0] for r in runs]) / 60 for i in range(k)
                          if np.mean([r["curve"][i][3] for r in runs]) >= final["scratch"]),
                         None)
            reach.append(f"{variant}: " + (f"{first:.1f} min" if first is not None else
                                           "not within the run"))
    when = datetime.date.today().isoformat()
    return [
        f"Measured {when} on {machine()}; {out['threads']} torch thread, runs one after "
        "another.",
        "",
        f"`{command}`",
        "",
        f"Settings on B: `quality.py`'s `FMNIST` with `total_epochs={ep}` "
        f"(seeds {', '.join(map(str, out['seeds']))}); the source: `total_epochs="
        f"{src['params']['total_epochs']}`, seed 0, on A: kNN {src['knn_A']:.3f} on A in "
        f"{src['seconds'] / 60:.1f} min (paid once, not counted below).",
        "",
        *rows,
        "",
        f"Minutes until the mean curve reaches scratch's final {final.get('scratch', float('nan')):.3f}: "
        + "; ".join(reach) + ".",
    ]


def write_block(block: list[str]) -> None:
    from blocks import write_block as write

    write(block, BEGIN, END, "## Warm starts from a saved model (CPU)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, nargs=3, default=[20, 5, 60],
                   help="total_epochs of the fits on B")
    p.add_argument("--source-epochs", type=int, nargs=3, default=[30, 5, 110],
                   help="total_epochs of the source model on A")
    p.add_argument("--eval-every", type=int, default=10, help="stage-3 epochs between kNNs")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workdir", default="/tmp/simcne-warm-start")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--write", action="store_true", help="replace the block in BENCHMARKS.md")
    args = p.parse_args(argv)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    command = "PYTHONPATH=. python benchmarks/warm_start.py " + shlex.join(argv or sys.argv[1:])
    out = run(args)
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1))
    block = lines(out, command.strip())
    print("\n".join(block))
    if args.write:
        write_block(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
