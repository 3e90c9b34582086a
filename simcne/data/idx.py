"""MNIST-style IDX files (``*-images-idx3-ubyte`` with ``*-labels-idx1-ubyte``), gzipped or not.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), then one big-endian uint32 per dimension, then the values, big-endian, in C
order. Type codes: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import zlib
from pathlib import Path

import numpy as np

from .arrays import array_store
from .common import check_labels, check_split
from .store import ImageStore

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_NAME = re.compile(r"idx\d-ubyte(\.gz)?$", re.IGNORECASE)
_SPLITS = {"train": ("train",), "test": ("t10k", "test")}


def is_idx_name(name: str) -> bool:
    """True for names like ``train-images-idx3-ubyte``, ``t10k-labels.idx1-ubyte.gz``."""
    return bool(_NAME.search(name))


def is_idx_magic(head: bytes) -> bool:
    return len(head) == 4 and head[:2] == b"\0\0" and head[2] in _TYPES and 1 <= head[3] <= 4


def is_idx_gz(path) -> bool:
    try:
        with gzip.open(path, "rb") as f:
            return is_idx_magic(f.read(4))
    except (OSError, EOFError, zlib.error):
        return False


def read_idx_array(path, *, mmap: bool = True) -> np.ndarray:
    """The array in one IDX file; an uncompressed uint8 file is returned memory-mapped."""
    p = Path(path)
    where = repr(os.fspath(p))
    gz = p.name.lower().endswith(".gz") or _is_gzip(p)
    try:
        if gz:
            with gzip.open(p, "rb") as f:
                data = f.read()
        else:
            with open(p, "rb") as f:
                data = f.read(4 + 4 * 4)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"The IDX file {where} is corrupt: cannot decompress it ({err}).") from err
    if not is_idx_magic(data[:4]):
        raise ValueError(
            f"The file {where} is not an IDX file: expected the magic bytes 00 00 <type> <ndim>, "
            f"got {data[:4].hex(' ') or 'an empty file'}."
        )
    dtype, ndim = np.dtype(_TYPES[data[2]]), data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise ValueError(f"The IDX file {where} is truncated: its header is cut short.")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    got = (len(data) if gz else p.stat().st_size) - offset
    if got != expected:
        raise ValueError(
            f"The IDX file {where} has the wrong size: expected {expected} bytes of data for "
            f"shape {shape}, got {got}."
        )
    if gz:
        return np.frombuffer(data, dtype, offset=offset).reshape(shape)
    if mmap and dtype.itemsize == 1:
        return np.memmap(p, dtype.newbyteorder("="), "r", offset, shape)
    return np.fromfile(p, dtype, offset=offset).reshape(shape)


def _is_gzip(p: Path) -> bool:
    with open(p, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def labels_file_for(images: Path) -> Path | None:
    """The labels file next to an images file by the standard naming, or None.

    ``train-images-idx3-ubyte[.gz]`` pairs with ``train-labels-idx1-ubyte[.gz]`` (either
    compression), likewise ``t10k-...`` and the ``train-images.idx3-ubyte`` spelling.
    """
    name = images.name.replace("images", "labels").replace("idx3", "idx1")
    base = name[:-3] if name.lower().endswith(".gz") else name
    for candidate in (name, base, base + ".gz"):
        q = images.with_name(candidate)
        if candidate != images.name and q.is_file():
            return q
    return None


def read_idx(path) -> ImageStore:
    """Read an IDX images file and, when it is next to it, its labels file.

    Parameters
    ----------
    path : str or os.PathLike
        ``*-images-idx3-ubyte`` or ``*-images-idx3-ubyte.gz``. The labels are read from the
        file named by :func:`labels_file_for`; without one the store has no labels.

    Returns
    -------
    ImageStore
        (N, 1, H, W) uint8 images. An uncompressed file stays memory-mapped; a gzipped
        one is decompressed into memory once.
    """
    p = Path(path)
    x = read_idx_array(p)
    if x.ndim == 1:
        raise ValueError(
            f"The IDX file {os.fspath(p)!r} holds labels (1-D, shape {x.shape}): expected an "
            "images file (idx3-ubyte); pass the images file or the folder."
        )
    lab = labels_file_for(p)
    y = None
    if lab is not None:
        y = read_idx_array(lab, mmap=False)
        where = repr(os.fspath(lab))
        if y.ndim != 1:
            raise ValueError(f"The labels file {where} must be 1-D: expected (N,), got {y.shape}.")
        y = check_labels(y, len(x), f"{where} (for {os.fspath(p)!r})")
    if x.ndim == 3 and isinstance(x, np.memmap):
        x = x[:, None]
    store = array_store(x, repr(os.fspath(p)), y)
    store.meta.update(format="idx", files=[os.fspath(p)] + ([os.fspath(lab)] if lab else []))
    return store


def find_idx_images(folder) -> dict[str, Path]:
    """The IDX images files in ``folder`` by split: ``{"train": ..., "test": ...}``.

    ``train-*`` is the train split, ``t10k-*`` or ``test-*`` the test split; an
    uncompressed file is preferred to its .gz twin (it can be memory-mapped).
    """
    found: dict[str, Path] = {}
    with os.scandir(folder) as it:  # names first: a folder of 100,000 images costs no stat
        named = [e for e in it if is_idx_name(e.name.lower()) and "idx3" in e.name.lower()]
    for e in sorted(named, key=lambda e: e.name.lower().endswith(".gz")):
        name = e.name.lower()
        if not e.is_file():
            continue
        for split, prefixes in _SPLITS.items():
            if name.startswith(prefixes):
                found.setdefault(split, Path(folder, e.name))
    return found


def read_idx_folder(folder, split: str | None = None) -> ImageStore:
    """Read the IDX files of a folder such as an extracted MNIST or Fashion-MNIST.

    Parameters
    ----------
    folder : str or os.PathLike
        Holds ``train-images-idx3-ubyte[.gz]`` and/or ``t10k-images-idx3-ubyte[.gz]``
        with their labels files.
    split : {"train", "test", "all"}, default=None
        ``None`` is ``"all"``: train then test, concatenated in memory. A single split of
        uncompressed files stays memory-mapped.
    """
    p = Path(folder)
    where = repr(os.fspath(p))
    split = check_split(split, where)
    found = find_idx_images(p)
    wanted = ["train", "test"] if split == "all" else [split]
    missing = [s for s in wanted if s not in found]
    if missing:
        raise FileNotFoundError(
            f"The folder {where} has no {' or '.join(missing)} IDX images: expected "
            f"{' and '.join(_SPLITS[s][0] + '-images-idx3-ubyte[.gz]' for s in missing)}, "
            f"got {sorted(q.name for q in found.values()) or 'none'}."
        )
    parts = [read_idx(found[s]) for s in wanted]
    store = parts[0]
    if len(parts) > 1:
        if len({part.images.shape[1:] for part in parts}) > 1:
            raise ValueError(
                f"The IDX splits in {where} differ in image shape: expected one shape, got "
                f"{[tuple(part.images.shape[1:]) for part in parts]}."
            )
        has = all(part.labels is not None for part in parts)
        store = ImageStore(
            np.concatenate([np.asarray(part.images) for part in parts]),
            np.concatenate([part.labels for part in parts]) if has else None,
            parts[0].layout,
        )
    store.meta.update(
        format="idx", split=split, splits={s: len(part) for s, part in zip(wanted, parts)},
        files=[f for part in parts for f in part.meta["files"]],
    )
    return store
