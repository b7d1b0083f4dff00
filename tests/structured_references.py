"""Reference networks of the structured + unstructured specs (SU-10 ... SU-16), written from the papers' layer
tables with plain torch.nn and no mmspec code: none of these papers has an installable implementation, so the
specs' parameter counts are compared with these (tests/references.py registers them)."""

from __future__ import annotations

from torch import nn


def unet(channels: int, widths: list[int], classes: int) -> nn.Module:
    """U-Net of Ronneberger et al. 2015 (Fig. 1) with padded 3x3 convs and BatchNorm (bias-free convs)."""

    def double(a: int, b: int) -> list[nn.Module]:
        return [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b),
                nn.Conv2d(b, b, 3, padding=1, bias=False), nn.BatchNorm2d(b)]

    layers: list[nn.Module] = []
    for a, b in zip([channels, *widths], widths, strict=False):
        layers += double(a, b)
    for big, small in zip(widths[::-1], widths[-2::-1], strict=False):
        layers += [nn.ConvTranspose2d(big, small, 2, stride=2), *double(2 * small, small)]
    return nn.ModuleList([*layers, nn.Conv2d(widths[0], classes, 1)])
