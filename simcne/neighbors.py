"""What the ``out_dim`` stages (2 and 3) may add to the paper's recipe, each off by default.

- **Neighbour positives** (``neighbor_positives=k``): after stage 1, each image's k nearest
  neighbours in the backbone's features (cosine similarity, no augmentation) are found once
  (:func:`knn_table`); in stages 2 and 3 the second view of a pair is, with probability
  ``1 - 1/(k + 1)``, a view of one of them instead of the image itself
  (:class:`NeighborPairs`). The map is then pulled together along the feature space's
  k-nearest-neighbour graph, as t-SNE's is along the pixels' (contrastive neighbour
  embeddings, Damrich et al., ICLR 2023), while the augmentation keeps its invariances.
- **A negative bank** (``bank_negatives=M``): every image's current position in the map is
  kept in a table (:class:`NegativeBank`), filled by embedding all images at the start of
  the stage and refreshed with each batch's outputs as training goes (every row once an
  epoch). Each step, M rows of it (all of them when M >= N) join the batch's ``2B - 2``
  negatives in the loss's denominator, without gradient: the repulsion comes from the
  whole dataset, as in t-SNE, not from one batch. In 2-D it is cheap (2B x M distances).
- **A PCA start for the new layer** (``out_layer_init="pca"``): the fresh
  ``Linear(hidden -> out_dim)`` of stage 2 projects onto the top principal components of
  what it receives, scaled so its output has the spread a random N(0, std^2) layer would
  give, as t-SNE starts from the PCA of its input (:func:`pca_layer_`).

Under torchrun every process draws the same partners for the global batch and keeps the same
bank (each step's outputs are gathered from every process).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import dist


def knn_table(features, k: int, *, device=None, chunk: int = 2048) -> torch.Tensor:
    """(N, k) int64: each row's k nearest other rows of ``features`` by cosine similarity.

    Exact, in chunks of ``chunk`` rows against all (memory ``chunk x N`` floats): N = 70,000
    with 512 features is about a minute on a 2-core CPU, seconds on a GPU. Ties go to the
    smaller index. The table is on the CPU.
    """
    f = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    n = f.shape[0]
    if n < 2:
        raise ValueError(f"neighbour positives need at least 2 images, got {n}")
    k = min(int(k), n - 1)
    f = F.normalize(f.to(device or "cpu"), dim=1)
    out = torch.empty((n, k), dtype=torch.int64)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        sims = f[s:e] @ f.T
        sims[torch.arange(e - s), torch.arange(s, e)] = float("-inf")  # not itself
        out[s:e] = sims.topk(k, dim=1).indices.cpu()
    return out


class NeighborPairs:
    """Partners for the second view: with probability ``k / (k + 1)`` one of the image's k
    neighbours (uniformly), else the image itself (the paper's pair)."""

    def __init__(self, table: torch.Tensor):
        self.table = table.cpu()
        self.k = int(table.shape[1])

    def partners(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Partners of ``index`` (int64, CPU), drawn with ``generator`` (CPU)."""
        col = torch.randint(0, self.k + 1, (len(index),), generator=generator)
        other = self.table[index, col.clamp(max=self.k - 1)]
        return torch.where(col == self.k, index, other)


class NegativeBank:
    """Every image's position in the map, ``(N, d)`` float32 on the training device."""

    def __init__(self, positions, size: int, device):
        self.pos = torch.as_tensor(np.asarray(positions), dtype=torch.float32).to(device)
        self.n = self.pos.shape[0]
        self.size = int(size)

    def negatives(self, generator: torch.Generator):
        """(indices, positions) of this step's bank negatives: every row when ``size >= N``,
        else ``size`` rows drawn with replacement (``generator``, CPU)."""
        if self.size >= self.n:
            idx = torch.arange(self.n, device=self.pos.device)
        else:
            idx = torch.randint(0, self.n, (self.size,), generator=generator)
            idx = idx.to(self.pos.device)
        return idx, self.pos[idx]

    @torch.no_grad()
    def update(self, index: torch.Tensor, z: torch.Tensor) -> None:
        """Row ``index[i]`` becomes ``z[i]`` (detached, fp32)."""
        self.pos.index_copy_(0, index.to(self.pos.device), z.detach().float())


class StepExtras:
    """What one step of an ``out_dim`` stage adds: partners as the second views' images and
    the bank's negatives in the loss, then the bank's refresh with the step's outputs.

    ``own`` and ``pos`` (this process's rows, in the order of its views: first views then
    second views) are the images each output row shows and its positive's; ``every`` is the
    global batch's images in the order :func:`simcne.dist.all_gather_with_grad` returns the
    processes' outputs.
    """

    def __init__(self, bank: NegativeBank | None, generator: torch.Generator):
        self.bank, self.generator = bank, generator
        self.own = self.pos = self.every = None

    def set_batch(self, own: torch.Tensor, pos: torch.Tensor, every: torch.Tensor) -> None:
        self.own, self.pos, self.every = own, pos, every

    def loss_kw(self) -> dict:
        if self.bank is None:
            return {}
        idx, values = self.bank.negatives(self.generator)
        own = self.own.to(idx.device)
        pos = self.pos.to(idx.device)
        mask = (idx[None, :] == own[:, None]) | (idx[None, :] == pos[:, None])
        return {"extra": values, "extra_mask": mask}

    def after(self, z: torch.Tensor) -> None:
        if self.bank is None:
            return
        z = z.detach()
        if dist.is_distributed():
            z = dist.all_gather_with_grad(z.contiguous())
        self.bank.update(self.every, z)


@torch.no_grad()
def pca_layer_(layer: torch.nn.Linear, inputs: torch.Tensor, std: float) -> None:
    """Make ``layer`` (in -> out_dim) project centred ``inputs`` (n, in) onto their top
    ``out_dim`` principal components, in place.

    The scale: the output's total variance is what a layer with N(0, ``std``^2) weights
    would give the same inputs (``std^2 * out_dim * sum of the inputs' squared norms / n``
    in expectation), spread over the components in proportion to their variances, as a
    PCA keeps them. The bias centres the output at 0.
    """
    x = inputs.double()
    mean = x.mean(0)
    xc = x - mean
    d = layer.out_features
    # top-d right singular vectors of the centred inputs (a randomised SVD for wide inputs)
    q = min(d + 8, min(xc.shape))
    _, s, v = torch.svd_lowrank(xc, q=q, niter=4)
    comps = v[:, :d].T  # (d, in)
    # signs fixed so that the map does not depend on the SVD's: the largest loading positive
    signs = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    comps = comps * signs
    proj_var = (s[:d] ** 2) / max(1, x.shape[0] - 1)  # variance along each component
    target = std ** 2 * d * (x * x).sum(1).mean()  # a random layer's output variance
    scale = torch.sqrt(target / proj_var.sum().clamp_min(1e-30))
    w = comps * scale
    layer.weight.copy_(w.to(layer.weight.dtype))
    if layer.bias is not None:
        layer.bias.copy_((-(w @ mean)).to(layer.bias.dtype))
