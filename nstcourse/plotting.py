"""Figures for the notebooks: images side by side, feature maps, loss curves.

Each function returns its matplotlib Figure (so tests and papermill runs can inspect or
save it); in Jupyter the figure is shown by the cell as usual.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from nstcourse.images import to_numpy


def show_images(
    images: Sequence[torch.Tensor],
    titles: Sequence[str] | None = None,
    *,
    ncols: int | None = None,
    size: float = 3.5,
) -> Figure:
    """Plot (1, 3, H, W) or (3, H, W) images in [0, 1] in a grid, with optional titles."""
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(images)} images but {len(titles)} titles")
    if not images:
        raise ValueError("no images to show")
    ncols = ncols or len(images)
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index < len(images):
            ax.imshow(to_numpy(images[index]))
            if titles is not None:
                ax.set_title(titles[index])
    fig.tight_layout()
    return fig


def show_feature_maps(
    features: torch.Tensor, *, channels: int = 8, title: str | None = None, size: float = 1.8
) -> Figure:
    """Plot the first ``channels`` maps of features (1, C, H, W), each scaled to its range."""
    if features.dim() != 4 or features.shape[0] != 1:
        raise ValueError(f"expected features (1, C, H, W), got {tuple(features.shape)}")
    channels = min(channels, features.shape[1])
    fig, axes = plt.subplots(1, channels, figsize=(size * channels, size * 1.15), squeeze=False)
    for c, ax in enumerate(axes.flat):
        ax.imshow(features[0, c].detach().float().cpu().numpy(), cmap="viridis")
        ax.set_title(f"ch {c}", fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_losses(
    history: Mapping[str, Sequence[float]],
    *,
    x: Sequence[float] | None = None,
    xlabel: str = "step",
    log: bool = True,
) -> Figure:
    """Plot loss curves, one line per named series (e.g. total, content, style, tv)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in history.items():
        ax.plot(list(x) if x is not None else range(len(values)), list(values), label=name)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
