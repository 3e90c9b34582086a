"""Where a reader puts its images: :class:`Sink`, an array in memory or a file written a
chunk at a time (a cache entry, :mod:`simcne.data.cache`), and :func:`copy_into`.

Readers that decode (image folders) write into a Sink; the cache hands them one that
writes its entry's file. Both import this module; it imports none of the readers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._io import atomic_path

#: bytes per chunk when images are copied into a cache file
CHUNK_BYTES = 64 << 20


class Sink:
    """Where a reader puts its uint8 images, in order, a chunk at a time.

    ``Sink()`` fills one array in memory; ``Sink(path)`` appends to the file ``path`` (a
    cache entry being written), so that a reader holds no more than the chunk it is on.
    :meth:`finish` returns the images: the array, or the file memory-mapped read-only.
    """

    def __init__(self, path=None):
        self.path = None if path is None else Path(path)
        self.reset()

    def reset(self) -> None:
        """Forget what was written (a reader starting over)."""
        if getattr(self, "_file", None) is not None:
            self._file.close()
        self.count, self.item, self._buf, self._file = 0, None, None, None

    def write(self, chunk: np.ndarray, total: int) -> None:
        """Append ``chunk`` (k images of one shape); ``total``: how many will come at most."""
        chunk = np.ascontiguousarray(chunk, np.uint8)
        if self.item is None:
            self.item = chunk.shape[1:]
            if self.path is None:
                self._buf = np.empty((total,) + self.item, np.uint8)  # pages come when filled
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(self.path, "wb")  # noqa: SIM115  closed in finish/reset
        elif chunk.shape[1:] != self.item:
            raise ValueError(f"a chunk of shape {chunk.shape} after images of {self.item}")
        if self.path is None:
            self._buf[self.count:self.count + len(chunk)] = chunk
        else:
            self._file.write(memoryview(chunk).cast("B"))
        self.count += len(chunk)

    def widen(self, channels: int) -> None:
        """Repeat the last axis (channels-last gray images) to ``channels``, for what was
        written and what comes."""
        if self.item is None or self.item[-1] == channels:
            return
        item = self.item[:-1] + (channels,)
        if self.path is None:
            buf = np.empty((len(self._buf),) + item, np.uint8)
            buf[:self.count] = self._buf[:self.count]
            self._buf = buf
        else:
            self._file.close()
            old = np.memmap(self.path, np.uint8, "r", shape=(self.count,) + self.item) \
                if self.count else np.zeros((0,) + self.item, np.uint8)
            with atomic_path(self.path, wrap_errors=False) as wide, open(wide, "wb") as f:
                for a, b in _chunks(self.count, int(np.prod(item))):
                    f.write(memoryview(np.ascontiguousarray(
                        np.broadcast_to(old[a:b], (b - a,) + item))).cast("B"))
            del old
            self._file = open(self.path, "ab")  # noqa: SIM115
        self.item = item

    def finish(self, empty_item=(0, 0, 1)) -> np.ndarray:
        """The images written: an array in memory, or the file memory-mapped read-only."""
        if self.item is None:
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_bytes(b"")
            return np.zeros((0,) + tuple(empty_item), np.uint8)
        if self.path is None:
            return self._buf[:self.count]
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        if self.count == 0:
            return np.zeros((0,) + self.item, np.uint8)
        return np.memmap(self.path, np.uint8, "r", shape=(self.count,) + self.item)


def _chunks(n: int, item_bytes: int):
    step = max(1, CHUNK_BYTES // max(1, item_bytes))
    for a in range(0, n, step):
        yield a, min(n, a + step)


def copy_into(images, sink: Sink) -> np.ndarray:
    """Copy an array (or a lazy one that takes slices, such as ``BetonImages``) into ``sink``
    chunk by chunk; returns what :meth:`Sink.finish` returns."""
    n = int(images.shape[0])
    for a, b in _chunks(n, int(np.prod(images.shape[1:]))):
        sink.write(np.asarray(images[a:b]), n)
    return sink.finish(tuple(images.shape[1:]))
