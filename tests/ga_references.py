"""Reference networks of the generative-art pipelines (issue 12, GA-01 and GA-02), rebuilt in torch.nn from
torchvision's definitions (torchvision is not installable under the pins): VGG-19 (Simonyan & Zisserman 2015,
configuration E; torchvision.models.vgg19) and GoogLeNet / Inception v1 (Szegedy et al. 2015;
torchvision.models.googlenet with aux_logits=False). Module names follow torchvision's, so its state dicts load.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

VGG19 = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
"""torchvision's cfgs["E"]: conv widths, "M" a 2x2/2 max-pool."""


class VGG(nn.Module):
    """torchvision.models.VGG: `features` (3x3 convs with bias, ReLU, pools), 7x7 adaptive average pool, classifier
    Linear(25088, 4096), ReLU, Dropout, Linear(4096, 4096), ReLU, Dropout, Linear(4096, classes)."""

    def __init__(self, cfg: tuple = VGG19, classes: int = 1000, pool: type[nn.Module] = nn.MaxPool2d):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for v in cfg:
            if v == "M":
                layers.append(pool(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg19_features() -> nn.Sequential:
    """The 16 convolutions and 5 pools of VGG-19 that Gatys et al. use (no fully connected layers)."""
    return VGG().features


class BasicConv2d(nn.Module):
    """Conv2d without bias, BatchNorm2d(eps 0.001), ReLU."""

    def __init__(self, cin: int, cout: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """Four branches concatenated: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 (torchvision's kept "5x5" bug, issue 906);
    3x3/1 max-pool -> 1x1."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int):
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, kernel_size=1)
        self.branch2 = nn.Sequential(BasicConv2d(cin, c3r, kernel_size=1),
                                     BasicConv2d(c3r, c3, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(BasicConv2d(cin, c5r, kernel_size=1),
                                     BasicConv2d(c5r, c5, kernel_size=3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     BasicConv2d(cin, pool, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


GOOGLENET = {  # torchvision's inception blocks: in, 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool projection
    "3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128), "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNet(nn.Module):
    """torchvision.models.GoogLeNet(aux_logits=False, transform_input=False) in eval mode: `taps` maps a block name
    ("4c") to its output, `forward` returns the logits and those taps."""

    def __init__(self, classes: int = 1000):
        super().__init__()
        self.conv1 = BasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for name, cfg in GOOGLENET.items():
            setattr(self, f"inception{name}", Inception(*cfg))
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.fc = nn.Linear(1024, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        taps = {}
        for name in GOOGLENET:
            if name in ("4a", "5a"):
                x = (self.maxpool3 if name == "4a" else self.maxpool4)(x)
            x = getattr(self, f"inception{name}")(x)
            taps[name] = x
        return self.fc(x.mean((2, 3))), taps
