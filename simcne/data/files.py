"""Read a path into one uint8 :class:`ImageStore`: dispatch by suffix and content, plus .npy/.npz.

``read_path`` is the one entry point; each format lives in its own module (``folder``,
``idx``, ``cifar``, ``beton``) and the built-in datasets in ``datasets``.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import cifar, idx
from .arrays import array_store
from .store import ImageStore

NPZ_IMAGE_KEYS = ("images", "x", "X", "data")
NPZ_LABEL_KEYS = ("labels", "y", "targets")
NPZ_CLASS_KEYS = ("class_names", "classes")


def read_path(path, *, image_size=None, skip_corrupt: bool = False, split: str | None = None,
              label_type: str = "fine", workers: int | None = None, mixed_size=None,
              cache=None, **options) -> ImageStore:
    """Read a file, a folder or a built-in dataset name into an :class:`ImageStore`.

    The path decides the reader (an existing path wins over a built-in name):

    ========================================  =============================================
    path                                      reader
    ========================================  =============================================
    ``*.npy``                                 :func:`read_npy` (memory-mapped)
    ``*.npz``                                 :func:`read_npz`
    ``*-idx3-ubyte``, ``*.idx3-ubyte[.gz]``   :func:`simcne.data.idx.read_idx`
    ``*.beton``                               ``simcne.data.beton.read_beton``
    ``cifar-*-python.tar.gz`` (or any tar     :func:`simcne.data.cifar.read_cifar`
    holding CIFAR batches)
    a folder with CIFAR batches               :func:`simcne.data.cifar.read_cifar`
    a folder with ``*-idx3-ubyte[.gz]``       :func:`simcne.data.idx.read_idx_folder`
    any other folder                          :func:`simcne.data.folder.read_folder`
    a built-in name (``"digits"``, ...)       :func:`simcne.data.datasets.load_dataset`
    ========================================  =============================================

    A file without a known suffix is recognised by its first bytes (IDX magic, npy magic,
    zip, gzip).

    Parameters
    ----------
    path : str or os.PathLike
        File, folder or built-in dataset name.
    image_size : int or (int, int), optional
        Image folders and ``.beton`` files: the (H, W) every image is brought to (see
        :func:`~simcne.data.folder.read_folder`).
    skip_corrupt : bool, default=False
        Image folders only: skip undecodable files with a warning instead of failing.
    split : {"train", "test", "all"}, optional
        CIFAR, IDX folders and built-in datasets: which split to read. ``None`` means
        ``"all"`` (train followed by test), as the t-SimCNE paper maps whole datasets.
    label_type : {"fine", "coarse"}, default="fine"
        CIFAR-100 only: the 100 fine or the 20 coarse labels.
    workers : int, optional
        Image folders only: decoding threads (``None``: up to 8, one per CPU core).
    mixed_size : int or (int, int), optional
        Image folders and ``.beton`` files: the size to bring the images to only when they
        differ in size and ``image_size`` is None. ``TSimCNE(image_size=...)`` passes its own.
    cache : None, False or str or os.PathLike, default=None
        The decode-once cache (:mod:`simcne.data.cache`): a source that is not memory-mapped
        already (an image folder, a JPEG ``.beton``, gzipped IDX, CIFAR, a compressed
        ``.npz``, a float ``.npy``) is read once into a uint8 file in this folder, which
        later reads of the same files with the same options map. None: the default folder
        (``$SIMCNE_CACHE/stores``, else ``$XDG_CACHE_HOME/simcne/stores``, else
        ``~/.cache/simcne/stores``); False: into memory, no file. Built-in names: no cache.
    **options
        Passed on to ``simcne.data.beton.read_beton`` and
        :func:`~simcne.data.datasets.load_dataset` (e.g. ``root=``, ``download=``).

    Returns
    -------
    ImageStore
        uint8 images with labels, class names and file names where the format has them;
        ``store.meta`` says what was read (``"source"``, ``"format"``, ``"split"`` ...).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist and is no built-in dataset name.
    ValueError
        If the file type is unknown, a file is corrupt, or fewer than 2 images are read.
    """
    p = Path(path)
    given = dict(image_size=image_size, skip_corrupt=skip_corrupt, split=split,
                 label_type=label_type, workers=workers, **options)
    if not p.exists():
        return _at_least_two(_builtin(path, given), p)
    reader = find_reader(p)
    kwargs = _check_options(p, given, reader.options, reader.more)
    if "mixed_size" in reader.options and mixed_size is not None and image_size is None:
        kwargs["mixed_size"] = mixed_size  # formats whose images share one size ignore it
    from .cache import read_cached

    return _at_least_two(read_cached(p, reader, kwargs, cache), p)


def _builtin(path, given: dict) -> ImageStore:
    """The built-in dataset that ``path`` names (it is no existing path)."""
    from .datasets import DATASETS, load_dataset, resolve_name

    name = resolve_name(os.fspath(path)) if isinstance(path, str) else None
    if name is None:
        raise FileNotFoundError(
            f"The path {os.fspath(path)!r} does not exist: expected an existing file or "
            f"folder, or a built-in dataset name ({', '.join(DATASETS)})."
        )
    kwargs = _check_options(Path(path), given, ("split",), more=True)
    return load_dataset(name, **kwargs)


@dataclass(frozen=True)
class Reader:
    """One input format: how a path is recognised, how it is read, which options it takes.

    ``by_name(p)`` recognises it from the path (suffix, folder contents), ``by_content(p,
    head)`` from a file's first bytes; ``options`` are the reader options of
    :func:`read_path` it takes, and ``more`` says whether it takes further keywords of its
    own (passed on to it). ``read(p, **options)`` returns an :class:`ImageStore`.
    """

    kind: str
    read: Callable[..., ImageStore]
    options: tuple[str, ...] = ()
    more: bool = False
    by_name: Callable[[Path], bool] = lambda p: False
    by_content: Callable[[Path, bytes], bool] = lambda p, head: False


def _lazy(module: str, function: str) -> Callable[..., ImageStore]:
    """A reader whose module (and its imports: Pillow, ctypes) loads when it first reads."""
    def read(p, **kw):
        import importlib

        return getattr(importlib.import_module(f".{module}", __package__), function)(p, **kw)
    return read


def _is_tar(p: Path) -> bool:
    return p.is_file() and p.name.lower().endswith((".tar.gz", ".tgz", ".tar"))


#: Every format of a path, in the order they are tried: first by name, then by content.
READERS: tuple[Reader, ...] = (
    Reader("cifar", cifar.read_cifar, ("split", "label_type"),
           by_name=lambda p: (p.is_dir() and cifar.is_cifar_folder(p))
           or (_is_tar(p) and cifar.is_cifar_tar(p))),
    Reader("idx-folder", idx.read_idx_folder, ("split",),
           by_name=lambda p: p.is_dir() and bool(idx.find_idx_images(p))),
    Reader("folder", _lazy("folder", "read_folder"),
           ("image_size", "skip_corrupt", "workers", "mixed_size"), by_name=Path.is_dir),
    Reader("beton", _lazy("beton", "read_beton"), ("image_size", "mixed_size"), more=True,
           by_name=lambda p: p.name.lower().endswith(".beton")),
    Reader("npy", lambda p: read_npy(p), by_name=lambda p: p.name.lower().endswith(".npy"),
           by_content=lambda p, head: head.startswith(b"\x93NUMPY")),
    Reader("npz", lambda p: read_npz(p), by_name=lambda p: p.name.lower().endswith(".npz"),
           by_content=lambda p, head: head.startswith(b"PK\x03\x04")),
    Reader("idx", idx.read_idx, by_name=lambda p: idx.is_idx_name(p.name.lower()),
           by_content=lambda p, head: idx.is_idx_magic(head[:4])
           or (head.startswith(b"\x1f\x8b") and idx.is_idx_gz(p))),
)


def find_reader(p: Path) -> Reader:
    """The reader of an existing path: by name first, then by a file's first bytes."""
    for reader in READERS:
        if reader.by_name(p):
            return reader
    if _is_tar(p):
        raise ValueError(
            f"The file {os.fspath(p)!r} is a tar archive without CIFAR batches: expected "
            "cifar-10-python.tar.gz or cifar-100-python.tar.gz (extract other archives first)."
        )
    with open(p, "rb") as f:
        head = f.read(6)
    for reader in READERS:
        if reader.by_content(p, head):
            return reader
    raise ValueError(
        f"The file {os.fspath(p)!r} has an unknown type: expected a folder of images, .npy, "
        ".npz, IDX (*-idx3-ubyte[.gz]), a CIFAR python batch folder or .tar.gz, or .beton; "
        f"got suffix {p.suffix or '(none)'!r}."
    )


#: the reader options of :func:`read_path` and their defaults (meaning "not given")
_DEFAULTS = dict(image_size=None, skip_corrupt=False, split=None, label_type="fine",
                 workers=None)


def _check_options(p: Path, given: dict, takes, more: bool = False) -> dict:
    """The options to pass to the reader of ``p``; one it does not take is refused (when
    given other than its default) rather than ignored."""
    out = {}
    for key, value in given.items():
        if key in takes or (more and key not in _DEFAULTS):
            out[key] = value
        elif key not in _DEFAULTS or value != _DEFAULTS[key]:
            raise ValueError(
                f"The {key!r} parameter does not apply to {os.fspath(p)!r}: expected it only "
                f"for formats that use it, got {key}={value!r}."
            )
    return out


def _at_least_two(store: ImageStore, p: Path) -> ImageStore:
    if len(store) < 2:
        raise ValueError(
            f"The path {os.fspath(p)!r} holds {len(store)} image(s): expected at least 2, "
            "since t-SimCNE contrasts each image with the others as negatives."
        )
    store.meta.setdefault("source", os.fspath(p))
    return store


def read_npy(path) -> ImageStore:
    """Read images from a ``.npy`` file, memory-mapped.

    The file is opened with ``np.load(path, mmap_mode="r")``: a uint8 array stays a read-only
    memory map inside the store, so a file larger than RAM works and is read only when
    batches are taken. Other dtypes (integers 0-255, floats 0-1) are converted to uint8 in one
    chunked pass. Shapes: (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3. A .npy
    holds no labels; pass ``y`` to :func:`simcne.data.load`.
    """
    p = Path(path)
    try:
        x = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError) as err:  # object arrays, bad headers, empty files
        raise ValueError(f"The file {os.fspath(p)!r} is not a readable .npy array: {err}") from err
    store = array_store(x, repr(os.fspath(p)))
    store.meta.update(format="npy")
    return store


def read_npz(path) -> ImageStore:
    """Read images and optional labels from a ``.npz`` archive.

    Keys: the images are the first of ``'images'``, ``'x'``, ``'X'``, ``'data'`` that is
    present (or the only array, when the archive holds one); labels the first of
    ``'labels'``, ``'y'``, ``'targets'``; class names, optionally, ``'class_names'`` or
    ``'classes'`` (an array of strings).

    Members of an uncompressed archive (``np.savez``) are memory-mapped through their offset
    in the zip file, so uint8 images stay on disk as with .npy. Members of a compressed
    archive (``np.savez_compressed``) cannot be memory-mapped: they are decompressed into
    memory once.
    """
    p = Path(path)
    where = repr(os.fspath(p))
    try:
        z = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"The file {where} is not a readable .npz archive: {err}") from err
    with z:
        keys = list(z.files)
        key = next((k for k in NPZ_IMAGE_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
        if key is None:
            raise ValueError(
                f"The archive {where} has no images: expected one of the keys "
                f"{', '.join(NPZ_IMAGE_KEYS)}, got keys {keys}."
            )
        lkey = next((k for k in NPZ_LABEL_KEYS if k in keys), None)
        ckey = next((k for k in NPZ_CLASS_KEYS if k in keys), None)
        try:
            images = _npz_memmap(p, key)
            if images is None:
                images = z[key]
            labels = None if lkey is None else z[lkey]
            class_names = None if ckey is None else [str(c) for c in z[ckey]]
        except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as err:  # a damaged member
            raise ValueError(f"The archive {where} is corrupt: expected readable arrays, got "
                             f"{type(err).__name__}: {err}") from err
        store = array_store(images, f"{where}[{key!r}]", labels)
        if class_names is not None:
            store.class_names = class_names
    store.meta.update(format="npz", mmap=isinstance(store.images, np.memmap))
    return store


def _npz_memmap(p: Path, key: str):
    """Memory-map member ``key``.npy of an uncompressed zip, or None when it cannot be."""
    with zipfile.ZipFile(p) as zf:
        try:
            info = zf.getinfo(key + ".npy")
        except KeyError:
            return None
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(p, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)
            if local[:4] != b"PK\x03\x04":
                return None
            name_len = int.from_bytes(local[26:28], "little")
            extra_len = int.from_bytes(local[28:30], "little")
            start = info.header_offset + 30 + name_len + extra_len
            f.seek(start)
            try:
                version = np.lib.format.read_magic(f)
                if version not in ((1, 0), (2, 0)):
                    return None
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            except ValueError:
                return None
            offset = f.tell()
        if dtype.hasobject or int(np.prod(shape)) == 0:
            return None
        return np.memmap(p, dtype, "r", offset, shape, "F" if fortran else "C")
