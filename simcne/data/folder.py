"""A folder of image files, flat or with one sub-folder per class, decoded once with Pillow."""

from __future__ import annotations

import functools
import itertools
import os
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .common import check_image_size, cover, visible_entries, walk_files
from .store import ImageStore

IMAGE_SUFFIXES = (
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".webp", ".gif",
    ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".tga",
)  # fmt: skip
_SUFFIXES = frozenset(IMAGE_SUFFIXES)
_GRAY = {"1": "L", "L": "L", "LA": "LA", "La": "LA", "I": "I", "I;16": "I", "I;16L": "I",
         "I;16B": "I", "I;16N": "I", "RGB": "RGB", "RGBA": "RGBA", "RGBa": "RGBA"}  # fmt: skip


def is_image_name(name: str) -> bool:
    """A file name with one of :data:`IMAGE_SUFFIXES` (any case), not hidden."""
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in _SUFFIXES and not name.startswith(".")


def is_image_file(p: Path) -> bool:
    return is_image_name(p.name)


def find_images(folder) -> tuple[list, np.ndarray | None, list[str] | None]:
    """The image files of ``folder`` as ``(name relative to it with "/", os.DirEntry)``,
    with labels and class names when it has class sub-folders.

    Sub-folders that hold images (at any depth) are classes, named by the folder and numbered
    in sorted order; a folder with image files and no such sub-folders is flat (no labels).
    One pass of ``os.scandir`` per folder: the decode-once cache's key takes each file's
    size and modification time from the same entries.
    """
    p = os.fspath(Path(folder))
    where = repr(p)
    entries = visible_entries(p)
    top = [(e.name, e) for e in entries if e.is_file() and is_image_name(e.name)]
    classes = [(e.name, walk_files(e.path, is_image_name, e.name + "/"))
               for e in entries if e.is_dir()]
    classes = [(name, files) for name, files in classes if files]
    if classes and top:
        raise ValueError(
            f"The folder {where} mixes image files ({top[0][0]}, ...) with class "
            f"sub-folders ({classes[0][0]}, ...): expected either a flat folder of images or "
            "one sub-folder per class, got both."
        )
    if classes:
        files = [f for _, fs in classes for f in fs]
        labels = np.repeat(np.arange(len(classes)), [len(fs) for _, fs in classes])
        return files, labels, [name for name, _ in classes]
    if not top:
        others = sum(1 for e in entries if e.is_file())
        raise ValueError(
            f"The folder {where} holds no image files: expected files ending in "
            f"{', '.join(IMAGE_SUFFIXES)} directly in it or in class sub-folders, got "
            f"{others} other file(s) and no images."
        )
    return top, None, None


def _decode(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """One file -> uint8 (H, W) for grayscale or (H, W, 3) for colour."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        orientation = img.getexif().get(0x0112, 1)
        if size is not None and img.format == "JPEG":
            w, h = img.size
            s = max(size[0] / h, size[1] / w, size[0] / w, size[1] / h)
            img.draft(img.mode, (int(np.ceil(w * s)), int(np.ceil(h * s))))
        img.load()
        if orientation != 1:
            img = ImageOps.exif_transpose(img)
        mode = _GRAY.get(img.mode)
        if mode is None:
            if img.mode in ("P", "PA"):
                pal = np.asarray(img.getpalette() or [0], np.uint8)[: 3 * 256].reshape(-1, 3)
                gray = bool((pal == pal[:, :1]).all())
                alpha = img.mode == "PA" or "transparency" in img.info
                mode = ("LA" if alpha else "L") if gray else ("RGBA" if alpha else "RGB")
            elif img.mode == "F":
                raise ValueError("32-bit float images are not supported")
            else:  # CMYK, YCbCr, LAB, HSV, ...
                mode = "RGB"
            img = img.convert("RGBA" if mode == "LA" else mode)
            if mode == "LA":
                img = img.convert("LA")
        if mode == "I":  # 16-bit grayscale: scale 0..65535 to 0..255
            arr = np.asarray(img).astype(np.float32)
            img = Image.fromarray(np.rint(np.clip(arr, 0, 65535) / 257).astype(np.uint8))
        if size is not None and img.size != (size[1], size[0]):
            img = cover(img, size)
        if img.mode in ("LA", "RGBA"):  # composite on black: premultiply, drop alpha
            arr = np.asarray(img.convert("La" if img.mode == "LA" else "RGBa"))
            return np.ascontiguousarray(arr[..., 0] if img.mode == "LA" else arr[..., :3])
        return np.asarray(img)


def _try_decode(path, size):
    try:
        return _decode(path, size), None
    except Exception as err:  # Pillow raises many types for broken files  # noqa: BLE001
        return None, err


def _decode_chunk(files, size):
    return [_try_decode(f, size) for f in files]


def read_folder(
    folder, *, image_size=None, skip_corrupt: bool = False, workers: int | None = None,
    mixed_size=None, sink=None,
) -> ImageStore:
    """Decode a folder of images (png, jpg, bmp, webp, gif, tif, ppm, tga ...) once.

    Parameters
    ----------
    folder : str or os.PathLike
        Either flat (image files directly in it: no labels) or one sub-folder per class
        (images at any depth below it): labels number the sorted sub-folder names, which
        become ``class_names``. Hidden files and folders are left out. ``store.paths`` keeps
        each file's path relative to ``folder`` (with ``/``), in the order of the store.
    image_size : int or (int, int), optional
        The (H, W) of every image in the store. An image of another size is scaled, keeping
        its aspect ratio, until it covers (H, W), and the centre is cropped: one Pillow
        bicubic resize (antialiased when shrinking; JPEGs are first decoded at a reduced
        scale with ``draft``). Images of exactly that size are left untouched. With
        ``None`` all images must share one size, or a ``ValueError`` names two files of
        different sizes.
    skip_corrupt : bool, default=False
        A file that Pillow cannot decode raises a ``ValueError`` with its path; with
        ``True`` it is skipped and one warning lists the skipped files.
    workers : int, optional
        Threads decoding in parallel (Pillow releases the GIL while decoding). ``None``:
        one per CPU core, at most 8; ``1``: no threads.
    mixed_size : int or (int, int), optional
        Used as ``image_size`` only when ``image_size`` is None and the images differ in
        size (``TSimCNE(image_size=...)`` and ``simcne fit --image-size`` pass theirs):
        a folder of one size is kept as stored, a mixed one is brought to this size
        (``store.meta["resized_to"]`` then says so). The files decoded before the first
        odd size was met are decoded again.
    sink : simcne.data.sink.Sink, optional
        Where the decoded images go, a chunk at a time (the cache passes a file); default:
        one array in memory. Either way no more than a few chunks of decoded images are
        held besides it.

    Returns
    -------
    ImageStore
        (N, H, W, C) uint8 images in "NHWC" layout. C is 1 when every file is grayscale
        and 3 when any is colour (grayscale files are then repeated to RGB). Transparency
        is composited on black (colour times alpha). Palette images count as grayscale
        when their palette is gray. 16-bit grayscale is scaled to 8 bits; animated files
        give their first frame; the EXIF orientation is applied.
    """
    from .sink import Sink

    p = Path(folder)
    size = check_image_size(image_size)
    files, labels, class_names = find_images(p)
    workers = min(8, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    sink = Sink() if sink is None else sink
    try:
        keep, bad = _decode_into(sink, p, [e.path for _, e in files], size, skip_corrupt,
                                 workers)
    except MixedSizes:
        if size is not None or mixed_size is None:
            raise
        mixed = check_image_size(mixed_size)
        sink.reset()
        store = read_folder(folder, image_size=mixed, skip_corrupt=skip_corrupt,
                            workers=workers, sink=sink)
        store.meta["resized_to"] = list(mixed)
        return store
    if bad:
        names = ", ".join(repr(f) for f, _ in bad[:10])
        warnings.warn(
            f"Skipped {len(bad)} corrupt image file(s) in {os.fspath(p)!r}: {names}"
            + (", ..." if len(bad) > 10 else ""),
            stacklevel=2,
        )
    store = ImageStore(sink.finish(), None if labels is None else labels[keep], "NHWC",
                       class_names, [files[i][0] for i in keep])
    store.meta.update(format="folder", skipped=[f for f, _ in bad])
    return store


class MixedSizes(ValueError):
    """The images of a folder read without ``image_size`` differ in size."""


def _decode_into(sink, folder: Path, files: list[str], size, skip_corrupt: bool, workers: int):
    """Decode ``files`` on ``workers`` threads, in order, into ``sink``: the indices of the
    files kept and the (file, error) of those skipped as corrupt."""
    keep: list[int] = []
    bad: list[tuple[str, Exception]] = []
    first: tuple[str, tuple] | None = None
    # files per task: fewer tasks, less overhead; at most about 16 MiB of decoded images a
    # task where the size is known, and 2 tasks a thread ahead of the one written
    step = max(1, min(64, len(files) // (4 * workers),
                      (16 << 20) // (size[0] * size[1] * 3) if size else 64))
    chunks = [files[i : i + step] for i in range(0, len(files), step)]
    decode = functools.partial(_decode_chunk, size=size)
    with ThreadPoolExecutor(workers) if workers > 1 else _Serial() as pool:
        try:
            done = 0
            for chunk, results in zip(chunks, _in_order(pool, decode, chunks, 2 * workers)):
                arrays = []
                for k, (f, (arr, err)) in enumerate(zip(chunk, results)):
                    if err is not None:
                        _corrupt(f, err, skip_corrupt)
                        bad.append((f, err))
                        continue
                    if first is None:
                        first = (f, arr.shape[:2])
                    elif arr.shape[:2] != first[1]:
                        raise _mixed(folder, first, f, arr.shape[:2])
                    arrays.append(arr)
                    keep.append(done + k)
                done += len(chunk)
                if arrays:
                    _put(sink, arrays, len(files))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return keep, bad


def _corrupt(f: str, err: Exception, skip_corrupt: bool) -> None:
    """Raise the error of an undecodable file unless it is to be skipped."""
    if isinstance(err, MemoryError):  # not the file's fault
        raise err
    if not skip_corrupt:
        raise ValueError(
            f"The image file {f!r} is corrupt or unreadable: expected an image Pillow can "
            f"decode, got {type(err).__name__}: {err}. Pass skip_corrupt=True to skip such "
            "files."
        ) from err


def _mixed(folder: Path, first: tuple[str, tuple], f: str, shape: tuple) -> MixedSizes:
    (g, (h, w)) = first
    return MixedSizes(
        f"The images in {os.fspath(folder)!r} differ in size: expected "
        f"every image to be {h}x{w} (H x W) like {g!r}, got {shape[0]}x{shape[1]} in {f!r}. "
        "Pass image_size to resize them to one size (on the command line: --read-size H W, "
        "or --image-size H W of 'simcne fit')."
    )


def _put(sink, arrays: list, total: int) -> None:
    """Decoded images (H, W) or (H, W, 3) into ``sink`` as one (k, H, W, C) chunk: C is 1
    while every image so far is gray, 3 from the first colour one on (the gray ones before
    it are repeated to RGB)."""
    colour = any(a.ndim == 3 for a in arrays) or (sink.item is not None and sink.item[-1] == 3)
    c = 3 if colour else 1
    if colour:
        sink.widen(3)
    h, w = arrays[0].shape[:2]
    batch = np.empty((len(arrays), h, w, c), np.uint8)
    for j, a in enumerate(arrays):
        batch[j] = a[..., None] if a.ndim == 2 else a
    sink.write(batch, total)


def _in_order(pool, fn, items, window: int):
    """``pool.map(fn, items)`` with at most ``window`` tasks ahead of the one consumed, so
    that decoded images never pile up in memory while the consumer writes."""
    pending: deque = deque()
    it = iter(items)
    for item in itertools.islice(it, window):
        pending.append(pool.submit(fn, item))
    while pending:
        result = pending.popleft().result()
        for item in itertools.islice(it, 1):
            pending.append(pool.submit(fn, item))
        yield result


def estimate(folder, image_size=None):
    """(n, H, W, C) of a folder's decoded images, from its file list and its first image's
    header (C: 1 for a gray first image, else 3); None when the first image cannot be read."""
    from PIL import Image

    files, _, _ = find_images(folder)
    size = check_image_size(image_size)
    try:
        with Image.open(files[0][1].path) as img:
            w, h = img.size
            c = 1 if _GRAY.get(img.mode, "RGB") in ("L", "LA", "I") else 3
    except Exception:  # noqa: BLE001  the read itself says what is wrong
        return None
    h, w = size if size is not None else (h, w)
    return len(files), h, w, c


class _Serial:
    """The part of an executor that :func:`read_folder` uses, without threads."""

    def submit(self, fn, *args):
        return _Later(fn, args)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items):
        return map(fn, items)

    def shutdown(self, wait=True, cancel_futures=False):
        pass


class _Later:
    """A task of :class:`_Serial`: run when its result is asked for."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def result(self):
        return self.fn(*self.args)
