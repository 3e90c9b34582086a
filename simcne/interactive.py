"""The interactive map: one self-contained HTML file to pan, zoom and hover (needs bokeh).

:func:`interactive_map` draws the embedding with `bokeh <https://bokeh.org>`_ (WebGL
scatter, pan, wheel zoom, a legend whose entries hide their class, a hover tool) and
writes one HTML file with bokeh's JavaScript inline: it opens offline, from disk, with no
server. The images go into the file as a few WebP "atlas" pages, each a grid of up to
64 x 64 small thumbnails: on Fashion-MNIST one page is a third smaller than the same
thumbnails as one WebP each, and a quarter smaller than a JPEG page of the same quality
setting (BENCHMARKS.md). A point's thumbnail is cut out of its page when the point is
hovered: the JavaScript of our own is that cut-out (a few lines in a bokeh
``CustomJSHover``), the choice between WebGL and canvas, and the 3-D rotation.

The page is written as a stream: bokeh renders it with a placeholder for each atlas page's
URL, and each page is made, base64-encoded and written in its place in turn, so that no
string holds the whole page and at most one atlas page is in memory (writing a map of
1,000,000 points takes less private memory than twice the page's size; BENCHMARKS.md).

Bokeh has no 3-D plots. For ``out_dim=3`` the map shows the points projected by a rotation
that dragging changes (a bokeh ``CustomJS`` on pan events recomputes the projected
coordinates); zoom, legend and hover are the 2-D map's. Embeddings of more dimensions are
drawn by their first two, with a warning and a note on the page.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
import uuid
import warnings
from pathlib import Path

import numpy as np

#: thumbnails per atlas page, as (columns, rows)
PAGE_GRID = (64, 64)
#: the default of ``interactive_map(max_points=...)``: more points are thinned to this many
MAX_POINTS = 100_000
#: pixels of the longer side of a thinned map's density images
DENSITY_PX = 1024

_MISSING = ("The interactive map needs bokeh, which is not installed. "
            "Install it with: pip install 'simcne[html]'")


def _bokeh():
    try:
        import bokeh  # noqa: F401
    except ImportError:
        raise ImportError(_MISSING) from None
    import bokeh

    major, minor = (int(v) for v in bokeh.__version__.split(".")[:2])
    if (major, minor) < (3, 4):
        raise ImportError(f"The interactive map needs bokeh >= 3.4, found {bokeh.__version__}. "
                          "Upgrade it with: pip install 'simcne[html]'")
    return bokeh


# -- thumbnails -------------------------------------------------------------------------------
def thumbnail_shape(image_hw, thumbnail_size: int) -> tuple[int, int]:
    """(h, w) of a thumbnail: the image shrunk (never enlarged) to fit thumbnail_size."""
    h, w = int(image_hw[0]), int(image_hw[1])
    s = min(1.0, thumbnail_size / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def atlas_pages(images, thumb_hw, quality: int = 80, batch: int = 4096, index=None):
    """The thumbnails of every image as WebP pages of ``PAGE_GRID`` thumbnails.

    Parameters
    ----------
    images : ImageStore
    thumb_hw : (int, int)
        Thumbnail height and width (images are resized with antialiasing when they differ).
    quality : int, default=80
        WebP quality (1-100).
    batch : int, default=4096
        The most images read and resized at once (fewer for large images: about 16 MiB
        of them as float32).
    index : array of int, optional
        The images to make thumbnails of, in this order (default: all); thumbnail ``i`` is
        then image ``index[i]``.

    Returns
    -------
    pages : list of (bytes, int)
        Each page as a WebP file and its number of columns ``cols``; thumbnail ``i`` is on
        page ``i // per_page`` (``per_page = PAGE_GRID[0] * PAGE_GRID[1]``), at column
        ``j % cols`` and row ``j // cols`` of it, where ``j = i % per_page``.
    """
    return list(iter_atlas_pages(images, thumb_hw, quality, batch, index))


def page_columns(n: int) -> list[int]:
    """The columns of each atlas page of ``n`` thumbnails (:func:`atlas_pages`)."""
    cols, rows = PAGE_GRID
    return [min(cols, n - start) for start in range(0, n, cols * rows)]


def iter_atlas_pages(images, thumb_hw, quality: int = 80, batch: int = 4096, index=None):
    """:func:`atlas_pages` one page at a time: only the page being made is in memory."""
    th, tw = thumb_hw
    cols, rows = PAGE_GRID
    per_page = cols * rows
    rows_of = np.arange(len(images)) if index is None else np.asarray(index, np.int64)
    n = len(rows_of)
    h, w = images.image_size
    batch = max(1, min(int(batch), (16 << 20) // (4 * images.channels * h * w)))
    for start in range(0, n, per_page):
        yield _atlas_page(images, rows_of[start:start + per_page], (th, tw), quality, batch)


def _atlas_page(images, rows_of, thumb_hw, quality: int, batch: int) -> tuple[bytes, int]:
    """One WebP page of the thumbnails of images ``rows_of``, and its number of columns."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    th, tw = thumb_hw
    count = len(rows_of)
    page_cols = min(PAGE_GRID[0], count)
    page_rows = math.ceil(count / page_cols)
    channels = images.channels
    grid = np.zeros((page_rows * th, page_cols * tw, 1 if channels == 1 else 3), np.uint8)
    for b0 in range(0, count, batch):
        j = np.arange(b0, min(count, b0 + batch))
        x = images.batch(rows_of[j]).cpu()  # (B, C, H, W) uint8, from any device
        x = x[:, :1] if channels == 1 else x[:, :3]
        if tuple(x.shape[2:]) != (th, tw):
            x = F.interpolate(x.float(), size=(th, tw), mode="bilinear", antialias=True,
                              align_corners=False)
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        x = x.permute(0, 2, 3, 1).numpy()
        r, c = j // page_cols, j % page_cols
        for k in range(len(j)):
            grid[r[k] * th:(r[k] + 1) * th, c[k] * tw:(c[k] + 1) * tw] = x[k]
        del x  # not held while the page is encoded (WebP takes about 9 bytes a pixel)
    img = Image.fromarray(grid[..., 0] if channels == 1 else grid, "L" if channels == 1 else "RGB")
    buf = io.BytesIO()
    img.save(buf, "WEBP", quality=int(quality), method=2)  # 4+: 2-5x slower, 1-3 % smaller
    return buf.getvalue(), page_cols


# -- checks ---------------------------------------------------------------------------------
def _check_inputs(embedding, images, labels, class_names, files, thumbnail_size, quality):
    Y = np.asarray(embedding)
    if Y.ndim != 2 or Y.shape[1] < 2 or len(Y) < 1:
        raise ValueError(f"The 'embedding' parameter of interactive_map must be an (n, d) "
                         f"array with n >= 1 and d >= 2. Got shape {Y.shape} instead.")
    if not np.issubdtype(Y.dtype, np.number) or not np.isfinite(Y).all():
        raise ValueError("The 'embedding' parameter of interactive_map must hold finite "
                         "numbers. Got " + ("NaN or infinite values" if np.issubdtype(
                             Y.dtype, np.number) else f"dtype {Y.dtype}") + " instead.")
    n = len(Y)
    store = None
    if images is not None:
        from .data import ImageStore, load

        store = images if isinstance(images, ImageStore) else load(images, name="images")
        if len(store) != n:
            raise ValueError(f"The 'images' parameter of interactive_map must hold one image "
                             f"per point ({n}). Got {len(store)} images instead.")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"The 'labels' parameter of interactive_map must have one entry "
                             f"per point, shape ({n},). Got shape {labels.shape} instead.")
    if class_names is not None:
        class_names = [str(c) for c in class_names]
    if files is not None:
        files = [os.fspath(f) for f in files]
        if len(files) != n:
            raise ValueError(f"The 'files' parameter of interactive_map must name one file "
                             f"per point ({n}). Got {len(files)} names instead.")
    if not (isinstance(thumbnail_size, (int, np.integer)) and 1 <= thumbnail_size <= 256):
        raise ValueError(f"The 'thumbnail_size' parameter of interactive_map must be an int "
                         f"in [1, 256]. Got {thumbnail_size!r} instead.")
    if not (isinstance(quality, (int, np.integer)) and 1 <= quality <= 100):
        raise ValueError(f"The 'quality' parameter of interactive_map must be an int in "
                         f"[1, 100]. Got {quality!r} instead.")
    return Y, store, labels, class_names, files


def _classes(labels, class_names):
    """(class of each point as 0..K-1, label text of each class, name of each class)."""
    values, k = np.unique(labels, return_inverse=True)
    texts = [str(v) for v in values]
    names = []
    for v in values:
        name = ""
        if class_names is not None:
            try:
                name = class_names[int(v)]
            except (ValueError, TypeError, IndexError):
                name = ""
        names.append(name)
    return k.astype(np.int32), texts, names


def _palette(n_classes: int) -> list[str]:
    """The colours of ``plot_embedding`` (matplotlib's tab10, or tab20 cycled)."""
    from bokeh.palettes import Category10_10, Category20_20

    base = list(Category10_10 if n_classes <= 10 else Category20_20)
    return [base[i % len(base)] for i in range(n_classes)]


# -- the page ---------------------------------------------------------------------------------
# The hover tool's formatter: `value` is the hovered point's index in the embedding and
# `format` (the text in braces after @index in the tooltip) says what to return.
_FORMATTER_JS = """
const i = value
if (format === "index") return String(i)  // @index: the point's row in the embedding
// the others come with @slot: the point's place among the points drawn (thinned maps)
if (format === "label") return klass.length ? texts[klass[i]] : ""
if (format === "name") return klass.length ? names[klass[i]] : ""
if (format === "file") {
  if (!files) return ""
  if (atlas.__simcne_files === undefined) atlas.__simcne_files = files.split("\\n")
  return atlas.__simcne_files[i]
}
if (format !== "thumb") return ""
const st = atlas.__simcne || (atlas.__simcne = {images: [], last: -1, url: ""})
if (st.last === i) return st.url
const page = Math.floor(i / per_page), j = i % per_page, cols = atlas.data.cols[page]
let img = st.images[page]
if (img === undefined) {
  img = st.images[page] = new Image()
  img.src = atlas.data.url[page]
}
if (!img.complete || img.naturalWidth === 0) return BLANK
const canvas = document.createElement("canvas")
canvas.width = tw
canvas.height = th
canvas.getContext("2d").drawImage(img, (j % cols) * tw, Math.floor(j / cols) * th, tw, th,
                                  0, 0, tw, th)
st.last = i
st.url = canvas.toDataURL("image/png")
return st.url
"""

# Run once the page is ready: start decoding every atlas page, so the first hover has it.
_PRELOAD_JS = """
const st = atlas.__simcne || (atlas.__simcne = {images: [], last: -1, url: ""})
const waits = []
for (let p = 0; p < atlas.data.url.length; p++) {
  if (st.images[p] === undefined) {
    st.images[p] = new Image()
    st.images[p].src = atlas.data.url[p]
  }
  waits.push(st.images[p].decode().catch(() => null))
}
window.simcne_map = {ready: Promise.all(waits).then(() => true), n_points: n_points}
"""

# 3-D: drag rotates. Points are (x3, y3, z3) in each source; x, y are their projection.
_ROTATE_JS = """
const st = view3d.__simcne || (view3d.__simcne = {yaw: yaw0, pitch: pitch0})
if (cb_obj.event_name === "pan") {
  st.yaw += cb_obj.delta_x * 0.01
  st.pitch = Math.max(-1.55, Math.min(1.55, st.pitch + cb_obj.delta_y * 0.01))
}
const cy = Math.cos(st.yaw), sy = Math.sin(st.yaw)
const cp = Math.cos(st.pitch), sp = Math.sin(st.pitch)
// rotate about the vertical axis by yaw, then tilt by pitch; x and y are on the screen
const px = (x, y, z) => cy * x + sy * y
const py = (x, y, z) => (-sy * x + cy * y) * sp + z * cp
for (const src of sources) {
  const d = src.data, n = d.x3.length
  const x = new Float64Array(n), y = new Float64Array(n)
  for (let k = 0; k < n; k++) {
    x[k] = px(d.x3[k], d.y3[k], d.z3[k])
    y[k] = py(d.x3[k], d.y3[k], d.z3[k])
  }
  src.data = {...d, x: x, y: y}
}
const a = axes.data, ax = [], ay = []
for (let k = 0; k < 3; k++) {
  ax.push([0, px(a.ex[k], a.ey[k], a.ez[k])])
  ay.push([0, py(a.ex[k], a.ey[k], a.ez[k])])
}
axes.data = {...a, xs: ax, ys: ay, tx: ax.map((v) => v[1]), ty: ay.map((v) => v[1])}
"""

# Before bokeh reads the document: keep WebGL only where the browser's WebGL runs on a GPU.
# A software WebGL (SwiftShader, llvmpipe: browsers without a usable GPU) drew bokeh's
# WebGL scatter 3-20 times slower than bokeh's canvas (20,000 and 70,000 points) on the
# 2-core test machine (BENCHMARKS.md). "#backend=webgl" or "#backend=canvas" after the
# file name chooses by hand.
_BACKEND_JS = """<script>
document.addEventListener("DOMContentLoaded", () => {
  const software = /swiftshader|llvmpipe|softpipe|software|basic render/i
  let renderer = ""
  try {
    const gl = document.createElement("canvas").getContext("webgl")
    if (gl) {
      const info = gl.getExtension("WEBGL_debug_renderer_info")
      renderer = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER))
      const lose = gl.getExtension("WEBGL_lose_context")
      if (lose) lose.loseContext()
    }
  } catch (e) { renderer = "" }
  const asked = (location.hash.match(/backend=(webgl|canvas)/) || [])[1]
  const backend = asked || (renderer && !software.test(renderer) ? "webgl" : "canvas")
  window.simcne_backend = {backend: backend, webgl_renderer: renderer}
  if (backend === "canvas") {
    for (const el of document.querySelectorAll('script[type="application/json"]')) {
      el.textContent = el.textContent.replace('"output_backend":"webgl"',
                                              '"output_backend":"canvas"')
    }
  }
})
</script>"""

_BLANK = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
_YAW0, _PITCH0 = 0.6, 0.45
_MARKER = "circle"


def _project(P, yaw, pitch):
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    x = cy * P[:, 0] + sy * P[:, 1]
    y = (-sy * P[:, 0] + cy * P[:, 1]) * sp + P[:, 2] * cp
    return x, y


def _tooltip(th, tw, shown_px, has_images, has_labels, has_names, has_files,
             slot="@index") -> str:
    rows = ['<div style="font: 12px sans-serif; line-height: 1.35; max-width: 240px">']
    if has_images:
        rows.append(f'<img class="simcne-thumb" src="{slot}{{thumb}}" width="{shown_px[1]}" '
                    f'height="{shown_px[0]}" style="image-rendering: pixelated; display: '
                    f'block; margin-bottom: 4px; border: 1px solid #999" alt="">')
    rows.append('<div>index <b class="simcne-index">@index{index}</b></div>')
    if has_labels:
        rows.append(f'<div>label <b class="simcne-label">{slot}{{label}}</b></div>')
    if has_names:
        rows.append(f'<div>class <b class="simcne-class">{slot}{{name}}</b></div>')
    if has_files:
        rows.append('<div class="simcne-file" style="word-break: break-all">'
                    f'{slot}{{file}}</div>')
    rows.append("</div>")
    return "".join(rows)


def interactive_map(embedding, images=None, labels=None, class_names=None, files=None,
                    path="map.html", *, title=None, thumbnail_size=28, quality=80,
                    point_size=None, max_points=MAX_POINTS):
    """Write an interactive map of an embedding: one HTML file that works offline.

    The page shows the points coloured by class, with pan (drag), zoom (mouse wheel, box)
    and a legend whose entries hide and show their class when clicked. Hovering a point
    shows its image, index, label, class name and file name. Everything (bokeh's
    JavaScript, the data, the thumbnails) is in the one file: no server, no network.

    Parameters
    ----------
    embedding : array of shape (n, d), d >= 2
        E.g. ``TSimCNE.embedding_``. d = 3 gives a 3-D view that dragging rotates;
        d > 3 draws the first two dimensions (with a warning and a note on the page).
    images : array, tensor, ImageStore or anything :func:`simcne.data.load` reads, optional
        The images of the points, in the same order. None: no thumbnails.
    labels : array of shape (n,), optional
        Class of each point (ints or strings): the colours and the legend.
    class_names : list of str, optional
        ``class_names[label]`` names an int label in the legend and the hover box.
    files : list of str, optional
        The file name of each point (e.g. ``ImageStore.paths``), shown on hover.
    path : str or os.PathLike, default="map.html"
        Where to write the page (atomically: a temporary file, then a rename).
    title : str, optional
        The page's heading (default: "t-SimCNE map of N images").
    thumbnail_size : int, default=28
        The longer side of each thumbnail in pixels; larger images are shrunk to it
        (antialiased), smaller ones are kept as they are. The file grows with its square.
    quality : int, default=80
        WebP quality of the thumbnails (1-100).
    point_size : float, optional
        Diameter of the points in screen pixels (default: from 2.5 for 70,000 points to
        10 for a few hundred).
    max_points : int or None, default=100_000
        The most points drawn as markers that answer hover (with their thumbnails in the
        page). An embedding of more points is thinned to a random sample of this many
        (seed 0), and every point is drawn beneath as a density image, one per class
        (hidden with its class from the legend; 2-D maps): the page stays under 100 MB and
        a hover under 200 ms at 1,000,000 points (BENCHMARKS.md). None: every point is a
        marker.

    Returns
    -------
    path : pathlib.Path
        The file written.

    Examples
    --------
    >>> from simcne.plot import interactive_map
    >>> interactive_map(est.embedding_, images, est.labels_, class_names,
    ...                 path="map.html")  # doctest: +SKIP
    PosixPath('map.html')
    """
    _bokeh()
    Y, store, labels, class_names, files = _check_inputs(
        embedding, images, labels, class_names, files, thumbnail_size, quality)
    n, d = Y.shape
    shown, point_size, note = _drawn(n, d, point_size, max_points)
    thinned = len(shown) < n
    klass, texts, names = (_classes(labels, class_names) if labels is not None
                           else (np.zeros(n, np.int32), [""], [""]))
    token = f"simcne-atlas-{uuid.uuid4().hex}-"
    atlas, thumb_hw, pages = _thumbnails(store, shown, thinned, thumbnail_size, quality, token)
    p = _figure(d == 3)
    sources, renderers = _draw_classes(p, _coordinates(Y), klass, shown, point_size,
                                       texts, names, labels is not None)
    _add_hover(p, renderers, atlas, thumb_hw, store is not None,
               klass[shown] if labels is not None else None, texts, names,
               None if files is None else [files[i] for i in shown], thinned)
    if d == 3:
        _add_rotation(p, sources)
    heading, header = _header(title, n, len(shown), len(texts), labels is not None, d == 3,
                              store is not None, note)
    parts = _render(header, p, atlas, len(shown), heading, token)
    # what the page's text holds is no longer needed while the thumbnails are made
    del header, p, atlas, sources, renderers, klass
    return _write_page(path, parts, pages)


def _thumbnails(store, shown, thinned: bool, thumbnail_size: int, quality: int, token: str):
    """(atlas, (th, tw), pages): the data source of the atlas pages, whose URLs are
    placeholders (``token`` and the page's number) that :func:`_write_page` replaces by
    the pages that ``pages`` makes one at a time; the thumbnails' height and width."""
    from bokeh.models import ColumnDataSource

    th = tw = 1
    cols, pages = [], iter(())
    if store is not None:
        th, tw = thumbnail_shape(store.image_size, thumbnail_size)
        cols = page_columns(len(shown))
        pages = iter_atlas_pages(store, (th, tw), quality, index=shown if thinned else None)
    atlas = ColumnDataSource(dict(url=[f"{token}{k}" for k in range(len(cols))], cols=cols))
    return atlas, (th, tw), pages


def _add_hover(p, renderers, atlas, thumb_hw, has_images, klass, texts, names, files,
               thinned) -> None:
    """The hover box: the thumbnail cut out of its atlas page, index, label, class, file.
    ``klass`` and ``files`` are those of the points drawn, in their order (or None)."""
    from bokeh.models import CustomJSHover, HoverTool

    th, tw = thumb_hw
    formatter = CustomJSHover(code=_FORMATTER_JS, args=dict(
        atlas=atlas, klass=klass if klass is not None else np.zeros(0, np.int32),
        texts=texts, names=names, per_page=PAGE_GRID[0] * PAGE_GRID[1], th=th, tw=tw,
        BLANK=_BLANK,
        # one string: bokeh walks lists item by item (5 s for 70,000 names)
        files="\n".join(f.replace("\n", " ") for f in files) if files else ""))
    scale = max(1, round(84 / max(th, tw)))  # shown at about 84 pixels, whole multiples
    p.add_tools(HoverTool(
        renderers=renderers, tooltips=_tooltip(
            th, tw, (th * scale, tw * scale), has_images, klass is not None,
            klass is not None and any(names), files is not None,
            "@slot" if thinned else "@index"),
        formatters={"@index": formatter, "@slot": formatter}, point_policy="follow_mouse",
        limit=1, attachment="right"))


def _drawn(n: int, d: int, point_size, max_points):
    """(shown, point_size, note): the points drawn as markers (all, or a random sample in
    the embedding's order), their size, and the page's note on dimensions beyond 3 (also
    a warning)."""
    if max_points is not None and not (isinstance(max_points, (int, np.integer))
                                       and not isinstance(max_points, bool) and max_points >= 1):
        raise ValueError(f"The 'max_points' parameter of interactive_map must be None or an "
                         f"int >= 1. Got {max_points!r} instead.")
    if point_size is not None and not (isinstance(point_size, (int, float, np.number))
                                       and point_size > 0):
        raise ValueError(f"The 'point_size' parameter of interactive_map must be a number "
                         f"> 0. Got {point_size!r} instead.")
    shown = (np.sort(np.random.default_rng(0).choice(n, int(max_points), replace=False))
             if max_points is not None and n > max_points else np.arange(n))
    if point_size is None:
        point_size = float(np.clip(420.0 / math.sqrt(len(shown)), 2.5, 10.0))
    note = ""
    if d > 3:
        note = (f"The embedding has {d} dimensions: this map shows the first two "
                "(dimensions 1 and 2).")
        warnings.warn(note, stacklevel=3)
    return shown, point_size, note


def _figure(three_d: bool):
    """The empty plot: WebGL, no axes, pan (2-D) and zoom."""
    from bokeh.models import Range1d
    from bokeh.plotting import figure

    tools = "wheel_zoom,reset" if three_d else "pan,wheel_zoom,box_zoom,reset"
    p = figure(output_backend="webgl", tools=tools, active_scroll="wheel_zoom",
               match_aspect=True, sizing_mode="stretch_both", min_height=300,
               toolbar_location="above")
    p.axis.visible = False
    p.grid.visible = False
    p.outline_line_color = "#cccccc"
    if three_d:
        p.x_range = Range1d(-1.15, 1.15)
        p.y_range = Range1d(-1.15, 1.15)
    return p


def _coordinates(Y):
    """(x, y, P): the map's coordinates of every point and, for a 3-D embedding, the points
    centred and scaled (P, float64) that x and y project; else P is None and x, y are the
    first two columns of ``Y`` as they are (no copy)."""
    if Y.shape[1] != 3:
        return Y[:, 0], Y[:, 1], None
    P = Y.astype(np.float64)
    P -= P.mean(axis=0)
    # the view holds the sphere of 98 % of the points, whatever way it is turned
    radius = float(np.quantile(np.sqrt((P ** 2).sum(axis=1)), 0.98)) or 1.0
    P /= radius
    x, y = _project(P, _YAW0, _PITCH0)
    return x, y, P


def _draw_classes(p, coordinates, klass, shown, point_size, texts, names, legend: bool):
    """A scatter of each class's shown points, the density of all its points beneath when
    they are thinned (2-D), and the legend: the data sources and the scatter renderers."""
    from bokeh.models import ColumnDataSource

    x, y, P = coordinates
    thinned = len(shown) < len(x)
    colors = _palette(len(texts)) if legend else ["#4d4d4d"]
    density = _density(x, y, klass, colors) if thinned and P is None else None
    sources, renderers, shades = [], [], []
    for c, colour in enumerate(colors):
        m = shown[klass[shown] == c]
        data = dict(x=np.asarray(x[m], np.float64), y=np.asarray(y[m], np.float64),
                    index=m.astype(np.int32))
        if thinned:  # the place of each marker among those drawn: its thumbnail, label, file
            data["slot"] = np.flatnonzero(klass[shown] == c).astype(np.int32)
        if P is not None:
            data.update(x3=P[m, 0], y3=P[m, 1], z3=P[m, 2])
        src = ColumnDataSource(data)
        shade = None
        if density is not None and density[c] is not None:
            url, box = density[c]
            shade = p.image_url(url=[url], x=box[0], y=box[1], w=box[2], h=box[3],
                                anchor="bottom_left", name=f"density-{c}")
        r = p.scatter("x", "y", source=src, marker=_MARKER, size=point_size, fill_color=colour,
                      line_color=None, fill_alpha=0.75, name=f"class-{c}")
        sources.append(src)
        renderers.append(r)
        shades.append(shade)
    if legend:
        _add_legend(p, renderers, shades, texts, names)
    return sources, renderers


def _add_legend(p, renderers, shades, texts, names) -> None:
    """The legend: an entry per class that hides and shows its points and density."""
    from bokeh.models import Legend, LegendItem

    items = []
    for r, shade, label, name in zip(renderers, shades, texts, names):
        text = label + (f"  {name}" if name and name != label else "")
        text = text.replace("$$", "$\u200b$")  # "$$...$$" would be math: MathJax, a CDN
        items.append(LegendItem(label=text, renderers=[r] + ([shade] if shade else [])))
    legend = Legend(items=items, click_policy="hide", ncols=max(1, math.ceil(len(items) / 28)),
                    label_text_font_size="11pt", glyph_height=16, glyph_width=16,
                    title="click to hide / show")
    p.add_layout(legend, "right")


def _add_rotation(p, sources) -> None:
    """3-D: the three axes drawn from the centre, and dragging rotates the view."""
    from bokeh.models import ColumnDataSource, CustomJS

    ends = np.eye(3) * 0.35
    ex, ey = _project(ends, _YAW0, _PITCH0)
    axes_src = ColumnDataSource(dict(
        ex=ends[:, 0], ey=ends[:, 1], ez=ends[:, 2], xs=[[0.0, v] for v in ex],
        ys=[[0.0, v] for v in ey], tx=list(ex), ty=list(ey), name=["1", "2", "3"]))
    p.multi_line("xs", "ys", source=axes_src, line_color="#888888", line_width=1.5)
    p.text("tx", "ty", text="name", source=axes_src, text_color="#666666",
           text_font_size="10pt", x_offset=3)
    rotate = CustomJS(args=dict(sources=sources, axes=axes_src, view3d=p, yaw0=_YAW0,
                                pitch0=_PITCH0), code=_ROTATE_JS)
    p.js_on_event("pan", rotate)


def _header(title, n, n_shown, n_classes, has_labels, three_d, has_images, note):
    """(heading, line): the page's title and the line above the map: the title, what it
    shows and how to use it."""
    from bokeh.models import Div

    heading = title if title is not None else (
        f"t-SimCNE map of {n:,} images" + (" (3-D)" if three_d else ""))
    how = ("drag to rotate, scroll to zoom" if three_d else "drag to pan, scroll to zoom")
    how += ", hover a point to see " + ("its image" if has_images else "which it is")
    if has_labels:
        how += ", click a legend entry to hide or show its class"
    summary = f"{n:,} points" + (f", {n_classes} classes" if has_labels else "")
    if n_shown < n:
        summary += (f" ({n_shown:,} of them, a random sample, drawn as points that answer "
                    "hover" + ("; all as a density beneath)" if not three_d else ")"))
    return heading, Div(text=(
        f'<div style="font: 14px sans-serif"><b style="font-size: 16px">'
        f"{html.escape(heading)}</b> &nbsp; {summary}; {how}."
        + (f'<div class="simcne-note" style="color: #a04000; margin-top: 2px">'
           f"{html.escape(note)}</div>" if note else "") + "</div>"),
        sizing_mode="stretch_width")


def _render(header, p, atlas, n_points, heading, token) -> list[str]:
    """The page's text as bokeh renders it, split at the placeholders of the atlas pages'
    URLs (``token`` and the page's number): text, "0", text, "1", ..., text."""
    from bokeh.core.templates import get_env
    from bokeh.document import Document
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models import CustomJS
    from bokeh.resources import INLINE

    doc = Document()
    doc.add_root(column(header, p, sizing_mode="stretch_both"))
    doc.js_on_event("document_ready", CustomJS(args=dict(atlas=atlas, n_points=n_points),
                                               code=_PRELOAD_JS))
    template = get_env().from_string(
        '{% extends "file.html.jinja" %}{% block preamble %}' + _BACKEND_JS
        + "{% endblock %}")
    parts = re.split(re.escape(token) + r"(\d+)",
                     file_html(doc, resources=INLINE, title=heading, template=template))
    if parts[1::2] != [str(k) for k in range(len(atlas.data["url"]))]:
        raise RuntimeError("bokeh did not write each thumbnail page's place once, in order")
    doc.clear()
    return parts


def _write_page(path, parts: list[str], pages) -> Path:
    """Write the page's text with each atlas page in its place, made and encoded one at a
    time, to a temporary file that then replaces ``path``."""
    from ._io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(parts[0].encode("utf-8"))
        for k, (page, _) in enumerate(pages):
            f.write(b"data:image/webp;base64,")
            for a in range(0, len(page), 3 << 16):  # whole groups of 3 bytes: no padding
                f.write(base64.b64encode(page[a:a + (3 << 16)]))
            f.write(parts[2 * k + 2].encode("utf-8"))
    return path


def _density(x, y, klass, colors, px: int = DENSITY_PX):
    """Each class's points as a PNG image (a data URL) and its box (x0, y0, w, h) in the
    map's coordinates: a pixel's opacity grows with the points in it, 1 - 0.6^count (up
    to 15 points)."""
    import io as _io

    from PIL import Image

    x0, x1, y0, y1 = float(x.min()), float(x.max()), float(y.min()), float(y.max())
    span = max(x1 - x0, y1 - y0) or 1.0
    pad = span * 0.01
    x0, y0, span = x0 - pad, y0 - pad, span + 2 * pad
    w = max(1, round(px * (x1 - x0 + pad) / span))
    h = max(1, round(px * (y1 - y0 + pad) / span))
    alpha = np.rint(255 * (1 - 0.6 ** np.arange(16))).astype(np.uint8)  # by count
    cell = np.empty(len(x), np.int32)  # each point's pixel, 2**16 points at a time
    for a in range(0, len(x), 1 << 16):
        cx = ((np.asarray(x[a:a + (1 << 16)], np.float64) - x0) / span * px).astype(np.int64)
        cy = ((np.asarray(y[a:a + (1 << 16)], np.float64) - y0) / span * px).astype(np.int64)
        cell[a:a + (1 << 16)] = np.clip(cy, 0, h - 1) * w + np.clip(cx, 0, w - 1)
    out = []
    for c, colour in enumerate(colors):
        count = np.bincount(cell[klass == c], minlength=w * h).reshape(h, w)[::-1]
        if not count.any():
            out.append(None)
            continue
        # a palette image: one colour at 16 opacities, a few kB for a mostly empty map
        img = Image.fromarray(np.minimum(count, 15, out=count).astype(np.uint8), "P")
        rgb = [int(colour[k:k + 2], 16) for k in (1, 3, 5)]
        img.putpalette(rgb * 16, "RGB")
        buf = _io.BytesIO()
        img.save(buf, "PNG", transparency=alpha.tobytes(), compress_level=6)
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        out.append((url, (x0, y0, w * span / px, h * span / px)))
    return out
