"""docs/make_figures.py: its smoke mode draws every figure of docs/parameter_guide.md, and
the guide's captions quote the kNN values that the script wrote to docs/figures/knn.json
(issue 21, item 6)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "docs" / "make_figures.py"
GUIDE = ROOT / "docs" / "parameter_guide.md"
KNN_JSON = ROOT / "docs" / "figures" / "knn.json"


def _fashion_mnist_available() -> bool:
    from simcne.data.datasets import fashion_mnist_folder

    try:
        fashion_mnist_folder("all", download=False)
    except FileNotFoundError:
        return False
    return True


def _figures():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import make_figures
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return list(make_figures.FIGURES)


def test_help():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--smoke" in out.stdout and "--only" in out.stdout and "--profile" in out.stdout


def test_smoke_draws_every_figure(tmp_path):
    if not _fashion_mnist_available():
        pytest.skip("Fashion-MNIST's files are not installed (apt-get install "
                    "dataset-fashion-mnist)")
    out = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    names = _figures()
    for name in names:
        png = tmp_path / f"{name}.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert png.stat().st_size < 300_000, name
    report = json.loads((tmp_path / "knn.json").read_text())
    assert report["profile"] == "smoke" and set(report["figures"]) == set(names)
    for name, panels in report["figures"].items():
        assert panels, name
        for p in panels:  # printed as the script went
            if p["knn"] is not None:
                assert 0 <= p["knn"] <= 1
                assert f"-> {name}.png {p['panel']}: {p['setting']}: kNN {p['knn']:.3f}" \
                    in out.stdout
    ckpt = {p["panel"]: p for p in report["figures"]["checkpoint"]}
    assert ckpt["b"]["resumed_from"] == [3, 1]


def _captions(text: str) -> dict:
    """figure name -> the caption paragraph that follows its image in the guide."""
    out = {}
    for m in re.finditer(r"!\[[^\]]*\]\(figures/(\w+)\.png\)\n((?:.+\n?)+)", text):
        out[m.group(1)] = m.group(2)
    return out


def test_guide_captions_match_knn_json():
    if not (GUIDE.exists() and KNN_JSON.exists()):
        pytest.skip("docs/parameter_guide.md or docs/figures/knn.json missing")
    report = json.loads(KNN_JSON.read_text())
    captions = _captions(GUIDE.read_text())
    assert set(report["figures"]) <= set(captions), "a figure without a caption in the guide"
    for name, panels in report["figures"].items():
        for p in panels:
            value = "diverged" if p["knn"] is None else f"{p['knn']:.3f}"
            assert value in captions[name], (name, p["panel"], value)
        assert (ROOT / "docs" / "figures" / f"{name}.png").is_file(), name
