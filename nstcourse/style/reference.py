r"""Engstrom's fast-style-transfer networks (lengstrom/fast-style-transfer, TensorFlow), the
reference nets of the course data pack, rebuilt in PyTorch to put beside ours.

The data pack (``$NSTCOURSE_WEIGHTS_DIR/fast_style_engstrom/``, see its MANIFEST.md §1
and §1b) holds five trained nets converted to named tensors. They are used in benchmarks
only, never shipped: lengstrom's licence is "free for research use". Each file is checked
against the sha256 the MANIFEST lists, read with ``torch.load(weights_only=True)`` and
copied into ``EngstromNet`` by an explicit key table (ours -> theirs); loading is strict.

The network is Johnson et al.'s transform net as lengstrom's ``src/transform.py`` writes
it: every conv has no bias and is followed by instance norm

.. math:: \operatorname{IN}(x) = \text{scale} \cdot \frac{x - \mu}{\sqrt{\sigma^2 +
    10^{-3}}} + \text{shift}

(μ, σ² the biased mean and variance over H, W), then ReLU except in the last layer:

    9×9/1 conv (32) → 3×3/2 conv (64) → 3×3/2 conv (128) → 5 residual blocks
    (conv, IN, ReLU, conv, IN, + skip) → 3×3/2 transposed conv (64) → 3×3/2 transposed
    conv (32) → 9×9/1 conv (3) + IN → 150·tanh(x) + 127.5.

It differs from ``fast_style.TransformNet`` in what TensorFlow did: zero padding by TF's
'SAME' rule (``tf_same_padding``; stride-2 convs pad the odd pixel after), transposed
convs (checkerboards possible), IN after the output conv, IN ε = 1e-3, and input and
output in 0–255 (``EngstromNet`` takes and returns [0, 1]).

Code ↔ lengstrom: ``EngstromConv`` = ``_conv_layer``, ``EngstromDeconv`` =
``_conv_tranpose_layer``, ``EngstromResidual`` = ``_residual_block``; the file's
``in_shift``/``in_scale`` are that layer's ``_instance_norm`` shift and scale.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nstcourse.checkpoints import translate_state_dict
from nstcourse.files import sha256_file
from nstcourse.runmode import pick_device
from nstcourse.vgg_weights import WEIGHTS_DIR_ENV, WeightsError

IN_EPS = 1e-3  # lengstrom's _instance_norm epsilon (PyTorch's default is 1e-5)
FOLDER = "fast_style_engstrom"  # under $NSTCOURSE_WEIGHTS_DIR


@dataclass(frozen=True)
class EngstromWeights:
    """One data-pack file: its name, its sha256 (MANIFEST §1) and the painting it learnt."""

    file: str
    sha256: str
    style_image: str  # relative to the data dir (MANIFEST §1b, "Training style images")


ENGSTROM_WEIGHTS: dict[str, EngstromWeights] = {
    "wave": EngstromWeights(
        "engstrom_wave.pth",
        "22bbad72f1ddfccbbda5c751c1296acc86ffbcd3aa9ea8328812c42e7faa033a",
        "images/style/engstrom_training/wave.jpg",
    ),
    "scream": EngstromWeights(
        "engstrom_scream.pth",
        "f0729726c5cf0c4b96fce31231c47bddab1fb15a760e9fedb309bc1aaa94e62a",
        "images/style/engstrom_training/the_scream.jpg",
    ),
    "udnie": EngstromWeights(
        "engstrom_udnie.pth",
        "c0fed39d4763201dc05a1542f63f075a86b1fbd22a72170115e26f255e76a1ff",
        "images/style/engstrom_training/udnie.jpg",
    ),
    "rain_princess": EngstromWeights(
        "engstrom_rain_princess.pth",
        "4eaaadbb254148f8810c66b5935357b9593b89315972b123bf77b76698af203f",
        "images/style/rain-princess.jpg",  # under copyright: compare, never ship
    ),
    "wreck": EngstromWeights(
        "engstrom_wreck.pth",
        "17b9eca158a689c619fddf861aa19e13451944a806fde0e9d5de5b79ea462da0",
        "images/style/the_shipwreck_of_the_minotaur.jpg",
    ),
}
STYLES = tuple(ENGSTROM_WEIGHTS)


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'SAME' zero padding (before, after) of one axis of length ``size``.

    The output has ceil(size / stride) pixels; the padding is what that needs,
    max((out - 1)·stride + kernel - size, 0), split with the odd pixel after. So a 3×3
    stride-2 conv pads (0, 1) on even sizes and (1, 1) on odd ones; a 9×9 stride-1 conv
    pads (4, 4).
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def tf_same_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """``tf.nn.conv2d(padding='SAME')`` without bias: (N, C_in, H, W) → (N, C_out, ⌈H/s⌉,
    ⌈W/s⌉); weight (C_out, C_in, k, k)."""
    kernel = weight.shape[-1]
    top, bottom = tf_same_padding(x.shape[-2], kernel, stride)
    left, right = tf_same_padding(x.shape[-1], kernel, stride)
    return F.conv2d(F.pad(x, (left, right, top, bottom)), weight, stride=stride)


def tf_same_conv_transpose2d(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """``tf.nn.conv2d_transpose(padding='SAME')`` to (N, C_out, s·H, s·W), no bias; weight
    (C_in, C_out, k, k).

    The transpose (gradient) of a 'SAME' conv from s·H to H: the full transposed conv
    ((H - 1)·s + k pixels) cropped where that conv's padding began, i.e. [0:2H] for k = 3,
    s = 2.
    """
    kernel = weight.shape[-1]
    h, w = stride * x.shape[-2], stride * x.shape[-1]
    top = tf_same_padding(h, kernel, stride)[0]
    left = tf_same_padding(w, kernel, stride)[0]
    y = F.conv_transpose2d(x, weight, stride=stride)  # (N, C_out, (H-1)s + k, (W-1)s + k)
    return y[..., top : top + h, left : left + w]


class _InstanceNorm(nn.Module):
    """lengstrom's ``_instance_norm``: its parameters are named as in the data-pack files."""

    def __init__(self, channels: int):
        super().__init__()
        self.in_shift = nn.Parameter(torch.zeros(channels))
        self.in_scale = nn.Parameter(torch.ones(channels))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, weight=self.in_scale, bias=self.in_shift, eps=IN_EPS)


class EngstromConv(_InstanceNorm):
    """'SAME' k×k conv with stride s (no bias), IN, optional ReLU: (N, C_in, H, W) →
    (N, C_out, ⌈H/s⌉, ⌈W/s⌉)."""

    def __init__(self, c_in: int, c_out: int, *, kernel: int, stride: int, relu: bool = True):
        super().__init__(c_out)
        self.weight = nn.Parameter(torch.empty(c_out, c_in, kernel, kernel))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # as nn.Conv2d; loading overwrites
        self.stride, self.relu = stride, relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(tf_same_conv2d(x, self.weight, self.stride))
        return F.relu(x) if self.relu else x


class EngstromDeconv(_InstanceNorm):
    """'SAME' 3×3 stride-2 transposed conv (no bias), IN, ReLU: (N, C_in, H, W) →
    (N, C_out, 2H, 2W)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(c_out)
        self.weight = nn.Parameter(torch.empty(c_in, c_out, 3, 3))  # ConvTranspose2d layout
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.normalize(tf_same_conv_transpose2d(x, self.weight, 2)))


class EngstromResidual(nn.Module):
    """x + (conv, IN, ReLU, conv, IN)(x), 3×3 convs, 128 channels."""

    def __init__(self, channels: int = 128):
        super().__init__()
        self.conv1 = EngstromConv(channels, channels, kernel=3, stride=1)
        self.conv2 = EngstromConv(channels, channels, kernel=3, stride=1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class EngstromNet(nn.Module):
    """lengstrom's transform net (see the module docstring); load trained weights with
    ``load_engstrom``.

    ``forward(x)``: x (N, 3, H, W) RGB in [0, 1], any H, W ≥ 1 → (N, 3, H, W) in [0, 1].
    Inside, the net sees 255·x, as it was trained, and its output 150·tanh + 127.5 is
    divided by 255 and clamped (it can reach −22.5 … 277.5). An odd side is handled as
    TensorFlow does ('SAME' padding gives ⌈H/4⌉ at the bottleneck, so 4·⌈H/4⌉ rows come
    out); the extra rows and columns are cropped.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = EngstromConv(3, 32, kernel=9, stride=1)
        self.conv2 = EngstromConv(32, 64, kernel=3, stride=2)
        self.conv3 = EngstromConv(64, 128, kernel=3, stride=2)
        self.res = nn.ModuleList(EngstromResidual(128) for _ in range(5))
        self.deconv1 = EngstromDeconv(128, 64)
        self.deconv2 = EngstromDeconv(64, 32)
        self.conv_out = EngstromConv(32, 3, kernel=9, stride=1, relu=False)  # IN, no ReLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        y = self.conv3(self.conv2(self.conv1(255 * x)))  # (N, 128, ⌈H/4⌉, ⌈W/4⌉)
        for block in self.res:
            y = block(y)
        y = self.conv_out(self.deconv2(self.deconv1(y)))  # (N, 3, 4⌈H/4⌉, 4⌈W/4⌉)
        y = (150 * torch.tanh(y) + 127.5) / 255
        return y[..., :h, :w].clamp(0, 1)


def engstrom_keys() -> dict[str, str]:
    """The key table ours -> theirs: ``res.{i}.*`` is the file's ``res{i + 1}.*``."""
    theirs = ["conv1", "conv2", "conv3", "deconv1", "deconv2", "conv_out"]
    layers = {name: name for name in theirs}
    for i in range(5):
        for conv in ("conv1", "conv2"):
            layers[f"res.{i}.{conv}"] = f"res{i + 1}.{conv}"
    return {
        f"{ours}.{p}": f"{their}.{p}"
        for ours, their in layers.items()
        for p in ("weight", "in_shift", "in_scale")
    }


def engstrom_path(style: str) -> Path:
    """Where the data pack keeps ``style``: $NSTCOURSE_WEIGHTS_DIR/fast_style_engstrom/<file>."""
    file = _weights(style).file
    folder = os.environ.get(WEIGHTS_DIR_ENV)
    if not folder:
        raise WeightsError(
            f"Engstrom {style} net ({FOLDER}/{file}): set ${WEIGHTS_DIR_ENV} to the data "
            "pack's weights folder, or pass path="
        )
    return Path(folder) / FOLDER / file


def load_engstrom(
    style: str,
    device: str | torch.device | None = None,
    *,
    path: str | os.PathLike | None = None,
) -> EngstromNet:
    """lengstrom's trained net for ``style`` in an ``EngstromNet``, in eval mode.

    Args:
        style: one of ``STYLES``: wave, scream, udnie, rain_princess, wreck.
        device: None picks CUDA, MPS or CPU.
        path: the file; None means ``engstrom_path(style)``.

    Raises:
        ValueError: unknown style (the message lists the known ones).
        WeightsError: the file is missing (the message names it and ${WEIGHTS_DIR_ENV}),
            its sha256 is not the MANIFEST's, or its tensors do not fit ``EngstromNet``.
    """
    expected = _weights(style)
    path = Path(path) if path is not None else engstrom_path(style)
    if not path.is_file():
        raise WeightsError(
            f"Engstrom {style} net: {path} not found; ${WEIGHTS_DIR_ENV} must name the data "
            f"pack's weights folder, which holds {FOLDER}/{expected.file}"
        )
    digest = sha256_file(path)
    if digest != expected.sha256:
        raise WeightsError(
            f"{path}: sha256 {digest} is not the data pack's {expected.sha256} for "
            f"{expected.file} (MANIFEST.md §1): a different or damaged file"
        )
    theirs = torch.load(path, weights_only=True, map_location="cpu")
    if not isinstance(theirs, dict):
        raise WeightsError(f"{path}: expected a dict of tensors, got {type(theirs).__name__}")
    model = EngstromNet()
    model.load_state_dict(
        translate_state_dict(
            theirs, model.state_dict(), engstrom_keys(), path=path, what="EngstromNet"
        )
    )
    return model.eval().to(pick_device(device))


def _weights(style: str) -> EngstromWeights:
    if style not in ENGSTROM_WEIGHTS:
        raise ValueError(f"unknown Engstrom style {style!r}; known: {', '.join(STYLES)}")
    return ENGSTROM_WEIGHTS[style]
