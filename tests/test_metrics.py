"""PSNR and SSIM against scikit-image and known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from nstcourse.colour import y_channel
from nstcourse.metrics import blob_share, psnr, saturated, ssim


def _pair(height: int = 24, width: int = 20, n: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A random image and a noisy copy, float64 in [0, 1]."""
    generator = torch.Generator().manual_seed(1)
    hr = torch.rand(n, 3, height, width, generator=generator, dtype=torch.float64)
    noise = 0.1 * torch.randn(n, 3, height, width, generator=generator, dtype=torch.float64)
    return (hr + noise).clamp(0, 1), hr


def _hwc(image: torch.Tensor) -> np.ndarray:
    return image[0].permute(1, 2, 0).numpy()


def _skimage_ssim(a: np.ndarray, b: np.ndarray, **kwargs) -> float:
    return structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, **kwargs
    )


def test_psnr_rgb_matches_skimage() -> None:
    sr, hr = _pair()
    expected = peak_signal_noise_ratio(_hwc(hr), _hwc(sr), data_range=1.0)
    got = psnr(sr, hr, channel="rgb", quantize=False)
    assert got == pytest.approx(expected, abs=1e-6)


def test_psnr_y_with_shave_matches_skimage() -> None:
    sr, hr = _pair()
    y_sr, y_hr = (y_channel(x)[0, 0, 3:-3, 3:-3].numpy() for x in (sr, hr))
    expected = peak_signal_noise_ratio(y_hr, y_sr, data_range=1.0)
    assert psnr(sr, hr, shave=3, quantize=False) == pytest.approx(expected, abs=1e-6)


def test_psnr_quantize_rounds_images_and_y_to_8_bits() -> None:
    sr, hr = _pair()
    sr8, hr8 = (np.round(_hwc(x) * 255) for x in (sr, hr))  # 8-bit levels as floats
    weights = np.array([65.481, 128.553, 24.966]) / 255

    def y8(rgb8: np.ndarray) -> np.ndarray:  # MATLAB rgb2ycbcr on uint8: rounded
        return np.round(16 + rgb8 @ weights)[2:-2, 2:-2]

    expected = peak_signal_noise_ratio(y8(hr8), y8(sr8), data_range=255)
    assert psnr(sr, hr, shave=2) == pytest.approx(expected, abs=1e-6)
    rgb_expected = peak_signal_noise_ratio(hr8, sr8, data_range=255)
    assert psnr(sr, hr, channel="rgb") == pytest.approx(rgb_expected, abs=1e-6)


def test_psnr_known_mse_and_data_range() -> None:
    hr = torch.full((1, 3, 8, 8), 0.5, dtype=torch.float64)
    sr = hr + 0.1  # MSE = 0.01 -> PSNR = 10 log10(1 / 0.01) = 20 dB
    assert psnr(sr, hr, channel="rgb", quantize=False) == pytest.approx(20.0, abs=1e-9)
    assert psnr(255 * sr, 255 * hr, channel="rgb", quantize=False, data_range=255) == (
        pytest.approx(20.0, abs=1e-9)
    )


def test_psnr_of_identical_images_is_inf() -> None:
    _, hr = _pair()
    assert psnr(hr, hr) == math.inf
    assert psnr(hr, hr, channel="rgb", quantize=False) == math.inf


def test_psnr_batch_returns_one_value_per_image() -> None:
    sr, hr = _pair(n=3)
    values = psnr(sr, hr, shave=1)
    assert isinstance(values, torch.Tensor) and values.shape == (3,)
    assert values[1].item() == pytest.approx(psnr(sr[1:2], hr[1:2], shave=1), abs=1e-12)


def test_psnr_of_single_channel_y_input() -> None:
    sr, hr = _pair()
    y_sr, y_hr = y_channel(sr), y_channel(hr)
    assert psnr(y_sr, y_hr, quantize=False) == pytest.approx(psnr(sr, hr, quantize=False))


@pytest.mark.parametrize("shave", [0, 4])
def test_ssim_rgb_matches_skimage(shave: int) -> None:
    sr, hr = _pair(height=32, width=27)
    crop = slice(shave, -shave or None)
    a, b = _hwc(sr)[crop, crop], _hwc(hr)[crop, crop]
    expected = _skimage_ssim(a, b, channel_axis=2, data_range=1.0)
    got = ssim(sr, hr, shave=shave, channel="rgb", quantize=False)
    assert got == pytest.approx(expected, abs=1e-6)


def test_ssim_y_matches_skimage() -> None:
    sr, hr = _pair(height=30, width=33)
    y_sr, y_hr = (y_channel(x)[0, 0, 3:-3, 3:-3].numpy() for x in (sr, hr))
    expected = _skimage_ssim(y_sr, y_hr, data_range=1.0)
    assert ssim(sr, hr, shave=3, quantize=False) == pytest.approx(expected, abs=1e-6)


def test_ssim_quantized_and_data_range_match_skimage() -> None:
    sr, hr = _pair(height=16, width=16)
    a, b = (np.round(_hwc(x) * 255) for x in (sr, hr))
    expected = _skimage_ssim(a, b, channel_axis=2, data_range=255)
    assert ssim(sr, hr, channel="rgb") == pytest.approx(expected, abs=1e-6)
    got = ssim(255 * sr, 255 * hr, channel="rgb", quantize=False, data_range=255)
    assert got == pytest.approx(
        _skimage_ssim(255 * _hwc(sr), 255 * _hwc(hr), channel_axis=2, data_range=255), abs=1e-6
    )


def test_ssim_of_identical_images_is_one_and_batch_shape() -> None:
    sr, hr = _pair(n=2)
    assert ssim(hr[:1], hr[:1]) == pytest.approx(1.0, abs=1e-12)
    values = ssim(sr, hr)
    assert values.shape == (2,) and bool((values < 1).all())


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_errors_name_the_argument(metric) -> None:
    sr, hr = _pair()
    with pytest.raises(ValueError, match="same shape"):
        metric(sr[..., :-1], hr)
    with pytest.raises(ValueError, match="shave"):
        metric(sr, hr, shave=12)
    with pytest.raises(ValueError, match="channel"):
        metric(sr, hr, channel="lab")
    with pytest.raises(ValueError, match="data_range"):
        metric(sr, hr, data_range=0)


def test_ssim_needs_an_11_pixel_window_after_shaving() -> None:
    sr, hr = _pair(height=20, width=20)
    with pytest.raises(ValueError, match="shave=5"):
        ssim(sr, hr, shave=5)  # 10x10 left


# --- blob_share -------------------------------------------------------------------------


def _sky(h: int = 100, w: int = 100) -> torch.Tensor:
    """A photo with no near-white pixel: a grey-blue gradient."""
    ramp = torch.linspace(0.3, 0.7, w).expand(h, w)
    return torch.stack([ramp, ramp, ramp + 0.1])[None]


def test_blob_share_counts_new_white_regions_above_the_size_floor() -> None:
    photo = _sky()
    out = photo.clone()
    out[..., 10:30, 10:30] = 1.0  # 400 px = 4 % of the image: a blob
    out[..., 60:62, 60:62] = 1.0  # 4 px = 0.04 %: a highlight, below 0.2 %
    out[..., 80:90, 5:15] = torch.tensor([1.0, 1.0, 0.5]).view(3, 1, 1)  # yellow: not white
    assert blob_share(out, photo) == pytest.approx(0.04)
    assert blob_share(out, photo, min_area=0.0) == pytest.approx(0.0404)
    assert blob_share(out, photo, kind="dark") == 0.0


def test_blob_share_ignores_white_the_photo_already_has_and_joins_diagonals() -> None:
    photo = _sky()
    photo[..., :20, :] = 1.0  # a white wall in the photo
    out = photo.clone()
    out[..., :40, :] = 0.97  # stays near-white there; 20 new rows below it are a blob
    assert blob_share(out, photo) == pytest.approx(0.2)
    diagonal = _sky()
    for i in range(30):  # a one-pixel diagonal line: one 8-connected region of 30 px
        diagonal[..., i, i] = 1.0
    assert blob_share(diagonal, _sky(), min_area=0.0029) == pytest.approx(0.003)


def test_blob_share_dark_holes_and_bad_input() -> None:
    photo = _sky()
    out = photo.clone()
    out[0, :, 50:70, 50:70] = 0.02
    assert blob_share(out, photo, kind="dark") == pytest.approx(0.04)
    assert blob_share(out[0], photo[0], kind="dark") == pytest.approx(0.04)
    with pytest.raises(ValueError, match="one shape"):
        blob_share(out, photo[..., :50])
    with pytest.raises(ValueError, match="batch of 2"):
        blob_share(torch.cat([out, out]), torch.cat([photo, photo]))
    with pytest.raises(ValueError, match="level"):
        blob_share(out, photo, level=0.4)


def test_saturated_white_and_dark_need_every_channel_clipped_any_two() -> None:
    image = torch.full((1, 3, 2, 2), 0.5)
    image[0, :, 0, 0] = 1.0  # white
    image[0, :, 0, 1] = torch.tensor([1.0, 1.0, 0.5])  # yellow-ish: two channels high
    image[0, :, 1, 0] = 0.0  # black
    image[0, :, 1, 1] = torch.tensor([0.01, 0.15, 0.0])  # dark green: two channels low
    assert saturated(image).tolist() == [[True, False], [False, False]]
    assert saturated(image, "dark").tolist() == [[False, False], [True, False]]
    assert saturated(image, "clipped").tolist() == [[True, True], [True, True]]
    assert saturated(image[0], level=0.5).tolist() == [[True, True], [False, False]]
    with pytest.raises(ValueError, match="kind='red'"):
        saturated(image, "red")


def test_blob_share_clipped_counts_saturated_colour_the_white_measure_misses() -> None:
    photo = _sky()
    out = photo.clone()
    out[0, :, 10:30, 10:30] = torch.tensor([0.0, 0.6, 0.0]).view(3, 1, 1)  # 4 %: green blob
    out[0, :, 50:60, 50:70] = torch.tensor([0.9, 0.0, 0.0]).view(3, 1, 1)  # 2 %: red patch
    out[0, :, 80:90, 80:90] = torch.tensor([1.0, 0.5, 0.5]).view(3, 1, 1)  # 1 %: one channel
    assert blob_share(out, photo) == 0.0
    assert blob_share(out, photo, kind="dark") == 0.0
    assert blob_share(out, photo, kind="clipped") == pytest.approx(0.06)
    photo[0, :, 50:60, 50:70] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)  # the photo's own red
    assert blob_share(out, photo, kind="clipped") == pytest.approx(0.04)
