"""Readers that turn what users have into one uint8 :class:`ImageStore`."""

from __future__ import annotations

from .arrays import from_array, from_items, to_uint8
from .common import check_labels
from .inputs import load
from .store import ImageStore


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
