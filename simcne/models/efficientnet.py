"""EfficientNetV2 (Tan & Le, ICML 2021) feature extractors on plain torch.

Stages, widths, depths, expansion ratios, fused-MBConv vs MBConv, squeeze-excitation
(squeeze width = block input width / 4, sigmoid gate, SiLU), BatchNorm eps 1e-3 and the
linearly growing stochastic depth (0 to 0.2) are those of torchvision's
``efficientnet_v2_s/m/l``; module names match too, so their state dicts load (without the
classifier). The one change, akin to SimCLR, is a stride-1 first convolution (kernel 3
unchanged). The extractor ends with the 1x1 conv to 1280 channels and global average
pooling: 20,177,488 (S), 52,858,356 (M) and 117,234,272 (L) parameters, as torchvision's.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import ConvBNAct, SqueezeExcitation, StochasticDepth, init_conv_bn

_BN = dict(bn_eps=1e-3)

# One row per stage: fused?, expand ratio, kernel, stride, in width, out width, blocks.
V2_S = [
    (True, 1, 3, 1, 24, 24, 2),
    (True, 4, 3, 2, 24, 48, 4),
    (True, 4, 3, 2, 48, 64, 4),
    (False, 4, 3, 2, 64, 128, 6),
    (False, 6, 3, 1, 128, 160, 9),
    (False, 6, 3, 2, 160, 256, 15),
]
V2_M = [
    (True, 1, 3, 1, 24, 24, 3),
    (True, 4, 3, 2, 24, 48, 5),
    (True, 4, 3, 2, 48, 80, 5),
    (False, 4, 3, 2, 80, 160, 7),
    (False, 6, 3, 1, 160, 176, 14),
    (False, 6, 3, 2, 176, 304, 18),
    (False, 6, 3, 1, 304, 512, 5),
]
V2_L = [
    (True, 1, 3, 1, 32, 32, 4),
    (True, 4, 3, 2, 32, 64, 7),
    (True, 4, 3, 2, 64, 96, 7),
    (False, 4, 3, 2, 96, 192, 10),
    (False, 6, 3, 1, 192, 224, 19),
    (False, 6, 3, 2, 224, 384, 25),
    (False, 6, 3, 1, 384, 640, 7),
]


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand] -> depthwise kxk -> SE -> 1x1 project (SiLU throughout).

    ``fused=True`` gives Fused-MBConv: one full kxk conv does the expansion (and the
    stride), then a 1x1 projection; with expand ratio 1 it is a single kxk conv. No SE.
    """

    def __init__(self, fused: bool, expand: int, kernel: int, stride: int, cin: int, cout: int, sd_prob: float):
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if fused:
            if mid != cin:
                layers.append(ConvBNAct(cin, mid, kernel, stride, act=nn.SiLU, **_BN))
                layers.append(ConvBNAct(mid, cout, 1, act=None, **_BN))
            else:
                layers.append(ConvBNAct(cin, cout, kernel, stride, act=nn.SiLU, **_BN))
        else:
            if mid != cin:
                layers.append(ConvBNAct(cin, mid, 1, act=nn.SiLU, **_BN))
            layers.append(ConvBNAct(mid, mid, kernel, stride, groups=mid, act=nn.SiLU, **_BN))
            layers.append(SqueezeExcitation(mid, max(1, cin // 4), nn.SiLU, nn.Sigmoid))
            layers.append(ConvBNAct(mid, cout, 1, act=None, **_BN))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return self.stochastic_depth(out) + x if self.use_res_connect else out


class EfficientNetV2(nn.Module):
    """An EfficientNetV2 feature extractor: images (B, C, H, W) -> features (B, 1280).

    Parameters
    ----------
    setting : list of tuple
        One ``(fused, expand, kernel, stride, in, out, blocks)`` row per stage.
    in_channels : int, default=3
        Image channels (1 for grayscale).
    stochastic_depth_prob : float, default=0.2
        Drop probability of the last block; block ``i`` of ``n`` drops with ``p * i / n``.
    stem_stride : int, default=1
        Stride of the first 3x3 conv (torchvision: 2; 1 here, akin to SimCLR).
    """

    def __init__(self, setting, in_channels: int = 3, stochastic_depth_prob: float = 0.2, stem_stride: int = 1):
        super().__init__()
        layers: list[nn.Module] = [ConvBNAct(in_channels, setting[0][4], 3, stem_stride, act=nn.SiLU, **_BN)]
        total, i = sum(row[-1] for row in setting), 0
        for fused, expand, kernel, stride, cin, cout, blocks in setting:
            stage = []
            for j in range(blocks):
                sd = stochastic_depth_prob * i / total
                stage.append(MBConv(fused, expand, kernel, stride if j == 0 else 1, cin if j == 0 else cout, cout, sd))
                i += 1
            layers.append(nn.Sequential(*stage))
        layers.append(ConvBNAct(setting[-1][5], 1280, 1, act=nn.SiLU, **_BN))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_features = 1280
        init_conv_bn(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.features(x)), 1)


def efficientnet_v2_s(in_channels: int = 3) -> EfficientNetV2:
    """EfficientNetV2-S with a stride-1 stem; 1280 features, 20,177,488 parameters (3 channels)."""
    return EfficientNetV2(V2_S, in_channels=in_channels)


def efficientnet_v2_m(in_channels: int = 3) -> EfficientNetV2:
    """EfficientNetV2-M with a stride-1 stem; 1280 features, 52,858,356 parameters (3 channels)."""
    return EfficientNetV2(V2_M, in_channels=in_channels)


def efficientnet_v2_l(in_channels: int = 3) -> EfficientNetV2:
    """EfficientNetV2-L with a stride-1 stem; 1280 features, 117,234,272 parameters (3 channels)."""
    return EfficientNetV2(V2_L, in_channels=in_channels)
