"""The interactive map (map.html), in Python and in a real headless Chromium (issue 12).

The browser tests drive Debian's chromium through the DevTools protocol over a pipe
(tests/browser.py): no WebDriver, nothing installed at test time. They skip, saying why,
where no Chromium is found (``make test`` installs it). Screenshots go to
``$SIMCNE_SCREENSHOTS`` when set (to look at them), else to pytest's temporary folder.
"""

import base64
import io
import os
import re
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("bokeh")

from browser import (Browser, drawn_points, find_chromium, frame_box, hover,  # noqa: E402
                     next_frame, point_position, tooltips, wait_map)
from conftest import load_script  # noqa: E402

from simcne.interactive import PAGE_GRID, atlas_pages, thumbnail_shape  # noqa: E402
from simcne.plot import interactive_map  # noqa: E402

N_PER_CLASS = 40
NAMES = ["circle", "bar", "cross"]
# software WebGL (SwiftShader) logs these when bokeh copies its WebGL canvas: not page errors
GL_NOISE = re.compile(r"GL Driver Message .*(GPU stall due to ReadPixels|Performance)")


def _images(n, size=12, seed=0):
    """Blocky random images (4x4 blocks scaled up): distinct, and kind to lossy WebP."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 4, 4), dtype=np.uint8)
    return np.repeat(np.repeat(small, size // 4, axis=1), size // 4, axis=2)


def _data(d=2):
    rng = np.random.default_rng(0)
    n = 3 * N_PER_CLASS
    labels = np.repeat(np.arange(3), N_PER_CLASS)
    centres = np.array([[0.0] * d, [10.0] + [0.0] * (d - 1), [5.0, 9.0] + [0.0] * (d - 2)])
    Y = centres[labels] + rng.normal(0, 1.0, (n, d))
    files = [f"{NAMES[c]}/img_{i:03d} & <b>.png" for i, c in enumerate(labels)]
    return Y, _images(n), labels, files


def _decode_data_url(url):
    from PIL import Image

    assert url.startswith("data:image/png;base64,"), url[:40]
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    return np.asarray(img.convert("L"), dtype=np.float64)


def _shots(tmp_path_factory):
    folder = os.environ.get("SIMCNE_SCREENSHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


# -- without a browser ------------------------------------------------------------------------
def test_the_map_is_one_file_that_names_no_server(tmp_path):
    Y, X, y, files = _data()
    path = interactive_map(Y, X, y, NAMES, files, path=tmp_path / "sub" / "map.html")
    assert path == tmp_path / "sub" / "map.html"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    # scripts and styles are inline; nothing is loaded from anywhere
    assert not re.search(r"<script[^>]+src=", text)
    assert not re.search(r"<link[^>]+href=", text)
    # (bokeh's JavaScript names a CDN for MathJax, which only math text would fetch; the
    # browser test checks that no request is made)
    markup = re.sub(r"<script[^>]*>.*?</script>", "", text, flags=re.S)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", markup)
    assert "data:image/webp;base64," in text
    assert not [p for p in path.parent.iterdir() if p.name != "map.html"]  # no temp files


def test_atlas_pages_hold_each_thumbnail_where_the_page_says():
    from PIL import Image

    from simcne.data import load

    n = PAGE_GRID[0] * PAGE_GRID[1] + 70  # two pages
    X = _images(n, size=8, seed=1)
    pages = atlas_pages(load(X), (8, 8), quality=100)
    assert len(pages) == 2 and pages[1][1] == PAGE_GRID[0]
    per = PAGE_GRID[0] * PAGE_GRID[1]
    for i in (0, 1, 63, 64, 4095, 4096, n - 1):
        data, cols = pages[i // per]
        grid = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float64)
        j = i % per
        tile = grid[(j // cols) * 8:(j // cols + 1) * 8, (j % cols) * 8:(j % cols + 1) * 8]
        assert np.abs(tile - X[i]).mean() < 6, i


def test_the_page_holds_each_atlas_page_in_its_place(tmp_path):
    """The pages are written into the page as it streams to the file (issue 28): each URL
    is the page atlas_pages makes, in order, and no placeholder is left."""
    import json

    from simcne.data import load

    n = PAGE_GRID[0] * PAGE_GRID[1] + 70  # two pages
    X = _images(n, size=8, seed=1)
    Y = np.random.default_rng(0).normal(size=(n, 2))
    text = interactive_map(Y, X, path=tmp_path / "m.html", quality=90,
                           max_points=None).read_text(encoding="utf-8")
    assert "simcne-atlas-" not in text
    urls = re.findall(r'\["url",\[("data:image/webp;base64,[^"]*"(?:,"[^"]*")*)\]\]', text)
    assert len(urls) == 1
    urls = json.loads("[" + urls[0] + "]")
    pages = atlas_pages(load(X), (8, 8), quality=90)
    assert [base64.b64decode(u.split(",", 1)[1]) for u in urls] == [p for p, _ in pages]


def test_thumbnails_shrink_to_fit_and_never_grow():
    assert thumbnail_shape((28, 28), 28) == (28, 28)
    assert thumbnail_shape((8, 8), 28) == (8, 8)
    assert thumbnail_shape((64, 32), 28) == (28, 14)
    assert thumbnail_shape((32, 96), 24) == (8, 24)


def test_bad_inputs_name_the_parameter(tmp_path):
    Y, X, y, files = _data()
    out = tmp_path / "m.html"
    with pytest.raises(ValueError, match="'embedding'"):
        interactive_map(Y[:, :1], X, path=out)
    with pytest.raises(ValueError, match="'embedding'.*finite"):
        interactive_map(np.full_like(Y, np.nan), X, path=out)
    with pytest.raises(ValueError, match="'images'.*120"):
        interactive_map(Y, X[:5], path=out)
    with pytest.raises(ValueError, match="'labels'"):
        interactive_map(Y, X, y[:3], path=out)
    with pytest.raises(ValueError, match="'files'"):
        interactive_map(Y, X, y, files=files[:2], path=out)
    with pytest.raises(ValueError, match="'thumbnail_size'"):
        interactive_map(Y, X, thumbnail_size=0, path=out)
    with pytest.raises(ValueError, match="'quality'"):
        interactive_map(Y, X, quality=101, path=out)
    with pytest.raises(ValueError, match="'point_size'"):
        interactive_map(Y, X, point_size=-1, path=out)
    assert not out.exists()


def test_more_than_three_dimensions_draw_the_first_two_and_say_so(tmp_path):
    Y, X, y, _ = _data(d=5)
    with pytest.warns(UserWarning, match="5 dimensions.*first two"):
        path = interactive_map(Y, X, y, path=tmp_path / "m.html")
    assert "this map shows the first two" in path.read_text(encoding="utf-8")


def test_missing_bokeh_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "bokeh", None)
    with pytest.raises(ImportError, match=r"pip install 'simcne\[html\]'"):
        interactive_map(np.zeros((3, 2)), path=tmp_path / "m.html")


# -- in Chromium ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if find_chromium() is None:
        pytest.skip("no Chromium found: install Debian's chromium ('make test' does) or set "
                    "$CHROMIUM to a Chromium or Chrome executable")
    with Browser(width=1100, height=800) as b:
        yield b


@pytest.fixture(scope="module")
def map_2d(tmp_path_factory):
    Y, X, y, files = _data()
    path = interactive_map(Y, X, y, NAMES, files,
                           path=tmp_path_factory.mktemp("map2d") / "map.html")
    return path, Y, X, y, files


def _open(b, path, fragment=""):
    b.clear_events()
    b.open(path, fragment)
    wait_map(b)
    next_frame(b)


def _no_errors_no_network(b, path):
    errors = [e for e in b.console_errors() if not GL_NOISE.search(e)]
    assert errors == []
    url = path.resolve().as_uri()
    fetched = [u for u in b.requests() if not u.startswith(("data:", "blob:"))]
    assert fetched and all(u.split("#")[0] == url for u in fetched), fetched


def _check_hover(b, i, X, y, files):
    xy = point_position(b, i)
    assert xy is not None
    tips = hover(b, *xy)
    assert len(tips) == 1, tips
    tip = tips[0]
    assert tip["index"] == str(i)
    assert tip["label"] == str(y[i]) and tip["class"] == NAMES[y[i]]
    assert tip["file"] == files[i]  # shown as text, not as HTML
    shown = _decode_data_url(tip["src"])
    assert shown.shape == X[i].shape
    errors = np.abs(X.astype(np.float64) - shown).mean(axis=(1, 2))
    assert errors[i] < 12 and np.argmin(errors) == i  # its own image, not a neighbour's
    b.mouse("mouseMoved", 2, 2)  # away, so that the next hover starts afresh


def _colour_pixels(png, colour, box=None, tol=12):
    """Pixels of the screenshot within ``tol`` of ``colour`` (as drawn at alpha 0.75)."""
    from PIL import Image

    rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.int64)
    c = np.array([int(colour[k:k + 2], 16) for k in (1, 3, 5)])
    target = 0.75 * c + 0.25 * 255
    hit = (np.abs(rgb - target) <= tol).all(axis=2)
    if box is not None:
        left, top, right, bottom = (int(round(v)) for v in box)
        mask = np.zeros_like(hit)
        mask[top:bottom, left:right] = True
        hit &= mask
    ys, xs = np.nonzero(hit)
    return xs, ys


def test_the_2d_map_in_chromium(browser, map_2d, tmp_path_factory):
    from bokeh.palettes import Category10_10

    path, Y, X, y, files = map_2d
    b = browser
    _open(b, path)
    _no_errors_no_network(b, path)
    assert b.js("window.simcne_backend.backend") == "canvas"  # software WebGL here
    assert drawn_points(b) == {f"class-{c}": N_PER_CLASS for c in range(3)}
    for i in (0, N_PER_CLASS + 7, 3 * N_PER_CLASS - 1):
        _check_hover(b, i, X, y, files)

    shots = _shots(tmp_path_factory)
    before = os.path.join(shots, "map_2d.png")
    b.screenshot(before)
    frame = frame_box(b)
    colours = Category10_10[:3]
    for colour in colours:  # every class is drawn in its colour inside the frame
        assert len(_colour_pixels(before, colour, frame)[0]) > 100

    # a click on the legend entry of class 0 hides its points; a second shows them again
    xs, ys = _colour_pixels(before, colours[0], (frame[2], frame[1], 1100, frame[1] + 200))
    assert len(xs), "no legend entry of class 0 right of the frame"
    at = (float(np.median(xs)), float(np.median(ys)))
    b.mouse("mousePressed", *at, button="left", buttons=1)
    b.mouse("mouseReleased", *at, button="left")
    next_frame(b)
    assert drawn_points(b) == {f"class-{c}": N_PER_CLASS for c in (1, 2)}
    hidden = os.path.join(shots, "map_2d_class0_hidden.png")
    b.screenshot(hidden)
    assert len(_colour_pixels(hidden, colours[0], frame)[0]) == 0
    assert len(_colour_pixels(hidden, colours[1], frame)[0]) > 100
    xy = point_position(b, 0)
    assert hover(b, *xy, timeout=1.0) == []  # hidden points show no hover box
    b.mouse("mousePressed", *at, button="left", buttons=1)
    b.mouse("mouseReleased", *at, button="left")
    next_frame(b)
    assert sum(drawn_points(b).values()) == len(Y)
    _no_errors_no_network(b, path)


def test_the_2d_map_with_webgl(browser, map_2d):
    path, Y, X, y, files = map_2d
    b = browser
    _open(b, path, "#backend=webgl")
    assert b.js("window.simcne_backend.backend") == "webgl"
    assert b.js("""(() => {
      const doc = Bokeh.documents[0]
      const plot = [...doc._all_models.values()].find((m) => m.type === "Figure")
      return Bokeh.index.find_one(plot).canvas_view.webgl != null
    })()""")
    assert sum(drawn_points(b).values()) == len(Y)
    _check_hover(b, 5, X, y, files)
    _no_errors_no_network(b, path)


def test_the_3d_map_turns_when_dragged(browser, tmp_path_factory):
    Y, X, y, files = _data(d=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 3-D is drawn as 3-D, without a warning
        path = interactive_map(Y, X, y, NAMES, files,
                               path=tmp_path_factory.mktemp("map3d") / "map.html")
    b = browser
    _open(b, path)
    _no_errors_no_network(b, path)
    assert sum(drawn_points(b).values()) == len(Y)
    _check_hover(b, 3, X, y, files)
    before = point_position(b, 3)
    left, top, right, bottom = frame_box(b)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    b.mouse("mouseMoved", cx, cy)
    b.mouse("mousePressed", cx, cy, button="left", buttons=1)
    for k in range(1, 11):
        b.mouse("mouseMoved", cx + 8 * k, cy + 3 * k, button="left", buttons=1)
        next_frame(b)
    b.mouse("mouseReleased", cx + 80, cy + 30, button="left")
    next_frame(b)
    after = point_position(b, 3)
    assert np.hypot(after[0] - before[0], after[1] - before[1]) > 5  # it turned
    assert left < after[0] < right and top < after[1] < bottom  # and did not pan away
    _check_hover(b, 3, X, y, files)  # hover follows the turned points
    b.screenshot(os.path.join(_shots(tmp_path_factory), "map_3d.png"))
    _no_errors_no_network(b, path)


def test_the_readme_screenshots_script(map_2d, tmp_path, capsys):
    """docs/make_screenshots.py hovers the point furthest right (its box with the image
    shows), writes the screenshot and copies thumbnails.png; a point that is not drawn is
    refused with exit status 1 and nothing written."""
    import json
    import shutil

    from PIL import Image

    if find_chromium() is None:
        pytest.skip("no Chromium found")
    shots = load_script("docs/make_screenshots.py")
    path, Y, X, y, files = map_2d
    fit_dir = tmp_path / "fit"
    fit_dir.mkdir()
    shutil.copyfile(path, fit_dir / "map.html")
    np.save(fit_dir / "embedding.npy", Y.astype(np.float32))
    (fit_dir / "report.json").write_text(json.dumps({"knn_accuracy": 0.5}))
    Image.new("RGB", (30, 20), "white").save(fit_dir / "thumbnails.png")
    out = tmp_path / "figures"
    assert shots.main([str(fit_dir), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    right = int(np.argmax(Y[:, 0]))
    assert f"point {right} hovered, label {y[right]}" in said
    with Image.open(out / "map_html.png") as img:
        assert img.size == (1000, 720)
        pixels = np.asarray(img.convert("L"))
    assert pixels.std() > 10  # something was drawn, not a blank page
    assert (out / "thumbnails.png").read_bytes() == (fit_dir / "thumbnails.png").read_bytes()
    elsewhere = tmp_path / "none"
    assert shots.main([str(fit_dir), "--out", str(elsewhere), "--point", str(len(Y))]) == 1
    assert "is not drawn" in capsys.readouterr().err
    assert not list(elsewhere.glob("*.png"))
