"""Training recipes for the course's super-resolution checkpoints, and ``train_sr``.

One frozen dataclass per model says how it is trained: data, patches, batch, optimiser,
learning-rate schedule. The defaults are sized for a 2-core CPU (the course's CI and a
student's laptop); each comment gives the paper's value beside ours. A builder per model
turns a recipe into a ``recipes.Run`` (network, patches, loss, optimiser), and
``train_sr`` hands it to ``recipes.run_recipe``, the protocol every course checkpoint
goes through (work folder, exact resume, metadata, atomic save), adding what only SR
needs: PSNR-Y on Set5 now and then, and at the end the scale(s) and the measured Set5
PSNR-Y/SSIM-Y beside bicubic's in the metadata.

Data (catalog datasets, fetched on first use; README, "Data and weights"): SRCNN trains on T91
(``sr/T91``), the others on "291" = T91 + BSD200 = ``sr/T91`` + ``photos/bsds500_train``,
VDSR's training set. The papers trained SRCNN and ESPCN on T91 and, for their best
results, on ImageNet, as SRGAN; the course does not have ImageNet. Train on another set
with ``replace(recipe, data=("sr/T91",))``.

Change a recipe with ``dataclasses.replace``: ``train_sr("espcn", ..., recipe=replace(
ESPCNRecipe(), n1=16))``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from nstcourse.checkpoints import checkpoint_info
from nstcourse.data import load_training_images
from nstcourse.features import VGGFeatures
from nstcourse.recipes import Run, run_recipe
from nstcourse.runmode import pick_device
from nstcourse.sr.data import PatchDataset, load_sr_set
from nstcourse.sr.espcn import ESPCN
from nstcourse.sr.models import checkpoint_path, evaluate, load_sr_checkpoint, model_spec
from nstcourse.sr.perceptual import PerceptualSRLoss, PerceptualSRNet
from nstcourse.sr.srcnn import SRCNN, paper_param_groups
from nstcourse.sr.srgan import Discriminator, SRGANStep, SRResNet, VGGContentLoss
from nstcourse.sr.vdsr import VDSR
from nstcourse.training import AdjustableGradClip, clip_norm, resolve_precision, supervised_step

SET_291 = ("sr/T91", "photos/bsds500_train")  # T91 + BSD200


# --- recipes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SRCNNRecipe:
    """SRCNN 9-5-5 (Dong et al., TPAMI 2016) on the Y channel."""

    f1: int = 9  # the paper's best setting, 9-5-5
    f2: int = 5
    f3: int = 5
    n1: int = 64  # paper: 64 and 32 filters
    n2: int = 32
    scales: tuple[int, ...] = (3,)  # the paper's main scale; the course ships x3
    # paper: T91 (9-1-5: 32.39 dB at x3) and ImageNet (9-5-5: 32.75); ours: T91, which
    # beat 291 images (SET_291) in a long run (docs/experiments.md)
    data: tuple[str, ...] = ("sr/T91",)
    max_images: int | None = None  # per folder; None = all (tests use 2)
    hr_patch: int = 33  # paper: 33x33 sub-images (we cut 33 // s LR px, 33 at x3)
    patches_per_image: int = 100  # ~9,100 random patches per "epoch" of T91
    batch_size: int = 16  # paper: 128; 16 keeps a step cheap on a 2-core CPU
    # paper: SGD at 1e-4 for the first two layers; Adam 1e-3 beat 1e-4 (docs/experiments.md)
    lr: float = 1e-3
    last_layer_lr_factor: float = 0.1  # paper: 1e-5 for the last layer (paper_param_groups)
    lr_decay_every: int | None = 15_000  # paper: constant; one x0.1 cut 3/4 into `steps`
    lr_decay: float = 0.1
    precision: str = "float32"  # "float32", "bfloat16" or "auto" (training.resolve_precision)
    steps: int = 20_000  # suggested for a CPU run; the paper trained ~10^8 backprops
    validate_every: int = 1000  # a Set5 evaluation costs about a few steps
    checkpoint_every: int = 200  # Ctrl-C loses at most this many steps


@dataclass(frozen=True)
class ESPCNRecipe:
    """ESPCN (Shi et al., CVPR 2016) on the Y channel, all layers in LR space."""

    n1: int = 64  # paper: (f1, n1) = (5, 64), (f2, n2) = (3, 32)
    n2: int = 32
    scales: tuple[int, ...] = (3,)  # the course ships x2, x3, x4: one run each
    # paper: T91 (32.55 dB at x3) and ImageNet (33.00); 291 images is the nearest to
    # ImageNet we have
    data: tuple[str, ...] = SET_291
    max_images: int | None = None  # per folder; None = all
    lr_patch: int = 17  # paper: 17r x 17r HR sub-images, i.e. 17x17 LR
    patches_per_image: int = 100
    batch_size: int = 16  # paper: not stated; 16 keeps a step cheap on a CPU
    lr: float = 1e-3  # paper: 0.01 falling to 0.0001 (when the loss stalls); Adam 1e-3
    lr_decay_every: int | None = 15_000  # one x0.1 cut 3/4 into `steps`, not "when it stalls"
    lr_decay: float = 0.1
    precision: str = "float32"  # "float32", "bfloat16" or "auto" (training.resolve_precision)
    steps: int = 20_000  # suggested for a CPU run
    validate_every: int = 1000
    checkpoint_every: int = 200


@dataclass(frozen=True)
class VDSRRecipe:
    """VDSR (Kim et al., CVPR 2016): one Y model for x2, x3 and x4, mixed in each batch."""

    depth: int = 20  # paper: d = 20
    width: int = 64  # paper: 64 filters
    scales: tuple[int, ...] = (2, 3, 4)  # paper: one model trained on all three
    data: tuple[str, ...] = SET_291  # paper: 291 images
    max_images: int | None = None  # per folder; None = all
    hr_patch: int = 41  # paper: 41x41 patches (the receptive field)
    patches_per_image: int = 100
    batch_size: int = 16  # paper: 64; a 20-layer net on 41x41 is the costliest step here
    # paper: SGD at lr 0.1 with adjustable clipping (optimizer="sgd", lr=0.1), which did
    # not leave bicubic within a CPU budget; Adam 1e-3 learns in the steps a CPU affords
    # (docs/experiments.md)
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9  # paper
    weight_decay: float = 1e-4  # paper
    # "adjustable": the paper's per-component clip to [-theta/lr, theta/lr]
    # (AdjustableGradClip). "norm": the gradients' global L2 norm clipped to clip_norm
    # (twtygqyy/pytorch-vdsr's 0.4). Both train stably here with the values below.
    clip: str = "adjustable"
    clip_theta: float = 0.001  # paper: no value given; 0.01 diverged here (docs/experiments.md)
    clip_norm: float = 0.4
    # paper: /10 every 20 of 80 epochs (SGD). With Adam one x0.1 cut 3/4 into `steps`:
    # cuts every 5000 steps brought the rate down too early (docs/experiments.md)
    lr_decay_every: int | None = 15_000
    lr_decay: float = 0.1
    precision: str = "float32"  # "float32", "bfloat16" or "auto" (training.resolve_precision)
    steps: int = 20_000  # suggested for a CPU run
    validate_every: int = 1000
    checkpoint_every: int = 200


@dataclass(frozen=True)
class SRResNetRecipe:
    """SRResNet (Ledig et al., CVPR 2017): the SRGAN generator trained with MSE, RGB."""

    blocks: int = 16  # paper: B = 16 residual blocks
    width: int = 64  # paper: 64 feature maps
    scales: tuple[int, ...] = (4,)  # paper: x4 only
    data: tuple[str, ...] = SET_291  # paper: 350k ImageNet images; we have 291
    max_images: int | None = None  # per folder; None = all
    lr_patch: int = 24  # paper: 96x96 HR crops, 24x24 LR
    patches_per_image: int = 100
    batch_size: int = 4  # paper: 16; 4 keeps a step affordable on a 2-core CPU
    # paper: Adam 1e-4, beta1 0.9, 10^6 updates; a CPU affords a few 10^4, in which 5e-4
    # learns faster than 1e-4 and 1e-3 is unstable (docs/experiments.md)
    lr: float = 5e-4
    lr_decay_every: int | None = 15_000  # paper: constant; one x0.1 cut 3/4 into `steps`
    lr_decay: float = 0.1
    precision: str = "float32"  # "float32", "bfloat16" or "auto" (training.resolve_precision)
    steps: int = 20_000  # suggested for a CPU run
    validate_every: int = 1000
    checkpoint_every: int = 100


@dataclass(frozen=True)
class SRGANRecipe:
    """SRGAN (Ledig et al., CVPR 2017): SRResNet fine-tuned with VGG loss + adversarial loss.

    The content loss is the paper's VGG2,2 variant (``relu2_2``), which the data pack's
    VGG-19 (conv1_1 … conv3_4) covers; the paper's best, VGG5,4, needs the full VGG-19.
    """

    generator_init: str | None = None  # an SRResNet checkpoint; None: the course's srresnet_x4
    scales: tuple[int, ...] = (4,)
    data: tuple[str, ...] = SET_291  # paper: 350k ImageNet images
    max_images: int | None = None  # per folder; None = all
    lr_patch: int = 24  # paper: 96x96 HR crops (D's dense layer expects 6x6 after 4 halvings)
    patches_per_image: int = 100
    batch_size: int = 4  # paper: 16
    lr: float = 1e-4  # paper: Adam 1e-4 for 10^5 updates, then 1e-5 for 10^5
    lr_decay_every: int | None = 5_000  # paper: one x0.1 cut half-way
    lr_decay: float = 0.1
    precision: str = "float32"  # "float32", "bfloat16" or "auto" (training.resolve_precision)
    vgg_layer: str = "relu2_2"  # paper's VGG2,2 (VGG5,4 needs layers the data pack lacks)
    # paper: feature maps scaled by 1/12.75; None: the table's value for the VGG weights'
    # convention (nstcourse.conventions; 1/12.75 for both, see there why)
    vgg_rescale: float | None = None
    adversarial_weight: float = 1e-3  # paper: l_X + 1e-3 l_Gen
    d_width: int = 64  # paper: 64 ... 512 filters
    d_pooled_size: int = 6  # paper's 6x6 map before Dense(1024) at 96x96 crops
    steps: int = 10_000  # suggested for a CPU run
    validate_every: int = 1000
    checkpoint_every: int = 100


@dataclass(frozen=True)
class PerceptualSRRecipe:
    """Johnson et al. (ECCV 2016), super-resolution: ``perceptual.PerceptualSRNet`` trained on
    ℓ_feat at VGG relu2_2 (+ λ_TV · TV), no pixel loss; RGB, one scale per network."""

    blocks: int = 4  # paper (supplementary, Table 2): 4 residual blocks of 64 for x4 and x8
    width: int = 64
    upsample: str = "nearest"  # paper: stride-1/2 convolutions ("transpose"); see perceptual
    residual: bool = True  # paper: False, and histogram matching afterwards; see perceptual
    scales: tuple[int, ...] = (4,)  # paper: x4 and x8; the course ships both
    data: tuple[str, ...] = SET_291  # paper: 10k MS-COCO images
    max_images: int | None = None  # per folder; None = all
    # paper: 288x288 HR patches (72 LR at x4); 96 px (SRResNet's) costs 9x less per step.
    # x8 uses 12 LR px = 96 HR px as well.
    hr_patch: int = 96
    patches_per_image: int = 100
    batch_size: int = 4  # paper: 4
    lr: float = 1e-3  # paper: Adam 1e-3
    lr_decay_every: int | None = None  # paper: constant
    lr_decay: float = 0.1
    # paper: LR inputs blurred (Gaussian sigma 1.0) before bicubic downsampling. The course
    # scores every SR model on plain MATLAB-bicubic LR images (the SRCNN/SRGAN protocol),
    # so it trains on those too; a net trained on blurred inputs over-sharpens them.
    vgg_layer: str = "relu2_2"  # paper: relu2_2 of VGG-16; ours: of VGG-19 (same shapes)
    vgg_rescale: float | None = None  # None: the per-convention SRGAN value (1/12.75)
    # paper: none given for SR (its 1e-6 ... 1e-4 is for style transfer); 0: the nearest
    # upsampling leaves no checkerboard for it to damp
    tv_weight: float = 0.0
    precision: str = "float32"  # "float32", "bfloat16" or "auto" (training.resolve_precision)
    steps: int = 10_000  # suggested for a CPU run; paper: 200k iterations
    validate_every: int = 1000
    checkpoint_every: int = 100


RECIPES: dict[str, type[Any]] = {
    "srcnn": SRCNNRecipe,
    "espcn": ESPCNRecipe,
    "vdsr": VDSRRecipe,
    "srresnet": SRResNetRecipe,
    "srgan": SRGANRecipe,
    "perceptual": PerceptualSRRecipe,
}


# --- data ------------------------------------------------------------------------------------


class MultiScalePatchDataset(Dataset):
    """VDSR's training patches: x2, x3 and x4 mixed, all cut to one size.

    Item i is a patch at scale ``scales[i % k]`` (k scales), so a batch drawn at random
    mixes them. Each is a ``PatchDataset(pre_upsample=True)`` patch of
    ceil(patch_size / s) LR pixels (≥ ``patch_size`` HR pixels), cropped to its top-left
    ``patch_size`` × ``patch_size``, so every item has the same shape.

    Returns per item ``(x, y)``: the bicubic-upscaled LR patch and the HR patch, both
    (C, patch_size, patch_size) in [0, 1].
    """

    def __init__(
        self,
        images: Sequence[torch.Tensor],
        *,
        scales: Sequence[int],
        patch_size: int,
        channels: str = "y",
        patches_per_image: int = 100,
        seed: int = 0,
    ) -> None:
        self.patch_size = patch_size
        self.parts = [
            PatchDataset(
                images,
                scale=s,
                patch_size=math.ceil(patch_size / s),
                channels=channels,
                pre_upsample=True,
                patches_per_image=patches_per_image,
                seed=seed * 100 + s,  # a different crop sequence per scale
            )
            for s in scales
        ]

    def __len__(self) -> int:
        return len(self.parts) * len(self.parts[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = len(self.parts)
        x, y = self.parts[index % k][index // k]
        p = self.patch_size
        return x[:, :p, :p].contiguous(), y[:, :p, :p].contiguous()


# --- building a run --------------------------------------------------------------------------


def _step_lr(optimizer: torch.optim.Optimizer, recipe) -> Any:
    if recipe.lr_decay_every is None:
        return None
    return torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=recipe.lr_decay_every, gamma=recipe.lr_decay
    )


def _mse(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return F.mse_loss(model(x), y)


def _half_sum_squares(model: nn.Module, batch) -> torch.Tensor:
    """VDSR's loss 1/2 ||y - f(x)||^2 per patch (summed over pixels), mean over the batch.

    The sum (not a pixel mean) is what gives lr 0.1 its meaning: with a pixel mean the
    gradients would be 41^2 times smaller.
    """
    x, y = batch
    return 0.5 * (model(x) - y).pow(2).sum() / x.shape[0]


def _supervised(net, kwargs, dataset, optimizer, loss_fn, recipe, clip=None) -> Run:
    step = supervised_step(net, loss_fn, optimizer, clip=clip, precision=recipe.precision)
    return Run(net, kwargs, step, optimizer, dataset, scheduler=_step_lr(optimizer, recipe))


def _build_srcnn(recipe: SRCNNRecipe, images, seed: int, device) -> Run:
    (scale,) = recipe.scales
    kwargs = dict(f1=recipe.f1, f2=recipe.f2, f3=recipe.f3, n1=recipe.n1, n2=recipe.n2)
    net = SRCNN(**kwargs)
    if recipe.hr_patch < scale:
        raise ValueError(f"SRCNNRecipe.hr_patch={recipe.hr_patch} is smaller than x{scale}")
    dataset = PatchDataset(
        images,
        scale=scale,
        patch_size=recipe.hr_patch // scale,  # 11 LR px = 33 HR px at x3
        pre_upsample=True,
        patches_per_image=recipe.patches_per_image,
        seed=seed,
    )
    groups = paper_param_groups(net, lr=recipe.lr)
    groups[-1]["lr"] = recipe.lr * recipe.last_layer_lr_factor
    return _supervised(net, kwargs, dataset, torch.optim.Adam(groups), _mse, recipe)


def _build_espcn(recipe: ESPCNRecipe, images, seed: int, device) -> Run:
    (scale,) = recipe.scales
    kwargs = dict(scale=scale, n1=recipe.n1, n2=recipe.n2)
    net = ESPCN(**kwargs)
    dataset = PatchDataset(
        images,
        scale=scale,
        patch_size=recipe.lr_patch,
        patches_per_image=recipe.patches_per_image,
        seed=seed,
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    return _supervised(net, kwargs, dataset, optimizer, _mse, recipe)


def _build_vdsr(recipe: VDSRRecipe, images, seed: int, device) -> Run:
    kwargs = dict(depth=recipe.depth, width=recipe.width)
    net = VDSR(**kwargs)
    dataset = MultiScalePatchDataset(
        images,
        scales=recipe.scales,
        patch_size=recipe.hr_patch,
        patches_per_image=recipe.patches_per_image,
        seed=seed,
    )
    optimizer: torch.optim.Optimizer
    clip: Callable[[torch.optim.Optimizer], None] | None
    if recipe.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            net.parameters(),
            lr=recipe.lr,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
        )
        if recipe.clip == "adjustable":
            clip = AdjustableGradClip(theta=recipe.clip_theta)
        elif recipe.clip == "norm":
            clip = clip_norm(recipe.clip_norm)
        else:
            raise ValueError(f'VDSRRecipe.clip={recipe.clip!r}; use "norm" or "adjustable"')
    elif recipe.optimizer == "adam":
        optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr)
        clip = None  # Adam's steps are already bounded by lr
    else:
        raise ValueError(f'VDSRRecipe.optimizer={recipe.optimizer!r}; use "sgd" or "adam"')
    return _supervised(net, kwargs, dataset, optimizer, _half_sum_squares, recipe, clip)


def _rgb_patches(recipe, images, seed: int, lr_patch: int | None = None) -> PatchDataset:
    """RGB (LR, HR) patches of ``lr_patch`` (default ``recipe.lr_patch``) LR pixels; the
    few training images smaller than the HR patch (T91 has 78 px ones) are left out rather
    than failing the run."""
    (scale,) = recipe.scales
    lr_patch = recipe.lr_patch if lr_patch is None else lr_patch
    hr_patch = lr_patch * scale
    large = [image for image in images if min(image.shape[-2:]) // scale * scale >= hr_patch]
    if not large:
        raise ValueError(f"no training image is at least {hr_patch} px after modcrop")
    return PatchDataset(
        large,
        scale=scale,
        patch_size=lr_patch,
        channels="rgb",
        patches_per_image=recipe.patches_per_image,
        seed=seed,
    )


def _build_srresnet(recipe: SRResNetRecipe, images, seed: int, device) -> Run:
    (scale,) = recipe.scales
    kwargs = dict[str, Any](scale=scale, blocks=recipe.blocks, width=recipe.width)
    net = SRResNet(**kwargs)
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr, betas=(0.9, 0.999))
    return _supervised(net, kwargs, _rgb_patches(recipe, images, seed), optimizer, _mse, recipe)


def _build_srgan(recipe: SRGANRecipe, images, seed: int, device) -> Run:
    (scale,) = recipe.scales
    init = recipe.generator_init or checkpoint_path("srresnet", scale)
    if not Path(init).is_file():
        raise FileNotFoundError(
            f"SRGAN starts from an SRResNet checkpoint: {init} not found; train it first "
            f"with: nstcourse train-sr srresnet --scale {scale} --steps N -o {init}"
        )
    G = load_sr_checkpoint(init, name="srresnet", scale=scale, device="cpu").train()
    kwargs = checkpoint_info(init)["kwargs"]  # G keeps the SRResNet's architecture
    D = Discriminator(width=recipe.d_width, pooled_size=recipe.d_pooled_size)
    extractor = VGGFeatures([recipe.vgg_layer], arch="vgg19", device=device)
    content = VGGContentLoss(extractor, layer=recipe.vgg_layer, rescale=recipe.vgg_rescale)
    info = {"vgg_rescale": content.rescale}  # the rescale as used, whatever the recipe said
    opt_G = torch.optim.Adam(G.parameters(), lr=recipe.lr, betas=(0.9, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=recipe.lr, betas=(0.9, 0.999))
    step = SRGANStep(
        G,
        D,
        content,
        opt_G=opt_G,
        opt_D=opt_D,
        adversarial_weight=recipe.adversarial_weight,
        precision=recipe.precision,
    )
    schedulers = None
    if recipe.lr_decay_every is not None:
        schedulers = {"G": _step_lr(opt_G, recipe), "D": _step_lr(opt_D, recipe)}
    dataset = _rgb_patches(recipe, images, seed)
    run = Run(G, kwargs, step, step.optimizers, dataset, step.models, schedulers)
    run.info = info
    return run


def _build_perceptual(recipe: PerceptualSRRecipe, images, seed: int, device) -> Run:
    (scale,) = recipe.scales
    if recipe.hr_patch % scale:
        raise ValueError(f"hr_patch={recipe.hr_patch} is not a multiple of x{scale}")
    kwargs = dict[str, Any](
        scale=scale,
        blocks=recipe.blocks,
        width=recipe.width,
        upsample=recipe.upsample,
        residual=recipe.residual,
    )
    net = PerceptualSRNet(**kwargs)
    extractor = VGGFeatures([recipe.vgg_layer], arch="vgg19", device=device)
    loss = PerceptualSRLoss(
        extractor, layer=recipe.vgg_layer, tv_weight=recipe.tv_weight, rescale=recipe.vgg_rescale
    )

    def terms(model: nn.Module, batch) -> dict[str, torch.Tensor]:
        x, y = batch
        return loss(model(x), y)

    dataset = _rgb_patches(recipe, images, seed, lr_patch=recipe.hr_patch // scale)
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    run = _supervised(net, kwargs, dataset, optimizer, terms, recipe)
    run.info = {"vgg_rescale": loss.feature.rescale}
    return run


BUILDERS: dict[str, Callable[..., Run]] = {
    "srcnn": _build_srcnn,
    "espcn": _build_espcn,
    "vdsr": _build_vdsr,
    "srresnet": _build_srresnet,
    "srgan": _build_srgan,
    "perceptual": _build_perceptual,
}


# --- train_sr ---------------------------------------------------------------------------------


def train_sr(
    name: str,
    *,
    steps: int,
    out: str | os.PathLike,
    recipe: Any = None,
    seed: int = 0,
    workdir: str | os.PathLike | None = None,
    validate_on: str | Sequence[tuple[str, torch.Tensor]] | None = "Set5",
    progress: bool = True,
    device: str | torch.device | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Train SR model ``name`` by its recipe and write it to ``out`` (``run_recipe``).

    Args:
        name: "srcnn", "espcn", "vdsr", "srresnet", "srgan" or "perceptual".
        steps: total optimizer updates (a resumed run counts those already done).
        out: the ``.safetensors`` file to write (atomically, at the end).
        recipe: a recipe instance (default: ``RECIPES[name]()``); change a
            hyper-parameter, the scale(s) included, with ``dataclasses.replace``.
            ``precision="auto"`` becomes "bfloat16" where the device runs it natively.
        seed: seeds the initial weights, the patches and the batches.
        workdir: the checkpoint folder; default ``runs/<name>_x<scale>``. A run there is
            resumed (its recipe must be the same; ``steps`` may grow).
        validate_on: images for the periodic PSNR-Y and the final metrics: an SR set's
            name, a list of (name, HR image) (e.g. two Set5 images in a smoke run), or
            None for neither.
        progress: show a progress bar.
        device: None picks CUDA, then MPS, then CPU.
        command: how ``out`` is made, stored in its metadata (``nstcourse train-sr``
            passes its command line); None: this Python call.

    Returns:
        the metadata written into ``out``: {"model", "class", "kwargs", "scale" or
        "scales", "recipe": {...}, "metrics": {<set>: {"x<s>": PSNR-Y, SSIM-Y and
        bicubic's}, "train": ...}}, plus "history" (not stored).

    A Ctrl-C (KeyboardInterrupt) propagates; the checkpoint in ``workdir`` is complete
    and the same call resumes from it.
    """
    recipe = checked_recipe(name, recipe)
    device = pick_device(device)
    recipe = replace(recipe, precision=resolve_precision(recipe.precision, device))
    scales = recipe.scales
    if validate_on is None or isinstance(validate_on, str):
        val_images = load_sr_set(validate_on) if validate_on else None
        val_name = validate_on
    else:
        val_images = list(validate_on)
        val_name = "+".join(stem for stem, _ in val_images)  # e.g. "baby+bird"

    def build(recipe: Any, seed: int, device: torch.device) -> Run:
        images = load_training_images(recipe.data, max_images=recipe.max_images)
        run = BUILDERS[name](recipe, images, seed, device)
        run.info |= {"data_images": len(images), "validate_on": val_name}
        run.validate_every = recipe.validate_every

        def finish(history: dict[str, list]) -> dict[str, Any]:
            multi = model_spec(name).multi_scale
            report: dict[str, Any] = {"scales": list(scales)} if multi else {"scale": scales[0]}
            if val_images is not None:
                results = {f"x{s}": evaluate(run.net, name, s, val_images) for s in scales}
                report["metrics"] = {val_name: results}
            return report

        run.finish = finish
        if val_images is not None:

            def validate(_model: nn.Module) -> dict[str, float]:
                return {"psnr_y": evaluate(run.net, name, scales[0], val_images)["psnr_y"]}

            run.validate = validate
        return run

    return run_recipe(
        name,
        recipe,
        build,
        steps=steps,
        out=out,
        workdir=workdir if workdir is not None else default_workdir(name, scales),
        command=command or f"train_sr({name!r}, steps={steps}, seed={seed}, out={str(out)!r})",
        seed=seed,
        progress=progress,
        device=device,
    )


def checked_recipe(name: str, recipe: Any = None) -> Any:
    """``recipe`` (default ``RECIPES[name]()``) after checking its type and scales."""
    if name not in RECIPES:
        raise ValueError(f"no training recipe for {name!r}; known: {', '.join(RECIPES)}")
    recipe = RECIPES[name]() if recipe is None else recipe
    if not isinstance(recipe, RECIPES[name]):
        raise TypeError(f"recipe for {name} must be a {RECIPES[name].__name__}")
    scales = tuple(recipe.scales)
    if not scales or any(not isinstance(s, int) or s < 2 for s in scales):
        raise ValueError(f"scales must be integers >= 2, got {recipe.scales!r}")
    if len(set(scales)) != len(scales):
        raise ValueError(f"scales {recipe.scales!r} repeat a scale")
    if len(scales) > 1 and not model_spec(name).multi_scale:
        raise ValueError(f"{name} is trained for one scale at a time, got {recipe.scales!r}")
    if name in ("srresnet", "srgan", "perceptual") and any(s & (s - 1) for s in scales):
        raise ValueError(f"{name} upsamples by 2 per block: scale must be 2, 4, 8 …, got {scales}")
    if recipe.lr_decay_every is not None and recipe.lr_decay_every < 1:
        raise ValueError(f"lr_decay_every must be >= 1 (None: never), got {recipe.lr_decay_every}")
    return replace(recipe, scales=scales)


def default_workdir(name: str, scales: Sequence[int]) -> Path:
    """``runs/<name>_x<scale>`` (``runs/vdsr_x2-3-4`` for several scales)."""
    return Path("runs") / f"{name}_x{'-'.join(map(str, scales))}"
