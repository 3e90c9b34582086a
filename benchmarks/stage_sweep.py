"""Stage-by-stage experiments on small data: 2-D kNN accuracy against seconds of training.

Trains the three stages by hand (simcne's own ``train_stage``), so that each stage may have
its own batch size, optimiser, rate and warm-up, the augmentation its own crop range and flip
probability, and the new ``out_dim`` layer another initial scale than the paper's N(0, 1).
Stage 1 can be kept in a file (``--s1cache``) and shared by several runs that differ only
in stages 2 and 3. kNN accuracy (k=15, stratified 20 % split) is the mean over split seeds
0, 1, 2, of the embedding of the unaugmented images; the seconds count training only.
Each finished run appends a JSON line to ``--results``.

The README's "Small datasets" table was measured with it, two runs at a time of one torch
thread each on the 2-core machine, e.g.::

    PYTHONPATH=. python benchmarks/stage_sweep.py --threads 1 --epochs 10 10 60 \
        --s1cache s1_c7f0.pt --crop_lo 0.7 --flip 0 --lr 0.015 0.3 0.0015 --tag K
"""
import argparse, json, os, sys, time, copy
import numpy as np, torch
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from simcne import data as _data, knn_accuracy
from simcne.augment import Augment
from simcne.losses import info_nce
from simcne.models import make_model, replace_last_linear, set_trainable
from simcne.train import Stage, train_stage, embed

p = argparse.ArgumentParser()
p.add_argument("--backbone", default="resnet_small")
p.add_argument("--epochs", type=int, nargs=3, default=[60, 20, 160])
p.add_argument("--bs", type=int, nargs=3, default=[128, 128, 128])
p.add_argument("--lr", type=float, nargs=3, default=[0.015, 0.015, 0.0015])
p.add_argument("--opt", nargs=3, default=["sgd", "sgd", "sgd"])
p.add_argument("--wd", type=float, nargs=3, default=[5e-4, 5e-4, 5e-4])
p.add_argument("--warmup", type=int, nargs=3, default=[10, 0, 10])
p.add_argument("--seed", type=int, default=0)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--every", type=int, default=20)
p.add_argument("--every2", type=int, default=5)
p.add_argument("--s1cache", default=None)
p.add_argument("--init_std", type=float, default=1.0)
p.add_argument("--tag", default="")
p.add_argument("--direct", action="store_true")
p.add_argument("--crop_lo", type=float, default=0.2)
p.add_argument("--flip", type=float, default=0.5)
p.add_argument("--data", default="digits", help="digits, or an .npz with X (uint8 images) and y")
p.add_argument("--results", default="stage_sweep.jsonl")
p.add_argument("--widths", type=int, nargs="+", default=None, help="a ResNet of one basic block per width instead of --backbone")
p.add_argument("--exaggeration", type=float, default=1.0, help="weight of the positive term in stages 2 and 3")
p.add_argument("--save-embedding", default=None, help="write the final embedding to this .npy")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
if a.data == "digits":
    from sklearn.datasets import load_digits
    d = load_digits(); X = np.rint(d.images * (255 / 16)).astype(np.uint8); y = d.target
else:
    z = np.load(a.data); X, y = z["X"], z["y"]
store = _data.load(X, y)
dev = torch.device("cpu")
size = store.image_size
if a.widths:
    from simcne.models import BACKBONES
    from simcne.models.resnet import BasicBlock, ResNet
    BACKBONES["custom"] = lambda in_channels=3: ResNet(BasicBlock, [1] * len(a.widths), widths=tuple(a.widths), in_channels=in_channels)
    a.backbone = "custom"
model = make_model(a.backbone, "mlp", None, in_channels=store.channels, image_size=size, pretrain_out_dim=2 if a.direct else 128)
gen = torch.Generator().manual_seed(a.seed)
sg = torch.Generator().manual_seed(a.seed + 1)
aug = Augment(size=size, crop_scale=(a.crop_lo, 1.0), flip_p=a.flip)
augment = lambda x: aug(x, generator=gen)
def loss_fn(z):
    return info_nce(z, "euclidean")


def exaggerated(z, rho=a.exaggeration):
    from simcne.losses import log_similarity
    n = z.shape[0]
    logits = log_similarity(z.float(), "euclidean").masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
    pos = torch.arange(n).roll(n // 2)
    return (-rho * logits[torch.arange(n), pos] + torch.logsumexp(logits, 1)).mean()
clock = [0.0]
log = []
def knn(Y):
    return float(np.mean([knn_accuracy(Y, y, 15, 0.2, s) for s in (0, 1, 2)]))
def evaluate(tag):
    Y = embed(model, store, image_size=size, device=dev)
    acc = knn(Y)
    log.append((tag, round(clock[0], 1), round(acc, 4)))
    print(f"  {tag:>12} t={clock[0]:7.1f}s knn={acc:.4f}", flush=True)
    return Y
def timed_stage(n, st, bs, opt, wd, every):
    t = [time.perf_counter()]
    def cb(stage, epoch, loss, m):
        clock[0] += time.perf_counter() - t[0]
        if epoch % every == 0 or epoch == st.epochs:
            evaluate(f"s{stage}e{epoch}") if (stage > 1 or a.direct) else print(f"  s1e{epoch} t={clock[0]:.1f} loss={loss:.3f}", flush=True)
        t[0] = time.perf_counter()
        return False
    train_stage(model, store, st, batch_size=bs, augment=augment, loss_fn=loss_fn if n == 1 else exaggerated, device=dev,
                generator=sg, optimizer=opt, weight_decay=wd, callbacks=[cb])
e1, e2, e3 = a.epochs
if a.s1cache and os.path.exists(a.s1cache):
    ck = torch.load(a.s1cache); model.load_state_dict(ck["model"]); clock[0] = ck["clock"]
    print(f"stage 1 from cache ({clock[0]:.1f}s)")
else:
    set_trainable(model)
    timed_stage(1, Stage(1, e1, a.lr[0], a.warmup[0]), a.bs[0], a.opt[0], a.wd[0], a.every if a.direct else 10**9)
    if a.direct:
        open(a.results, "a").write(json.dumps({"tag": a.tag, "args": vars(a), "log": log}) + "\n"); sys.exit()
    if a.s1cache:
        torch.save({"model": model.state_dict(), "clock": clock[0]}, a.s1cache)
Yb = embed(model, store, image_size=size, device=dev, backbone_features=True)
print(f"  backbone feat knn={knn(Yb[1]):.4f}")
layer = replace_last_linear(model, 2, generator=torch.Generator().manual_seed(a.seed + 2))
if a.init_std != 1.0:
    with torch.no_grad(): layer.weight.mul_(a.init_std)
evaluate("s1")
set_trainable(model, only=layer)
timed_stage(2, Stage(2, e2, a.lr[1], a.warmup[1]), a.bs[1], a.opt[1], a.wd[1], a.every2)
set_trainable(model)
timed_stage(3, Stage(3, e3, a.lr[2], a.warmup[2]), a.bs[2], a.opt[2], a.wd[2], a.every)
with open(a.results, "a") as f:
    f.write(json.dumps({"tag": a.tag, "args": vars(a), "log": log}) + "\n")
if a.save_embedding:
    np.save(a.save_embedding, embed(model, store, image_size=size, device=dev))
