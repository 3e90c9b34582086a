"""Checkpoints: a stopped run goes on from its checkpoint and ends where an uninterrupted one does."""

import numpy as np
import pytest
import torch

from conftest import quick


def _stop_at(stage, epoch):
    return lambda s, e, loss, model: (s, e) == (stage, epoch)


@pytest.mark.parametrize("stop, views", [((1, 2), None), ((1, 3), None), ((2, 1), None),
                                         ((3, 1), None),
                                         ((2, 1), [None, {"crop_scale": (0.8, 1)}, {}])])
def test_resumed_run_equals_an_uninterrupted_one(tiny, tmp_path, stop, views):
    X = tiny[0]
    params = dict(total_epochs=[3, 2, 2], random_state=5, data_transform=views)
    full = quick(**params).fit(X)
    path = tmp_path / "run.ckpt"
    # a run that is "killed" after the epoch `stop` (its callback stops it there) ...
    first = quick(**params, checkpoint=str(path), checkpoint_every=1,
                  callbacks=_stop_at(*stop)).fit(X)
    assert path.exists() and len(first.loss_history_) < len(full.loss_history_)
    # ... and the same command again: it goes on from the checkpoint
    second = quick(**params, checkpoint=str(path), checkpoint_every=1).fit(X)
    assert not path.exists()  # removed once the run completed
    np.testing.assert_array_equal(second.loss_history_, full.loss_history_)
    for a, b in zip(second.stage_embeddings_, full.stage_embeddings_, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(second.transform(X), full.transform(X))


def test_checkpoint_every_n_epochs_and_at_stage_ends(tiny, tmp_path, monkeypatch):
    from simcne import checkpoint

    saved = []
    real = checkpoint.save_checkpoint
    monkeypatch.setattr(checkpoint, "save_checkpoint",
                        lambda path, **kw: saved.append((kw["stage"], kw["epoch"])) or
                        real(path, **kw))
    quick(total_epochs=[5, 1, 3], checkpoint=str(tmp_path / "c"), checkpoint_every=2).fit(
        tiny[0])
    assert saved == [(1, 2), (1, 4), (1, 5), (2, 1), (3, 2), (3, 3)]


def test_a_checkpoint_of_another_run_is_refused(tiny, tmp_path):
    path = tmp_path / "run.ckpt"
    quick(total_epochs=[3, 1, 1], checkpoint=str(path), checkpoint_every=1,
          callbacks=_stop_at(1, 1)).fit(tiny[0])
    with pytest.raises(ValueError, match=r"run\.ckpt.*other parameters.*batch_size=32 there, "
                                         r"16 now"):
        quick(total_epochs=[3, 1, 1], batch_size=16, checkpoint=str(path)).fit(tiny[0])
    with pytest.raises(ValueError, match=r"run on 120 images, but fit got 60"):
        quick(total_epochs=[3, 1, 1], checkpoint=str(path)).fit(tiny[0][:60])


def test_a_file_that_is_no_checkpoint_is_refused(tiny, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt.*cannot be read as a simcne checkpoint"):
        quick(checkpoint=str(text)).fit(tiny[0])
    other = tmp_path / "other.pt"
    torch.save({"format": "something else"}, other)
    with pytest.raises(ValueError, match=r"other\.pt' is not a simcne checkpoint"):
        quick(checkpoint=str(other)).fit(tiny[0])
    newer = tmp_path / "newer.pt"
    torch.save({"format": "simcne.checkpoint", "version": 99}, newer)
    with pytest.raises(ValueError, match=r"format version 99"):
        quick(checkpoint=str(newer)).fit(tiny[0])


@pytest.mark.parametrize("name, value", [("checkpoint", 3), ("checkpoint_every", 0)])
def test_bad_checkpoint_parameters_are_named(tiny, name, value):
    with pytest.raises(ValueError, match=f"The '{name}' parameter of TSimCNE"):
        quick(**{name: value}).fit(tiny[0])
