"""What the command writes beside a map: the embedding as CSV, reports as JSON (atomically)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def _dim_names(d: int) -> list[str]:
    return ["x", "y", "z"][:d] if d <= 3 else [f"dim{i + 1}" for i in range(d)]


def write_csv(path, Y, labels=None, class_names=None, files=None) -> None:
    """Write an embedding as CSV (atomically): x, y[, z ...], label, class_name, file."""
    import csv

    from ._io import atomic_path

    header = _dim_names(Y.shape[1])
    cols = []
    if labels is not None:
        header.append("label")
        cols.append([str(v) for v in labels])
        if class_names is not None:
            header.append("class_name")
            cols.append([_class_name(class_names, v) for v in labels])
    if files is not None:
        header.append("file")
        cols.append(list(files))
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            for i, row in enumerate(Y):
                w.writerow([repr(float(v)) for v in row] + [c[i] for c in cols])


def _class_name(class_names, label) -> str:
    try:
        return str(class_names[int(label)])
    except (ValueError, TypeError, IndexError):
        return ""


def write_json(path, obj) -> None:
    from ._io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, default=_jsonable)
            f.write("\n")


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return os.fspath(value)
    return repr(value)
