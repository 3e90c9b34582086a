"""FFCV ``.beton`` files, read and written with numpy alone (FFCV need not be installed).

The format (FFCV 1.0, file format version 2), all little-endian:

* a 24-byte header: version (u2), number of fields (u2), page size (u4), number of
  samples (u8), offset of the allocation table (u8);
* one 1041-byte descriptor per field: type id (u1), name (16 bytes, NUL-padded ASCII),
  1024 bytes of type-specific arguments;
* the metadata, one C-aligned record per sample holding one entry per field (the value of
  an int or float field, or where and how an image or array is stored);
* pages of ``page_size`` bytes, the first at a multiple of the page size; a sample's data
  never crosses a page boundary;
* the allocation table at the end: one (sample id, offset, size) triple per stored blob.

Images (``RGBImageField``) are (H, W, 3) uint8, stored raw or as JPEG, and may differ in
size from sample to sample. ``read_beton`` serves them through :class:`BetonImages`, a
lazy, memory-mapped array that decodes only the samples a batch asks for.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import json
import mmap
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .._io import atomic_path
from .arrays import _layout
from .common import check_image_size, cover_array
from .store import ImageStore

VERSION = 2
HEADER = np.dtype(
    [("version", "<u2"), ("num_fields", "<u2"), ("page_size", "<u4"),
     ("num_samples", "<u8"), ("alloc_table_ptr", "<u8")], align=True)
FIELD = np.dtype([("type_id", "u1"), ("name", "u1", 16), ("arguments", "u1", 1024)], align=True)
ALLOC = np.dtype([("sample_id", "<u8"), ("ptr", "<u8"), ("size", "<u8")])
IMAGE_META = np.dtype([("mode", "u1"), ("width", "<u2"), ("height", "<u2"), ("data_ptr", "<u8")])
NDARRAY_ARGS = np.dtype([("shape", "<u8", 32), ("type_length", "<u8")])
JPG, RAW = 0, 1  # RGBImageField's per-sample mode

# type id -> (FFCV field class name, metadata dtype)
_BLOB = np.dtype([("ptr", "<u8"), ("size", "<u8")])
TYPES = {
    0: ("FloatField", np.dtype("<f8")),
    1: ("IntField", np.dtype("<i8")),
    2: ("RGBImageField", IMAGE_META),
    3: ("BytesField", _BLOB),
    4: ("NDArrayField", np.dtype("<u8")),
    5: ("JSONField", _BLOB),
    6: ("TorchTensorField", np.dtype("<u8")),
}
_IMAGE_NAMES = ("image", "images", "img", "x")
_LABEL_NAMES = ("label", "labels", "target", "targets", "y")
EAGER_BYTES = 256 << 20  # decode JPEG or resized datasets at load time up to this size


@dataclass
class BetonField:
    """One field of a ``.beton`` file: its name, FFCV class, and for arrays dtype and shape."""

    name: str
    type_id: int
    kind: str
    dtype: np.dtype | None = None
    shape: tuple | None = None

    def __str__(self):
        extra = f" {self.dtype} {self.shape}" if self.shape is not None else ""
        return f"{self.name!r} ({self.kind}{extra})"


class BetonFile:
    """The parsed structure of a ``.beton`` file, memory-mapped; nothing is decoded.

    Parameters
    ----------
    path : str or PathLike

    Attributes
    ----------
    fields : list of BetonField
    metadata : structured ndarray, shape (num_samples,)
        One record per sample; field ``i`` is column ``f"f{i}"``.
    alloc : structured ndarray of (sample_id, ptr, size)
    data : np.memmap of uint8
        The whole file.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        size = os.path.getsize(self.path)
        if size < HEADER.itemsize:
            self._bad(f"it is {size} bytes long, shorter than the {HEADER.itemsize}-byte header")
        self.data = np.memmap(self.path, np.uint8, mode="r")
        header = self.data[: HEADER.itemsize].view(HEADER)[0]
        self.version = int(header["version"])
        if self.version != VERSION:
            self._bad(f"file format version {self.version}; this reader reads FFCV's version "
                      f"{VERSION} (FFCV 1.0), so the file is not a .beton or comes from "
                      "another FFCV release")
        n_fields, self.page_size = int(header["num_fields"]), int(header["page_size"])
        self.num_samples = int(header["num_samples"])
        table_at = int(header["alloc_table_ptr"])
        if n_fields == 0:
            self._bad("the header declares no fields")
        if self.page_size == 0 or self.page_size & (self.page_size - 1):
            self._bad(f"page size {self.page_size} is not a power of two")
        end = HEADER.itemsize + n_fields * FIELD.itemsize
        if end > size:
            self._bad(f"truncated: {n_fields} field descriptors need {end} bytes, file has {size}")
        desc = self.data[HEADER.itemsize:end].view(FIELD)
        self.fields = [self._field(d, i) for i, d in enumerate(desc)]
        self.meta_dtype = np.dtype(
            {"names": [f"f{i}" for i in range(n_fields)],
             "formats": [TYPES[f.type_id][1] for f in self.fields]}, align=True)
        meta_end = end + self.num_samples * self.meta_dtype.itemsize
        if meta_end > size:
            self._bad(f"truncated: metadata of {self.num_samples} samples ends at byte "
                      f"{meta_end}, file has {size}")
        self.metadata = self.data[end:meta_end].view(self.meta_dtype)
        if table_at < meta_end or table_at > size or (size - table_at) % ALLOC.itemsize:
            self._bad(f"truncated or corrupt: the allocation table offset {table_at} does not "
                      f"fit a file of {size} bytes")
        self.alloc = self.data[table_at:].view(ALLOC)
        self._data_end = table_at

    def _bad(self, what):
        raise ValueError(f"Cannot read {self.path!r} as an FFCV .beton file: {what}.")

    def _field(self, desc, i) -> BetonField:
        name = desc["name"].tobytes().split(b"\0")[0].decode("ascii", "replace")
        type_id = int(desc["type_id"])
        if type_id not in TYPES:
            what = "a custom field" if type_id == 255 else f"unknown type id {type_id}"
            self._bad(f"field {i} ({name!r}) is {what}, whose layout this reader cannot know")
        field = BetonField(name, type_id, TYPES[type_id][0])
        if field.kind in ("NDArrayField", "TorchTensorField"):
            args = desc["arguments"]
            head = args[: NDARRAY_ARGS.itemsize].view(NDARRAY_ARGS)[0]
            n = int(head["type_length"])
            try:
                descr = json.loads(args[NDARRAY_ARGS.itemsize:][:n].tobytes().decode("ascii"))
                field.dtype = np.dtype([tuple(x) for x in descr])[0]
            except (ValueError, TypeError, IndexError, UnicodeDecodeError):
                self._bad(f"field {name!r} has an unreadable array dtype")
            shape = [int(s) for s in head["shape"]]
            while shape and shape[-1] == 0:
                shape.pop()
            field.shape = tuple(shape)
        return field

    def column(self, name: str) -> np.ndarray:
        """The metadata column of field ``name``."""
        return self.metadata[f"f{[f.name for f in self.fields].index(name)}"]

    def blobs(self, ptrs: np.ndarray, what: str) -> np.ndarray:
        """Sizes of the stored blobs at offsets ``ptrs``, checked against the allocation table."""
        ptrs = np.asarray(ptrs, np.uint64)
        order = np.argsort(self.alloc["ptr"], kind="stable")
        table_ptr, table_size = self.alloc["ptr"][order], self.alloc["size"][order]
        at = np.searchsorted(table_ptr, ptrs).clip(max=max(len(table_ptr) - 1, 0))
        found = table_ptr[at] == ptrs if len(table_ptr) else np.zeros(len(ptrs), bool)
        if not found.all():
            i = int(np.flatnonzero(~found)[0])
            self._bad(f"corrupt: the {what} of sample {i} (offset {int(ptrs[i])}) is not in the "
                      "allocation table")
        sizes = table_size[at].astype(np.int64)
        ends = ptrs.astype(np.int64) + sizes
        if len(ends) and ends.max() > self._data_end:
            i = int(np.argmax(ends))
            self._bad(f"truncated or corrupt: the {what} of sample {i} ends at byte "
                      f"{int(ends[i])}, past the data region ({self._data_end} bytes)")
        return sizes


class _TurboJPEG:
    """libturbojpeg through ctypes, decoding exactly as FFCV does (``TJFLAG_FASTDCT``)."""

    FASTDCT, PF_RGB = 2048, 0

    def __init__(self):
        name = ctypes.util.find_library("turbojpeg")
        if name is None:
            raise OSError("libturbojpeg not found")
        lib = ctypes.CDLL(name)
        lib.tjInitDecompress.restype = ctypes.c_void_p
        lib.tjDecompressHeader3.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulong] + [
            ctypes.POINTER(ctypes.c_int)] * 4
        lib.tjDecompress2.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulong,
                                      ctypes.c_void_p] + [ctypes.c_int] * 5
        lib.tjGetErrorStr.restype = ctypes.c_char_p
        self.lib, self.local = lib, threading.local()

    def _handle(self):
        handle = getattr(self.local, "handle", None)
        if handle is None:
            handle = self.local.handle = self.lib.tjInitDecompress()
        return handle

    def decode(self, data: np.ndarray, out: np.ndarray) -> None:
        """Decode JPEG bytes ``data`` into ``out``, a C-contiguous (H, W, 3) uint8 array."""
        h = self._handle()
        w_, h_, sub, cs = (ctypes.c_int() for _ in range(4))
        ok = self.lib.tjDecompressHeader3(h, data.ctypes.data, data.size, ctypes.byref(w_),
                                          ctypes.byref(h_), ctypes.byref(sub), ctypes.byref(cs))
        if ok != 0 or (h_.value, w_.value) != out.shape[:2]:
            raise ValueError(f"not a JPEG of size {out.shape[:2]}"
                             + (f" ({self.lib.tjGetErrorStr().decode()})" if ok else
                                f" (its header says {(h_.value, w_.value)})"))
        if self.lib.tjDecompress2(h, data.ctypes.data, data.size, out.ctypes.data,
                                  out.shape[1], 0, out.shape[0], self.PF_RGB, self.FASTDCT):
            raise ValueError(f"corrupt JPEG data ({self.lib.tjGetErrorStr().decode()})")


def _pillow_decode(data: np.ndarray, out: np.ndarray) -> None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data.tobytes())) as im:
            if im.format != "JPEG" or (im.height, im.width) != out.shape[:2]:
                raise ValueError(f"not a JPEG of size {out.shape[:2]}")
            out[...] = np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError) as e:
        raise ValueError(f"corrupt JPEG data ({e})") from None


_TURBO: list = []


def get_jpeg_decoder(name: str = "auto"):
    """A function ``decode(jpeg_bytes, out)`` and its name.

    ``"turbojpeg"`` calls the system's libturbojpeg with FFCV's own flags and gives the
    pixels FFCV gives; ``"pillow"`` uses Pillow's default (accurate) inverse DCT, which
    differs from FFCV's fast one by a few grey levels; ``"auto"`` prefers turbojpeg.
    """
    if name not in ("auto", "turbojpeg", "pillow"):
        raise ValueError(f"jpeg_decoder must be 'auto', 'turbojpeg' or 'pillow'. Got {name!r}.")
    if name != "pillow":
        if not _TURBO:
            try:
                _TURBO.append(_TurboJPEG())
            except (OSError, AttributeError):
                _TURBO.append(None)
        if _TURBO[0] is not None:
            return _TURBO[0].decode, "turbojpeg"
        if name == "turbojpeg":
            raise ValueError("jpeg_decoder='turbojpeg' needs libturbojpeg (e.g. apt-get install "
                             "libturbojpeg0); use 'pillow' or 'auto' instead.")
    return _pillow_decode, "pillow"


def _random_access(data: np.memmap) -> np.memmap:
    """Tell the OS that batches read scattered samples: no read-ahead around each one."""
    try:
        data._mmap.madvise(mmap.MADV_RANDOM)
    except (AttributeError, OSError, ValueError):
        pass
    return data


_POOLS: dict = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="simcne-beton")
    return _POOLS[threads]


class BetonImages:
    """The images of one ``.beton`` field as a lazy uint8 array of shape (N, ...).

    Indexing with an int64 index array (or an int or a slice) reads and decodes only those
    samples, in file order, and returns a numpy array: this is what ``ImageStore.batch``
    asks for, so a file larger than memory trains without being read whole. The file is
    memory-mapped; a pickled copy reopens it.

    Parameters
    ----------
    beton : BetonFile
    field : str
        An ``RGBImageField`` (gives (N, H, W, 3)) or an image-shaped ``NDArrayField``.
    image_size : (int, int), optional
        Bring every image of another size to (H, W) (:func:`simcne.data.common.cover`:
        scaled to cover it, the centre cropped); needed when the images differ in size.
    jpeg_decoder : {"auto", "turbojpeg", "pillow"}, default="auto"
    cache : bool, default=False
        Keep decoded images in memory (for JPEG or resized images read more than once).
    threads : int, optional
        Threads decoding a batch; default: the number of CPUs, at most 8.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, beton: BetonFile, field: str, image_size=None, jpeg_decoder="auto",
                 cache=False, threads=None):
        self.path, self.field = beton.path, field
        self.threads = max(1, int(threads or min(8, os.cpu_count() or 1)))
        self._data = _random_access(beton.data)
        info = beton.fields[[f.name for f in beton.fields].index(field)]
        col = beton.column(field)
        n = beton.num_samples
        if info.kind == "RGBImageField":
            self._ptr = col["data_ptr"].astype(np.int64)
            self._mode = col["mode"].copy()
            self._hw = np.stack([col["height"], col["width"]], 1).astype(np.int64)
            if not np.isin(self._mode, (JPG, RAW)).all():
                beton._bad(f"corrupt: field {field!r} has image modes other than jpg and raw")
            sample_shape = None
        else:
            self._ptr = col.astype(np.int64)
            self._mode = np.full(n, RAW, np.uint8)
            sample_shape = info.shape if len(info.shape) == 3 else info.shape + (1,)
            self._hw = np.tile(np.asarray(sample_shape[:2]), (n, 1))
        self._size = beton.blobs(self._ptr, f"{field!r} data")
        if info.kind == "RGBImageField":
            raw = self._mode == RAW
            bad = raw & (self._size != self._hw[:, 0] * self._hw[:, 1] * 3)
        else:
            bad = self._size != int(np.prod(sample_shape))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            beton._bad(f"corrupt: sample {i} of field {field!r} holds {self._size[i]} bytes, "
                       "not the size its shape says")
        sizes = np.unique(self._hw, axis=0) if n else np.zeros((0, 2), np.int64)
        if image_size is not None:
            ok = np.ndim(image_size) == 1 and len(image_size) == 2 and all(
                isinstance(v, (int, np.integer)) and v > 0 for v in image_size)
            if not ok:
                raise ValueError("image_size must be None or two positive ints (H, W). "
                                 f"Got {image_size!r} instead.")
            self._out_hw = (int(image_size[0]), int(image_size[1]))
            if sample_shape is not None and self._out_hw != tuple(sample_shape[:2]):
                raise ValueError(f"image_size={image_size} given, but the images of "
                                 f"{self.path!r} are arrays of fixed shape {sample_shape}.")
        elif len(sizes) > 1:
            shown = ", ".join(f"{h}x{w}" for h, w in sizes[:5]) + (" ..." if len(sizes) > 5 else "")
            raise ValueError(
                f"The images of {self.path!r} (field {field!r}) differ in size ({len(sizes)} "
                f"sizes, HxW: {shown}). Pass image_size=(H, W) to bring them all to one size "
                "(scaled to cover it, the centre cropped).")
        else:
            self._out_hw = tuple(int(s) for s in sizes[0]) if n else (0, 0)
        self._is_array = sample_shape is not None
        if self._is_array:  # NDArrayField: (H, W), (H, W, C) or (C, H, W)
            self.layout = _layout((1,) + tuple(sample_shape), False, f"field {field!r}")
            self.shape = (n,) + tuple(sample_shape)
        else:
            self.layout = "NHWC"
            self.shape = (n,) + self._out_hw + (3,)
        self._needs_work = bool((self._mode == JPG).any()) or any(
            tuple(s) != self._out_hw for s in sizes)
        self._decode, self.jpeg_decoder = get_jpeg_decoder(jpeg_decoder)
        self._cache = None
        if cache and self._needs_work:
            self._cache = np.empty(self.shape, np.uint8)  # pages are touched only when filled
            self._have = np.zeros(n, bool)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def __repr__(self):
        return f"BetonImages({self.path!r}, field={self.field!r}, shape={self.shape})"

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_data"] = None
        state["_decode"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._data = _random_access(np.memmap(self.path, np.uint8, mode="r"))
        self._decode = get_jpeg_decoder(self.jpeg_decoder)[0]

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self[np.array([index])][0]
        if isinstance(index, slice):
            index = np.arange(len(self))[index]
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        index = index.astype(np.int64).reshape(-1)
        n = len(self)
        if len(index) and (index.min() < -n or index.max() >= n):
            raise IndexError(f"index out of range for {n} images")
        index = np.where(index < 0, index + n, index)
        if not self._needs_work:  # raw, of one size: one gather from the memory map
            return self._gather(index)
        out = np.empty((len(index),) + self.shape[1:], np.uint8)
        todo = np.arange(len(index))
        if self._cache is not None:
            have = self._have[index]
            out[have] = self._cache[index[have]]
            todo = todo[~have]
        todo = todo[np.argsort(self._ptr[index[todo]], kind="stable")]  # file order
        parts = min(self.threads, len(todo) // 32) if self._needs_work else 1
        if parts > 1:  # decoders and Pillow release the GIL
            list(_pool(self.threads).map(lambda js: self._fill(out, index, js),
                                         np.array_split(todo, parts)))
        else:
            self._fill(out, index, todo)
        if self._cache is not None and len(todo):
            self._cache[index[todo]] = out[todo]
            self._have[index[todo]] = True
        return out

    def _gather(self, index: np.ndarray) -> np.ndarray:
        """Raw images of one size: each is ``nbytes`` consecutive bytes at its offset, so a
        view of the file with one row per byte offset turns the batch into one fancy-indexed
        copy, in file order (no Python call per image)."""
        item = int(np.prod(self.shape[1:]))
        out = np.empty((len(index), item), np.uint8)
        if len(index) and item:
            rows = np.lib.stride_tricks.as_strided(
                self._data, shape=(len(self._data) - item + 1, item), strides=(1, 1),
                writeable=False)
            ptr = self._ptr[index]
            order = np.argsort(ptr, kind="stable")
            out[order] = rows[ptr[order]]
        return out.reshape((len(index),) + tuple(self.shape[1:]))

    def _fill(self, out, index, js):
        for j in js:
            out[j] = self._read(int(index[j]))

    def _read(self, i: int) -> np.ndarray:
        blob = self._data[self._ptr[i]: self._ptr[i] + self._size[i]]
        if self._is_array:
            return blob.reshape(self.shape[1:])
        h, w = (int(s) for s in self._hw[i])
        if self._mode[i] == RAW:
            img = blob.reshape(h, w, 3)
        else:
            img = np.empty((h, w, 3), np.uint8)
            try:
                self._decode(blob, img)
            except ValueError as e:
                raise ValueError(f"Cannot decode image {i} of {self.path!r}: {e}.") from None
        return cover_array(img, self._out_hw)


def _is_image_array(f: BetonField) -> bool:
    s = f.shape or ()
    return (f.dtype == np.uint8 and (len(s) == 2 or (len(s) == 3 and (s[0] in (1, 3)
                                                                      or s[2] in (1, 3)))))


def _pick(beton: BetonFile, given, tiers, names, param: str, what: str):
    """The field named ``given``, or the only candidate of the first non-empty tier."""
    fields = {f.name: f for f in beton.fields}
    everything = ", ".join(str(f) for f in beton.fields)
    if given is not None:
        if given not in fields or not any(fields[given] in tier for tier in tiers):
            raise ValueError(f"{param}={given!r} does not name {what} field of {beton.path!r}; "
                             f"its fields are {everything}.")
        return fields[given]
    for tier in tiers:
        if len(tier) > 1:
            preferred = [f for f in tier if f.name.lower() in names]
            if len(preferred) == 1:
                return preferred[0]
            raise ValueError(
                f"{beton.path!r} has {len(tier)} candidate {what} fields: "
                f"{', '.join(str(f) for f in tier)}. Name one with {param}=...")
        if tier:
            return tier[0]
    return None


def read_beton(path, image_field=None, label_field=None, *, image_size=None, in_memory=None,
               jpeg_decoder="auto", cache=False, mixed_size=None) -> ImageStore:
    """Read an FFCV ``.beton`` file (format version 2, FFCV 1.0) into an :class:`ImageStore`.

    FFCV is not needed. Raw images stay on disk, memory-mapped, and are read batch by batch;
    JPEG images are decoded batch by batch (or all at once when small, see ``in_memory``).

    Parameters
    ----------
    path : str or PathLike
    image_field : str, optional
        The field holding the images: an ``RGBImageField`` or a uint8 ``NDArrayField`` of
        shape (H, W), (H, W, C) or (C, H, W). Found automatically when only one field (or
        only one named like ``"image"``) qualifies.
    label_field : str, optional
        The field holding the labels: an ``IntField`` (preferred) or a ``FloatField``. Found
        automatically like ``image_field``; no labels when there is none.
    image_size : (int, int), optional
        Bring every image of another size to (H, W) as an image folder does
        (:func:`simcne.data.common.cover`: scaled, keeping the aspect ratio, to cover it,
        the centre cropped). Required when the images differ in size;
        when they all share one size the estimator resizes on its own, so leave it unset.
    in_memory : bool, optional
        True: decode or copy all images at load time into one numpy array. False: always
        lazy. None (default): lazy for raw images of one size; otherwise decode at load
        time when the decoded images take at most 256 MiB, else lazy.
    jpeg_decoder : {"auto", "turbojpeg", "pillow"}, default="auto"
        ``"turbojpeg"`` (chosen by ``"auto"`` when libturbojpeg is installed) gives exactly
        FFCV's pixels; ``"pillow"`` differs from them by a few grey levels at most.
    cache : bool, default=False
        For lazy JPEG or resized images: keep each decoded image in memory once read.
    mixed_size : int or (int, int), optional
        Used as ``image_size`` only when the images differ in size and ``image_size`` is
        None (``TSimCNE(image_size=...)`` and ``simcne fit --image-size`` pass theirs).

    Returns
    -------
    ImageStore
        Images (N, H, W, 3) for RGB fields (layout ``"NHWC"``); labels int64 when the label
        field is an IntField, or a FloatField of whole numbers, else float64.

    Examples
    --------
    >>> store = read_beton("cifar10_train.beton")  # doctest: +SKIP
    >>> store.batch(np.arange(8)).shape  # doctest: +SKIP
    torch.Size([8, 3, 32, 32])
    """
    beton = BetonFile(path)
    if beton.num_samples == 0:
        beton._bad("it holds no samples")
    rgb = [f for f in beton.fields if f.kind == "RGBImageField"]
    arrays = [f for f in beton.fields if f.kind in ("NDArrayField", "TorchTensorField")
              and _is_image_array(f)]
    image = _pick(beton, image_field, [rgb, arrays], _IMAGE_NAMES, "image_field", "an image")
    if image is None:
        beton._bad("it has no image field (an RGBImageField, or a uint8 NDArrayField shaped "
                   "like an image); its fields are " + ", ".join(map(str, beton.fields)))
    ints = [f for f in beton.fields if f.kind == "IntField"]
    floats = [f for f in beton.fields if f.kind == "FloatField"]
    label = _pick(beton, label_field, [ints, floats], _LABEL_NAMES, "label_field", "a label")
    if image_size is None and mixed_size is not None and image.kind == "RGBImageField":
        col = beton.column(image.name)
        if len(np.unique(np.stack([col["height"], col["width"]], 1), axis=0)) > 1:
            image_size = check_image_size(mixed_size)
    images = BetonImages(beton, image.name, image_size, jpeg_decoder, cache)
    layout = images.layout
    if in_memory or (in_memory is None and images._needs_work and images.nbytes <= EAGER_BYTES):
        images = images[np.arange(len(images))]
    labels = None
    if label is not None:
        labels = np.array(beton.column(label.name))
        if label.kind == "IntField" or (np.isfinite(labels).all()
                                        and (labels == np.round(labels)).all()):
            labels = labels.astype(np.int64)
    meta = {"source": beton.path, "format": "beton", "image_field": image.name,
            "label_field": None if label is None else label.name}
    return ImageStore(images, labels, layout, meta=meta)


def _jpeg_bytes(img: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)  # 4:2:0, as FFCV's OpenCV
    return buf.getvalue()


def _target_size(h: int, w: int, max_resolution) -> tuple[int, int]:
    """FFCV's rule: shrink so that the longer side is ``max_resolution``, never enlarge."""
    if max_resolution is None or max(h, w) <= max_resolution:
        return h, w
    ratio = max_resolution / max(h, w)
    return max(1, int(ratio * h)), max(1, int(ratio * w))


def write_beton(X, path, *, y=None, mode="raw", jpeg_quality=90, max_resolution=None,
                page_size=None) -> str:
    """Write a dataset to an FFCV ``.beton`` file that FFCV's own Loader reads.

    The file has an ``"image"`` field (``RGBImageField``) and, when the data has labels, a
    ``"label"`` field (``IntField``, or ``FloatField`` for labels that are not whole
    numbers), in FFCV's format version 2. Grayscale images are stored as RGB with three
    equal channels, as ``RGBImageField`` requires. The write is atomic: a temporary file in
    the same folder is renamed over ``path`` only once complete.

    Parameters
    ----------
    X : anything :func:`simcne.data.load` reads
        Arrays, tensors, Datasets, files, an :class:`ImageStore`.
    path : str or PathLike
        Where to write, usually ending in ``.beton``.
    y : array-like of shape (N,), optional
        Labels, overriding any found in ``X``.
    mode : {"raw", "jpg"}, default="raw"
        Store pixels as they are, or as JPEG (Pillow's libjpeg-turbo, 4:2:0 chroma).
    jpeg_quality : int, default=90
        JPEG quality, 1 to 100 (ignored for ``mode="raw"``).
    max_resolution : int, optional
        Shrink images whose longer side exceeds this (box filter, as FFCV's area
        interpolation); never enlarge.
    page_size : int, optional
        Bytes per page, a power of two of at least 4096; one image must fit in a page.
        Default: 2 MiB (FFCV's smallest), or more for images larger than a quarter of that.

    Returns
    -------
    str
        ``path``.

    Examples
    --------
    >>> X = np.random.default_rng(0).integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    >>> write_beton(X, "tiny.beton", y=np.arange(10) % 2)  # doctest: +SKIP
    'tiny.beton'
    """
    from .inputs import load

    _check_write_options(mode, jpeg_quality, max_resolution, page_size)
    store = load(X, y)
    n = len(store)
    h, w = _target_size(*store.image_size, max_resolution)
    blob_bound = h * w * 3 + (0 if mode == "raw" else 2048 + h * w * 3)
    if page_size is None:
        page_size = max(1 << 21, 1 << int(np.ceil(np.log2(4 * blob_bound))))
    fields, desc, meta = _fields_and_meta(store.labels, n)
    img_meta = meta["f0"]
    img_meta["mode"] = RAW if mode == "raw" else JPG
    img_meta["height"], img_meta["width"] = h, w
    meta_start = HEADER.itemsize + desc.nbytes
    data_start = -(-(meta_start + meta.nbytes) // page_size) * page_size

    path = os.fspath(path)
    with atomic_path(path, wrap_errors=False) as tmp, open(tmp, "wb") as fp:
        fp.seek(data_start)
        alloc = _write_pages(fp, store, (h, w), mode, jpeg_quality, page_size, data_start,
                             img_meta)
        header = np.zeros(1, HEADER)
        header[0] = (VERSION, len(fields), page_size, n, fp.tell())
        fp.write(np.array(alloc, ALLOC).tobytes())
        fp.seek(0)
        fp.write(header.tobytes() + desc.tobytes())
        fp.write(meta.tobytes())
        fp.flush()
        os.fsync(fp.fileno())
    return path


def _check_write_options(mode, jpeg_quality, max_resolution, page_size) -> None:
    """write_beton's options, each a ValueError naming it."""
    if mode not in ("raw", "jpg"):
        raise ValueError(f"The 'mode' parameter must be 'raw' or 'jpg'. Got {mode!r} instead.")
    if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, (int, np.integer)) \
            or not 1 <= jpeg_quality <= 100:
        raise ValueError("The 'jpeg_quality' parameter must be an int in 1-100. "
                         f"Got {jpeg_quality!r} instead.")
    if max_resolution is not None and (not isinstance(max_resolution, (int, np.integer))
                                       or max_resolution < 1):
        raise ValueError("The 'max_resolution' parameter must be None or a positive int. "
                         f"Got {max_resolution!r} instead.")
    if page_size is not None and (not isinstance(page_size, (int, np.integer))
                                  or page_size < 4096 or page_size >= 1 << 32
                                  or page_size & (page_size - 1)):
        raise ValueError("The 'page_size' parameter must be None or a power of two from 4096 "
                         f"to 2**31. Got {page_size!r} instead.")


def _fields_and_meta(labels, n: int):
    """The file's fields (an image, and a label where there are labels: whole numbers as
    ``IntField``, else ``FloatField``), their descriptors, and the (n,) per-image metadata
    table with the labels filled in."""
    fields = [("image", 2)]
    if labels is not None:
        labels = np.asarray(labels)
        whole = np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.bool_)
        if not whole:
            labels = labels.astype(np.float64)
            whole = bool(np.isfinite(labels).all() and (labels == np.round(labels)).all())
        fields.append(("label", 1 if whole else 0))
    desc = np.zeros(len(fields), FIELD)
    for d, (name, type_id) in zip(desc, fields):
        d["type_id"] = type_id
        d["name"][: len(name)] = np.frombuffer(name.encode("ascii"), np.uint8)
    meta = np.zeros(n, np.dtype({"names": [f"f{i}" for i in range(len(fields))],
                                 "formats": [TYPES[t][1] for _, t in fields]}, align=True))
    if labels is not None:
        meta["f1"] = labels
    return fields, desc, meta


def _write_pages(fp, store, size, mode, jpeg_quality, page_size: int, data_start: int,
                 img_meta) -> list:
    """Every image, as RGB of ``size`` (raw or JPEG), into whole pages from ``data_start``
    on (an image never crosses a page); each one's place goes into ``img_meta["data_ptr"]``.
    Returns the allocation table's rows ``(index, place, bytes)``."""
    n = len(store)
    page, used, page_no, alloc = np.zeros(page_size, np.uint8), 0, 0, []
    step = max(1, (32 << 20) // max(1, store.nbytes // n))
    for start in range(0, n, step):
        batch = store.batch(np.arange(start, min(n, start + step)))
        batch = batch.permute(0, 2, 3, 1).numpy()
        for k, img in enumerate(batch):
            img = np.repeat(img, 3, 2) if img.shape[2] == 1 else img
            img = _resize_box(img, size)
            blob = np.frombuffer(img.tobytes() if mode == "raw"
                                 else _jpeg_bytes(img, int(jpeg_quality)), np.uint8)
            if blob.size > page_size:
                raise ValueError(f"Image {start + k} needs {blob.size} bytes, more than "
                                 f"page_size={page_size}; pass a larger page_size.")
            if used + blob.size > page_size:
                fp.write(page.tobytes())
                page[:], used, page_no = 0, 0, page_no + 1
            ptr = data_start + page_no * page_size + used
            page[used: used + blob.size] = blob
            used += blob.size
            img_meta["data_ptr"][start + k] = ptr
            alloc.append((start + k, ptr, blob.size))
    if used:
        fp.write(page.tobytes())  # whole pages, as FFCV writes them
    return alloc


def _resize_box(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if img.shape[:2] == tuple(size):
        return img
    return np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.Resampling.BOX))
