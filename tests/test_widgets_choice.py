"""``widgets.image_choice_controls``: the menus and the upload, driven from Python."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import pytest
import torch
from PIL import Image

from nstcourse.images import from_pil
from nstcourse.widgets import UPLOAD_PREFIX, image_choice_controls, png_bytes

SAMPLES = {"dark": torch.full((1, 3, 8, 12), 0.2), "bright": torch.full((1, 3, 8, 12), 0.8)}


def _render(image: torch.Tensor, way: str) -> torch.Tensor:
    """A strip that shows which image and which way: the image, then it inverted or not."""
    other = 1 - image if way == "invert" else image
    return torch.cat([image, other], dim=-1)


def _png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _upload(upload, name: str, content: bytes) -> None:
    upload.value = (
        {"name": name, "type": "image/png", "size": len(content), "content": memoryview(content),
         "last_modified": datetime(2026, 1, 1, tzinfo=timezone.utc)},
    )  # fmt: skip


def test_the_first_sample_is_shown_and_the_menus_render_their_choice() -> None:
    calls: list[tuple[float, str]] = []

    def render(image: torch.Tensor, way: str) -> torch.Tensor:
        calls.append((round(float(image.mean()), 3), way))
        return _render(image, way)

    controls = image_choice_controls(render, SAMPLES, ["keep", "invert"])
    menus, status, picture = controls.children
    image_menu, way_menu, _ = menus.children
    assert calls == [(0.2, "keep")]
    assert picture.value == png_bytes(_render(SAMPLES["dark"], "keep"))
    image_menu.value = "bright"
    assert picture.value == png_bytes(_render(SAMPLES["bright"], "keep"))
    way_menu.value = "invert"
    assert picture.value == png_bytes(_render(SAMPLES["bright"], "invert"))
    assert calls == [(0.2, "keep"), (0.8, "keep"), (0.8, "invert")]
    assert status.value.startswith("bright, invert:")


def test_an_upload_joins_the_menu_and_is_shown_shrunk_to_max_side() -> None:
    controls = image_choice_controls(_render, SAMPLES, ["keep"], max_side=16)
    menus, status, picture = controls.children
    image_menu, _, upload = menus.children
    content = _png(40, 20, (255, 0, 0))
    _upload(upload, "Red.PNG", content)
    assert image_menu.value == UPLOAD_PREFIX + "Red.PNG"
    assert list(image_menu.options) == ["dark", "bright", UPLOAD_PREFIX + "Red.PNG"]
    shown = Image.open(io.BytesIO(picture.value))
    assert shown.size == (2 * 16, 8)  # the 40x20 upload at a long side of 16, twice
    red = from_pil(shown)[0, :, 4, 4]
    assert red[0] > 0.9 and red[1:].max() < 0.1, red

    _upload(upload, "Red.PNG", _png(40, 20, (0, 0, 255)))  # same name, new file
    assert list(image_menu.options).count(UPLOAD_PREFIX + "Red.PNG") == 1
    blue = Image.open(io.BytesIO(picture.value)).convert("RGB").getpixel((2, 2))
    assert blue[2] > 200 and blue[0] < 50, blue
    assert status.value.startswith(UPLOAD_PREFIX + "Red.PNG")


def test_an_unreadable_upload_is_named_and_leaves_the_picture() -> None:
    controls = image_choice_controls(_render, SAMPLES, ["keep"])
    menus, status, picture = controls.children
    image_menu, _, upload = menus.children
    before = picture.value
    _upload(upload, "notes.png", b"this is not an image")
    assert status.value.startswith("could not read notes.png:")
    assert "/tmp" not in status.value and "upload.png" not in status.value
    assert picture.value == before and list(image_menu.options) == ["dark", "bright"]


@pytest.mark.parametrize(
    ("samples", "ways", "match"),
    [
        ({}, ["a"], "samples is empty"),
        ({UPLOAD_PREFIX + "x": SAMPLES["dark"]}, ["a"], "kept for uploads"),
        (SAMPLES, [], "ways"),
        (SAMPLES, ["a", "a"], "distinct"),
    ],
)
def test_bad_arguments_are_named(samples, ways, match) -> None:
    with pytest.raises(ValueError, match=match):
        image_choice_controls(_render, samples, ways)
