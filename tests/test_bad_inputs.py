"""Bad inputs, table-driven, through Python and through the command (issue 13).

Each entry of BAD is tried twice: in Python (``TSimCNE(...).fit``, ``TSimCNE.load``), where it
must raise a ValueError (or an OSError for a file that cannot be opened) whose message names
the parameter or the file; and through ``simcne``, which must end with exit code 2, one line
``simcne: error: ...`` naming the same, no traceback, and nothing new under --out. Then
property-based cases (hypothesis) for the array readers.
"""

import builtins
import errno
import gzip
import io
import os
import pickle
import re
import struct
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from simcne import TSimCNE
from simcne.cli import main
from simcne.data import from_array, load
from simcne.data.beton import write_beton

BASE = dict(backbone="resnet_small", total_epochs=1, batch_size=16, random_state=0,
            device="cpu")
FLAGS = ["--backbone", "resnet_small", "--total-epochs", "1", "--batch-size", "16",
         "--random-state", "0", "--device", "cpu", "--quiet", "--no-plots"]
RNG = np.random.default_rng(0)
X = RNG.integers(0, 256, (24, 8, 8), dtype=np.uint8)


@dataclass
class Bad:
    """One bad input: what Python gets, what the command gets, what both must name."""

    x: object = None  # for fit: an array, a list or a path (arrays go to the command as .npy)
    match: str = ""  # a regex both messages match: the parameter or the file
    params: dict = field(default_factory=dict)  # TSimCNE parameters ...
    flags: list = field(default_factory=list)  # ... and the same as flags
    y: object = None  # labels: Python's y, the command's --labels FILE
    cli_x: object = None  # what the command reads, when it differs from x
    load: object = None  # a model file: TSimCNE.load in Python, 'simcne transform' here
    checkpoint_from: object = None  # images a checkpoint at --out was written for
    unreadable: bool = False  # opening x fails with EACCES (simulated: tests run as root)


def _png(path, w, h):
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0,
                                                                     0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def _npy(d, name, a):
    np.save(d / name, a)
    return d / name


def _cut(path, keep):
    """The first ``keep`` bytes (a fraction when < 1) of a file, under a new name."""
    data = path.read_bytes()
    out = path.with_name("cut-" + path.name)
    out.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    return out


def _idx(d, name, shape, payload):
    head = bytes([0, 0, 8, len(shape)]) + b"".join(s.to_bytes(4, "big") for s in shape)
    (d / name).write_bytes(head + payload)
    return d / name


def _cifar_tar(d):
    data = pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]})
    path = d / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def _folder(d, name, files):
    (d / name).mkdir()
    for fname, content in files.items():
        if callable(content):
            content(d / name / fname)
        else:
            (d / name / fname).write_bytes(content)
    return d / name


def _image(a):
    from PIL import Image

    return lambda p: Image.fromarray(a).save(p)


def _empty(path):
    path.write_bytes(b"")
    return path


def _setup(d: Path) -> None:
    """The files that several entries cut or point to."""
    huge_npy = d / "huge.npy"
    with open(huge_npy, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 10**5, 10**5)})
    np.savez(d / "x.npz", images=X)
    write_beton(X, d / "x.beton")
    with gzip.open(d / "gz-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3]) + b"".join(s.to_bytes(4, "big") for s in X.shape)
                + X.tobytes())
    (d / "notes.txt").write_text("not a model")
    torch.save({"format": "something.else", "version": 1}, d / "other-format.pt")
    torch.save({"format": "simcne.TSimCNE", "version": 99}, d / "newer.pt")
    from simcne.models import make_backbone

    torch.save(make_backbone("resnet_tiny", 1).state_dict(), d / "tiny-weights.pt")


def _cases(d: Path) -> dict:
    """The table (paths under ``d``; files are made when an entry's lambda runs)."""
    return {
        "empty array": Bad(np.zeros((0, 8, 8), np.uint8), r"holds no images"),
        "one image": Bad(X[:1], r"1 image.*at least 2"),
        "NaN": Bad(np.full((4, 8, 8), np.nan, np.float32), r"NaN or infinite"),
        "inf": Bad(np.full((4, 8, 8), np.inf, np.float32), r"NaN or infinite"),
        "floats 0-255": Bad(X.astype(np.float32), r"float pixels must lie in \[0, 1\]"),
        "negative integers": Bad(np.full((4, 8, 8), -1, np.int16),
                                 r"integer pixels must lie in 0-255"),
        "dtype str": Bad(np.full((4, 8, 8), "a"), r"dtype <U1"),
        "dtype complex": Bad(np.zeros((4, 8, 8), np.complex64), r"dtype complex64"),
        "dtype bool": Bad(np.zeros((4, 8, 8), bool), r"dtype bool"),
        "2-D array": Bad(np.zeros((8, 8), np.uint8), r"shape \(8, 8\)"),
        "5-D array": Bad(np.zeros((2, 2, 8, 8, 3), np.uint8), r"shape \(2, 2, 8, 8, 3\)"),
        "4 channels": Bad(np.zeros((4, 8, 8, 4), np.uint8), r"C = 1 or 3"),
        "zero-height images": Bad(np.zeros((4, 0, 8), np.uint8), r"height 0"),
        "mixed-size list": Bad([X[0], np.zeros((9, 9), np.uint8)], r"\[1\] has shape|differ in",
                               cli_x=lambda: _folder(d, "mixed", {
                                   "a.png": _image(X[0]),
                                   "b.png": _image(np.zeros((9, 9), np.uint8))})),
        "labels of the wrong length": Bad(X, r"labels.*(one entry per image|has 3 labels)",
                                          y=np.arange(3)),
        "truncated .npy": Bad(lambda: _cut(_npy(d, "x.npy", X), 200), r"cut-x\.npy"),
        "zero-byte .npy": Bad(lambda: _cut(_npy(d, "z.npy", X), 0), r"cut-z\.npy"),
        "truncated .npz": Bad(lambda: _cut(d / "x.npz", 0.5), r"cut-x\.npz"),
        "zero-byte .npz": Bad(lambda: _cut(d / "x.npz", 0), r"cut-x\.npz"),
        "truncated .beton": Bad(lambda: _cut(d / "x.beton", 0.5), r"cut-x\.beton"),
        "truncated .tar.gz": Bad(lambda: _cut(_cifar_tar(d), 0.5),
                                 r"cut-cifar-10-python\.tar\.gz"),
        "truncated IDX": Bad(lambda: _idx(d, "train-images-idx3-ubyte", X.shape,
                                          X.tobytes()[:500]), r"train-images-idx3-ubyte"),
        "truncated IDX .gz": Bad(lambda: _cut(d / "gz-images-idx3-ubyte.gz", 0.5),
                                 r"cut-gz-images-idx3-ubyte\.gz"),
        "zero-byte IDX": Bad(lambda: _empty(d / "z-images-idx3-ubyte"), r"z-images-idx3-ubyte"),
        "folder of non-images": Bad(lambda: _folder(d, "texts", {"a.txt": b"x", "b.csv": b"1"}),
                                    r"texts' holds no image files"),
        "zero-byte image file": Bad(lambda: _folder(d, "zero", {"a.png": _image(X[0]),
                                                                "b.png": b""}), r"b\.png"),
        "unreadable file": Bad(lambda: _npy(d, "locked.npy", X), r"locked\.npy",
                               unreadable=True),
        "enormous IDX header": Bad(lambda: _idx(d, "huge-images-idx3-ubyte",
                                                (2**31, 2**16, 2**16), b"\0" * 64),
                                   r"huge-images-idx3-ubyte"),
        "enormous .npy header": Bad(lambda: d / "huge.npy", r"huge\.npy"),
        "enormous PNG": Bad(lambda: _folder(d, "bomb", {"a.png": lambda p: _png(p, 10**5, 10**5),
                                                        "b.png": _image(X[0])}), r"a\.png"),
        "out_dim=0": Bad(X, r"out_dim", params=dict(out_dim=0), flags=["--out-dim", "0"]),
        "negative epochs": Bad(X, r"total_epochs", params=dict(total_epochs=[-1]),
                               flags=["--total-epochs", "-1"]),
        "batch_size=1": Bad(X, r"batch_size", params=dict(batch_size=1),
                            flags=["--batch-size", "1"]),
        "lr=0": Bad(X, r"\blr\b", params=dict(lr=0.0), flags=["--lr", "0"]),
        "device cuda without CUDA": Bad(X, r"device|CUDA", params=dict(device="cuda"),
                                        flags=["--device", "cuda"]),
        "normalize for 2 channels, images of 1": Bad(
            X, r"'normalize'.*Got \(\[0\.5, 0\.5\], \[0\.2, 0\.2\]\)",
            params=dict(normalize=([0.5, 0.5], [0.2, 0.2])),
            flags=["--normalize", "0.5", "0.5", "0.2", "0.2"]),
        "normalize with an odd count of numbers": Bad(
            X, r"normalize", params=dict(normalize=(0.5,)), flags=["--normalize", "0.5"]),
        "weights of another architecture": Bad(
            X, r"tiny-weights\.pt' does not fit backbone 'resnet_small'",
            params=dict(backbone_weights=str(d / "tiny-weights.pt")),
            flags=["--backbone-weights", str(d / "tiny-weights.pt")]),
        "text file as weights": Bad(X, r"notes\.txt' cannot be read as weights",
                                    params=dict(backbone_weights=str(d / "notes.txt")),
                                    flags=["--backbone-weights", str(d / "notes.txt")]),
        "text file as init": Bad(X, r"'init'.*notes\.txt",
                                 params=dict(init=str(d / "notes.txt")),
                                 flags=["--init", str(d / "notes.txt")]),
        "weights as init": Bad(X, r"'init'.*tiny-weights\.pt.*not a simcne model file",
                               params=dict(init=str(d / "tiny-weights.pt")),
                               flags=["--init", str(d / "tiny-weights.pt")]),
        "model file of another format": Bad(load=d / "other-format.pt",
                                            match=r"other-format\.pt' is not a simcne model"),
        "model file of a newer version": Bad(load=d / "newer.pt",
                                             match=r"newer\.pt' was written in .*version 99"),
        "text file as a model": Bad(load=d / "notes.txt", match=r"notes\.txt"),
        "checkpoint from other data": Bad(X, r"checkpoint.pt' is of a run on 20 images, but "
                                             r"fit got 24", checkpoint_from=X[:20]),
    }


CASES = sorted(_cases(Path("data")))


@pytest.fixture
def case(request, tmp_path, monkeypatch):
    d = tmp_path / "inputs"
    d.mkdir()
    _setup(d)
    bad = _cases(d)[request.param]
    if bad.params.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    x = bad.x() if callable(bad.x) else bad.x
    cli_x = bad.cli_x() if callable(bad.cli_x) else bad.cli_x
    if cli_x is None and isinstance(x, np.ndarray):
        cli_x = _npy(tmp_path, "images.npy", x)
    cli_x = x if cli_x is None else cli_x
    if bad.unreadable:
        real_open, locked = builtins.open, os.fspath(x)

        def no_access(file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and os.fspath(file) == locked:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), locked)
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", no_access)
    return bad, x, cli_x


def _checkpoint_for(images, path):
    """A checkpoint of the run the command would make, stopped after one epoch."""
    TSimCNE(**BASE, checkpoint=str(path), callbacks=lambda *a: True).fit(images)
    assert path.is_file()


@pytest.mark.parametrize("case", CASES, indirect=True)
def test_python_refuses_with_a_message_naming_the_problem(case, tmp_path):
    bad, x, _ = case
    if bad.load is not None:
        with pytest.raises(ValueError, match=bad.match):
            TSimCNE.load(bad.load)
        return
    params = dict(BASE, **bad.params)
    if bad.checkpoint_from is not None:
        params["checkpoint"] = str(tmp_path / "checkpoint.pt")
        _checkpoint_for(bad.checkpoint_from, tmp_path / "checkpoint.pt")
    with pytest.raises((ValueError, OSError), match=bad.match) as info:
        TSimCNE(**params).fit(x, bad.y)
    assert not isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("case", CASES, indirect=True)
def test_the_command_says_one_line_and_writes_nothing(case, tmp_path, capsys):
    bad, _, cli_x = case
    out = tmp_path / "out"
    if bad.load is not None:
        argv = ["transform", str(bad.load), str(_npy(tmp_path, "x.npy", X)), "--out",
                str(out / "y.npy"), "--quiet"]
    else:
        argv = ["fit", str(cli_x), "--out", str(out), *FLAGS, *bad.flags]
        if bad.y is not None:
            np.save(tmp_path / "labels.npy", bad.y)
            argv += ["--labels", str(tmp_path / "labels.npy")]
    if bad.checkpoint_from is not None:
        _checkpoint_for(bad.checkpoint_from, out / "checkpoint.pt")
    before = {p.name: p.read_bytes() for p in out.iterdir()} if out.exists() else None
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("simcne: error: ") and "Traceback" not in captured.err
    assert re.search(bad.match, lines[0]), lines[0]
    after = {p.name: p.read_bytes() for p in out.iterdir()} if out.exists() else None
    assert after == before  # nothing written, nothing changed


def test_there_are_at_least_25_bad_inputs():
    assert len(CASES) >= 25


# -- property-based: the array readers ---------------------------------------------------------
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

FAST = settings(max_examples=60, deadline=None, derandomize=True)


@st.composite
def valid_images(draw):
    """(array, expected uint8 (N, C, H, W)) for every layout and pixel type the readers take."""
    n, h, w = draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    c = draw(st.sampled_from([None, 1, 3]))
    shape = (n, h, w) if c is None else (n, h, w, c)
    u8 = draw(hnp.arrays(np.uint8, shape))
    kind = draw(st.sampled_from(["uint8", "int16", "int64", "uint16", "float32", "float64"]))
    if kind.startswith("float"):
        x = (u8 / 255.0).astype(kind)
        expected = np.rint(x.astype(np.float64) * 255.0).astype(np.uint8)
    else:
        x, expected = u8.astype(kind), u8
    expected = expected[:, None] if c is None else expected.transpose(0, 3, 1, 2)
    return x, expected


@FAST
@given(valid_images(), st.booleans())
def test_any_valid_array_round_trips_to_the_uint8_store(case, via_file):
    x, expected = case
    if via_file:
        with tempfile.TemporaryDirectory() as d:
            np.save(Path(d) / "x.npy", x)
            store = load(str(Path(d) / "x.npy")) if len(x) >= 2 else from_array(x)
            got = store.batch(np.arange(len(store))).numpy()
    else:
        store = from_array(x)
        got = store.batch(np.arange(len(store))).numpy()
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


ANY_DTYPE = st.sampled_from([np.uint8, np.int8, np.int16, np.uint16, np.int32, np.int64,
                             np.uint64, np.float16, np.float32, np.float64, np.complex64,
                             np.bool_, "U2", "S2", "M8[s]", "m8[s]"])


@FAST
@given(hnp.arrays(ANY_DTYPE, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0,
                                               max_side=4)))
def test_any_array_gives_a_store_or_a_value_error(x):
    for candidate in (x, _as_tensor(x)):
        if candidate is None:
            continue
        try:
            store = from_array(candidate)
        except ValueError:
            continue
        assert len(store) >= 1 and store.channels in (1, 3) and min(store.image_size) >= 1
        assert store.batch(np.arange(len(store))).dtype == torch.uint8


def _as_tensor(x):
    try:
        return torch.from_numpy(np.ascontiguousarray(x))
    except TypeError:  # dtypes torch has no tensor for
        return None


@FAST
@given(hnp.arrays(ANY_DTYPE, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0,
                                               max_side=4)))
def test_any_npy_file_gives_a_store_or_a_value_error(x):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.npy"
        np.save(path, x)
        try:
            store = load(str(path))
        except ValueError:
            return
        assert len(store) >= 2 and store.batch(np.arange(len(store))).dtype == torch.uint8


TORCH_DTYPES = st.sampled_from([torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                                torch.float16, torch.bfloat16, torch.float32, torch.float64,
                                torch.bool, torch.complex64])


@FAST
@given(hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4), TORCH_DTYPES,
       st.sampled_from([1.0, 255.0, -1.0, float("nan")]), st.integers(0, 2**16))
def test_any_tensor_gives_a_store_or_a_value_error(shape, dtype, scale, seed):
    g = torch.Generator().manual_seed(seed)
    t = (torch.rand(shape, generator=g) * scale).to(dtype)
    try:
        store = from_array(t)
    except ValueError:
        return
    assert len(store) >= 1 and store.channels in (1, 3) and min(store.image_size) >= 1
    assert store.batch(np.arange(len(store))).dtype == torch.uint8
