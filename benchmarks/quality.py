"""Map quality side by side: simcne, t-SNE (openTSNE) and UMAP on the same images, one run.

For each dataset it trains simcne with stated settings, records the 2-D kNN accuracy against
minutes of training (evaluated at the end of stages 1 and 2 and every ``--eval-every``
epochs of stage 3; the evaluation time is not counted as training time), then makes
openTSNE's and UMAP's maps of the same pixels. Every map is scored by ``knn_accuracy``
(k=15, stratified 20 % test split) over three split seeds (0, 1, 2): mean and spread; by
``neighborhood_preservation`` against the pixels (the share of each point's 15 nearest
neighbours in the pixels kept among its 15 in the map, 2,000 query points); and by
``map_shape``: the smallest per-class inner share (below 0.1: a hollow shell), the
smallest per-class elongation (below 0.1: a class squashed into a line), the share of
points on thin straight lines (above 0.04: straight edges, fans, outlines), the share on the convex
hull, and the flags those limits raise (``benchmarks/map_shape.py`` calibrated them).

Datasets:

- ``digits``: scikit-learn's 1,797 8x8 digits, with the settings of ``simcne demo``
  (``simcne.cli.DEMO``: among them the augmentation without the mirror, crops of 80-100 %);
- ``fmnist10k``: 10,000 Fashion-MNIST images (28x28), drawn without replacement with
  ``numpy.random.default_rng(0)`` from the 70,000 of Debian's ``dataset-fashion-mnist``,
  with the CPU settings ``FMNIST`` below (stage 3 shortened where the CPU has no native
  bf16, to stay near 30 minutes on 2 cores);
- ``clipart``: 1,886 colour drawings of Debian's ``openclipart-png`` in 8 classes at 32x32
  (``benchmarks/clipart.py``), with the ``photos`` preset (``CLIPART`` below).

Peers come from the ``bench`` extra (``pip install -e '.[bench]'``): openTSNE with its
defaults (perplexity 30, ``random_state=0``) and UMAP with its defaults (15 neighbours,
``random_state=0``, which makes UMAP single-threaded), both on the pixels scaled to [0, 1].

It prints a table, writes the figure (one row per dataset: simcne, t-SNE, UMAP) and, unless
``--no-write``, replaces the quality block of BENCHMARKS.md with the table, the curve, the
machine and the command.

Usage::

    PYTHONPATH=. python benchmarks/quality.py                       # both datasets
    PYTHONPATH=. python benchmarks/quality.py --datasets digits     # the demo only
    # the demo again, the other rows' maps and seconds from an earlier --save-maps run
    PYTHONPATH=. python benchmarks/quality.py --datasets digits fmnist10k --reuse fmnist10k DIR
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
from simcne import TSimCNE, knn_accuracy, map_shape, neighborhood_preservation  # noqa: E402
from simcne.cli import DEMO  # noqa: E402
from simcne.presets import preset  # noqa: E402
from simcne.train import embed  # noqa: E402

#: simcne's settings for the 10,000-image Fashion-MNIST subset on a 2-core CPU: the digits
#: recipe of `simcne demo` (resnet_tiny, stage 2 at 20x stage 1's rate, stage 3 at a rate
#: that trains the whole network, a N(0, 0.1^2) new layer), the images seen at 14x14 (4x
#: cheaper steps than 28x28), the mirror kept (a mirrored garment is the same garment),
#: crops of 50-100 % in stage 1 and of 80-100 % in stages 2-3, which place the images in the
#: map (BENCHMARKS.md, "Fashion-MNIST: narrower crops in stages 2-3 only"; on the clip art
#: the same change lost 6 points), and exaggeration 4 in stage 2 only (the ``photos``
#: preset's schedule: 4 throughout drew straight edges and a hollow arc here, and scored a
#: point lower; BENCHMARKS.md, "Exaggeration that ends at 1"). [30, 5, 850] is about 26 minutes on a
#: 2-core CPU with native bf16 (AVX512-BF16 or AMX); without native bf16 (fp32) an epoch
#: costs about 4x more, so there ``load_dataset`` gives stage 3 200 epochs
#: (``FMNIST_FP32_EPOCHS``) for the same time.
FMNIST = dict(backbone="resnet_tiny", image_size=14, total_epochs=[30, 5, 850], batch_size=128,
              lr=[0.015, 0.3, 0.1], exaggeration=[1.0, 4.0, 1.0], out_layer_std=0.1,
              data_transform=[{"crop_scale": (0.5, 1.0)}, {"crop_scale": (0.8, 1.0)},
                              {"crop_scale": (0.8, 1.0)}], random_state=0)

FMNIST_FP32_EPOCHS = [30, 5, 200]

#: simcne's settings for ``clipart`` (benchmarks/clipart.py: 1,886 colour drawings, 8
#: classes, 32x32): the ``photos`` preset (simcne.presets.PHOTOS: resnet_tiny, the paper's
#: augmentation, exaggeration 4 in stage 2 and 1 in stage 3).
CLIPART = preset("photos")

SPLIT_SEEDS = (0, 1, 2)
BEGIN, END = "<!-- quality:begin -->", "<!-- quality:end -->"


def score(Y, labels) -> tuple[float, float]:
    accs = [knn_accuracy(Y, labels, k=15, test_size=0.2, random_state=s) for s in SPLIT_SEEDS]
    return float(np.mean(accs)), float(np.std(accs))


def measure(m: dict, Xf, labels) -> None:
    """Add the map ``m["Y"]``'s neighbourhood preservation (against the pixels ``Xf``) and
    shape measures to ``m``."""
    m["np"] = neighborhood_preservation(Xf, m["Y"], k=15)
    m["shape"] = map_shape(m["Y"], labels)


def load_dataset(name: str):
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return np.rint(d.images * (255.0 / 16.0)).astype(np.uint8), d.target, dict(DEMO)
    if name == "fmnist10k":
        from simcne.data import load

        store = load("fashion-mnist", split="all")
        idx = np.sort(np.random.default_rng(0).choice(len(store), 10_000, replace=False))
        sub = store.subset(idx)
        X = sub.batch(torch.arange(len(sub))).numpy()[:, 0]  # (n, 28, 28) uint8
        from simcne.train import cpu_has_native_bf16

        params = dict(FMNIST)
        if not cpu_has_native_bf16():  # precision "auto" is fp32: about 4x slower epochs
            params["total_epochs"] = list(FMNIST_FP32_EPOCHS)
        return X, np.asarray(sub.labels), params
    if name == "clipart":
        from clipart import load_clipart

        X, y, _ = load_clipart(32)
        return X, y, dict(CLIPART)
    raise SystemExit(f"unknown dataset {name!r}")


class Curve:
    """A callback: kNN accuracy of the 2-D map every ``every`` epochs of stage 3."""

    def __init__(self, X, labels, every: int, image_size=None):
        from simcne.augment import resize
        from simcne.data import load

        self.store, self.labels, self.every, self.resize = load(X), labels, every, resize
        if image_size is None:
            image_size = self.store.image_size
        elif isinstance(image_size, int):
            image_size = (image_size, image_size)
        self.image_size = tuple(image_size)  # what the network is trained on
        self.points, self.eval_seconds, self.t0 = [], 0.0, time.perf_counter()

    def train_seconds(self) -> float:
        return time.perf_counter() - self.t0 - self.eval_seconds

    def __call__(self, stage, epoch, loss, model):
        if stage != 3 or epoch % self.every:
            return False
        t = time.perf_counter()
        Y = embed(model, self.store, image_size=self.image_size,
                  device=next(model.parameters()).device, resize=self.resize)
        model.train()  # embed leaves the model in eval mode
        self.points.append((self.train_seconds(), epoch, score(Y, self.labels)[0]))
        self.eval_seconds += time.perf_counter() - t
        return False


def run_simcne(X, labels, params: dict, every: int) -> dict:
    curve = Curve(X, labels, every, params.get("image_size"))
    est = TSimCNE(**params, callbacks=[curve])
    t0 = time.perf_counter()
    est.fit(X, labels)
    seconds = time.perf_counter() - t0 - curve.eval_seconds
    feats = est.transform(X, return_backbone_feat=True)[1]
    stages = [score(Y, labels)[0] for Y in est.stage_embeddings_]
    return dict(Y=est.embedding_, seconds=seconds, knn=score(est.embedding_, labels),
                stages=stages, features=score(feats, labels)[0], curve=curve.points,
                threads=torch.get_num_threads(), params=params)


def run_tsne(Xf, threads: int) -> dict:
    from openTSNE import TSNE

    t0 = time.perf_counter()
    Y = np.asarray(TSNE(n_jobs=threads, random_state=0).fit(Xf))
    return dict(Y=Y, seconds=time.perf_counter() - t0, threads=threads)


def run_umap(Xf) -> dict:
    import umap

    t0 = time.perf_counter()
    Y = umap.UMAP(random_state=0).fit_transform(Xf)
    return dict(Y=Y, seconds=time.perf_counter() - t0, threads=1)


def machine() -> str:
    from vs_reference import machine as describe  # the same machine line as the speed block

    from simcne.train import cpu_has_native_bf16

    native = "yes" if cpu_has_native_bf16() else "no"
    return f"{describe(torch.device('cpu'))}, native bf16: {native}"


def figure(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simcne.plot import plot_embedding, save_figure

    rows = len(results)
    fig, axes = plt.subplots(rows, 3, figsize=(15, 5 * rows), squeeze=False)
    for r, (name, res) in enumerate(results.items()):
        for c, method in enumerate(("simcne", "t-SNE", "UMAP")):
            m = res[method]
            plot_embedding(m["Y"], res["labels"], ax=axes[r, c], legend=(c == 2),
                           title=f"{name}: {method}, kNN {m['knn'][0]:.3f}, "
                                 f"{m['seconds']:.0f} s")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)  # about 1,500 px wide for three datasets: the README's size
    plt.close(fig)


def table(results: dict) -> list[str]:
    lines = ["| data | method | 2-D kNN (mean ± sd, 3 splits) | kept neighbours | "
             "inner share | elongation | on lines | on hull | shape flags | seconds | threads |",
             "|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for name, res in results.items():
        for method in ("simcne", "t-SNE", "UMAP"):
            m = res[method]
            sh = m["shape"]
            lines.append(f"| {name} | {method} | {m['knn'][0]:.3f} ± {m['knn'][1]:.3f} | "
                         f"{m['np']:.3f} | {sh['inner_share']:.2f} | {sh['elongation']:.2f} | "
                         f"{sh['line_share']:.3f} | {sh['hull_share']:.3f} | "
                         f"{', '.join(sh['flags']) or 'none'} | "
                         f"{m['seconds']:.0f} | {m['threads']} |")
        runs = res.get("simcne_seeds", [])
        if len(runs) > 1:
            accs = [r["knn"][0] for r in runs]
            secs = [r["seconds"] for r in runs]
            mean_s = "—" if None in secs else f"{np.mean(secs):.0f} (mean)"
            each = ", ".join(f"{r['params']['random_state']}: {a:.3f}" for r, a in zip(runs, accs))
            kept = np.mean([r["np"] for r in runs])
            flagged = sum(bool(r["shape"]["flags"]) for r in runs)
            lines.append(f"| {name} | simcne, {len(runs)} training seeds ({each}) | "
                         f"{np.mean(accs):.3f} ± {np.std(accs):.3f} (of the seeds' means) | "
                         f"{kept:.3f} (mean) | | | | | {flagged} of {len(runs)} flagged | "
                         f"{mean_s} | {runs[0]['threads']} |")
    return lines


def curve_lines(results: dict) -> list[str]:
    lines = []
    for name, res in results.items():
        s = res["simcne"]
        if "reused" in res:
            continue  # its curve is in the block of the run that made it
        st = " / ".join(f"{a:.3f}" for a in s["stages"])
        pts = ", ".join(f"{sec / 60:.1f} min: {acc:.3f} (epoch {ep})"
                        for sec, ep, acc in s["curve"])
        lines += [f"- **{name}**, simcne `{json.dumps(s['params'])}`: kNN after stage "
                  f"1 / 2 / 3 {st}; backbone features {s['features']:.3f}; "
                  f"pixels {res['pixels']:.3f}.",
                  f"  Stage 3, kNN against minutes of training: {pts}."]
    return lines


#: what a saved run keeps of each map beside its .npy (the rest is measured again on reuse)
KEPT = ("seconds", "threads", "stages", "features", "curve", "params")


def save_maps(folder: Path, name: str, res: dict, command: str) -> None:
    """Each map as ``folder/NAME-METHOD.npy`` (simcne: one per seed) and, in
    ``folder/NAME.json``, what ``--reuse`` needs besides: the seconds, threads, stage
    scores and curve of each, and the command that made them."""
    folder.mkdir(parents=True, exist_ok=True)
    for r in res["simcne_seeds"]:
        np.save(folder / f"{name}-simcne-seed{r['params']['random_state']}.npy", r["Y"])
    for method in ("t-SNE", "UMAP"):
        np.save(folder / f"{name}-{method}.npy", res[method]["Y"])
    keep = {"command": command, "date": str(datetime.date.today()), "machine": machine(),
            "simcne_seeds": [{k: r[k] for k in KEPT if k in r} for r in res["simcne_seeds"]],
            **{m: {k: res[m][k] for k in ("seconds", "threads")} for m in ("t-SNE", "UMAP")}}
    (folder / f"{name}.json").write_text(json.dumps(keep, indent=1) + "\n")


def reuse_maps(folder: Path, name: str, labels, Xf) -> dict:
    """A dataset's results from a run saved with ``--save-maps``: its maps and seconds as
    they were, every score measured again from the maps."""
    kept = json.loads((folder / f"{name}.json").read_text())
    res = {"labels": labels, "pixels": score(Xf, labels)[0], "reused": kept["command"],
           "reused_date": kept["date"]}
    res["simcne_seeds"] = [
        {**r, "Y": np.load(folder / f"{name}-simcne-seed{r['params']['random_state']}.npy")}
        for r in kept["simcne_seeds"]]
    res["simcne"] = res["simcne_seeds"][0]
    for method in ("t-SNE", "UMAP"):
        res[method] = {**kept[method], "Y": np.load(folder / f"{name}-{method}.npy")}
    for m in [*res["simcne_seeds"], res["t-SNE"], res["UMAP"]]:
        m["knn"] = score(m["Y"], labels)
        measure(m, Xf, labels)
    return res


def write_block(lines: list[str]) -> None:
    from blocks import write_block as write

    write(lines, BEGIN, END, "## Map quality: simcne, t-SNE and UMAP (CPU)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", nargs="+", default=["digits", "fmnist10k"],
                   choices=["digits", "fmnist10k", "clipart"])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch threads for simcne, n_jobs for t-SNE (default: all cores)")
    p.add_argument("--params", type=json.loads, default={},
                   help="JSON object of TSimCNE parameters overriding the dataset's settings")
    p.add_argument("--eval-every", type=int, default=None,
                   help="stage-3 epochs between kNN evaluations (default: a sixth of stage 3)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="train simcne once per seed (random_state) and report the spread; "
                        "the figure and the curve are the first seed's (default: the "
                        "settings' own seed)")
    p.add_argument("--dataset-seeds", type=json.loads, default={}, metavar="JSON",
                   help='seeds for some datasets only, overriding --seeds there, e.g. '
                        '\'{"fmnist10k": [0]}\' (one 30-minute run where the others get three)')
    p.add_argument("--figure", type=Path, default=ROOT / "docs" / "quality.png")
    p.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md as it is")
    p.add_argument("--save-maps", type=Path, default=None, metavar="DIR",
                   help="keep every map as DIR/DATASET-METHOD.npy (simcne: one per seed), "
                        "with DIR/DATASET.json (seconds, threads, curve, the command)")
    p.add_argument("--reuse", nargs=2, action="append", default=[], metavar=("DATASET", "DIR"),
                   help="take DATASET's maps and seconds from a run saved with --save-maps DIR "
                        "instead of training (every score is measured again); its table rows "
                        "and the figure say so. Repeatable")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    reuse = {name: Path(folder) for name, folder in args.reuse}
    cmd = "PYTHONPATH=. python benchmarks/quality.py " + shlex.join(argv or sys.argv[1:])
    results = {}
    for name in args.datasets:
        X, labels, params = load_dataset(name)
        params.update(args.params)
        Xf = X.reshape(len(X), -1).astype(np.float32) / 255.0
        if name in reuse:
            results[name] = reuse_maps(reuse[name], name, labels, Xf)
            continue
        epochs = params["total_epochs"]
        every = args.eval_every or max(1, epochs[2] // 6)
        res = {"labels": labels, "pixels": score(Xf, labels)[0]}
        print(f"[quality] {name}: {len(X)} images, simcne {params}", file=sys.stderr, flush=True)
        seeds = (args.dataset_seeds.get(name) or args.seeds
                 or [params.get("random_state", 0)])
        res["simcne_seeds"] = [run_simcne(X, labels, {**params, "random_state": seed}, every)
                               for seed in seeds]
        res["simcne"] = res["simcne_seeds"][0]  # the figure and the curve: the first seed
        res["t-SNE"] = run_tsne(Xf, args.threads)
        res["UMAP"] = run_umap(Xf)
        for method in ("t-SNE", "UMAP"):
            res[method]["knn"] = score(res[method]["Y"], labels)
        for m in [*res["simcne_seeds"], res["t-SNE"], res["UMAP"]]:
            measure(m, Xf, labels)
        results[name] = res
        if args.save_maps:
            save_maps(args.save_maps, name, res, cmd.strip())
        for line in table({name: res})[2:] + curve_lines({name: res}):
            print(line, flush=True)
    figure(results, args.figure)
    reused = [f"{name}'s maps and seconds are those of the run of {res['reused_date']}: "
              f"`{res['reused']}` (scores measured again from its maps)."
              for name, res in results.items() if "reused" in res]
    lines = [f"Measured {datetime.date.today()} on {machine()}.", "",
             f"`{cmd.strip()}`; figure: `{args.figure.relative_to(ROOT) if args.figure.is_relative_to(ROOT) else args.figure}`.", "",
             *reused, *([""] if reused else []), *table(results), "", *curve_lines(results)]
    print("\n".join(lines))
    if not args.no_write:
        write_block(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
