"""Load third-party super-resolution checkpoints into this package's models.

The course data pack (``$NSTCOURSE_WEIGHTS_DIR/sr/``, see its MANIFEST.md) holds four
published checkpoints. They are put beside our own results in benchmarks only, never
shipped (licences). Each is a plain state dict read with ``torch.load(weights_only=True)``
and copied into our architecture by an explicit key table (ours -> theirs). Loading is
strict: every key in the file is used, every parameter of ours is filled, shapes must
match; anything else is an error naming the file.

========================  =========================================  =====================
name                      file                                       our model
========================  =========================================  =====================
srcnn_x3_fuyongXu         srcnn_x3_fuyongXu.pth                      SRCNN 9-5-5, Y
espcn_x3_yjn870           espcn_x3_yjn870.pth                        ESPCN(scale=3), Y
vdsr_twtygqyy             vdsr_twtygqyy_epoch50_state_dict.pth       VDSR(), Y, any scale
srgan_x4_leftthomas       srgan_netG_x4_leftthomas_epoch100.pth      SRResNet x4, RGB
========================  =========================================  =====================

The leftthomas generator is SRResNet(blocks=5, output="tanh", trunk_tail="prelu"): its
``block7`` is conv + PReLU (the file holds a single PReLU slope ``block7.1.weight``, no BN
statistics) where the paper has conv + BN, so the plain paper SRResNet cannot hold it;
``trunk_tail="prelu"`` exists for this file. Its forward pass is assumed to add the long
skip (block1 + block7) as leftthomas's later code does; the file cannot show that, but
outputs only look right with it (tests/test_sr_models.py checks the PSNR over bicubic).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from nstcourse.checkpoints import translate_state_dict
from nstcourse.sr.espcn import ESPCN
from nstcourse.sr.srcnn import SRCNN
from nstcourse.sr.srgan import SRResNet
from nstcourse.sr.vdsr import VDSR
from nstcourse.vgg_weights import WEIGHTS_DIR_ENV, WeightsError


@dataclass(frozen=True)
class Reference:
    """A data-pack checkpoint: its file, our model for it and the key table ours -> theirs."""

    file: str
    build: Callable[[], nn.Module]
    keys: dict[str, str]
    input: str  # what the model expects


def _srgan_keys(blocks: int = 5, upsample: int = 2) -> dict[str, str]:
    keys = {"head.0.weight": "block1.0.weight", "head.0.bias": "block1.0.bias"}
    keys["head.1.weight"] = "block1.1.weight"  # PReLU slope
    for b in range(blocks):
        for part in ("conv1", "conv2"):
            for p in ("weight", "bias"):
                keys[f"blocks.{b}.{part}.{p}"] = f"block{b + 2}.{part}.{p}"
        for part in ("bn1", "bn2"):
            for p in ("weight", "bias", "running_mean", "running_var"):
                keys[f"blocks.{b}.{part}.{p}"] = f"block{b + 2}.{part}.{p}"
        keys[f"blocks.{b}.prelu.weight"] = f"block{b + 2}.prelu.weight"
    keys["trunk_tail.0.weight"] = "block7.0.weight"
    keys["trunk_tail.0.bias"] = "block7.0.bias"
    keys["trunk_tail.1.weight"] = "block7.1.weight"  # PReLU slope, not a BN
    for u in range(upsample):
        keys[f"upsample.{u}.conv.weight"] = f"block8.{u}.conv.weight"
        keys[f"upsample.{u}.conv.bias"] = f"block8.{u}.conv.bias"
        keys[f"upsample.{u}.prelu.weight"] = f"block8.{u}.prelu.weight"
    keys["tail.weight"] = f"block8.{upsample}.weight"
    keys["tail.bias"] = f"block8.{upsample}.bias"
    return keys


REFERENCES: dict[str, Reference] = {
    "srcnn_x3_fuyongXu": Reference(
        file="srcnn_x3_fuyongXu.pth",
        build=lambda: SRCNN(f1=9, f2=5, f3=5, n1=64, n2=32, channels=1),
        keys={f"conv{i}.{p}": f"conv{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")},
        input="bicubic-upscaled (x3) Y in [0, 1]",
    ),
    "espcn_x3_yjn870": Reference(
        file="espcn_x3_yjn870.pth",
        build=lambda: ESPCN(scale=3, channels=1),
        keys={
            **{f"conv1.{p}": f"first_part.0.{p}" for p in ("weight", "bias")},
            **{f"conv2.{p}": f"first_part.2.{p}" for p in ("weight", "bias")},
            **{f"conv3.{p}": f"last_part.0.{p}" for p in ("weight", "bias")},
        },
        input="low-resolution Y in [0, 1]",
    ),
    "vdsr_twtygqyy": Reference(
        file="vdsr_twtygqyy_epoch50_state_dict.pth",
        build=lambda: VDSR(depth=20, width=64, channels=1),
        keys={
            "input.weight": "input.weight",
            **{f"body.{2 * i}.weight": f"residual_layer.{i}.conv.weight" for i in range(18)},
            "output.weight": "output.weight",
        },
        input="bicubic-upscaled (x2, x3 or x4) Y in [0, 1]",
    ),
    "srgan_x4_leftthomas": Reference(
        file="srgan_netG_x4_leftthomas_epoch100.pth",
        build=lambda: SRResNet(scale=4, blocks=5, output="tanh", trunk_tail="prelu"),
        keys=_srgan_keys(),
        input="low-resolution RGB in [0, 1]",
    ),
}


def reference_path(name: str) -> Path:
    """Where the data pack keeps reference ``name``: $NSTCOURSE_WEIGHTS_DIR/sr/<file>."""
    folder = os.environ.get(WEIGHTS_DIR_ENV)
    if not folder:
        raise WeightsError(
            f"reference checkpoint {name!r}: set ${WEIGHTS_DIR_ENV} to the data pack's "
            "weights folder or pass path="
        )
    return Path(folder) / "sr" / _reference(name).file


def load_reference(name: str, path: str | os.PathLike | None = None) -> nn.Module:
    """Our model holding reference checkpoint ``name``, in eval mode, on the CPU.

    Args:
        name: a key of ``REFERENCES`` (see the module docstring).
        path: the file; None means ``reference_path(name)``.
    """
    ref = _reference(name)
    path = Path(path) if path is not None else reference_path(name)
    if not path.is_file():
        raise WeightsError(f"reference checkpoint {name!r}: {path} not found")
    theirs = torch.load(path, weights_only=True, map_location="cpu")
    if not isinstance(theirs, dict):
        raise WeightsError(f"{path}: expected a state dict, got {type(theirs).__name__}")
    model = ref.build()
    ours = model.state_dict()
    # BN's batch counter is bookkeeping for momentum=None only; the files do not carry it.
    needed = {k: v for k, v in ours.items() if not k.endswith("num_batches_tracked")}
    weights = translate_state_dict(theirs, needed, ref.keys, path=path, what=f"reference {name!r}")
    model.load_state_dict(weights, strict=False)
    return model.eval()


def _reference(name: str) -> Reference:
    if name not in REFERENCES:
        raise ValueError(f"unknown reference {name!r}; known: {', '.join(REFERENCES)}")
    return REFERENCES[name]
