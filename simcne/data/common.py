"""What every reader shares: labels, splits, image sizes and the one rule for mixed sizes.

Every module of ``simcne.data`` may import this one; it imports none of them, so the
readers never import each other in a circle.
"""

from __future__ import annotations

import os

import numpy as np


def check_labels(labels, n: int, where: str = "X"):
    """Labels as one entry per image, the one validator of every reader and of ``y``.

    ``None`` stays None; a tensor becomes numpy; the shape must be ``(n,)``. Integers,
    bools and whole-number floats become int64 class labels; other finite floats stay
    float64 (a value per image, such as a .beton ``FloatField``: figures colour by it,
    kNN accuracy does not apply); strings stay strings. NaN, infinite values and other
    types are errors.
    """
    if labels is None:
        return None
    if hasattr(labels, "detach") and hasattr(labels, "cpu"):  # a torch tensor
        labels = labels.detach().cpu().float().numpy() if labels.dtype.is_floating_point \
            else labels.detach().cpu().numpy()
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(
            f"The labels of {where} have the wrong length: expected shape ({n},), one entry "
            f"per image, got shape {y.shape}.")
    if np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.bool_):
        return y.astype(np.int64)
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all():
            raise ValueError(f"The labels of {where} must be finite: got "
                             f"{int((~np.isfinite(y)).sum())} NaN or infinite value(s).")
        return y.astype(np.int64) if np.all(np.mod(y, 1) == 0) else y.astype(np.float64)
    if y.dtype.kind in "US":
        return y
    raise ValueError(f"The labels of {where} must be numbers or strings: got dtype {y.dtype}.")


def check_split(split, where: str) -> str:
    """``None`` is ``"all"``; otherwise ``"train"``, ``"test"`` or ``"all"``."""
    split = "all" if split is None else split
    if split not in ("train", "test", "all"):
        raise ValueError(
            f"The 'split' parameter for {where} must be 'train', 'test' or 'all', "
            f"got {split!r}."
        )
    return split


def check_image_size(image_size) -> tuple[int, int] | None:
    """``None``, or an int or pair of ints > 0 as ``(H, W)``."""
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else image_size
    try:
        h, w = (int(s) for s in size)
        ok = all(isinstance(s, (int, np.integer)) and s > 0 for s in size)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            "The 'image_size' parameter must be a positive int or a pair of positive ints "
            f"(H, W): expected e.g. 32 or (32, 32), got {image_size!r}."
        )
    return h, w


def cover(img, size: tuple[int, int]):
    """The one rule for images of another size than ``size`` = (H, W), for every reader.

    The PIL image is scaled, keeping its aspect ratio, until it covers (H, W), and its
    centre is cropped: one Pillow bicubic resize (antialiased when shrinking).
    """
    from PIL import Image

    (H, W), (w, h) = size, img.size
    s = max(W / w, H / h)
    cw, ch = W / s, H / s
    box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
    return img.resize((W, H), Image.Resampling.BICUBIC, box=box)


def cover_array(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """:func:`cover` for a uint8 (h, w, c) array; an image of that size is returned as is."""
    from PIL import Image

    if img.shape[:2] == tuple(size):
        return img
    out = np.asarray(cover(Image.fromarray(img[..., 0] if img.shape[2] == 1 else img), size))
    return out.reshape(size[0], size[1], img.shape[2])


def visible_entries(top) -> list:
    """The ``os.DirEntry`` of each file and folder in ``top`` not hidden (no leading dot),
    sorted by name."""
    with os.scandir(top) as it:
        return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)


def walk_files(top, keep=None, rel: str = "", out: list | None = None) -> list:
    """The files below the folder ``top`` as ``(name relative to top, os.DirEntry)``, in the
    order of ``os.walk`` with sorted names: a folder's files, then each sub-folder's.

    Hidden files and folders (a leading dot) are left out, and so are files whose name
    ``keep`` refuses. Links to folders below ``top`` are not followed and folders that
    cannot be listed are left out (as ``os.walk`` does). A file's ``DirEntry`` gives its
    ``stat()`` without another look-up of its path. Names are joined with ``/`` after
    ``rel``.
    """
    out = [] if out is None else out
    try:
        entries = visible_entries(top)
    except OSError:  # a folder that cannot be listed is left out, as os.walk does
        return out
    folders = []
    for e in entries:
        if e.is_dir():
            if not e.is_symlink():
                folders.append(e)
        elif keep is None or keep(e.name):
            out.append((rel + e.name, e))
    for e in folders:
        walk_files(e.path, keep, f"{rel}{e.name}/", out)
    return out
