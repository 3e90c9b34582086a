"""Readers for files and folders (filled in by the data-readers work)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .arrays import from_array
from .store import ImageStore


def read_path(path) -> ImageStore:
    """Read a .npy/.npz file into an ImageStore (more formats come with the readers)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"X: no such file or folder: {os.fspath(path)!r}")
    if p.suffix == ".npy":
        return from_array(np.load(p, mmap_mode="r"), name=str(p))
    if p.suffix == ".npz":
        with np.load(p) as z:
            keys = list(z.keys())
            images = z["images"] if "images" in z else z[keys[0]]
            labels = z["labels"] if "labels" in z else None
            store = from_array(images, name=str(p))
        if labels is not None:
            store.labels = labels
        return store
    raise ValueError(f"X: cannot read {os.fspath(path)!r}: unknown file type {p.suffix!r}.")
