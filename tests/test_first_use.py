"""What a new user tripped over (issue 12), one regression test each, and map.html from the
command (``simcne fit`` writes it, ``simcne plot --kind html`` redraws it)."""

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import quick
from simcne.cli import main

TINY_FIT = ["--total-epochs", "1", "1", "1", "--batch-size", "16", "--backbone", "resnet_small",
            "--random-state", "0", "--device", "cpu", "--quiet"]
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    """24 grayscale PNGs in two class folders; the first class 12x10, the second 8x8."""
    from PIL import Image

    root = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(0)
    for c, (name, shape) in enumerate([("big", (12, 10)), ("small", (8, 8))]):
        (root / name).mkdir()
        for i in range(12):
            img = rng.integers(0, 256, size=shape).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"img{i:02d}.png")
    return root


# -- simcne.data.write_beton ------------------------------------------------------------------
def test_write_beton_and_read_beton_are_in_simcne_data(tmp_path, tiny):
    import simcne.data
    from simcne.data import beton, read_beton, write_beton

    assert write_beton is beton.write_beton and read_beton is beton.read_beton
    assert {"write_beton", "read_beton"} <= set(simcne.data.__all__)
    X, y = tiny
    path = write_beton(X[:10], tmp_path / "x.beton")
    assert np.array_equal(read_beton(path).batch(np.arange(10)).numpy()[:, 0], X[:10])


# -- image_size brings images of differing sizes to one size ----------------------------------
def test_a_mixed_folder_without_a_size_names_the_flags_that_work(mixed_folder):
    from simcne.data import load

    with pytest.raises(ValueError, match=r"differ in size.*--read-size H W.*--image-size"):
        load(str(mixed_folder))


def test_mixed_size_is_used_only_when_the_sizes_differ(mixed_folder):
    from simcne.data import load

    store = load(str(mixed_folder), mixed_size=(8, 8))
    assert store.image_size == (8, 8) and len(store) == 24
    assert store.meta["resized_to"] == [8, 8]
    one_size = load(str(mixed_folder / "big"), mixed_size=(8, 8))  # a flat folder, 12x10
    assert one_size.image_size == (12, 10) and "resized_to" not in one_size.meta
    # --read-size (image_size) still wins over it
    assert load(str(mixed_folder), image_size=6, mixed_size=8).image_size == (6, 6)
    # a .beton of differing sizes, as well
    assert load(str(DATA / "ffcv_varsize.beton"), mixed_size=12).image_size == (12, 12)


def test_fit_with_image_size_on_a_mixed_folder(mixed_folder, tmp_path):
    out = tmp_path / "out"
    assert main(["fit", str(mixed_folder), "--out", str(out), "--image-size", "8", "8",
                 *TINY_FIT]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["stored_image_size"] == [8, 8] and report["image_size"] == [8, 8]
    assert report["n_images"] == 24
    pytest.importorskip("bokeh")
    # simcne fit writes the interactive map beside the figures
    assert "map.html" in report["outputs"]
    text = (out / "map.html").read_text(encoding="utf-8")
    assert "data:image/webp;base64," in text and "big/img00.png" in text


def test_the_estimator_reads_a_mixed_folder_at_its_image_size(mixed_folder):
    est = quick(total_epochs=[1], batch_size=16, image_size=8).fit(str(mixed_folder))
    assert est.embedding_.shape == (24, 2) and est.image_size_ == (8, 8)
    assert est.transform(str(mixed_folder)).shape == (24, 2)


# -- progress on a terminal and in a log file -------------------------------------------------
class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_in_a_log_is_one_line_per_epoch_or_tenth_of_a_stage(tiny, monkeypatch):
    from simcne.train import Stage, _Lines

    X, _ = tiny
    log = io.StringIO()  # not a terminal, like `make demo > log`
    monkeypatch.setattr(sys, "stderr", log)
    quick(total_epochs=[10], batch_size=30, verbose=True).fit(X[:30])
    text = log.getvalue()
    assert "\r" not in text
    lines = [ln for ln in text.splitlines() if "stage 1: epoch" in ln]
    assert [ln.split("epoch ")[1].split(",")[0] for ln in lines] == [
        f"{e}/10" for e in range(1, 11)]
    assert all(ln.startswith("[simcne] ") and "loss " in ln for ln in lines)
    # a long stage: every ceil(epochs / 10) epochs and the last
    log.seek(0)
    log.truncate()
    bar = _Lines(Stage(number=3, epochs=25, lr=0.1, warmup=0), start_epoch=0)
    for _ in range(25):
        bar.set_postfix(loss="1.0")
        bar.update()
    shown = [ln.split("epoch ")[1].split("/")[0] for ln in log.getvalue().splitlines()]
    assert shown == ["3", "6", "9", "12", "15", "18", "21", "24", "25"]


def test_progress_on_a_terminal_is_a_bar(tiny, monkeypatch):
    X, _ = tiny
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    quick(total_epochs=[2], batch_size=30, verbose=True).fit(X[:30])
    assert "\r" in term.getvalue() and "stage 1: epoch" not in term.getvalue()


# -- simcne transform --out DIR ---------------------------------------------------------------
@pytest.fixture(scope="module")
def model_file(mixed_folder, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    quick(total_epochs=[1], batch_size=16, image_size=8).fit(str(mixed_folder)).save(path)
    return path


@pytest.mark.parametrize("make_dir", [True, False])
def test_transform_into_a_folder(model_file, mixed_folder, tmp_path, make_dir):
    out = tmp_path / "embedded"
    if make_dir:
        out.mkdir()
    # a folder (existing, or a new name without a suffix) gets embedding.npy and the csv;
    # the mixed folder is read at the model's image size
    assert main(["transform", str(model_file), str(mixed_folder), "--out", str(out),
                 "--csv", "--quiet"]) == 0
    Y = np.load(out / "embedding.npy")
    assert Y.shape == (24, 2)
    with open(out / "embedding.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24 and rows[0]["file"] == "big/img00.png"


def test_transform_still_refuses_a_file_of_another_kind(model_file, mixed_folder, tmp_path,
                                                       capsys):
    assert main(["transform", str(model_file), str(mixed_folder), "--out",
                 str(tmp_path / "y.txt")]) == 2
    assert "a folder or a file name ending in .npy or .csv" in capsys.readouterr().err


# -- simcne plot --kind html ------------------------------------------------------------------
def test_plot_kind_html(model_file, mixed_folder, tmp_path, capsys):
    pytest.importorskip("bokeh")
    emb = tmp_path / "e"
    assert main(["transform", str(model_file), str(mixed_folder), "--out", str(emb),
                 "--csv", "--quiet"]) == 0
    out = tmp_path / "map.html"
    assert main(["plot", str(emb / "embedding.npy"), "--kind", "html", "--out", str(out),
                 "--labels", str(emb / "embedding.csv"), "--data", str(mixed_folder / "big"),
                 "--quiet"]) == 2  # 12 images for 24 points
    assert "12 images" in capsys.readouterr().err
    assert main(["plot", str(emb / "embedding.npy"), "--kind", "html", "--out", str(out),
                 "--labels", str(emb / "embedding.csv"), "--title", "my <map>"]) == 0
    assert "no thumbnails" in capsys.readouterr().out
    text = out.read_text(encoding="utf-8")
    assert "my &lt;map&gt;" in text and "data:image/webp" not in text
    assert main(["plot", str(emb / "embedding.npy"), "--kind", "html", "--out",
                 str(tmp_path / "map.png")]) == 2
    assert "ending in .html" in capsys.readouterr().err
