"""Backbones by name, projection heads, the two-output model and the stage surgery."""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from .dryrun import dummy_images, eval_mode, run_explained
from .efficientnet import efficientnet_v2_l, efficientnet_v2_m, efficientnet_v2_s
from .heads import linear_head, mlp_head
from .mobilenetv3 import mobilenetv3_large, mobilenetv3_small
from .pretrained import (IMAGENET_MEAN, IMAGENET_STD, InputPrep, drop_classifier,
                         load_backbone_weights, make_input, resolve_normalize)
from .resnet import resnet18, resnet34, resnet50, resnet101, resnet_small, resnet_tiny

#: name -> constructor(in_channels) returning a module with ``out_features``.
BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "mobilenetv3_small": mobilenetv3_small,
    "mobilenetv3_large": mobilenetv3_large,
    "efficientnet_v2_s": efficientnet_v2_s,
    "efficientnet_v2_m": efficientnet_v2_m,
    "efficientnet_v2_l": efficientnet_v2_l,
    "resnet_small": resnet_small,
    "resnet_tiny": resnet_tiny,
}

HEADS = ("mlp", "linear")


def make_backbone(name: str, in_channels: int = 3) -> nn.Module:
    """Build a backbone by name, freshly initialised.

    Parameters
    ----------
    name : str
        One of ``BACKBONES``: ``"resnet18"`` ... ``"resnet101"``, ``"mobilenetv3_small"``,
        ``"mobilenetv3_large"``, ``"efficientnet_v2_s/m/l"``, ``"resnet_small"`` or
        ``"resnet_tiny"``.
    in_channels : int, default=3
        Image channels (1 for grayscale).

    Returns
    -------
    nn.Module
        Maps images (B, C, H, W) to features (B, out_features); ``out_features`` is an int.

    Examples
    --------
    >>> bb = make_backbone("resnet18", in_channels=1)
    >>> bb.out_features
    512
    """
    if not isinstance(name, str) or name not in BACKBONES:
        raise ValueError(
            f"The 'backbone' parameter of TSimCNE must be one of {sorted(BACKBONES)} or an "
            f"nn.Module. Got {name!r} instead."
        )
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"The 'in_channels' parameter must be a positive int. Got {in_channels!r} instead.")
    return BACKBONES[name](in_channels=in_channels)


def as_features(out, name: str = "backbone module") -> torch.Tensor:
    """A backbone's output as (B, D): (B, D) stays, (B, C, 1, 1) is flattened.

    A tuple or list output counts by its first element. Anything else raises a ValueError.
    """
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    if isinstance(out, torch.Tensor):
        if out.ndim == 2:
            return out
        if out.ndim == 4 and out.shape[2:] == (1, 1):
            return torch.flatten(out, 1)
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    raise ValueError(
        f"The {name} must return features of shape (B, D) or (B, C, 1, 1). Got {got} instead; "
        "end it with nn.AdaptiveAvgPool2d(1) and nn.Flatten() to pool the feature maps."
    )


def full_precision(t: torch.Tensor):
    """A block where autocast is off on ``t``'s device: what runs in it runs in fp32."""
    return torch.autocast(t.device.type, enabled=False)


class SimCNEModel(nn.Module):
    """(input prep ->) backbone -> projection head; ``forward`` returns ``(z, h)``: head
    output and features.

    ``prep`` (an :class:`InputPrep`, or none) repeats gray images to RGB and normalises
    them before the backbone; it holds no saved state, so the ``state_dict`` is the same
    with or without it. Under bf16 autocast only the backbone runs in bf16: the head takes
    the features as fp32 and runs outside autocast, so z (the map's coordinates) has fp32
    resolution rather than bf16's 8 significant bits (a few hundred distinct values per axis).
    """

    def __init__(self, backbone: nn.Module, projection_head: nn.Module,
                 prep: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone
        self.projection_head = projection_head
        self.prep = prep if prep is not None else nn.Identity()

    def forward(self, x: torch.Tensor):
        h = as_features(self.backbone(self.prep(x)))
        if h.dtype in (torch.bfloat16, torch.float16):
            h = h.float()
        with full_precision(h):
            return self.projection_head(h), h


class OutputLinear(nn.Linear):
    """The fresh ``out_dim`` layer of stage 2: an ``nn.Linear`` that runs in fp32 outside
    autocast, so that a user's whole ``model`` under bf16 still gives fp32 coordinates."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with full_precision(x):
            return super().forward(x.to(self.weight.dtype))


class WrappedModel(nn.Module):
    """A user's whole model; returns ``(z, h)`` when it does, ``(z, None)`` otherwise.

    ``prep`` as in :class:`SimCNEModel`.
    """

    def __init__(self, model: nn.Module, prep: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.prep = prep if prep is not None else nn.Identity()

    def forward(self, x: torch.Tensor):
        out = self.model(self.prep(x))
        if isinstance(out, (tuple, list)):
            return out[0], (out[1] if len(out) > 1 else None)
        return out, None


def backbone_out_features(backbone: nn.Module, in_channels: int, image_size) -> int:
    """The width D of a backbone's (B, D) features.

    Read from an int ``out_features`` attribute when there is one, else found by a dry
    forward pass of zeros (2, C, H, W) in eval mode without gradients (modes are restored,
    parameters and BatchNorm statistics are left untouched).
    """
    width = getattr(backbone, "out_features", None)
    if isinstance(width, int) and not isinstance(width, bool):
        return width
    x = dummy_images(backbone, in_channels, image_size)
    with eval_mode(backbone), torch.no_grad():
        out = run_explained(backbone, x, _cannot_take("backbone", type(backbone).__name__, x))
    return int(as_features(out, f"'backbone' {type(backbone).__name__}").shape[1])


def _cannot_take(param: str, name: str, x: torch.Tensor) -> str:
    return f"The '{param}' {name} cannot take images of shape (C, H, W) = {tuple(x.shape[1:])}"


def _first_linear_in(module: nn.Module):
    return next((m.in_features for m in module.modules() if isinstance(m, nn.Linear)), None)


def check_model(model: nn.Module, in_channels: int, image_size, name: str | None = None) -> int:
    """Dry-run ``model`` on zeros (2, C, H, W) and explain what does not fit.

    Runs without gradients in eval mode (each submodule's mode is restored afterwards).

    Parameters
    ----------
    model : nn.Module
        From :func:`make_model`: a :class:`SimCNEModel` or a :class:`WrappedModel`.
    in_channels : int
        Image channels C.
    image_size : tuple of int
        Image height and width (H, W).
    name : str, optional
        How to call the backbone (or model) in messages, e.g. the backbone string given
        by the user; by default its class name.

    Returns
    -------
    int
        The width of the model's output z.

    Raises
    ------
    ValueError
        Naming the backbone/model, the image shape (C, H, W) and the reason, when the
        backbone cannot take the images (wrong channels, images too small for a conv or
        pooling layer), when its output is not (B, D) or (B, C, 1, 1), when the features'
        width does not fit the projection head, or when z is not (B, d).
    """
    x = dummy_images(model, in_channels, image_size)
    with eval_mode(model), torch.no_grad():
        if isinstance(model, SimCNEModel):
            label = name or type(model.backbone).__name__
            x = model.prep(x)  # what the backbone gets: repeated to RGB, normalised
            out = run_explained(model.backbone, x, _cannot_take("backbone", label, x))
            try:
                h = as_features(out, f"'backbone' {label}")
            except ValueError as e:
                raise ValueError(f"{e} Images of shape (C, H, W) = {tuple(x.shape[1:])}.") from None
            head = model.projection_head
            expects = _first_linear_in(head)
            what = (
                f"The 'projection_head' {type(head).__name__} cannot take the {h.shape[1]}-wide "
                f"features of backbone {label} (images of shape (C, H, W) = {tuple(x.shape[1:])})"
                + (f"; it expects {expects}-wide features" if expects is not None else "")
            )
            z = run_explained(head, h, what)
            param = "projection_head"
        else:
            inner = model.model if isinstance(model, WrappedModel) else model
            label = name or type(inner).__name__
            z = run_explained(model, x, _cannot_take("model", label, x))
            z = z[0] if isinstance(z, (tuple, list)) else z
            param = "model"
    if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[0] != x.shape[0]:
        got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(
            f"The '{param}' of {label} must give outputs z of shape (B, d) for images of shape "
            f"(C, H, W) = {tuple(x.shape[1:])}. Got {got} for B = {x.shape[0]} instead."
        )
    return int(z.shape[1])


def _given_model(model, in_channels: int, normalize, say) -> nn.Module:
    """A whole ``model`` given by the user, with the input preparation it needs in front
    (gray to RGB, ``normalize``): wrapped, or a copy of a simcne model with its own."""
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"The 'model' parameter of TSimCNE must be None or an nn.Module. Got "
            f"{type(model).__name__} instead."
        )
    inner = model.model if isinstance(model, WrappedModel) else (
        model.backbone if isinstance(model, SimCNEModel) else model)
    prep = make_input(inner, in_channels, normalize, say)
    if prep is not None:
        prep = prep.to(device=dummy_images(inner, 1, (1, 1)).device)
    if not isinstance(model, (SimCNEModel, WrappedModel)):
        return WrappedModel(model, prep)
    if prep is not None:
        model = copy.deepcopy(model)
        model.prep = prep
    return model


def _check_parts(backbone, projection_head) -> None:
    """A ValueError naming 'backbone' or 'projection_head' when it is of no allowed kind."""
    if not isinstance(backbone, (str, nn.Module)):
        raise ValueError(
            f"The 'backbone' parameter of TSimCNE must be one of {sorted(BACKBONES)} or an "
            f"nn.Module. Got {type(backbone).__name__} instead."
        )
    if not isinstance(projection_head, nn.Module) and projection_head not in HEADS:
        raise ValueError(
            f"The 'projection_head' parameter of TSimCNE must be one of {list(HEADS)} or an "
            f"nn.Module. Got {projection_head!r} instead."
        )


def make_model(
    backbone="resnet18",
    projection_head="mlp",
    model=None,
    *,
    in_channels: int = 3,
    image_size=(32, 32),
    pretrain_out_dim: int = 128,
    normalize=None,
    say: Callable[[str], None] | None = None,
) -> nn.Module:
    """Build the network whose forward returns ``(z, h)``.

    Modules given here keep their current weights (never re-initialised): a pretrained
    backbone is trained on from its weights. They are used as they are, except that a
    classification network given as ``backbone`` loses its classifier: see
    :func:`simcne.models.pretrained.drop_classifier`; it is copied first, so the module
    given is never changed (``TSimCNE.fit`` copies every module it is given anyway).

    Parameters
    ----------
    backbone : str or nn.Module, default="resnet18"
        A name from ``BACKBONES`` or a module mapping (B, C, H, W) images to (B, D) or
        (B, D, 1, 1) features, or a classification network (its classifier is dropped).
        D is read from its ``out_features`` or a dry forward pass.
    projection_head : {"mlp", "linear"} or nn.Module, default="mlp"
        "mlp": D -> 1024 -> ReLU -> ``pretrain_out_dim``; "linear": D -> ``pretrain_out_dim``.
    model : nn.Module, optional
        A whole model returning z or (z, h); wins over ``backbone`` and ``projection_head``.
    in_channels : int, default=3
        Image channels. One-channel images given to a module whose first ``nn.Conv2d``
        takes 3 channels are repeated to 3 (:class:`InputPrep`).
    image_size : tuple of int, default=(32, 32)
        Image (H, W), for the dry forward pass.
    pretrain_out_dim : int, default=128
        Output width of a named head.
    normalize : None, "imagenet" or (mean, std), default=None
        Per-channel normalisation before the network (:class:`InputPrep`), as
        ``TSimCNE``'s parameter.
    say : callable, optional
        Receives one-line notes (the classifier dropped, gray images repeated to RGB).

    Returns
    -------
    SimCNEModel or WrappedModel

    Examples
    --------
    >>> m = make_model("mobilenetv3_small", in_channels=1, image_size=(28, 28))
    >>> m.projection_head[0].in_features
    576
    """
    if model is not None:
        return _given_model(model, in_channels, normalize, say)
    _check_parts(backbone, projection_head)
    bb = backbone if isinstance(backbone, nn.Module) else make_backbone(backbone, in_channels)
    prep = make_input(bb, in_channels, normalize, say)
    x = dummy_images(bb, in_channels, image_size)
    if prep is not None:
        prep = prep.to(device=x.device)  # beside the backbone's weights
    if isinstance(backbone, nn.Module):
        if prep is not None:
            x = prep(x)
        bb, dropped = drop_classifier(bb, x)
        if dropped is not None and say is not None:
            width = backbone_out_features(bb, x.shape[1], image_size)
            say(f"backbone {type(bb).__name__}: dropped {dropped} (replaced by nn.Identity, "
                f"in a copy); its features are {width} wide")
    if isinstance(projection_head, nn.Module):
        head = projection_head
    else:
        net_channels = prep.repeat if prep is not None and prep.repeat else in_channels
        width = backbone_out_features(bb, net_channels, image_size)
        head = (mlp_head if projection_head == "mlp" else linear_head)(width, pretrain_out_dim)
    return SimCNEModel(bb, head, prep)


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


def replace_last_linear(model: nn.Module, out_dim: int, generator=None,
                        std: float = 1.0) -> nn.Linear:
    """Swap the head's last Linear for a fresh Linear(in -> out_dim), weights N(0, std^2), bias 0."""
    root = model.projection_head if isinstance(model, SimCNEModel) else model
    parent, name, old = last_linear(root)
    new = OutputLinear(old.in_features, out_dim, bias=old.bias is not None)
    with torch.no_grad():
        w = torch.randn(new.weight.shape, generator=generator)
        if std != 1.0:
            w.mul_(std)
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
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "InputPrep",
    "OutputLinear",
    "SimCNEModel",
    "WrappedModel",
    "as_features",
    "backbone_out_features",
    "check_model",
    "drop_classifier",
    "eval_mode",
    "full_precision",
    "last_linear",
    "linear_head",
    "load_backbone_weights",
    "make_backbone",
    "make_model",
    "make_input",
    "mlp_head",
    "replace_last_linear",
    "resolve_normalize",
    "set_trainable",
]
