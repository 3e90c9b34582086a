"""A thinned map (issue 28): past ``max_points`` a random sample answers hover, with its own
thumbnails, labels and files, and every point is drawn beneath as a density per class."""

import re

import numpy as np
import pytest

pytest.importorskip("bokeh")

from browser import (Browser, drawn_points, find_chromium, hover, next_frame,  # noqa: E402
                     point_position, wait_map)
from test_map import NAMES, _data, _decode_data_url  # noqa: E402

from simcne.plot import interactive_map  # noqa: E402

KEEP = 45


@pytest.fixture(scope="module")
def thin_map(tmp_path_factory):
    Y, X, y, files = _data()
    path = interactive_map(Y, X, y, NAMES, files, max_points=KEEP,
                           path=tmp_path_factory.mktemp("thin") / "map.html")
    return path, Y, X, y, files


def test_max_points_is_checked_and_thins_the_page(tmp_path, thin_map):
    Y, X, y, files = _data()
    with pytest.raises(ValueError, match="'max_points' parameter of interactive_map must be "
                                         "None or an int >= 1. Got 0 instead"):
        interactive_map(Y, X, y, path=tmp_path / "m.html", max_points=0)
    full = interactive_map(Y, X, y, NAMES, files, path=tmp_path / "full.html", max_points=None)
    text = thin_map[0].read_text()
    assert "45 of them, a random sample" in text
    assert len(re.findall(r"density-\d", text)) >= 3  # one density image per class
    assert "density-" not in full.read_text()
    # fewer thumbnails: the atlas holds the sample's only
    assert thin_map[0].stat().st_size < full.stat().st_size


def test_the_thinned_map_in_chromium(thin_map):
    if find_chromium() is None:
        pytest.skip("no Chromium found: install Debian's chromium ('make test' does)")
    path, Y, X, y, files = thin_map
    with Browser(width=1100, height=800) as b:
        b.open(path)
        wait_map(b)
        next_frame(b)
        assert sum(drawn_points(b).values()) == KEEP
        shown = sorted(b.js("""(() => {
          const out = []
          for (const v of Bokeh.index.all_views()) {
            const d = v.model.data_source ? v.model.data_source.data : null
            if (d && d.index && v.model.name && v.model.name.startsWith("class-"))
              out.push(...d.index)
          }
          return out
        })()"""))
        assert len(shown) == KEEP and len(set(shown)) == KEEP
        for i in (shown[0], shown[KEEP // 2], shown[-1]):
            tips = hover(b, *point_position(b, i))
            assert len(tips) == 1
            tip = tips[0]
            assert tip["index"] == str(i) and tip["label"] == str(y[i])
            assert tip["class"] == NAMES[y[i]] and tip["file"] == files[i]
            errors = np.abs(X.astype(np.float64) - _decode_data_url(tip["src"])).mean(axis=(1, 2))
            assert np.argmin(errors) == i  # its own thumbnail, not another point's
            b.mouse("mouseMoved", 2, 2)
