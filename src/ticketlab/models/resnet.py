"""CIFAR ResNet-20 (He et al. 2016, §4.2) in open_lth's ``cifar_resnet`` form.

The "ResNet-18" of Frankle & Carbin 2019 (Fig. 2, §4) is this 20-layer network. Layout, with
``width`` W (default 16)::

    conv  3x3, W, BN, ReLU                                            (input channels from input_shape)
    blocks.0-2   3 basic blocks, W channels
    blocks.3-5   3 basic blocks, 2W channels, the first with stride 2
    blocks.6-8   3 basic blocks, 4W channels, the first with stride 2
    global average pool -> fc (output layer)

A basic block is conv3x3-BN-ReLU-conv3x3-BN plus the shortcut, then ReLU. When the shape changes the
shortcut is a 1x1 stride-2 conv + BN (open_lth; He et al.'s option B), otherwise the identity. Convs
have no bias. On (3, 32, 32) with 10 classes: 270,896 prunable weights (19 3x3 convs, two 1x1
shortcut convs, the 64x10 fc). Default init (open_lth): Kaiming normal (fan_in) weights, fc bias zero,
BatchNorm gamma ~ U[0, 1] and beta = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.core.errors import ConfigError
from ticketlab.models import _checks
from ticketlab.models._registry import register_model
from ticketlab.models.init import init_weights


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with a residual connection (1x1 conv + BN when the shape changes)."""

    def __init__(self, f_in: int, f_out: int, downsample: bool) -> None:
        super().__init__()
        stride = 2 if downsample else 1
        self.conv1 = nn.Conv2d(f_in, f_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(f_out)
        self.conv2 = nn.Conv2d(f_out, f_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(f_out)
        if downsample or f_in != f_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(f_in, f_out, 1, stride=stride, bias=False), nn.BatchNorm2d(f_out)
            )
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth 6n+2 with stage widths W, 2W, 4W (open_lth ``cifar_resnet_<depth>_<W>``)."""

    default_init = "kaiming_normal"
    norm_init = "uniform"

    def __init__(
        self, input_shape: tuple[int, ...], num_classes: int, depth: int = 20, width: int = 16
    ) -> None:
        super().__init__()
        c, h, w = _checks.image_shape(input_shape, f"resnet{depth}")
        num_classes = _checks.positive_int(num_classes, "num_classes")
        width = _checks.positive_int(width, "width")
        depth = _checks.positive_int(depth, "depth")
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        per_stage = (depth - 2) // 6

        self.conv = nn.Conv2d(c, width, 3, stride=1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        blocks, current = [], width
        for stage, filters in enumerate((width, 2 * width, 4 * width)):
            for index in range(per_stage):
                blocks.append(BasicBlock(current, filters, downsample=stage > 0 and index == 0))
                current = filters
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(current, num_classes)
        self.input_shape = (c, h, w)
        self.num_classes = num_classes
        self.output_layer = "fc.weight"
        init_weights(self, self.default_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.conv(x)))
        out = self.blocks(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


@register_model
def resnet20(*, input_shape: tuple[int, ...], num_classes: int, width: int = 16) -> CifarResNet:
    """ResNet-20 for CIFAR (He et al. 2016): 3 stages of 3 basic blocks, widths W/2W/4W (W = `width`).

    270,896 prunable weights on (3, 32, 32) with 10 classes. Default init Kaiming normal, BN
    gamma ~ U[0, 1]. Output layer ``fc.weight``.
    """
    return CifarResNet(input_shape, num_classes, depth=20, width=width)
