r"""Conditional instance normalisation (Dumoulin, Shlens & Kudlur 2017, "A Learned
Representation for Artistic Style").

One transform network learns S styles at once: every instance-norm layer keeps one
(γ_s, β_s) pair per style, and all other weights are shared. Style s is

.. math:: \operatorname{CIN}(x, s) = \gamma_s \frac{x - \mu(x)}{\sigma(x)} + \beta_s,

with μ, σ the per-sample, per-channel mean and standard deviation over H, W. A convex
mix w of styles uses :math:`\gamma = \sum_s w_s \gamma_s`, :math:`\beta = \sum_s w_s
\beta_s` (the paper's style interpolation), and a new style can be learnt by training
only a new (γ, β) row (``new_style_parameters``).

Style weights are (N, S): row n says how much of each style sample n gets (one-hot for one
style, a convex mix for interpolation).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConditionalInstanceNorm2d(nn.Module):
    """Instance norm with a learnt (γ, β) per style, mixed by style weights.

    Args:
        num_features: C, the channels of the input.
        num_styles: S.
        eps: added to the variance (as ``nn.InstanceNorm2d``).

    ``forward(x, weights)``: x (N, C, H, W), weights (N, S) → (N, C, H, W). With S = 1 and
    weights of ones it equals ``nn.InstanceNorm2d(C, affine=True)`` with the same γ, β.
    """

    def __init__(self, num_features: int, num_styles: int, *, eps: float = 1e-5):
        super().__init__()
        if num_features < 1 or num_styles < 1:
            raise ValueError(
                f"num_features={num_features} and num_styles={num_styles} must be positive"
            )
        self.num_features, self.eps = num_features, eps
        self.gamma = nn.Parameter(torch.ones(num_styles, num_features))  # (S, C)
        self.beta = nn.Parameter(torch.zeros(num_styles, num_features))  # (S, C)

    @property
    def num_styles(self) -> int:
        return self.gamma.shape[0]

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if weights.dim() != 2 or weights.shape != (x.shape[0], self.num_styles):
            raise ValueError(
                f"style weights must be (N, S) = ({x.shape[0]}, {self.num_styles}), "
                f"got {tuple(weights.shape)}"
            )
        weights = weights.to(self.gamma)
        gamma = (weights @ self.gamma)[:, :, None, None]  # (N, C, 1, 1)
        beta = (weights @ self.beta)[:, :, None, None]
        return gamma * F.instance_norm(x, eps=self.eps) + beta

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_styles={self.num_styles}, eps={self.eps}"


def style_weights(
    style: int | Sequence[float] | torch.Tensor,
    *,
    num_styles: int,
    batch_size: int,
) -> torch.Tensor:
    """Turn a style choice into (N, S) weights.

    Args:
        style: an index (one style for the whole batch), S weights (one mix for the whole
            batch), or (N, S) weights (one row per sample).
        num_styles: S.
        batch_size: N.

    Returns:
        (N, S) float32. Weights are used as given (a mix should sum to 1; other values
        extrapolate between styles).
    """
    if isinstance(style, int):
        if not 0 <= style < num_styles:
            raise ValueError(f"style={style} out of range for {num_styles} styles")
        return F.one_hot(torch.full((batch_size,), style), num_styles).float()
    weights = torch.as_tensor(style, dtype=torch.float32)
    if weights.dim() == 1:
        weights = weights.expand(batch_size, -1)
    if weights.shape != (batch_size, num_styles):
        raise ValueError(
            f"style weights must be ({num_styles},) or ({batch_size}, {num_styles}), "
            f"got {tuple(weights.shape)}"
        )
    return weights


def interpolate_styles(a: int, b: int, t: float, *, num_styles: int) -> torch.Tensor:
    """(1, S) weights (1 - t) on style ``a`` and t on style ``b``: a slider from a to b."""
    for name, index in (("a", a), ("b", b)):
        if not 0 <= index < num_styles:
            raise ValueError(f"{name}={index} out of range for {num_styles} styles")
    weights = torch.zeros(1, num_styles)
    weights[0, a] += 1.0 - t
    weights[0, b] += t
    return weights


def cin_layers(net: nn.Module) -> list[ConditionalInstanceNorm2d]:
    """The ``ConditionalInstanceNorm2d`` modules of ``net``, in order."""
    return [m for m in net.modules() if isinstance(m, ConditionalInstanceNorm2d)]


def new_style_parameters(net: nn.Module) -> list[nn.Parameter]:
    """Extend a trained multi-style net by one style; return the parameters to optimise.

    Every ``ConditionalInstanceNorm2d`` gets a row S (0-based) for γ and β, initialised from
    the mean of the S trained rows (a neutral start). All other parameters of ``net`` are
    frozen (``requires_grad=False``), and a gradient hook zeroes the gradient of the old
    rows, so training ``torch.optim.Adam(new_style_parameters(net))`` with one-hot weights
    on style S (or any mix) changes only the new γ/β rows: the old styles stay bit-identical
    (as long as the optimiser adds no weight decay).

    The paper (Dumoulin et al. 2017, §4) reports that a new style learnt this way, with the
    rest of the network fixed, is nearly as good as training it with the others.
    """
    layers = cin_layers(net)
    if not layers:
        raise ValueError(
            f"{type(net).__name__} has no ConditionalInstanceNorm2d layers; build it with "
            "styles >= 2 (e.g. TransformNet(styles=8))"
        )
    net.requires_grad_(False)
    params = []
    for layer in layers:
        old = layer.num_styles
        for name in ("gamma", "beta"):
            table = getattr(layer, name).detach()
            grown = torch.cat([table, table.mean(dim=0, keepdim=True)])  # (S + 1, C)
            param = nn.Parameter(grown)
            param.register_hook(_keep_rows(old))
            setattr(layer, name, param)
            params.append(param)
    return params


def _keep_rows(old: int):
    """A gradient hook that zeroes the gradient of the first ``old`` rows."""

    def hook(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[:old] = 0
        return grad

    return hook
