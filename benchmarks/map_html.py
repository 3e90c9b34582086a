"""Size and speed of the interactive map (``simcne.plot.interactive_map``) at 70,000 points.

Fashion-MNIST (70,000 28x28 grayscale images, Debian's ``dataset-fashion-mnist`` or
``$SIMCNE_DATA``) with a random 2-D embedding (ten Gaussian blobs, one per class: the
layout does not change the file or the work, only the number of points does), written
with each ``--thumbnail-size`` given, then opened in headless Chromium (``tests/browser.py``,
the DevTools protocol over a pipe):

- ``write s``: seconds of ``interactive_map`` (thumbnails, atlas pages, bokeh's HTML);
- ``MB``: the file's size;
- ``load s``: from navigating to the file to the plot drawn and every thumbnail page
  decoded;
- ``hover ms``: from a mouse move onto a point to its hover box showing its thumbnail
  (median of 20 points);
- ``pan ms/frame``: a drag of 20 mouse moves, each waited for until the browser drew the
  next two frames (median);
- ``zoom ms/frame``: 10 wheel steps, the same way.

Chromium runs with SwiftShader (software WebGL) and no GPU, as in the tests.

Usage::

    PYTHONPATH=. python benchmarks/map_html.py                     # 70,000 points, 28 and 20 px
    PYTHONPATH=. python benchmarks/map_html.py --n 10000 --thumbnail-size 28
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.fspath(Path(__file__).resolve().parents[1] / "tests"))

from browser import (Browser, drawn_points, find_chromium, frame_box, hover,  # noqa: E402
                     next_frame, point_position, wait_map)


def compare_formats(store, n: int = 4096, size: int = 28, quality: int = 80) -> None:
    """Bytes per thumbnail (base64, as in the page) for one page of ``n`` thumbnails."""
    import base64
    import io

    from PIL import Image

    from simcne.interactive import PAGE_GRID, atlas_pages

    from simcne.data import ImageStore

    x = store.batch(np.arange(n)).numpy()[:, 0]
    first = ImageStore(x[:, None], None, "NCHW")
    t0 = time.perf_counter()
    single = 0
    for img in x:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "WEBP", quality=quality, method=2)
        single += len(base64.b64encode(buf.getvalue()))
    t_single = time.perf_counter() - t0
    t0 = time.perf_counter()
    (page, _), = atlas_pages(first, (size, size), quality=quality)
    t_page = time.perf_counter() - t0
    cols, rows = PAGE_GRID
    grid = x[: cols * rows].reshape(rows, cols, size, size).transpose(0, 2, 1, 3)
    buf = io.BytesIO()
    Image.fromarray(grid.reshape(rows * size, cols * size)).save(buf, "JPEG", quality=quality)
    b64 = 4 / 3
    print(f"one page of {n} thumbnails of {size} px, quality {quality} (bytes per thumbnail "
          f"in the page, base64): WebP page {len(page) * b64 / n:.0f} "
          f"({t_page:.1f} s), one WebP per image {single / n:.0f} "
          f"({t_single:.1f} s), JPEG page {len(buf.getvalue()) * b64 / n:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=70000)
    ap.add_argument("--thumbnail-size", type=int, nargs="+", default=[28, 20])
    ap.add_argument("--dims", type=int, default=2)
    ap.add_argument("--formats-only", action="store_true",
                    help="only compare the thumbnail formats on one page")
    ap.add_argument("--keep", default=None,
                    help="folder to keep the pages and screenshots (after loading, after the "
                         "pan and zoom) in")
    args = ap.parse_args()

    from simcne.data import load
    from simcne.plot import interactive_map

    store = load("fashion-mnist")
    if args.n < len(store):
        from simcne.data import ImageStore

        idx = np.arange(args.n)
        store = ImageStore(store.batch(idx).numpy(), store.labels[idx], "NCHW",
                           store.class_names)
    n = len(store)
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 12, (10, args.dims))
    Y = (centres[store.labels] + rng.normal(0, 1.5, (n, args.dims))).astype(np.float32)
    files = [f"{store.class_names[c]}/{i:05d}.png" for i, c in enumerate(store.labels)]
    folder = Path(args.keep or tempfile.mkdtemp(prefix="simcne-map-"))
    folder.mkdir(parents=True, exist_ok=True)
    chromium = find_chromium()
    print(f"{n} points of {args.dims} dimensions, Fashion-MNIST 28x28; Chromium: {chromium}")
    compare_formats(store)
    if args.formats_only:
        return
    print("thumb px | write s | MB | load s | hover ms | pan ms/frame | zoom ms/frame")
    for size in args.thumbnail_size:
        path = folder / f"map_{n}_{size}px.html"
        t0 = time.perf_counter()
        interactive_map(Y, store, store.labels, store.class_names, files, path=path,
                        thumbnail_size=size)
        t_write = time.perf_counter() - t0
        mb = path.stat().st_size / 1e6
        if chromium is None:
            print(f"{size} | {t_write:.1f} | {mb:.1f} | (no Chromium)")
            continue
        with Browser(width=1200, height=900, timeout=300) as b:
            t0 = time.perf_counter()
            b.open(path)
            wait_map(b, timeout=300)
            t_load = time.perf_counter() - t0
            counts = drawn_points(b)
            assert sum(counts.values()) == n, counts
            if args.keep:
                b.screenshot(folder / f"map_{n}_{size}px.png")
            hovers = []
            for i in rng.choice(n, 20, replace=False):
                xy = point_position(b, int(i))
                b.mouse("mouseMoved", xy[0] + 40, xy[1] + 40)
                next_frame(b)
                t0 = time.perf_counter()
                tips = hover(b, *xy)
                if tips and tips[0]["src"]:
                    hovers.append(time.perf_counter() - t0)
            left, top, right, bottom = frame_box(b)
            cx, cy = (left + right) / 2, (top + bottom) / 2
            b.mouse("mouseMoved", cx, cy)
            b.mouse("mousePressed", cx, cy, button="left", buttons=1)
            pans = []
            for k in range(20):
                t0 = time.perf_counter()
                b.mouse("mouseMoved", cx + 5 * (k + 1), cy + 3 * (k + 1), button="left",
                        buttons=1)
                next_frame(b)
                pans.append(time.perf_counter() - t0)
            b.mouse("mouseReleased", cx + 100, cy + 60, button="left", buttons=0)
            zooms = []
            for k in range(10):
                t0 = time.perf_counter()
                b.call("Input.dispatchMouseEvent", type="mouseWheel", x=cx, y=cy,
                       deltaX=0, deltaY=-100)
                next_frame(b)
                zooms.append(time.perf_counter() - t0)
            if args.keep:
                b.screenshot(folder / f"map_{n}_{size}px_panned_zoomed.png")
        print(f"{size} | {t_write:.1f} | {mb:.1f} | {t_load:.1f} | "
              f"{1000 * statistics.median(hovers):.0f} ({len(hovers)}/20 shown) | "
              f"{1000 * statistics.median(pans):.0f} | {1000 * statistics.median(zooms):.0f}")


if __name__ == "__main__":
    main()
