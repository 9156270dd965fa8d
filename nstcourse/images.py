"""Images in and out: files, PIL, NumPy and tensors.

Inside the package an image is a float tensor of shape (N, 3, H, W), RGB, range [0, 1].
This module converts at the edges: any file a student has (JPEG, PNG, BMP, WebP, TIFF;
grayscale, RGBA, palette, 16-bit, CMYK; EXIF-rotated) comes in as that tensor, and
tensors go out as files, PIL images or NumPy arrays.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from nstcourse.files import atomic_path

# 64 megapixels decodes to 768 MB as float32 RGB: far beyond what any notebook needs,
# small enough that a decompression bomb is refused before it is decoded.
MAX_PIXELS = 64_000_000

SAVE_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}
IMAGE_SUFFIXES = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff"}  # training folders


class ImageError(ValueError):
    """An image file that cannot be used; the message names the file and the reason."""


def load_image(
    path: str | os.PathLike,
    *,
    long_side: int | None = None,
    max_pixels: int = MAX_PIXELS,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Read an image file as a (1, 3, H, W) float tensor, RGB in [0, 1].

    Args:
        path: any format Pillow reads. EXIF orientation is applied, so a phone photo
            comes out the way it looks in a viewer.
        long_side: if given, resize (bicubic, antialiased) so max(H, W) == long_side.
        max_pixels: refuse larger images before decoding them (decompression bombs).
        background: RGB in [0, 1] that transparent pixels are composited onto.

    Raises:
        FileNotFoundError: no such file.
        ImageError: not a regular file (a folder, a FIFO, a device), unreadable,
            truncated, or larger than ``max_pixels``.
        ValueError: ``background`` is not three numbers in [0, 1].
    """
    path = Path(path)
    _check_background(background)
    _check_regular_file(path)
    try:
        with warnings.catch_warnings():
            # Our own max_pixels check replaces Pillow's bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise ImageError(
                        f"{path}: {width}x{height} = {width * height:,} pixels is more than "
                        f"max_pixels={max_pixels:,} (possible decompression bomb); "
                        "pass a larger max_pixels if you trust this file"
                    )
                im.load()
                im = ImageOps.exif_transpose(im)
                rgb = _to_rgb_array(im, background)
    except ImageError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageError(f"{path}: refused as a decompression bomb ({err})") from err
    except UnidentifiedImageError as err:
        raise ImageError(f"{path}: not an image file Pillow can read") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: cannot decode image ({err}); is it truncated?") from err
    image = from_numpy(rgb)
    if long_side is not None:
        image = resize_long_side(image, long_side)
    return image


def _check_regular_file(path: Path) -> None:
    """A missing file is a FileNotFoundError; a folder, FIFO, socket or device (which
    would hang or never end when read) an ImageError that says what it is."""
    try:
        mode = path.stat().st_mode  # follows symlinks: a link to /dev/zero is a device
    except FileNotFoundError:
        raise FileNotFoundError(f"image file not found: {path}") from None
    if stat.S_ISREG(mode):
        return
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISSOCK: "a socket",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
    }
    kind = next((name for test, name in kinds.items() if test(mode)), "a special file")
    raise ImageError(f"{path} is not a regular file but {kind}; give an image file")


def _check_background(background: tuple[float, float, float]) -> None:
    """Three finite numbers in [0, 1], or a ValueError naming ``background``: the result
    must stay in [0, 1] like every image in the package."""
    message = f"background={background!r}; give three numbers (R, G, B) in [0, 1]"
    try:
        values = np.asarray(background, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if values.shape != (3,) or not np.all((values >= 0) & (values <= 1)):  # also nan
        raise ValueError(message)


def _to_rgb_array(im: Image.Image, background: tuple[float, float, float]) -> np.ndarray:
    """Any Pillow mode -> float32 array (H, W, 3) in [0, 1]."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = np.asarray(im, dtype=np.float32)
        if im.mode == "F":
            scale = 1.0
        elif im.mode.startswith("I;16"):
            scale = 65535.0
        else:  # 32-bit "I": Pillow's mode for many 16-bit files; 8-bit data stays 8-bit
            scale = 65535.0 if gray.max(initial=0) > 255 else 255.0
        gray = np.clip(gray / scale, 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode == "P" and "transparency" in im.info
    )
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:]
        return rgba[..., :3] * alpha + np.asarray(background, dtype=np.float32) * (1 - alpha)
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def resize_long_side(image: torch.Tensor, long_side: int) -> torch.Tensor:
    """Resize (N, C, H, W) so that max(H, W) == long_side, keeping the aspect ratio.

    Bicubic with antialiasing (so shrinking does not alias), clamped back to [0, 1].
    """
    if long_side < 1:
        raise ValueError(f"long_side must be a positive integer, got {long_side}")
    height, width = image.shape[-2:]
    scale = long_side / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    if size == (height, width):
        return image
    resized = F.interpolate(image, size=size, mode="bicubic", align_corners=False, antialias=True)
    return resized.clamp(0.0, 1.0)


def save_image(image: torch.Tensor, path: str | os.PathLike, *, quality: int = 95) -> Path:
    """Write a (1, 3, H, W) or (3, H, W) tensor in [0, 1] to ``path`` atomically.

    The format comes from the suffix (.jpg .png .bmp .webp .tif). Values are clamped to
    [0, 1] and rounded to 8 bits. Returns the path written.
    """
    path = Path(path)
    fmt = SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image suffix; use one of {sorted(SAVE_FORMATS)}")
    pil = to_pil(image)
    with atomic_path(path) as tmp:
        options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
        pil.save(tmp, format=fmt, **options)
    return path


def to_pil(image: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) tensor in [0, 1] -> 8-bit RGB PIL image."""
    return Image.fromarray(to_numpy(image, dtype=np.uint8))


def from_pil(pil: Image.Image) -> torch.Tensor:
    """PIL image of any mode -> (1, 3, H, W) float tensor in [0, 1]."""
    return from_numpy(_to_rgb_array(pil, (1.0, 1.0, 1.0)))


def to_numpy(image: torch.Tensor, dtype: type = np.float32) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) tensor -> (H, W, 3) array.

    float32 in [0, 1] by default; ``dtype=np.uint8`` rounds to 0..255.
    """
    if image.dim() == 4:
        if image.shape[0] != 1:
            raise ValueError(f"expected a single image (1, 3, H, W), got {tuple(image.shape)}")
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected shape (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}")
    array = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    if dtype == np.uint8:
        return np.round(array * 255).astype(np.uint8)
    return array.astype(dtype)


def from_numpy(array: np.ndarray) -> torch.Tensor:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array -> (1, 3, H, W) float tensor.

    uint8 is scaled by 1/255, uint16 by 1/65535; floats must already be in [0, 1].
    An alpha channel is dropped.
    """
    array = np.asarray(array)
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        array = array.astype(np.float32) / 65535.0
    else:
        array = array.astype(np.float32)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 1|3|4) array, got shape {array.shape}")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    array = np.ascontiguousarray(array[..., :3])
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()
