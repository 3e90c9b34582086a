"""What users have (an array, a Dataset, a list, a path, a name) into one ImageStore:
:func:`load`, ``simcne.data.load``; the readers that need it (``write_beton``) import it
from here, never from the package."""

from __future__ import annotations

import os

import numpy as np
import torch

from .arrays import from_array, from_items
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
