"""The `simcne` command, run in-process through simcne.cli.main (issue 4)."""

import csv
import inspect
import json

import numpy as np
import pytest

from simcne import TSimCNE
from simcne.cli import build_parser, main
from simcne.flags import CLI_PARAMS, VERBOSE_FLAG, params_from_args
from simcne.params import PYTHON_ONLY

N_PER_CLASS = 20
TINY_FIT = ["--total-epochs", "1", "1", "1", "--batch-size", "16", "--backbone", "resnet_small",
            "--random-state", "0", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory):
    """40 grayscale 8x8 PNGs in two class folders: horizontal and vertical stripes."""
    from PIL import Image

    root = tmp_path_factory.mktemp("pngs")
    rng = np.random.default_rng(0)
    for c, name in enumerate(["horizontal", "vertical"]):
        (root / name).mkdir()
        for i in range(N_PER_CLASS):
            img = rng.integers(0, 60, size=(8, 8)).astype(np.uint8)
            if c == 0:
                img[::2, :] += 180
            else:
                img[:, ::2] += 180
            Image.fromarray(img).save(root / name / f"img{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def fit_dir(png_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "out"
    assert main(["fit", str(png_folder), "--out", str(out), *TINY_FIT]) == 0
    return out


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("simcne: error: ")
    return err[0]


def test_fit_writes_every_output(fit_dir, png_folder):
    names = {p.name for p in fit_dir.iterdir()}
    assert {"embedding.npy", "embedding.csv", "model.pt", "report.json", "embedding.png",
            "stages.png", "loss.png", "thumbnails.png"} <= names
    assert not [n for n in names if n.endswith(".tmp")]  # no leftovers of atomic writes
    Y = np.load(fit_dir / "embedding.npy")
    assert Y.shape == (2 * N_PER_CLASS, 2) and np.isfinite(Y).all()

    with open(fit_dir / "embedding.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * N_PER_CLASS
    assert list(rows[0]) == ["x", "y", "label", "class_name", "file"]
    assert np.allclose([[float(r["x"]), float(r["y"])] for r in rows], Y)
    assert {r["class_name"] for r in rows} == {"horizontal", "vertical"}
    assert {(r["label"], r["class_name"]) for r in rows} == {("0", "horizontal"),
                                                            ("1", "vertical")}
    files = sorted(p.relative_to(png_folder).as_posix() for p in png_folder.rglob("*.png"))
    assert sorted(r["file"] for r in rows) == files

    report = json.loads((fit_dir / "report.json").read_text())
    for key in ("parameters", "n_images", "image_size", "timings_s", "knn_accuracy",
                "versions", "device", "outputs"):
        assert key in report, key
    assert report["n_images"] == 2 * N_PER_CLASS and report["image_size"] == [8, 8]
    assert report["parameters"]["total_epochs"] == [1, 1, 1]
    assert report["parameters"]["batch_size"] == 16
    # the report's kNN is that of the map written beside it, and the two classes (stripes
    # across or along) stand apart even after one epoch a stage: chance is 0.5
    from simcne.metrics import knn_summary

    labels = np.array([int(r["label"]) for r in rows])
    assert report["knn_accuracy"] == pytest.approx(knn_summary(Y, labels, k=15)[0])
    assert report["knn_accuracy"] >= 0.9, report["knn_accuracy"]
    assert {"stage_1", "stage_2", "stage_3", "fit", "total"} <= set(report["timings_s"])
    assert set(report["versions"]) >= {"simcne", "torch", "numpy", "python"}
    assert report["device"] == "cpu"
    for png in ("embedding.png", "stages.png", "loss.png", "thumbnails.png"):
        data = (fit_dir / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, png


def test_transform_with_the_saved_model_gives_the_fit_embedding(fit_dir, png_folder, tmp_path):
    out = tmp_path / "y.npy"
    # on the CPU, where the fit ran: fp32 there, the same coordinates (a GPU's bf16 would not)
    assert main(["transform", str(fit_dir / "model.pt"), str(png_folder), "--out", str(out),
                 "--csv", "--quiet", "--device", "cpu"]) == 0
    np.testing.assert_allclose(np.load(out), np.load(fit_dir / "embedding.npy"), atol=1e-6)
    with open(tmp_path / "y.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * N_PER_CLASS and rows[0]["file"].endswith(".png")


@pytest.mark.parametrize("kind", ["embedding", "stages", "loss", "thumbnails"])
def test_plot_redraws_from_a_fit_folder(fit_dir, tmp_path, kind):
    out = tmp_path / f"{kind}.png"
    assert main(["plot", str(fit_dir), "--kind", kind, "--out", str(out), "--quiet"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_plot_from_npy_with_labels(fit_dir, tmp_path):
    labels = tmp_path / "labels.npy"
    np.save(labels, np.repeat([0, 1], N_PER_CLASS))
    out = tmp_path / "e.png"
    assert main(["plot", str(fit_dir / "embedding.npy"), "--labels", str(labels),
                 "--out", str(out), "--quiet"]) == 0
    assert out.stat().st_size > 0


def test_bad_inputs_give_exit_code_2_and_one_line(png_folder, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["fit", str(missing), "--out", str(tmp_path / "o"), *TINY_FIT]) == 2
    assert "nowhere" in _one_error_line(capsys)

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["fit", str(empty), "--out", str(tmp_path / "o"), *TINY_FIT]) == 2
    assert "empty" in _one_error_line(capsys)

    assert main(["fit", str(png_folder), "--out", str(tmp_path / "o"), *TINY_FIT,
                 "--batch-size", "0"]) == 2
    assert "batch_size" in _one_error_line(capsys)

    assert main(["fit", str(png_folder), "--out", str(tmp_path / "o"), "--batch-size", "x"]) == 2
    assert "--batch-size" in _one_error_line(capsys)

    assert main(["fit", str(png_folder), "--out", str(tmp_path / "o"), *TINY_FIT,
                 "--backbone", "resnet9000"]) == 2
    assert "backbone" in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()  # nothing was written

    assert main(["transform", str(tmp_path / "no_model.pt"), str(png_folder),
                 "--out", str(tmp_path / "y.npy")]) == 2
    assert "no_model.pt" in _one_error_line(capsys)

    assert main(["plot", str(tmp_path / "no.npy"), "--out", str(tmp_path / "p.png")]) == 2
    assert "no.npy" in _one_error_line(capsys)


def test_every_parameter_is_a_flag_or_python_only():
    names = list(inspect.signature(TSimCNE).parameters)
    covered = set(CLI_PARAMS) | set(PYTHON_ONLY) | {VERBOSE_FLAG}
    assert set(names) == covered


def test_flags_map_onto_parameters():
    args = build_parser().parse_args(
        ["fit", "data", "--out", "o", "--total-epochs", "1000", "50", "450", "--lr", "0.1",
         "--warmup", "5", "0", "5", "--image-size", "32", "32", "--grad-clip", "none",
         "--metric", "cosine", "--random-state", "3", "--compile", "--out-dim", "3",
         "--exaggeration", "4", "--out-layer-std", "0.1"])
    assert params_from_args(args) == dict(
        total_epochs=[1000, 50, 450], lr=0.1, warmup=[5, 0, 5], image_size=[32, 32],
        grad_clip=None, metric="cosine", random_state=3, compile=True, out_dim=3,
        exaggeration=4.0, out_layer_std=0.1, verbose=True)
    # flags not given are not passed: the estimator's signature holds the defaults
    args = build_parser().parse_args(["fit", "data", "--out", "o", "--quiet", "--lr",
                                      "auto_batch"])
    assert params_from_args(args) == dict(lr="auto_batch", verbose=False)
    est = TSimCNE(**params_from_args(args))
    assert est.get_params()["total_epochs"] == (1000, 50, 450)


def test_write_beton_is_a_subcommand(tiny, tmp_path, capsys):
    from simcne.data import load

    X, _ = tiny
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "x.beton"
    assert main(["write-beton", str(tmp_path / "x.npy"), str(out)]) == 0
    assert np.array_equal(load(str(out)).batch(np.arange(len(X))).numpy()[:, 0], X)
    capsys.readouterr()
    assert main(["write-beton", str(tmp_path / "x.npy"), str(out), "--quality", "101"]) == 2
    assert "quality" in _one_error_line(capsys)


def test_demo_is_still_a_command():
    args = build_parser().parse_args(["demo", "--total-epochs", "1", "--quiet"])
    assert args.command == "demo" and args.total_epochs == [1]


def test_outputs_get_the_usual_file_mode(fit_dir):
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    assert (fit_dir / "embedding.npy").stat().st_mode & 0o777 == 0o666 & ~mask


def test_bad_data_inside_a_reader_is_a_user_error(png_folder, tmp_path, capsys):
    import shutil

    folder = tmp_path / "imgs"
    shutil.copytree(png_folder, folder)
    (folder / "vertical" / "broken.png").write_bytes(b"not a png")
    assert main(["fit", str(folder), "--out", str(tmp_path / "o"), *TINY_FIT]) == 2
    assert "broken.png" in _one_error_line(capsys)


def test_a_bug_still_shows_its_traceback(png_folder, tmp_path, monkeypatch):
    def broken_fit(self, X, y=None):
        raise RuntimeError("a bug")

    monkeypatch.setattr(TSimCNE, "fit", broken_fit)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["fit", str(png_folder), "--out", str(tmp_path / "o"), *TINY_FIT])


def test_labels_files(tmp_path):
    from simcne.data.labels import read_labels

    np.save(tmp_path / "l.npy", np.array([2, 0, 1]))
    labels, names = read_labels(tmp_path / "l.npy")
    assert labels.tolist() == [2, 0, 1] and names is None
    (tmp_path / "l.csv").write_text("x,y,label,class_name\n0,0,1,dog\n1,1,0,cat\n")
    labels, names = read_labels(tmp_path / "l.csv")
    assert labels.tolist() == [1, 0] and names == ["cat", "dog"]
    (tmp_path / "l.txt").write_text("cat\ndog\n\ncat\n")
    labels, names = read_labels(tmp_path / "l.txt")
    assert labels.tolist() == ["cat", "dog", "cat"] and names is None
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="'label' column"):
        read_labels(tmp_path / "bad.csv")


def test_demo_is_fit_digits_with_the_demo_preset(monkeypatch, tmp_path):
    from simcne import cli

    seen = {}
    monkeypatch.setattr(cli, "_fit", lambda args: seen.setdefault("args", args) and 0)
    assert main(["demo", "--out", str(tmp_path / "d"), "--total-epochs", "1", "--quiet"]) == 0
    args = seen["args"]
    assert args.data == "digits" and args.preset == "demo" and args.quiet
    params = {**cli.PRESETS[args.preset], **params_from_args(args)}
    assert params == {**cli.DEMO, "total_epochs": 1, "verbose": False}
