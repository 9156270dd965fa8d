"""SR data: MATLAB bicubic resize by known answers, YCbCr, modcrop, patches, sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nstcourse.colour import rgb_to_ycbcr, y_channel, ycbcr_to_rgb
from nstcourse.metrics import psnr
from nstcourse.sr.data import PatchDataset, bicubic_upscale, degrade, imresize, load_sr_set, modcrop

# --- known answers from the kernel definition (independent of the implementation) ----


def keys(x: float) -> float:
    """Keys' cubic with a = -0.5, written out."""
    x = abs(x)
    if x <= 1:
        return 1.5 * x**3 - 2.5 * x**2 + 1
    if x <= 2:
        return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
    return 0.0


def resize_1d_by_loops(signal: list[float], scale: float) -> list[float]:
    """MATLAB's bicubic along one axis, pixel by pixel, 0-based centres, mirrored borders."""
    length = len(signal)
    out = []
    for o in range(int(round(length * scale))):
        centre = (o + 0.5) / scale - 0.5  # = MATLAB's u = x/s + 0.5 (1 - 1/s), 0-based
        stretch = min(scale, 1.0)  # antialiasing widens the kernel by 1/s when shrinking
        radius = 2 / stretch
        total, weight_sum = 0.0, 0.0
        for j in range(int(np.floor(centre - radius)), int(np.ceil(centre + radius)) + 1):
            weight = stretch * keys(stretch * (centre - j))
            k = j
            while not 0 <= k < length:  # symmetric reflection: ... 1 0 | 0 1 ... L-1 | L-1 ...
                k = -k - 1 if k < 0 else 2 * length - 1 - k
            total += weight * signal[k]
            weight_sum += weight
        out.append(total / weight_sum)
    return out


def resize_2d_by_loops(array: np.ndarray, scale: float) -> np.ndarray:
    rows = np.array([resize_1d_by_loops(list(row), scale) for row in array])
    return np.array([resize_1d_by_loops(list(col), scale) for col in rows.T]).T


def as_image(array: np.ndarray) -> torch.Tensor:
    return torch.tensor(array, dtype=torch.float64)[None, None]


def test_halving_weights_are_the_hand_derived_dyadic_ones() -> None:
    # s = 1/2: taps at distances 0.5, 1.5, 2.5, 3.5 from the centre, kernel k(t/2)/2:
    # k(.25) = .8671875, k(.75) = .2265625, k(1.25) = -.0703125, k(1.75) = -.0234375,
    # which sum to 1 per side, so the normalised weights are these halved.
    weights = np.array([-0.0234375, -0.0703125, 0.2265625, 0.8671875]) / 2
    weights = np.concatenate([weights, weights[::-1]])
    signal = np.arange(16, dtype=np.float64) ** 2  # a parabola, so the weights matter
    out = imresize(as_image(signal[None]), size=(1, 8))[0, 0, 0].numpy()
    # Output 4 samples around centre 8.5: input pixels 5..12, all interior.
    assert out[4] == pytest.approx(float(weights @ signal[5:13]), abs=1e-12)
    # Output 0 (centre 0.5) reaches pixels -3..4; mirrored, -3 -2 -1 -> 2 1 0.
    assert out[0] == pytest.approx(float(weights @ signal[[2, 1, 0, 0, 1, 2, 3, 4]]), abs=1e-12)


def test_doubling_gives_exact_known_values() -> None:
    # s = 2: output o samples u = o/2 - 0.25; for o = 0, u = -0.25: taps -2, -1, 0, 1 at
    # distances 1.75, 0.75, 0.25, 1.25; mirrored, -2 -> 1 and -1 -> 0.
    w175, w075, w025, w125 = -0.0234375, 0.2265625, 0.8671875, -0.0703125
    signal = [1.0, 2.0, 4.0, 8.0]
    out = imresize(as_image(np.array([signal])), scale=2.0)[0, 0, 0].tolist()
    assert len(out) == 8
    assert out[0] == pytest.approx(2 * w175 + 1 * w075 + 1 * w025 + 2 * w125, abs=1e-12)
    assert out[0] == pytest.approx(0.90625, abs=1e-12)
    # o = 3: u = 1.25: taps 0, 1, 2, 3 at distances 1.25, 0.25, 0.75, 1.75.
    assert out[3] == pytest.approx(1 * w125 + 2 * w025 + 4 * w075 + 8 * w175, abs=1e-12)
    # o = 7: u = 3.25: taps 2, 3, 4 -> 3, 5 -> 2 at distances 1.25, 0.25, 0.75, 1.75.
    assert out[7] == pytest.approx(4 * w125 + 8 * w025 + 8 * w075 + 4 * w175, abs=1e-12)


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25, 2.0, 3.0])
def test_2d_resize_matches_pixel_by_pixel_loops(scale: float) -> None:
    array = np.random.default_rng(0).random((12, 12))
    expected = resize_2d_by_loops(array, scale)
    got = imresize(as_image(array), scale=scale)[0, 0].numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_8x8_halving_matches_loops_and_is_not_clamped() -> None:
    array = np.zeros((8, 8))
    array[3:5, 3:5] = 1.0  # a bright square: the cubic's negative lobes dip below 0
    got = imresize(as_image(array), scale=0.5)[0, 0].numpy()
    np.testing.assert_allclose(got, resize_2d_by_loops(array, 0.5), atol=1e-12)
    assert got.min() < 0  # not clamped: callers clamp


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 2.0, 4.0])
def test_ramp_stays_a_ramp_in_the_interior(scale: float) -> None:
    ramp = np.arange(24, dtype=np.float64)
    out = imresize(as_image(ramp[None].repeat(3, 0)), scale=(1.0, scale))[0, 0, 1].numpy()
    centres = (np.arange(len(out)) + 0.5) / scale - 0.5
    interior = (centres > 2 / min(scale, 1) + 1) & (centres < 23 - 2 / min(scale, 1) - 1)
    assert interior.sum() >= 2
    np.testing.assert_allclose(out[interior], centres[interior], atol=1e-12)


@pytest.mark.parametrize("method", ["matlab", "pil", "torch"])
def test_constant_image_stays_constant(method: str) -> None:
    image = torch.full((2, 3, 15, 12), 0.4)
    for scale in (1 / 3, 2.0):
        out = imresize(image, scale=scale, method=method)
        assert torch.allclose(out, torch.tensor(102 / 255 if method == "pil" else 0.4), atol=1e-6)


def test_output_size_follows_matlab() -> None:
    image = torch.rand(1, 3, 255, 10)
    assert imresize(image, scale=1 / 3).shape[-2:] == (85, 4)  # ceil(3.33) = 4
    assert imresize(image, size=(20, 7)).shape[-2:] == (20, 7)
    with pytest.raises(ValueError, match="scale= or size="):
        imresize(image)
    with pytest.raises(ValueError, match="method"):
        imresize(image, scale=2.0, method="lanczos")


def test_three_methods_differ() -> None:
    generator = torch.Generator().manual_seed(0)
    hr = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 48, 48, generator=generator), 3, 1, 1)
    lr = {m: degrade(hr, 4, method=m) for m in ("matlab", "pil", "torch")}
    gaps = {
        pair: (lr[pair[0]] - lr[pair[1]]).abs().max().item()
        for pair in (("matlab", "pil"), ("matlab", "torch"), ("pil", "torch"))
    }
    print("max |difference| of ×4 LR images:", gaps)
    # PIL differs from MATLAB at the borders and by 8-bit rounding; torch has no antialias.
    assert gaps[("matlab", "pil")] > 0
    assert gaps[("matlab", "torch")] > gaps[("matlab", "pil")]
    interior = (slice(None), slice(None), slice(3, -3), slice(3, -3))
    # Away from the borders MATLAB and PIL agree to 8-bit rounding.
    assert (lr["matlab"] - lr["pil"])[interior].abs().max() <= 1.5 / 255


def test_resize_is_fast_for_512_pixels() -> None:
    import time

    image = torch.rand(1, 3, 512, 512)
    start = time.perf_counter()
    lr = imresize(image, scale=1 / 3)
    up = imresize(lr, scale=3.0)
    assert up.shape == (1, 3, 513, 513)
    assert time.perf_counter() - start < 1.0


def test_degrade_and_upscale_shapes_and_levels() -> None:
    hr = torch.rand(2, 3, 50, 41)
    lr = degrade(hr, 4)
    assert lr.shape == (2, 3, 12, 10)
    assert torch.equal(lr, torch.round(lr * 255) / 255)
    assert lr.min() >= 0 and lr.max() <= 1
    assert not torch.equal(degrade(hr, 4, quantize=False), lr)
    up = bicubic_upscale(lr, 4)
    assert up.shape == (2, 3, 48, 40) and up.min() >= 0 and up.max() <= 1


# --- colour ---------------------------------------------------------------------------


def test_ycbcr_known_values() -> None:
    colours = torch.tensor([[1.0, 1, 1], [0, 0, 0], [1, 0, 0]], dtype=torch.float64)
    ycbcr = rgb_to_ycbcr(colours.T.reshape(1, 3, 3, 1))[0, :, :, 0].T
    expected = torch.tensor(
        [
            [235, 128, 128],  # white: 16 + 219, Cb and Cr rows sum to 0
            [16, 128, 128],  # black
            [16 + 65.481, 128 - 37.797, 128 + 112.0],  # red: the first column
        ],
        dtype=torch.float64,
    )
    assert (ycbcr - expected / 255).abs().max() < 1e-12


def test_ycbcr_round_trip_and_y_channel() -> None:
    image = torch.rand(2, 3, 5, 7)
    assert (ycbcr_to_rgb(rgb_to_ycbcr(image)) - image).abs().max() < 1e-6
    y = y_channel(image)
    assert y.shape == (2, 1, 5, 7)
    assert y.min() >= 16 / 255 - 1e-6 and y.max() <= 235 / 255 + 1e-6
    with pytest.raises(ValueError, match="image"):
        rgb_to_ycbcr(torch.rand(1, 1, 4, 4))


# --- modcrop and patches --------------------------------------------------------------


def test_modcrop() -> None:
    image = torch.arange(7 * 10).reshape(1, 7, 10).float()
    assert modcrop(image, 3).shape == (1, 6, 9)
    assert torch.equal(modcrop(image, 3), image[:, :6, :9])  # bottom and right cropped
    assert modcrop(image[None], 4).shape == (1, 1, 4, 8)
    with pytest.raises(ValueError, match="scale"):
        modcrop(image, 0)


def _images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return [
        torch.rand(1, 3, 40, 37, generator=generator),
        torch.rand(3, 33, 50, generator=generator),
    ]


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("channels", ["y", "rgb"])
def test_patch_shapes(scale: int, channels: str) -> None:
    data = PatchDataset(
        _images(), scale=scale, patch_size=6, channels=channels, patches_per_image=3
    )
    c = 1 if channels == "y" else 3
    assert len(data) == 6
    lr, hr = data[5]
    assert lr.shape == (c, 6, 6) and hr.shape == (c, 6 * scale, 6 * scale)
    up_lr, up_hr = PatchDataset(
        _images(), scale=scale, patch_size=6, channels=channels, pre_upsample=True
    )[0]
    assert up_lr.shape == up_hr.shape == (c, 6 * scale, 6 * scale)


def _plane(h: int, w: int, dy: float, dx: float) -> torch.Tensor:
    """(1, 3, h, w) image whose value rises linearly: dy per row, dx per column."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return (dy * yy + dx * xx).double().expand(1, 3, h, w)


def test_patch_pairs_are_aligned() -> None:
    # Every pixel value is unique (y * w + x), so the HR patch tells where it was cut; the
    # LR patch must be the bicubic-upscaled degraded image at that same place.
    h, w, s = 48, 60, 3
    image = _plane(h, w, dy=w / (h * w), dx=1 / (h * w))
    data = PatchDataset(
        [image],
        scale=s,
        patch_size=5,
        channels="rgb",
        augment=False,
        pre_upsample=True,
        patches_per_image=20,
    )
    full_lr = bicubic_upscale(degrade(image, s), s)
    for index in range(20):
        lr, hr = data[index]
        i, j = (int(v) for v in (image[0, 0] == hr[0, 0, 0]).nonzero()[0])
        assert i % s == 0 and j % s == 0
        assert torch.equal(hr, image[0, :, i : i + 15, j : j + 15])
        assert torch.equal(lr, full_lr[0, :, i : i + 15, j : j + 15])


def test_augmentation_turns_lr_and_hr_alike_on_a_plane() -> None:
    # On a plane rising down and right, a patch's corner differences show its flip and
    # rotation; the (smaller) LR patch must show the same orientation as the HR patch.
    image = _plane(48, 60, dy=1 / 96, dx=1 / 120)
    data = PatchDataset([image], scale=3, patch_size=5, channels="rgb", patches_per_image=40)

    def orientation(patch: torch.Tensor) -> tuple[bool, bool]:
        return bool(patch[0, -1, 0] > patch[0, 0, 0]), bool(patch[0, 0, -1] > patch[0, 0, 0])

    seen = set()
    for index in range(40):
        lr, hr = data[index]
        assert orientation(lr) == orientation(hr)
        seen.add(orientation(hr))
    assert len(seen) == 4  # all four corner orders occur: the flips and turns happen


def test_patch_augmentation_is_the_same_transform_for_lr_and_hr() -> None:
    # HR and LR patches from the unaugmented dataset, transformed by every one of the 8
    # flips/rotations, must contain each augmented pair at the same transform.
    images = _images()
    plain = PatchDataset(
        images, scale=2, patch_size=4, channels="rgb", augment=False, patches_per_image=8
    )
    augmented = PatchDataset(
        images, scale=2, patch_size=4, channels="rgb", augment=True, patches_per_image=8
    )
    for index in range(16):
        lr0, hr0 = plain[index]
        lr, hr = augmented[index]  # same seed and index: same crop, then a transform
        matches = [
            (flip, turns)
            for flip in (False, True)
            for turns in range(4)
            if torch.equal(_transform(hr0, flip, turns), hr)
            and torch.equal(_transform(lr0, flip, turns), lr)
        ]
        assert matches, f"index {index}: lr and hr were transformed differently"


def _transform(x: torch.Tensor, flip: bool, turns: int) -> torch.Tensor:
    return torch.rot90(x.flip(-1) if flip else x, turns, dims=(-2, -1))


def test_patches_are_deterministic_per_seed_and_index() -> None:
    first, again, other = (
        PatchDataset(_images(), scale=3, patch_size=5, seed=seed) for seed in (0, 0, 1)
    )
    for index in (0, 7, 99, 150):
        assert all(torch.equal(a, b) for a, b in zip(first[index], again[index], strict=True))
    assert any(not torch.equal(first[i][1], other[i][1]) for i in range(5))
    assert not torch.equal(first[0][1], first[2][1])  # same image, another crop
    with pytest.raises(IndexError):
        first[len(first)]


def test_patch_dataset_errors() -> None:
    with pytest.raises(ValueError, match="patch_size"):
        PatchDataset(_images(), scale=4, patch_size=9)  # 36 px HR patch > 33 px image
    with pytest.raises(ValueError, match="channels"):
        PatchDataset(_images(), scale=2, patch_size=4, channels="ycbcr")
    with pytest.raises(ValueError, match="degradation"):
        PatchDataset(_images(), scale=2, patch_size=4, degradation="nearest")


def test_patch_dataset_works_with_a_dataloader() -> None:
    data = PatchDataset(_images(), scale=2, patch_size=4, patches_per_image=4)
    lr, hr = next(iter(torch.utils.data.DataLoader(data, batch_size=8, shuffle=False)))
    assert lr.shape == (8, 1, 4, 4) and hr.shape == (8, 1, 8, 8)


# --- the data pack --------------------------------------------------------------------


def test_load_sr_set_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, closed_port_url: str
) -> None:
    with pytest.raises(ValueError, match="Set5"):
        load_sr_set("Set6", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"sr/Set5.*NSTCOURSE_DATA_DIR"):
        load_sr_set("Set5", data_dir=tmp_path)
    # Unset and offline (a mirror where nothing listens): the error says what to do.
    monkeypatch.delenv("NSTCOURSE_DATA_DIR", raising=False)
    monkeypatch.setenv("NSTCOURSE_DATA_MIRROR", closed_port_url.rsplit("/", 1)[0])
    with pytest.raises(FileNotFoundError, match="sr/Set5.*NSTCOURSE_DATA_MIRROR"):
        load_sr_set("Set5")


@pytest.mark.datapack
def test_load_set5_and_set14(data_pack: Path) -> None:
    set5 = load_sr_set("Set5", data_dir=data_pack)
    assert [name for name, _ in set5] == ["baby", "bird", "butterfly", "head", "woman"]
    assert dict((n, tuple(x.shape)) for n, x in set5)["woman"] == (1, 3, 344, 228)
    bridge = dict(load_sr_set("Set14", data_dir=data_pack))["bridge"]
    assert bridge.shape[:2] == (1, 3)  # greyscale file, three channels
    assert torch.equal(bridge[:, 0], bridge[:, 1]) and torch.equal(bridge[:, 1], bridge[:, 2])


@pytest.mark.datapack
def test_load_sr_set_reads_the_environment(
    data_pack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NSTCOURSE_DATA_DIR", str(data_pack))
    t91 = load_sr_set("T91")
    assert len(t91) == 91 and all(x.shape[:2] == (1, 3) for _, x in t91)


@pytest.mark.datapack
def test_set5_bicubic_x3_baseline_is_the_papers(data_pack: Path) -> None:
    set5 = load_sr_set("Set5", data_dir=data_pack)
    results = {}
    for method in ("matlab", "pil", "torch"):
        for channel in ("y", "rgb"):
            values = []
            for _, hr in set5:
                hr = modcrop(hr, 3)
                up = bicubic_upscale(degrade(hr, 3, method=method), 3, method=method)
                values.append(psnr(up, hr, shave=3, channel=channel))
            results[method, channel] = float(np.mean(values))
    for (method, channel), value in results.items():
        print(f"Set5 bicubic x3, {method:6s} resize, {channel:3s}: {value:.3f} dB")
    # SRCNN (Dong et al. 2014), Table 2; VDSR and others report the same 30.39 dB.
    assert results["matlab", "y"] == pytest.approx(30.39, abs=0.05)
