"""The README's screenshots: map.html in a browser (a point hovered) and thumbnails.png.

    PYTHONPATH=. python -m simcne demo --out simcne-demo --quiet
    PYTHONPATH=. python docs/make_screenshots.py simcne-demo

Opens DIR/map.html in a headless Chromium (Debian's ``chromium``, driven by
``tests/browser.py``), moves the mouse onto a point so that its hover box with the image
shows, and writes the screenshot to docs/figures/map_html.png; copies DIR/thumbnails.png to
docs/figures/thumbnails.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import Browser, hover, next_frame, point_position, wait_map  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("fit_dir", type=Path, help="a folder written by 'simcne fit' or 'simcne demo'")
    p.add_argument("--point", type=int, default=0, help="the index of the point to hover")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    with Browser(width=1000, height=720) as b:
        b.open(a.fit_dir / "map.html")
        wait_map(b)
        x, y = point_position(b, a.point)
        tips = hover(b, x, y)
        next_frame(b)
        b.screenshot(a.out / "map_html.png")
    shutil.copyfile(a.fit_dir / "thumbnails.png", a.out / "thumbnails.png")
    report = json.loads((a.fit_dir / "report.json").read_text())
    print(f"wrote {a.out / 'map_html.png'} (hovered point {a.point}: {tips[:1]}) and "
          f"{a.out / 'thumbnails.png'}; the fit's kNN: {report.get('knn_accuracy')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
