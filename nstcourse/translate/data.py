"""Unpaired training data for CycleGAN: two folders of images, no pairs between them.

Zhu et al. (and the reference code's ``unaligned`` dataset) train on batches of one image
of each domain: A[i] with a B image drawn at random, each resized so that a random
crop keeps most of it (286 px, then 256 px crops; the ratio 286/256 is kept at other crop
sizes) and flipped left-right with probability 1/2. One epoch is max(|A|, |B|) items.

The data pack's ``unpaired/horse2zebra`` holds ``trainA`` (500 horses), ``trainB`` (500
zebras), ``testA`` (120) and ``testB`` (140), 256×256 JPEGs. Any two folders of the user's
own (photos and paintings, summer and winter) work the same way.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from nstcourse.data import folder_files
from nstcourse.images import load_image, resize_long_side

LOAD_RATIO = 286 / 256  # the reference's load size over its crop size


def load_size_for(crop: int) -> int:
    """The side images are resized to before a ``crop`` is taken: 286 for 256, 143 for 128."""
    return round(crop * LOAD_RATIO)


def load_domain(folder: str, *, short_side: int, max_images: int | None = None) -> torch.Tensor:
    """The images of a data folder ("unpaired/horse2zebra/trainA") or of any folder given by
    its absolute path, each resized so that its shorter side is ``short_side`` and centre-
    cropped to a square of that side: (N, 3, short_side, short_side) uint8 (a quarter of the
    memory of float32; 1000 images of 143 px take 61 MB). At most ``max_images``, the first
    by name."""
    if short_side < 1:
        raise ValueError(f"short_side={short_side}: give a positive number of pixels")
    squares = []
    for path in folder_files(folder, limit=max_images):
        image = load_image(path)
        h, w = image.shape[-2:]
        image = resize_long_side(image, max(short_side, round(max(h, w) * short_side / min(h, w))))
        h, w = image.shape[-2:]
        top, left = (h - short_side) // 2, (w - short_side) // 2
        square = image[0, :, top : top + short_side, left : left + short_side]
        squares.append((square * 255).round().to(torch.uint8))
    return torch.stack(squares)


class UnpairedCrops(Dataset):
    """Item i: (x, y), random crops of A[i mod |A|] and of a random B image.

    Item i depends only on (``seed``, i): ``training.train`` resumes on the same batches.

    Args:
        domain_a, domain_b: (N, 3, S, S) uint8 images (``load_domain``), S ≥ ``crop``.
        crop: the side of the square crops (the paper's 256; multiples of 4 for the
            generator).
        seed: seeds the B index, the crop positions and the flips.

    Returns per item two (3, crop, crop) float tensors in [0, 1]. ``len`` is
    max(|A|, |B|), the reference's epoch.
    """

    def __init__(
        self, domain_a: torch.Tensor, domain_b: torch.Tensor, *, crop: int, seed: int = 0
    ) -> None:
        for name, images in (("domain_a", domain_a), ("domain_b", domain_b)):
            if images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
                raise ValueError(f"{name}: expected (N, 3, S, S) uint8, got {images.dtype} "
                                 f"{tuple(images.shape)}")  # fmt: skip
            if len(images) == 0:
                raise ValueError(f"{name} has no images")
            if min(images.shape[-2:]) < crop:
                raise ValueError(f"{name}: images of {tuple(images.shape[-2:])} are smaller "
                                 f"than crop={crop}")  # fmt: skip
        self.domain_a, self.domain_b, self.crop, self.seed = domain_a, domain_b, crop, seed

    def __len__(self) -> int:
        return max(len(self.domain_a), len(self.domain_b))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        rng = np.random.default_rng([self.seed, index])
        b = int(rng.integers(0, len(self.domain_b)))
        x = self._crop(self.domain_a[index % len(self.domain_a)], rng)
        return x, self._crop(self.domain_b[b], rng)

    def _crop(self, image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        i = int(rng.integers(0, image.shape[-2] - self.crop + 1))
        j = int(rng.integers(0, image.shape[-1] - self.crop + 1))
        crop = to_float(image[:, i : i + self.crop, j : j + self.crop])
        return (crop.flip(-1) if rng.integers(0, 2) else crop).contiguous()


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (``load_domain``) → float images in [0, 1], same shape."""
    return images.float() / 255
