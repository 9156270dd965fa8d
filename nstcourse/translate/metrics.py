r"""Offline measures of an unpaired translator, each with its blind spot.

FID and KID as published need Inception weights; these need only the VGG-19 the course
has (up to ``relu3_1``). Every image is described by the per-channel mean and standard
deviation of its VGG features at ``DESCRIPTOR_LAYERS`` (64 + 128 + 256 channels, so 896
numbers: colour and texture statistics, not object shape).

- ``DomainProbe``: a logistic regression trained on real images of the two domains' train
  splits. ``probe.share(features)`` is the fraction it calls domain Y. Report it for
  G(test X) between the floor (real test X, untranslated) and the ceiling (real test Y).
  Blind spot: it rewards Y's texture anywhere (stripes on grass count as "zebra") and
  background colour; it says nothing about realism or content kept.
- ``kid``: the kernel inception distance of Bińkowski et al. (2018) on these features,
  the unbiased MMD² with the cubic kernel :math:`k(a, b) = (a^\top b / d + 1)^3`,
  averaged over random subsets. ≈ 0 for two samples of one distribution. Blind spot: not
  Inception features, so not comparable with any paper ("VGG-KID"); large variance with
  a hundred images.
- ``cycle_l1``: ‖F(G(x)) − x‖₁ per pixel. Blind spot: the identity map scores 0, and a
  CycleGAN can hide what it needs to invert itself in faint high-frequency patterns (Chu
  et al. 2017), so a low cycle error does not prove the content was kept.
- ``spread``: the per-pixel standard deviation across a batch of images. Compare
  spread(G(x)) with spread(x): a generator that maps every input to the same picture
  (mode collapse) has spread ≈ 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

DESCRIPTOR_LAYERS = ("relu1_1", "relu2_1", "relu3_1")


def channel_statistics(
    images: torch.Tensor,
    extractor: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    *,
    layers: tuple[str, ...] = DESCRIPTOR_LAYERS,
    batch_size: int = 16,
) -> torch.Tensor:
    """(N, 3, H, W) images in [0, 1] → (N, 2·ΣC) features: for each layer, the mean and
    the standard deviation of every channel over the positions. ``extractor`` is a
    ``features.VGGFeatures`` computing at least ``layers``; runs without gradients."""
    rows = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            features = extractor(images[start : start + batch_size])
            parts = []
            for layer in layers:
                f = features[layer].float().flatten(2)  # (n, C, H·W)
                parts += [f.mean(-1), f.std(-1)]
            rows.append(torch.cat(parts, dim=1).cpu())
    return torch.cat(rows)


@dataclass(frozen=True)
class DomainProbe:
    """A linear classifier of the two domains (Y = 1) on standardised features.

    p(Y | f) = σ(w · (f − mean) / std + b); fit by ``DomainProbe.fit``.
    """

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    @classmethod
    def fit(
        cls, features_x: torch.Tensor, features_y: torch.Tensor, *, l2: float = 1e-2
    ) -> DomainProbe:
        """L2-regularised logistic regression, X labelled 0 and Y labelled 1, minimised
        with L-BFGS (200 iterations at most); the standardisation uses both samples."""
        f = torch.cat([features_x, features_y]).double()
        labels = torch.cat([torch.zeros(len(features_x)), torch.ones(len(features_y))]).double()
        mean, std = f.mean(0), f.std(0).clamp_min(1e-8)
        z = (f - mean) / std
        w = torch.zeros(f.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros((), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

        def loss() -> torch.Tensor:
            optimizer.zero_grad()
            value = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, labels)
            value = value + l2 * w.pow(2).sum()
            value.backward()
            return value

        optimizer.step(loss)
        return cls(mean, std, w.detach(), b.detach())

    def probability(self, features: torch.Tensor) -> torch.Tensor:
        """(N,) p(Y | features) in [0, 1]."""
        z = (features.double() - self.mean) / self.std
        return torch.sigmoid(z @ self.weight + self.bias)

    def share(self, features: torch.Tensor) -> float:
        """The fraction of the images the probe calls domain Y (p > 1/2)."""
        return (self.probability(features) > 0.5).double().mean().item()


def kid(
    features_a: torch.Tensor,
    features_b: torch.Tensor,
    *,
    subsets: int = 100,
    subset_size: int = 50,
    seed: int = 0,
) -> tuple[float, float]:
    """The KID between two samples of features: (mean, standard deviation) over
    ``subsets`` random subsets of ``subset_size`` of each (without replacement within a
    subset). Features are standardised first with the mean and std of both samples
    pooled. Unbiased: it can be slightly negative for samples of one distribution."""
    size = min(subset_size, len(features_a), len(features_b))
    if size < 2:
        raise ValueError(f"kid needs at least 2 features in each sample, got {size}")
    both = torch.cat([features_a, features_b]).double()
    mean, std = both.mean(0), both.std(0).clamp_min(1e-8)
    a, b = (features_a.double() - mean) / std, (features_b.double() - mean) / std
    d = a.shape[1]
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        x = a[torch.randperm(len(a), generator=generator)[:size]]
        y = b[torch.randperm(len(b), generator=generator)[:size]]
        k_xx, k_yy, k_xy = ((p @ q.T / d + 1) ** 3 for p, q in ((x, x), (y, y), (x, y)))
        off = size * (size - 1)
        mmd2 = (k_xx.sum() - k_xx.diag().sum()) / off + (k_yy.sum() - k_yy.diag().sum()) / off
        values.append((mmd2 - 2 * k_xy.mean()).item())
    spread = torch.tensor(values)
    return spread.mean().item(), spread.std().item() if subsets > 1 else 0.0


def cycle_l1(x: torch.Tensor, reconstruction: torch.Tensor) -> float:
    """Mean |F(G(x)) − x| per pixel and channel, images in [0, 1]."""
    return (reconstruction - x).abs().mean().item()


def spread(images: torch.Tensor) -> float:
    """Mean over pixels of the standard deviation across the (N, 3, H, W) batch."""
    if len(images) < 2:
        raise ValueError("spread needs at least 2 images")
    return images.float().std(0).mean().item()
