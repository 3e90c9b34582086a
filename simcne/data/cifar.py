"""CIFAR-10 and CIFAR-100 "python version" batches, as the extracted folder or the .tar.gz.

The batches are pickles of dicts holding a (n, 3072) uint8 numpy array (``data``: 1024 red,
then green, then blue values of a 32x32 image, row by row), label lists and file names.
They are read with :class:`SafeUnpickler`, which builds only dicts, lists, tuples, bytes,
str, numbers and plain numeric numpy arrays: any other object in the pickle is refused.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from .common import check_labels, check_split
from .store import ImageStore

_CIFAR10 = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_CIFAR100 = {"train": ["train"], "test": ["test"]}
_TAR_ROOTS = ("cifar-10-batches-py", "cifar-100-python")
_DTYPES = {"b1", "u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8"}


class _ArrayState:
    """Stands for numpy's ``_reconstruct(ndarray, shape, typecode)``; BUILD fills it."""

    def __init__(self, *args):
        self.state = None

    def __setstate__(self, state):
        self.state = state


class _Dtype:
    """Stands for ``numpy.dtype(spec, align, copy)`` with the byte order set by BUILD."""

    def __init__(self, spec, *args):
        spec = spec.decode("latin1") if isinstance(spec, bytes) else spec
        if not isinstance(spec, str) or spec.lstrip("<>|=") not in _DTYPES:
            raise pickle.UnpicklingError(f"refusing numpy dtype {spec!r} in a CIFAR pickle")
        self.spec, self.order = spec, "="

    def __setstate__(self, state):
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else "|"
        self.order = order.decode("latin1") if isinstance(order, bytes) else str(order)

    def dtype(self) -> np.dtype:
        order = self.order if self.order in "<>|=" else "="
        return np.dtype(self.spec if self.spec[0] in "<>|=" else order + self.spec)


class _NDArrayMarker:
    """Stands for ``numpy.ndarray``, which a data pickle only names, never calls."""


def _frombuffer(buf, dtype, shape, order):
    return _finish_array(buf, dtype, shape, order == "F")


def _finish_array(raw, dtype, shape, fortran) -> np.ndarray:
    if isinstance(raw, str):
        raw = raw.encode("latin1")
    if not isinstance(dtype, _Dtype) or not isinstance(raw, (bytes, bytearray)):
        raise pickle.UnpicklingError("refusing a numpy array that is not plain numeric data")
    dt = dtype.dtype()
    shape = tuple(int(s) for s in shape)
    if min(shape, default=0) < 0 or math.prod(shape) * dt.itemsize != len(raw):
        raise pickle.UnpicklingError(f"numpy array of shape {shape} has {len(raw)} bytes")
    return np.frombuffer(raw, dt).reshape(shape, order="F" if fortran else "C")


def _encode(text, encoding="latin1"):
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError("refusing codecs.encode with other arguments")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _ArrayState,
    ("numpy._core.multiarray", "_reconstruct"): _ArrayState,
    ("numpy", "ndarray"): _NDArrayMarker,
    ("numpy", "dtype"): _Dtype,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _encode,
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler for data files: builtin containers and plain numeric numpy arrays only.

    Dicts, lists, tuples, bytes, str, ints and floats come from pickle's own opcodes; the
    only globals resolved are numpy's array and dtype reconstructors (and ``_codecs.encode``
    for bytes in protocol 2), each replaced by a stand-in that builds nothing but a
    ``np.frombuffer`` of a numeric dtype. Anything else raises ``pickle.UnpicklingError``.
    """

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: data pickles may hold only builtin "
                "containers, strings, numbers and numeric arrays"
            ) from None


def safe_unpickle(data: bytes):
    """Unpickle ``data`` with :class:`SafeUnpickler`; dict keys that are bytes become str."""
    return _clean(SafeUnpickler(io.BytesIO(data), encoding="bytes").load())


def _clean(obj):
    if isinstance(obj, _ArrayState):
        state = obj.state
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("refusing a numpy array with an unknown state")
        _, shape, dtype, fortran, raw = state
        return _finish_array(raw, dtype, shape, bool(fortran))
    if isinstance(obj, dict):
        return {_key(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clean(v) for v in obj)
    if isinstance(obj, _Dtype):
        raise pickle.UnpicklingError("refusing a bare numpy dtype")
    return obj


def _key(k):
    return k.decode("latin1") if isinstance(k, bytes) else k


def _text(x) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


def is_cifar_folder(p: Path) -> bool:
    return (p / "batches.meta").is_file() or (
        (p / "meta").is_file() and ((p / "train").is_file() or (p / "test").is_file())
    )


def is_cifar_tar(p: Path) -> bool:
    """True for cifar-10/100-python archives: by name, else by the archive's first member."""
    if p.name.lower().startswith(("cifar-10-python", "cifar-100-python")):
        return True
    try:
        with tarfile.open(p, "r|*") as tar:
            first = tar.next()
    except (tarfile.TarError, OSError, EOFError):
        return False
    return first is not None and first.name.split("/")[0] in _TAR_ROOTS


def _read_members(p: Path, names: set[str]) -> dict[str, bytes]:
    """The files called ``names`` (by base name) from a folder or, in one pass, a tar."""
    if p.is_dir():
        return {n: (p / n).read_bytes() for n in names if (p / n).is_file()}
    out = {}
    try:
        with tarfile.open(p, "r|*") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in names and base not in out:
                    out[base] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ValueError(
            f"The archive {os.fspath(p)!r} is corrupt: expected a readable tar, got {err}."
        ) from err
    return out


def read_cifar(path, split: str | None = None, label_type: str = "fine") -> ImageStore:
    """Read CIFAR-10 or CIFAR-100 (python version) with labels and class names.

    Parameters
    ----------
    path : str or os.PathLike
        The extracted folder (``cifar-10-batches-py`` with ``data_batch_1`` ... ``_5``,
        ``test_batch``, ``batches.meta``; or ``cifar-100-python`` with ``train``, ``test``,
        ``meta``) or the downloaded archive (``cifar-10-python.tar.gz``,
        ``cifar-100-python.tar.gz``), read in one pass without extracting it.
    split : {"train", "test", "all"}, default=None
        ``None`` is ``"all"``: the 50,000 training images followed by the 10,000 test
        images, as the t-SimCNE paper maps the whole dataset.
    label_type : {"fine", "coarse"}, default="fine"
        CIFAR-100's 100 fine classes or 20 coarse superclasses (CIFAR-10: "fine" only).

    Returns
    -------
    ImageStore
        (N, 3, 32, 32) uint8 images ("NCHW"), int64 labels, class names, and the original
        file names as ``paths``; ``meta["splits"]`` counts the images of each split.
    """
    p = Path(path)
    where = repr(os.fspath(p))
    split = check_split(split, where)
    if label_type not in ("fine", "coarse"):
        raise ValueError(
            f"The 'label_type' parameter must be 'fine' or 'coarse', got {label_type!r}."
        )
    splits = ["train", "test"] if split == "all" else [split]
    wanted = {"batches.meta", "meta"}
    wanted |= {n for t in (_CIFAR10, _CIFAR100) for s in splits for n in t[s]}
    files = _read_members(p, wanted)
    kind, layout, label_key, names_key = _which_cifar(files, label_type, where)
    meta = _unpickle(files["meta" if kind == "cifar100" else "batches.meta"], p, "meta")
    class_names = [_text(c) for c in meta[names_key]]
    images, labels, paths, counts = [], [], [], {}
    for s in splits:
        names = [n for n in layout[s] if n in files]
        if not names or (s == "test" and len(names) < len(layout[s])):
            raise FileNotFoundError(
                f"The CIFAR data at {where} lacks its {s} split: expected "
                f"{', '.join(layout[s])}, got {sorted(files)}."
            )
        counts[s] = 0
        for n in names:
            x, y, names_in = _read_batch(files.pop(n), p, n, label_key)
            images.append(x)
            labels.append(y)
            paths += names_in
            counts[s] += len(x)
    store = ImageStore(np.concatenate(images), np.concatenate(labels), "NCHW", class_names, paths)
    bad = store.labels[(store.labels < 0) | (store.labels >= len(class_names))]
    if len(bad):
        raise ValueError(
            f"The CIFAR labels in {where} are out of range: expected 0 to "
            f"{len(class_names) - 1}, got {int(bad[0])}."
        )
    store.meta.update(format=kind, split=split, splits=counts, label_type=label_type)
    return store


def _which_cifar(files: dict, label_type: str, where: str):
    """CIFAR-10 or CIFAR-100, from the meta file among ``files``: ``(kind, layout, key of
    the labels, key of the class names)``."""
    if "batches.meta" in files:
        if label_type != "fine":
            raise ValueError(
                f"The 'label_type' parameter for CIFAR-10 ({where}) must be 'fine', the only "
                f"labels it has, got {label_type!r}."
            )
        return "cifar10", _CIFAR10, "labels", "label_names"
    if "meta" in files:
        return "cifar100", _CIFAR100, f"{label_type}_labels", f"{label_type}_label_names"
    raise ValueError(
        f"The path {where} holds no CIFAR batches: expected batches.meta (CIFAR-10) or "
        f"meta (CIFAR-100), got {sorted(files) or 'neither'}."
    )


def _read_batch(raw: bytes, p: Path, n: str, label_key: str):
    """One pickled batch ``n``: its (k, 3, 32, 32) images, labels and file names (or
    ``n/i`` where it has none)."""
    where = repr(os.fspath(p))
    batch = _unpickle(raw, p, n)
    data = np.asarray(batch.get("data"))
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise ValueError(
            f"The CIFAR batch {n!r} in {where} has bad data: expected a (n, 3072) "
            f"uint8 array, got {data.dtype} of shape {data.shape}."
        )
    labels = check_labels(batch.get(label_key), len(data), f"{where} batch {n!r}")
    names = [_text(f) for f in batch.get("filenames", [])]
    names = names if len(names) == len(data) else [f"{n}/{i}" for i in range(len(data))]
    return data.reshape(-1, 3, 32, 32), labels, names


def _unpickle(data: bytes, p: Path, name: str) -> dict:
    try:
        obj = safe_unpickle(data)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, RecursionError) as err:  # fmt: skip
        raise ValueError(
            f"The CIFAR file {name!r} in {os.fspath(p)!r} is not a valid data pickle: {err}"
        ) from err
    if not isinstance(obj, dict):
        raise ValueError(
            f"The CIFAR file {name!r} in {os.fspath(p)!r} has bad content: expected a dict, "
            f"got {type(obj).__name__}."
        )
    return obj
