"""TSimCNE.save / TSimCNE.load (issue 4)."""

import numpy as np
import pytest
import torch

from conftest import quick
from simcne import TSimCNE
from simcne.models import make_backbone
from simcne.persist import FORMAT, VERSION


@pytest.fixture(scope="module")
def small(tiny):
    """48 of the tiny digits (the model need not be good, only saved and loaded)."""
    X, y = tiny
    return X[::2][:48], y[::2][:48]


@pytest.fixture(scope="module")
def fitted(small):
    X, y = small
    return quick(total_epochs=[1, 1, 1], batch_size=16).fit(X, y)


def test_loaded_model_transforms_exactly_like_the_original(fitted, small, tmp_path):
    X, y = small
    path = tmp_path / "m.pt"
    fitted.save(path)
    loaded = TSimCNE.load(path, device="cpu")
    assert np.array_equal(loaded.transform(X), fitted.transform(X))
    assert loaded.get_params() == fitted.get_params()
    assert type(loaded.get_params()["total_epochs"]) is type(fitted.total_epochs)
    assert loaded.image_size_ == fitted.image_size_ and loaded.in_channels_ == 1
    assert np.array_equal(loaded.labels_, y)
    assert np.array_equal(loaded.embedding_, fitted.embedding_)
    assert len(loaded.stage_embeddings_) == 3
    for a, b in zip(loaded.stage_embeddings_, fitted.stage_embeddings_):
        assert np.array_equal(a, b)
    assert loaded.loss_history_.dtype == fitted.loss_history_.dtype
    assert np.array_equal(loaded.loss_history_, fitted.loss_history_)
    # saving again over the file is atomic: no temporary files are left behind
    loaded.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]


def test_the_file_is_plain_data_and_tensors(fitted, tmp_path):
    fitted.save(tmp_path / "m.pt")
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    assert state["format"] == FORMAT and state["version"] == VERSION
    assert state["params"]["backbone"] == "resnet_small"


def test_not_a_model_file_gives_a_clear_error(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.pt.*not a simcne model file"):
        TSimCNE.load(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match=r"other\.pt.*not a simcne model file"):
        TSimCNE.load(other)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        TSimCNE.load(tmp_path / "missing.pt")


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_file_with_code_is_refused_unrun(tmp_path, capsys):
    bad = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "version": 1, "x": _Payload()}, bad)
    with pytest.raises(ValueError, match=r"evil\.pt.*not a simcne model file"):
        TSimCNE.load(bad)
    assert "must never run" not in capsys.readouterr().out


def test_a_newer_format_version_gives_a_clear_error(fitted, tmp_path):
    path = tmp_path / "future.pt"
    fitted.save(path)
    state = torch.load(path, weights_only=True)
    state["version"] = VERSION + 1
    torch.save(state, path)
    with pytest.raises(ValueError, match=rf"future\.pt.*version {VERSION + 1}.*newer"):
        TSimCNE.load(path)


def test_save_before_fit_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="not fitted"):
        TSimCNE().save(tmp_path / "m.pt")
    assert not list(tmp_path.iterdir())


def test_module_parameters_must_be_passed_again(small, tmp_path):
    X, _ = small
    est = quick(total_epochs=[1, 1, 1], batch_size=16, backbone=make_backbone("resnet_small", 1),
                callbacks=lambda *a: None).fit(X)
    path = tmp_path / "m.pt"
    est.save(path)
    with pytest.raises(ValueError, match="'backbone'.*pass the same architecture"):
        TSimCNE.load(path)
    fresh = make_backbone("resnet_small", 1)
    loaded = TSimCNE.load(path, backbone=fresh, device="cpu")
    assert np.array_equal(loaded.transform(X), est.transform(X))
    assert loaded.callbacks is None  # callables are not stored
    assert loaded.model_.backbone is not fresh  # the module passed in is copied, not changed
    with pytest.raises(ValueError, match="do not fit"):
        TSimCNE.load(path, backbone=make_backbone("resnet_small", 3))
