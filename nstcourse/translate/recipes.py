"""The CycleGAN recipe and ``train_cyclegan``, a short caller of ``recipes.run_recipe``.

``CycleGANRecipe`` holds every setting, with the paper's value beside the course's where
they differ: the paper's ResNet-9 generator at ngf 64 on 256 px crops for 266,800
iterations (200 epochs of horse2zebra) takes weeks on a 2-core CPU; the course's default,
a ResNet-6 at ngf 32 on 128 px crops (the paper's choice of 6 blocks at 128 px), is what a
few CPU-hours can train. Everything else is the reference code's.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch

from nstcourse.features import VGGFeatures
from nstcourse.recipes import Run, run_recipe
from nstcourse.runmode import pick_device
from nstcourse.training import resolve_precision
from nstcourse.translate.cyclegan import (
    CycleGAN,
    CycleGANStep,
    PatchDiscriminator,
    init_weights,
    linear_decay,
)
from nstcourse.translate.data import UnpairedCrops, load_domain, load_size_for, to_float
from nstcourse.translate.metrics import (
    DESCRIPTOR_LAYERS,
    DomainProbe,
    channel_statistics,
    cycle_l1,
    spread,
)

HORSES, ZEBRAS = "unpaired/horse2zebra/trainA", "unpaired/horse2zebra/trainB"
TEST_SPLITS = ("unpaired/horse2zebra/testA", "unpaired/horse2zebra/testB")


@dataclass(frozen=True)
class CycleGANRecipe:
    """How a CycleGAN is trained (``train_cyclegan``); the paper's values in the comments.

    The learning rate is constant for ``constant_steps`` updates, then falls linearly to 0
    over ``decay_steps`` (the paper: 100 epochs each); ``steps`` is their sum.
    """

    domain_a: str = HORSES  # X: a data folder name, or an absolute path to a folder
    domain_b: str = ZEBRAS  # Y
    max_images: int | None = None  # per domain; None = all
    crop: int = 128  # paper: 256 (images resized to 286 first; the same ratio here)
    ngf: int = 32  # paper: 64 generator filters
    blocks: int = 6  # paper: 9 residual blocks at 256 px, 6 at 128 px
    ndf: int = 64  # paper: 64 discriminator filters
    batch_size: int = 1  # paper: 1
    lr: float = 2e-4  # paper: Adam 2e-4, betas (0.5, 0.999)
    beta1: float = 0.5
    lambda_cyc: float = 10.0  # paper: λ = 10
    lambda_id: float = 0.5  # paper: 0.5 λ (the reference code's default)
    pool_size: int = 50  # paper: 50
    constant_steps: int = 8000  # paper: 100 epochs = 133,400 iterations
    decay_steps: int = 8000  # paper: 100 epochs
    precision: str = "auto"  # bfloat16 where native, else float32
    checkpoint_every: int = 200  # Ctrl-C loses at most this many steps

    @property
    def steps(self) -> int:
        return self.constant_steps + self.decay_steps


def train_cyclegan(
    *,
    out: str | os.PathLike,
    workdir: str | os.PathLike,
    recipe: CycleGANRecipe | None = None,
    steps: int | None = None,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
    command: str | None = None,
    validate_on: tuple[str, str] | None = None,
    validate_every: int = 500,
) -> dict[str, Any]:
    """Train G: A → B and F: B → A by ``recipe`` and write both to ``out``.

    Args:
        out: the ``.safetensors`` file (a ``CycleGAN``: G and F), written at the end.
        workdir: the checkpoint folder; the same call resumes there.
        recipe: default ``CycleGANRecipe()`` (horses → zebras); change it with
            ``dataclasses.replace``.
        steps: total updates, default ``recipe.steps``; fewer stops early (a pilot), the
            schedule stays the recipe's.
        seed, progress, device, command: as for ``recipes.run_recipe``.
        validate_on: two folders of held-out images of A and B (for horses and zebras
            ``TEST_SPLITS``), scored every ``validate_every`` steps and at the end by
            ``TranslationScore``; None: no validation.

    Returns the metadata written into ``out`` plus "history" (``recipes.run_recipe``).
    """
    recipe = CycleGANRecipe() if recipe is None else recipe
    if not isinstance(recipe, CycleGANRecipe):
        raise TypeError(f"recipe must be a CycleGANRecipe, got {type(recipe).__name__}")
    if recipe.crop % 4 or recipe.crop < 32:
        raise ValueError(f"crop={recipe.crop}: use a multiple of 4 of at least 32")
    device = pick_device(device)
    recipe = replace(recipe, precision=resolve_precision(recipe.precision, device))
    steps = recipe.steps if steps is None else steps

    def build(recipe: CycleGANRecipe, seed: int, device: torch.device) -> Run:
        run = _build(recipe, seed, device)
        if validate_on is not None:
            test_a, test_b = (load_domain(f, short_side=recipe.crop) for f in validate_on)
            extractor = VGGFeatures(DESCRIPTOR_LAYERS, arch="vgg19", device=device)
            data, net = run.dataset, run.net
            assert isinstance(data, UnpairedCrops) and isinstance(net, CycleGAN)
            score = TranslationScore(
                extractor, (data.domain_a, data.domain_b), (test_a, test_b), device=device
            )
            run.validate, run.validate_every = lambda _models: score(net), validate_every
            run.info.update(validate_on=list(validate_on), probe_reference=score.reference)
            run.finish = lambda history: {"metrics": {"test": _last_score(history)}}
        return run

    return run_recipe(
        "cyclegan",
        recipe,
        build,
        steps=steps,
        out=out,
        workdir=workdir,
        command=command or f"train_cyclegan(steps={steps}, seed={seed}, out={str(out)!r})",
        seed=seed,
        progress=progress,
        device=device,
    )


def _build(recipe: CycleGANRecipe, seed: int, device: torch.device) -> Run:
    side = load_size_for(recipe.crop)
    domain_a = load_domain(recipe.domain_a, short_side=side, max_images=recipe.max_images)
    domain_b = load_domain(recipe.domain_b, short_side=side, max_images=recipe.max_images)
    net = CycleGAN(ngf=recipe.ngf, blocks=recipe.blocks)
    D_X, D_Y = PatchDiscriminator(ndf=recipe.ndf), PatchDiscriminator(ndf=recipe.ndf)
    for module in (net, D_X, D_Y):
        init_weights(module)
    betas = (recipe.beta1, 0.999)
    generators = itertools.chain(net.G.parameters(), net.F.parameters())
    opt_G = torch.optim.Adam(generators, lr=recipe.lr, betas=betas)
    opt_D = torch.optim.Adam(
        itertools.chain(D_X.parameters(), D_Y.parameters()), lr=recipe.lr, betas=betas
    )
    step = CycleGANStep(
        net.G, net.F, D_X, D_Y, opt_G=opt_G, opt_D=opt_D, lambda_cyc=recipe.lambda_cyc,
        lambda_id=recipe.lambda_id, pool_size=recipe.pool_size, precision=recipe.precision,
    )  # fmt: skip
    schedule = dict(constant_steps=recipe.constant_steps, decay_steps=recipe.decay_steps)
    schedulers = {"G": linear_decay(opt_G, **schedule), "D": linear_decay(opt_D, **schedule)}
    return Run(
        net=net,
        kwargs={"ngf": recipe.ngf, "blocks": recipe.blocks},
        step=step,
        optimizer=step.optimizers,
        dataset=UnpairedCrops(domain_a, domain_b, crop=recipe.crop, seed=seed),
        model=step.models,
        scheduler=schedulers,
        info={"images_a": len(domain_a), "images_b": len(domain_b)},
    )


Translator = Callable[[torch.Tensor], torch.Tensor]


class GeneratorPair(Protocol):
    """What ``TranslationScore`` scores: a ``CycleGAN``, or any G and F (a baseline)."""

    @property
    def G(self) -> Translator: ...

    @property
    def F(self) -> Translator: ...


def _last_score(history: dict[str, list]) -> dict[str, float]:
    """The validation ``training.train`` ran after the last step, without its "step"."""
    return {k: v for k, v in history["validation"][-1].items() if k != "step"}


class TranslationScore:
    """``score(net) -> {metric: value}`` for a ``CycleGAN`` on held-out images.

    A ``DomainProbe`` is fit once on the VGG statistics of the training images (A = 0,
    B = 1). ``score`` returns "b_share_of_G": the share of G(test A) the probe calls B,
    "a_share_of_F": the share of F(test B) it calls A, "cycle_l1_a" and "cycle_l1_b"
    (``metrics.cycle_l1`` of F(G(a)) and G(F(b))), "spread_ratio_G": spread(G(test A)) /
    spread(test A) (≈ 0: collapse). ``train_features`` are the (A, B) training images'
    ``features``; ``reference`` holds the probe's floor and ceiling:
    "b_share_of_real_a" (untranslated test A) and "b_share_of_real_b" (real test B).
    """

    def __init__(
        self,
        extractor: VGGFeatures,
        train: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor],
        *,
        device: torch.device,
    ) -> None:
        """``train`` and ``test``: the (A, B) images, uint8 (N, 3, S, S) from ``load_domain``;
        ``extractor`` computes ``metrics.DESCRIPTOR_LAYERS`` on ``device``."""
        self.extractor, self.device = extractor, device
        self.test_a, self.test_b = to_float(test[0]), to_float(test[1])
        self.train_features = [self.features(to_float(images)) for images in train]
        self.probe = DomainProbe.fit(*self.train_features)
        self.reference = {
            "b_share_of_real_a": self.probe.share(self.features(self.test_a)),
            "b_share_of_real_b": self.probe.share(self.features(self.test_b)),
        }

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] → (N, 896) ``metrics.channel_statistics``."""
        return channel_statistics(images.to(self.device), self.extractor)

    def translate(self, generator: Translator, images: torch.Tensor) -> torch.Tensor:
        """``generator`` over ``images`` in batches of 16, on the CPU after."""
        with torch.no_grad():
            batches = [images[k : k + 16].to(self.device) for k in range(0, len(images), 16)]
            return torch.cat([generator(batch).cpu() for batch in batches])

    def __call__(self, net: GeneratorPair) -> dict[str, float]:
        g_a = self.translate(net.G, self.test_a)
        f_b = self.translate(net.F, self.test_b)
        return {
            "b_share_of_G": self.probe.share(self.features(g_a)),
            "a_share_of_F": 1 - self.probe.share(self.features(f_b)),
            "cycle_l1_a": cycle_l1(self.test_a, self.translate(net.F, g_a)),
            "cycle_l1_b": cycle_l1(self.test_b, self.translate(net.G, f_b)),
            "spread_ratio_G": spread(g_a) / spread(self.test_a),
        }
