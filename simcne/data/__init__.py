"""Readers that turn what users have into one uint8 :class:`ImageStore`."""

from __future__ import annotations

import os

import numpy as np
import torch

from .arrays import check_labels, from_array, from_items, to_uint8
from .store import ImageStore


def load(X, y=None, name: str = "X") -> ImageStore:
    """Read ``X`` into an :class:`ImageStore`.

    X may be an ImageStore; a numpy array or torch tensor of images; a torch Dataset or a
    list yielding images or (image, label) pairs (PIL images, arrays or tensors); or a path.
    ``y`` overrides labels found in X.
    """
    if isinstance(X, ImageStore):
        store = X
    elif isinstance(X, (np.ndarray, torch.Tensor)):
        store = from_array(X, name=name)
    elif isinstance(X, (str, os.PathLike)):
        from .files import read_path

        store = read_path(X)
    elif hasattr(X, "__len__") and hasattr(X, "__getitem__"):
        store = from_items(X, name=name)
    else:
        raise ValueError(
            f"{name} must be an image array, a torch Dataset, a list of images or a path. "
            f"Got {type(X).__name__} instead."
        )
    if y is not None:
        store.labels = check_labels(y, len(store), name)
    return store


__all__ = ["ImageStore", "check_labels", "from_array", "from_items", "load", "to_uint8"]
