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

**Only where it fits.** A training stage keeps freed memory only when :func:`reuse_fits`
says so: the heap it grows to, :data:`REUSE_FACTOR` times the step's working memory as
``simcne.train.step_memory`` estimates it (1.36 GB for resnet_small at batch 512, whose
heap with reuse measured 2.4-3.1 GB, at most 2.3x; 4.98 GB for ResNet18, measured
7.8-9.1 GB, at most 1.8x), must fit in :data:`REUSE_SHARE` of the memory still available
to the process
(:func:`available_memory`: the kernel's MemAvailable, the cgroup's limit less its usage,
and ``SIMCNE_MEMORY_LIMIT`` less the process's resident memory, whichever is least).
Otherwise the stage runs with glibc's default allocation, slower but at the memory of the
live tensors. Results are the same bit for bit either way.
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

#: the heap with reuse, as a multiple of the estimated step memory (measured at most 2.3x)
REUSE_FACTOR = 2.3
#: the share of the available memory that the heap with reuse may take
REUSE_SHARE = 0.8

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


def _parse_bytes(text: str) -> int:
    """'8G', '512M', '3.5e9' -> bytes."""
    text = text.strip().upper().removesuffix("B")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(text[-1:], 1)
    if scale > 1:
        text = text[:-1]
    try:
        value = float(text) * scale
    except ValueError:
        raise ValueError(
            f"SIMCNE_MEMORY_LIMIT must be a number of bytes such as 8G, 512M or 3.5e9. Got "
            f"{os.environ.get('SIMCNE_MEMORY_LIMIT')!r} instead.") from None
    return int(value)


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_free() -> int | None:
    """The cgroup's memory limit less its usage (v2, then v1); None without a limit."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            base = "/sys/fs/cgroup" + path.rstrip("/")
            limit, usage = _read_int(base + "/memory.max"), _read_int(base + "/memory.current")
        elif "memory" in controllers.split(","):
            base = "/sys/fs/cgroup/memory" + path.rstrip("/")
            limit = _read_int(base + "/memory.limit_in_bytes")
            usage = _read_int(base + "/memory.usage_in_bytes")
        else:
            continue
        if limit is not None and usage is not None and limit < 2**60:
            return max(0, limit - usage)
    return None


def _resident() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def available_memory() -> int | None:
    """Bytes this process can still take without swapping or the OOM killer, or None.

    The least of: ``MemAvailable`` of ``/proc/meminfo``; the memory cgroup's limit less its
    usage (containers); and ``SIMCNE_MEMORY_LIMIT`` (e.g. ``8G``, a cap you set for this
    process) less its resident memory. None where none of these can be read (not Linux).
    """
    candidates = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    candidates.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    free = _cgroup_free()
    if free is not None:
        candidates.append(free)
    limit = os.environ.get("SIMCNE_MEMORY_LIMIT")
    if limit:
        candidates.append(max(0, _parse_bytes(limit) - _resident()))
    return min(candidates) if candidates else None


def reuse_fits(step_bytes: int) -> tuple[bool, str]:
    """Whether keeping freed memory is safe for a step needing ``step_bytes``, and why not.

    True when the heap with reuse (``REUSE_FACTOR * step_bytes``) fits in ``REUSE_SHARE``
    of :func:`available_memory` (or when that cannot be read).
    """
    avail = available_memory()
    heap = REUSE_FACTOR * step_bytes
    if avail is None or heap <= REUSE_SHARE * avail:
        return True, ""
    return False, (f"freed memory is not kept for reuse (it would need about {heap / 1e9:.1f} "
                   f"GB, more than {REUSE_SHARE:.0%} of the {avail / 1e9:.1f} GB available): "
                   "slower steps, less memory")


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
