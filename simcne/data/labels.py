"""Label files for ``simcne fit --labels`` and ``simcne plot --labels``: .npy, .csv, text."""

from __future__ import annotations

import os
from pathlib import Path


def read_labels(path):
    """Labels (and class names, when the file has them) from .npy, .csv or a text file."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"The labels file {os.fspath(path)!r} does not exist.")
    if p.suffix.lower() == ".npy":
        try:
            labels = np.load(p, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"The labels file {os.fspath(path)!r} is not a plain .npy array: "
                             f"{e}") from None
        if labels.ndim != 1:
            raise ValueError(f"The labels file {os.fspath(path)!r} must hold a 1-D array. "
                             f"Got shape {labels.shape}.")
        return labels, None
    if p.suffix.lower() == ".csv":
        import csv

        with open(p, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if not rows or "label" not in rows[0]:
            raise ValueError(f"The labels file {os.fspath(path)!r} must be a CSV with a "
                             "'label' column (like the embedding.csv of 'simcne fit').")
        return _labels_from_column([r["label"] for r in rows],
                                   [r.get("class_name", "") for r in rows])
    with open(p, encoding="utf-8") as f:
        values = [line.strip() for line in f if line.strip()]
    return _labels_from_column(values, None)


def _labels_from_column(values, names):
    """Labels as ints when they all are, else strings; class names where given."""
    import numpy as np

    try:
        labels = np.array([int(v) for v in values], dtype=np.int64)
    except ValueError:
        return np.array(values), None
    class_names = None
    if names is not None and all(names) and len(labels) and labels.min() >= 0:
        table = [""] * (int(labels.max()) + 1)
        for lab, name in zip(labels, names):
            table[lab] = name
        class_names = [t or str(i) for i, t in enumerate(table)]
    return labels, class_names
