"""Building blocks shared by the MobileNetV3 and EfficientNetV2 backbones.

Module and attribute names follow torchvision's (``Conv2dNormActivation`` as a
Sequential of conv/norm/activation, squeeze-excitation with ``fc1``/``fc2``), so that a
torchvision state dict of the same architecture loads into these modules.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor``, never going below 90% of ``v``.

    The channel rounding of the MobileNet papers (and torchvision's ``_make_divisible``).
    """
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias, 'same' padding) -> BatchNorm2d -> optional activation.

    Parameters
    ----------
    cin, cout : int
        Input and output channels.
    kernel_size, stride, groups : int, default=3, 1, 1
        Passed to ``nn.Conv2d``.
    act : callable or None, default=nn.ReLU
        Activation class; None for a linear (projection) layer.
    bn_eps, bn_momentum : float, default=1e-5, 0.1
        Passed to ``nn.BatchNorm2d``.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: Callable[..., nn.Module] | None = nn.ReLU,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ):
        layers = [
            nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=bn_eps, momentum=bn_momentum),
        ]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """Channel attention of Hu et al. (2018): x * gate(fc2(act(fc1(mean_hw(x)))))."""

    def __init__(
        self,
        channels: int,
        squeeze: int,
        act: Callable[..., nn.Module] = nn.ReLU,
        gate: Callable[..., nn.Module] = nn.Sigmoid,
    ):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = act(inplace=True)
        self.scale_activation = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(s)


class StochasticDepth(nn.Module):
    """Drop a whole residual branch per sample with probability ``p`` in training (Huang et al. 2016).

    Survivors are scaled by ``1 / (1 - p)``; identity in eval mode or when ``p == 0``.
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"The stochastic depth probability must be in [0, 1]. Got {p} instead.")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep) if keep > 0 else x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


def init_conv_bn(module: nn.Module) -> None:
    """torchvision's initialisation: conv Kaiming-normal (fan_out), bias 0; BN weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
