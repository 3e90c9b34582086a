"""Keep freed tensor memory in the process while a CPU training or embedding loop runs.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc hands out blocks above its
mmap threshold (at most 32 MB) with ``mmap`` and returns them to the kernel on ``free``, so
every large activation of every step is mapped afresh and its pages are faulted in and
zeroed again. At training batch 512, a 32x32 activation of ``resnet_small`` is 134 MB: on
the 2-core test machine this kernel work halved the training throughput (BENCHMARKS.md).

:func:`reuse_freed_memory` tells glibc, for the duration of a ``with`` block, to serve all
blocks from its heap and to keep freed memory there, so that the next step reuses pages
that are already mapped. On the way out it restores mmap for large blocks (with the 32 MB
threshold that glibc's own adaptive threshold climbs to once large blocks have been freed)
and hands the freed memory back to the kernel (``malloc_trim``), so nothing is held after
``fit`` or ``transform`` returns.

The price is memory. Freed blocks can be reused only where they fit, so the heap holds more
than the tensors alive at any moment: on the test machine, a training step at batch 512 peaked
at 2.4-3.1 GB instead of 1.75 GB with ``resnet_small`` and at 7.8-9.1 GB instead of 5.3 GB
with ResNet18 (the layout, and so the figure, varies from run to run). The heap reaches its
size in the first steps of a stage and then stays there.

It does nothing on other C libraries (macOS, Windows, musl) or when the environment variable
``SIMCNE_REUSE_FREED_MEMORY`` is ``0``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys
import threading

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4

_INT_MAX = 2**31 - 1
#: what glibc's adaptive threshold reaches once large blocks have been freed (64-bit)
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
_MMAP_MAX_DEFAULT = 65536

_lock = threading.Lock()
_depth = 0
_libc = None
_libc_loaded = False


def _glibc():
    """The C library when it is glibc (where mallopt has these meanings), else None."""
    global _libc, _libc_loaded
    if not _libc_loaded:
        _libc_loaded = True
        if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
            try:
                lib = ctypes.CDLL("libc.so.6")
                lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                lib.mallopt.restype = ctypes.c_int
                lib.malloc_trim.argtypes = [ctypes.c_size_t]
                lib.malloc_trim.restype = ctypes.c_int
                _libc = lib
            except (OSError, AttributeError):
                _libc = None
    return _libc


def enabled() -> bool:
    """Whether :func:`reuse_freed_memory` changes anything in this process."""
    return os.environ.get("SIMCNE_REUSE_FREED_MEMORY", "1") != "0" and _glibc() is not None


@contextlib.contextmanager
def reuse_freed_memory(active: bool = True):
    """Within the block, freed CPU tensor memory stays mapped for the next allocation.

    ``active=False`` (used for CUDA runs, whose large tensors are not on the host) makes it a
    no-op. Nested blocks are fine: the settings are restored when the outermost one exits.
    """
    global _depth
    lib = _glibc() if active and enabled() else None
    if lib is None:
        yield
        return
    with _lock:
        if _depth == 0:
            lib.mallopt(_M_MMAP_MAX, 0)  # every block from the heap
            lib.mallopt(_M_TRIM_THRESHOLD, _INT_MAX)  # never shrink the heap's top
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                lib.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
                lib.mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_MAX)
                lib.mallopt(_M_MMAP_MAX, _MMAP_MAX_DEFAULT)
                lib.malloc_trim(0)  # hand the freed memory back
