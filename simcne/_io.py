"""Atomic writes: write to a temporary file beside the target, then os.replace.

A write that fails (a full disk, a read-only or missing folder, no permission) raises
:class:`WriteError`, an ``OSError`` whose message names the file that was to be written;
the temporary file is removed, and whatever was under the final name before (an older
checkpoint, say) is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


class WriteError(OSError):
    """A file could not be written; the message names it. Nothing was left under its name."""


def _write_error(path: Path, err: BaseException) -> WriteError:
    reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    errno_ = err.errno if isinstance(err, OSError) else None
    return WriteError(
        errno_, f"Cannot write '{os.fspath(path)}': {reason or type(err).__name__}. Nothing "
        "was written under that name (a file there before is unchanged); free some space or "
        "choose a writable folder")


@contextlib.contextmanager
def atomic_path(path, *, suffix: str = ".tmp", wrap_errors: bool = True):
    """Yield a temporary path in ``path``'s folder; on success it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is left as it was, so an
    interrupted run never leaves a half-written file under the final name. An ``OSError``
    while writing becomes a :class:`WriteError` naming ``path``; ``wrap_errors=False`` lets
    it pass as it is, for a body that does more than write (reads a source, downloads: its
    own errors keep their type and message). The temporary file is
    ``.<name>.<random><suffix>`` (:func:`temporaries_of` finds those a killed writer left).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
        os.close(fd)
    except OSError as e:
        if not wrap_errors:
            raise
        raise _write_error(path, e) from None
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); give it the usual mode of a new file
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if wrap_errors and isinstance(e, OSError) and not isinstance(e, WriteError):
            raise _write_error(path, e) from None
        raise


def temporaries_of(path, suffix: str = ".tmp") -> list[Path]:
    """Temporary files that :func:`atomic_path` left beside ``path`` (a process killed while
    writing leaves one)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f".{path.name}.*{suffix}"))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_npy(path, array) -> None:
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def save_torch(obj, path, *, fsync: bool = False, before_replace=None) -> None:
    """``torch.save(obj)`` to ``path`` atomically.

    ``fsync=True`` flushes the data to the disk before the rename (a checkpoint then
    survives a power cut, not only a killed process). ``before_replace()`` runs once the
    temporary file is complete, just before the rename (a test hook).
    """
    import torch

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            try:
                torch.save(obj, f)
            except RuntimeError as e:  # torch reports a failed write of its archive so,
                if isinstance(e.__context__, OSError):  # with the OSError as its context
                    raise e.__context__ from None
                raise OSError(str(e).splitlines()[0] if str(e) else "write failed") from e
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
