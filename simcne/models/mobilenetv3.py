"""MobileNetV3 (Howard et al., ICCV 2019) feature extractors on plain torch.

The layers, widths, expansion sizes, squeeze-excitation (squeeze width = expanded / 4
rounded by ``make_divisible`` to 8, hard-sigmoid gate) and activations (ReLU early,
hardswish later) are those of torchvision's ``mobilenet_v3_small`` / ``mobilenet_v3_large``;
module names match too, so their state dicts load (without the classifier). The one change,
akin to SimCLR, is a stride-1 first convolution (kernel 3 unchanged) for small images.
The extractor ends with the 1x1 conv to 576 (small) / 960 (large) channels and global
average pooling, so the parameter counts equal torchvision's ``features``: 927,008 (small)
and 2,971,952 (large).
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import ConvBNAct, SqueezeExcitation, init_conv_bn, make_divisible

_BN = dict(bn_eps=0.001, bn_momentum=0.01)
_ACT = {"RE": nn.ReLU, "HS": nn.Hardswish}

# One row per inverted-residual block: kernel, expanded width, out width, SE, activation, stride.
SMALL = [
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2),
    (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2),
    (5, 240, 40, True, "HS", 1),
    (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1),
    (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1),
    (5, 576, 96, True, "HS", 1),
]
LARGE = [
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
]


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when expanded == cin) -> depthwise kxk -> optional SE -> 1x1 project.

    The residual connection is used when the stride is 1 and the width is unchanged.
    """

    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, se: bool, act: str, stride: int):
        super().__init__()
        act_layer = _ACT[act]
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(ConvBNAct(cin, expanded, 1, act=act_layer, **_BN))
        layers.append(ConvBNAct(expanded, expanded, kernel, stride, groups=expanded, act=act_layer, **_BN))
        if se:
            squeeze = make_divisible(expanded // 4, 8)
            layers.append(SqueezeExcitation(expanded, squeeze, nn.ReLU, nn.Hardsigmoid))
        layers.append(ConvBNAct(expanded, cout, 1, act=None, **_BN))
        self.block = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out


class MobileNetV3(nn.Module):
    """A MobileNetV3 feature extractor: images (B, C, H, W) -> features (B, out_features).

    Parameters
    ----------
    setting : list of tuple
        One ``(kernel, expanded, out, se, activation, stride)`` row per block.
    in_channels : int, default=3
        Image channels (1 for grayscale).
    stem_stride : int, default=1
        Stride of the first 3x3 conv (torchvision: 2; 1 here, akin to SimCLR).
    """

    def __init__(self, setting, in_channels: int = 3, stem_stride: int = 1):
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(in_channels, 16, 3, stem_stride, act=nn.Hardswish, **_BN)]
        cin = 16
        for kernel, expanded, cout, se, act, stride in setting:
            layers.append(InvertedResidual(cin, kernel, expanded, cout, se, act, stride))
            cin = cout
        layers.append(ConvBNAct(cin, 6 * cin, 1, act=nn.Hardswish, **_BN))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_features = 6 * cin
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.features(x)), 1)


def mobilenetv3_small(in_channels: int = 3) -> MobileNetV3:
    """MobileNetV3-Small with a stride-1 stem; 576 features, 927,008 parameters (3 channels)."""
    return MobileNetV3(SMALL, in_channels=in_channels)


def mobilenetv3_large(in_channels: int = 3) -> MobileNetV3:
    """MobileNetV3-Large with a stride-1 stem; 960 features, 2,971,952 parameters (3 channels)."""
    return MobileNetV3(LARGE, in_channels=in_channels)
