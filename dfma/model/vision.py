"""Bottleneck ResNet whose four stage outputs form the visual pyramid (torchvision parameter names).

One network encodes the main image and the crops in one batch: (B*(1+A), 3, S, S) -> 4 feature maps.
With `resnet_depths=(3,4,6,3)` and widths (64,128,256,512) this is ResNet-50 (v1.5, stride on the 3x3).
"""
from __future__ import annotations

from torch import Tensor, nn

from dfma.config import DFMAConfig


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride) -> 1x1 expand, with a projection shortcut when shapes change."""

    def __init__(self, inplanes: int, planes: int, expansion: int, stride: int):
        super().__init__()
        out = planes * expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: Tensor) -> Tensor:
        """Residual bottleneck block."""
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


class ResNetPyramid(nn.Module):
    """ResNet stem + 4 stages; returns the output of every stage."""

    def __init__(self, cfg: DFMAConfig):
        super().__init__()
        self.conv1 = nn.Conv2d(3, cfg.resnet_stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(cfg.resnet_stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = cfg.resnet_stem
        for i, (depth, planes) in enumerate(zip(cfg.resnet_depths, cfg.resnet_widths)):
            blocks = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(Bottleneck(inplanes, planes, cfg.resnet_expansion, stride))
                inplanes = planes * cfg.resnet_expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_channels = tuple(w * cfg.resnet_expansion for w in cfg.resnet_widths)

    def zero_levels(self, images: Tensor) -> list[Tensor]:
        """Zero feature maps of the shapes `forward(images)` would return, without computing them."""
        n, _, h, w = images.shape
        return [images.new_zeros(n, c, -(-h // f), -(-w // f)) for c, f in zip(self.out_channels, (4, 8, 16, 32))]

    def forward(self, images: Tensor) -> list[Tensor]:
        """(N, 3, S, S) -> [(N, C1, S/4, S/4), (N, C2, S/8, ..), (N, C3, S/16, ..), (N, C4, S/32, ..)]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        levels = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            levels.append(x)
        return levels
