"""The reference's side of ``faithful.py``: one tsimcne 0.3.12 fit, run by the reference venv.

    PYTHONPATH=~/.cache/simcne-reference/tsimcne_0312 \\
        ~/.cache/simcne-reference/venv/bin/python benchmarks/faithful_ref.py WORKDIR

WORKDIR holds ``images.npy`` (uint8, N x C x H x W), ``labels.npy`` and ``config.json``
(written by ``faithful.start_reference``). The network is ``faithful.build_network``'s, from
the same seed as simcne's side, given to ``tsimcne.TSimCNE`` as ``backbone`` and
``projection_head`` modules; everything else is the reference's defaults but the epochs and
the batch size. Lightning's trainer gets a callback that records every step's loss, every
epoch's learning rate and time, and the network's outputs after stages 1 and 2. Written
back: ``result.npz`` (Y, Y2, z1, h1) and ``result.json`` (losses, lrs, times).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from faithful import build_network, features_of  # noqa: E402


def main(workdir: Path) -> None:
    import PIL.Image
    from lightning import pytorch as pl
    from tsimcne.tsimcne import TSimCNE

    config = json.loads((workdir / "config.json").read_text())
    recipe = config["recipe"]
    torch.set_num_threads(recipe["threads"])
    images = np.load(workdir / "images.npy")
    labels = np.load(workdir / "labels.npy")
    mode = {1: "L", 3: "RGB"}[images.shape[1]]

    class Images(torch.utils.data.Dataset):
        """(PIL image, label) pairs, as the reference expects."""

        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            a = images[i].transpose(1, 2, 0)
            return PIL.Image.fromarray(a[:, :, 0] if mode == "L" else a, mode), int(labels[i])

    class Recorder(pl.Callback):
        def __init__(self):
            self.stage = 0
            self.losses, self.partial, self.lrs, self.seconds = [], [], [], []
            self.outputs = {}

        def on_fit_start(self, trainer, module):
            self.stage += 1
            for v in (self.losses, self.partial, self.lrs, self.seconds):
                v.append([])

        def on_train_epoch_start(self, trainer, module):
            self.steps = []
            self.lrs[-1].append(trainer.optimizers[0].param_groups[0]["lr"])
            self.t = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.steps.append((float(loss), len(batch[1])))

        def on_train_epoch_end(self, trainer, module):
            self.seconds[-1].append(time.perf_counter() - self.t)
            losses = [v for v, _ in self.steps]
            self.losses[-1].append(float(np.mean(losses)))
            # the mean over the full batches only (what a drop_last loader would give)
            full = [v for v, b in self.steps if b == recipe["batch_size"]]
            self.partial[-1].append(float(np.mean(full)) if full else float("nan"))

        def on_train_end(self, trainer, module):
            if self.stage in (1, 2):
                self.outputs[self.stage] = features_of(module.model, images)

    seed = config["seed"]
    backbone, head = build_network(config["init_seed"], config["in_channels"])
    pl.seed_everything(seed, verbose=False)
    est = TSimCNE(backbone=backbone, projection_head=head, total_epochs=list(recipe["epochs"]),
                  batch_size=recipe["batch_size"], num_workers=0)
    # set after construction: TSimCNE(trainer_kwargs={...}) leaves trainer_kwargs None in
    # 0.3.12 (it keeps the return value of dict.update); these are its defaults plus quiet
    # logging and the recorder
    rec = Recorder()
    est.trainer_kwargs = dict(gradient_clip_val=4, gradient_clip_algorithm="value",
                              accelerator="cpu", logger=False, enable_checkpointing=False,
                              enable_progress_bar=False, enable_model_summary=False,
                              callbacks=[rec])
    t0, c0 = time.perf_counter(), time.process_time()
    data = Images()
    est.fit(data)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    Y = est.transform(data)
    Y_eval, _ = features_of(est.plmodel.model, images)
    z1, h1 = rec.outputs[1]
    Y2, _ = rec.outputs[2]
    np.savez(workdir / "result.npz", Y=Y, Y2=Y2, z1=z1, h1=h1)
    info = dict(losses=rec.losses, losses_full_batches=rec.partial, lrs=rec.lrs,
                epoch_seconds=[s[1:] for s in rec.seconds], seconds=seconds,
                cpu_seconds=cpu_seconds,
                transform_vs_eval=float(np.abs(Y - Y_eval).max()))
    (workdir / "result.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
