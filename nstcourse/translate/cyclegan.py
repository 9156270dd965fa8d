r"""CycleGAN: unpaired image-to-image translation with cycle consistency.

Zhu, Park, Isola & Efros, "Unpaired Image-to-Image Translation using Cycle-Consistent
Adversarial Networks" (ICCV 2017, arXiv:1703.10593). Two generators translate between
domains X and Y (horses and zebras) without any paired example; two discriminators judge
each domain; translating there and back must return the input. The full objective is

.. math::
    \mathcal{L} = \mathcal{L}_{GAN}(G, D_Y) + \mathcal{L}_{GAN}(F, D_X)
        + \lambda\, \mathcal{L}_{cyc}(G, F) + \lambda_{id}\, \lambda\, \mathcal{L}_{id}(G, F),

    \mathcal{L}_{cyc} = \lVert F(G(x)) - x \rVert_1 + \lVert G(F(y)) - y \rVert_1, \qquad
    \mathcal{L}_{id} = \lVert G(y) - y \rVert_1 + \lVert F(x) - x \rVert_1,

with λ = 10 and λ_id = 0.5 (the reference code's defaults: the identity term, on by
default there, keeps colours from inverting). The GAN terms are least-squares (Mao et al.
2017): G minimises (D_Y(G(x)) − 1)², D_Y minimises ½[(D_Y(y) − 1)² + D_Y(G(x))²], and
D_Y sees G(x) through a pool of the last 50 fakes (Shrivastava et al. 2017).

Paper ↔ code (and the reference code, junyanz/pytorch-CycleGAN-and-pix2pix):

=========  ======================  ==========================
paper      here                    reference code
=========  ======================  ==========================
G: X → Y   ``CycleGANStep.G``      ``netG_A``
F: Y → X   ``CycleGANStep.F``      ``netG_B``
D_X        ``CycleGANStep.D_X``    ``netD_B`` (judges F(y))
D_Y        ``CycleGANStep.D_Y``    ``netD_A`` (judges G(x))
λ          ``lambda_cyc`` = 10     ``lambda_A``, ``lambda_B``
λ_id       ``lambda_id`` = 0.5     ``lambda_identity``
=========  ======================  ==========================

Value ranges: images enter and leave every public function in [0, 1], as everywhere in
the course. Inside ``ResnetGenerator.forward`` and ``PatchDiscriminator.forward`` they are
mapped to [−1, 1] (x ↦ 2x − 1) as the reference code normalises its inputs, and the
generator's tanh output is mapped back ((t + 1) / 2). The reference measures its L1 terms
on [−1, 1] images, where λ = 10 was tuned; ``CycleGANStep`` therefore weighs
``L1_SCALE`` × the L1 of [0, 1] images, the same number.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from nstcourse.training import autocast, optimizer_step

MULTIPLE = 4  # two stride-2 convolutions down and two ×2 up: sides must divide by 4
MIN_SIZE = 8  # the residual blocks work at 1/4 size; reflection padding needs 2 px there
L1_SCALE = 2.0  # an L1 distance of [-1, 1] images (the reference's) is twice that of [0, 1]
INIT_STD = 0.02  # the paper's N(0, 0.02) initialisation


def _signed(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] → [−1, 1], the range the reference code's networks see."""
    return 2 * images - 1


def _check_images(images: torch.Tensor, what: str) -> None:
    """ValueError unless ``images`` is (N, 3, H, W) with H, W multiples of 4 and ≥ 8."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{what} expects images of shape (N, 3, H, W), got {tuple(images.shape)}")
    h, w = images.shape[-2:]
    if h % MULTIPLE or w % MULTIPLE or min(h, w) < MIN_SIZE:
        raise ValueError(
            f"{what}: a {h}x{w} image does not fit; both sides must be multiples of "
            f"{MULTIPLE} and at least {MIN_SIZE} px (crop or pad the image)"
        )


class ResnetBlock(nn.Module):
    """R_k: x + (pad, conv3, IN, ReLU, pad, conv3, IN)(x); no ReLU after the sum.

    (N, k, H, W) → (N, k, H, W); reflection padding, instance norm without affine
    parameters (the convs keep their biases, as in the reference code).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """The CycleGAN generator (G or F), Johnson et al.'s network as the paper's appendix
    gives it: c7s1-ngf, d(2ngf), d(4ngf), ``blocks`` × R(4ngf), u(2ngf), u(ngf), c7s1-3.

    c7s1-k: reflection pad 3, 7×7 conv, instance norm, ReLU; dk: 3×3 conv, stride 2
    (zero padding 1), IN, ReLU; uk: 3×3 transposed conv, stride ½ (``output_padding=1``),
    IN, ReLU; the last c7s1-3 ends in tanh instead of IN + ReLU. Instance norm has no
    affine parameters. At ngf = 64 with 9 blocks (the paper's choice for 256-px images)
    it has 11,378,179 parameters, the reference's count; the paper uses 6 blocks at 128 px.
    The transposed convolutions can paint checkerboard artefacts (Odena et al. 2016).

    The layers sit in one ``self.model`` in the reference's order. Weights start from
    N(0, 0.02) (``init_weights``).

    Input: (N, 3, H, W) in [0, 1], H and W multiples of 4, at least 8 (ValueError
    otherwise). Output: (N, 3, H, W) in [0, 1].
    """

    def __init__(self, *, ngf: int = 64, blocks: int = 9):
        super().__init__()
        if ngf < 1 or blocks < 0:
            raise ValueError(f"ngf={ngf}, blocks={blocks}: ngf must be positive, blocks >= 0")
        self.ngf, self.blocks = ngf, blocks
        self.model = nn.Sequential(
            *_c7s1(3, ngf),
            *_down(ngf, 2 * ngf),
            *_down(2 * ngf, 4 * ngf),
            *(ResnetBlock(4 * ngf) for _ in range(blocks)),
            *_up(4 * ngf, 2 * ngf),
            *_up(2 * ngf, ngf),
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, 3, 7),
            nn.Tanh(),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, "ResnetGenerator")
        return (self.model(_signed(x)) + 1) / 2


def _c7s1(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.ReflectionPad2d(3),
        nn.Conv2d(c_in, c_out, 7),
        nn.InstanceNorm2d(c_out),
        nn.ReLU(True),
    ]


def _down(c_in: int, c_out: int) -> list[nn.Module]:
    conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
    return [conv, nn.InstanceNorm2d(c_out), nn.ReLU(True)]


def _up(c_in: int, c_out: int) -> list[nn.Module]:
    conv = nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1)
    return [conv, nn.InstanceNorm2d(c_out), nn.ReLU(True)]


class PatchDiscriminator(nn.Module):
    """The 70×70 PatchGAN (D_X or D_Y): one realness score per overlapping 70×70 patch.

    C64-C128-C256-C512 then a 1-channel map: Ck is a 4×4 conv with k filters (zero padding
    1; stride 2 for the first three, 1 for C512), instance norm (none on C64) and
    LeakyReLU(0.2); the last 4×4 conv (stride 1) gives the map. No sigmoid: the LSGAN losses
    take the raw scores. 2,764,737 parameters at ndf = 64, the reference's count.

    Each output pixel sees a ``receptive_field`` = 70 px square of the input (walking back
    1 → 4 → 7 → 16 → 34 → 70); instance norm's statistics couple the whole image, the
    convolutions only that window.

    Input: (N, 3, H, W) in [0, 1], H and W at least 32 (ValueError otherwise).
    Output: (N, 1, H/8 − 2, W/8 − 2) unbounded scores (30×30 at 256 px, 14×14 at 128 px):
    about 1 for "real", 0 for "fake" once trained.
    """

    def __init__(self, *, ndf: int = 64):
        super().__init__()
        if ndf < 1:
            raise ValueError(f"ndf={ndf}: the number of filters must be positive")
        widths = (ndf, 2 * ndf, 4 * ndf, 8 * ndf)
        strides = (2, 2, 2, 1)
        layers: list[nn.Module] = []
        c_in = 3
        for i, (c_out, stride) in enumerate(zip(widths, strides, strict=True)):
            layers.append(nn.Conv2d(c_in, c_out, 4, stride=stride, padding=1))
            if i > 0:
                layers.append(nn.InstanceNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, True))
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)
        init_weights(self)

    @property
    def receptive_field(self) -> int:
        """The side in input pixels that one output pixel sees, from the convolutions."""
        size = 1
        convs = [m for m in self.model if isinstance(m, nn.Conv2d)]
        for conv in reversed(convs):
            size = (size - 1) * conv.stride[0] + conv.kernel_size[0]
        return size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3 or min(x.shape[-2:]) < 32:
            raise ValueError(
                f"PatchDiscriminator expects (N, 3, H, W) images with sides of at least 32 px, "
                f"got {tuple(x.shape)}"
            )
        return self.model(_signed(x))


class CycleGAN(nn.Module):
    """The two generators a trained CycleGAN ships: ``G``: X → Y and ``F``: Y → X.

    ``forward(x)`` is G(x); ``forward(y, reverse=True)`` is F(y); (N, 3, H, W) in [0, 1]
    both ways, H and W multiples of 4. The discriminators are needed for training only.
    """

    def __init__(self, *, ngf: int = 64, blocks: int = 9):
        super().__init__()
        self.G = ResnetGenerator(ngf=ngf, blocks=blocks)
        self.F = ResnetGenerator(ngf=ngf, blocks=blocks)

    def forward(self, images: torch.Tensor, *, reverse: bool = False) -> torch.Tensor:
        return self.F(images) if reverse else self.G(images)


def init_weights(module: nn.Module, std: float = INIT_STD) -> nn.Module:
    """The reference's "normal" initialisation, in place: conv, transposed conv and linear
    weights from N(0, std) (the paper's std = 0.02), their biases 0; batch-norm scales from
    N(1, std), shifts 0. Norms without affine parameters have nothing to set. Returns
    ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module


# --- losses: every one a mean over all its elements, a scalar ---------------------------


def lsgan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """D's least-squares loss ½[mean (D(y) − 1)² + mean D(G(x))²]: real → 1, fake → 0.

    ``real_logits``, ``fake_logits``: D's score maps (any shapes) for real and (pooled,
    detached) fake images. The ½ is the reference's: it slows D relative to G.
    """
    return 0.5 * (((real_logits - 1) ** 2).mean() + (fake_logits**2).mean())


def lsgan_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's least-squares loss mean (D(G(x)) − 1)²: G wants its fakes called real."""
    return ((fake_logits - 1) ** 2).mean()


def cycle_loss(x: torch.Tensor, x_rec: torch.Tensor) -> torch.Tensor:
    """‖F(G(x)) − x‖₁ as a mean absolute difference: ``x_rec`` = F(G(x)), same shape as x."""
    return (x_rec - x).abs().mean()


def identity_loss(y: torch.Tensor, g_of_y: torch.Tensor) -> torch.Tensor:
    """‖G(y) − y‖₁ as a mean: a generator fed an image of its target domain should leave it
    alone (Taigman et al. 2017); it keeps colours, e.g. stops a sky turning purple."""
    return (g_of_y - y).abs().mean()


# --- the image pool -----------------------------------------------------------------------


class ImagePool(nn.Module):
    """The history of generated images D learns from (Shrivastava et al. 2017).

    ``pool(fakes)`` returns as many images as it is given, deciding per image: while the
    pool holds fewer than ``size`` images, it stores the new image and returns it; once
    full, with probability ½ it returns a stored image chosen uniformly and puts the new
    one in its place, else it returns the new image. ``size=0`` returns the input.

    The draws come from torch's global CPU RNG (which ``training`` checkpoints; the
    reference uses Python's ``random``, which a checkpoint would not restore) and the
    stored images are buffers (``images``: (size, C, H, W) float32, allocated at the first
    call for that image shape; ``count``: how many are filled), so the pool is part of the
    ``state_dict`` and a resumed run draws and returns exactly what an uninterrupted one
    would. Loading a state allocates the buffer to the saved shape, so a fresh pool loads a
    partly filled one.

    Input: (N, C, H, W) images (detached; any range, [0, 1] here). Output: (N, C, H, W)
    float32, detached.
    """

    images: torch.Tensor
    count: torch.Tensor

    def __init__(self, size: int = 50):
        super().__init__()
        if size < 0:
            raise ValueError(f"pool size {size}: use 0 (no pool) or a positive number")
        self.size = size
        self.register_buffer("images", torch.empty(0))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def forward(self, fakes: torch.Tensor) -> torch.Tensor:
        fakes = fakes.detach().float()
        if self.size == 0:
            return fakes
        self._allocate(fakes.shape[1:], fakes.device)
        return torch.stack([self._swap(image) for image in fakes])

    def _allocate(self, shape: torch.Size, device: torch.device) -> None:
        if self.images.numel() == 0:
            self.images = torch.zeros(self.size, *shape, device=device)
        elif self.images.shape[1:] != shape:
            raise ValueError(
                f"ImagePool holds {tuple(self.images.shape[1:])} images, got {tuple(shape)}: "
                "a pool takes one image size (crop the images to one size)"
            )

    def _swap(self, image: torch.Tensor) -> torch.Tensor:
        filled = int(self.count)
        if filled < self.size:
            self.images[filled] = image
            self.count += 1
            return image
        if torch.rand(()).item() > 0.5:
            index = int(torch.randint(self.size, ()))
            old = self.images[index].clone()
            self.images[index] = image
            return old
        return image

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, *args) -> None:
        # args: missing_keys, unexpected_keys, error_msgs (torch's signature)
        saved = state_dict.get(prefix + "images")
        if isinstance(saved, torch.Tensor) and saved.shape != self.images.shape:
            if saved.numel() and saved.shape[0] != self.size:
                error_msgs = args[-1]
                error_msgs.append(
                    f"{prefix}images holds {saved.shape[0]} images, this pool {self.size}"
                )
                return
            self.images = torch.empty_like(saved, device=self.images.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, *args)


# --- schedule and the update ---------------------------------------------------------------


def linear_decay(
    optimizer: torch.optim.Optimizer, *, constant_steps: int, decay_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The paper's schedule in steps: the initial rate for ``constant_steps`` updates, then
    a linear decay to 0 over ``decay_steps`` (the paper: 100 epochs each).

    Update k (counting from 0; ``training.train`` steps the scheduler once per update)
    runs at lr × min(1, max(0, 1 − (k − constant_steps) / decay_steps)): 1 up to
    ``constant_steps``, 1/decay_steps at the last update, 0 after.
    """
    if constant_steps < 0 or decay_steps < 1:
        raise ValueError(
            f"constant_steps={constant_steps}, decay_steps={decay_steps}: "
            "use constant_steps >= 0 and decay_steps >= 1"
        )

    def factor(step: int) -> float:
        return min(1.0, max(0.0, 1.0 - (step - constant_steps) / decay_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class CycleGANStep:
    """One CycleGAN update, as the reference code does it: G and F together, then D_X and D_Y.

    Args:
        G, F: the generators X → Y and Y → X (``ResnetGenerator``).
        D_X, D_Y: the discriminators of domains X and Y (``PatchDiscriminator``).
        opt_G: one optimizer over G's and F's parameters; opt_D: one over D_X's and D_Y's
            (the paper: Adam, lr 2e-4, betas (0.5, 0.999)).
        lambda_cyc: λ, the weight of the cycle loss (10).
        lambda_id: the identity weight as a fraction of λ (0.5: weight 5); 0 skips the two
            extra generator passes.
        pool_size: images in each pool (50); 0: D sees only the latest fakes.
        precision: "float32" or "bfloat16": the forward passes run under
            ``training.autocast``; losses, weights and optimizer state stay float32.

    Call: ``step((x, y))`` with x (N, 3, H, W) from X and y (N, 3, H, W) from Y, unpaired,
    in [0, 1], sides multiples of 4 and at least 32. First G and F minimise

        gan_G + gan_F + λ·cycle + λ_id·λ·identity

    with gan_G = ``lsgan_g_loss(D_Y(G(x)))``, gan_F = ``lsgan_g_loss(D_X(F(y)))``, cycle and
    identity the sums of both directions' L1 (× ``L1_SCALE``: the reference's [−1, 1]
    scale), with D_X and D_Y frozen; then D_Y on y against a pooled G(x) and D_X on x
    against a pooled F(y), summed. Both updates go through ``training.optimizer_step``: a
    non-finite loss raises FloatingPointError before the optimizer step it would poison
    (a NaN in G's loss before any weight changes). Returns floats {"loss": the generators'
    total, "gan_G", "gan_F", "cycle", "identity", "D_X", "D_Y"}.

    For ``nstcourse.training.train``: pass ``models`` (G, F, D_X, D_Y and the pools
    ``pool_X`` of fakes F(y) and ``pool_Y`` of fakes G(x), so that checkpoints hold them)
    as the model, ``optimizers`` ({"G": opt_G, "D": opt_D}) as the optimizer and this
    object as the step.
    """

    def __init__(
        self,
        G: nn.Module,
        F: nn.Module,
        D_X: nn.Module,
        D_Y: nn.Module,
        *,
        opt_G: torch.optim.Optimizer,
        opt_D: torch.optim.Optimizer,
        lambda_cyc: float = 10.0,
        lambda_id: float = 0.5,
        pool_size: int = 50,
        precision: str = "float32",
    ):
        autocast(torch.device("cpu"), precision)  # checks the name now
        if lambda_cyc < 0 or lambda_id < 0:
            raise ValueError(
                f"lambda_cyc={lambda_cyc}, lambda_id={lambda_id}: weights cannot be negative"
            )
        self.G, self.F, self.D_X, self.D_Y = G, F, D_X, D_Y
        self.pool_X, self.pool_Y = ImagePool(pool_size), ImagePool(pool_size)
        self.opt_G, self.opt_D = opt_G, opt_D
        self.lambda_cyc, self.lambda_id, self.precision = lambda_cyc, lambda_id, precision
        self.models = nn.ModuleDict(
            {"G": G, "F": F, "D_X": D_X, "D_Y": D_Y, "pool_X": self.pool_X, "pool_Y": self.pool_Y}
        )
        self.optimizers = {"G": opt_G, "D": opt_D}

    def __call__(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        x, y = batch
        fake_y, fake_x, terms = self._generators_step(x, y)
        terms.update(self._discriminators_step(x, y, fake_x, fake_y))
        return {name: value.item() for name, value in terms.items()}

    def _autocast(self, device: torch.device) -> torch.autocast:
        return autocast(device, self.precision)

    def _generators_step(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """G and F's update with D_X, D_Y frozen; returns G(x), F(y) and the loss terms."""
        with _frozen(self.D_X, self.D_Y):
            with self._autocast(x.device):
                fake_y, fake_x = self.G(x).float(), self.F(y).float()
                gan_G = lsgan_g_loss(self.D_Y(fake_y).float())
                gan_F = lsgan_g_loss(self.D_X(fake_x).float())
                rec_x, rec_y = self.F(fake_y).float(), self.G(fake_x).float()
                cycle = L1_SCALE * (cycle_loss(x, rec_x) + cycle_loss(y, rec_y))
                identity = self._identity(x, y)
                loss = gan_G + gan_F + self.lambda_cyc * (cycle + self.lambda_id * identity)
            optimizer_step(self.opt_G, loss, name="generator loss")
        terms = {"loss": loss, "gan_G": gan_G, "gan_F": gan_F, "cycle": cycle}
        return fake_y, fake_x, {**terms, "identity": identity}

    def _identity(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.lambda_id == 0:
            return torch.zeros((), device=x.device)
        same = identity_loss(y, self.G(y).float()) + identity_loss(x, self.F(x).float())
        return L1_SCALE * same

    def _discriminators_step(
        self, x: torch.Tensor, y: torch.Tensor, fake_x: torch.Tensor, fake_y: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """D_X and D_Y's update: real images → 1, pooled (detached) fakes → 0."""
        old_y, old_x = self.pool_Y(fake_y), self.pool_X(fake_x)
        with self._autocast(x.device):
            loss_Y = lsgan_d_loss(self.D_Y(y).float(), self.D_Y(old_y).float())
            loss_X = lsgan_d_loss(self.D_X(x).float(), self.D_X(old_x).float())
        optimizer_step(self.opt_D, loss_X + loss_Y, name="discriminator loss")
        return {"D_X": loss_X, "D_Y": loss_Y}


@contextlib.contextmanager
def _frozen(*modules: nn.Module) -> Iterator[None]:
    """``with _frozen(D_X, D_Y):`` their parameters need no gradient inside the block (their
    inputs still get one), as the reference's ``set_requires_grad(False)``; restored after,
    also after an exception."""
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
