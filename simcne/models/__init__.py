"""Backbones by name, projection heads, the two-output model and the stage surgery."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .heads import linear_head, mlp_head
from .resnet import resnet18, resnet34, resnet50, resnet101, resnet_small

#: name -> constructor(in_channels) returning a module with ``out_features``.
BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet_small": resnet_small,
}

HEADS = ("mlp", "linear")


def make_backbone(name: str, in_channels: int = 3) -> nn.Module:
    """Build a backbone by name; it maps (B, C, H, W) images to (B, out_features)."""
    try:
        ctor = BACKBONES[name]
    except KeyError:
        raise ValueError(
            f"The 'backbone' parameter of TSimCNE must be one of {sorted(BACKBONES)} or an "
            f"nn.Module. Got {name!r} instead."
        ) from None
    return ctor(in_channels=in_channels)


class SimCNEModel(nn.Module):
    """backbone -> projection head; ``forward`` returns ``(z, h)``: head output and features."""

    def __init__(self, backbone: nn.Module, projection_head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.projection_head = projection_head

    def forward(self, x: torch.Tensor):
        h = self.backbone(x)
        return self.projection_head(h), h


class WrappedModel(nn.Module):
    """A user's whole model; returns ``(z, h)`` when it does, ``(z, None)`` otherwise."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        out = self.model(x)
        if isinstance(out, (tuple, list)):
            return out[0], (out[1] if len(out) > 1 else None)
        return out, None


def backbone_out_features(backbone: nn.Module, in_channels: int, image_size) -> int:
    """The width of a backbone's output, from its attribute or a dry forward pass."""
    width = getattr(backbone, "out_features", None)
    if isinstance(width, int):
        return width
    h, w = image_size
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            p = next(backbone.parameters(), None)
            device = p.device if p is not None else "cpu"
            out = backbone(torch.zeros(2, in_channels, h, w, device=device))
    finally:
        backbone.train(was_training)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return int(torch.flatten(out, 1).shape[1])


def make_model(
    backbone="resnet18",
    projection_head="mlp",
    model=None,
    *,
    in_channels: int = 3,
    image_size=(32, 32),
    pretrain_out_dim: int = 128,
) -> nn.Module:
    """Build the network whose forward returns ``(z, h)``.

    ``model`` (an nn.Module) wins over ``backbone`` and ``projection_head``.
    """
    if model is not None:
        return model if isinstance(model, (SimCNEModel, WrappedModel)) else WrappedModel(model)
    bb = backbone if isinstance(backbone, nn.Module) else make_backbone(backbone, in_channels)
    if isinstance(projection_head, nn.Module):
        head = projection_head
    else:
        width = backbone_out_features(bb, in_channels, image_size)
        head = (mlp_head if projection_head == "mlp" else linear_head)(width, pretrain_out_dim)
    return SimCNEModel(bb, head)


def last_linear(module: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    """(parent, attribute name, layer) of the last nn.Linear registered in ``module``."""
    found = None
    for parent in module.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                found = (parent, name, child)
    if found is None:
        raise ValueError(
            "t-SimCNE's second stage replaces the model's last nn.Linear layer, but the model "
            f"{type(module).__name__} has no nn.Linear."
        )
    return found


def replace_last_linear(model: nn.Module, out_dim: int, generator=None) -> nn.Linear:
    """Swap the head's last Linear for a fresh Linear(in -> out_dim), weights N(0, 1), bias 0."""
    root = model.projection_head if isinstance(model, SimCNEModel) else model
    parent, name, old = last_linear(root)
    new = nn.Linear(old.in_features, out_dim, bias=old.bias is not None)
    with torch.no_grad():
        w = torch.randn(new.weight.shape, generator=generator)
        new.weight.copy_(w)
        if new.bias is not None:
            new.bias.zero_()
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    setattr(parent, name, new)
    return new


def set_trainable(model: nn.Module, only: nn.Module | None = None) -> int:
    """Freeze all parameters but those of ``only`` (all trainable when None). Returns the count."""
    keep = {id(p) for p in only.parameters()} if only is not None else None
    n = 0
    for p in model.parameters():
        p.requires_grad_(keep is None or id(p) in keep)
        n += p.numel() if p.requires_grad else 0
    return n


__all__ = [
    "BACKBONES",
    "HEADS",
    "SimCNEModel",
    "WrappedModel",
    "backbone_out_features",
    "last_linear",
    "linear_head",
    "make_backbone",
    "make_model",
    "mlp_head",
    "replace_last_linear",
    "set_trainable",
]
