"""InfoNCE with a choice of similarity kernel.

For a batch of ``2B`` outputs where rows ``i`` and ``i + B`` are the two views of one image,
the loss of row i is ``-log( k(z_i, z_pos) / sum_{j != i} k(z_i, z_j) )``: all other ``2B - 2``
views are negatives. The kernels:

- ``"euclidean"`` (t-SimCNE's, default): the Cauchy kernel ``1 / (1 + |z_i - z_j|^2)``;
- ``"cosine"`` (SimCLR's): ``exp(cos(z_i, z_j) / temperature)``;
- ``"gauss"``: the Gaussian kernel ``exp(-|z_i - z_j|^2)`` (SNE's output-space affinity).

Everything is computed in float32 from log-similarities, so the loss is finite for any input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

METRICS = ("euclidean", "cosine", "gauss")


def _sq_dists(z: torch.Tensor) -> torch.Tensor:
    sq = (z * z).sum(1)
    return (sq[:, None] + sq[None, :] - 2.0 * (z @ z.T)).clamp_min_(0.0)


def log_similarity(z: torch.Tensor, metric: str = "euclidean", temperature: float = 0.5):
    """The (2B, 2B) matrix of log kernel values."""
    if metric == "euclidean":
        return -torch.log1p(_sq_dists(z))
    if metric == "gauss":
        return -_sq_dists(z)
    if metric == "cosine":
        zn = F.normalize(z, dim=1)
        return (zn @ zn.T) / temperature
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def info_nce(z: torch.Tensor, metric: str = "euclidean", temperature: float = 0.5) -> torch.Tensor:
    """Mean InfoNCE loss of ``z`` (2B, d), positives at ``i <-> i + B``."""
    n = z.shape[0]
    if n % 2 or n < 4:
        raise ValueError(f"info_nce needs an even number (>= 4) of rows, got {n}")
    logits = log_similarity(z.float(), metric, temperature)
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    positive = torch.arange(n, device=z.device).roll(n // 2)
    return F.cross_entropy(logits, positive)
