"""Time reading .beton batches: raw memory-mapped and JPEG (turbojpeg vs Pillow).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_beton.py [--n 2000]

Prints images per second for random batches of 256 read through ``ImageStore.batch``.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from simcne.data.beton import read_beton, write_beton


def photos(n, size, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        f = rng.uniform(1, 8, 3)
        img = 127 + 90 * np.sin(f * xx[..., None] + f[::-1] * yy[..., None] + rng.uniform(0, 6, 3))
        out[i] = np.clip(img + rng.normal(0, 8, img.shape), 0, 255)
    return out


def rate(store, batches=8, batch=256, seed=0):
    rng = np.random.default_rng(seed)
    store.batch(rng.choice(len(store), batch, replace=False))  # warm the page cache
    t = time.perf_counter()
    for _ in range(batches):
        store.batch(rng.choice(len(store), batch, replace=False))
    return batches * batch / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    n = ap.parse_args().n
    with tempfile.TemporaryDirectory() as tmp:
        for size, count in [(32, n), (224, max(300, n // 8))]:
            X = photos(count, size)
            for mode in ("raw", "jpg"):
                path = write_beton(X, Path(tmp) / f"{size}{mode}.beton", mode=mode)
                decoders = ["auto"] if mode == "raw" else ["turbojpeg", "pillow"]
                for dec in decoders:
                    store = read_beton(path, in_memory=False, jpeg_decoder=dec)
                    print(f"{size}x{size} {mode:3s} {dec:9s}: {rate(store):9.0f} images/s")


if __name__ == "__main__":
    main()
