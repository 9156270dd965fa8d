"""Training recipes for the feed-forward style networks, and ``train_style``.

One frozen dataclass per technique says how it is trained: photos, crops, batch,
optimiser, loss weights. Defaults are sized for a CPU (the course's CI and a student's
laptop); each comment gives the paper's value beside ours. A builder per technique turns
a recipe into a ``recipes.Run`` (network, crops, perceptual loss, optimiser), and
``train_style`` hands it to ``recipes.run_recipe``, the protocol every course checkpoint
goes through (work folder, exact resume, metadata, atomic save), adding what only the
style track needs: the measured speed (ms per 512×512 image on the device it trained on)
and the VGG the network was trained with.

- "johnson": ``fast_style.TransformNet`` for one style (Johnson et al. 2016);
- "cin": the same network with conditional instance norm for S styles (Dumoulin et al.
  2017); each sample of a batch gets a random style;
- "adain": ``adain.Decoder`` behind a fixed VGG-19 (Huang & Belongie 2017), trained on
  (photo, painting) pairs.

Every loss uses VGG-19 layers up to relu3_x, which the data pack's VGG-19 covers (README,
"Data and weights"). Data (catalog datasets, fetched on first use, as that section says):
photos from ``photos/bsds500_train`` (the papers used MS-COCO), paintings from
``images/style`` (public-domain ones only; the AdaIN paper used ~80,000 WikiArt
paintings).

Change a recipe with ``dataclasses.replace``: ``train_style("johnson", ..., recipe=replace(
JohnsonRecipe(), crop=256))``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from nstcourse.conventions import by_convention
from nstcourse.data import load_style_images, load_training_images
from nstcourse.features import VGGFeatures
from nstcourse.images import ImageError, resize_long_side
from nstcourse.recipes import Run, device_name, run_recipe
from nstcourse.runmode import pick_device
from nstcourse.style.adain import INPUT_SCALE, STYLE_LAYERS, AdaINNet, Decoder
from nstcourse.style.fast_style import MIN_SIZE, PerceptualLoss, TransformNet
from nstcourse.training import supervised_step
from nstcourse.vgg_weights import weights_sha256

PHOTOS = "photos/bsds500_train"
# Public-domain paintings of the data pack (candy, mosaic: licence unknown; rain-princess:
# under copyright; so they are left out of what we train and ship).
PAINTINGS = tuple(
    f"images/style/{name}"
    for name in (
        "starry_night.jpg",
        "the_scream.jpg",
        "woman_with_hat_matisse.jpg",
        "composition_vii.jpg",
        "wave_crop.jpg",
        "the_shipwreck_of_the_minotaur.jpg",
        "monet_woman_with_parasol.jpg",
        "renoir_bal_du_moulin_de_la_galette.jpg",
        "monet_water_lilies.jpg",
        "van_gogh_sunflowers.jpg",
        "seurat_sunday_afternoon.jpg",
        "mondrian.jpg",
        "udnie.jpg",
    )
)
# λ_s for λ_c = 1, by the VGG weights' input convention, from the per-convention table:
# Caffe features are ~58x larger (0-255 input, no std), and the style term (Gram of Gram)
# grows with the 4th power of that, the content term with the square. torchvision:
# pytorch/examples' 1e10 / 1e5. Caffe: that ratio scaled by 58^-2 would be ~30, but with
# our three shallow style layers the trained net then forgets the photo (its content loss
# ends above a grey image's), as it did at λ_s = 3 already; λ_s = 1 makes keeping the photo
# pay (docs/experiments.md). Sources and derivations: nstcourse.conventions.
DEFAULT_STYLE_WEIGHT = by_convention("feed_forward_style_weight")


# --- recipes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class JohnsonRecipe:
    """Johnson et al. 2016: one TransformNet per style, perceptual loss on VGG-19."""

    # Hokusai (public domain); lengstrom's reference wave net was trained on this file.
    styles: tuple[str, ...] = ("images/style/engstrom_training/wave.jpg",)
    data: str = PHOTOS  # paper: 80k MS-COCO images
    max_images: int | None = None  # None = all 200 photos (tests use 2)
    short_side: int | None = 160  # photos scaled first, so a crop keeps most of the scene
    crop: int = 128  # paper: 256x256; 128 is 4x cheaper on a CPU
    crops_per_image: int = 100
    style_size: int = 256  # long side of the style image for the Gram targets
    width: int = 32  # paper: 32, 64, 128 channels
    res_blocks: int = 5  # paper: 5
    upsample: str = "nearest"  # paper: transposed convs ("transpose"), with checkerboards
    output_range: float = 1.0  # TransformNet: y = 1/2 + (r/2)·tanh; paper: 1 ([0, 255])
    batch_size: int = 4  # paper: 4
    # paper: Adam 1e-3. At 1e-3 our short runs paint saturated white blobs on flat areas;
    # 5e-4 does not (docs/experiments.md)
    lr: float = 5e-4
    content_layers: tuple[str, ...] = ("relu2_2",)  # paper: relu2_2 of VGG-16 (figures)
    style_layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3")  # paper: + relu4_3
    content_weight: float = 1.0  # λ_c; only λ_s / λ_c and λ_TV / λ_c matter
    style_weight: float | None = None  # λ_s; None: DEFAULT_STYLE_WEIGHT by VGG convention
    tv_weight: float = 0.0  # paper: 1e-6 … 1e-4 by cross-validation; 0 in pytorch/examples
    steps: int = 4000  # suggested for a CPU run; paper: 40k steps (2 epochs of COCO)
    checkpoint_every: int = 100  # Ctrl-C loses at most this many steps
    time_size: int = 512  # the image side at which the speed is measured


@dataclass(frozen=True)
class CINRecipe(JohnsonRecipe):
    """Dumoulin et al. 2017: one TransformNet with conditional instance norm, S styles.

    Each sample of a batch gets a random style (its own Gram target); paper: batch 16,
    lr 1e-3, 40k steps for 32 styles, 256 crops, VGG-16 style layers up to relu4_1.
    """

    styles: tuple[str, ...] = PAINTINGS[:10]  # 10 public-domain paintings (N >= 8)
    # Johnson's 5e-4 still paints flat patches of clipped colour with 10 styles in one net;
    # a quarter of it does not (docs/experiments.md)
    lr: float = 1.25e-4
    steps: int = 10_000  # suggested for a CPU run; more styles need more steps


@dataclass(frozen=True)
class AdaINRecipe:
    """Huang & Belongie 2017: a decoder for AdaIN(f(c), f(s)), for any style image."""

    layer: str = "relu3_1"  # paper: relu4_1, which the data pack's VGG-19 lacks
    # paper: ~80k WikiArt paintings. We train on the first 10 of our 13 and hold out
    # Seurat, Mondrian and Picabia, so that the notebook can show styles it never saw.
    styles: tuple[str, ...] = PAINTINGS[:10]
    data: str = PHOTOS  # paper: MS-COCO
    max_images: int | None = None
    short_side: int | None = 256  # paper: smallest side 512, then random 256 crops
    style_short_side: int = 256
    crop: int = 128  # paper: 256
    crops_per_image: int = 100
    batch_size: int = 4  # paper: 8 (content, style) pairs
    lr: float = 5e-4  # paper: Adam 1e-4 for 160k steps; a CPU budget is ~1k steps
    style_weight: float = 10.0  # paper: λ = 10
    steps: int = 10_000  # suggested for a CPU run; paper: 160k iterations
    checkpoint_every: int = 100
    time_size: int = 512


RECIPES: dict[str, type[Any]] = {"johnson": JohnsonRecipe, "cin": CINRecipe, "adain": AdaINRecipe}


# --- data ------------------------------------------------------------------------------------


class RandomCrops(Dataset):
    """Random square crops (with a random horizontal flip) of a list of images.

    Item ``index`` is a crop of image ``index % len(images)`` that depends only on
    (``seed``, ``index``), so ``training.train`` resumes on exactly the same batches.

    Args:
        images: (1, 3, H, W) or (3, H, W) tensors in [0, 1].
        size: crop side in pixels.
        short_side: scale each image first so its shorter side is this (None: as is).
        crops_per_image: length of the dataset per image (an "epoch").
        seed: seeds the crop positions and flips.

    Returns per item (3, size, size) in [0, 1].
    """

    def __init__(
        self,
        images: Sequence[torch.Tensor],
        *,
        size: int,
        short_side: int | None = None,
        crops_per_image: int = 100,
        seed: int = 0,
    ) -> None:
        if len(images) == 0:
            raise ValueError("images is empty")
        if crops_per_image < 1:
            raise ValueError(f"crops_per_image must be positive, got {crops_per_image}")
        self.size, self.crops_per_image, self.seed = size, crops_per_image, seed
        self.images = []
        for number, image in enumerate(images):
            image = image if image.dim() == 4 else image[None]
            if short_side is not None:
                h, w = image.shape[-2:]
                image = resize_long_side(image, round(max(h, w) * short_side / min(h, w)))
            if min(image.shape[-2:]) < size:
                raise ValueError(
                    f"images[{number}] is {tuple(image.shape[-2:])}, smaller than the crop "
                    f"size={size} (short_side={short_side})"
                )
            self.images.append(image[0].contiguous())

    def __len__(self) -> int:
        return len(self.images) * self.crops_per_image

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} crops")
        image = self.images[index % len(self.images)]
        rng = np.random.default_rng([self.seed, index])
        i = int(rng.integers(0, image.shape[-2] - self.size + 1))
        j = int(rng.integers(0, image.shape[-1] - self.size + 1))
        crop = image[:, i : i + self.size, j : j + self.size]
        return (crop.flip(-1) if rng.integers(0, 2) else crop).contiguous()


class WithStyleIndex(Dataset):
    """(crop, style index): each item of ``dataset`` with a random style in [0, S)."""

    def __init__(self, dataset: RandomCrops, *, num_styles: int, seed: int = 0) -> None:
        self.dataset, self.num_styles, self.seed = dataset, num_styles, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        rng = np.random.default_rng([self.seed, index, 1])
        return self.dataset[index], int(rng.integers(0, self.num_styles))


class ContentStylePairs(Dataset):
    """(photo crop, painting crop): item i pairs content[i] with a random style crop."""

    def __init__(self, content: RandomCrops, style: RandomCrops, *, seed: int = 0) -> None:
        self.content, self.style, self.seed = content, style, seed

    def __len__(self) -> int:
        return len(self.content)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index, 2])
        return self.content[index], self.style[int(rng.integers(0, len(self.style)))]


# --- building a run --------------------------------------------------------------------------


def _photos(recipe, seed: int) -> RandomCrops:
    images = load_training_images([recipe.data], max_images=recipe.max_images)
    return RandomCrops(
        images,
        size=recipe.crop,
        short_side=recipe.short_side,
        crops_per_image=recipe.crops_per_image,
        seed=seed,
    )


def _style_images(paths: Sequence[str], *, long_side: int | None = None) -> list[torch.Tensor]:
    """The recipe's style images (``load_style_images``), each refused with an ImageError
    naming it if a side is under MIN_SIZE px, before or after shrinking to ``long_side``:
    a smaller one (1x1 px) would be scaled up to a flat colour and trained on silently.
    MIN_SIZE (8 px, the TransformNet's smallest input, as fast-stylize asks of style
    images) also covers the VGG: the style layers up to relu3_x need 4 px."""
    images = []
    for name, image in zip(paths, load_style_images(paths), strict=True):
        _check_style_side(image, name, "")
        if long_side is not None and max(image.shape[-2:]) != long_side:
            image = resize_long_side(image, long_side)
            _check_style_side(image, name, f" (after scaling its long side to {long_side} px)")
        images.append(image)
    return images


def _check_style_side(image: torch.Tensor, name: str, after: str) -> None:
    height, width = image.shape[-2:]
    if min(height, width) < MIN_SIZE:
        raise ImageError(
            f"style image {name}: {width}x{height} px{after} is too small to train on; both "
            f"sides need at least {MIN_SIZE} px"
        )


def _build_transform(recipe: JohnsonRecipe, seed: int, device) -> Run:
    count = len(recipe.styles)
    layers = list(dict.fromkeys([*recipe.content_layers, *recipe.style_layers]))
    vgg = VGGFeatures(layers, arch="vgg19", device=device)
    style_weight = recipe.style_weight
    if style_weight is None:
        style_weight = DEFAULT_STYLE_WEIGHT[vgg.weights_info.convention]
    loss = PerceptualLoss(
        vgg,
        styles=_style_images(recipe.styles, long_side=recipe.style_size),
        content_layers=recipe.content_layers,
        style_layers=recipe.style_layers,
        content_weight=recipe.content_weight,
        style_weight=style_weight,
        tv_weight=recipe.tv_weight,
    )
    kwargs = dict[str, Any](
        width=recipe.width,
        res_blocks=recipe.res_blocks,
        upsample=recipe.upsample,
        styles=count,
        output_range=recipe.output_range,
    )
    net = TransformNet(**kwargs)
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    photos = _photos(recipe, seed)
    dataset: Dataset = photos
    if count > 1:
        dataset = WithStyleIndex(photos, num_styles=count, seed=seed)

        def terms(net, batch):
            x, index = batch
            return loss(net(x, _one_hot(index, count)), x, style=index)

    else:

        def terms(net, batch):
            return loss(net(batch), batch)

    def stylize(x):
        return net(x, 0 if count > 1 else None)

    run = Run(net, kwargs, supervised_step(net, terms, optimizer), optimizer, dataset)
    return _with_speed(run, stylize, recipe, vgg, style_weight, device)


def _one_hot(index: torch.Tensor, num_styles: int) -> torch.Tensor:
    """(N,) style indices → (N, S) one-hot weights."""
    return torch.nn.functional.one_hot(index, num_styles).float()


def _build_adain(recipe: AdaINRecipe, seed: int, device) -> Run:
    vgg = VGGFeatures(list(STYLE_LAYERS[recipe.layer]), arch="vgg19", device=device)
    kwargs: dict[str, Any] = {
        "layer": recipe.layer,
        "input_scale": INPUT_SCALE[vgg.weights_info.convention],
        "encoder_convention": vgg.weights_info.convention,
    }
    decoder = Decoder(**kwargs)
    decoder.carry_encoder(vgg)  # the checkpoint holds the encoder it is trained behind
    model = AdaINNet(vgg, decoder)
    paintings = RandomCrops(
        _style_images(recipe.styles),
        size=recipe.crop,
        short_side=recipe.style_short_side,
        crops_per_image=recipe.crops_per_image,
        seed=seed + 1,  # not the photos' crop positions
    )
    dataset = ContentStylePairs(_photos(recipe, seed), paintings, seed=seed)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=recipe.lr)

    def terms(_decoder, batch):
        content, style = batch
        return model.loss(content, style, style_weight=recipe.style_weight)

    style_image = paintings.images[0][None]

    def stylize(x):
        return model(x, style_image.to(x.device))

    step = supervised_step(decoder, terms, optimizer)
    run = Run(decoder, kwargs, step, optimizer, dataset)
    return _with_speed(run, stylize, recipe, vgg, recipe.style_weight, device)


def _with_speed(run: Run, stylize, recipe, vgg: VGGFeatures, style_weight: float, device) -> Run:
    """The style track's metadata: λ_s as used, the measured speed and the VGG it needs."""
    run.info = {"style_weight": style_weight}

    def finish(history: dict[str, list]) -> dict[str, Any]:
        speed = ms_per_image(stylize, size=recipe.time_size, device=device)
        info = vgg.weights_info
        return {
            "metrics": {
                "speed": {
                    f"ms_per_{recipe.time_size}px_image": round(speed, 2),
                    "device": device_name(device),
                    "mode": "eager, inference_mode, batch 1",
                }
            },
            "vgg": {
                "arch": "vgg19",
                "file": Path(info.path).name,
                "sha256": weights_sha256(info.path),
                "convention": info.convention,
                "random_layers": vgg.random_layers,
            },
        }

    run.finish = finish
    return run


BUILDERS: dict[str, Callable[..., Run]] = {
    "johnson": _build_transform,
    "cin": _build_transform,
    "adain": _build_adain,
}


# --- speed -----------------------------------------------------------------------------------


def ms_per_image(
    stylize: Callable[[torch.Tensor], torch.Tensor],
    *,
    size: int = 512,
    device: str | torch.device | None = None,
    repeats: int = 3,
) -> float:
    """Median wall time in ms of ``stylize`` on one random size×size image (after a warm-up),
    eager, under ``torch.inference_mode``."""
    device = pick_device(device)
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            stylize(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[1:])


# --- train_style -----------------------------------------------------------------------------


def train_style(
    name: str,
    *,
    steps: int,
    out: str | os.PathLike,
    recipe: Any = None,
    seed: int = 0,
    workdir: str | os.PathLike | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Train style network ``name`` by its recipe and write it to ``out`` (``run_recipe``).

    Args:
        name: "johnson", "cin" or "adain".
        steps: total optimizer updates (a resumed run counts those already done).
        out: the ``.safetensors`` file to write (atomically, at the end).
        recipe: a recipe instance (default: ``RECIPES[name]()``); change a
            hyper-parameter with ``dataclasses.replace``. Its ``styles`` are image paths
            (absolute, or relative to the data dir): johnson one; cin S ≥ 2 (their order
            is the style index); adain the paintings to train on.
        seed: seeds the initial weights, the crops and the batches.
        workdir: the checkpoint folder; default ``runs/<name>``. A run there is resumed
            (its recipe and seed must be the same; ``steps`` may grow).
        progress: show a progress bar.
        device: None picks CUDA, then MPS, then CPU.
        command: how ``out`` is made, stored in its metadata (``nstcourse train-style``
            passes its command line); None: this Python call.

    Returns:
        the metadata written into ``out`` ({"model", "class", "kwargs", "recipe",
        "metrics", "vgg"}) plus "history", the ``training.train`` history (not stored).

    A Ctrl-C propagates; the checkpoint in ``workdir`` is complete and the same call
    resumes from it.
    """
    if name not in RECIPES:
        raise ValueError(f"no style recipe for {name!r}; known: {', '.join(RECIPES)}")
    recipe = RECIPES[name]() if recipe is None else recipe
    if type(recipe) is not RECIPES[name]:
        raise TypeError(f"recipe for {name} must be a {RECIPES[name].__name__}")
    recipe = replace(recipe, styles=tuple(str(s) for s in recipe.styles))
    count = len(recipe.styles)
    if name == "johnson" and count != 1:
        raise ValueError(f"johnson trains one style, got {count}; use 'cin' for several")
    if name in ("cin", "adain") and count < 2:
        raise ValueError(f"{name} trains on several styles, got {count}")
    return run_recipe(
        name,
        recipe,
        BUILDERS[name],
        steps=steps,
        out=out,
        workdir=workdir if workdir is not None else Path("runs") / name,
        command=command or f"train_style({name!r}, steps={steps}, seed={seed}, out={str(out)!r})",
        seed=seed,
        progress=progress,
        device=device,
    )
