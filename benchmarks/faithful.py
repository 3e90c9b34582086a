"""simcne against the reference t-SimCNE (PyPI tsimcne 0.3.12): same data, network and recipe.

Both sides train the same network from the same initial weights (a small conv backbone and a
128 -> 1024 -> 128 MLP head, both defined here and passed as modules), on the same uint8
images, with the paper's three-stage recipe scaled down: the same epochs per stage, batch
size, learning rates (0.03 x batch / 256; stage 3 / 1000), warm-up (10, 0, 10 epochs), SGD
(momentum 0.9, weight decay 5e-4), gradient clipping by value at 4, the Cauchy-kernel
InfoNCE and the paper's augmentation; each side with its own code for all of it. Only the
training seeds differ within a side: three each.

The reference runs in its own interpreter (``tools/reference_venv.sh`` builds it; torch
2.13.0 CPU, Lightning) as a subprocess: ``benchmarks/faithful_ref.py`` reads the images, the
initial weights and the settings from a folder and writes back its maps, stage-1 features,
losses and epoch times. Two processes run at a time, one torch thread each: the reference's
fits one after another, and simcne's fits (about 5 times cheaper) in this process beside the
first of them.

Reported per side (mean over training seeds): 2-D kNN accuracy (``simcne.metrics
.knn_accuracy``, k=15, mean over split seeds 0, 1, 2) of the final map and of the map after
stage 2; kNN of the 128-D head output and of the backbone features after stage 1; the
loss of every epoch of every stage (the mean over the epoch's steps), and seconds per epoch.

Usage::

    PYTHONPATH=. python benchmarks/faithful.py --write        # the run of BENCHMARKS.md
    PYTHONPATH=. python benchmarks/faithful.py --epochs 12 2 12 --seeds 0   # a quick look

Only torch and numpy are imported at the top: ``faithful_ref.py`` imports the network from
here in the reference's interpreter, which has no simcne.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
REF_DIR = Path(os.environ.get("SIMCNE_REFERENCE", Path.home() / ".cache" / "simcne-reference"))
BEGIN, END = "<!-- faithful:begin -->", "<!-- faithful:end -->"
TITLE = "## Faithfulness: simcne against tsimcne 0.3.12"
SPLIT_SEEDS = (0, 1, 2)


# -- the network both sides train ----------------------------------------------------------------
class Backbone(nn.Module):
    """Three 3x3 conv + BatchNorm + ReLU layers (the 2nd and 3rd with stride 2), then the
    global average: images (B, C, H, W) -> features (B, widths[-1])."""

    def __init__(self, in_channels: int = 1, widths=(32, 64, 128)):
        super().__init__()
        layers, cin = [], in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(cin, w, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                       nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            cin = w
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = cin

    def forward(self, x):
        return self.features(x)


class Head(nn.Module):
    """in -> hidden -> ReLU -> out, its layers in ``.layers`` (where the reference's stage-2
    surgery looks for the last one; simcne finds the last ``nn.Linear``)."""

    def __init__(self, in_features: int, hidden: int = 1024, out_features: int = 128):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True),
                                    nn.Linear(hidden, out_features))

    def forward(self, x):
        return self.layers(torch.flatten(x, 1))


def build_network(seed: int, in_channels: int = 1, widths=(32, 64, 128), hidden: int = 1024,
                  out_features: int = 128) -> tuple[Backbone, Head]:
    """The backbone and the head, initialised from ``seed`` (torch's global generator is
    left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = Backbone(in_channels, widths)
        head = Head(backbone.out_features, hidden, out_features)
    return backbone, head


# -- data and recipe -----------------------------------------------------------------------------
def digits(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 (N, 1, 8, 8) images (0-16 scaled to 0-255) and labels;
    the first ``n`` when given."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = d.target.astype(np.int64)
    return (images, labels) if n is None else (images[:n], labels[:n])


@dataclass
class Recipe:
    """The settings both sides get."""

    epochs: list = field(default_factory=lambda: [60, 10, 30])
    batch_size: int = 128
    threads: int = 1

    @property
    def lrs(self) -> list:  # both sides' "auto_batch"
        base = 0.03 * self.batch_size / 256
        return [base, base, base / 1000]


def check_recipe(recipe: Recipe, n: int) -> None:
    """A ValueError naming the setting when the two sides could not run the same recipe."""
    e = recipe.epochs
    if len(e) != 3 or any(not isinstance(v, int) or v < 1 for v in e):
        raise ValueError(f"epochs must be three positive ints, got {e!r}")
    if e[0] < 10 or e[2] < 10:
        raise ValueError(f"epochs of stages 1 and 3 must be >= 10 (both sides warm up for 10 "
                         f"epochs there), got {e!r}")
    if not 2 <= recipe.batch_size <= n:
        raise ValueError(f"batch_size must be in [2, {n}] (the number of images), got "
                         f"{recipe.batch_size}")


# -- simcne's side --------------------------------------------------------------------------------
def features_of(model: nn.Module, images: np.ndarray, batch: int = 512) -> tuple[np.ndarray, ...]:
    """(z, h) of the images (uint8) through ``model`` in eval mode, no gradients, fp32; every
    submodule's mode is restored."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    zs, hs = [], []
    try:
        with torch.no_grad():
            for s in range(0, len(images), batch):
                x = torch.from_numpy(np.ascontiguousarray(images[s:s + batch])).float() / 255
                z, h = model(x)
                zs.append(z.float().numpy())
                hs.append(torch.flatten(h, 1).float().numpy())
    finally:
        for m, t in modes:
            m.training = t
    return np.concatenate(zs), np.concatenate(hs)


def run_simcne(images, labels, recipe: Recipe, seed: int, init_seed: int) -> dict:
    """simcne's fit with the recipe; the maps, stage-1 features, losses and epoch times."""
    from simcne import TSimCNE

    backbone, head = build_network(init_seed, images.shape[1])
    out: dict = {"epoch_end": []}
    stage1 = recipe.epochs[0]

    def callback(stage, epoch, loss, model):
        out["epoch_end"].append((stage, epoch, time.perf_counter()))
        if stage == 1 and epoch == stage1:
            out["z1"], out["h1"] = features_of(model, images)

    torch.set_num_threads(recipe.threads)
    est = TSimCNE(backbone=backbone, projection_head=head, total_epochs=list(recipe.epochs),
                  batch_size=recipe.batch_size, random_state=seed, precision="fp32",
                  callbacks=callback)
    t0, c0 = time.perf_counter(), time.process_time()
    est.fit(torch.from_numpy(images), labels)
    out["seconds"] = time.perf_counter() - t0
    out["cpu_seconds"] = time.process_time() - c0
    out["t0"] = t0
    out["Y2"], out["Y"] = est.stage_embeddings_[1], est.embedding_
    h = est.loss_history_
    out["losses"] = [[float(v) for v in h["loss"][h["stage"] == s]] for s in (1, 2, 3)]
    out["epoch_seconds"] = epoch_seconds(out.pop("epoch_end"), out.pop("t0"))
    return out


def epoch_seconds(ends: list, t0: float) -> list:
    """Seconds of every epoch of every stage from (stage, epoch, time at its end); a stage's
    first epoch is left out (its time includes the stage's set-up)."""
    per = [[], [], []]
    for (s0, _, t_prev), (s, _, t) in zip(ends, ends[1:]):
        if s == s0:
            per[s - 1].append(t - t_prev)
    return per


# -- the reference's side -------------------------------------------------------------------------
def reference_python() -> Path:
    return REF_DIR / "venv" / "bin" / "python"


def reference_available() -> bool:
    """Whether the reference venv and tsimcne 0.3.12 are where ``reference_venv.sh`` puts them."""
    return reference_python().exists() and (REF_DIR / "tsimcne_0312" / "tsimcne").is_dir()


def ref_config(images, recipe: Recipe, seed: int, init_seed: int) -> dict:
    return dict(recipe=asdict(recipe), seed=seed, init_seed=init_seed,
                in_channels=int(images.shape[1]), n=int(len(images)))


def start_reference(images, labels, recipe: Recipe, seed: int, init_seed: int,
                    workdir: Path) -> subprocess.Popen:
    """Write the inputs into ``workdir`` and start ``faithful_ref.py`` on them (its pid goes
    into ``workdir/pid``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("result.npz", "result.json"):
        (workdir / name).unlink(missing_ok=True)
    np.save(workdir / "images.npy", images)
    np.save(workdir / "labels.npy", labels)
    config = ref_config(images, recipe, seed, init_seed)
    (workdir / "config.json").write_text(json.dumps(config))
    env = dict(os.environ, PYTHONPATH=str(REF_DIR / "tsimcne_0312"),
               OMP_NUM_THREADS=str(recipe.threads), PYTHONWARNINGS="ignore")
    log = open(workdir / "log.txt", "w")
    proc = subprocess.Popen([str(reference_python()), str(Path(__file__).with_name(
        "faithful_ref.py")), str(workdir)], env=env, stdout=log, stderr=subprocess.STDOUT)
    (workdir / "pid").write_text(str(proc.pid))
    return proc


class RefRun:
    """A reference fit in ``workdir``: one started here (``proc``), or one found there from
    an earlier invocation, finished or still running (its pid file)."""

    def __init__(self, workdir: Path, proc: subprocess.Popen | None = None):
        self.workdir, self.proc = workdir, proc
        pid = workdir / "pid"
        self.pid = proc.pid if proc is not None else (
            int(pid.read_text()) if pid.exists() else None)

    @classmethod
    def find_or_start(cls, images, labels, recipe, seed, init_seed, workdir: Path) -> "RefRun":
        """The fit of these settings in ``workdir`` when one is there (done or running),
        else a new one."""
        config = workdir / "config.json"
        same = config.exists() and json.loads(config.read_text()) == json.loads(
            json.dumps(ref_config(images, recipe, seed, init_seed)))
        if same:
            found = cls(workdir)
            if (workdir / "result.npz").exists() or not found.done():
                return found
        return cls(workdir, start_reference(images, labels, recipe, seed, init_seed, workdir))

    def done(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is not None
        if self.pid is None:
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        cmd = Path(f"/proc/{self.pid}/cmdline")
        return not (cmd.exists() and b"faithful_ref.py" in cmd.read_bytes())

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()

    def result(self) -> dict:
        """Wait for the fit; its results (a RuntimeError with its log's tail when it failed)."""
        rc = self.proc.wait() if self.proc is not None else None
        while not self.done():
            time.sleep(2)
        result = self.workdir / "result.npz"
        if rc or not result.exists():
            tail = (self.workdir / "log.txt").read_text()[-3000:]
            raise RuntimeError(f"the reference run in {self.workdir} failed (exit code {rc}):"
                               f"\n{tail}")
        npz = np.load(result)
        out = {k: npz[k] for k in ("Y", "Y2", "z1", "h1")}
        out.update(json.loads((self.workdir / "result.json").read_text()))
        return out


def finish_reference(proc: subprocess.Popen, workdir: Path) -> dict:
    """Wait for the reference's subprocess started by :func:`start_reference`; its results."""
    return RefRun(workdir, proc).result()


def save_simcne(run: dict, path: Path, config: dict) -> None:
    np.savez(path.with_suffix(".npz"), **{k: run[k] for k in ("Y", "Y2", "z1", "h1")})
    info = {k: run[k] for k in ("losses", "epoch_seconds", "seconds", "cpu_seconds")}
    path.with_suffix(".json").write_text(json.dumps(dict(info, config=config)))


def load_simcne(path: Path, config: dict) -> dict | None:
    """A simcne fit saved by :func:`save_simcne` with the same settings, or None."""
    js, npz = path.with_suffix(".json"), path.with_suffix(".npz")
    if not (js.exists() and npz.exists()):
        return None
    info = json.loads(js.read_text())
    if info.pop("config") != json.loads(json.dumps(config)):
        return None
    data = np.load(npz)
    return dict(info, **{k: data[k] for k in data.files})


# -- measures and the report ------------------------------------------------------------------------
def knn(Y, labels) -> float:
    from simcne.metrics import knn_accuracy

    return float(np.mean([knn_accuracy(Y, labels, k=15, random_state=s) for s in SPLIT_SEEDS]))


def measures(run: dict, labels) -> dict:
    """kNN of the final map, of the map after stage 2 and of the stage-1 features."""
    return {"final": knn(run["Y"], labels), "stage2": knn(run["Y2"], labels),
            "z1": knn(run["z1"], labels), "h1": knn(run["h1"], labels)}


def mean_sd(values) -> tuple[float, float]:
    v = np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


MEASURES = [("final", "2-D map, final"), ("stage2", "2-D map after stage 2"),
            ("z1", "128-D head output after stage 1"), ("h1", "backbone features after stage 1")]


def table(results: dict) -> list[str]:
    sides = list(results)
    lines = ["| kNN accuracy (k=15) of | " + " | ".join(sides) + " |",
             "|---|" + "---|" * len(sides)]
    for key, name in MEASURES:
        cells = []
        for side in sides:
            vals = [r["knn"][key] for r in results[side]]
            m, sd = mean_sd(vals)
            cells.append(f"{m:.3f} ± {sd:.3f} ({', '.join(f'{v:.3f}' for v in vals)})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def loss_table(results: dict, epochs) -> list[str]:
    """Mean loss (over seeds) at a few epochs of every stage, both sides."""
    sides = list(results)
    lines = ["| stage | epoch | " + " | ".join(f"{s} (mean ± sd)" for s in sides) + " |",
             "|---:|---:|" + "---|" * len(sides)]
    for st, n in enumerate(epochs):
        picks = sorted({1, 2, max(1, n // 10), max(1, n // 2), n})
        for e in picks:
            cells = []
            for side in sides:
                m, sd = mean_sd([r["losses"][st][e - 1] for r in results[side]])
                cells.append(f"{m:.4f} ± {sd:.4f}")
            lines.append(f"| {st + 1} | {e} | " + " | ".join(cells) + " |")
    return lines


def curve_gaps(results: dict, epochs) -> list[dict]:
    """Per stage: the largest gap between the two sides' mean loss curves, and the largest
    spread (sd over seeds) of either side at any epoch."""
    a, b = list(results)
    out = []
    for st in range(len(epochs)):
        ca = np.array([r["losses"][st] for r in results[a]])
        cb = np.array([r["losses"][st] for r in results[b]])
        gap = ca.mean(0) - cb.mean(0)
        sd = max(ca.std(0, ddof=1).max() if len(ca) > 1 else 0.0,
                 cb.std(0, ddof=1).max() if len(cb) > 1 else 0.0)
        i = int(np.abs(gap).argmax())
        out.append(dict(stage=st + 1, max_gap=float(gap[i]), at_epoch=i + 1,
                        mean_gap=float(gap.mean()), max_sd=float(sd)))
    return out


def machine() -> str:
    cpu = platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                   if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return (f"{os.cpu_count()}-core CPU ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def report(results: dict, recipe: Recipe, n: int, command: str, extra: list[str] = ()) -> list[str]:
    """The BENCHMARKS.md block: machine, command, settings, kNN table, loss curves, times."""
    sides = list(results)
    seeds = [r["seed"] for r in results[sides[0]]]
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; {recipe.threads} torch "
             f"thread per process, two processes at a time (the reference's fits one after "
             f"another; simcne's beside the first of them).", "",
             f"`{command}`", "",
             f"Data: scikit-learn's digits, {n} images of 8x8, one channel. Network (both): "
             f"`faithful.py`'s `Backbone` (3 conv layers, widths 32/64/128) and `Head` "
             f"(128 -> 1024 -> 128), the same initial weights for every run. Recipe (both): "
             f"total_epochs={list(recipe.epochs)}, batch {recipe.batch_size}, lr "
             f"{recipe.lrs[0]:g} / {recipe.lrs[1]:g} / {recipe.lrs[2]:g}, warm-up 10/0/10, "
             f"fp32. Training seeds {', '.join(map(str, seeds))}; kNN: mean over split seeds "
             f"0, 1, 2; ± is the sd over training seeds.", ""]
    lines += table(results) + [""]
    rest = n % recipe.batch_size
    lines += [("Loss (mean over the epoch's steps; " + (
        f"the reference's epochs end with a partial batch of {rest} images, counted as one "
        "step, which simcne drops" if rest else "every batch full on both sides") + "):"), ""]
    lines += loss_table(results, recipe.epochs) + [""]
    gaps = curve_gaps(results, recipe.epochs)
    lines.append("Gap between the mean loss curves (" + f"{sides[0]} - {sides[1]}" + "), per "
                 "stage: " + "; ".join(
                     f"stage {g['stage']}: mean {g['mean_gap']:+.4f}, largest {g['max_gap']:+.4f} "
                     f"(epoch {g['at_epoch']}), largest seed sd {g['max_sd']:.4f}" for g in gaps)
                 + ".")
    lines.append("")
    secs = []
    for side in sides:
        per = [np.median([t for r in results[side] for t in r["epoch_seconds"][st]] or [np.nan])
               for st in range(3)]
        total = np.mean([r["seconds"] for r in results[side]])
        cpu = np.mean([r["cpu_seconds"] for r in results[side]])
        secs.append(f"{side}: {per[0]:.2f} / {per[1]:.2f} / {per[2]:.2f} s per epoch (median, "
                    f"stages 1/2/3), {total / 60:.1f} min per fit ({cpu / 60:.1f} CPU min)")
    lines.append("Wall time (an aside: the two ran side by side on a shared machine): "
                 + "; ".join(secs) + ".")
    return lines + list(extra)


def write_block(block: list[str], path: Path = ROOT / "BENCHMARKS.md") -> None:
    """Replace the block between the markers in ``path``, or append it as a new section."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from blocks import write_block as write

    write(block, BEGIN, END, TITLE, path)


def to_json(results: dict) -> dict:
    keep = ("seed", "knn", "losses", "epoch_seconds", "seconds", "cpu_seconds")
    return {side: [{k: r[k] for k in keep} for r in runs] for side, runs in results.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, nargs=3, default=[60, 10, 30])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--n", type=int, default=1792,
                   help="the first n digits (default 1792 = 14 x 128: every batch full)")
    p.add_argument("--init-seed", type=int, default=0, help="seed of the initial weights")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--write", action="store_true", help="write the block into BENCHMARKS.md")
    p.add_argument("--from-json", type=Path, default=None,
                   help="no training: the report of an earlier run's --json file")
    args = p.parse_args(argv)
    recipe = Recipe(epochs=list(args.epochs), batch_size=args.batch_size, threads=args.threads)
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text())
        block = report(saved["results"], Recipe(**saved["recipe"]), saved["n"], saved["command"])
        print("\n".join(block))
        if args.write:
            write_block(block)
        return 0
    if not reference_available():
        print(f"The reference venv is not in {REF_DIR}: run tools/reference_venv.sh first "
              "(or set SIMCNE_REFERENCE).", file=sys.stderr)
        return 2
    command = "PYTHONPATH=. python benchmarks/faithful.py " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    images, labels = digits(args.n)
    check_recipe(recipe, len(images))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="simcne-faithful-"))
    results = {"simcne": [], "tsimcne 0.3.12": []}
    workdir.mkdir(parents=True, exist_ok=True)

    def done(side, seed, run):
        run["seed"] = seed
        run["knn"] = measures(run, labels)
        results[side].append(run)
        print(f"seed {seed} {side}: kNN " + ", ".join(
            f"{k} {v:.3f}" for k, v in run["knn"].items()) + f"; {run['seconds']:.0f} s "
            f"({run['cpu_seconds']:.0f} s CPU); "
            f"last losses {[round(c[-1], 4) for c in run['losses']]}", flush=True)

    # two processes at a time: simcne's fits (about 5x cheaper) in this process beside one
    # reference fit, then two reference fits at once; finished fits in workdir are reused
    refs, pending = {}, list(args.seeds)

    def fill(limit):
        while pending and sum(not r.done() for r in refs.values()) < limit:
            seed = pending.pop(0)
            refs[seed] = RefRun.find_or_start(images, labels, recipe, seed, args.init_seed,
                                              workdir / f"seed{seed}")

    try:
        fill(1)
        for seed in args.seeds:
            path = workdir / f"simcne_seed{seed}"
            config = ref_config(images, recipe, seed, args.init_seed)
            run = load_simcne(path, config)
            if run is None:
                run = run_simcne(images, labels, recipe, seed, args.init_seed)
                save_simcne(run, path, config)
            done("simcne", seed, run)
            fill(1)
        while pending or not all(r.done() for r in refs.values()):
            fill(2)
            time.sleep(2)
        for seed in args.seeds:
            done("tsimcne 0.3.12", seed, refs[seed].result())
    finally:
        for r in refs.values():
            r.kill()
    block = report(results, recipe, len(images), command)
    print("\n".join(block))
    if args.json is not None:
        args.json.write_text(json.dumps(dict(results=to_json(results), recipe=asdict(recipe),
                                             n=len(images), command=command), indent=1))
    if args.write:
        write_block(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
