"""Figures of embeddings (needs matplotlib: ``pip install simcne[plot]``), and the
interactive map :func:`interactive_map` (needs bokeh: ``pip install simcne[html]``; it
lives in :mod:`simcne.interactive`)."""

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
                   legend=True, random_state=0):
    """Scatter a 2-D embedding coloured by class, with a legend of class names.

    The points are drawn in a random order (one scatter of all points), so that no class
    hides under the others where they overlap, as the last class drawn would if the classes
    were drawn one after another.

    Parameters
    ----------
    Y : array of shape (n, 2)
    labels : array of shape (n,), optional
    class_names : list of str, optional
        ``class_names[label]`` is shown in the legend (else the label itself).
    ax : matplotlib Axes, optional
        Drawn into when given, else a new figure is made.
    random_state : int, default=0
        Seed of the drawing order.

    Returns
    -------
    ax : matplotlib Axes
        ``ax.collections[0]`` holds the points, in the drawing order; the legend lists the
        classes in label order.
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
        from matplotlib.lines import Line2D

        labels = np.asarray(labels)
        classes, k = np.unique(labels, return_inverse=True)
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        colors = np.array([cmap(i % cmap.N) for i in range(len(classes))])
        order = np.random.default_rng(random_state).permutation(len(Y))
        ax.scatter(Y[order, 0], Y[order, 1], s=s, c=colors[k.ravel()[order]], linewidths=0,
                   rasterized=True)
        if legend:
            handles = [Line2D([], [], ls="", marker="o", ms=max(np.sqrt(s), 6.0),
                              color=colors[i], mew=0,
                              label=class_names[int(c)] if class_names is not None else str(c))
                       for i, c in enumerate(classes)]
            ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5),
                      frameon=False, fontsize="small")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


_STAGE_TITLES = ("a   end of stage 1 (fresh, untrained last layer)",
                 "b   end of stage 2 (last layer trained)", "c   end of stage 3 (fine-tuned)")
_STAGE_NAMES = ("pretraining\n(pretrain_out_dim)", "last layer\n(out_dim)",
                "fine-tuning\n(out_dim)")


def plot_stages(stage_embeddings, labels=None, class_names=None, axes=None, titles=None,
                s=None, legend=True):
    """The embedding at the end of each training stage, side by side.

    The parameter guide's "visualization during the optimization" figure: panel a is the
    layout after stage 1 seen through the fresh, still untrained ``out_dim`` layer, b after
    stage 2, c after stage 3. All panels use the same colours per class.

    Parameters
    ----------
    stage_embeddings : list of arrays of shape (n, >=2)
        E.g. ``TSimCNE.stage_embeddings_`` (one per stage that ran).
    labels, class_names : optional
        As in :func:`plot_embedding`.
    axes : sequence of matplotlib Axes, optional
        One per stage; else a new figure with one row of panels is made.
    titles : list of str, optional
        Panel titles (default: "a  end of stage 1 ...", ...).
    s : float, optional
        Marker size.
    legend : bool, default=True
        A legend of class names beside the last panel.

    Returns
    -------
    axes : ndarray of matplotlib Axes, one per stage
    """
    plt = _plt()
    embs = [np.asarray(e) for e in stage_embeddings]
    if not embs:
        raise ValueError("stage_embeddings must hold at least one embedding. Got none.")
    if axes is None:
        fig, axes = plt.subplots(1, len(embs), figsize=(4.2 * len(embs) + 1.5, 4.4),
                                 squeeze=False)
        axes = axes[0]
        fig.subplots_adjust(wspace=0.05)
    axes = np.asarray(axes, dtype=object).ravel()
    if len(axes) != len(embs):
        raise ValueError(f"axes must hold one Axes per stage embedding ({len(embs)}). "
                         f"Got {len(axes)}.")
    if titles is None:
        titles = [_STAGE_TITLES[i] if i < 3 else f"stage {i + 1}" for i in range(len(embs))]
    for i, (Y, ax) in enumerate(zip(embs, axes)):
        plot_embedding(Y, labels, class_names, ax=ax, s=s, title=titles[i],
                       legend=legend and i == len(embs) - 1)
        ax.title.set_fontsize("medium")
    return axes


def plot_loss(loss_history, ax=None, stage_names=None):
    """The mean loss of every epoch, epochs counted on across the stages.

    Each stage gets its own colour; dashed vertical lines mark the stage boundaries and
    each stage is named at the top. (Stage 1 trains a ``pretrain_out_dim``-dimensional
    output, stages 2 and 3 the ``out_dim`` one, so the loss jumps at the first boundary.)

    Parameters
    ----------
    loss_history : structured array with fields ``stage``, ``epoch``, ``loss``
        E.g. ``TSimCNE.loss_history_``. A plain 1-D array of losses is drawn as one stage.
    ax : matplotlib Axes, optional
    stage_names : list of str, optional
        Names shown for each stage (default: pretraining, last layer, fine-tuning).

    Returns
    -------
    ax : matplotlib Axes
        One line per stage that has epochs, plus one dashed line (``gid="stage-boundary"``)
        per boundary between such stages.
    """
    plt = _plt()
    h = np.asarray(loss_history)
    if h.dtype.names is not None:
        missing = {"stage", "loss"} - set(h.dtype.names)
        if missing:
            raise ValueError(f"loss_history must have fields 'stage' and 'loss'. Got fields "
                             f"{list(h.dtype.names)}.")
        stages, loss = np.asarray(h["stage"]), np.asarray(h["loss"], dtype=float)
    elif h.ndim == 1:
        stages, loss = np.ones(len(h), dtype=int), h.astype(float)
    else:
        raise ValueError(f"loss_history must be TSimCNE.loss_history_ or a 1-D array of losses. "
                         f"Got shape {h.shape}.")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.8))
    names = list(stage_names) if stage_names is not None else list(_STAGE_NAMES)
    x = np.arange(1, len(loss) + 1)
    colors = plt.get_cmap("tab10")
    present = [st for st in (1, 2, 3) if (stages == st).any()]
    present += sorted(set(int(v) for v in np.unique(stages)) - set(present))
    few = len(loss) <= 60
    for st in present:
        m = stages == st
        ax.plot(x[m], loss[m], color=colors((st - 1) % 10), lw=1.5,
                marker="o" if few else None, ms=3.5, label=f"stage {st}")
    trans = ax.get_xaxis_transform()
    for j, st in enumerate(present):
        xs = x[stages == st]
        lo, hi = xs.min() - 0.5, xs.max() + 0.5
        if j > 0:
            ax.axvline(lo, color="0.45", ls="--", lw=1, gid="stage-boundary")
        name = names[st - 1] if st - 1 < len(names) else ""
        ax.text((lo + hi) / 2, 0.98, f"stage {st}" + (f"\n{name}" if name else ""),
                transform=trans, ha="center", va="top", fontsize="small",
                color=colors((st - 1) % 10), zorder=5,
                bbox=dict(facecolor="white", edgecolor="none", alpha=0.85, pad=1.0))
    ax.set_xlim(0.5, max(1, len(loss)) + 0.5)
    if len(loss):
        lo, hi = np.nanmin(loss), np.nanmax(loss)
        pad = (hi - lo) * 0.08 or 0.5
        ax.set_ylim(lo - pad, hi + pad * 4.5)  # room for the stage names at the top
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (counted across stages)")
    ax.set_ylabel("mean loss of the epoch")
    ax.spines[["top", "right"]].set_visible(False)
    return ax


def _images_at(images, index):
    """Images ``index`` of ``images`` as (H, W) or (H, W, 3) arrays for imshow."""
    from .data import ImageStore, load

    if not isinstance(images, ImageStore):
        images = load(images, name="images")
    x = images.batch(np.asarray(index, dtype=np.int64)).numpy()  # (B, C, H, W) uint8
    return x[:, 0] if x.shape[1] == 1 else np.transpose(x[:, :3], (0, 2, 3, 1))


def _check_thumbnails(Y, images, n, zoom) -> np.ndarray:
    """``Y`` as floats, once it and plot_thumbnails' other arguments are checked."""
    Y = np.asarray(Y, dtype=float)
    if Y.ndim != 2 or Y.shape[1] < 2:
        raise ValueError(f"Y must be an (n, 2) embedding. Got shape {Y.shape}.")
    n_images = len(images)
    if n_images != len(Y):
        raise ValueError(f"images must hold one image per row of Y ({len(Y)}). "
                         f"Got {n_images}.")
    if not (isinstance(n, (int, np.integer)) and n >= 1):
        raise ValueError(f"n must be an int >= 1. Got {n!r}.")
    if not zoom > 0:
        raise ValueError(f"zoom must be > 0. Got {zoom!r}.")
    return Y


def _spread_out(Y2: np.ndarray, n: int, width: float, random_state) -> np.ndarray:
    """Up to ``n`` points, tried in a random order, each kept where its ``width`` square
    overlaps none kept before: the thumbnails spread over the whole map."""
    order = np.random.default_rng(random_state).permutation(len(Y2))
    chosen: list[int] = []
    for i in order:
        if len(chosen) >= n:
            break
        if chosen and (np.abs(Y2[chosen] - Y2[i]).max(axis=1) < width).any():
            continue
        chosen.append(int(i))
    return np.array(chosen, dtype=np.int64)


def plot_thumbnails(Y, images, ax=None, n=64, zoom=1.0, labels=None, class_names=None,
                    random_state=0, s=None, frame=True):
    """Draw a sample of the images at their positions in the embedding (a gallery).

    Points are visited in a random order and an image is drawn where its square would not
    overlap one already drawn, so the thumbnails spread over the whole map. The embedding
    is drawn underneath as a light scatter plot.

    Parameters
    ----------
    Y : array of shape (n_points, >=2)
    images : array, tensor, ImageStore or anything :func:`simcne.data.load` reads
        The images of the points, in the same order: (N, H, W), (N, H, W, C) or
        (N, C, H, W); grayscale or RGB.
    ax : matplotlib Axes, optional
    n : int, default=64
        The most thumbnails to draw.
    zoom : float, default=1.0
        Thumbnail width as a multiple of ``span / (1.5 sqrt(n))`` (span: the larger side of
        the embedding's bounding box). Larger thumbnails mean fewer fit without overlapping.
    labels, class_names : optional
        Colour the scatter plot (and the thumbnails' frames) by class.
    random_state : int, default=0
        Seed of the order in which points are tried.
    s : float, optional
        Marker size of the scatter plot.
    frame : bool, default=True
        With labels, a thin frame in the class colour around each thumbnail.

    Returns
    -------
    ax : matplotlib Axes
        ``ax.images`` holds one image per thumbnail drawn.
    """
    plt = _plt()
    from matplotlib.patches import Rectangle

    Y = _check_thumbnails(Y, images, n, zoom)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 8))
    Y2 = Y[:, :2]
    plot_embedding(Y2, labels, class_names, ax=ax, s=s, legend=labels is not None)
    for coll in ax.collections:
        coll.set_alpha(0.35)
    span = float(np.ptp(Y2, axis=0).max()) or 1.0
    width = zoom * span / (1.5 * np.sqrt(n))
    chosen_arr = _spread_out(Y2, n, width, random_state)
    thumbs = _images_at(images, chosen_arr)
    cmap = None
    if labels is not None:
        labels = np.asarray(labels)
        classes = np.unique(labels)
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for i, img in zip(chosen_arr, thumbs):
        h, w = img.shape[:2]
        half_w = width / 2 * (w / max(h, w))
        half_h = width / 2 * (h / max(h, w))
        x0, y0 = Y2[i]
        ext = (x0 - half_w, x0 + half_w, y0 - half_h, y0 + half_h)
        ax.imshow(img, extent=ext, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255,
                  interpolation="nearest" if max(h, w) <= 64 else "antialiased", zorder=3)
        if frame and cmap is not None:
            k = int(np.searchsorted(classes, labels[i]))
            ax.add_patch(Rectangle((ext[0], ext[2]), 2 * half_w, 2 * half_h, fill=False,
                                   lw=1.2, edgecolor=cmap(k % cmap.N), zorder=4))
    lo, hi = Y2.min(axis=0) - 0.6 * width, Y2.max(axis=0) + 0.6 * width
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    return ax


def save_figure(fig, path, dpi: int = 150) -> None:
    """Save atomically (a temporary file, then rename)."""
    from pathlib import Path

    from ._io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
from .interactive import interactive_map  # noqa: E402,F401  (imports bokeh only when called)
