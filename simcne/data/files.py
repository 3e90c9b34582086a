"""Read a path into one uint8 :class:`ImageStore`: dispatch by suffix and content, plus .npy/.npz.

``read_path`` is the one entry point; each format lives in its own module (``folder``,
``idx``, ``cifar``, ``beton``) and the built-in datasets in ``datasets``.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .arrays import from_array, to_uint8
from .store import ImageStore

NPZ_IMAGE_KEYS = ("images", "x", "X", "data")
NPZ_LABEL_KEYS = ("labels", "y", "targets")
NPZ_CLASS_KEYS = ("class_names", "classes")
_CHUNK_BYTES = 64 << 20


def read_path(
    path,
    *,
    image_size=None,
    skip_corrupt: bool = False,
    split: str | None = None,
    label_type: str = "fine",
    workers: int | None = None,
    mixed_size=None,
    **options,
) -> ImageStore:
    """Read a file, a folder or a built-in dataset name into an :class:`ImageStore`.

    What is read is decided by the path:

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
    zip, gzip). An existing path always wins over a built-in name of the same spelling.

    Parameters
    ----------
    path : str or os.PathLike
        File, folder or built-in dataset name.
    image_size : int or (int, int), optional
        Image folders only: the (H, W) every image is brought to (see
        :func:`~simcne.data.folder.read_folder`). Passed on to ``.beton`` readers.
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
        differ in size and ``image_size`` is None (formats whose images share one size
        ignore it). ``TSimCNE(image_size=...)`` passes its own.
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
    from . import cifar, idx

    p = Path(path)
    folder_only = dict(image_size=image_size, skip_corrupt=skip_corrupt, workers=workers)
    if not p.exists():
        from .datasets import DATASETS, load_dataset, resolve_name

        name = resolve_name(os.fspath(path)) if isinstance(path, str) else None
        if name is None:
            raise FileNotFoundError(
                f"The path {os.fspath(path)!r} does not exist: expected an existing file or "
                f"folder, or a built-in dataset name ({', '.join(DATASETS)})."
            )
        _no_options(p, **folder_only, label_type=label_type)
        return _at_least_two(load_dataset(name, split=split, **options), p)

    kind = _kind(p)
    if kind == "beton":
        from .beton import read_beton

        if image_size is not None:
            options["image_size"] = image_size
        elif mixed_size is not None:
            options["mixed_size"] = mixed_size
        _no_options(p, skip_corrupt=skip_corrupt, split=split, label_type=label_type)
        store = read_beton(p, **options)
    elif kind == "folder":
        from .folder import read_folder

        _no_options(p, split=split, label_type=label_type, **options)
        store = read_folder(p, image_size=image_size, skip_corrupt=skip_corrupt, workers=workers,
                            mixed_size=mixed_size)
    elif kind == "cifar":
        _no_options(p, **folder_only, **options)
        store = cifar.read_cifar(p, split=split, label_type=label_type)
    else:
        _no_options(p, **folder_only, label_type=label_type, **options)
        if kind == "idx-folder":
            store = idx.read_idx_folder(p, split=split)
        else:
            _no_options(p, split=split)
            store = {"npy": read_npy, "npz": read_npz, "idx": idx.read_idx}[kind](p)
    return _at_least_two(store, p)


def _kind(p: Path) -> str:
    """The reader for an existing path, by suffix first and then by content."""
    from . import cifar, idx

    if p.is_dir():
        if cifar.is_cifar_folder(p):
            return "cifar"
        if idx.find_idx_images(p):
            return "idx-folder"
        return "folder"
    name = p.name.lower()
    if name.endswith(".beton"):
        return "beton"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(".npz"):
        return "npz"
    if idx.is_idx_name(name):
        return "idx"
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        if cifar.is_cifar_tar(p):
            return "cifar"
        raise ValueError(
            f"The file {os.fspath(p)!r} is a tar archive without CIFAR batches: expected "
            "cifar-10-python.tar.gz or cifar-100-python.tar.gz (extract other archives first)."
        )
    with open(p, "rb") as f:
        head = f.read(6)
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04"):
        return "npz"
    if idx.is_idx_magic(head[:4]) or (head.startswith(b"\x1f\x8b") and idx.is_idx_gz(p)):
        return "idx"
    raise ValueError(
        f"The file {os.fspath(p)!r} has an unknown type: expected a folder of images, .npy, "
        ".npz, IDX (*-idx3-ubyte[.gz]), a CIFAR python batch folder or .tar.gz, or .beton; "
        f"got suffix {p.suffix or '(none)'!r}."
    )


def _no_options(p: Path, **given) -> None:
    """Refuse reader options that the format of ``p`` does not use, rather than ignore them."""
    defaults = dict(
        image_size=None, skip_corrupt=False, split=None, label_type="fine", workers=None
    )
    for key, value in given.items():
        if key in defaults and value == defaults[key]:
            continue
        raise ValueError(
            f"The {key!r} parameter does not apply to {os.fspath(p)!r}: expected it only for "
            f"formats that use it, got {key}={value!r}."
        )


def _at_least_two(store: ImageStore, p: Path) -> ImageStore:
    if len(store) < 2:
        raise ValueError(
            f"The path {os.fspath(p)!r} holds {len(store)} image(s): expected at least 2, "
            "since t-SimCNE contrasts each image with the others as negatives."
        )
    store.meta.setdefault("source", os.fspath(p))
    return store


def check_rank(shape, where: str) -> None:
    if len(shape) not in (3, 4):
        raise ValueError(
            f"The images in {where} have the wrong rank: expected a 3-D (N, H, W) or 4-D "
            f"(N, H, W, C) / (N, C, H, W) array, got shape {tuple(shape)}."
        )


def as_labels(y, n: int, where: str) -> np.ndarray:
    """Labels as int64 (n,), with an error naming ``where`` when the length or type is wrong."""
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(
            f"The labels in {where} have the wrong length: expected shape ({n},), one per "
            f"image, got shape {y.shape}."
        )
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_)):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)):
            raise ValueError(
                f"The labels in {where} must be integers: expected an integer array, "
                f"got dtype {y.dtype}."
            )
    return y.astype(np.int64)


def array_store(x, where: str, labels=None) -> ImageStore:
    """An ImageStore from an array that may be memory-mapped, reading the file only once.

    uint8 arrays stay as they are (a memory map stays a memory map: nothing is read now);
    other dtypes are converted to uint8 in chunks of about 64 MiB, each chunk validated
    by :func:`~simcne.data.arrays.to_uint8` (integers 0-255, or finite floats in [0, 1]).
    """
    check_rank(x.shape, where)
    if x.dtype.kind in "OUSV" or x.dtype.names:
        raise ValueError(
            f"The images in {where} must be numbers: expected a uint8 or float array, "
            f"got dtype {x.dtype}."
        )
    if x.dtype != np.uint8:
        out = np.empty(x.shape, np.uint8)
        step = max(1, _CHUNK_BYTES // max(1, x[:1].nbytes))
        for i in range(0, len(x), step):
            out[i : i + step] = to_uint8(np.asarray(x[i : i + step]), name=where)
        x = out
    elif isinstance(x, np.memmap) and x.ndim == 3:
        x = x[:, None]  # a view that is still an np.memmap, (N, 1, H, W)
    store = from_array(x, name=where)
    if labels is not None:
        store.labels = as_labels(labels, len(store), where)
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
