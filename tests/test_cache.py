"""The decode-once cache (issue 28): reuse, invalidation, one writer among processes, the
refusal of a read that cannot fit, the one-line out-of-memory error, and the readers that
feed it (the raw .beton gather, float arrays converted in chunks)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simcne.data import cache as cache_mod
from simcne.data import folder as folder_mod
from simcne.data import load, read_path
from simcne.data.arrays import to_uint8

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


def _folder(root: Path, n=12, size=10, colour_from=None) -> Path:
    """Two classes of random PNGs; gray unless ``colour_from`` (index of the first colour one)."""
    for i in range(n):
        d = root / ("a" if i % 2 else "b")
        d.mkdir(parents=True, exist_ok=True)
        rgb = colour_from is not None and i >= colour_from
        shape = (size, size, 3) if rgb else (size, size)
        Image.fromarray(RNG.integers(0, 256, shape, dtype=np.uint8)).save(d / f"{i:03d}.png")
    return root


@pytest.fixture
def counted(monkeypatch):
    """The folder reader's decoder, counting its calls."""
    calls = []
    real = folder_mod._decode
    monkeypatch.setattr(folder_mod, "_decode", lambda p, size: calls.append(p) or real(p, size))
    return calls


def _same(a, b):
    np.testing.assert_array_equal(np.asarray(a.images), np.asarray(b.images))
    assert a.labels.tolist() == b.labels.tolist()
    assert a.paths == b.paths and a.class_names == b.class_names and a.layout == b.layout


def test_second_read_maps_the_cache_without_decoding(tmp_path, counted):
    src = _folder(tmp_path / "imgs")
    first = read_path(src, cache=tmp_path / "c")
    assert len(counted) == 12 and first.meta["cache"]["hit"] is False
    assert isinstance(first.images, np.memmap)
    second = read_path(src, cache=tmp_path / "c")
    assert len(counted) == 12, "the second read decoded again"
    assert second.meta["cache"]["hit"] is True and isinstance(second.images, np.memmap)
    _same(first, second)
    _same(second, read_path(src, cache=False))
    assert len(list((tmp_path / "c").glob("*.u8"))) == 1
    # another read size is another entry, decoded once
    read_path(src, cache=tmp_path / "c", image_size=6)
    assert len(counted) == 36 and len(list((tmp_path / "c").glob("*.u8"))) == 2


def test_a_changed_file_rebuilds_the_entry(tmp_path, counted):
    src = _folder(tmp_path / "imgs")
    before = read_path(src, cache=tmp_path / "c")
    f = src / "a" / "001.png"
    Image.fromarray(np.full((10, 10), 7, np.uint8)).save(f)
    os.utime(f, ns=(time.time_ns() + 10**9,) * 2)  # a later modification time, whatever the clock
    after = read_path(src, cache=tmp_path / "c")
    assert after.meta["cache"]["hit"] is False and len(counted) == 24
    i = after.paths.index("a/001.png")
    assert (np.asarray(after.images[i]) == 7).all()
    assert not (np.asarray(before.images[i]) == 7).all()
    # the old entry of the same source is gone; an added file is noticed too
    assert len(list((tmp_path / "c").glob("*.u8"))) == 1
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(src / "a" / "999.png")
    assert len(read_path(src, cache=tmp_path / "c")) == 13


def test_the_key_is_the_readers_file_list(tmp_path, counted):
    """The key lists what the reader reads: a renamed file of the same size and time is
    noticed, a file the reader leaves out (not an image, hidden) is not."""
    src = _folder(tmp_path / "imgs")
    read_path(src, cache=tmp_path / "c")
    (src / "a" / "notes.txt").write_text("not an image")
    (src / "a" / ".hidden.png").write_bytes(b"left out")
    assert read_path(src, cache=tmp_path / "c").meta["cache"]["hit"] is True
    f = src / "b" / "000.png"
    st = f.stat()
    f.rename(src / "b" / "000b.png")
    os.utime(src / "b" / "000b.png", ns=(st.st_atime_ns, st.st_mtime_ns))
    moved = read_path(src, cache=tmp_path / "c")
    assert moved.meta["cache"]["hit"] is False and len(counted) == 24
    assert "b/000b.png" in moved.paths and "b/000.png" not in moved.paths


def test_no_cache_writes_nothing(tmp_path):
    src = _folder(tmp_path / "imgs")
    store = read_path(src, cache=False)
    assert not isinstance(store.images, np.memmap) and "cache" not in store.meta
    assert not (tmp_path / "c").exists()


def test_colour_after_gray_and_skipped_files_in_the_cache(tmp_path):
    src = _folder(tmp_path / "imgs", colour_from=7)
    (src / "a" / "bad.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match="Skipped 1 corrupt"):
        cached = read_path(src, cache=tmp_path / "c", skip_corrupt=True)
    with pytest.warns(UserWarning, match="Skipped 1 corrupt"):
        plain = read_path(src, cache=False, skip_corrupt=True)
    assert cached.images.shape == (12, 10, 10, 3)
    _same(cached, plain)
    _same(read_path(src, cache=tmp_path / "c", skip_corrupt=True), plain)  # a hit


def test_other_formats_are_cached_once(tmp_path):
    x = RNG.integers(0, 256, (9, 6, 6, 3), dtype=np.uint8)
    np.savez_compressed(tmp_path / "d.npz", images=x, labels=np.arange(9) % 3)
    np.save(tmp_path / "f.npy", x.astype(np.float32) / 255)
    for name in ("d.npz", "f.npy"):
        first = read_path(tmp_path / name, cache=tmp_path / "c")
        second = read_path(tmp_path / name, cache=tmp_path / "c")
        assert (first.meta["cache"]["hit"], second.meta["cache"]["hit"]) == (False, True)
        np.testing.assert_array_equal(np.asarray(second.images), x)
    assert read_path(tmp_path / "d.npz", cache=tmp_path / "c").labels.tolist() == [0, 1, 2] * 3
    # memory-mapped already: used as it is, nothing written
    np.save(tmp_path / "u.npy", x)
    assert "cache" not in read_path(tmp_path / "u.npy", cache=tmp_path / "c").meta


def test_estimator_and_load_take_the_cache_parameter(tmp_path, counted):
    from simcne import TSimCNE

    src = _folder(tmp_path / "imgs")
    load(src, cache=tmp_path / "c")
    assert load(src, cache=tmp_path / "c").meta["cache"]["hit"] is True
    with pytest.raises(ValueError, match="'cache' parameter of TSimCNE must be None, False or"):
        TSimCNE(cache=3).fit(src)


_WORKER = """
import json, sys, time
from pathlib import Path
from simcne.data import folder, read_path
real = folder._decode
def slow(p, size):
    Path(sys.argv[3]).touch()                 # the writer has started
    with open(sys.argv[4], "a") as f:
        f.write("x")
    time.sleep(0.15)
    return real(p, size)
folder._decode = slow
store = read_path(sys.argv[1], cache=sys.argv[2], workers=1)
print(json.dumps({"hit": store.meta["cache"]["hit"], "sum": int(store.images.sum())}))
"""


def test_two_processes_decode_once(tmp_path):
    """The second process waits for the first one's entry (a file lock) and maps it."""
    src = _folder(tmp_path / "imgs", n=24)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = [str(src), str(tmp_path / "c"), str(tmp_path / "started"), str(tmp_path / "count")]
    first = subprocess.Popen([sys.executable, "-c", _WORKER, *args], stdout=subprocess.PIPE,
                             env=env, text=True)
    deadline = time.time() + 300
    while not (tmp_path / "started").exists() and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.Popen([sys.executable, "-c", _WORKER, *args], stdout=subprocess.PIPE,
                              env=env, text=True)
    out = [json.loads(p.communicate(timeout=900)[0].strip().splitlines()[-1])
           for p in (first, second)]
    assert [o["hit"] for o in out] == [False, True]
    assert out[0]["sum"] == out[1]["sum"]
    assert len((tmp_path / "count").read_text()) == 24, "decoded more than once"


def test_a_read_that_cannot_fit_is_refused(tmp_path, monkeypatch, counted):
    src = _folder(tmp_path / "imgs")
    monkeypatch.setattr(cache_mod.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000}))
    with pytest.raises(ValueError, match=r"Reading '.*imgs' needs 1200 bytes decoded \(12 images "
                                         r"of 10x10x1\).*cache folder.*--read-size.*--cache DIR"):
        read_path(src, cache=tmp_path / "c")
    assert not counted and not (tmp_path / "c").exists()
    from simcne import _heap

    monkeypatch.setattr(_heap, "available_memory", lambda: 100)
    with pytest.raises(ValueError,
                       match=r"needs 144 bytes decoded \(12 images of 3x4x1\).*only 100 bytes of memory"):
        read_path(src, cache=False, image_size=(3, 4))
    monkeypatch.setenv("SIMCNE_MEMORY_CHECK", "0")
    assert len(read_path(src, cache=False)) == 12


def _run(*argv, env=None, script=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    cmd = [sys.executable, "-c", script, *argv] if script else [sys.executable, "-m", "simcne",
                                                                *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def test_simcne_refuses_a_huge_read_size_in_one_line(tmp_path):
    src = _folder(tmp_path / "imgs")
    r = _run("fit", str(src), "--out", str(tmp_path / "o"), "--read-size", "1000000", "1000000",
             "--cache", str(tmp_path / "c"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("simcne: error: Reading")
    assert "TB decoded (12 images of 1000000x1000000x1)" in lines[0] and "--read-size" in lines[0]


_OOM = """
import sys
import simcne.estimator as e
real = e.train_stage
def stage(model, store, stage, run, **kw):
    if stage.number == 2:
        raise MemoryError("Unable to allocate 1.00 TiB for an array")
    return real(model, store, stage, run, **kw)
e.train_stage = stage
from simcne.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_memory_error_is_one_line_and_keeps_the_checkpoint(tmp_path, tiny):
    X, _ = tiny
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "o"
    r = _run("fit", str(tmp_path / "x.npy"), "--out", str(out), "--backbone", "resnet_small",
             "--total-epochs", "1", "1", "--batch-size", "32", "--device", "cpu",
             "--no-plots", "--quiet", script=_OOM)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("simcne: error: out of memory on this machine (Unable to")
    assert "checkpoint.pt' is kept" in lines[0] and "--batch-size" in lines[0]
    assert (out / "checkpoint.pt").is_file()


def test_beton_raw_batch_equals_the_per_image_read(tmp_path):
    from simcne.data.beton import read_beton, write_beton

    x = RNG.integers(0, 256, (40, 9, 7, 3), dtype=np.uint8)
    store = read_beton(write_beton(x, tmp_path / "r.beton", page_size=4096), in_memory=False)
    images = store.images
    assert not images._needs_work
    index = RNG.permutation(40)[:17]
    batch = images[index]
    one_by_one = np.stack([images._read(int(i)) for i in index])
    np.testing.assert_array_equal(batch, one_by_one)
    np.testing.assert_array_equal(batch, x[index])
    np.testing.assert_array_equal(images[np.arange(40)], x)  # across page boundaries


def test_float_arrays_convert_in_chunks(monkeypatch):
    from simcne.data import arrays

    monkeypatch.setattr(arrays, "_CHUNK_BYTES", 4 * 8 * 8 * 3)  # about one image a chunk
    x = RNG.random((11, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(to_uint8(x), np.rint(x * 255.0).astype(np.uint8))
    x[9, 1, 1, 0] = 1.5
    with pytest.raises(ValueError, match=r"floats from 0\.0\d* to 1\.5"):
        to_uint8(x)
    x[3, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN"):
        to_uint8(x)
    with pytest.raises(ValueError, match="integers from -1 to 3"):
        to_uint8(np.array([[[-1, 3]]], np.int64))
