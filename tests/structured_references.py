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


def resnet18_trunk() -> nn.Module:
    """transformers' ResNetModel of ResNet-18 (basic blocks [2, 2, 2, 2], widths 64-512, no classifier)."""
    import transformers as tf

    return tf.ResNetModel(tf.ResNetConfig(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512],
                                          embedding_size=64))


def ssddr() -> nn.Module:
    """specs/ssddr.yaml: the ResNet-18 trunk, the location's coefficients (2 linear, 2 x 12 spline, 512 deep, with
    the intercept as the bias) and the scale's (2 linear + intercept)."""
    return nn.ModuleList([resnet18_trunk(), nn.Linear(2 + 12 + 12 + 512, 1), nn.Linear(2, 1)])


def deeppamm() -> nn.Module:
    """specs/deeppamm.yaml: the ResNet-18 trunk and the log-hazard's coefficients (12 baseline spline, 2 linear,
    12 smooth, 20 cluster effects, 512 deep; the intercept as the bias)."""
    return nn.ModuleList([resnet18_trunk(), nn.Linear(12 + 2 + 12 + 20 + 512, 1)])


def you_lstm() -> nn.Module:
    """specs/you_cropyield.yaml from the official nnet_lstm.py sizes: LSTM(32 bins x 9 bands -> 128), dense 256,
    the linear output (the GP mean; the kernel's hyperparameters are constants)."""
    return nn.ModuleList([nn.LSTM(32 * 9, 128, batch_first=True), nn.Linear(128, 256), nn.Linear(256, 1)])


def vggf_fcn(classes: int) -> list[nn.Module]:
    """VGG-F (Chatfield et al. 2014, Table 1) with full6/full7 as convolutions (Jean et al.'s fully convolutional
    form) and a `classes`-way output."""
    return [nn.Conv2d(3, 64, 11, 4), nn.Conv2d(64, 256, 5, padding=2), nn.Conv2d(256, 256, 3, padding=1),
            nn.Conv2d(256, 256, 3, padding=1), nn.Conv2d(256, 256, 3, padding=1), nn.Conv2d(256, 4096, 6),
            nn.Conv2d(4096, 4096, 1), nn.Linear(4096, classes)]


def jean() -> nn.Module:
    """specs/jean_poverty.yaml: VGG-F FCN with three night-light classes, the ridge term on the 4,096-d feature (its
    intercept as the bias) and the Normal's scale intercept."""
    import torch

    scale = nn.ParameterDict({"scale": nn.Parameter(torch.zeros(1))})
    return nn.ModuleList([*vggf_fcn(3), nn.Linear(4096, 1), scale])


def alexnet_dense(classes: int) -> nn.Module:
    """AlexNet's layer table (Krizhevsky et al. 2012) with dense (ungrouped) convolutions on 227x227 inputs."""
    return nn.ModuleList([nn.Conv2d(3, 96, 11, 4), nn.Conv2d(96, 256, 5, padding=2), nn.Conv2d(256, 384, 3, padding=1),
                          nn.Conv2d(384, 384, 3, padding=1), nn.Conv2d(384, 256, 3, padding=1),
                          nn.Linear(256 * 6 * 6, 4096), nn.Linear(4096, 4096), nn.Linear(4096, classes)])


def vgg16_trunk() -> nn.Module:
    """The 13 convolutions of VGG16 (Simonyan & Zisserman 2015, Table 1, configuration D)."""
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    return nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip([3, *widths], widths, strict=False))


def law() -> nn.Module:
    """specs/law_house.yaml: two VGG16 trunks, the location's coefficients (8 attributes, 512 street, 512 aerial;
    the intercept as the bias) and the scale's intercept."""
    import torch

    scale = nn.ParameterDict({"scale": nn.Parameter(torch.zeros(1))})
    return nn.ModuleList([vgg16_trunk(), vgg16_trunk(), nn.Linear(8 + 512 + 512, 1), scale])
