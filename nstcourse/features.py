"""A frozen VGG feature extractor with the papers' layer names.

``VGGFeatures(["conv4_2", "relu1_1", ...])`` returns a dict of those activations for a
batch of RGB images in [0, 1]. The network is cut after the deepest requested layer
(no wasted compute), the input normalisation that the weights expect is done inside
(see ``nstcourse.vgg_weights``), and every parameter is frozen.

Layer names follow Simonyan & Zisserman / Gatys et al.: ``conv{block}_{i}``,
``relu{block}_{i}``, ``pool{block}``, e.g. VGG-19 = conv1_1 relu1_1 conv1_2 relu1_2
pool1 conv2_1 … relu5_4 pool5.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from nstcourse.runmode import pick_device
from nstcourse.vgg_weights import (
    VGGWeights,
    WeightsError,
    conv_channels,
    layer_names,
    load_vgg_weights,
    min_input_side,
)

MISSING_ENV = "NSTCOURSE_VGG_MISSING"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


class RandomLayersWarning(UserWarning):
    """Some VGG layers are random: features from them mean nothing."""


class Normalize(nn.Module):
    """Map RGB in [0, 1] to the input a VGG's weights were trained on.

    torchvision: (x - mean) / std.   caffe: 255 * x[:, [B, G, R]] - mean_bgr.
    """

    def __init__(self, convention: str):
        super().__init__()
        if convention == "torchvision":
            scale, mean, std, bgr = 1.0, IMAGENET_MEAN, IMAGENET_STD, False
        elif convention == "caffe":
            scale, mean, std, bgr = 255.0, CAFFE_MEAN_BGR, (1.0, 1.0, 1.0), True
        else:
            raise ValueError(f"convention={convention!r}; use 'torchvision' or 'caffe'")
        self.convention, self.scale, self.bgr = convention, scale, bgr
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.flip(1)
        return (self.scale * x - self.mean) / self.std


class VGGFeatures(nn.Module):
    """Named VGG activations for a batch of images.

    Args:
        layers: names to return, e.g. ``["relu1_1", "relu2_1", "conv4_2"]``.
        arch: "vgg16" or "vgg19".
        weights: a weights file, or None to search (see ``nstcourse.vgg_weights``), or a
            ``VGGWeights`` already loaded.
        convention: input convention for weights files not in the catalog.
        pooling: "max" (as trained) or "avg" (Gatys et al. 2016 found it gives slightly
            smoother results for synthesis).
        missing: what to do when the file lacks a needed layer: "error" (default) or
            "random" (random init with a loud warning; for smoke runs only). None reads
            ``$NSTCOURSE_VGG_MISSING`` and defaults to "error".
        device: None picks CUDA, then MPS, then CPU.

    Input: (N, 3, H, W) RGB in [0, 1]. Output: {name: (N, C, H / 2**k, W / 2**k)}.
    """

    def __init__(
        self,
        layers: Sequence[str],
        *,
        arch: str = "vgg19",
        weights: str | os.PathLike | VGGWeights | None = None,
        convention: str | None = None,
        pooling: str = "max",
        missing: str | None = None,
        device: str | torch.device | None = None,
    ):
        super().__init__()
        if isinstance(layers, str):
            raise TypeError("layers must be a list of names, e.g. ['relu1_1'], not a string")
        all_names = layer_names(arch)
        unknown = [name for name in layers if name not in all_names]
        if unknown or not layers:
            raise ValueError(
                f"unknown {arch} layer(s) {unknown or layers}; known: {', '.join(all_names)}"
            )
        if pooling not in ("max", "avg"):
            raise ValueError(f"pooling={pooling!r}; use 'max' or 'avg'")
        missing = missing or os.environ.get(MISSING_ENV, "").strip() or "error"
        if missing not in ("error", "random"):
            raise ValueError(f"missing={missing!r} (or ${MISSING_ENV}); use 'error' or 'random'")
        if not isinstance(weights, VGGWeights):
            weights = load_vgg_weights(arch, weights, convention=convention, layers=layers)
        self.arch, self.layers, self.weights_info = arch, list(layers), weights
        self.names = all_names[: max(all_names.index(name) for name in layers) + 1]
        self.min_size = min_input_side(arch, layers)
        self.normalize = Normalize(weights.convention)
        self.body = _build_body(self.names, arch, pooling)
        self.random_layers = _load_convs(self.body, self.names, weights, missing)
        self.requires_grad_(False)
        self.eval()
        self.to(pick_device(device))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"a {x.shape[-2]}x{x.shape[-1]} image is too small for {self.names[-1]}: "
                f"each pooling halves it, so both sides need at least {self.min_size} px"
            )
        wanted, out = set(self.layers), {}
        x = self.normalize(x)
        for name, module in zip(self.names, self.body, strict=True):
            x = module(x)
            if name in wanted:
                out[name] = x
        return out

    def extra_repr(self) -> str:
        return (
            f"arch={self.arch}, layers={self.layers}, "
            f"convention={self.weights_info.convention}, weights={self.weights_info.path}"
        )


def _build_body(names: list[str], arch: str, pooling: str) -> nn.Sequential:
    modules: list[nn.Module] = []
    c_in, channels = 3, iter(conv_channels(arch))
    for name in names:
        if name.startswith("conv"):
            c_out = next(channels)
            modules.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))
            c_in = c_out
        elif name.startswith("relu"):
            # Not in-place: the conv output before it may itself be a requested feature.
            modules.append(nn.ReLU(inplace=False))
        else:
            pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
            modules.append(pool(kernel_size=2, stride=2))
    return nn.Sequential(*modules)


def _load_convs(
    body: nn.Sequential, names: list[str], weights: VGGWeights, missing: str
) -> list[str]:
    """Copy the file's conv weights into ``body``; return the conv names left random."""
    needed = [name for name in names if name.startswith("conv")]
    absent = [name for name in needed if name not in weights.convs]
    if absent and missing == "error":
        raise WeightsError(
            f"{weights.path} has VGG layers {weights.layers[0]} … {weights.layers[-1]} only; "
            f"{', '.join(absent)} are missing. Download the full weights "
            f"(see nstcourse.vgg_weights.VGG_CATALOG), choose layers up to {weights.layers[-1]}, "
            f"or set {MISSING_ENV}=random for a smoke run with random layers."
        )
    generator = torch.Generator().manual_seed(0)  # same random layers in every run
    for name, module in zip(names, body, strict=True):
        if not isinstance(module, nn.Conv2d) or module.bias is None:
            continue  # (every VGG conv has a bias)
        with torch.no_grad():
            if name in weights.convs:
                weight, bias = weights.convs[name]
                module.weight.copy_(weight)
                module.bias.copy_(bias)
            else:
                # torchvision's VGG init: Kaiming normal, fan_out, ReLU gain; zero bias.
                std = (2.0 / (module.out_channels * 9)) ** 0.5
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * std)
                module.bias.zero_()
    if absent:
        warnings.warn(
            f"RANDOM VGG LAYERS: {', '.join(absent)} are not in {Path(weights.path).name} and "
            f"were initialised at random because {MISSING_ENV}=random / missing='random'. "
            "Features from them are meaningless: use this for smoke runs only.",
            RandomLayersWarning,
            stacklevel=3,
        )
    return absent
