"""Faults other than a kill (issue 13): divergence, a full disk, a read-only folder, low memory."""

import builtins
import errno
import os
import tempfile

import numpy as np
import pytest
import torch

from conftest import quick
from simcne import _heap
from simcne._io import WriteError
from simcne.checkpoint import load_checkpoint, training_params
from simcne.cli import main
from simcne.losses import LOSSES
from simcne.train import TrainingDiverged

FIT = ["--total-epochs", "2", "2", "1", "--batch-size", "16", "--backbone", "resnet_small",
       "--random-state", "0", "--device", "cpu", "--quiet", "--no-plots",
       "--checkpoint-every", "1"]
FINAL = {"embedding.npy", "embedding.csv", "model.pt", "report.json"}


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("simcne: error: ") and "Traceback" not in err[0]
    return err[0]


def _nan_loss_from(monkeypatch, stage, epoch):
    """The loss is NaN from the epoch after (stage, epoch) on: a diverging run."""
    state = {"on": False}
    real = LOSSES["infonce"]

    def loss(z, *args, **kw):
        out = real(z, *args, **kw)
        return out * float("nan") if state["on"] else out

    monkeypatch.setitem(LOSSES, "infonce", loss)
    return lambda s, e, loss_value, model: state.update(on=state["on"] or (s, e) == (stage,
                                                                                    epoch))


# -- divergence ------------------------------------------------------------------------------
def test_divergence_names_stage_epoch_lr_and_keeps_the_last_good_checkpoint(tiny, tmp_path,
                                                                           monkeypatch):
    X = tiny[0][:48]
    path = tmp_path / "run.ckpt"
    params = dict(total_epochs=[2, 3, 1], checkpoint=str(path), checkpoint_every=1)
    est = quick(**params, callbacks=_nan_loss_from(monkeypatch, 2, 1))
    with pytest.raises(TrainingDiverged) as info:
        est.fit(X)
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.stage, err.epoch) == (2, 2) and err.lr > 0
    msg = str(err)
    assert "The loss became nan in stage 2, epoch 2 of 3, at learning rate" in msg
    assert f"'{path}' (stage 2, epoch 1), is kept" in msg
    assert not hasattr(est, "embedding_")  # no NaN embedding anywhere
    state = load_checkpoint(path, training_params(est), len(X))
    assert (state["stage"], state["epoch"]) == (2, 1)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    # the kept checkpoint is good to go on from
    monkeypatch.undo()
    again = quick(**params).fit(X)
    assert again.resumed_from_ == (2, 1) and np.isfinite(again.embedding_).all()
    assert not path.exists()


def test_nan_weights_never_reach_an_embedding(tiny):
    def poison(stage, epoch, loss, model):
        if stage == 3:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))

    est = quick(total_epochs=[1, 1, 1], callbacks=poison)
    with pytest.raises(TrainingDiverged, match=r"embedding after stage 3 holds NaN"):
        est.fit(tiny[0][:32])
    assert not hasattr(est, "embedding_")


def test_divergence_through_the_command(tiny, tmp_path, monkeypatch, capsys):
    np.save(tmp_path / "x.npy", tiny[0][:32])
    out = tmp_path / "out"
    real = LOSSES["infonce"]
    monkeypatch.setitem(LOSSES, "infonce", lambda z, *a, **kw: real(z, *a, **kw) * float("inf"))
    assert main(["fit", str(tmp_path / "x.npy"), "--out", str(out), *FIT]) == 2
    line = _one_error_line(capsys)
    assert "stage 1, epoch 1 of 2, at learning rate" in line
    assert "No checkpoint was written before it" in line
    assert not out.exists() or not FINAL & {p.name for p in out.iterdir()}


# -- a full disk, a read-only folder ---------------------------------------------------------
class _FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` bytes have been written."""

    def __init__(self, f, room):
        self._f, self._room = f, room

    def write(self, data):
        self._room -= len(data)
        if self._room < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _fill_disk(monkeypatch, name_part, room=100, after=0):
    """Writes to temporary files of names containing ``name_part`` fail, from the
    ``after``-th such file on."""
    real_open, seen = builtins.open, [0]

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        base = os.path.basename(os.fspath(file)) if isinstance(file, (str, os.PathLike)) else ""
        if "w" in mode and name_part in base and base.endswith(".tmp"):
            seen[0] += 1
            if seen[0] > after:
                return _FullDisk(f, room)
        return f

    monkeypatch.setattr(builtins, "open", fake_open)


def test_a_full_disk_keeps_the_previous_checkpoint(tiny, tmp_path, monkeypatch):
    X = tiny[0][:32]
    path = tmp_path / "run.ckpt"
    _fill_disk(monkeypatch, "run.ckpt", room=10_000, after=1)  # the 2nd checkpoint fails
    est = quick(total_epochs=[3, 1, 1], checkpoint=str(path), checkpoint_every=1)
    with pytest.raises(WriteError) as info:
        est.fit(X)
    assert info.value.errno == errno.ENOSPC
    assert f"Cannot write '{path}': No space left on device" in str(info.value)
    monkeypatch.undo()
    state = load_checkpoint(path, training_params(est), len(X))  # the first one, intact
    assert (state["stage"], state["epoch"]) == (1, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]  # no temporary left


@pytest.mark.parametrize("target", sorted(FINAL))
def test_a_full_disk_through_the_command(tiny, tmp_path, monkeypatch, capsys, target):
    np.save(tmp_path / "x.npy", tiny[0][:32])
    out = tmp_path / "out"
    _fill_disk(monkeypatch, target)
    assert main(["fit", str(tmp_path / "x.npy"), "--out", str(out), *FIT,
                 "--total-epochs", "1"]) == 2
    line = _one_error_line(capsys)
    assert f"Cannot write '{out / target}': No space left on device" in line
    names = {p.name for p in out.iterdir()}
    assert target not in names and not [n for n in names if n.endswith(".tmp")]


def test_a_read_only_folder(tiny, tmp_path, monkeypatch, capsys):
    # tests run as root, where chmod does not stop writes: the refusal is simulated
    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), dir)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    est = quick(total_epochs=1).fit(tiny[0][:32])
    with pytest.raises(WriteError, match=r"Cannot write '.*model\.pt': Read-only file system"):
        est.save(tmp_path / "model.pt")
    np.save(tmp_path / "x.npy", tiny[0][:32])
    out = tmp_path / "out"
    assert main(["fit", str(tmp_path / "x.npy"), "--out", str(out), *FIT]) == 2
    assert f"Cannot write '{out / 'checkpoint.pt'}': Read-only file system" in \
        _one_error_line(capsys)
    assert not list(out.iterdir())


# -- memory ------------------------------------------------------------------------------------
def test_a_batch_that_cannot_fit_is_refused_before_training(tiny, monkeypatch, capsys,
                                                            tmp_path):
    monkeypatch.setattr(_heap, "available_memory", lambda: 10_000_000)
    with pytest.raises(ValueError, match=r"'batch_size' parameter .* batch_size=32 .* needs "
                                         r"about .* GB, but only 0\.0 GB are available"):
        quick().fit(tiny[0][:64])
    monkeypatch.undo()
    np.save(tmp_path / "x.npy", tiny[0][:32])
    monkeypatch.setenv("SIMCNE_MEMORY_LIMIT", "1M")
    assert main(["fit", str(tmp_path / "x.npy"), "--out", str(tmp_path / "o"), *FIT]) == 2
    assert "batch_size" in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_freed_memory_is_kept_only_where_it_fits(monkeypatch):
    need = 1_000_000_000
    monkeypatch.setattr(_heap, "available_memory", lambda: 10 * need)
    assert _heap.reuse_fits(need) == (True, "")
    monkeypatch.setattr(_heap, "available_memory", lambda: 2 * need)
    ok, why = _heap.reuse_fits(need)
    assert not ok and "about 2.3 GB, more than 80% of the 2.0 GB available" in why


def test_available_memory_reads_the_limit(monkeypatch):
    monkeypatch.setenv("SIMCNE_MEMORY_LIMIT", "64G")
    free = _heap.available_memory()
    monkeypatch.setenv("SIMCNE_MEMORY_LIMIT", "1M")
    assert _heap.available_memory() == 0 and free > 0
    monkeypatch.setenv("SIMCNE_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="SIMCNE_MEMORY_LIMIT"):
        _heap.available_memory()


def test_the_step_estimate_is_near_the_measured_peak():
    from simcne.models import make_model
    from simcne.train import step_memory

    model = make_model("resnet_small", image_size=(32, 32))
    before = [p.clone() for p in model.state_dict().values()]
    need = step_memory(model, (3, 32, 32), 512)
    # glibc's default allocation peaked at 1.75 GB in this step (BENCHMARKS.md)
    assert 1.2e9 < need < 1.75e9
    assert all(torch.equal(a, b) for a, b in zip(before, model.state_dict().values()))


def test_the_model_so_far_on_request(tiny, tmp_path, monkeypatch, capsys):
    from simcne import TSimCNE

    np.save(tmp_path / "x.npy", tiny[0][:32])
    out = tmp_path / "out"
    real, calls = LOSSES["infonce"], [0]

    def loss(z, *args, **kw):  # 2 steps an epoch: NaN from stage 2, epoch 2 on
        calls[0] += 1
        return real(z, *args, **kw) * (float("nan") if calls[0] > 6 else 1.0)

    monkeypatch.setitem(LOSSES, "infonce", loss)
    assert main(["fit", str(tmp_path / "x.npy"), "--out", str(out), *FIT,
                 "--save-diverged"]) == 2
    line = _one_error_line(capsys)
    assert "stage 2, epoch 2 of 2" in line and "(stage 2, epoch 1), is kept" in line
    assert f"The model so far (that checkpoint's network) is in '{out / 'model-diverged.pt'}'" \
        in line
    assert {p.name for p in out.iterdir()} == {"checkpoint.pt", "model-diverged.pt"}
    est = TSimCNE.load(out / "model-diverged.pt", device="cpu")
    assert est.embedding_.shape == (32, 2) and np.isfinite(est.embedding_).all()
    np.testing.assert_allclose(est.transform(tiny[0][:32]), est.embedding_, atol=1e-5)
