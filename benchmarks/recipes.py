"""Stage-2/3 recipes side by side from one shared stage 1: what each option of the out_dim
stages buys (issue 26, item 3).

For each dataset and training seed, stage 1 is trained once (``--stage1`` epochs, the base
settings) and saved; each variant then starts from it (``init=..., init_stage=1,
total_epochs=[0, stage2, stage3]``) and trains stages 2 and 3 with its own settings. Every
map is scored by kNN accuracy (k=15, stratified 20 % split, mean over split seeds 0, 1, 2)
and the shape measures of :mod:`simcne.metrics` where present; the table gives the seconds
of stages 2-3 too. Results are appended as JSON lines to ``--out`` (default
/tmp/simcne-recipes/results.jsonl) so that runs can be combined.

Usage::

    PYTHONPATH=. python benchmarks/recipes.py --dataset fmnist10k --seeds 0 1 2 \\
        --variants paper-pairs neighbors bank pca all --stage1 30 --stage2 5 --stage3 60
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from simcne import TSimCNE  # noqa: E402
from quality import load_dataset, score  # noqa: E402

#: stage-2/3 settings tried, on top of the dataset's base settings
VARIANTS = {
    "base": {},
    "ex4": dict(exaggeration=4.0),
    "rho1": dict(exaggeration=1.0),
    "neighbors": dict(neighbor_positives=15),
    "bank": dict(bank_negatives=1_000_000),
    "pca": dict(out_layer_init="pca"),
    "nb-bank": dict(neighbor_positives=15, bank_negatives=1_000_000),
    "all": dict(neighbor_positives=15, bank_negatives=1_000_000, out_layer_init="pca"),
    "all-rho1": dict(neighbor_positives=15, bank_negatives=1_000_000, out_layer_init="pca",
                     exaggeration=1.0),
    "all-rho2": dict(neighbor_positives=15, bank_negatives=1_000_000, out_layer_init="pca",
                     exaggeration=2.0),
    "nb-rho1": dict(neighbor_positives=15, exaggeration=1.0),
    "ee-then-1": dict(exaggeration=[1.0, 4.0, 1.0]),
    "pca-ee-then-1": dict(out_layer_init="pca", exaggeration=[1.0, 4.0, 1.0]),
    "nb-bank-rho1": dict(neighbor_positives=15, bank_negatives=1_000_000, exaggeration=1.0),
    "nb-bank-rho2": dict(neighbor_positives=15, bank_negatives=1_000_000, exaggeration=2.0),
}


def shape_scores(Y, labels) -> dict:
    try:
        from simcne.metrics import map_shape
    except ImportError:
        return {}
    try:
        return {k: float(v) for k, v in map_shape(Y, labels).items()
                if isinstance(v, (int, float, np.floating))}
    except Exception as e:  # noqa: BLE001  a measure that cannot judge this map
        return {"shape_error": str(e)}


def stage1_model(name, X, base, seed, epochs, folder: Path) -> Path:
    path = folder / f"{name}-seed{seed}-stage1-{epochs}.pt"
    if not path.exists():
        t = time.perf_counter()
        est = TSimCNE(**{**base, "total_epochs": [epochs], "random_state": seed,
                         "device": "cpu"})
        est.fit(X)
        est.save(path)
        print(f"stage 1 ({epochs} epochs, seed {seed}): {time.perf_counter() - t:.0f} s",
              flush=True)
    return path


def _stage2_trains_head() -> None:
    """Make stage 2 train the projection head's hidden layer with the new layer: a map that
    is not a linear image of fixed ReLU outputs (measured: no better, BENCHMARKS.md)."""
    import simcne.estimator as estimator

    stage = estimator.TSimCNE._stage

    def _stage(self, number, first, model, store, stages, run, keeper, only=None):
        if number == 2:
            only = model.projection_head
        return stage(self, number, first, model, store, stages, run, keeper, only=only)

    estimator.TSimCNE._stage = _stage


def _hard_negatives(weight: float, mode: str) -> None:
    """Make stages 2-3 train on hard negatives (an experiment, not an option of simcne;
    measured: no better, BENCHMARKS.md). Half of each batch is a draw of the epoch's images,
    the other half one partner each, drawn by ``mode`` from the stage-1 backbone features:
    ``midnear``, the second most similar (cosine) of 6 random images (PaCMAP's mid-near
    pairs, used as ParamRepulsor's hard negatives); ``random``, any image. Each (image,
    partner) pair in both views adds ``weight * log(1 + 1 / d^2)`` (the repulsive term
    ``-log(1 - q)`` of a NEG-style loss with the Cauchy kernel ``q``) to the mean InfoNCE
    loss; with ``weight=0`` only the batches change."""
    import torch.nn.functional as F

    import simcne.estimator as estimator
    import simcne.train as train

    state: dict = {"h": None}
    epoch_chunks, stage_fn = train._epoch_chunks, estimator.TSimCNE._stage

    def partners(images, gen):
        h = state["h"]
        if mode == "random":
            return torch.randint(0, len(h), (len(images),), generator=gen)
        cand = torch.randint(0, len(h), (len(images), 6), generator=gen)
        sims = (h[images][:, None, :] * h[cand]).sum(-1)
        sims[cand == images[:, None]] = -9.0  # never the image itself
        second = sims.argsort(1, descending=True)[:, 1]
        return cand[torch.arange(len(images)), second]

    def chunks(order, steps, batch_size, stage, generator):
        if stage.number == 1:
            return epoch_chunks(order, steps, batch_size, stage, generator)
        half = batch_size // 2
        images = order[: steps * half].cpu()
        other = partners(images, generator)
        return (torch.cat([images[i * half:(i + 1) * half], other[i * half:(i + 1) * half]])
                for i in range(steps)), None

    def with_repulsion(loss_fn):
        def loss(z, **more):
            half = z.shape[0] // 4
            v = z.float().view(2, 2, half, -1)  # view, (image | partner), row
            d2 = ((v[:, 0] - v[:, 1]) ** 2).sum(-1)
            return loss_fn(z, **more) + weight * torch.log1p(1.0 / (d2 + 1e-4)).mean()
        return loss

    def _stage(self, number, first, model, store, stages, run, keeper, only=None):
        if first <= number <= len(stages) and number >= 2:
            if state["h"] is None:
                _, h = self._embed(store, backbone_features=True)
                state["h"] = F.normalize(torch.as_tensor(np.asarray(h), dtype=torch.float32), dim=1)
            st = stages[number - 1]
            if not getattr(st, "hard", False):
                st.loss_fn, st.hard = with_repulsion(st.loss_fn), True
        return stage_fn(self, number, first, model, store, stages, run, keeper, only=only)

    train._epoch_chunks, estimator.TSimCNE._stage = chunks, _stage


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fmnist10k")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--variants", nargs="+", default=["base", "all"])
    ap.add_argument("--stage1", type=int, default=30)
    ap.add_argument("--stage1-seed", type=int, default=None,
                    help="one stage 1, trained with this seed, for every seed's stages 2-3 "
                         "(default: each seed trains its own)")
    ap.add_argument("--stage2", type=int, default=5)
    ap.add_argument("--stage3", type=int, default=60)
    ap.add_argument("--params", default="{}", help="JSON: more settings for every variant")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--stage2-head", action="store_true",
                    help="an experiment, not an option of simcne: stage 2 trains the whole "
                         "projection head (its hidden layer too), not only the new layer")
    ap.add_argument("--hard-negatives", type=float, default=None, metavar="WEIGHT",
                    help="an experiment, not an option of simcne: stages 2-3 on batches of "
                         "images and their mid-near partners, each pair repelled with this "
                         "weight (see _hard_negatives)")
    ap.add_argument("--hard-mode", choices=["midnear", "random"], default="midnear")
    ap.add_argument("--out", default="/tmp/simcne-recipes/results.jsonl")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if a.stage2_head:
        _stage2_trains_head()
    if a.hard_negatives is not None:
        _hard_negatives(a.hard_negatives, a.hard_mode)
    X, labels, base = load_dataset(a.dataset)
    base = {k: v for k, v in base.items() if k != "total_epochs"}
    extra = json.loads(a.params)
    for seed in a.seeds:
        stage1_seed = seed if a.stage1_seed is None else a.stage1_seed
        src = stage1_model(a.dataset, X, base, stage1_seed, a.stage1, out.parent)
        for v in a.variants:
            params = {**base, **VARIANTS[v], **extra, "init": str(src), "init_stage": 1,
                      "total_epochs": [0, a.stage2, a.stage3], "random_state": seed,
                      "device": "cpu"}
            t = time.perf_counter()
            Y = TSimCNE(**params).fit_transform(X)
            secs = time.perf_counter() - t
            knn, spread = score(Y, labels)
            name = v + ("+head2" if a.stage2_head else "") + (
                "" if a.hard_negatives is None else f"+hn{a.hard_negatives:g}-{a.hard_mode}")
            row = dict(dataset=a.dataset, seed=seed, variant=name, knn=knn, spread=spread,
                       seconds=secs, stage1=a.stage1, stage2=a.stage2, stage3=a.stage3,
                       stage1_seed=stage1_seed,
                       params={k: params[k] for k in params if k != "init"},
                       **shape_scores(Y, labels))
            np.save(out.parent / f"{a.dataset}-seed{seed}-{name}-{a.stage3}{a.params != '{}' and '-x' or ''}.npy", Y)
            with open(out, "a") as f:
                f.write(json.dumps(row, default=str) + "\n")
            print(f"{a.dataset} seed {seed} {v:14s} knn {knn:.3f} ± {spread:.3f}  {secs:5.0f} s",
                  flush=True)


if __name__ == "__main__":
    main()
