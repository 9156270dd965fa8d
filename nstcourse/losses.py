"""Losses of neural style transfer (Gatys et al. 2016; Johnson et al. 2016).

Shapes: features F are (N, C, H, W); Gram matrices are (N, C, C). Every loss returns a
scalar tensor, averaged over the batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Mean squared error between feature maps.

    Gatys et al. write :math:`\mathcal{L}_{content} = \tfrac12 \sum_{ij} (F_{ij} - P_{ij})^2`;
    we take the mean instead of the half-sum so that the loss does not grow with the
    image size or layer width (the weight α absorbs the constant).
    """
    if features.shape != target.shape:
        raise ValueError(
            f"content features {tuple(features.shape)} and target "
            f"{tuple(target.shape)} differ in shape"
        )
    return F.mse_loss(features, target)


def gram_matrix(features: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    r"""Gram matrix of each feature map: :math:`G_{ij} = \sum_k F_{ik} F_{jk}`.

    Args:
        features: (N, C, H, W).
        normalize: divide by C·H·W, so that Gram matrices of different layers and image
            sizes are comparable (Gatys' style loss divides by 4 N_l^2 M_l^2 instead).

    Returns:
        (N, C, C), symmetric and positive semi-definite.
    """
    if features.dim() != 4:
        raise ValueError(f"expected features of shape (N, C, H, W), got {tuple(features.shape)}")
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    gram = flat @ flat.transpose(1, 2)
    return gram / (c * h * w) if normalize else gram


def style_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    r"""Mean squared error between the Gram matrix of ``features`` and ``target_gram``.

    :math:`E_l = \operatorname{mean}_{ij} (G^l_{ij} - A^l_{ij})^2`; the style loss of
    Gatys et al. is :math:`\sum_l w_l E_l`. ``target_gram`` is (N, C, C) or (1, C, C)
    (one style for the whole batch).

    Against the paper: Gatys et al. divide :math:`\sum (G - A)^2` by :math:`4 C^2 (HW)^2`;
    with the Gram normalised by C·H·W and the mean over C² entries, ours divides by
    :math:`C^4 (HW)^2`, i.e. :math:`4/C_l^2` times theirs. Wide layers (relu5_1, C = 512)
    so weigh (64/512)² = 1/64 as much relative to relu1_1 as in the paper; per-layer
    weights w_l can restore the paper's balance (the PyTorch tutorial uses ours).
    """
    gram = gram_matrix(features)
    if target_gram.shape[-2:] != gram.shape[-2:]:
        raise ValueError(
            f"Gram matrix {tuple(gram.shape)} and target {tuple(target_gram.shape)} "
            "differ in channels; were they taken at the same layer?"
        )
    return F.mse_loss(gram, target_gram.expand_as(gram))


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    r"""Anisotropic total variation: mean absolute difference between neighbours.

    :math:`\mathcal{L}_{TV} = \operatorname{mean}|x_{i,j+1} - x_{i,j}| +
    \operatorname{mean}|x_{i+1,j} - x_{i,j}|` for an image (N, C, H, W); it penalises
    high-frequency noise and is 0 for a constant image.
    """
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().mean()
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().mean()
    return dx + dy


def guided_gram_matrix(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    r"""Gram matrix of the region a mask selects: Gatys et al. 2017's guided Gram matrices.

    :math:`G^{r}_{ij} = \sum_k (m_k F_{ik})(m_k F_{jk}) / (C \sum_k m_k^2)`, so that a mask of ones
    gives ``gram_matrix(features)`` and a region's Gram does not depend on its area.

    Args:
        features: (N, C, H, W).
        mask: (N or 1, 1, H, W) in [0, 1], already at the feature map's size.
    """
    if mask.shape[-2:] != features.shape[-2:]:
        raise ValueError(
            f"mask {tuple(mask.shape)} and features {tuple(features.shape)} differ in size"
        )
    masked = features * mask
    n, c = features.shape[:2]
    flat = masked.reshape(n, c, -1)
    area = (mask.reshape(mask.shape[0], -1) ** 2).sum(dim=1).clamp_min(1e-8)
    return flat @ flat.transpose(1, 2) / (c * area).reshape(-1, 1, 1)


Layers = Sequence[str] | Mapping[str, float]  # layer names, or names with weights


def layer_weights(layers: Layers) -> dict[str, float]:
    """``["relu1_1", …]`` → weight 1 each; ``{"relu1_1": 0.5, …}`` kept as given."""
    if isinstance(layers, str):
        raise TypeError(f"layers must be a list or a dict of names, not the string {layers!r}")
    if isinstance(layers, Mapping):
        return {name: float(weight) for name, weight in layers.items()}
    return {name: 1.0 for name in layers}
