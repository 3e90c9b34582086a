"""A small dataset of colour drawings for map-quality benchmarks: Debian's openclipart-png.

``apt-get install openclipart-png`` installs the Open Clip Art Library's drawings as PNGs in
/usr/share/openclipart/png/<category>/... . :func:`load_clipart` takes eight categories with
recognisable content (1,900 drawings: animals 316, buildings 70, food 366, geography 135,
people 400, plants 95, tools 149, transportation 369), composites each drawing on white,
pads it to a square (white) and resizes it to ``size`` x ``size`` RGB (Lanczos). The result
is cached as an .npz (drawings over 30 million pixels are left out) beside the cache of the other benchmarks.

Usage::

    PYTHONPATH=. python benchmarks/clipart.py --size 32    # builds the cache, prints counts
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

ROOT = Path("/usr/share/openclipart/png")
CLASSES = ("animals", "buildings", "food", "geography", "people", "plants", "tools",
           "transportation")


#: drawings larger than this (a few of 600 million pixels) are left out
MAX_PIXELS = 30_000_000


def _cache(size: int) -> Path:
    base = Path(os.environ.get("SIMCNE_BENCH_CACHE", Path.home() / ".cache" / "simcne-bench"))
    return base / f"clipart-{size}.npz"


def _square(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # opening reads the header only; the size is checked here
    with Image.open(path) as im:
        if im.width * im.height > MAX_PIXELS:
            raise OSError(f"{path}: {im.width}x{im.height} pixels, left out")
        im.thumbnail((8 * size, 8 * size))
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im).convert("RGB")
        side = max(im.size)
        pad = Image.new("RGB", (side, side), (255, 255, 255))
        pad.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
        return np.asarray(pad.resize((size, size), Image.LANCZOS), dtype=np.uint8)


def load_clipart(size: int = 32):
    """(images (N, size, size, 3) uint8, labels (N,) int, class names)."""
    cache = _cache(size)
    if cache.exists():
        d = np.load(cache)
        return d["X"], d["y"], tuple(str(c) for c in d["classes"])
    if not ROOT.is_dir():
        raise SystemExit(f"{ROOT} not found: apt-get install openclipart-png")
    images, labels = [], []
    for c, name in enumerate(CLASSES):
        for path in sorted((ROOT / name).rglob("*.png")):
            try:
                images.append(_square(path, size))
            except OSError:  # an unreadable file: left out
                continue
            labels.append(c)
    X, y = np.stack(images), np.asarray(labels)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, X=X, y=y, classes=np.asarray(CLASSES))
    os.replace(tmp, cache)
    return X, y, CLASSES


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=32)
    X, y, classes = load_clipart(ap.parse_args().size)
    print(X.shape, {c: int((y == i).sum()) for i, c in enumerate(classes)})
