"""ResNets on plain torch, with the SimCLR CIFAR stem (3x3 conv, stride 1, no max-pool).

The blocks follow He et al. (2016) and torchvision's layout (zero-free init: BN weight 1,
bias 0; conv weights Kaiming-normal, fan_out), so apart from the stem the parameter counts
equal torchvision's feature extractors of the same name.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = _conv3x3(cin, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)  # stride on the 3x3, as torchvision (v1.5)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A ResNet feature extractor: images (B, C, H, W) -> features (B, out_features)."""

    def __init__(self, block, layers, widths=(64, 128, 256, 512), in_channels: int = 3):
        super().__init__()
        stem = widths[0]
        self.conv1 = _conv3x3(in_channels, stem)  # SimCLR stem: 3x3, stride 1
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        cin = stem
        stages = []
        for i, (width, n) in enumerate(zip(widths, layers)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(cin, width, stride))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = (stages + [nn.Identity()] * 4)[:4]
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_features = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def resnet18(in_channels: int = 3) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], in_channels=in_channels)


def resnet34(in_channels: int = 3) -> ResNet:
    return ResNet(BasicBlock, [3, 4, 6, 3], in_channels=in_channels)


def resnet50(in_channels: int = 3) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], in_channels=in_channels)


def resnet101(in_channels: int = 3) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 23, 3], in_channels=in_channels)


def resnet_small(in_channels: int = 3) -> ResNet:
    """A CPU-sized ResNet: three stages of one basic block each, widths 32/64/128.

    307,360 parameters (3 channels) and 128 features; about 11x fewer multiply-adds than
    ResNet18 at 32x32 (49 M vs 556 M), 3.5-5x its training throughput on a 2-core CPU
    (see docs/backbones.md). Use it for CPU runs, quick looks and tests, and for small,
    simple images (digits, MNIST-like); use ``"resnet18"`` (the paper's) for final maps
    of natural images such as CIFAR.

    Parameters
    ----------
    in_channels : int, default=3
        Image channels (1 for grayscale).
    """
    return ResNet(BasicBlock, [1, 1, 1], widths=(32, 64, 128), in_channels=in_channels)


def resnet_tiny(in_channels: int = 3) -> ResNet:
    """The narrowest ResNet here: three stages of one basic block each, widths 16/32/64.

    77,392 parameters (3 channels) and 64 features: ``resnet_small`` at half the width, about
    4x fewer multiply-adds. Made for tiny images (8x8 to 32x32: digits, MNIST-like data,
    icons) on a CPU, where its cheaper steps buy more epochs in the same time: on scikit-learn's
    digits it reached a better map than ``resnet_small`` in the same minutes
    (docs/small_datasets.md). For natural images use ``"resnet18"``.

    Parameters
    ----------
    in_channels : int, default=3
        Image channels (1 for grayscale).
    """
    return ResNet(BasicBlock, [1, 1, 1], widths=(16, 32, 64), in_channels=in_channels)
