"""Readers that turn what users have into one uint8 :class:`ImageStore`."""

from __future__ import annotations

import os

import numpy as np
import torch

from .arrays import from_array, from_items, to_uint8
from .common import check_labels
from .store import ImageStore


def load(X, y=None, name: str = "X", cache=None, **read_options) -> ImageStore:
    """Read ``X`` into an :class:`ImageStore`.

    X may be an ImageStore; a numpy array or torch tensor of images; a torch Dataset or a
    list yielding images or (image, label) pairs (PIL images, arrays or tensors); a path
    (file or folder) or a built-in dataset name (``"digits"``, ``"fashion-mnist"``), read by
    :func:`simcne.data.files.read_path`, which also receives ``read_options`` (e.g.
    ``image_size=32``, ``split="train"``), and ``cache``: the folder of the decode-once
    cache (None: the default one, False: none; see :mod:`simcne.data.cache`). ``y``
    overrides labels found in X.
    """
    if isinstance(X, ImageStore):
        store = X
    elif isinstance(X, (np.ndarray, torch.Tensor)):
        store = from_array(X, name=name)
    elif isinstance(X, (str, os.PathLike)):
        from .files import read_path

        store = read_path(X, cache=cache, **read_options)
    elif hasattr(X, "__len__") and hasattr(X, "__getitem__"):
        store = from_items(X, name=name)
    else:
        raise ValueError(
            f"{name} must be an image array, a torch Dataset, a list of images or a path. "
            f"Got {type(X).__name__} instead."
        )
    if read_options and not isinstance(X, (str, os.PathLike)):
        raise ValueError(
            f"The reader options {sorted(read_options)} apply to paths and dataset names only: "
            f"expected {name} to be a path, got {type(X).__name__}."
        )
    if y is not None:
        store.labels = check_labels(y, len(store), name)
    return store


def __getattr__(attr):
    # the readers import lazily: Pillow and scikit-learn load only when a reader runs
    if attr in ("read_path", "load_dataset", "DATASETS"):
        from . import datasets, files

        return getattr(files if attr == "read_path" else datasets, attr)
    if attr in ("write_beton", "read_beton"):
        from . import beton

        return getattr(beton, attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ = [
    "DATASETS", "ImageStore", "check_labels", "from_array", "from_items", "load",
    "load_dataset", "read_beton", "read_path", "to_uint8", "write_beton",
]  # fmt: skip
