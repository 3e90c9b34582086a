"""Figures of embeddings (needs matplotlib: ``pip install simcne[plot]``)."""

from __future__ import annotations

import numpy as np


def _plt():
    try:
        import matplotlib

        if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
            import os

            if not os.environ.get("DISPLAY"):
                matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "Plotting needs matplotlib, which is not installed. "
            "Install it with: pip install 'simcne[plot]'"
        ) from None
    return plt


def plot_embedding(Y, labels=None, class_names=None, ax=None, s=None, title=None,
                   legend=True):
    """Scatter a 2-D embedding coloured by class, with a legend of class names.

    Parameters
    ----------
    Y : array of shape (n, 2)
    labels : array of shape (n,), optional
    class_names : list of str, optional
        ``class_names[label]`` is shown in the legend (else the label itself).
    ax : matplotlib Axes, optional
        Drawn into when given, else a new figure is made.

    Returns
    -------
    ax : matplotlib Axes
    """
    plt = _plt()
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape[1] < 2:
        raise ValueError(f"Y must be an (n, 2) embedding. Got shape {Y.shape}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 6))
    s = s if s is not None else max(0.5, min(20.0, 20000.0 / len(Y)))
    if labels is None:
        ax.scatter(Y[:, 0], Y[:, 1], s=s, c="0.3", linewidths=0, rasterized=True)
    else:
        labels = np.asarray(labels)
        classes = np.unique(labels)
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        for i, c in enumerate(classes):
            m = labels == c
            name = class_names[int(c)] if class_names is not None else str(c)
            ax.scatter(Y[m, 0], Y[m, 1], s=s, color=cmap(i % cmap.N), label=name,
                       linewidths=0, rasterized=True)
        if legend:
            ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
                      markerscale=max(1.0, 6.0 / np.sqrt(s)), fontsize="small")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def save_figure(fig, path, dpi: int = 150) -> None:
    """Save atomically (a temporary file, then rename)."""
    from pathlib import Path

    from ._io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
