"""Readers: image folders, .npy/.npz, IDX, CIFAR, .beton dispatch and built-in datasets (issue 4).

Every file is made here, tiny, in tmp_path; downloads go to a local HTTP server only.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import pickle
import sys
import tarfile
import threading
import types

import numpy as np
import pytest
from PIL import Image

import simcne.data as sdata
from simcne.data import datasets
from simcne.data.cifar import safe_unpickle
from simcne.data.files import read_path

RNG = np.random.default_rng(0)


def _img(h, w, c=None):
    return RNG.integers(0, 256, (h, w) if c is None else (h, w, c), dtype=np.uint8)


def _save(path, arr, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode).save(path)
    return arr


@pytest.fixture
def class_folder(tmp_path):
    """cats/ and dogs/ with PNG, JPEG and BMP files, all 10x12 RGB."""
    root = tmp_path / "pets"
    arrays = {}
    for name in ("cats/a.png", "cats/b.bmp", "dogs/c.jpg", "dogs/sub/d.png", "dogs/e.jpeg"):
        arrays[name] = _save(root / name, _img(10, 12, 3))
    (root / "notes.txt").write_text("not an image")
    (root / "dogs" / ".hidden.png").write_bytes(b"ignored")
    return root, arrays


# ---------------------------------------------------------------- image folders


def test_class_folder_labels_names_paths(class_folder):
    root, arrays = class_folder
    store = read_path(root)
    assert store.class_names == ["cats", "dogs"]
    assert store.paths == ["cats/a.png", "cats/b.bmp", "dogs/c.jpg", "dogs/e.jpeg", "dogs/sub/d.png"]
    assert store.labels.tolist() == [0, 0, 1, 1, 1]
    assert store.layout == "NHWC" and store.images.shape == (5, 10, 12, 3)
    assert store.images.dtype == np.uint8
    np.testing.assert_array_equal(store.images[0], arrays["cats/a.png"])  # lossless formats
    np.testing.assert_array_equal(store.images[1], arrays["cats/b.bmp"])
    assert store.batch(np.array([4, 0])).shape == (2, 3, 10, 12)


def test_flat_folder_has_no_labels(tmp_path):
    for i in range(3):
        _save(tmp_path / f"{i}.png", _img(6, 6))
    store = read_path(tmp_path)
    assert store.labels is None and store.class_names is None
    assert store.paths == ["0.png", "1.png", "2.png"] and store.images.shape == (3, 6, 6, 1)


def test_mixed_sizes_refused_without_image_size(tmp_path):
    _save(tmp_path / "a.png", _img(10, 12, 3))
    _save(tmp_path / "b.png", _img(20, 16, 3))
    with pytest.raises(ValueError, match=r"differ in size.*10x12.*a\.png.*20x16.*b\.png.*image_size"):
        read_path(tmp_path)


@pytest.mark.parametrize("image_size, hw", [(8, (8, 8)), ((6, 10), (6, 10))])
def test_mixed_sizes_resized_with_center_crop(tmp_path, image_size, hw):
    _save(tmp_path / "a.png", _img(10, 12, 3))
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 5:35] = 200  # the centre (plus the filter's reach); the cropped sides are black
    _save(tmp_path / "b.png", wide)
    store = read_path(tmp_path, image_size=image_size)
    assert store.images.shape == (2,) + hw + (3,)
    if image_size == 8:  # cover 8x8 = 8x16 scaled, centre 8 columns all from the 200 band
        assert np.abs(store.images[1].astype(int) - 200).max() <= 2


def test_gray_rgb_rgba_palette_mix(tmp_path):
    _save(tmp_path / "gray.png", np.full((4, 4), 100, np.uint8))
    _save(tmp_path / "rgb.jpg", np.full((4, 4, 3), 50, np.uint8))
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 200, 0
    rgba[0, 0, 3] = 255
    _save(tmp_path / "rgba.png", rgba, "RGBA")
    store = read_path(tmp_path)
    assert store.channels == 3
    imgs = dict(zip(store.paths, store.images))
    assert (imgs["gray.png"] == 100).all()  # gray repeated into three channels
    assert (imgs["rgba.png"][0, 0] == 200).all()  # opaque pixel kept
    assert (imgs["rgba.png"][1:] == 0).all()  # transparent pixels composited on black


def test_all_gray_gives_one_channel(tmp_path):
    _save(tmp_path / "l.png", np.full((4, 4), 7, np.uint8))
    la = np.zeros((4, 4, 2), np.uint8)
    la[..., 0], la[..., 1] = 100, 255
    _save(tmp_path / "la.png", la, "LA")
    pal = Image.fromarray(np.full((4, 4), 3, np.uint8), "L").convert("P")
    pal.save(tmp_path / "p.gif")
    store = read_path(tmp_path)
    assert store.images.shape == (3, 4, 4, 1)
    assert dict(zip(store.paths, store.images[..., 0, 0, 0].tolist())) == {"l.png": 7, "la.png": 100, "p.gif": 3}


def test_corrupt_file_named_or_skipped_with_warning(class_folder):
    root, _ = class_folder
    (root / "cats" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"broken\.png.*corrupt.*skip_corrupt"):
        read_path(root)
    with pytest.warns(UserWarning, match=r"Skipped 1 corrupt.*broken\.png"):
        store = read_path(root, skip_corrupt=True)
    assert len(store) == 5 and "cats/broken.png" not in store.paths
    assert store.meta["skipped"][0].endswith("broken.png")


def test_truncated_jpeg_is_corrupt(tmp_path):
    _save(tmp_path / "ok.png", _img(8, 8, 3))
    _save(tmp_path / "t.jpg", _img(64, 64, 3))
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"t\.jpg"):
        read_path(tmp_path)


def test_threads_give_the_same_store(class_folder):
    root, _ = class_folder
    a, b = read_path(root, workers=1), read_path(root, workers=3)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.paths == b.paths


def test_empty_folder_and_one_image_refused(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"holds no image files.*\.png.*got 1 other file"):
        read_path(tmp_path)
    _save(tmp_path / "only.png", _img(4, 4))
    with pytest.raises(ValueError, match=r"holds 1 image.*at least 2.*negatives"):
        read_path(tmp_path)


def test_folder_mixing_files_and_class_folders_refused(tmp_path):
    _save(tmp_path / "top.png", _img(4, 4))
    _save(tmp_path / "cls" / "x.png", _img(4, 4))
    with pytest.raises(ValueError, match=r"mixes image files.*top\.png.*cls"):
        read_path(tmp_path)


@pytest.mark.parametrize("bad", [0, -3, (8,), (8, 0), "32", 2.5])
def test_bad_image_size(class_folder, bad):
    with pytest.raises(ValueError, match=r"'image_size' parameter.*got"):
        read_path(class_folder[0], image_size=bad)


# ---------------------------------------------------------------- .npy / .npz


@pytest.mark.parametrize("shape, layout", [((5, 8, 8), "NCHW"), ((5, 8, 8, 3), "NHWC"), ((5, 3, 8, 8), "NCHW")])
def test_npy_uint8_stays_a_memmap(tmp_path, shape, layout):
    x = RNG.integers(0, 256, shape, dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    store = read_path(tmp_path / "x.npy")
    assert isinstance(store.images, np.memmap) and store.layout == layout
    b = store.batch(np.array([3, 0, 4])).numpy()
    expect = x[[3, 0, 4]]
    expect = expect[:, None] if x.ndim == 3 else expect.transpose(0, 3, 1, 2) if layout == "NHWC" else expect
    np.testing.assert_array_equal(b, expect)


def test_npy_float_converted_and_nan_refused(tmp_path):
    x = RNG.random((4, 6, 6)).astype(np.float32)
    np.save(tmp_path / "f.npy", x)
    store = read_path(tmp_path / "f.npy")
    np.testing.assert_array_equal(store.images[:, 0], np.rint(x * 255).astype(np.uint8))
    x[2, 1, 1] = np.nan
    np.save(tmp_path / "f.npy", x)
    with pytest.raises(ValueError, match=r"f\.npy.*NaN"):
        read_path(tmp_path / "f.npy")


@pytest.mark.parametrize("shape", [(10, 10), (2, 3, 4, 4, 1)])
def test_npy_wrong_rank(tmp_path, shape):
    np.save(tmp_path / "r.npy", np.zeros(shape, np.uint8))
    with pytest.raises(ValueError, match=r"r\.npy.*wrong rank.*3-D.*got shape"):
        read_path(tmp_path / "r.npy")


@pytest.mark.parametrize("ikey, lkey", [("images", "labels"), ("x", "y"), ("X", "targets"), ("data", None)])
@pytest.mark.parametrize("compressed", [False, True])
def test_npz_keys_labels_and_mmap(tmp_path, ikey, lkey, compressed):
    x = RNG.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    arrays = {ikey: x} | ({lkey: np.arange(6) % 2} if lkey else {})
    (np.savez_compressed if compressed else np.savez)(tmp_path / "d.npz", **arrays)
    store = read_path(tmp_path / "d.npz")
    np.testing.assert_array_equal(np.asarray(store.images), x)
    assert (store.labels is None) == (lkey is None)
    if lkey:
        assert store.labels.tolist() == [0, 1, 0, 1, 0, 1]
    # uncompressed: memory-mapped as it is; compressed: decompressed once into the cache
    assert isinstance(store.images, np.memmap)
    assert ("cache" in store.meta) == compressed
    assert isinstance(read_path(tmp_path / "d.npz", cache=False).images, np.memmap) != compressed


def test_npz_bad_keys_and_label_length(tmp_path):
    np.savez(tmp_path / "k.npz", a=np.zeros((3, 4, 4), np.uint8), b=np.zeros(3))
    with pytest.raises(ValueError, match=r"k\.npz.*no images.*images, x, X, data.*\['a', 'b'\]"):
        read_path(tmp_path / "k.npz")
    np.savez(tmp_path / "l.npz", images=np.zeros((3, 4, 4), np.uint8), labels=np.arange(4))
    with pytest.raises(ValueError, match=r"labels.*l\.npz.*wrong length.*\(3,\).*\(4,\)"):
        read_path(tmp_path / "l.npz")


# ---------------------------------------------------------------- IDX


def _write_idx(path, arr, gz=False):
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _idx_pair(folder, prefix, n, gz):
    x, y = RNG.integers(0, 256, (n, 5, 4), dtype=np.uint8), RNG.integers(0, 10, n).astype(np.uint8)
    s = ".gz" if gz else ""
    _write_idx(folder / f"{prefix}-images-idx3-ubyte{s}", x, gz)
    _write_idx(folder / f"{prefix}-labels-idx1-ubyte{s}", y, gz)
    return x, y


@pytest.mark.parametrize("gz", [False, True])
def test_idx_file_with_labels_found_by_name(tmp_path, gz):
    x, y = _idx_pair(tmp_path, "train", 7, gz)
    store = read_path(tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else "")))
    assert store.images.shape == (7, 1, 5, 4)
    np.testing.assert_array_equal(np.asarray(store.images)[:, 0], x)
    assert store.labels.tolist() == y.tolist()
    assert isinstance(store.images, np.memmap)  # gzipped: decompressed into the cache
    assert ("cache" in store.meta) == gz


def test_idx_folder_splits(tmp_path):
    xtr, ytr = _idx_pair(tmp_path, "train", 6, gz=True)
    xte, yte = _idx_pair(tmp_path, "t10k", 3, gz=False)
    store = read_path(tmp_path)
    assert len(store) == 9 and store.meta["splits"] == {"train": 6, "test": 3}
    assert store.labels.tolist() == ytr.tolist() + yte.tolist()
    assert len(read_path(tmp_path, split="test")) == 3
    with pytest.raises(ValueError, match=r"'split' parameter.*'train', 'test' or 'all'.*'val'"):
        read_path(tmp_path, split="val")


def test_idx_bad_files(tmp_path):
    x = np.zeros((4, 3, 3), np.uint8)
    p = _write_idx(tmp_path / "bad-images-idx3-ubyte", x)
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"bad-images.*wrong size.*expected 36 bytes.*got 31"):
        read_path(p)
    lab = _write_idx(tmp_path / "x-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match=r"holds labels.*expected an images file"):
        read_path(lab)
    (tmp_path / "c-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bnot gzip at all")
    with pytest.raises(ValueError, match=r"c-images.*corrupt"):
        read_path(tmp_path / "c-images-idx3-ubyte.gz")
    _write_idx(tmp_path / "n-images-idx3-ubyte", x)
    _write_idx(tmp_path / "n-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match=r"n-labels.*wrong length.*\(4,\).*\(5,\)"):
        read_path(tmp_path / "n-images-idx3-ubyte")


# ---------------------------------------------------------------- CIFAR


def _batch(n, label_keys):
    d = {b"batch_label": b"fake", b"data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8)}
    d[b"filenames"] = [f"img_{i}.png".encode() for i in range(n)]
    for key, k in label_keys.items():
        d[key] = [int(v) for v in RNG.integers(0, k, n)]
    return d


def _dump(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))  # like the original Python 2 files


def _fake_cifar10(root):
    folder = root / "cifar-10-batches-py"
    _dump(folder / "batches.meta", {b"label_names": [b"airplane", b"automobile", b"bird"]})
    batches = {f"data_batch_{i}": _batch(2, {b"labels": 3}) for i in range(1, 6)}
    batches["test_batch"] = _batch(3, {b"labels": 3})
    for name, b in batches.items():
        _dump(folder / name, b)
    return folder, batches


def _fake_cifar100(root):
    folder = root / "cifar-100-python"
    _dump(folder / "meta", {b"fine_label_names": [b"apple", b"bee", b"cup", b"dog"],
                            b"coarse_label_names": [b"food", b"animal"]})  # fmt: skip
    batches = {s: _batch(n, {b"fine_labels": 4, b"coarse_labels": 2}) for s, n in (("train", 5), ("test", 2))}
    for name, b in batches.items():
        _dump(folder / name, b)
    return folder, batches


def _tar(folder, name):
    path = folder.parent / name
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return path


@pytest.mark.parametrize("as_tar", [False, True])
def test_cifar10_folder_and_tar(tmp_path, as_tar):
    folder, batches = _fake_cifar10(tmp_path)
    path = _tar(folder, "cifar-10-python.tar.gz") if as_tar else folder
    store = read_path(path)
    assert store.images.shape == (13, 3, 32, 32) and store.layout == "NCHW"
    assert store.class_names == ["airplane", "automobile", "bird"]
    assert store.meta["splits"] == {"train": 10, "test": 3}
    order = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    np.testing.assert_array_equal(store.labels, np.concatenate([batches[n][b"labels"] for n in order]))
    np.testing.assert_array_equal(store.images[0].reshape(-1), batches["data_batch_1"][b"data"][0])
    assert store.paths[0] == "img_0.png"
    assert len(read_path(path, split="test")) == 3
    with pytest.raises(ValueError, match=r"'label_type'.*CIFAR-10.*'fine'.*'coarse'"):
        read_path(path, label_type="coarse")


@pytest.mark.parametrize("as_tar", [False, True])
def test_cifar100_fine_and_coarse(tmp_path, as_tar):
    folder, batches = _fake_cifar100(tmp_path)
    path = _tar(folder, "cifar-100-python.tar.gz") if as_tar else folder
    fine = read_path(path)
    coarse = read_path(path, label_type="coarse", split="train")
    assert len(fine) == 7 and fine.class_names == ["apple", "bee", "cup", "dog"]
    assert fine.labels.tolist() == batches["train"][b"fine_labels"] + batches["test"][b"fine_labels"]
    assert len(coarse) == 5 and coarse.class_names == ["food", "animal"]
    assert coarse.labels.tolist() == batches["train"][b"coarse_labels"]


def test_cifar_pickle_with_objects_is_refused(tmp_path):
    folder, _ = _fake_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    _dump(folder / "test_batch", {b"data": Evil()})
    with pytest.raises(ValueError, match=r"test_batch.*not a valid data pickle.*refusing.*print"):
        read_path(folder)
    assert safe_unpickle(pickle.dumps({"a": np.arange(3, dtype=np.int16)}, protocol=5))["a"].tolist() == [0, 1, 2]
    with pytest.raises(pickle.UnpicklingError, match="dtype"):
        safe_unpickle(pickle.dumps(np.array([object()], dtype=object)))
    with pytest.raises(TypeError):  # numpy.ndarray is only a name here, never a callable
        safe_unpickle(b"\x80\x02cnumpy\nndarray\nK\x03\x85R.")


# ---------------------------------------------------------------- dispatch and errors


def test_missing_path_unknown_type_and_options(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.npy.*does not exist.*digits, fashion-mnist"):
        read_path(tmp_path / "nowhere.npy")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt.*unknown type.*got suffix '\.txt'"):
        read_path(tmp_path / "notes.txt")
    np.save(tmp_path / "x.npy", np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"'image_size' parameter does not apply.*x\.npy"):
        read_path(tmp_path / "x.npy", image_size=8)


def test_type_found_by_content_without_suffix(tmp_path):
    x = RNG.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    with open(tmp_path / "blob", "wb") as f:
        np.save(f, x)
    assert isinstance(read_path(tmp_path / "blob").images, np.memmap)
    _write_idx(tmp_path / "mnist_images.bin", x, gz=True)
    np.testing.assert_array_equal(np.asarray(read_path(tmp_path / "mnist_images.bin").images)[:, 0], x)


def test_beton_is_dispatched_lazily(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("simcne.data.beton")
    fake.read_beton = lambda path, **kw: calls.append((path, kw)) or sdata.ImageStore(np.zeros((2, 1, 4, 4), np.uint8))
    monkeypatch.setitem(sys.modules, "simcne.data.beton", fake)
    (tmp_path / "d.beton").write_bytes(b"")
    assert len(read_path(tmp_path / "d.beton", image_size=16)) == 2
    assert calls[0][0].name == "d.beton" and calls[0][1]["image_size"] == 16


def test_load_passes_reader_options(class_folder):
    store = sdata.load(str(class_folder[0]), image_size=4)
    assert store.image_size == (4, 4)
    with pytest.raises(ValueError, match=r"reader options \['image_size'\] apply to paths"):
        sdata.load(np.zeros((3, 4, 4), np.uint8), image_size=4)


def test_a_path_wins_over_a_builtin_name(tmp_path, monkeypatch):
    for i in range(2):
        _save(tmp_path / "digits" / f"{i}.png", _img(3, 3))
    monkeypatch.chdir(tmp_path)
    assert len(read_path("digits")) == 2
    monkeypatch.chdir(tmp_path / "digits")
    assert len(read_path("digits")) == 1797


# ---------------------------------------------------------------- built-in datasets


def test_digits():
    store = sdata.load("digits")
    assert store.images.shape == (1797, 1, 8, 8) and store.images.dtype == np.uint8
    assert store.images.max() == 255 and store.class_names == [str(i) for i in range(10)]
    assert np.unique(store.labels).tolist() == list(range(10))
    with pytest.raises(ValueError, match=r"'split'.*'digits'.*'train'"):
        sdata.load_dataset("digits", split="train")


def test_unknown_dataset_name_lists_known_names():
    with pytest.raises(ValueError, match=r"'imagenet' is unknown.*digits, fashion-mnist"):
        sdata.load_dataset("imagenet")


def _fake_fashion(folder, gz=True):
    out = {}
    for prefix, n in (("train", 6), ("t10k", 4)):
        out[prefix] = _idx_pair(folder, prefix, n, gz)
    return out


def test_fashion_mnist_from_root_and_env(tmp_path, monkeypatch):
    fake = _fake_fashion(tmp_path / "fm")
    store = sdata.load_dataset("fashion-mnist", root=tmp_path / "fm", download=False)
    assert len(store) == 10 and store.class_names[7] == "Sneaker" and len(store.class_names) == 10
    assert store.labels[:6].tolist() == fake["train"][1].tolist()
    monkeypatch.setenv("SIMCNE_DATA", str(tmp_path))
    (tmp_path / "fm").rename(tmp_path / "fashion-mnist")
    store = sdata.load("fashion-mnist", split="test")
    assert len(store) == 4 and store.meta["folder"] == str(tmp_path / "fashion-mnist")
    with pytest.raises(FileNotFoundError, match=r"Fashion-MNIST files.*not found.*empty"):
        sdata.load_dataset("fashion-mnist", root=tmp_path / "empty", download=False)


@pytest.fixture
def http_folder(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/srv; yields (folder, base URL)."""
    srv = tmp_path / "srv"
    srv.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(srv)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield srv, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    thread.join()


def test_fashion_mnist_download_checks_checksums(tmp_path, http_folder, monkeypatch):
    srv, url = http_folder
    fake = _fake_fashion(srv)
    sums = {p.name: "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest() for p in srv.iterdir()}
    monkeypatch.setattr(datasets, "FASHION_MNIST_URL", url)
    monkeypatch.setattr(datasets, "FASHION_MNIST_FILES", sums)
    store = sdata.load_dataset("fashion-mnist", root=tmp_path / "dl", split="train")
    assert len(store) == 6 and store.labels.tolist() == fake["train"][1].tolist()
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == [
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]  # fmt: skip

    sums["t10k-images-idx3-ubyte.gz"] = "md5:" + "0" * 32
    with pytest.raises(ValueError, match=r"t10k-images.*wrong md5 checksum.*expected 0{32}, got [0-9a-f]{32}"):
        sdata.load_dataset("fashion-mnist", cache_dir=tmp_path / "cache", root=tmp_path / "dl2")
    assert not any(p.name.startswith("t10k-images") for p in (tmp_path / "dl2").iterdir())
    assert not list((tmp_path / "dl2").glob(".*part"))  # no temporary file left behind


def test_download_unreachable_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_URL", "http://127.0.0.1:9/")
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:9/train-images.*offline.*root="):
        sdata.load_dataset("fashion-mnist", root=tmp_path, split="train")
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not datasets.DEBIAN_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_debian_fashion_mnist(monkeypatch):
    monkeypatch.delenv("SIMCNE_DATA", raising=False)
    store = sdata.load_dataset("fashion-mnist", download=False)
    assert len(store) == 70_000 and store.image_size == (28, 28) and store.channels == 1
    assert np.bincount(store.labels).tolist() == [7000] * 10 and len(store.class_names) == 10
