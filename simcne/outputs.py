"""What the command writes beside a map: the embedding as CSV, reports as JSON (atomically)."""

from __future__ import annotations

import json
import os
import time
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


def stages_run(est) -> list[int]:
    """The numbers of the stages whose embeddings ``est.stage_embeddings_`` holds: from 1,
    or only 3 after a warm start that skipped stages 1 and 2 (``init_stage=3``)."""
    first = 3 if est.init is not None and est.init_stage == 3 else 1
    return list(range(first, first + len(est.stage_embeddings_)))


def versions() -> dict:
    """simcne's, torch's, numpy's and Python's versions and the platform."""
    import platform

    import numpy as np
    import torch

    from . import __version__

    return {"simcne": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def fit_report(est, store, *, command: str, data, knn, outputs, figures_note, started,
               timings) -> dict:
    """The report.json of ``simcne fit``: what was read, the parameters, the stages run,
    timings, kNN accuracy ``knn = (accuracy or None, note or None)``, device, versions."""
    import numpy as np

    acc, acc_note = knn
    labels = est.labels_
    stages = stages_run(est)
    hist = est.loss_history_
    report = {
        "command": command,
        "data": data,
        "data_format": store.meta.get("format"),
        "n_images": len(store),
        "stored_image_size": list(store.image_size),
        "image_size": list(est.image_size_),
        "in_channels": est.in_channels_,
        "n_classes": None if labels is None else int(len(np.unique(labels))),
        "class_names": store.class_names,
        "parameters": {k: v for k, v in est.get_params().items() if k != "callbacks"},
        "stages_run": len(stages),
        "resumed_from": (None if est.resumed_from_ is None else
                         dict(zip(("stage", "epoch"), est.resumed_from_))),
        "epochs_run": {f"stage_{s}": int((hist["stage"] == s).sum()) for s in stages},
        "final_loss": {f"stage_{s}": float(hist["loss"][hist["stage"] == s][-1])
                       for s in stages if (hist["stage"] == s).any()},
        "timings_s": timings,
        "knn_accuracy": acc,
        "knn": {"k": 15, "test_size": 0.2, "split": "stratified", "random_state": 0,
                **({"note": acc_note} if acc_note else {})},
        "device": str(next(est.model_.parameters()).device),
        "processes": int(os.environ.get("WORLD_SIZE", "1") or 1),  # under torchrun: several
        "versions": versions(),
        "started_utc": started,
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "outputs": outputs,
        **({"figures_note": figures_note} if figures_note else {}),
    }
    return report
