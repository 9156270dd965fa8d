"""nstcourse.colour: YIQ, luminance matching, colour matching, chrominance swap."""

from __future__ import annotations

import pytest
import torch

from nstcourse.colour import (
    gray_to_rgb,
    luminance,
    luminance_swap,
    match_colour,
    match_luminance,
    rgb_to_yiq,
    yiq_to_rgb,
)


def mid_range_image(seed: int, height: int = 24, width: int = 32) -> torch.Tensor:
    """(1, 3, H, W) with correlated channels around 0.5, far enough from 0 and 1 that the
    colour functions never clamp it (so their statistics can be checked exactly)."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.rand(3, 3, generator=generator) * 0.06 + 0.02 * torch.eye(3)
    noise = torch.randn(3, height * width, generator=generator)
    image = 0.5 + (mixing @ noise).reshape(1, 3, height, width)
    assert image.min() > 0.1 and image.max() < 0.9
    return image


def mean_and_cov(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = image.reshape(3, -1).double()
    return pixels.mean(dim=1), torch.cov(pixels, correction=0)


# ---------------------------------------------------------------- YIQ


def test_yiq_round_trip() -> None:
    image = torch.rand(2, 3, 8, 9)
    torch.testing.assert_close(yiq_to_rgb(rgb_to_yiq(image)), image, atol=1e-5, rtol=0)


def test_yiq_of_primaries_by_hand() -> None:
    red, white = torch.tensor([1.0, 0, 0]), torch.ones(3)
    image = torch.stack([red, white]).T.reshape(1, 3, 1, 2)
    yiq = rgb_to_yiq(image)[0, :, 0]
    torch.testing.assert_close(yiq[:, 0], torch.tensor([0.299, 0.595716, 0.211456]))
    torch.testing.assert_close(yiq[:, 1], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("value", [0.0, 0.25, 0.7, 1.0])
def test_luminance_of_a_gray_image_is_its_value(value: float) -> None:
    gray = torch.full((1, 3, 4, 5), value)
    y = luminance(gray)
    assert y.shape == (1, 1, 4, 5)
    torch.testing.assert_close(y, torch.full((1, 1, 4, 5), value))
    torch.testing.assert_close(rgb_to_yiq(gray)[:, 1:], torch.zeros(1, 2, 4, 5), atol=1e-6, rtol=0)


def test_gray_to_rgb_repeats_and_clamps() -> None:
    luma = torch.tensor([[[[-0.1, 0.3, 1.2]]]])
    rgb = gray_to_rgb(luma)
    assert rgb.shape == (1, 3, 1, 3)
    for channel in rgb[0, :, 0]:
        assert channel.tolist() == pytest.approx([0.0, 0.3, 1.0])


# ---------------------------------------------------------------- luminance matching


def test_match_luminance_gives_the_content_mean_and_std() -> None:
    style, content = mid_range_image(1, 20, 30), mid_range_image(2)
    content = 0.4 + 0.5 * (content - 0.5)  # a darker, flatter content
    matched = match_luminance(style, content)
    assert matched.shape == (1, 1, 20, 30)
    y = luminance(content)
    assert matched.mean().item() == pytest.approx(y.mean().item(), abs=1e-5)
    assert matched.std().item() == pytest.approx(y.std().item(), rel=1e-4)
    # a linear map of the style's luminance: perfectly correlated with it
    corr = torch.corrcoef(torch.stack([matched.flatten(), luminance(style).flatten()]))
    assert corr[0, 1].item() == pytest.approx(1.0, abs=1e-5)


def test_match_luminance_of_a_flat_style_does_not_divide_by_zero() -> None:
    matched = match_luminance(torch.full((1, 3, 4, 4), 0.3), mid_range_image(0))
    assert torch.isfinite(matched).all()


# ---------------------------------------------------------------- colour matching


def test_match_colour_gives_the_content_mean_and_covariance() -> None:
    style, content = mid_range_image(3, 30, 20), mid_range_image(4)
    matched = match_colour(style, content)
    assert matched.shape == style.shape and matched.dtype == style.dtype
    mean, cov = mean_and_cov(matched)
    mean_c, cov_c = mean_and_cov(content)
    torch.testing.assert_close(mean, mean_c, atol=1e-5, rtol=0)
    torch.testing.assert_close(cov, cov_c, atol=1e-6, rtol=1e-3)
    assert not torch.allclose(mean_and_cov(style)[1], cov_c, atol=1e-5)  # it did change


def test_match_colour_is_identity_when_style_is_content() -> None:
    image = mid_range_image(5)
    torch.testing.assert_close(match_colour(image, image), image, atol=1e-5, rtol=0)


def test_match_colour_clamps_to_the_unit_range() -> None:
    matched = match_colour(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 8, 8) ** 4)
    assert matched.min() >= 0.0 and matched.max() <= 1.0


# ---------------------------------------------------------------- luminance swap


def test_luminance_swap_keeps_y_of_the_first_and_iq_of_the_second() -> None:
    luma_source, colour_source = mid_range_image(6), mid_range_image(7)
    swapped = luminance_swap(luma_source, colour_source)
    assert swapped.min() > 0 and swapped.max() < 1  # no clamping in this test
    yiq = rgb_to_yiq(swapped)
    torch.testing.assert_close(yiq[:, :1], luminance(luma_source), atol=1e-5, rtol=0)
    torch.testing.assert_close(yiq[:, 1:], rgb_to_yiq(colour_source)[:, 1:], atol=1e-5, rtol=0)


def test_luminance_swap_takes_a_one_channel_luminance() -> None:
    luma, colour_source = luminance(mid_range_image(8)), mid_range_image(9)
    swapped = luminance_swap(luma, colour_source)
    torch.testing.assert_close(luminance(swapped), luma, atol=1e-5, rtol=0)


def test_luminance_swap_size_mismatch_is_value_error() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        luminance_swap(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
