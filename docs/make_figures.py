"""Make every figure of docs/parameter_guide.md, into docs/figures/.

Each figure trains a few maps that differ in one parameter of ``TSimCNE`` and draws them side
by side, titled with the setting and the map's kNN accuracy (k=15 on a stratified 20 % test
split, the mean over split seeds 0, 1 and 2, as ``benchmarks/quality.py`` scores). The
script prints every figure's values and writes them, with the seconds of each run, the
machine and the total time, to ``knn.json`` beside the figures: the guide's captions are
copied from there (``tests/test_make_figures.py`` checks that they agree).

Profiles (``--profile``; ``auto`` picks ``gpu`` when ``torch.cuda.is_available()``):

``cpu``
    scikit-learn's digits (1,797 images of 8x8) with the settings of ``simcne demo``
    (``simcne.cli.DEMO``) as the base, and 5,000 Fashion-MNIST images (drawn with
    ``numpy.random.default_rng(0)``, seen at 14x14) with a short schedule derived from
    ``benchmarks/quality.py``'s ``FMNIST`` preset: 20 runs of digits and two of
    Fashion-MNIST, sized for about 20 minutes on a quiet 2-core CPU with native bf16 (the
    guide's last line has the measured time); longer where the CPU computes in fp32.
``gpu``
    digits as above (it is the full set already; ``resnet18`` is added to the backbone
    figure), and the whole of Fashion-MNIST (70,000 images at 28x28) with the paper's
    settings: ``resnet18``, ``total_epochs=[1000, 50, 450]``, batch 512; the epochs figure
    then compares the guide's three schedules on Fashion-MNIST. Expect several hours on one
    GPU. This branch has not been run: the project's machines have no GPU.
``--smoke``
    200 images of each set, 1-2 epochs a stage: checks that every figure is drawn, in
    seconds; the numbers mean nothing.

Fashion-MNIST is read with ``simcne.data.load("fashion-mnist")`` (Debian's
``dataset-fashion-mnist`` in /usr/share/datasets, or downloaded). Every run is seeded
(``random_state=0``, data subsets with ``default_rng(0)``), so a second run on the same
machine, with the same number of threads and precision, draws the same figures.

Usage::

    PYTHONPATH=. python docs/make_figures.py                  # every figure, docs/figures/
    PYTHONPATH=. python docs/make_figures.py --only batch_size out_dim
    PYTHONPATH=. python docs/make_figures.py --smoke --out /tmp/figures
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from quality import FMNIST  # noqa: E402
from simcne import TSimCNE, knn_accuracy, map_shape  # noqa: E402
from simcne.cli import DEMO  # noqa: E402
from simcne.train import TrainingDiverged  # noqa: E402

SPLIT_SEEDS = (0, 1, 2)
DPI = 110
LOADS: list = []  # the 1-minute load average after each run

#: Fashion-MNIST on a CPU: benchmarks/quality.py's FMNIST settings (resnet_tiny at 14x14,
#: the digits recipe, the mirror kept, exaggeration 4 in stage 2 only) with a schedule short
#: enough for 5,000 images in a few minutes, and crops of 50-100 % in every stage: at this
#: size and length the narrower stages-2-3 crops of FMNIST gave 0.726 against 0.733 over
#: three seeds (BENCHMARKS.md, "Fashion-MNIST: narrower crops in stages 2-3 only").
FMNIST_CPU = dict(FMNIST, total_epochs=[20, 5, 100], data_transform={"crop_scale": (0.5, 1.0)})
#: Fashion-MNIST on a GPU: the paper's settings (TSimCNE's defaults).
FMNIST_GPU = dict(random_state=0)


@dataclass
class Profile:
    name: str
    digits_n: int | None  # None: all 1,797
    fmnist_n: int | None  # None: all 70,000
    digits: dict  # base settings
    fmnist: dict
    epochs: tuple  # (dataset, [schedules]) of the epochs figure
    backbones: tuple


def _profiles() -> dict:
    cpu = Profile("cpu", None, 5000, dict(DEMO), dict(FMNIST_CPU),
                  ("digits", [[5, 2, 30], [10, 5, 75], list(DEMO["total_epochs"])]),
                  ("resnet_tiny", "resnet_small", "module"))
    gpu = Profile("gpu", None, None, dict(DEMO), dict(FMNIST_GPU),
                  ("fmnist", [[400, 25, 75], [775, 25, 200], [1000, 50, 450]]),
                  ("resnet_tiny", "resnet_small", "resnet18", "module"))
    smoke = Profile("smoke", 200, 200, dict(DEMO, total_epochs=[1, 1, 2], batch_size=64),
                    dict(FMNIST_CPU, total_epochs=[1, 1, 2], batch_size=64),
                    ("digits", [[1, 1, 1], [1, 1, 2]]), ("resnet_tiny", "module"))
    return {p.name: p for p in (cpu, gpu, smoke)}


# -- data -----------------------------------------------------------------------------------
@dataclass
class Data:
    X: np.ndarray  # (n, H, W) uint8
    y: np.ndarray
    names: list


def _subset(n_all: int, n: int | None) -> np.ndarray:
    if n is None or n >= n_all:
        return np.arange(n_all)
    return np.sort(np.random.default_rng(0).choice(n_all, n, replace=False))


def load_digits(n=None) -> Data:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    X = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)
    idx = _subset(len(X), n)
    return Data(X[idx], d.target[idx], [str(i) for i in range(10)])


def load_fmnist(n=None) -> Data:
    from simcne.data import load

    store = load("fashion-mnist", split="all")
    idx = _subset(len(store), n)
    sub = store.subset(idx)
    X = sub.batch(torch.arange(len(sub))).numpy()[:, 0]
    return Data(X, np.asarray(sub.labels), list(store.class_names))


# -- training -------------------------------------------------------------------------------
def score(Y, labels) -> float:
    """kNN accuracy (k=15, stratified 20 % split), mean over split seeds 0, 1, 2."""
    return float(np.mean([knn_accuracy(Y, labels, k=15, test_size=0.2, random_state=s)
                          for s in SPLIT_SEEDS]))


def shape_record(Y, labels) -> dict:
    """``map_shape``'s flags and share of points on lines of a 2-D map ({} otherwise): an
    artefact in a figure is then written down, not only seen."""
    if Y.ndim != 2 or Y.shape[1] != 2:
        return {}
    m = map_shape(Y, labels)
    return dict(flags=m["flags"], line_share=round(m["line_share"], 3))


@dataclass
class Run:
    label: str
    est: TSimCNE | None
    knn: float | None
    seconds: float
    error: str | None = None
    extra: dict = field(default_factory=dict)
    shape: dict = field(default_factory=dict)  # shape_record's, for a 2-D map

    @property
    def Y(self):
        return self.est.embedding_


class Runner:
    """Fits maps, once per distinct setting (the base run is shared by several figures)."""

    def __init__(self, profile: Profile, data: dict, verbose: bool = False):
        self.profile, self.data, self.cache, self.verbose = profile, data, {}, verbose

    def base(self, dataset: str) -> dict:
        return dict(getattr(self.profile, dataset))

    def fit(self, dataset: str, label: str, X=None, key=None, **overrides) -> Run:
        params = {**self.base(dataset), **overrides}
        key = key or (dataset, repr(sorted(params.items())))
        if X is None and key in self.cache:
            return self.cache[key]
        d = self.data[dataset]
        est = TSimCNE(**params, verbose=self.verbose)
        t0 = time.perf_counter()
        try:
            est.fit(d.X if X is None else X, None if X is not None else d.y)
        except TrainingDiverged as e:
            run = Run(label, None, None, time.perf_counter() - t0, error=str(e).split(".")[0])
            print(f"  {dataset:7s} {label:40s} diverged ({run.seconds:.0f} s)", flush=True)
            return run
        seconds = time.perf_counter() - t0
        LOADS.append(load_average())
        run = Run(label, est, score(est.embedding_, d.y), seconds,
                  shape=shape_record(est.embedding_, d.y))
        flags = ", ".join(run.shape.get("flags", [])) or "none"
        print(f"  {dataset:7s} {label:40s} kNN {run.knn:.3f}  ({seconds:.0f} s; shape flags: "
              f"{flags})", flush=True)
        if X is None:
            self.cache[key] = run
        return run


# -- drawing --------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(letter: str, setting: str, run: Run | None = None, knn=None) -> str:
    if run is not None and run.error:
        return f"{letter}   {setting}\ndiverged"
    knn = run.knn if run is not None else knn
    return f"{letter}   {setting}\nkNN {knn:.3f}"


def _scatter(ax, Y, data: Data, title: str, legend: bool):
    from simcne.plot import plot_embedding

    plot_embedding(Y, data.y, data.names, ax=ax, title=title, legend=legend)
    ax.title.set_fontsize("medium")


def _panels(runs: list, data: Data, settings: list, path: Path, size=3.6):
    """One row of maps; a diverged run gets an empty panel that says so."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(runs), figsize=(size * len(runs) + 1.3, size + 0.5),
                             squeeze=False)
    for i, (run, setting, ax) in enumerate(zip(runs, settings, axes[0])):
        letter = "abcdefgh"[i]
        if run.est is None:
            ax.text(0.5, 0.5, "diverged", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(_title(letter, setting, run), fontsize="medium")
        else:
            _scatter(ax, run.Y, data, _title(letter, setting, run), legend=i == len(runs) - 1)
    _save(fig, path)


def _save(fig, path: Path):
    from simcne.plot import save_figure

    fig.tight_layout()
    save_figure(fig, path, dpi=DPI)
    _plt().close(fig)


def _record(runs: list, settings: list) -> list:
    return [dict(panel="abcdefgh"[i], setting=s, knn=None if r.knn is None else round(r.knn, 3),
                 seconds=round(r.seconds, 1), **({"error": r.error} if r.error else {}),
                 **r.shape, **r.extra)
            for i, (r, s) in enumerate(zip(runs, settings))]


def _fmt(v):
    return " ".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)


# -- the figures, in the guide's order --------------------------------------------------------
def fig_epochs(r: Runner, out: Path):
    dataset, schedules = r.profile.epochs
    runs = [r.fit(dataset, f"total_epochs={s}", total_epochs=s) for s in schedules]
    settings = [f"total_epochs={s}" for s in schedules]
    _panels(runs, r.data[dataset], settings, out / "epochs.png")
    return _record(runs, settings)


def fig_stages(r: Runner, out: Path):
    """Per dataset: the map after each stage, and the loss of every epoch."""
    from simcne.plot import plot_loss

    plt = _plt()
    rows = [("digits", r.fit("digits", "base")), ("fmnist", r.fit("fmnist", "base"))]
    fig, axes = plt.subplots(2, 4, figsize=(16, 8),
                             gridspec_kw=dict(width_ratios=[1, 1, 1.4, 1.2]))
    record = []
    names = {"digits": "digits", "fmnist": "Fashion-MNIST"}
    for row, (dataset, run) in enumerate(rows):
        d = r.data[dataset]
        knns = [score(Y, d.y) for Y in run.est.stage_embeddings_]
        what = ("stage 1", "stage 2", "stage 3")
        for j, (Y, k) in enumerate(zip(run.est.stage_embeddings_, knns)):
            letter = "abc"[j] if row == 0 else "efg"[j]
            title = f"{letter}   {names[dataset]}, end of {what[j]}\nkNN {k:.3f}"
            _scatter(axes[row, j], Y, d, title, legend=j == 2)
            record.append(dict(panel=letter, setting=f"{names[dataset]}, end of {what[j]}",
                               knn=round(k, 3), seconds=round(run.seconds, 1),
                               **shape_record(Y, d.y)))
        ax = axes[row, 3]
        plot_loss(run.est.loss_history_, ax=ax)
        # plot_loss names each stage above its part of the curve; stages 1 and 2 are too
        # short here for the names to fit side by side, so a legend says it instead
        for t in list(ax.texts):
            t.remove()
        loss = run.est.loss_history_["loss"]
        pad = 0.05 * (loss.max() - loss.min())
        ax.set_ylim(loss.min() - pad, loss.max() + pad)
        ax.legend(frameon=False, fontsize="small")
        ax.set_title(f"{'dh'[row]}   {names[dataset]}: loss per epoch", fontsize="medium")
    _save(fig, out / "stages.png")
    return record


def fig_batch_size(r: Runner, out: Path):
    base = r.base("digits")
    b0 = base["batch_size"]
    sizes = [64, b0, 512] if r.profile.name != "smoke" else [32, b0]
    runs, settings = [], []
    for b in sizes:
        lr = [round(v * b / b0, 6) for v in base["lr"]]  # scaled with the batch, as auto_batch
        settings.append(f"batch_size={b}, lr={_fmt(lr)}")
        runs.append(r.fit("digits", settings[-1], batch_size=b, lr=lr))
    _panels(runs, r.data["digits"], settings, out / "batch_size.png")
    return _record(runs, settings)


def fig_out_dim(r: Runner, out: Path):
    plt = _plt()
    d = r.data["digits"]
    two = r.fit("digits", "out_dim=2")
    three = r.fit("digits", "out_dim=3", out_dim=3)
    fig = plt.figure(figsize=(9.8, 4.4))
    ax = fig.add_subplot(1, 2, 1)
    _scatter(ax, two.Y, d, _title("a", "out_dim=2", two), legend=False)
    ax3 = fig.add_subplot(1, 2, 2, projection="3d")
    cmap = plt.get_cmap("tab10")
    s = max(0.5, min(20.0, 20000.0 / len(d.y)))  # plot_embedding's marker size
    order = np.random.default_rng(0).permutation(len(d.y))  # no class drawn over the others
    ax3.scatter(*three.Y[order, :3].T, s=s, c=[cmap(int(c) % 10) for c in d.y[order]],
                depthshade=True, linewidths=0, rasterized=True)
    for c in np.unique(d.y):  # the legend's entries
        ax3.scatter([], [], [], s=s, color=cmap(int(c) % 10), label=d.names[int(c)])
    ax3.view_init(elev=20, azim=35)
    ax3.set_xticklabels([])
    ax3.set_yticklabels([])
    ax3.set_zticklabels([])
    for axis in (ax3.xaxis, ax3.yaxis, ax3.zaxis):
        axis.set_pane_color((1, 1, 1, 0))
    ax3.set_title(_title("b", "out_dim=3", three), fontsize="medium")
    ax3.legend(loc="center left", bbox_to_anchor=(1.05, 0.5), frameon=False, markerscale=3,
               fontsize="small")
    _save(fig, out / "out_dim.png")
    return _record([two, three], ["out_dim=2", "out_dim=3"])


def small_cnn(in_channels: int = 1):
    """The module of the backbone figure: two convolutions, 64 features."""
    from torch import nn

    torch.manual_seed(0)  # the module is built here, before TSimCNE seeds anything
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten())


def fig_backbone(r: Runner, out: Path):
    runs, settings = [], []
    for name in r.profile.backbones:
        if name == "module":
            settings.append("backbone=nn.Sequential(2 convs)")
            runs.append(r.fit("digits", settings[-1], key=("digits", "module"),
                              backbone=small_cnn(1)))
        else:
            settings.append(f'backbone="{name}"')
            runs.append(r.fit("digits", settings[-1], backbone=name))
    _panels(runs, r.data["digits"], settings, out / "backbone.png")
    return _record(runs, settings)


def fig_beton(r: Runner, out: Path):
    from simcne.data import write_beton

    d = r.data["fmnist"]
    array = r.fit("fmnist", "from a uint8 array")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fmnist.beton"
        t0 = time.perf_counter()
        write_beton(d.X, path, y=d.y)
        write_s = time.perf_counter() - t0
        mb = path.stat().st_size / 1e6
        beton = r.fit("fmnist", "from fmnist.beton", X=str(path))
    beton.extra = dict(file_mb=round(mb, 1), write_seconds=round(write_s, 1),
                       in_channels=beton.est.in_channels_ if beton.est else None)
    print(f"  fmnist.beton: {mb:.1f} MB, written in {write_s:.1f} s, "
          f"read as {beton.extra['in_channels']}-channel images")
    settings = ["fit(X), X a uint8 array", 'fit("fmnist.beton")']
    _panels([array, beton], d, settings, out / "beton.png", size=4.2)
    return _record([array, beton], settings)


def fig_exaggeration(r: Runner, out: Path):
    base = r.base("digits")["exaggeration"]
    values = sorted({1.0, float(base), 8.0}) if r.profile.name != "smoke" else [1.0, base]
    settings = [f"exaggeration={v:g}" for v in values]
    runs = [r.fit("digits", s, exaggeration=v) for s, v in zip(settings, values)]
    _panels(runs, r.data["digits"], settings, out / "exaggeration.png")
    return _record(runs, settings)


def fig_out_layer_std(r: Runner, out: Path):
    base = r.base("digits")["out_layer_std"]
    values = [1.0, base]
    settings = [f"out_layer_std={v:g}" for v in values]
    runs = [r.fit("digits", s, out_layer_std=v) for s, v in zip(settings, values)]
    _panels(runs, r.data["digits"], settings, out / "out_layer_std.png", size=4.2)
    return _record(runs, settings)


def fig_augmentation(r: Runner, out: Path):
    base = r.base("digits")["data_transform"]
    lo, hi = base["crop_scale"]
    variants = [("paper's: flip_p 0.5, crop_scale 0.2-1", None),
                (f"flip_p {base['flip_p']:g}, crop_scale {lo:g}-{hi:g}", base),
                ("flip_p 0, crop_scale 1-1 (no crop)", {"flip_p": 0.0, "crop_scale": (1.0, 1.0)})]
    runs = [r.fit("digits", s, data_transform=t) for s, t in variants]
    settings = [s for s, _ in variants]
    _panels(runs, r.data["digits"], settings, out / "augmentation.png")
    return _record(runs, settings)


def fig_precision(r: Runner, out: Path):
    runs = [r.fit("digits", f'precision="{p}"', precision=p) for p in ("bf16", "fp32")]
    settings = [f'precision="{p}", {run.seconds:.0f} s' for p, run in zip(("bf16", "fp32"), runs)]
    _panels(runs, r.data["digits"], settings, out / "precision.png", size=4.2)
    return _record(runs, ["bf16", "fp32"])


def fig_checkpoint(r: Runner, out: Path):
    # the first run stops halfway through stage 3, a checkpoint having just been written
    stop_at = r.base("digits")["total_epochs"][2] // 2
    every = max(1, stop_at // 3)
    full = r.fit("digits", "uninterrupted")
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "digits.ckpt"

        def crash(stage, epoch, loss, model):  # a stop standing in for a crash
            return stage == 3 and epoch == stop_at

        first = r.fit("digits", f"stopped at stage 3, epoch {stop_at}", X=None,
                      key=("digits", "stopped"), checkpoint=str(ckpt),
                      checkpoint_every=every, callbacks=crash)
        kept = ckpt.exists()
        again = r.fit("digits", "resumed from the checkpoint", key=("digits", "resumed"),
                      checkpoint=str(ckpt), checkpoint_every=every)
    diff = float(np.abs(again.Y - full.Y).max())
    again.extra = dict(resumed_from=list(again.est.resumed_from_ or ()),
                       max_abs_difference=diff, checkpoint_kept_after_stop=kept)
    print(f"  resumed from {again.est.resumed_from_}, largest difference to the "
          f"uninterrupted run: {diff:g}")
    settings = [f"stopped after stage 3, epoch {stop_at}", "the same call again: resumed",
                "uninterrupted run"]
    _panels([first, again, full], r.data["digits"], settings, out / "checkpoint.png")
    return _record([first, again, full], settings)


FIGURES = {
    "epochs": fig_epochs, "stages": fig_stages, "batch_size": fig_batch_size,
    "out_dim": fig_out_dim, "backbone": fig_backbone, "beton": fig_beton,
    "exaggeration": fig_exaggeration, "out_layer_std": fig_out_layer_std,
    "augmentation": fig_augmentation, "precision": fig_precision,
    "checkpoint": fig_checkpoint,
}
_NEEDS = {"stages": {"digits", "fmnist"}, "beton": {"fmnist"}}


# -- main -----------------------------------------------------------------------------------
def machine() -> str:
    """The machine line of benchmarks/ (CPU, cores, torch, the GPU), and native bf16."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from vs_reference import machine as describe

    from simcne.train import cpu_has_native_bf16

    cuda = torch.cuda.is_available()
    native = "yes" if cpu_has_native_bf16() else "no"
    return (describe(torch.device("cuda" if cuda else "cpu"))
            + ("" if cuda else f", native bf16: {native}"))


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Make the figures of docs/parameter_guide.md (and knn.json, the kNN "
                    "accuracy of every map in them).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="figures: " + ", ".join(FIGURES))
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "figures",
                    help="folder for the PNG files and knn.json (default: docs/figures)")
    ap.add_argument("--only", nargs="+", choices=list(FIGURES), metavar="FIGURE",
                    help="make only these figures (knn.json then keeps the others' entries)")
    ap.add_argument("--profile", choices=("auto", "cpu", "gpu"), default="auto",
                    help="data and settings: 'cpu' (digits and 5,000 Fashion-MNIST images, "
                         "short runs), 'gpu' (the full sets, the paper's settings); 'auto' "
                         "is 'gpu' when CUDA is available (default: auto)")
    ap.add_argument("--smoke", action="store_true",
                    help="a tiny run (200 images, 1-2 epochs a stage) to check the script")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads on the CPU (default: 2). The kNN values depend on it "
                         "(float rounding). Where other jobs share the cores, 1 thread can be "
                         "many times faster than 2")
    ap.add_argument("--verbose", action="store_true",
                    help="show each run's stage summaries and progress (on stderr)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    profiles = _profiles()
    name = ("smoke" if args.smoke else args.profile if args.profile != "auto"
            else "gpu" if torch.cuda.is_available() else "cpu")
    profile = profiles[name]
    wanted = args.only or list(FIGURES)
    need = {"digits"} | set().union(*(_NEEDS.get(f, set()) for f in wanted))
    if profile.epochs[0] == "fmnist" and "epochs" in wanted:
        need.add("fmnist")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    t_start, load0 = time.perf_counter(), load_average()
    data = {}
    if "digits" in need:
        data["digits"] = load_digits(profile.digits_n)
    if "fmnist" in need:
        data["fmnist"] = load_fmnist(profile.fmnist_n)
    print(f"profile {name}: " + ", ".join(f"{k} {len(v.X)} images" for k, v in data.items())
          + f", {torch.get_num_threads()} torch threads, {machine()}", flush=True)
    runner = Runner(profile, data, args.verbose)

    path = out / "knn.json"
    report = json.loads(path.read_text()) if args.only and path.exists() else {}
    report.setdefault("figures", {})
    for fig_name in wanted:
        print(f"{fig_name}:", flush=True)
        t0 = time.perf_counter()
        report["figures"][fig_name] = FIGURES[fig_name](runner, out)
        for p in report["figures"][fig_name]:
            knn = "diverged" if p["knn"] is None else f"kNN {p['knn']:.3f}"
            print(f"  -> {fig_name}.png {p['panel']}: {p['setting']}: {knn}")
        print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)

    total = time.perf_counter() - t_start
    load1 = load_average()
    import resource

    cpu = resource.getrusage(resource.RUSAGE_SELF)
    loads = [v for v in [load0, *LOADS, load1] if v is not None]
    info = dict(profile=name, machine=machine(), torch_threads=torch.get_num_threads(),
                torch=torch.__version__, seconds=round(total, 1),
                cpu_seconds=round(cpu.ru_utime + cpu.ru_stime, 1),
                load_average=dict(start=load0 and round(load0, 2), end=load1 and round(load1, 2),
                                  mean=loads and round(float(np.mean(loads)), 2),
                                  max=loads and round(max(loads), 2)),
                date=datetime.date.today().isoformat(),
                command="python docs/make_figures.py " + " ".join(
                    argv if argv is not None else sys.argv[1:]))
    if args.only and "seconds" in report:  # the full run's time stays; this one is noted
        report.setdefault("reruns", []).append(dict(info, figures=wanted))
    else:
        report.update(info)
        report.pop("reruns", None)
    path.write_text(json.dumps(report, indent=1) + "\n")
    la = info["load_average"]
    print(f"done in {total:.0f} s ({total / 60:.1f} min), {info['cpu_seconds']:.0f} s of CPU; "
          f"load average {la['start']} at the start, {la['end']} at the end, mean {la['mean']} "
          f"and max {la['max']} after the runs; figures and knn.json in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
