"""Stage-by-stage experiments on small data: 2-D kNN accuracy against seconds of training.

Trains the three stages by hand (simcne's own ``train_stage``), so that each stage may have
its own batch size, optimiser, rate and warm-up, the augmentation its own crop range and
mirror probability, the new ``out_dim`` layer another initial scale than the paper's
N(0, 1), and stages 2 and 3 an exaggeration (``info_nce(..., exaggeration=rho)``). Stage 1
can be kept in a file (``--s1cache``) and shared by runs that differ only in stages 2 and
3; a run that reads it starts stages 2 and 3 with fresh random generators, so it is not
bit for bit the run that wrote it. kNN accuracy (k=15, stratified 20 % split) is the mean
over split seeds 0, 1, 2, of the embedding of the unaugmented images; the seconds count
training only. Each finished run appends a JSON line to ``--results``.

The README's "Small datasets" table was measured with it, two runs at a time of one torch
thread each on the 2-core machine, e.g. its last row::

    PYTHONPATH=. python benchmarks/stage_sweep.py --threads 1 --widths 16 32 64 \\
        --epochs 10 5 150 --every 25 --s1cache s1_tiny.pt --crop-lo 0.7 --flip 0 \\
        --lr 0.015 0.3 0.1 --init-std 0.1 --exaggeration 4
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from simcne import data as _data  # noqa: E402
from simcne import knn_accuracy  # noqa: E402
from simcne.augment import Augment  # noqa: E402
from simcne.losses import info_nce  # noqa: E402
from simcne.models import BACKBONES, make_model, replace_last_linear, set_trainable  # noqa: E402
from simcne.models.resnet import BasicBlock, ResNet  # noqa: E402
from simcne.estimator import default_training  # noqa: E402
from simcne.train import Stage, embed, train_stage  # noqa: E402


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="digits",
                   help="'digits', or an .npz with X (uint8 images) and y (labels)")
    p.add_argument("--backbone", default="resnet_small", help="a name of simcne's BACKBONES")
    p.add_argument("--widths", type=int, nargs="+", default=None,
                   help="instead of --backbone: a ResNet of one basic block per width")
    p.add_argument("--epochs", type=int, nargs=3, default=[60, 20, 160])
    p.add_argument("--bs", type=int, nargs=3, default=[128, 128, 128], help="batch per stage")
    p.add_argument("--lr", type=float, nargs=3, default=[0.015, 0.015, 0.0015])
    p.add_argument("--opt", nargs=3, default=["sgd", "sgd", "sgd"], help="optimiser per stage")
    p.add_argument("--wd", type=float, nargs=3, default=[5e-4, 5e-4, 5e-4])
    p.add_argument("--warmup", type=int, nargs=3, default=[10, 0, 10])
    p.add_argument("--crop-lo", type=float, default=0.2, help="smallest crop area (fraction)")
    p.add_argument("--flip", type=float, default=0.5, help="mirror probability")
    p.add_argument("--init-std", type=float, default=1.0, help="the new layer's N(0, std^2)")
    p.add_argument("--exaggeration", type=float, default=1.0, help="rho in stages 2 and 3")
    p.add_argument("--direct", action="store_true",
                   help="train stage 1 straight in 2-D and stop (no stages 2 and 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--every", type=int, default=20, help="stage-3 epochs between evaluations")
    p.add_argument("--every2", type=int, default=5, help="stage-2 epochs between evaluations")
    p.add_argument("--s1cache", default=None, help="file to keep stage 1 in and read it from")
    p.add_argument("--tag", default="", help="a name for the run in --results")
    p.add_argument("--results", default="stage_sweep.jsonl")
    p.add_argument("--save-embedding", default=None, help="write the final embedding (.npy)")
    return p.parse_args(argv)


def load(name):
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return np.rint(d.images * (255 / 16)).astype(np.uint8), d.target
    z = np.load(name)
    return z["X"], z["y"]


def main(argv=None) -> int:
    a = parse(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    X, y = load(a.data)
    store = _data.load(X, y)
    dev, size = torch.device("cpu"), store.image_size
    if a.widths:
        widths = tuple(a.widths)
        BACKBONES["custom"] = lambda in_channels=3: ResNet(
            BasicBlock, [1] * len(widths), widths=widths, in_channels=in_channels)
        a.backbone = "custom"
    model = make_model(a.backbone, "mlp", None, in_channels=store.channels, image_size=size,
                       pretrain_out_dim=2 if a.direct else 128)
    gen = torch.Generator().manual_seed(a.seed)
    shuffle = torch.Generator().manual_seed(a.seed + 1)
    aug = Augment(size=size, crop_scale=(a.crop_lo, 1.0), flip_p=a.flip)
    clock, log = [0.0], []

    def knn(Y):
        return float(np.mean([knn_accuracy(Y, y, 15, 0.2, s) for s in (0, 1, 2)]))

    def evaluate(tag):
        acc = knn(embed(model, store, image_size=size, device=dev))
        log.append((tag, round(clock[0], 1), round(acc, 4)))
        print(f"  {tag:>12} t={clock[0]:7.1f}s knn={acc:.4f}", flush=True)

    def run_stage(number):
        i = number - 1
        rho = 1.0 if number == 1 else a.exaggeration
        every = (a.every if a.direct else 10**9, a.every2, a.every)[i]
        stage = Stage(number, a.epochs[i], a.lr[i], a.warmup[i])
        t = [time.perf_counter()]

        def callback(s, epoch, loss, m):
            clock[0] += time.perf_counter() - t[0]
            if epoch % every == 0 or epoch == stage.epochs:
                if s > 1 or a.direct:
                    evaluate(f"s{s}e{epoch}")
                else:
                    print(f"  s1e{epoch} t={clock[0]:.1f} loss={loss:.3f}", flush=True)
            t[0] = time.perf_counter()
            return False

        stage.loss_fn = lambda z: info_nce(z, "euclidean", exaggeration=rho)
        train_stage(model, store, stage,
                    default_training(batch_size=a.bs[i],
                                     augment=lambda x: aug(x, generator=gen),
                                     device=dev, generator=shuffle, optimizer=a.opt[i],
                                     weight_decay=a.wd[i], callbacks=[callback]))

    def record():
        with open(a.results, "a") as f:
            f.write(json.dumps({"tag": a.tag, "args": vars(a), "log": log}) + "\n")

    if a.s1cache and os.path.exists(a.s1cache):
        saved = torch.load(a.s1cache)
        model.load_state_dict(saved["model"])
        clock[0] = saved["clock"]
        print(f"stage 1 from {a.s1cache} ({clock[0]:.1f} s)")
    else:
        set_trainable(model)
        run_stage(1)
        if a.direct:
            record()
            return 0
        if a.s1cache:
            torch.save({"model": model.state_dict(), "clock": clock[0]}, a.s1cache)
    features = embed(model, store, image_size=size, device=dev, backbone_features=True)[1]
    print(f"  backbone feat knn={knn(features):.4f}")
    layer = replace_last_linear(model, 2, generator=torch.Generator().manual_seed(a.seed + 2),
                                std=a.init_std)
    evaluate("s1")
    set_trainable(model, only=layer)
    run_stage(2)
    set_trainable(model)
    run_stage(3)
    record()
    if a.save_embedding:
        np.save(a.save_embedding, embed(model, store, image_size=size, device=dev))
    return 0


if __name__ == "__main__":
    sys.exit(main())
