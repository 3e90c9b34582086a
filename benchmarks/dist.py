"""Two processes under torchrun against one process, on CPU: speed, and the BatchNorm choice.

Usage (from the repository root; not timed on a quiet machine: on the shared 2-core
machine at load 10, each speed run took a few minutes with ``--images 512 --batch 128``):

    PYTHONPATH=. python benchmarks/dist.py [--images 2048] [--batch 256] [--epochs 3]
        [--digits-epochs 20 5 10] [--skip-digits] [--speed-runs 0 1 2 3]

Runs, each in its own process(es), each process with the given torch threads:

- speed: stage 1 of ``TSimCNE(backbone="resnet_small")`` on ``--images`` random 32x32 RGB
  images at ``--batch`` (the global batch), images per second over the epochs after the first,
  for 1 process x 2 threads, 1 process x 1 thread, 2 processes x 1 thread (torchrun, gloo,
  BatchNorm over the global batch) and 2 processes x 1 thread with per-process BatchNorm
  (``SIMCNE_SYNC_BATCHNORM=0``);
- BatchNorm: a short digits run (``--digits-epochs``, batch 128, ``simcne demo``'s rates)
  in 1 process and in 2 processes with either BatchNorm; how far each 2-process embedding
  is from the 1-process one, and the kNN accuracy (k=15) of each.

A worker is this script with ``--worker``; the driver starts them with
``python -m torch.distributed.run --standalone --nproc_per_node=2``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker(a) -> None:
    import numpy as np
    import torch

    from simcne import TSimCNE, dist

    torch.set_num_threads(a.threads)
    if a.worker == "speed":
        X = np.random.default_rng(0).integers(0, 256, (a.n, 32, 32, 3), dtype=np.uint8)
        ends = []
        TSimCNE(backbone="resnet_small", total_epochs=[a.epochs], batch_size=a.batch,
                random_state=0, device="cpu",
                callbacks=lambda *_: ends.append(time.perf_counter())).fit(X)
        per_epoch = (a.n // a.batch) * a.batch
        result = {"images_per_s": per_epoch * (len(ends) - 1) / (ends[-1] - ends[0])}
    else:
        from sklearn.datasets import load_digits

        d = load_digits()
        X = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)
        t0 = time.perf_counter()
        est = TSimCNE(backbone="resnet_small", total_epochs=a.digits_epochs, batch_size=128,
                      lr=[0.015, 0.015, 0.0015], random_state=0, device="cpu").fit(X)
        result = {"seconds": time.perf_counter() - t0}
        if dist.is_main():
            np.save(a.out + ".npy", est.embedding_)
    if dist.is_main():
        Path(a.out).write_text(json.dumps(result))


def launch(a, kind: str, procs: int, threads: int, sync_bn: bool = True) -> dict:
    out = tempfile.mktemp(prefix=f"simcne-dist-{kind}-", suffix=".json")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), SIMCNE_SYNC_BATCHNORM=str(int(sync_bn)),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    args = [__file__, "--worker", kind, "--out", out, "--threads", str(threads),
            "--images", str(a.n), "--batch", str(a.batch), "--epochs", str(a.epochs),
            "--digits-epochs", *map(str, a.digits_epochs)]
    cmd = [sys.executable, *args] if procs == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={procs}", *args]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    result = json.loads(Path(out).read_text())
    if kind == "digits":
        import numpy as np

        result["embedding"] = np.load(out + ".npy")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", choices=("speed", "digits"))
    p.add_argument("--out")
    p.add_argument("--threads", type=int, default=1)
    # not --n: torchrun would take it for one of its own flags
    p.add_argument("--images", dest="n", type=int, default=2048)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--digits-epochs", type=int, nargs="+", default=[20, 5, 10])
    p.add_argument("--skip-digits", action="store_true")
    p.add_argument("--speed-runs", type=int, nargs="+", default=[0, 1, 2, 3],
                   help="which speed runs (0-3, in the order above)")
    a = p.parse_args()
    if a.worker:
        return worker(a)
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the start")
    print(f"speed: stage 1, resnet_small, {a.n} random 32x32 RGB images, global batch {a.batch}, "
          f"images/s over epochs 2-{a.epochs}")
    runs = [("1 process x 2 threads", 1, 2, True), ("1 process x 1 thread", 1, 1, True),
            ("2 processes x 1 thread, global BN", 2, 1, True),
            ("2 processes x 1 thread, per-process BN", 2, 1, False)]
    speed = {}
    for i in a.speed_runs:
        name, procs, threads, sync = runs[i]
        speed[name] = launch(a, "speed", procs, threads, sync)["images_per_s"]
        print(f"  {name:40s} {speed[name]:8.1f} images/s (load average "
              f"{os.getloadavg()[0]:.1f})", flush=True)
    for two in (runs[2][0], runs[3][0]):
        for one in (runs[0][0], runs[1][0]):
            if two in speed and one in speed:
                print(f"  ratio {two} / {one}: {speed[two] / speed[one]:.2f}")
    if a.skip_digits:
        return
    import numpy as np

    from simcne import knn_accuracy
    from sklearn.datasets import load_digits

    y = load_digits().target
    print(f"BatchNorm: digits, resnet_small, total_epochs={a.digits_epochs}, batch 128, "
          "seed 0, 1 thread per process")
    one = launch(a, "digits", 1, 1)
    ref = one["embedding"]
    print(f"  1 process: kNN {knn_accuracy(ref, y, k=15):.3f} ({one['seconds']:.0f} s)")
    for name, sync in (("global BN", True), ("per-process BN", False)):
        r = launch(a, "digits", 2, 1, sync)
        e = r["embedding"]
        print(f"  2 processes, {name}: kNN {knn_accuracy(e, y, k=15):.3f} ({r['seconds']:.0f} s), "
              f"max |Y2 - Y1| {np.abs(e - ref).max():.2g} (embedding's extent "
              f"{np.abs(ref).max():.2g})")


if __name__ == "__main__":
    main()
