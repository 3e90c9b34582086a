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
                    model, optimizer, rng: dict, history: list, stage_embeddings: list,
                    extras: dict | None = None) -> None:
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
        # the out_dim stages' state beyond the network (simcne.neighbors): the neighbour
        # table, the negative bank
        "extras": {k: v.detach().cpu() for k, v in (extras or {}).items() if v is not None},
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


class Keeper:
    """One fit's run kept on disk: where it starts, its checkpoints, its last good state.

    ``Keeper(path, params, n_images, every)`` (``path`` None: nothing is kept) reads the
    checkpoint a crashed run with these parameters left, on rank 0, handed to the other
    processes (:meth:`open`). Then :meth:`start` gives each stage its starting point,
    :meth:`on_epoch_end` writes a checkpoint every ``every`` epochs and at each stage's end,
    :meth:`restore_last_good` and :meth:`kept` serve a run that diverged, and
    :meth:`complete` removes the file once the run is done.
    """

    def __init__(self, path, params: dict, n_images: int, every: int):
        self.path, self.params, self.n_images, self.every = path, params, n_images, every
        self.state: dict | None = None  # the checkpoint gone on from
        self.saved: tuple[int, int] | None = None  # (stage, epoch) of the last one written

    def open(self) -> "Keeper":
        """Read the checkpoint at ``path`` if there is one (removing temporary files a
        killed write left); ValueError for one of another run."""
        from . import dist

        if self.path is not None:
            dist.on_main(remove_stale_temporaries, self.path)
            # rank 0 reads it and hands it to the others (no shared file system needed)
            self.state = dist.on_main(load_checkpoint, self.path, self.params, self.n_images)
        if self.state is not None:
            self.saved = (int(self.state["stage"]), int(self.state["epoch"]))
        return self

    @property
    def resumed_from(self) -> tuple[int, int] | None:
        return None if self.state is None else (int(self.state["stage"]),
                                                int(self.state["epoch"]))

    @property
    def first_stage(self) -> int:
        """The stage to go on with (1 for a new run)."""
        return 1 if self.state is None else int(self.state["stage"])

    def history(self) -> list:
        return [] if self.state is None else [tuple(r) for r in self.state["history"].tolist()]

    def stage_embeddings(self) -> list:
        return [] if self.state is None else [e.numpy() for e in self.state["stage_embeddings"]]

    def attach(self, *, model, seed: int, augment_gen, shuffle_gen, history: list,
               stage_embeddings: list, stage_epochs: list, reseed, extras=None) -> None:
        """What a checkpoint holds and restores: the network, the seed, the generators of
        augmentation and shuffling (and torch's global one), the loss history and the
        finished stages' embeddings. ``reseed(*more, shared=False)`` derives a seed for a
        process or a generator whose state cannot be carried over (``shared``: the same on
        every process)."""
        self.model, self.seed, self.augment_gen, self.shuffle_gen = (model, seed, augment_gen,
                                                                     shuffle_gen)
        self.history_list, self.embeddings, self.stage_epochs = (history, stage_embeddings,
                                                                 stage_epochs)
        self.reseed = reseed
        #: extras() -> {name: tensor}: state of the out_dim stages kept beside the network
        self.extras = extras

    def saved_extras(self, number: int) -> dict:
        """The extras a checkpoint holds for stage ``number`` when the run goes on in it."""
        if self.state is None or number != self.first_stage:
            return {}
        return dict(self.state.get("extras", {}))

    def start(self, number: int) -> dict:
        """Where stage ``number`` starts: ``{}`` from scratch, or ``start_epoch`` and
        ``optimizer_state`` from the checkpoint (its weights and generators restored)."""
        from . import dist

        state = self.state
        if state is None or number != self.first_stage:
            return {}
        self.model.load_state_dict(state["model"])
        # the augmentation's draws are the global batch's, the same on every process: so
        # is a new seed (never the rank's)
        set_generator_state(self.augment_gen, state["rng"]["augment"],
                            self.reseed(number, state["epoch"], 1, shared=True))
        self.shuffle_gen.set_state(state["rng"]["shuffle"])
        by_rank = state["rng"].get("torch_by_rank")
        if dist.rank() == 0 or by_rank is None:
            torch.set_rng_state(state["rng"]["torch"])
        if dist.rank() > 0:  # its own state when the run had this rank, else a fresh one
            if by_rank is not None and dist.rank() < len(by_rank):
                torch.set_rng_state(by_rank[dist.rank()].clone())  # its own storage
            else:
                torch.manual_seed(self.reseed(number, state["epoch"]))
        return dict(start_epoch=state["epoch"], optimizer_state=state["optimizer"])

    def on_epoch_end(self, stage: int, epoch: int, optimizer) -> None:
        """Write a checkpoint every ``every`` epochs and at the end of each stage."""
        from . import dist

        _test_hook("epoch", stage, epoch)
        if self.path is None or (epoch % self.every and epoch != self.stage_epochs[stage - 1]):
            return
        rng = {"augment": self.augment_gen.get_state(), "shuffle": self.shuffle_gen.get_state(),
               "torch": torch.get_rng_state()}
        if dist.world_size() > 1:  # the global generator differs by rank
            rng["torch_by_rank"] = torch.stack(dist.all_gather_object(rng["torch"]))
        if not dist.is_main():
            return  # only rank 0 writes
        save_checkpoint(self.path, params=self.params, seed=self.seed, n_images=self.n_images,
                        stage=stage, epoch=epoch, model=self.model, optimizer=optimizer,
                        rng=rng, history=self.history_list, stage_embeddings=self.embeddings,
                        extras=self.extras() if self.extras is not None else None)
        self.saved = (stage, epoch)

    def restore_last_good(self) -> bool:
        """Give the network the weights of the last good checkpoint, where they fit it."""
        if self.saved is None:
            return False
        try:
            weights = torch.load(self.path, map_location="cpu", weights_only=True)["model"]
        except (OSError, RuntimeError, KeyError, ValueError, TypeError):
            return False
        current = self.model.state_dict()
        if set(weights) != set(current) or any(weights[k].shape != current[k].shape
                                               for k in current):
            return False  # a checkpoint from before the stage-2 surgery
        self.model.load_state_dict(weights)
        return True

    def kept(self, restored: bool = False) -> str:
        """What a diverged run leaves behind, for its error message."""
        if self.path is None:
            return "No checkpoint was kept (pass 'checkpoint' to keep one)."
        if self.saved is None:
            return "No checkpoint was written before it (nothing finished well)."
        return (f"The last good checkpoint, '{os.fspath(self.path)}' (stage {self.saved[0]}, "
                f"epoch {self.saved[1]}), is kept" + (", and model_ holds its weights"
                                                      if restored else "")
                + "; delete it to start again with other parameters.")

    def complete(self) -> None:
        """The run is done: its checkpoint goes (on every process once this returns)."""
        from . import dist

        if self.path is None:
            return
        if dist.is_main():
            Path(self.path).unlink(missing_ok=True)
        dist.barrier()


def set_generator_state(gen: torch.Generator, state: torch.Tensor, seed: int) -> None:
    """Give ``gen`` a checkpoint's state; one from another device type (a CPU generator's
    state is 5,056 bytes, a CUDA one's 16) cannot be carried over, so ``gen`` is seeded
    with ``seed`` instead and a warning says that the run differs from an uninterrupted
    one from here on."""
    import warnings

    if state.numel() == gen.get_state().numel():
        gen.set_state(state)
        return
    gen.manual_seed(seed)
    warnings.warn(
        f"The checkpoint was written by a run on another device type than this one "
        f"({gen.device.type}): its random augmentations go on from a new seed, so the result "
        "differs from an uninterrupted run's (as much as two seeds' results differ).",
        stacklevel=3)
