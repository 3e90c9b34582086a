"""Projection heads: the MLP of SimCLR/t-SimCNE and a single linear layer."""

from __future__ import annotations

from torch import nn


def mlp_head(in_features: int, out_features: int = 128, hidden: int = 1024) -> nn.Sequential:
    """in -> hidden -> ReLU -> out (the paper's 512 -> 1024 -> 128 for ResNet18)."""
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_features)
    )


def linear_head(in_features: int, out_features: int = 128) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, out_features))
