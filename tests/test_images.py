"""Images in and out: every file a student may have becomes a (1, 3, H, W) tensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from nstcourse.images import (
    ImageError,
    from_numpy,
    from_pil,
    load_image,
    resize_long_side,
    save_image,
    to_numpy,
    to_pil,
)

ORIENTATION = 0x0112  # EXIF tag


# ---------------------------------------------------------------- helpers


def noise_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Seeded random (H, W, 3) uint8 image."""
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def write_image(path: Path, pil: Image.Image, **options) -> Path:
    pil.save(path, **options)
    return path


def corner_image(width: int = 40, height: int = 20) -> Image.Image:
    """Blue image with a red top-left quadrant (large blocks survive JPEG)."""
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[..., 2] = 255
    array[: height // 2, : width // 2] = (255, 0, 0)
    return Image.fromarray(array)


def assert_valid_image(image: torch.Tensor, height: int, width: int) -> None:
    assert image.shape == (1, 3, height, width)
    assert image.dtype == torch.float32
    assert image.min() >= 0.0
    assert image.max() <= 1.0


def pixel(image: torch.Tensor, y: int, x: int) -> list[float]:
    return image[0, :, y, x].tolist()


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".bmp", ".webp", ".tif"])
def test_load_image_reads_common_formats(tmp_path: Path, suffix: str) -> None:
    array = np.full((12, 20, 3), (200, 100, 50), dtype=np.uint8)
    path = write_image(tmp_path / f"solid{suffix}", Image.fromarray(array))
    image = load_image(path)
    assert_valid_image(image, 12, 20)
    expected = torch.tensor([200, 100, 50]) / 255
    assert torch.allclose(image[0, :, 6, 10], expected, atol=4 / 255)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_load_image_lossless_formats_are_exact(tmp_path: Path, suffix: str) -> None:
    array = noise_rgb(9, 13)
    path = write_image(tmp_path / f"noise{suffix}", Image.fromarray(array))
    assert np.array_equal(to_numpy(load_image(path), dtype=np.uint8), array)


# ---------------------------------------------------------------- modes


def test_load_image_grayscale_l_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = np.array([[0, 51], [204, 255]], dtype=np.uint8)
    path = write_image(tmp_path / "gray.png", Image.fromarray(gray, mode="L"))
    image = load_image(path)
    assert_valid_image(image, 2, 2)
    for channel in range(3):
        assert torch.allclose(image[0, channel], torch.from_numpy(gray / 255).float())


def test_load_image_la_composites_transparent_pixels_onto_background(tmp_path: Path) -> None:
    la = np.array([[[100, 255], [100, 0]]], dtype=np.uint8)  # 1x2: opaque, transparent
    path = write_image(tmp_path / "la.png", Image.fromarray(la, mode="LA"))
    image = load_image(path, background=(0.0, 0.5, 1.0))
    assert_valid_image(image, 1, 2)
    assert pixel(image, 0, 0) == pytest.approx([100 / 255] * 3, abs=1e-6)
    assert pixel(image, 0, 1) == pytest.approx([0.0, 0.5, 1.0], abs=1e-6)


def test_load_image_rgba_composites_with_alpha(tmp_path: Path) -> None:
    rgba = np.array(
        [[[255, 0, 0, 255], [255, 0, 0, 0], [255, 0, 0, 51]]], dtype=np.uint8
    )  # opaque red, fully transparent, 20 % red
    path = write_image(tmp_path / "rgba.png", Image.fromarray(rgba, mode="RGBA"))
    white = load_image(path)  # default background is white
    assert_valid_image(white, 1, 3)
    assert pixel(white, 0, 0) == pytest.approx([1.0, 0.0, 0.0], abs=1e-6)
    assert pixel(white, 0, 1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
    assert pixel(white, 0, 2) == pytest.approx([1.0, 0.8, 0.8], abs=1e-6)
    black = load_image(path, background=(0.0, 0.0, 0.0))
    assert pixel(black, 0, 1) == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)
    assert pixel(black, 0, 2) == pytest.approx([0.2, 0.0, 0.0], abs=1e-6)


def palette_image() -> Image.Image:
    """2x2 palette image: index 0 = green, index 1 = red (top row green, bottom red)."""
    im = Image.fromarray(np.array([[0, 0], [1, 1]], dtype=np.uint8), mode="P")
    im.putpalette([0, 255, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    return im


def test_load_image_palette_without_transparency(tmp_path: Path) -> None:
    path = write_image(tmp_path / "palette.png", palette_image())
    assert Image.open(path).mode == "P"
    image = load_image(path, background=(0.0, 0.0, 1.0))
    assert_valid_image(image, 2, 2)
    assert pixel(image, 0, 0) == [0.0, 1.0, 0.0]
    assert pixel(image, 1, 1) == [1.0, 0.0, 0.0]


def test_load_image_palette_with_transparent_index_uses_background(tmp_path: Path) -> None:
    path = write_image(tmp_path / "palette_t.png", palette_image(), transparency=0)
    with Image.open(path) as im:
        assert im.mode == "P" and "transparency" in im.info
    image = load_image(path, background=(0.0, 0.0, 1.0))
    assert pixel(image, 0, 0) == [0.0, 0.0, 1.0]  # transparent green -> background
    assert pixel(image, 1, 1) == [1.0, 0.0, 0.0]  # opaque red stays red


def test_load_image_16_bit_grayscale_is_scaled_by_65535(tmp_path: Path) -> None:
    gray = np.array([[0, 32768], [65535, 1000]], dtype=np.uint16)
    path = write_image(tmp_path / "gray16.png", Image.fromarray(gray))
    with Image.open(path) as im:
        assert im.mode.startswith("I")
    image = load_image(path)
    assert_valid_image(image, 2, 2)
    assert pixel(image, 0, 0) == [0.0] * 3
    assert pixel(image, 0, 1) == pytest.approx([32768 / 65535] * 3, abs=1e-6)
    assert pixel(image, 1, 0) == [1.0] * 3
    assert pixel(image, 1, 1) == pytest.approx([1000 / 65535] * 3, abs=1e-6)


def test_load_image_dark_16_bit_grayscale_is_not_mistaken_for_8_bit(tmp_path: Path) -> None:
    gray = np.array([[0, 200]], dtype=np.uint16)  # all values below 256
    path = write_image(tmp_path / "dark16.png", Image.fromarray(gray))
    image = load_image(path)
    assert pixel(image, 0, 1) == pytest.approx([200 / 65535] * 3, abs=1e-6)


def test_load_image_cmyk_jpeg_is_converted_to_rgb(tmp_path: Path) -> None:
    cyan = Image.new("CMYK", (16, 8), (255, 0, 0, 0))
    path = write_image(tmp_path / "cmyk.jpg", cyan)
    with Image.open(path) as im:
        assert im.mode == "CMYK"
    image = load_image(path)
    assert_valid_image(image, 8, 16)
    assert pixel(image, 4, 8) == pytest.approx([0.0, 1.0, 1.0], abs=4 / 255)


def test_load_image_bilevel_mode_1(tmp_path: Path) -> None:
    bits = np.array([[True, False, True]])
    path = write_image(tmp_path / "bits.png", Image.fromarray(bits).convert("1"))
    with Image.open(path) as im:
        assert im.mode == "1"
    image = load_image(path)
    assert_valid_image(image, 1, 3)
    assert image[0, :, 0].tolist() == [[1.0, 0.0, 1.0]] * 3


# ---------------------------------------------------------------- EXIF orientation


def save_with_orientation(path: Path, orientation: int) -> Path:
    im = corner_image(width=40, height=20)
    exif = im.getexif()
    exif[ORIENTATION] = orientation
    im.save(path, exif=exif, quality=95)
    return path


def is_red(image: torch.Tensor, y: int, x: int) -> bool:
    r, g, b = pixel(image, y, x)
    return r > 0.8 and g < 0.2 and b < 0.2


def is_blue(image: torch.Tensor, y: int, x: int) -> bool:
    r, g, b = pixel(image, y, x)
    return r < 0.2 and g < 0.2 and b > 0.8


def test_load_image_without_orientation_keeps_stored_layout(tmp_path: Path) -> None:
    image = load_image(save_with_orientation(tmp_path / "o1.jpg", 1))
    assert_valid_image(image, 20, 40)
    assert is_red(image, 2, 2)


def test_load_image_applies_exif_orientation_6(tmp_path: Path) -> None:
    # 6: the viewer rotates 90 degrees clockwise; stored top-left goes to top-right.
    image = load_image(save_with_orientation(tmp_path / "o6.jpg", 6))
    assert_valid_image(image, 40, 20)
    assert is_red(image, 2, 17)
    assert is_blue(image, 2, 2)
    assert is_blue(image, 37, 17)


def test_load_image_applies_exif_orientation_8(tmp_path: Path) -> None:
    # 8: the viewer rotates 90 degrees counter-clockwise; top-left goes to bottom-left.
    image = load_image(save_with_orientation(tmp_path / "o8.jpg", 8))
    assert_valid_image(image, 40, 20)
    assert is_red(image, 37, 2)
    assert is_blue(image, 2, 2)


def test_load_image_long_side_resizes(tmp_path: Path) -> None:
    path = write_image(tmp_path / "wide.png", Image.fromarray(noise_rgb(30, 60)))
    assert_valid_image(load_image(path, long_side=20), 10, 20)


# ---------------------------------------------------------------- errors


def test_load_image_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.jpg"
    with pytest.raises(FileNotFoundError) as excinfo:
        load_image(path)
    assert str(path) in str(excinfo.value)


def test_load_image_random_bytes_is_image_error_naming_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.jpg"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ImageError) as excinfo:
        load_image(path)
    assert str(path) in str(excinfo.value)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_load_image_truncated_file_is_image_error_naming_file(tmp_path: Path, suffix: str) -> None:
    full = write_image(tmp_path / f"full{suffix}", Image.fromarray(noise_rgb(64, 64)))
    data = full.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as excinfo:
        load_image(cut)
    assert str(cut) in str(excinfo.value)


def test_load_image_refuses_too_many_pixels_before_decoding(tmp_path: Path) -> None:
    # The file's pixel data is cut short: decoding it would fail with "truncated",
    # so the max_pixels error shows that the size was checked before decoding.
    full = write_image(tmp_path / "big.png", Image.fromarray(noise_rgb(64, 64)))
    data = full.read_bytes()
    header_only = tmp_path / "header_only.png"
    header_only.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="max_pixels") as excinfo:
        load_image(header_only, max_pixels=1000)
    assert str(header_only) in str(excinfo.value)


def test_load_image_max_pixels_check_happens_before_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_image(tmp_path / "big.png", Image.fromarray(noise_rgb(40, 40)))
    calls = []
    original_load = ImageFile.ImageFile.load

    def spy_load(self):
        calls.append(self.size)
        return original_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    with pytest.raises(ImageError, match="max_pixels"):
        load_image(path, max_pixels=40 * 40 - 1)
    assert calls == []
    assert_valid_image(load_image(path, max_pixels=40 * 40), 40, 40)
    assert calls  # the spy does see a real decode


# ---------------------------------------------------------------- resize_long_side


def test_resize_long_side_keeps_aspect_ratio() -> None:
    image = torch.rand(1, 3, 30, 60)
    assert resize_long_side(image, 20).shape == (1, 3, 10, 20)
    assert resize_long_side(torch.rand(2, 3, 60, 30), 120).shape == (2, 3, 120, 60)


def test_resize_long_side_never_makes_a_side_zero() -> None:
    assert resize_long_side(torch.rand(1, 3, 1, 100), 10).shape == (1, 3, 1, 10)


def test_resize_long_side_clamps_overshoot_to_unit_range() -> None:
    checker = (torch.arange(16).reshape(4, 4) + torch.arange(16).reshape(4, 4).T) % 2
    image = checker.float().expand(1, 3, 4, 4)
    resized = resize_long_side(image, 13)
    assert resized.min() >= 0.0
    assert resized.max() <= 1.0
    unclamped = torch.nn.functional.interpolate(
        image, size=(13, 13), mode="bicubic", align_corners=False, antialias=True
    )
    assert unclamped.max() > 1.0 or unclamped.min() < 0.0  # there was something to clamp


def test_resize_long_side_same_size_returns_input_unchanged() -> None:
    image = torch.rand(1, 3, 30, 60)
    assert resize_long_side(image, 60) is image


@pytest.mark.parametrize("bad", [0, -5])
def test_resize_long_side_rejects_non_positive(bad: int) -> None:
    with pytest.raises(ValueError, match="long_side"):
        resize_long_side(torch.rand(1, 3, 4, 4), bad)


# ---------------------------------------------------------------- save_image


def test_save_image_png_round_trip_is_exact_to_8_bits(tmp_path: Path) -> None:
    image = torch.rand(1, 3, 7, 11)
    path = save_image(image, tmp_path / "out.png")
    assert path == tmp_path / "out.png"
    loaded = load_image(path)
    assert np.array_equal(to_numpy(loaded, dtype=np.uint8), to_numpy(image, dtype=np.uint8))


def test_save_image_accepts_3d_tensor_and_clamps(tmp_path: Path) -> None:
    image = torch.tensor([-1.0, 0.5, 2.0]).reshape(3, 1, 1).expand(3, 2, 2)
    loaded = load_image(save_image(image, tmp_path / "clamped.png"))
    assert pixel(loaded, 0, 0) == pytest.approx([0.0, 128 / 255, 1.0])


@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".bmp", ".tiff"])
def test_save_image_other_formats_load_back(tmp_path: Path, suffix: str) -> None:
    image = torch.full((1, 3, 8, 8), 0.5)
    loaded = load_image(save_image(image, tmp_path / f"out{suffix}"))
    assert torch.allclose(loaded, image, atol=3 / 255)


def test_save_image_unknown_suffix_raises_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown image suffix"):
        save_image(torch.rand(1, 3, 4, 4), tmp_path / "out.gif")
    assert list(tmp_path.iterdir()) == []


def test_save_image_failure_keeps_existing_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_image(torch.zeros(1, 3, 4, 4), tmp_path / "good.png")
    good_bytes = path.read_bytes()

    def failing_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(torch.ones(1, 3, 4, 4), path)
    assert path.read_bytes() == good_bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.png"]
    assert list(tmp_path.glob("*.part")) == [] and list(tmp_path.glob(".*.part")) == []


def test_save_image_creates_missing_folders(tmp_path: Path) -> None:
    path = save_image(torch.rand(1, 3, 3, 3), tmp_path / "a" / "b" / "out.png")
    assert path.is_file()


# ---------------------------------------------------------------- conversions


def test_to_pil_and_from_pil_round_trip() -> None:
    array = noise_rgb(5, 6)
    image = from_numpy(array)
    pil = to_pil(image)
    assert pil.mode == "RGB" and pil.size == (6, 5)
    assert np.array_equal(np.asarray(pil), array)
    assert torch.equal(from_pil(pil), image)


def test_from_pil_handles_rgba_and_grayscale() -> None:
    rgba = Image.new("RGBA", (3, 2), (255, 0, 0, 0))
    assert from_pil(rgba).tolist() == torch.ones(1, 3, 2, 3).tolist()  # onto white
    gray = from_pil(Image.new("L", (3, 2), 51))
    assert gray.shape == (1, 3, 2, 3)
    assert torch.allclose(gray, torch.full_like(gray, 0.2))


def test_from_pil_32_bit_integer_mode_with_16_bit_values() -> None:
    pil = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.int32))
    assert pil.mode == "I"
    assert from_pil(pil)[0, 0, 0].tolist() == pytest.approx([0.0, 32768 / 65535, 1.0])


def test_from_pil_32_bit_integer_mode_with_8_bit_values() -> None:
    pil = Image.fromarray(np.array([[0, 51, 255]], dtype=np.int32))
    assert pil.mode == "I"
    assert from_pil(pil)[0, 0, 0].tolist() == pytest.approx([0.0, 0.2, 1.0])


def test_from_pil_float_mode_is_clipped_to_unit_range() -> None:
    pil = Image.fromarray(np.array([[-0.5, 0.25, 1.5]], dtype=np.float32))
    assert pil.mode == "F"
    assert from_pil(pil)[0, 0, 0].tolist() == [0.0, 0.25, 1.0]


def test_to_numpy_and_from_numpy_round_trip_float() -> None:
    image = torch.rand(1, 3, 4, 5)
    array = to_numpy(image)
    assert array.shape == (4, 5, 3) and array.dtype == np.float32
    assert torch.equal(from_numpy(array), image)
    assert np.array_equal(to_numpy(image[0]), array)  # (3, H, W) works too


def test_to_numpy_uint8_rounds() -> None:
    image = torch.tensor([0.0, 0.5, 1.0]).reshape(1, 3, 1, 1)
    assert to_numpy(image, dtype=np.uint8).tolist() == [[[0, 128, 255]]]


def test_to_numpy_accepts_tensor_that_requires_grad() -> None:
    image = torch.rand(1, 3, 2, 2, requires_grad=True)
    assert isinstance(to_numpy(image), np.ndarray)


@pytest.mark.parametrize("shape", [(2, 3, 4, 4), (1, 4, 4, 4), (1, 4, 4), (4, 4), (1, 1, 3, 4, 4)])
def test_to_numpy_rejects_wrong_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="expected"):
        to_numpy(torch.rand(shape))


def test_from_numpy_shapes_and_dtypes() -> None:
    gray = np.array([[0, 255]], dtype=np.uint8)
    assert from_numpy(gray).tolist() == [[[[0.0, 1.0]]] * 3]
    assert from_numpy(gray[..., None]).shape == (1, 3, 1, 2)
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    assert torch.equal(from_numpy(rgba), torch.zeros(1, 3, 2, 2))
    out = from_numpy(np.zeros((2, 2, 3), dtype=np.float64))
    assert out.dtype == torch.float32 and out.is_contiguous()


def test_from_numpy_scales_uint16_by_65535() -> None:
    array = np.array([[0, 32768, 65535]], dtype=np.uint16)
    out = from_numpy(array)
    assert out.dtype == torch.float32
    assert out[0, 0, 0].tolist() == pytest.approx([0.0, 32768 / 65535, 1.0])


@pytest.mark.parametrize("shape", [(2, 2, 2), (2, 2, 5), (2,), (1, 2, 2, 3)])
def test_from_numpy_rejects_wrong_shapes(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="expected"):
        from_numpy(np.zeros(shape, dtype=np.float32))
