"""Backbones: MLP, small CNN, ResNet-18 (reduced nf=20 or full nf=64), CIFAR ResNet-56, and
the CACL paper's 5-conv network.

Every backbone maps an input batch to a flat feature vector; heads live in
:class:`~cl_compress.models.multihead.ContinualModel`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cl_compress.errors import ConfigError


def mlp(input_shape: tuple[int, ...], hidden: list[int] | tuple[int, ...] = (256, 256)) -> nn.Module:
    """Fully connected ReLU network (the default: 784-256-256 on 28x28 images)."""
    layers: list[nn.Module] = [nn.Flatten()]
    d = math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    return nn.Sequential(*layers)


def small_cnn(input_shape: tuple[int, ...], channels: tuple[int, ...] = (32, 64),
              batch_norm: bool = False) -> nn.Module:
    """Conv(3x3)-[BN]-ReLU-MaxPool blocks, then global average pooling."""
    layers: list[nn.Module] = []
    c = input_shape[0]
    for out in channels:
        layers += [nn.Conv2d(c, out, 3, padding=1, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers += [nn.ReLU(), nn.MaxPool2d(2) if input_shape[-1] >= 8 else nn.Identity()]
        c = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def cacl_net(input_shape: tuple[int, ...], dropout: float = 0.15) -> nn.Module:
    """The CACL paper's network (Teja & Panda 2020): five unpadded convs, no BatchNorm.

    conv 64, 64, pool, drop, conv 128, 128, pool, drop, conv 256 (k=2), ReLU, avgpool 2.
    Built for 32x32 inputs (256*2*2 features); 28x28 inputs give 256 features.
    """
    c = input_shape[0]
    if min(input_shape[1:]) < 22:
        raise ConfigError(f"model=cacl_net needs inputs of at least 22x22 pixels, got {input_shape}")
    return nn.Sequential(
        nn.Conv2d(c, 64, 3, bias=False), nn.ReLU(),
        nn.Conv2d(64, 64, 3, bias=False), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(dropout),
        nn.Conv2d(64, 128, 3, bias=False), nn.ReLU(),
        nn.Conv2d(128, 128, 3, bias=False), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(dropout),
        nn.Conv2d(128, 256, 2, bias=False), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
    )


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def reduced_resnet18(input_shape: tuple[int, ...], nf: int = 20) -> nn.Module:
    """ResNet-18 for small images (3x3 stem, no max-pool; widths nf, 2nf, 4nf, 8nf; 1x1-conv
    shortcuts with BatchNorm): nf=20 is the reduced ResNet-18 of GEM/GPM/WSN/Ada-QPacknet
    (1.1M parameters), nf=64 the full CIFAR ResNet-18 (11.2M)."""
    layers: list[nn.Module] = [
        nn.Conv2d(input_shape[0], nf, 3, 1, 1, bias=False), nn.BatchNorm2d(nf), nn.ReLU(),
    ]
    cin = nf
    for i, mult in enumerate((1, 2, 4, 8)):
        stride = 1 if i == 0 else 2
        layers += [_BasicBlock(cin, nf * mult, stride), _BasicBlock(nf * mult, nf * mult, 1)]
        cin = nf * mult
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


class _ShortcutA(nn.Module):
    """Parameter-free CIFAR-ResNet shortcut ("option A", He et al. 2016): subsample by the
    stride and pad the new channels with zeros."""

    def __init__(self, stride: int, extra: int):
        super().__init__()
        self.stride, self.extra = stride, extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


class _CifarBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = _ShortcutA(stride, cout - cin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet56(input_shape: tuple[int, ...], nf: int = 16, depth: int = 56) -> nn.Module:
    """CIFAR ResNet (He et al. 2016, the ResNet-56 of LRPET's CIFAR-10 setting): a 3x3 stem of
    ``nf`` channels, three stages of ``(depth - 2) / 6`` basic blocks at widths nf, 2nf, 4nf
    (stride 2 at the second and third), parameter-free zero-padding shortcuts (option A),
    global average pooling. ``depth=56, nf=16``: 0.85M parameters; ``depth=20``: ResNet-20."""
    if (depth - 2) % 6:
        raise ConfigError(f"model.depth={depth} must be 6n+2 (20, 32, 44, 56, 110)")
    n = (depth - 2) // 6
    layers: list[nn.Module] = [
        nn.Conv2d(input_shape[0], nf, 3, 1, 1, bias=False), nn.BatchNorm2d(nf), nn.ReLU(),
    ]
    cin = nf
    for i, mult in enumerate((1, 2, 4)):
        for b in range(n):
            layers.append(_CifarBlock(cin, nf * mult, 2 if (i > 0 and b == 0) else 1))
            cin = nf * mult
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


BACKBONES = {
    "mlp": (mlp, "MLP, hidden sizes `model.hidden` (default 256-256)"),
    "cnn": (small_cnn, "small CNN (conv 32-64, optional BatchNorm)"),
    "resnet18": (reduced_resnet18, "ResNet-18 with BatchNorm: reduced nf=20 (GEM/Ada-QPacknet), "
                                   "full nf=64 (model=resnet18_full)"),
    "resnet56": (resnet56, "CIFAR ResNet-56 (LRPET): 3 stages of 9 blocks, nf=16, option-A shortcuts"),
    "cacl_net": (cacl_net, "CACL paper network: 5 convs, no BatchNorm, 32x32 inputs"),
}


def build_backbone(name: str, input_shape: tuple[int, ...], **kwargs) -> tuple[nn.Module, int]:
    """Build a backbone and return it with its feature dimension."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(sorted(BACKBONES))}")
    body = BACKBONES[name][0](tuple(input_shape), **kwargs)
    was_training = body.training
    body.eval()
    with torch.no_grad():
        feat = body(torch.zeros(2, *input_shape)).shape[1]
    body.train(was_training)
    return body, int(feat)
