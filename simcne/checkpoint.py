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
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

FORMAT = "simcne.checkpoint"
VERSION = 1
#: parameters that do not change what is trained, so a resumed run may change them
FREE_PARAMS = ("verbose", "callbacks", "checkpoint", "checkpoint_every", "device", "compile")


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
    from ._io import atomic_path

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
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


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
