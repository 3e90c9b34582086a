"""InfoNCE with a choice of similarity kernel.

For a batch of ``2B`` outputs where rows ``i`` and ``i + B`` are the two views of one image,
the loss of row i is ``-log( k(z_i, z_pos) / sum_{j != i} k(z_i, z_j) )``: all other ``2B - 2``
views are negatives. The kernels:

- ``"euclidean"`` (t-SimCNE's, default): the Cauchy kernel ``1 / (1 + |z_i - z_j|^2)``;
- ``"cosine"`` (SimCLR's): ``exp(cos(z_i, z_j) / temperature)``;
- ``"gauss"``: the Gaussian kernel ``exp(-|z_i - z_j|^2)`` (SNE's output-space affinity).

Everything is computed in float32 from log-similarities, so the loss is finite for any input.

Under torchrun, ``info_nce(z, gather=True)`` takes this process's share of the batch and
gathers the other processes' rows with gradients (:func:`simcne.dist.all_gather_with_grad`),
so that each view still sees all ``2B - 2`` negatives of the global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import dist

METRICS = ("euclidean", "cosine", "gauss")


def _sq_dists(z: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
    if other is None:
        sq = (z * z).sum(1)
        return (sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)).clamp_min_(0.0)
    return ((z * z).sum(1)[:, None] + (other * other).sum(1)[None, :]
            - 2.0 * (z @ other.T)).clamp_min_(0.0)


def log_similarity(z: torch.Tensor, metric: str = "euclidean", temperature: float = 0.5,
                   other: torch.Tensor | None = None):
    """The (2B, 2B) matrix of log kernel values (rows of ``z`` against ``other``, default z)."""
    if metric == "euclidean":
        return -torch.log1p(_sq_dists(z, other))
    if metric == "gauss":
        return -_sq_dists(z, other)
    if metric == "cosine":
        zn = F.normalize(z, dim=1)
        on = zn if other is None else F.normalize(other, dim=1)
        return (zn @ on.T) / temperature
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def info_nce(z: torch.Tensor, metric: str = "euclidean", temperature: float = 0.5, *,
             exaggeration: float = 1.0, gather: bool = False,
             extra: torch.Tensor | None = None,
             extra_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean InfoNCE loss of ``z`` (2B, d), positives at ``i <-> i + B``.

    Parameters
    ----------
    z : Tensor of shape (2B, d)
        Rows ``i`` and ``i + B`` are the two views of image ``i``.
    metric : {"euclidean", "cosine", "gauss"}, default="euclidean"
    temperature : float, default=0.5
        Of the "cosine" metric.
    exaggeration : float, default=1.0
        The weight rho of the positive pair's term: the loss of row i is
        ``-rho * log k(z_i, z_pos) + log sum_{j != i} k(z_i, z_j)``; 1 is InfoNCE.
    gather : bool, default=False
        Under torchrun with W processes: ``z`` is this process's share, the two views of its
        ``b = B / W`` images of the global batch (the r-th slice of each half of the global
        ``z``). The other processes' rows are gathered with gradients and the result is the
        mean loss of this process's ``2b`` rows, each against all ``2B - 2`` negatives. The
        mean of it over the processes is the loss of the global batch, and with
        DistributedDataParallel's gradient averaging the gradients equal those of one process
        on the whole batch. Without a process group, ``gather`` changes nothing.
    extra : Tensor of shape (M, d), optional
        More negatives for every row (no gradient flows into them), e.g. positions from a
        bank of every image's (:class:`simcne.train.NegativeBank`): their kernel values join
        the denominator's sum, ``sum_{j != i} k(z_i, z_j) + sum_m k(z_i, extra_m)``.
    extra_mask : bool Tensor of shape (2B, M), optional
        True where ``extra_m`` must not count for row i (a stale copy of the row's own image
        or of its positive).
    """
    n = z.shape[0]
    gathered = gather and dist.is_distributed()
    if n % 2 or n < (2 if gathered else 4):
        raise ValueError(f"info_nce needs an even number (>= 4) of rows, got {n}")
    if gathered:
        return _info_nce_gathered(z, metric, temperature, exaggeration, extra, extra_mask)
    logits = log_similarity(z.float(), metric, temperature)  # a new tensor: filled in place
    logits.diagonal().fill_(float("-inf"))  # not itself
    positive = _positives(n, z.device)
    logits = _with_extra(logits, z, extra, extra_mask, metric, temperature)
    return _exaggerated(F.cross_entropy(logits, positive), logits, positive, exaggeration)


#: the contrastive losses by name (the ``loss`` parameter of TSimCNE; the parameter table
#: takes its choices from here). Each is called as :func:`info_nce` is:
#: ``fn(z, metric, temperature, *, exaggeration, gather=..., extra=..., extra_mask=...)``.
LOSSES = {"infonce": info_nce}


def _with_extra(logits, z, extra, extra_mask, metric, temperature):
    """``logits`` with the columns of the extra negatives appended (after the batch's, so
    that the positives' column indices stay as they are)."""
    if extra is None:
        return logits
    more = log_similarity(z.float(), metric, temperature, other=extra.detach().float())
    if extra_mask is not None:
        more = more.masked_fill(extra_mask, float("-inf"))
    return torch.cat([logits, more], 1)


_POSITIVES: dict = {}


def _positives(n: int, device: torch.device) -> torch.Tensor:
    """``(i + n / 2) mod n`` for i < n: each row's positive, made once per (n, device)."""
    key = (n, torch.device(device))
    t = _POSITIVES.get(key)
    if t is None:
        if len(_POSITIVES) > 16:  # a few batch sizes in a process; never many
            _POSITIVES.clear()
        t = _POSITIVES[key] = torch.arange(n, device=device).roll(n // 2)
    return t


def _exaggerated(loss, logits, positive, exaggeration: float):
    """cross-entropy ``-l_pos + logsumexp(l)`` made ``-rho * l_pos + logsumexp(l)``."""
    if exaggeration == 1.0:
        return loss
    return loss - (exaggeration - 1.0) * logits.gather(1, positive[:, None]).mean()


def _info_nce_gathered(z: torch.Tensor, metric: str, temperature: float,
                       exaggeration: float = 1.0, extra=None, extra_mask=None) -> torch.Tensor:
    w, r, b = dist.world_size(), dist.rank(), z.shape[0] // 2
    z = z.float()
    every = dist.all_gather_with_grad(z)  # (W * 2b, d): rank by rank, [view 1; view 2] each
    # the global batch's order: view 1 of every process's images, then view 2
    every = every.view(w, 2, b, -1).transpose(0, 1).reshape(2 * w * b, -1)
    big = w * b  # images in the global batch
    mine = torch.arange(r * b, (r + 1) * b, device=z.device)
    rows = torch.cat([mine, mine + big])  # this process's rows in the global batch
    logits = log_similarity(z, metric, temperature, other=every)
    logits = logits.scatter(1, rows[:, None], float("-inf"))  # not itself
    positive = (rows + big) % (2 * big)
    logits = _with_extra(logits, z, extra, extra_mask, metric, temperature)
    return _exaggerated(F.cross_entropy(logits, positive), logits, positive, exaggeration)
