"""The README's screenshots: map.html in a browser (a point hovered) and thumbnails.png.

    PYTHONPATH=. python -m simcne demo --out simcne-demo --quiet
    PYTHONPATH=. python docs/make_screenshots.py simcne-demo

Opens DIR/map.html in a headless Chromium (Debian's ``chromium``, driven by
``tests/browser.py``), moves the mouse onto a point so that its hover box with the image
shows (by default the point furthest to the right, so that the box opens onto the empty
margin beside the map instead of covering points), and writes the screenshot to
docs/figures/map_html.png; copies DIR/thumbnails.png to docs/figures/thumbnails.png. Exits
with 1, writing nothing, when the box with the point's image does not show.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import Browser, hover, next_frame, point_position, wait_map  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("fit_dir", type=Path, help="a folder written by 'simcne fit' or 'simcne demo'")
    p.add_argument("--point", type=int, default=None,
                   help="the index of the point to hover (default: the one furthest right)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.point is None:
        a.point = int(np.argmax(np.load(a.fit_dir / "embedding.npy")[:, 0]))
    with Browser(width=1000, height=720) as b:
        b.open(a.fit_dir / "map.html")
        wait_map(b)
        where = point_position(b, a.point)
        if where is None:
            print(f"point {a.point} is not drawn in map.html (a thinned map): pick another "
                  "with --point", file=sys.stderr)
            return 1
        tips = hover(b, *where)
        box = [t for t in tips if t["index"] == str(a.point) and t["src"] and t["img_complete"]]
        if not box:
            print(f"no hover box with an image showed for point {a.point}: {tips}",
                  file=sys.stderr)
            return 1
        next_frame(b)
        b.screenshot(a.out / "map_html.png")
    shutil.copyfile(a.fit_dir / "thumbnails.png", a.out / "thumbnails.png")
    report = json.loads((a.fit_dir / "report.json").read_text())
    print(f"wrote {a.out / 'map_html.png'} (point {a.point} hovered, label "
          f"{box[0]['label']}) and {a.out / 'thumbnails.png'}; the fit's kNN: "
          f"{report.get('knn_accuracy')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
