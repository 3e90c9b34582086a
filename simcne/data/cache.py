"""Decode once: a source read once into a uint8 cache file that every later read memory-maps.

A path whose images are not memory-mapped already (an image folder, a JPEG or resized
``.beton``, gzipped IDX, CIFAR batches, a compressed ``.npz``, a float ``.npy``) is read once,
chunk by chunk, into ``<cache folder>/<key>.u8``; the next read of the same source with the
same read settings maps that file instead of decoding again, and every process of a torchrun
job on one machine maps the same file (the page cache holds one copy).

The key is made of what defines the result: the resolved path, the name, size and
modification time of every file read, the reader and its options (image size, split, ...).
A changed, added or removed file gives another key: the entry is rebuilt and the old one of
the same source removed. Entries are written atomically (a temporary file, then
``os.replace``; the ``.json`` that describes an entry is written last). While one process
writes an entry, others that want it wait on a file lock (``<key>.lock``) and then map it.

The cache folder is ``cache`` when given, else ``$SIMCNE_CACHE/stores``, else
``$XDG_CACHE_HOME/simcne/stores``, else ``~/.cache/simcne/stores``; ``cache=False`` reads
into memory as before. Before anything is decoded the decoded size is compared with the free
space of the cache folder (or, without the cache, with the free memory): a read that cannot
fit is refused with a ValueError naming the size and what to change
(``SIMCNE_MEMORY_CHECK=0`` skips the check).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .._io import atomic_path, temporaries_of
from .common import walk_files
from .sink import Sink, copy_into
from .store import ImageStore

#: the layout of cache entries; a new one makes older entries unused
VERSION = 1
#: readers whose output the cache can hold, and the reader options that change it
_KINDS = ("folder", "beton", "cifar", "idx", "idx-folder", "npz", "npy")
#: options that do not change what is read
_NEUTRAL = ("workers",)


def cache_folder(cache=None) -> Path | None:
    """The folder of cache entries for the ``cache`` parameter, or None when it is off.

    ``None`` or ``True``: ``stores`` in simcne's cache folder (``$SIMCNE_CACHE``, else
    ``$XDG_CACHE_HOME/simcne``, else ``~/.cache/simcne``); ``False``: no cache; a path: that
    folder.
    """
    if cache is False:
        return None
    if cache is None or cache is True:
        from .datasets import cache_folder as simcne_cache

        return simcne_cache() / "stores"
    if not isinstance(cache, (str, os.PathLike)):
        raise ValueError(f"The 'cache' parameter must be None, False or a folder path. Got "
                         f"{cache!r} instead.")
    return Path(cache)


# -- the key --------------------------------------------------------------------------------
def _files(p: Path, kind: str) -> tuple[list[str], list]:
    """The relative names of the files the reader of ``p`` reads, and their stat results."""
    if kind == "folder":
        from .folder import find_images

        found = find_images(p)[0]  # the reader's own listing (its errors are the reader's)
    elif p.is_dir():
        found = walk_files(os.fspath(p))
    else:
        found = [(p.name, p)]
        if kind == "idx":
            from .idx import labels_file_for

            lab = labels_file_for(p)
            if lab is not None:
                found.append((lab.name, lab))
    return [name for name, _ in found], [_stat(f) for _, f in found]


@contextlib.contextmanager
def _no_gc():
    """The cyclic garbage collector paused: listing 100,000 files makes as many small objects,
    which would otherwise start a full collection over every object of the process (torch's
    among them), longer than the listing itself."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _stat(f) -> tuple[int, int]:
    """(size, mtime_ns) of a path or ``os.DirEntry`` (a link that leads nowhere: its own)."""
    try:
        st = f.stat()
    except FileNotFoundError:
        st = os.lstat(f)
    return st.st_size, st.st_mtime_ns


def _jsonable(value):
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def source_key(p: Path, kind: str, options: dict) -> tuple[str, str]:
    """(source digest, full key): the source digest names the source and its read settings,
    the key adds the files' sizes and modification times."""
    ident = {"version": VERSION, "source": os.path.realpath(p), "kind": kind,
             "options": {k: _jsonable(v) for k, v in sorted(options.items())
                         if k not in _NEUTRAL}}
    src = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    with _no_gc():
        names, stats = _files(p, kind)
    files = hashlib.sha256(len(names).to_bytes(8, "little"))
    files.update("\0".join(names).encode("utf-8", "surrogateescape"))
    files.update(np.asarray(stats, np.int64).reshape(-1, 2).tobytes())
    files = files.hexdigest()[:16]
    return src, f"{src}-{files}"


# -- entries --------------------------------------------------------------------------------
class Entry:
    """One cache entry: ``KEY.u8`` (the images), ``KEY.json`` (shape, layout, class names,
    meta; written last), ``KEY.labels.npy`` and ``KEY.paths`` (file names, NUL-separated)."""

    def __init__(self, folder: Path, key: str):
        self.folder, self.key = Path(folder), key
        self.data = self.folder / f"{key}.u8"
        self.info = self.folder / f"{key}.json"
        self.labels = self.folder / f"{key}.labels.npy"
        self.paths = self.folder / f"{key}.paths"
        self.lock = self.folder / f"{key}.lock"

    def load(self) -> ImageStore | None:
        """The entry as a store of memory-mapped images, or None when it is missing or
        incomplete."""
        try:
            info = json.loads(self.info.read_text())
            shape = tuple(info["shape"])
            if self.data.stat().st_size != int(np.prod(shape)):
                return None
            images = (np.memmap(self.data, np.uint8, "r", shape=shape) if np.prod(shape)
                      else np.zeros(shape, np.uint8))
            labels = (np.load(self.labels, allow_pickle=False) if info["labels"] else None)
            paths = (self.paths.read_bytes().decode("utf-8").split("\0")
                     if info["paths"] else None)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        meta = dict(info["meta"], cache={"file": os.fspath(self.data), "hit": True})
        return ImageStore(images, labels, info["layout"], info["class_names"], paths, meta)

    def commit(self, store: ImageStore, src: str) -> None:
        """Write the entry's description (the images are in place); remove older entries of
        the same source."""
        if store.labels is not None:
            with atomic_path(self.labels) as tmp, open(tmp, "wb") as f:
                np.save(f, np.asarray(store.labels), allow_pickle=False)
        if store.paths is not None:
            with atomic_path(self.paths) as tmp:
                Path(tmp).write_bytes("\0".join(store.paths).encode("utf-8"))
        meta = {k: _jsonable(v) for k, v in store.meta.items() if k != "cache"}
        info = {"shape": list(store.images.shape), "layout": store.layout,
                "class_names": store.class_names, "labels": store.labels is not None,
                "paths": store.paths is not None, "meta": meta, "written": time.time()}
        with atomic_path(self.info) as tmp:
            Path(tmp).write_text(json.dumps(info))
        for old in self.folder.glob(f"{src}-*"):
            if not old.name.startswith(self.key + "."):
                with contextlib.suppress(OSError):
                    old.unlink()


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (a file lock: processes on one machine, or on one
    shared file system, take turns)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# -- memory known before it is spent ------------------------------------------------------------
def _gb(n: int) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} bytes"


def check_fits(where: str, need: int | None, what: str, folder: Path | None) -> None:
    """Refuse a read of ``need`` decoded bytes that cannot fit: in the free space of the cache
    ``folder``, or (no cache) in the available memory. One line naming what to change."""
    if need is None or os.environ.get("SIMCNE_MEMORY_CHECK", "1") == "0":
        return
    if folder is not None:
        probe = folder
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if need > free:
            raise ValueError(
                f"Reading {where} needs {_gb(need)} decoded ({what}), but the cache folder "
                f"'{os.fspath(folder)}' has only {_gb(free)} free: pass a smaller read size "
                "(--read-size, image_size) or another cache folder (--cache DIR, "
                "$SIMCNE_CACHE). SIMCNE_MEMORY_CHECK=0 skips this check.")
        return
    from .._heap import available_memory

    avail = available_memory()
    if avail is not None and need > avail:
        raise ValueError(
            f"Reading {where} needs {_gb(need)} decoded ({what}), but only {_gb(avail)} of "
            "memory are available: pass a smaller read size (--read-size, image_size), or "
            "keep the cache on (cache=None, no --no-cache): a cache file on disk is "
            "memory-mapped, not held in memory. SIMCNE_MEMORY_CHECK=0 skips this check.")


# -- the read -----------------------------------------------------------------------------------
def _mapped_already(p: Path, kind: str, options: dict):
    """True when the reader of ``p`` serves memory-mapped uint8 images (nothing to cache);
    for a ``.beton``, the lazily opened store when it needs decoding or resizing."""
    import zipfile

    if kind == "npy":
        try:
            return np.load(p, mmap_mode="r", allow_pickle=False).dtype == np.uint8
        except (ValueError, OSError, EOFError):
            return True  # the reader says what is wrong
    if kind == "npz":
        try:
            with zipfile.ZipFile(p) as zf:
                return all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        except (OSError, zipfile.BadZipFile):
            return True
    if kind in ("idx", "idx-folder"):
        from .idx import _is_gzip, find_idx_images

        files = [p] if kind == "idx" else list(find_idx_images(p).values())
        return not any(_is_gzip(f) for f in files)
    return False


def read_cached(p: Path, reader, options: dict, cache=None) -> ImageStore:
    """Read ``p`` with ``reader`` (a :class:`simcne.data.files.Reader`) through the cache."""
    folder = cache_folder(cache)
    kind = reader.kind
    if folder is None or kind not in _KINDS:
        if kind == "folder":
            _check_folder(p, options, None)
        return reader.read(p, **options)
    if _mapped_already(p, kind, options):
        return reader.read(p, **options)
    lazy = None
    if kind == "beton":
        lazy = reader.read(p, **{**options, "in_memory": False})
        if not getattr(lazy.images, "_needs_work", False):  # raw, of one size: mapped already
            return reader.read(p, **options) if options.get("in_memory") else lazy
    src, key = source_key(p, kind, options)
    entry = Entry(folder, key)
    store = entry.load()
    if store is not None:
        return store
    if kind == "folder":
        _check_folder(p, options, folder)  # before anything is made or decoded
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"The cache folder '{os.fspath(folder)}' cannot be made ({e}): pass "
                         "another one (--cache DIR, $SIMCNE_CACHE) or turn the cache off "
                         "(--no-cache, cache=False).") from None
    with _locked(entry.lock):
        store = entry.load()  # another process wrote it while this one waited
        if store is not None:
            return store
        for left in temporaries_of(entry.data):  # of a writer that was killed
            with contextlib.suppress(OSError):
                left.unlink()
        with atomic_path(entry.data, wrap_errors=False) as tmp:
            store = _write(p, kind, reader, options, lazy, Sink(tmp), folder)
        entry.commit(store, src)
    store.meta["cache"] = {"file": os.fspath(entry.data), "hit": False}
    return store


def _write(p: Path, kind: str, reader, options: dict, lazy, sink: Sink, folder: Path):
    where = repr(os.fspath(p))
    if kind == "folder":
        from .folder import read_folder

        return read_folder(p, **options, sink=sink)
    store = lazy if lazy is not None else reader.read(p, **options)
    n = len(store)
    check_fits(where, store.nbytes, f"{n} images of {'x'.join(map(str, store.images.shape[1:]))}",
               folder)
    images = copy_into(store.images, sink)
    store.images = images
    return store


def _check_folder(p: Path, options: dict, folder: Path | None) -> None:
    """The memory check of an image folder, from its file count and its first image."""
    if os.environ.get("SIMCNE_MEMORY_CHECK", "1") == "0":
        return
    from .folder import estimate

    est = estimate(p, options.get("image_size"))
    if est is not None:
        n, h, w, c = est
        check_fits(repr(os.fspath(p)), n * h * w * c, f"{n} images of {h}x{w}x{c}", folder)
