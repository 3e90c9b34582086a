"""Data of any size (issue 28): the decode-once cache, raw .beton batches and a 1M-point map.

Measures, each read in a fresh subprocess (``ru_maxrss`` and ``/proc/self/status``):

- reading an image folder (``--images`` PNGs of 64x64 RGB) with an empty cache: time and
  peak RSS over the process's RSS before the read (the store is then a memory map of the
  cache file: page cache, not private memory);
- the second read of the same folder (a cache hit): time;
- the same folder read without the cache (``cache=False``): time and peak RSS;
- two processes reading it at once after the cache is written (as under torchrun): the
  private (anonymous) memory of each after touching every image;
- an epoch pass over a raw ``.beton`` of ``--beton-images`` 32x32 images (batches of 512,
  a random permutation): the batch gathered from the memory map, against the per-image
  path it replaced;
- ``map.html`` of ``--map-points`` points (Fashion-MNIST thumbnails tiled to that many,
  a memory-mapped store): write time, peak RSS of the write, file size; then, in headless
  Chromium (tests/browser.py), the time to load and the median time of 10 hovers.

Usage (prints a Markdown block for BENCHMARKS.md)::

    PYTHONPATH=. nice -n 10 python benchmarks/scale.py --images 20000 --map-points 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.fspath(ROOT / "tests"))

_READ = r"""
import json, resource, sys, time
import numpy as np
from simcne.data import read_path
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
rss0 = status("VmRSS:")
t = time.perf_counter()
cache = sys.argv[2] if sys.argv[2] != "off" else False
store = read_path(sys.argv[1], cache=cache)
took = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
total = 0
for a in range(0, len(store), 4096):  # touch every image, as an epoch does
    total += int(np.asarray(store.images[a:a + 4096]).sum(dtype=np.int64))
if len(sys.argv) > 3:
    time.sleep(float(sys.argv[3]))  # both processes hold the store at once
print(json.dumps({"seconds": took, "peak_over_start": max(0, peak - max(before, rss0)),
                  "anon_after_touch": status("RssAnon:"), "nbytes": store.nbytes,
                  "hit": store.meta.get("cache", {}).get("hit"), "sum": total}))
"""

_MAP = r"""
import json, resource, sys, time
import numpy as np
from simcne.data import ImageStore
from simcne.plot import interactive_map
n, images, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
X = np.memmap(images, np.uint8, "r", shape=(n, 1, 28, 28))
labels = np.load(images + ".labels.npy")
rng = np.random.default_rng(0)
Y = (rng.normal(0, 12, (10, 2))[labels] + rng.normal(0, 1.5, (n, 2))).astype(np.float32)
import bokeh.plotting, bokeh.embed  # noqa: E401  imported before, not counted
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
import threading
anon0, peak, done = status("RssAnon:"), [0], threading.Event()
def sample():  # private memory every 5 ms (the memory map's pages are page cache, not this)
    while not done.is_set():
        peak[0] = max(peak[0], status("RssAnon:"))
        time.sleep(0.005)
sampler = threading.Thread(target=sample)
sampler.start()
t = time.perf_counter()
interactive_map(Y, ImageStore(X, labels), labels, [str(c) for c in range(10)], path=out)
took = time.perf_counter() - t
done.set()
sampler.join()
print(json.dumps({"seconds": took, "peak_over_start": peak[0] - anon0}))
"""


def run(script, *args, env=None):
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=os.fspath(ROOT), **(env or {})))
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_folder(folder: Path, n: int) -> None:
    """n smooth 64x64 RGB PNGs in 10 class folders (smooth: quick to write and to read)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    for i in range(n):
        d = folder / f"c{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        f = rng.uniform(1, 6, 3)
        img = 127 + 100 * np.sin(f * xx[..., None] + f[::-1] * yy[..., None] + i)
        Image.fromarray(img.astype(np.uint8)).save(d / f"{i:07d}.png", compress_level=1)


class Report(list):
    """The report's lines, each printed as it comes: a long run shows what it has done."""

    def append(self, line):
        print(line, flush=True)
        super().append(line)

    def __iadd__(self, more):
        for line in more:
            self.append(line)
        return self


def gb(x):
    return f"{x / 1e9:.3f} GB"


def folder_part(tmp: Path, n: int, lines: list) -> None:
    src = tmp / "folder"
    t = time.perf_counter()
    make_folder(src, n)
    lines.append(f"- folder: {n} PNGs of 64x64 RGB made in {time.perf_counter() - t:.0f} s")
    cache = tmp / "cache"
    first = run(_READ, src, cache)
    second = run(_READ, src, cache)
    assert first["hit"] is False and second["hit"] is True
    lines += [
        f"- decoded size {gb(first['nbytes'])}",
        f"- first read, into the cache: {first['seconds']:.1f} s, peak RSS "
        f"+{gb(first['peak_over_start'])} over the process before the read "
        f"({first['peak_over_start'] / first['nbytes']:.2f}x the decoded size); anonymous "
        f"memory after touching every image {gb(first['anon_after_touch'])}",
        f"- second read (cache hit): {second['seconds']:.2f} s "
        f"({100 * second['seconds'] / first['seconds']:.1f} % of the first); anonymous memory "
        f"after touching every image {gb(second['anon_after_touch'])}",
    ]
    two_processes(src, cache, lines)  # what the cache is for first: a long run may stop
    plain = run(_READ, src, "off")
    assert first["sum"] == plain["sum"]
    lines.append(
        f"- without the cache (cache=False): {plain['seconds']:.1f} s, peak RSS "
        f"+{gb(plain['peak_over_start'])} ({plain['peak_over_start'] / plain['nbytes']:.2f}x)")
    two_processes(src, "off", lines)


def two_processes(src: Path, mode, lines: list) -> None:
    """Two processes read ``src`` at once (as under torchrun) and hold it 3 s."""
    procs = [subprocess.Popen([sys.executable, "-c", _READ, str(src), str(mode), "3"],
                              stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=os.fspath(ROOT)))
             for _ in range(2)]
    res = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    anon = [r["anon_after_touch"] for r in res]
    lines.append(f"- two processes at once, {'cache' if mode != 'off' else 'no cache'}: "
                 f"anonymous memory {gb(anon[0])} + {gb(anon[1])} = {gb(sum(anon))}")


def beton_part(tmp: Path, n: int, lines: list) -> None:
    from simcne.data.beton import read_beton, write_beton

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    path = write_beton(X, tmp / "raw.beton")
    store = read_beton(path, in_memory=False)

    def epoch():
        order = rng.permutation(n)
        t = time.perf_counter()
        for a in range(0, n, 512):
            store.batch(order[a:a + 512])
        return time.perf_counter() - t

    epoch()  # the page cache
    gather = min(epoch() for _ in range(3))
    store.images._needs_work = True  # the per-image path of before (beton.py's _fill)
    per_image = min(epoch() for _ in range(2))
    store.images._needs_work = False
    np.save(tmp / "same.npy", X)
    from simcne.data import read_path

    npy = read_path(tmp / "same.npy")
    order = rng.permutation(n)
    npy.batch(order[:512])
    t = time.perf_counter()
    for a in range(0, n, 512):
        npy.batch(order[a:a + 512])
    t_npy = time.perf_counter() - t
    lines.append(f"- raw .beton, {n} images of 32x32x3, epoch pass in batches of 512 (best of "
                 f"3 and 2): {gather:.2f} s gathered from the memory map, {per_image:.2f} s "
                 f"per image as before ({per_image / gather:.1f}x); the same images from "
                 f".npy: {t_npy:.2f} s")


def map_part(tmp: Path, n: int, lines: list) -> None:
    from simcne.data import load

    fm = load("fashion-mnist", cache=False)
    base = np.asarray(fm.images).reshape(len(fm), 1, 28, 28)
    images = tmp / "thumbs.u8"
    X = np.memmap(images, np.uint8, "w+", shape=(n, 1, 28, 28))
    for a in range(0, n, len(base)):
        X[a:a + len(base)] = base[: n - a]
    X.flush()
    del X
    np.save(os.fspath(images) + ".labels.npy", np.resize(fm.labels, n))
    out = tmp / "map.html"
    res = run(_MAP, n, images, out)
    size = out.stat().st_size
    lines.append(f"- map.html of {n:,} points (default max_points=100,000): written in "
                 f"{res['seconds']:.1f} s, peak private memory (RssAnon, sampled every 5 ms) "
                 f"+{gb(res['peak_over_start'])} over the process before the call, bokeh imported ({res['peak_over_start'] / size:.1f}x "
                 f"the page), {size / 1e6:.1f} MB")
    from browser import Browser, find_chromium, hover, next_frame, point_position, wait_map

    if find_chromium() is None:
        lines.append("- (no Chromium: load and hover not measured)")
        return
    with Browser(width=1200, height=900, timeout=600) as b:
        t = time.perf_counter()
        b.open(out)
        wait_map(b, timeout=600)
        next_frame(b)
        t_load = time.perf_counter() - t
        shown = b.js("""(() => {
          const out = []
          for (const v of Bokeh.index.all_views()) {
            const d = v.model.data_source ? v.model.data_source.data : null
            if (d && d.index && v.model.name && v.model.name.startsWith("class-"))
              out.push(d.index[0], d.index[Math.floor(d.index.length / 2)])
          }
          return out
        })()""")
        times = []
        for i in shown[:10]:
            xy = point_position(b, int(i))
            b.mouse("mouseMoved", xy[0] + 40, xy[1] + 40)
            next_frame(b)
            t = time.perf_counter()
            tips = hover(b, *xy, timeout=60)
            if tips and tips[0]["src"]:
                times.append(1000 * (time.perf_counter() - t))
        lines.append(f"- in headless Chromium (SwiftShader, no GPU): loaded in {t_load:.1f} s; "
                     f"hover to thumbnail shown {statistics.median(times):.0f} ms (median of "
                     f"{len(times)}, range {min(times):.0f}-{max(times):.0f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20000, help="PNGs in the folder")
    ap.add_argument("--beton-images", type=int, default=200000)
    ap.add_argument("--map-points", type=int, default=1000000)
    ap.add_argument("--skip", nargs="*", default=[], choices=("folder", "beton", "map"))
    ap.add_argument("--workdir", default=None, help="where the data goes (default: a temp dir)")
    args = ap.parse_args()
    cpu = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines()
        if ln.startswith("Model name")), "unknown CPU")
    lines = Report()
    lines.append(f"Machine: {cpu}, {os.cpu_count()} cores; `{' '.join(sys.argv)}`")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        for name, part, n in (("folder", folder_part, args.images),
                              ("beton", beton_part, args.beton_images),
                              ("map", map_part, args.map_points)):
            if name not in args.skip:
                part(tmp, n, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
