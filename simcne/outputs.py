"""What the command writes beside a map and reads back: the embedding as CSV, reports as JSON
(atomically), the figures and map.html of a fit, the stage timings of its report, and a
``simcne fit`` folder read back for ``simcne plot``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ._version import __version__


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

    return {"simcne": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def fit_report(est, store, *, command: str, data, knn, outputs, figures_note, started,
               timings) -> dict:
    """The report.json of ``simcne fit``: what was read, the parameters, the stages run,
    timings, kNN accuracy ``knn = (accuracy or None, note or None[, how])`` (``how``: what
    :func:`simcne.metrics.knn_summary` says of the search), device, versions."""
    import numpy as np

    acc, acc_note, *how = knn
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
                **(how[0] if how else {}), **({"note": acc_note} if acc_note else {})},
        "device": str(next(est.model_.parameters()).device),
        "processes": int(os.environ.get("WORLD_SIZE", "1") or 1),  # under torchrun: several
        "versions": versions(),
        "started_utc": started,
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "outputs": outputs,
        **({"figures_note": figures_note} if figures_note else {}),
    }
    return report


class StageClock:
    """A TSimCNE callback that notes when each stage's epochs end (for the report)."""

    def __init__(self):
        self.start = time.perf_counter()
        self.last: dict[int, float] = {}

    def __call__(self, stage, epoch, loss, model):
        self.last[int(stage)] = time.perf_counter()

    def seconds(self, stages, end: float) -> dict:
        out, prev = {}, self.start
        for s in stages:
            t = self.last.get(s, prev)
            out[f"stage_{s}"] = round(t - prev, 3)
            prev = t
        out["embedding_passes_and_rest"] = round(end - prev, 3)
        return out


def write_figures(est, store, out: Path, acc) -> list[str]:
    """embedding.png, stages.png, loss.png and thumbnails.png of a fit into ``out``; the
    names written. ``acc``: the kNN accuracy for the title, or None."""
    from .plot import _plt, plot_embedding, plot_loss, plot_stages, plot_thumbnails, save_figure

    plt = _plt()
    labels, names = est.labels_, store.class_names
    Y = est.embedding_
    written = []
    title = f"t-SimCNE, {len(Y)} images" + (f" (kNN accuracy {acc:.3f})" if acc is not None else "")
    fig, ax = plt.subplots(figsize=(7, 6))
    plot_embedding(Y, labels, names, ax=ax, title=title)
    save_figure(fig, out / "embedding.png")
    written.append("embedding.png")
    plt.close(fig)
    from .plot import _STAGE_TITLES

    titles = [_STAGE_TITLES[s - 1] for s in stages_run(est)]
    axes = plot_stages(est.stage_embeddings_, labels, names, titles=titles)
    fig = axes[0].figure
    save_figure(fig, out / "stages.png")
    written.append("stages.png")
    plt.close(fig)
    ax = plot_loss(est.loss_history_)
    save_figure(ax.figure, out / "loss.png")
    written.append("loss.png")
    plt.close(ax.figure)
    ax = plot_thumbnails(Y, store, labels=labels, class_names=names)
    save_figure(ax.figure, out / "thumbnails.png")
    written.append("thumbnails.png")
    plt.close(ax.figure)
    return written


def write_map(est, store, path: Path, acc) -> None:
    """map.html (out_dim > 3: the first two dimensions, with a warning and a note)."""
    from .plot import interactive_map

    Y = est.embedding_
    title = f"t-SimCNE map of {len(Y):,} images" + (
        f" (kNN accuracy {acc:.3f})" if acc is not None else "")
    interactive_map(Y, store, est.labels_, store.class_names, store.paths, path=path,
                    title=title)


def read_fit_output(source):
    """What ``simcne plot`` draws from: an embedding .npy, a model file, or a folder written by
    ``simcne fit``. Returns (embedding, labels, class names, model file or None, data path or
    None)."""
    from .data.labels import read_labels
    from .persist import read_model_file

    p = Path(source)
    if not p.exists():
        raise FileNotFoundError(f"The path {source!r} does not exist: expected an embedding "
                                ".npy, a model file or a folder written by 'simcne fit'.")
    labels = names = model = data = None
    if p.is_dir():
        emb = p / "embedding.npy"
        if not emb.is_file():
            raise FileNotFoundError(f"The folder {source!r} has no embedding.npy: expected "
                                    "a folder written by 'simcne fit'.")
        Y = load_npy(emb)
        if (p / "embedding.csv").is_file():
            try:
                labels, names = read_labels(p / "embedding.csv")
            except ValueError:
                labels = names = None
        if (p / "model.pt").is_file():
            model = p / "model.pt"
        if (p / "report.json").is_file():
            with open(p / "report.json", encoding="utf-8") as f:
                report = json.load(f)
            data = report.get("data")
            names = names or report.get("class_names")
    elif p.suffix.lower() == ".npy":
        Y = load_npy(p)
    else:
        state = read_model_file(p)
        Y, labels, model = state["embedding"], state["labels"], p
    if Y.ndim != 2 or Y.shape[1] < 2:
        raise ValueError(f"{source!r}: expected an (n, 2) or wider embedding, got shape "
                         f"{Y.shape}")
    return Y, labels, names, model, data


def load_npy(path):
    """A plain .npy array (no pickles); a clear error naming the file otherwise."""
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"{os.fspath(path)!r} is not a plain .npy array: {e}") from None
