"""What tests/test_dist.py runs in each process under torchrun (and once in one process).

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/dist_worker.py step,fit OUT
    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/dist_worker.py hang OUT
    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/dist_worker.py refuse OUT

Each process writes what it saw to ``OUT/rank<r>.pt`` ({scenario: result}); the test
compares that with the same functions run in a single process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch


def digits(n: int = 64):
    """The first ``n`` of scikit-learn's digits as uint8 (n, 8, 8), and their labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.rint(d.images[:n] * (255.0 / 16.0)).astype(np.uint8), d.target[:n]


def one_step(batch: int = 16, seed: int = 3) -> dict:
    """One optimiser step of train_stage on one global batch; the loss, gradients, weights.

    Under torchrun every process returns what it saw (its gradients after DDP's averaging,
    the weights after the step, the epoch's loss as train_stage reports it).
    """
    from simcne import TSimCNE, dist
    from simcne.data import load
    from simcne.estimator import default_training
    from simcne.train import Stage, train_stage

    X, _ = digits(batch)
    est = TSimCNE(backbone="resnet_small", batch_size=batch, random_state=seed, device="cpu")
    est._validate_params()
    store = load(X)
    est._resolve(store)
    torch.manual_seed(seed)
    from simcne.models import make_model

    model = make_model("resnet_small", "mlp", None, in_channels=1, image_size=(8, 8),
                       pretrain_out_dim=16)
    dist.broadcast_module(model)
    gen = torch.Generator().manual_seed(seed)
    augment = est._augment(gen)
    kw = {"gather": True} if dist.is_distributed() else {}
    from simcne.losses import info_nce

    seen = {}

    def capture(stage, epoch, loss, m):
        seen["loss"] = loss
        seen["grads"] = {k: p.grad.clone() for k, p in m.named_parameters()}
        seen["weights"] = {k: v.clone() for k, v in m.state_dict().items()}

    train_stage(model, store, Stage(1, 1, 0.1, 0, lambda z: info_nce(z, **kw)),
                default_training(batch_size=batch, augment=augment, device=torch.device("cpu"),
                                 generator=torch.Generator().manual_seed(seed + 1), momentum=0.0,
                                 grad_clip=None, callbacks=[capture]))
    return seen


FIT = dict(backbone="resnet_small", total_epochs=[2, 1, 1], batch_size=16, random_state=0,
           pretrain_out_dim=16, device="cpu")


def reference_fit() -> dict:
    """The short fit of :func:`fit` in one process."""
    from simcne import TSimCNE

    X, _ = digits(64)
    est = TSimCNE(**FIT).fit(X)
    return {"embedding": est.embedding_, "stages": est.stage_embeddings_,
            "loss": est.loss_history_["loss"], "transform": est.transform(X[:37])}


def fit(out: Path) -> dict:
    """A short fit, transform and save; an interrupted fit and its resumption; which files
    this process wrote; the error for a batch that the processes cannot share."""
    import simcne._io
    from simcne import TSimCNE

    written = []
    real = simcne._io.atomic_path  # every file simcne writes goes through it

    def logged(path):
        written.append(os.path.basename(path))
        return real(path)

    simcne._io.atomic_path = logged
    X, _ = digits(64)
    est = TSimCNE(**FIT).fit(X)
    result = {"embedding": est.embedding_, "stages": est.stage_embeddings_,
              "loss": est.loss_history_["loss"], "transform": est.transform(X[:37])}
    est.save(out / "model.pt")
    ckpt = out / "run.ckpt"
    TSimCNE(**FIT, checkpoint=ckpt, checkpoint_every=1,
            callbacks=lambda s, e, loss, m: (s, e) == (1, 1)).fit(X)
    result["checkpoint_existed"] = ckpt.exists()
    from simcne import dist

    if dist.is_main():  # for the test that goes on from it in one process
        import shutil

        shutil.copy(ckpt, out / "stopped.ckpt")
    resumed = TSimCNE(**FIT, checkpoint=ckpt).fit(X)
    result["resumed"] = resumed.embedding_
    result["resumed_loss"] = resumed.loss_history_["loss"]
    result["checkpoint_left"] = ckpt.exists()
    result["written"] = written
    try:
        TSimCNE(**{**FIT, "batch_size": 15}).fit(X)
        result["odd_batch"] = None
    except ValueError as e:
        result["odd_batch"] = str(e)
    return result


def refuse(out: Path) -> dict:
    """Rank 1 alone finds too little memory for a step: every rank must end with the
    refusal, none wait for the others in the broadcast of the network."""
    import time

    import simcne._heap
    from simcne import TSimCNE, dist

    if int(os.environ["RANK"]) == 1:
        simcne._heap.available_memory = lambda: 1000  # bytes
    t0 = time.monotonic()
    try:
        TSimCNE(**FIT).fit(digits(64)[0])
        error = None
    except ValueError as e:
        error = str(e)
    return {"error": error, "seconds": time.monotonic() - t0, "rank": dist.rank()}


def main(argv) -> int:
    torch.set_num_threads(1)
    scenario, out = argv[0], Path(argv[1])
    if scenario == "hang":  # rank 1 hangs; rank 0 times out and ends the run
        import time

        from simcne import TSimCNE

        def hang(stage, epoch, loss, model):
            if int(os.environ["RANK"]) == 1:
                time.sleep(600)

        TSimCNE(**FIT, callbacks=hang).fit(digits(64)[0])
        return 0
    result = {}
    for name in scenario.split(","):
        result[name] = {"step": one_step, "fit": lambda: fit(out),
                        "refuse": lambda: refuse(out)}[name]()
    from simcne import dist

    torch.save(result, out / f"rank{dist.rank()}.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
