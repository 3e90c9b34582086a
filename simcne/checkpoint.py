"""Checkpoints of a run in progress, so that a crashed or stopped ``fit`` can go on.

``TSimCNE(checkpoint="run.ckpt")`` writes, every ``checkpoint_every`` epochs and atomically,
one ``torch.save`` of plain data and tensors (read back with ``weights_only=True``, so a
checkpoint cannot run code):

    format, version   "simcne.checkpoint", 1
    params            the training-relevant parameters, as plain data
    seed              the run's seed (random_state, or the one drawn when it is None)
    n_images          the size of the training set
    stage, epoch      the last finished epoch (stage 1-3, epoch 1-based within its stage)
    model             the network's state_dict (after the stage-2 surgery from stage 2 on)
    optimizer         the stage's optimiser state_dict
    rng               generator states: augmentation, shuffling, torch's global generator
    history           the loss of every finished epoch, (k, 3) float64
    stage_embeddings  the embeddings of the stages finished before ``stage``

A later ``fit`` with the same ``checkpoint`` path, parameters and data goes on from there
and, on CPU with the same thread count, ends with the embedding an uninterrupted run gives.

Each write goes to a temporary file beside the checkpoint, is flushed to the disk (fsync)
and then renamed over it, so a process killed at any moment (or a power cut) leaves either
the previous checkpoint or the new one, never a mixture; a temporary file left by a killed
write is removed when the next run starts. A write that fails (full disk, read-only folder)
raises :class:`simcne._io.WriteError` naming the file, and the previous checkpoint stays.

Test hook (for the test suite only, not an interface): when the environment variable
``SIMCNE_TEST_HOOK_LOG`` names a file, :func:`_test_hook` appends one line per event to it,
``epoch S E`` after every epoch, ``written S E`` when a checkpoint's temporary file is
complete (before the rename) and ``saved S E`` after the rename; when
``SIMCNE_TEST_HOOK_PAUSE`` equals such a line, the process stops there (sleeps) after
logging it, so that a test can kill it at exactly that moment.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

FORMAT = "simcne.checkpoint"
VERSION = 1
from .params import FREE_PARAMS  # those a resumed run may change (simcne.params)


def training_params(est) -> dict:
    """The parameters a checkpoint must agree on, as plain data (modules and callables out)."""
    from .persist import _plain

    out = {}
    for name, value in est.get_params().items():
        if name in FREE_PARAMS:
            continue
        try:
            out[name] = _plain(value)
        except TypeError:  # a module or a callable: the user's to keep the same
            out[name] = f"<{type(value).__name__}>"
    return out


def save_checkpoint(path, *, params: dict, seed: int, n_images: int, stage: int, epoch: int,
                    model, optimizer, rng: dict, history: list, stage_embeddings: list) -> None:
    """Write a checkpoint atomically (see the module's docstring for what it holds)."""
    from ._io import save_torch

    state = {
        "format": FORMAT,
        "version": VERSION,
        "params": params,
        "seed": int(seed),
        "n_images": int(n_images),
        "stage": int(stage),
        "epoch": int(epoch),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng": {k: v.cpu() for k, v in rng.items()},
        "history": torch.tensor(np.asarray(history, dtype=np.float64).reshape(-1, 3)),
        "stage_embeddings": [torch.from_numpy(np.ascontiguousarray(e))
                             for e in stage_embeddings],
    }
    save_torch(state, path, fsync=True,
               before_replace=lambda: _test_hook("written", stage, epoch))
    _test_hook("saved", stage, epoch)


def _test_hook(event: str, stage: int, epoch: int) -> None:
    """Test-only: log ``event stage epoch`` and maybe pause (see the module docstring)."""
    log = os.environ.get("SIMCNE_TEST_HOOK_LOG")
    if not log:
        return
    line = f"{event} {stage} {epoch}"
    with open(log, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    if os.environ.get("SIMCNE_TEST_HOOK_PAUSE") == line:
        while True:  # wait here for the test's SIGKILL
            time.sleep(0.1)


def remove_stale_temporaries(path) -> list[Path]:
    """Remove the temporary files a killed checkpoint write left beside ``path``."""
    from ._io import temporaries_of

    removed = []
    for tmp in temporaries_of(path):
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def load_checkpoint(path, params: dict, n_images: int) -> dict | None:
    """The checkpoint at ``path`` if there is one, checked against this run; else None.

    Raises a ValueError naming the file when it is not a simcne checkpoint, is from a newer
    format, or was written by a run with other parameters or another number of images.
    """
    p = Path(path)
    if not p.exists():
        return None
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, truncated, or holding code
        raise ValueError(
            f"The checkpoint file '{os.fspath(p)}' cannot be read as a simcne checkpoint "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Delete it "
            "or pass another 'checkpoint' path.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(
            f"The file '{os.fspath(p)}' is not a simcne checkpoint (expected format "
            f"{FORMAT!r}). Delete it or pass another 'checkpoint' path.")
    if not isinstance(state.get("version"), int) or state["version"] > VERSION:
        raise ValueError(
            f"The checkpoint '{os.fspath(p)}' has format version {state.get('version')!r}; "
            f"this simcne reads versions up to {VERSION}.")
    if state["n_images"] != n_images:
        raise ValueError(
            f"The checkpoint '{os.fspath(p)}' is of a run on {state['n_images']} images, "
            f"but fit got {n_images}. Delete it or pass another 'checkpoint' path.")
    saved = state["params"]
    differ = sorted(k for k in set(saved) | set(params) if saved.get(k) != params.get(k))
    if differ:
        what = ", ".join(f"{k}={saved.get(k)!r} there, {params.get(k)!r} now" for k in differ)
        raise ValueError(
            f"The checkpoint '{os.fspath(p)}' is of a run with other parameters ({what}). "
            "Delete it or pass another 'checkpoint' path.")
    return state
