"""A module run once on dummy images: eval mode with each submodule's mode restored, and
failures that say what could not take what. Used by the checks of ``simcne.models`` and by
``pretrained.drop_classifier``'s search for the output layer."""

from __future__ import annotations

import contextlib

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(module: nn.Module):
    """Eval mode inside the block; afterwards every submodule gets its own mode back."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def dummy_images(module: nn.Module, in_channels: int, image_size) -> torch.Tensor:
    """Zeros (2, C, H, W) on the device (and floating dtype) of the module's first tensor."""
    h, w = image_size
    t = next(module.parameters(), None)
    t = next(module.buffers(), None) if t is None else t
    device = t.device if t is not None else torch.device("cpu")
    dtype = t.dtype if t is not None and t.is_floating_point() else torch.float32
    return torch.zeros(2, in_channels, h, w, device=device, dtype=dtype)


def run_explained(module: nn.Module, x: torch.Tensor, what: str):
    """``module(x)``; any failure becomes a ValueError that starts with ``what``."""
    try:
        return module(x)
    except Exception as e:  # the reason is kept in the message and as __cause__
        raise ValueError(f"{what}: {type(e).__name__}: {e}") from e
