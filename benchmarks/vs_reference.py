"""simcne's training path against a reference-style pipeline, side by side, in one run.

Both sides train the same network (same backbone, same initial weights, fp32 on CPU), with
the same loss (``simcne.losses.info_nce``, Cauchy kernel), SGD (momentum 0.9, weight decay
5e-4, lr 0.03 * batch / 256), gradient clipping by value at 4, batch size, image size and
torch thread count. They differ in how views are made:

- reference: uint8 (N, H, W, C) images -> PIL images augmented one by one
  (``benchmarks/pil_reference.py``) in a torch DataLoader with ``--workers`` worker
  processes -> float tensors collated into a batch -> the step;
- simcne: ``simcne.train.train_stage`` on ``simcne.data.load(images)`` (the uint8 store):
  one gather per batch, ``simcne.augment.Augment`` on the whole batch, ``train_step``.

Timed segments of ``--steps`` steps alternate between the sides (the order flips every
repeat), so a machine shared with other jobs slows both alike; the median over
``--repeats`` is reported. Each segment follows one untimed step of its own side, so both
are timed in their steady state: on CPU, simcne keeps freed memory for reuse within a stage
(``simcne._heap``) and its first step of a stage fills that memory, which a real stage of
hundreds of steps pays once; the reference side's first step after the other side ran
refills what glibc handed back. Before each reference segment the batches its workers prefetched
while the other side ran are drained untimed, so it gets no head start. Also timed in the
same loop: making the two views of a batch (gather, to float, Augment twice) alone, as a
share of a simcne step.

On CUDA (``--device cuda``), the simcne side runs whole epochs of ``--n-images`` images
(default 60,000 32x32 images at batch 512, store on the GPU, bf16 autocast, channels_last)
and reports seconds per epoch and TFLOP/s at 3.33 GFLOP per 32x32 view (forward + backward,
ResNet18 with the SimCLR stem); the reference side is timed over ``--steps`` steps.

The figures go to the terminal and into BENCHMARKS.md (a block per device, replaced on each
run), with the machine, the command and the date.

``--tsimcne``: against the reference code itself, tsimcne 0.3.12 (its venv from
``../shared/tools/reference_venv.sh``, ``--reference-python``), whole ``fit`` calls: ResNet18
on the first ``--tsimcne-images`` (512) Fashion-MNIST training images at batch 128, one stage
of 2 epochs, each side a fresh process on one thread (``torch.set_num_threads(1)``,
``OMP_NUM_THREADS=1``, the reference's DataLoader without worker processes, so its PIL
augmentation runs on that thread too). Each side's ``fit`` is timed inside its process
(imports and data loading outside), the sides alternate (the order flips every repeat), and
the ratio is the reference's median over simcne's median. The reference gets RGB PIL images
(its ResNet's first convolution takes three channels), simcne the one-channel array; both
fp32 (``precision="auto"`` is fp32 on a CPU without native bf16). simcne's ``fit`` also
embeds the images after the stage (its ``embedding_``); the reference's does not.

Usage::

    PYTHONPATH=. python benchmarks/vs_reference.py                 # CPU, both backbones
    PYTHONPATH=. python benchmarks/vs_reference.py --device cuda --backbones resnet18
    PYTHONPATH=. python benchmarks/vs_reference.py --tsimcne           # the reference code, CPU
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pil_reference  # noqa: E402
from simcne._heap import reuse_freed_memory  # noqa: E402
from simcne.augment import Augment  # noqa: E402
from simcne.devices import resolve_device  # noqa: E402
from simcne.data import load  # noqa: E402
from simcne.losses import info_nce  # noqa: E402
from simcne.models import make_model  # noqa: E402
from simcne.estimator import default_training  # noqa: E402
from simcne.train import (Stage, autocast_for, train_stage,  # noqa: E402
                          train_step, two_views)

GFLOP_PER_VIEW = 3.33  # ResNet18, SimCLR stem, 32x32, forward + backward
ROOT = Path(__file__).resolve().parents[1]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _model(name, device, seed=0):
    torch.manual_seed(seed)
    m = make_model(name, image_size=(32, 32)).to(device)
    if device.type == "cuda":
        m = m.to(memory_format=torch.channels_last)
    return m.train()


# -- the reference-style side ------------------------------------------------------------------
class Reference:
    """PIL views made in DataLoader workers; an fp32 step as a reference training script has."""

    def __init__(self, name, images, batch, workers, device, lr):
        self.device = device
        self.model = _model(name, device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9,
                                   weight_decay=5e-4)
        self.prefetch = 2
        kw = dict(persistent_workers=True, prefetch_factor=self.prefetch) if workers else {}
        self.loader = torch.utils.data.DataLoader(
            pil_reference.TwoViews(images), batch_size=batch, shuffle=True, drop_last=True,
            num_workers=workers, pin_memory=device.type == "cuda", **kw)
        self.workers = workers
        self.it = iter(self.loader)

    def _next(self):
        try:
            return next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            return next(self.it)

    def drain(self):
        """Throw away what the workers made while the other side was being timed."""
        for _ in range(self.workers * self.prefetch):
            self._next()

    def step(self):
        x1, x2 = self._next()
        views = torch.cat([x1, x2]).to(self.device, non_blocking=True)
        z, _ = self.model(views)
        loss = info_nce(z)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_value_(self.model.parameters(), 4.0)
        self.opt.step()
        return loss.detach()

    def run(self, steps):
        self.drain()
        self.step()  # untimed: the first step after the other side ran refills freed memory
        self.drain()
        _sync(self.device)
        t = time.perf_counter()
        total = sum(self.step() for _ in range(steps))
        float(total)
        return time.perf_counter() - t


# -- simcne's side -------------------------------------------------------------------------------
class SimCNE:
    """simcne.train.train_stage, one epoch of ``steps`` batches of the uint8 store per call."""

    def __init__(self, name, images, batch, steps, device, lr, compile=False, on_host=False,
                 precision="auto"):
        self.device, self.precision = device, precision
        self.model = _model(name, device)
        store = load(images[: batch * steps])
        if device.type == "cuda" and not on_host:
            store = store.to(device)
        self.store = store
        self.warm_store = load(images[:batch]).to(store.device)
        self.batch, self.lr, self.compile = batch, lr, compile
        self.gen = torch.Generator(device=device).manual_seed(1)
        self.shuffle = torch.Generator().manual_seed(2)
        self.augment = Augment(size=32).bind(self.gen)  # both views in one call
        self.forward = torch.compile(self.model) if compile else self.model

    def _stage(self, store):
        train_stage(self.forward, store, Stage(1, 1, self.lr, 0, info_nce),
                    default_training(batch_size=self.batch, augment=self.augment,
                                     device=self.device, generator=self.shuffle,
                                     precision=self.precision))

    def run(self, steps=None):
        """Time one epoch of the store, after one untimed step.

        The untimed step is the first step of a stage, in which freed memory is first kept
        on CPU (``simcne._heap``); a real stage has hundreds of steps after it. Both run in
        one window, as a stage's steps do.
        """
        with reuse_freed_memory(self.device.type == "cpu"):
            self._stage(self.warm_store)
            _sync(self.device)
            t = time.perf_counter()
            self._stage(self.store)
            _sync(self.device)
            return time.perf_counter() - t

    def check_no_host_sync(self, steps=3):
        """CUDA: run train_step under torch's sync debug mode "error": any host
        synchronisation inside the step raises."""
        x = self.store.batch(torch.arange(self.batch, device=self.device))
        opt = torch.optim.SGD(self.model.parameters(), lr=self.lr, momentum=0.9,
                              weight_decay=5e-4)
        train_step(self.forward, opt, x, self.augment, info_nce, 4.0, autocast_for(self.device, self.precision))
        torch.cuda.synchronize(self.device)
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(steps):
                train_step(self.forward, opt, x, self.augment, info_nce, 4.0,
                           autocast_for(self.device, self.precision))
        finally:
            torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize(self.device)

    def views_only(self, steps):
        """The same views of a batch as a step makes (gather, both views in one Augment
        call), alone."""
        n = len(self.store)
        order = torch.randperm(n, generator=self.shuffle)
        _sync(self.device)
        t = time.perf_counter()
        for i in range(steps):
            x = self.store.batch(order[i * self.batch:(i + 1) * self.batch])
            v = two_views(self.augment, x.to(self.device))
        float(v[0, 0, 0, 0])
        _sync(self.device)
        return time.perf_counter() - t


# -- reporting -------------------------------------------------------------------------------------
def machine(device) -> str:
    from blocks import cpu_model

    cpu = cpu_model(platform.processor() or platform.machine())
    s = (f"{os.cpu_count()}-core CPU ({cpu}), {platform.system()} {platform.release()}, "
         f"Python {platform.python_version()}, torch {torch.__version__}")
    if device.type == "cuda":
        s += f", GPU {torch.cuda.get_device_name(device)}"
    return s


def write_block(text: str, key: str, path: Path = ROOT / "BENCHMARKS.md") -> None:
    """Replace the block between this key's markers in ``path`` (or append it)."""
    begin, end = f"<!-- {key} begin -->", f"<!-- {key} end -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)


# -- against tsimcne 0.3.12 itself (--tsimcne) ------------------------------------------------
#: the reference's side, run by the reference venv's python: argv = images.npy epochs batch
#: workers
TSIMCNE_SIDE = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from PIL import Image
import tsimcne
X = np.load(sys.argv[1]); epochs, batch = int(sys.argv[2]), int(sys.argv[3])

class Images(torch.utils.data.Dataset):
    def __len__(self):
        return len(X)
    def __getitem__(self, i):  # its ResNet takes three channels
        return Image.fromarray(X[i]).convert("RGB"), 0

# its default backbone, "resnet18_simclr", is the paper's ResNet18 (3x3 stride-1 stem, no
# max-pool) as simcne's "resnet18"; its "resnet18" is torchvision's, a 16th of the work
est = tsimcne.TSimCNE(backbone="resnet18_simclr", total_epochs=[epochs], batch_size=batch,
                      num_workers=int(sys.argv[4]))
# (its constructor drops trainer_kwargs given to it: set them afterwards)
est.trainer_kwargs = dict(est.trainer_kwargs or {}, accelerator="cpu", logger=False,
                          enable_checkpointing=False, enable_progress_bar=False,
                          enable_model_summary=False)
t, c = time.perf_counter(), time.process_time()
est.fit(Images())
print(json.dumps({"fit_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                  "version": tsimcne.__version__}))
"""

#: simcne's side: argv = images.npy epochs batch
SIMCNE_SIDE = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from simcne import TSimCNE
X = np.load(sys.argv[1]); epochs, batch = int(sys.argv[2]), int(sys.argv[3])
est = TSimCNE(backbone="resnet18", total_epochs=[epochs], batch_size=batch, device="cpu",
              random_state=0)
t, c = time.perf_counter(), time.process_time()
est.fit(X)
print(json.dumps({"fit_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                  "embedding": list(est.embedding_.shape)}))
"""


def _side(cmd, env) -> dict:
    import json
    import subprocess

    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_s"] = wall
    return out


def tsimcne_mode(a) -> None:
    import json
    import tempfile

    from simcne.data import load as load_data

    ref_py = Path(a.reference_python).expanduser()
    ref_path = Path(a.reference_path).expanduser()
    if not ref_py.exists() or not (ref_path / "tsimcne").is_dir():
        raise SystemExit(f"--tsimcne: the reference venv is not at {ref_py} with tsimcne in "
                         f"{ref_path}: expected what ../shared/tools/reference_venv.sh builds")
    store = load_data("fashion-mnist", download=False)
    X = store.batch(np.arange(a.tsimcne_images))[:, 0].numpy()  # (n, 28, 28) uint8
    folder = Path(tempfile.mkdtemp(prefix="simcne-vs-tsimcne-"))
    npy = folder / "fmnist.npy"
    np.save(npy, X)
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    base.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", SIMCNE_CPU_BF16=os.environ.get(
        "SIMCNE_CPU_BF16", ""))
    args = [str(npy), str(a.tsimcne_epochs), str(a.tsimcne_batch)]
    sides = {
        "reference": ([str(ref_py), "-c", TSIMCNE_SIDE, *args, str(a.tsimcne_workers)],
                      dict(base, PYTHONPATH=str(ref_path))),
        "simcne": ([sys.executable, "-c", SIMCNE_SIDE, *args], dict(base, PYTHONPATH=str(ROOT))),
    }
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"{machine(torch.device('cpu'))}\n--tsimcne: {a.tsimcne_images} Fashion-MNIST images, "
          f"ResNet18, batch {a.tsimcne_batch}, {a.tsimcne_epochs} epochs, 1 thread each, "
          f"{a.repeats} alternating repeats; load average {load_before[0]:.1f}", flush=True)
    times = {"reference": [], "simcne": []}
    cpu = {"reference": [], "simcne": []}
    version = "?"
    for r in range(a.repeats):
        order = ["reference", "simcne"] if r % 2 == 0 else ["simcne", "reference"]
        for side in order:
            out = _side(*sides[side])
            version = out.get("version", version)
            times[side].append(out["fit_s"])
            cpu[side].append(out["cpu_s"])
            print(f"  repeat {r + 1} {side:9s}: fit {out['fit_s']:.1f} s, CPU {out['cpu_s']:.1f} "
                  f"s (process {out['process_s']:.1f} s)", flush=True)
    ref, ours = statistics.median(times["reference"]), statistics.median(times["simcne"])
    ratio = ref / ours
    ref_cpu, ours_cpu = statistics.median(cpu["reference"]), statistics.median(cpu["simcne"])
    cpu_ratio = ref_cpu / ours_cpu
    load_after = os.getloadavg()
    print(f"tsimcne {version}: median fit {ref:.1f} s (CPU {ref_cpu:.1f} s); simcne: {ours:.1f} "
          f"s (CPU {ours_cpu:.1f} s); ratio of medians {ratio:.2f}x (CPU time {cpu_ratio:.2f}x)",
          flush=True)
    (folder / "times.json").write_text(json.dumps(dict(wall=times, cpu=cpu)))
    if a.no_write:
        return
    cmd = "PYTHONPATH=. python benchmarks/vs_reference.py " + " ".join(
        shlex.quote(x) for x in sys.argv[1:])
    lines = [
        f"Measured {started:%Y-%m-%d %H:%M} UTC on {machine(torch.device('cpu'))}; load "
        f"average {load_before[0]:.1f} before, {load_after[0]:.1f} after (a machine shared "
        "with other jobs: the sides alternate, so the load falls on both).",
        "",
        "```sh", cmd, "```", "",
        f"tsimcne {version} (`fit`, `backbone=\"resnet18_simclr\"`, its default and the "
        f"paper's ResNet18, one stage of {a.tsimcne_epochs} epochs, batch "
        f"{a.tsimcne_batch}, {a.tsimcne_workers or 'no'} DataLoader workers) against simcne (`TSimCNE(backbone="
        f"\"resnet18\", total_epochs=[{a.tsimcne_epochs}], batch_size={a.tsimcne_batch}, "
        f"device=\"cpu\").fit`) on the first {a.tsimcne_images} Fashion-MNIST training "
        "images, each a fresh process on one thread, `fit` timed inside it.",
        "",
        "| side | fit, wall, each repeat (s) | median (s) | fit, CPU time, each repeat (s) "
        "| median (s) |", "|---|---|---:|---|---:|",
        f"| tsimcne {version} | {', '.join(f'{t:.1f}' for t in times['reference'])} | {ref:.1f} "
        f"| {', '.join(f'{t:.1f}' for t in cpu['reference'])} | {ref_cpu:.1f} |",
        f"| simcne | {', '.join(f'{t:.1f}' for t in times['simcne'])} | {ours:.1f} "
        f"| {', '.join(f'{t:.1f}' for t in cpu['simcne'])} | {ours_cpu:.1f} |",
        "", f"Ratio of medians: **{ratio:.2f}x** in wall time, **{cpu_ratio:.2f}x** in CPU "
        "time (the process's, `time.process_time()`: on one thread, what the fit computed, "
        "less exposed than the wall time to the other jobs' load).",
    ]
    write_block("\n".join(lines), "vs_reference:tsimcne-cpu")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--backbones", nargs="+", default=["resnet_small", "resnet18"])
    p.add_argument("--batch", type=int, nargs="+", default=None,
                   help="batch size, one per backbone or one for all (CPU: 128, CUDA: 512)")
    p.add_argument("--steps", type=int, nargs="+", default=None,
                   help="steps per timed segment, one per backbone or one for all")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the main process")
    p.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    p.add_argument("--n-images", type=int, default=60000, help="CUDA: images per epoch")
    p.add_argument("--compile", action="store_true", help="torch.compile simcne's network")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="simcne's precision (TSimCNE(precision=...)); the reference is fp32")
    p.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    p.add_argument("--tsimcne", action="store_true",
                   help="against tsimcne 0.3.12 itself: whole fits in fresh processes, one "
                        "thread each (see the module's docstring)")
    p.add_argument("--reference-python", default="~/.cache/simcne-reference/venv/bin/python")
    p.add_argument("--reference-path", default="~/.cache/simcne-reference/tsimcne_0312",
                   help="the folder holding the tsimcne package (its PYTHONPATH)")
    p.add_argument("--tsimcne-images", type=int, default=512)
    p.add_argument("--tsimcne-batch", type=int, default=128)
    p.add_argument("--tsimcne-epochs", type=int, default=2)
    p.add_argument("--tsimcne-workers", type=int, default=0,
                   help="the reference's DataLoader workers (default 0: its augmentation on "
                        "its one thread; its own default is 8 processes)")
    a = p.parse_args(argv)
    if a.tsimcne:
        return tsimcne_mode(a)
    device = resolve_device(a.device)  # "cuda" -> "cuda:0", as the store reports it
    cuda = device.type == "cuda"
    torch.set_num_threads(a.threads)
    nb = len(a.backbones)
    batches = a.batch or [512 if cuda else 128]
    steps = a.steps or [10 if cuda else 4]
    batches = batches * nb if len(batches) == 1 else batches
    steps = steps * nb if len(steps) == 1 else steps
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"{machine(device)}\n{a.threads} torch threads, reference: {a.workers} DataLoader "
          f"workers (1 thread each); load average {load_before[0]:.1f}", flush=True)
    rows, notes = [], []
    for name, batch, k in zip(a.backbones, batches, steps):
        lr = 0.03 * batch / 256
        n = max(a.n_images if cuda else 0, batch * k * 2)
        images = np.random.default_rng(0).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        ref = Reference(name, images, batch, a.workers, device, lr)
        ours = SimCNE(name, images, batch, k, device, lr, compile=a.compile,
                      precision=a.precision)
        # warm-up: worker start-up, oneDNN/cuDNN set-up, compilation
        ref.run(1)
        ours.run()
        ours.views_only(1)
        t_ref, t_ours, t_views = [], [], []
        for r in range(a.repeats):
            sides = [("ref", ref), ("ours", ours)]
            for side, obj in sides if r % 2 == 0 else sides[::-1]:
                (t_ref if side == "ref" else t_ours).append(obj.run(k))
            t_views.append(ours.views_only(k))
        ips_ref = statistics.median(batch * k / t for t in t_ref)
        ips_ours = statistics.median(batch * k / t for t in t_ours)
        share = statistics.median(v / o for v, o in zip(t_views, t_ours))
        ratios = [r / o for r, o in zip(t_ref, t_ours)]
        ratio = statistics.median(ratios)
        rows.append((name, batch, ips_ref, ips_ours, ratio, share, ratios))
        print(f"{name:>14s} batch {batch}: reference {ips_ref:8.1f} images/s, simcne "
              f"{ips_ours:8.1f} images/s, ratio {ratio:.2f}x "
              f"({', '.join(f'{r:.2f}' for r in ratios)}); making the views = "
              f"{100 * share:.1f} % of a simcne step", flush=True)
        if cuda:
            ours.check_no_host_sync()
            notes.append(f"{name}: no host synchronisation inside train_step (ran under "
                         "torch.cuda.set_sync_debug_mode('error'))")
            for where in ("GPU", "host"):
                full = SimCNE(name, images, batch, n // batch, device, lr, compile=a.compile,
                              on_host=where == "host", precision=a.precision)
                full.run()  # warm-up epoch
                secs = statistics.median(full.run() for _ in range(max(1, a.repeats - 1)))
                imgs = (n // batch) * batch
                tflops = 2 * imgs * GFLOP_PER_VIEW / secs / 1000
                line = (f"{name}, uint8 store on the {where}"
                        + (" (pinned staging, copies on a side stream)" if where == "host" else "")
                        + f": {secs:.2f} s per epoch of {n:,} 32x32 images at batch {batch} "
                        f"({imgs / secs:,.0f} images/s); {tflops:.1f} TFLOP/s at "
                        f"{GFLOP_PER_VIEW} GFLOP per view"
                        + (" (ResNet18's figure)" if name != "resnet18" else ""))
                notes.append(line)
                print(line, flush=True)
                del full
        del ref, ours
    load_after = os.getloadavg()
    if a.no_write:
        return
    cmd = "PYTHONPATH=. python benchmarks/vs_reference.py " + " ".join(
        shlex.quote(s) for s in (sys.argv[1:] if argv is None else argv))
    lines = [
        f"Measured {started:%Y-%m-%d %H:%M} UTC on {machine(device)}.",
        f"Load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
        f"(other jobs share this machine: read the ratios, not the absolute figures).",
        f"Threads: {a.threads} torch threads on both sides; the reference's DataLoader has "
        f"{a.workers} worker processes (1 torch thread each) on the same cores. "
        f"{a.repeats} alternating repeats, medians. simcne's precision: {a.precision} "
        f"(TSimCNE(precision={a.precision!r})); the reference is fp32.",
        "",
        "```sh",
        cmd.rstrip(),
        "```",
        "",
        "| backbone | batch | reference-style (PIL, DataLoader) | simcne | ratio (median of the repeats' ratios) | each repeat | making the views, share of a simcne step |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for name, batch, r_ips, o_ips, ratio, share, ratios in rows:
        each = ", ".join(f"{r:.2f}" for r in ratios)
        lines.append(f"| `{name}` | {batch} | {r_ips:,.1f} images/s | {o_ips:,.1f} images/s "
                     f"| {ratio:.2f}x | {each} | {100 * share:.1f} % |")
    lines += [""] + [f"- {n}" for n in notes]
    key = device.type + ("" if a.precision == "auto" else f"-{a.precision}")
    if not cuda and a.threads != 2:  # a block per thread count on CPU (2: the machine's cores)
        key += f"-{a.threads}t"
    write_block("\n".join(lines), f"vs_reference:{key}")


if __name__ == "__main__":
    main()
