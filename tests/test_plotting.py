"""Figures: images side by side, feature maps, loss curves (Agg backend, no display)."""

from __future__ import annotations

from collections.abc import Iterator

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from nstcourse.plotting import plot_losses, show_feature_maps, show_images

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def image_axes(fig: Figure) -> list:
    return [ax for ax in fig.axes if ax.images]


# ---------------------------------------------------------------- show_images


def test_show_images_one_row_with_titles() -> None:
    images = [torch.rand(1, 3, 8, 8), torch.rand(3, 8, 6)]
    fig = show_images(images, ["content", "style"])
    assert isinstance(fig, Figure)
    axes = image_axes(fig)
    assert len(fig.axes) == 2 and len(axes) == 2
    assert [ax.get_title() for ax in axes] == ["content", "style"]
    assert axes[1].images[0].get_array().shape == (8, 6, 3)


def test_show_images_ncols_makes_a_grid_with_blank_cells() -> None:
    fig = show_images([torch.rand(1, 3, 4, 4) for _ in range(5)], ncols=2)
    assert len(fig.axes) == 6  # 3 rows x 2 columns
    assert len(image_axes(fig)) == 5
    rows_cols = {ax.get_subplotspec().get_geometry()[:2] for ax in fig.axes}
    assert rows_cols == {(3, 2)}
    assert all(ax.get_title() == "" for ax in fig.axes)


def test_show_images_title_count_mismatch_is_value_error() -> None:
    with pytest.raises(ValueError, match="2 images but 1 titles"):
        show_images([torch.rand(1, 3, 4, 4)] * 2, ["only one"])


def test_show_images_empty_is_value_error() -> None:
    with pytest.raises(ValueError, match="no images"):
        show_images([])


# ---------------------------------------------------------------- show_feature_maps


def test_show_feature_maps_shows_at_most_the_available_channels() -> None:
    fig = show_feature_maps(torch.randn(1, 5, 6, 6), channels=8, title="relu1_1")
    axes = image_axes(fig)
    assert len(axes) == 5
    assert [ax.get_title() for ax in axes] == [f"ch {c}" for c in range(5)]
    assert fig.get_suptitle() == "relu1_1"


def test_show_feature_maps_limits_channels() -> None:
    features = torch.randn(1, 16, 4, 4, requires_grad=True)
    fig = show_feature_maps(features, channels=3)
    axes = image_axes(fig)
    assert len(axes) == 3
    assert torch.allclose(torch.as_tensor(axes[2].images[0].get_array()), features[0, 2].detach())


def test_show_feature_maps_rejects_batches() -> None:
    with pytest.raises(ValueError, match=r"\(1, C, H, W\)"):
        show_feature_maps(torch.randn(2, 4, 4, 4))


# ---------------------------------------------------------------- plot_losses


def test_plot_losses_one_line_per_series_log_scale() -> None:
    history = {"total": [10.0, 5.0, 2.0], "content": [4.0, 2.0, 1.0], "style": [6.0, 3.0, 1.0]}
    fig = plot_losses(history)
    (ax,) = fig.axes
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["total", "content", "style"]
    assert list(lines[0].get_ydata()) == [10.0, 5.0, 2.0]
    assert list(lines[0].get_xdata()) == [0, 1, 2]
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "step"
    assert ax.get_legend() is not None


def test_plot_losses_custom_x_and_linear_scale() -> None:
    fig = plot_losses({"loss": [3.0, 2.0]}, x=[10, 20], xlabel="epoch", log=False)
    (ax,) = fig.axes
    assert list(ax.get_lines()[0].get_xdata()) == [10, 20]
    assert ax.get_yscale() == "linear"
    assert ax.get_xlabel() == "epoch"
