"""Paths no other test took (issue 29, item 6): a fit from a .beton file, a torch Dataset as
input, the exit status of a real ``simcne`` process, ``--read-size``, ``--no-checkpoint``,
``--checkpoint FILE`` (written, then gone on from), and ``simcne demo`` end to end with a
kNN well over chance."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import simcne.checkpoint as checkpoint_mod
from conftest import quick
from simcne import knn_accuracy
from simcne.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_FIT = ["--total-epochs", "2", "1", "1", "--batch-size", "32", "--backbone", "resnet_small",
            "--random-state", "0", "--device", "cpu", "--no-plots"]


def _report(out):
    return json.loads((out / "report.json").read_text())


def test_fit_from_a_beton_file(tiny, tmp_path):
    from simcne.data import write_beton

    X, y = tiny
    path = write_beton(X, tmp_path / "x.beton", y=y)
    est = quick(total_epochs=[2, 1, 1]).fit(os.fspath(path))
    assert est.embedding_.shape == (len(X), 2) and np.isfinite(est.embedding_).all()
    np.testing.assert_array_equal(est.labels_, y)  # the labels stored in the file
    assert est.in_channels_ == 3  # FFCV stores RGB: gray digits come back as three channels
    out = tmp_path / "out"
    assert main(["fit", os.fspath(path), "--out", os.fspath(out), *TINY_FIT, "--quiet"]) == 0
    report = _report(out)
    assert report["n_images"] == len(X) and report["image_size"] == [8, 8]
    assert np.load(out / "embedding.npy").shape == (len(X), 2)


class _DigitsDataset(torch.utils.data.Dataset):
    """A torch Dataset of (C, H, W) float tensors in [0, 1] and int labels."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return torch.from_numpy(self.X[i]).float()[None] / 255.0, int(self.y[i])


def test_a_torch_dataset_is_an_input(tiny):
    X, y = tiny
    est = quick(total_epochs=[2, 1, 1]).fit(_DigitsDataset(X, y))
    assert est.embedding_.shape == (len(X), 2) and np.isfinite(est.embedding_).all()
    np.testing.assert_array_equal(est.labels_, y)  # labels from the (image, label) pairs
    # the same images as an array give the same map: the Dataset was read, not approximated
    from_array = quick(total_epochs=[2, 1, 1]).fit(X, y)
    np.testing.assert_allclose(est.embedding_, from_array.embedding_, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("argv, names", [
    (["fit", "no/such/folder", "--out", "o"], "no/such/folder"),  # a reader's error
    (["fit", "digits", "--out", "o", "--batch-size", "0"], "batch_size"),  # the estimator's
])
def test_a_real_process_exits_with_2_and_one_line(tmp_path, argv, names):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "simcne", *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("simcne: error: "), proc.stderr
    assert names in lines[0] and "Traceback" not in proc.stderr
    assert proc.stdout == "" and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory):
    """12 PNGs of two classes, of 10x12 and 16x16 pixels."""
    from PIL import Image

    root = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir()
        for i in range(6):
            h, w = (10, 12) if i % 2 else (16, 16)
            Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(
                root / c / f"{i}.png")
    return root


def test_read_size_brings_a_mixed_folder_to_one_size(mixed_folder, tmp_path):
    out = tmp_path / "out"
    assert main(["fit", os.fspath(mixed_folder), "--out", os.fspath(out), *TINY_FIT,
                 "--batch-size", "12", "--read-size", "8", "6", "--quiet"]) == 0
    report = _report(out)
    assert report["image_size"] == [8, 6] and report["n_images"] == 12
    # transform with --read-size reads the folder at the size given as well
    y = tmp_path / "y.npy"
    assert main(["transform", os.fspath(out / "model.pt"), os.fspath(mixed_folder),
                 "--out", os.fspath(y), "--read-size", "8", "6", "--quiet"]) == 0
    np.testing.assert_allclose(np.load(y), np.load(out / "embedding.npy"), atol=1e-5)
    # without a size the mixed folder is refused, naming the flags that work
    with pytest.raises(ValueError, match="image_size|read-size"):
        from simcne.data import load

        load(os.fspath(mixed_folder))


@pytest.fixture
def saves(monkeypatch):
    """The path of every checkpoint written, in order."""
    paths = []
    real = checkpoint_mod.save_checkpoint

    def spy(path, **kw):
        paths.append(os.fspath(path))
        return real(path, **kw)

    monkeypatch.setattr(checkpoint_mod, "save_checkpoint", spy)
    return paths


def test_a_checkpoint_by_default_and_none_with_no_checkpoint(tiny, tmp_path, saves):
    X, _ = tiny
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "default"
    assert main(["fit", os.fspath(tmp_path / "x.npy"), "--out", os.fspath(out), *TINY_FIT,
                 "--checkpoint-every", "1", "--quiet"]) == 0
    assert saves and set(saves) == {os.fspath(out / "checkpoint.pt")}
    assert not (out / "checkpoint.pt").exists()  # removed once the run completed
    saves.clear()
    out = tmp_path / "none"
    assert main(["fit", os.fspath(tmp_path / "x.npy"), "--out", os.fspath(out), *TINY_FIT,
                 "--checkpoint-every", "1", "--no-checkpoint", "--quiet"]) == 0
    assert saves == [] and (out / "embedding.npy").is_file()
    assert _report(out)["parameters"]["checkpoint"] is None


def test_checkpoint_file_is_written_and_gone_on_from(tiny, tmp_path, monkeypatch, capsys):
    X, _ = tiny
    np.save(tmp_path / "x.npy", X)
    ckpt, out = tmp_path / "elsewhere" / "run.ckpt", tmp_path / "out"
    ckpt.parent.mkdir()
    argv = ["fit", os.fspath(tmp_path / "x.npy"), "--out", os.fspath(out), *TINY_FIT,
            "--checkpoint-every", "1", "--checkpoint", os.fspath(ckpt)]
    real = checkpoint_mod.save_checkpoint

    def interrupted(path, **kw):
        real(path, **kw)
        if kw["stage"] == 2:
            raise KeyboardInterrupt  # Ctrl-C right after the stage-2 checkpoint

    monkeypatch.setattr(checkpoint_mod, "save_checkpoint", interrupted)
    assert main(argv) == 130
    assert ckpt.is_file() and not (out / "checkpoint.pt").exists()
    monkeypatch.undo()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"going on from the checkpoint '{ckpt}'" in err.replace('"', "'")
    assert _report(out)["resumed_from"] == {"stage": 2, "epoch": 1}
    assert not ckpt.exists() and not (out / "checkpoint.pt").exists()
    # the resumed run ends where an uninterrupted one does (CPU, same threads)
    full = tmp_path / "full"
    assert main(["fit", os.fspath(tmp_path / "x.npy"), "--out", os.fspath(full), *TINY_FIT,
                 "--no-checkpoint", "--quiet"]) == 0
    np.testing.assert_array_equal(np.load(out / "embedding.npy"), np.load(full / "embedding.npy"))


@pytest.mark.slow
def test_simcne_demo_end_to_end(tmp_path):
    """The demo's path with a shorter stage 3 (35 epochs instead of 165; about half a minute
    on 2 cores): every output, and a map whose kNN is far over chance (0.1)."""
    out = tmp_path / "demo"
    assert main(["demo", "--out", os.fspath(out), "--total-epochs", "5", "2", "30",
                 "--quiet"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"embedding.npy", "embedding.csv", "model.pt", "report.json", "embedding.png",
            "stages.png", "loss.png", "thumbnails.png", "map.html"} <= names
    report = _report(out)
    assert report["n_images"] == 1797 and report["parameters"]["backbone"] == "resnet_tiny"
    assert report["parameters"]["total_epochs"] == [5, 2, 30]
    # measured: 0.84 after [5, 2, 30] (docs/parameter_guide.md); chance is 0.1
    assert report["knn_accuracy"] > 0.6, report["knn_accuracy"]
    from simcne.data import load

    Y = np.load(out / "embedding.npy")
    assert knn_accuracy(Y, load("digits").labels) > 0.6
