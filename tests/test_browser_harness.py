"""The browser harness end to end: a slider, a button and an image in real JupyterLab.

A tiny notebook (written here, not one of the course's) shows a FloatSlider, a Run
button and a PNG Image drawn from the slider's value. The test runs it in JupyterLab in
headless Chromium, moves the slider, clicks Run and checks that the picture changed.
Screenshots go to $NSTCOURSE_ARTIFACTS/browser/ (CI keeps them), else to tmp_path.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat
import pytest
from browser import (
    chromium_page,
    click_button,
    image_bytes,
    image_src,
    jupyterlab_server,
    kernel_eval,
    open_notebook,
    run_all_cells,
    save_screenshot,
    screenshot_on_failure,
    set_slider,
    wait_for_image_change,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

SLIDER = "log10(α/β)"
NOTEBOOK_SOURCE = f'''\
import io

import ipywidgets as widgets
from PIL import Image as PILImage


def render(value: float) -> bytes:
    """A PNG of one colour that goes from blue (-6) to red (0)."""
    red = round(255 * (value + 6) / 6)
    buffer = io.BytesIO()
    PILImage.new("RGB", (160, 90), (red, 64, 255 - red)).save(buffer, format="PNG")
    return buffer.getvalue()


slider = widgets.FloatSlider(
    description="{SLIDER}", min=-6, max=0, value=-3, continuous_update=False
)
button = widgets.Button(description="Run")
image = widgets.Image(value=render(slider.value), format="png", width=320)
button.on_click(lambda _: setattr(image, "value", render(slider.value)))
widgets.VBox([slider, button, image])
'''


@pytest.fixture
def notebook_dir(tmp_path: Path) -> Path:
    """A folder holding harness.ipynb, the widget notebook, unexecuted."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    notebook.metadata["language_info"] = {"name": "python"}
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Browser harness check"),
        nbformat.v4.new_code_cell(NOTEBOOK_SOURCE),
    ]
    nbformat.write(notebook, folder / "harness.ipynb")
    return folder


@pytest.fixture
def lab_page(browser_available: None, notebook_dir: Path, artifacts: Path) -> Iterator[Page]:
    """The harness notebook open in JupyterLab in Chromium, run to the end."""
    env = {"NSTCOURSE_MODE": "smoke", "NSTCOURSE_BROWSER_HARNESS": "inherited"}
    with jupyterlab_server(notebook_dir, env) as server, chromium_page() as page:
        with screenshot_on_failure(page, artifacts / "harness_setup_failure.png"):
            open_notebook(page, server, "harness.ipynb")
            run_all_cells(page)
        yield page


def test_slider_and_button_change_the_image(lab_page: Page, artifacts: Path) -> None:
    with screenshot_on_failure(lab_page, artifacts / "harness_failure.png"):
        _move_slider_and_run(lab_page, artifacts)


def _move_slider_and_run(page: Page, artifacts: Path) -> None:
    """Slider to -1, click Run: the image must change; screenshots before and after."""
    assert kernel_eval(page, "__import__('os').environ['NSTCOURSE_BROWSER_HARNESS']") == (
        "'inherited'"
    ), "the kernel did not get the server's environment"
    before_src = image_src(page)
    before = image_bytes(page)
    assert before.startswith(b"\x89PNG"), "the Image widget does not show a PNG"
    save_screenshot(page, artifacts / "harness_before.png")

    set_slider(page, SLIDER, -1.0)
    assert kernel_eval(page, "slider.value") == "-1.0"
    click_button(page, "Run")
    after_src = wait_for_image_change(page, before_src)
    after = image_bytes(page)
    save_screenshot(page, artifacts / "harness_after.png")

    assert after_src != before_src
    assert after.startswith(b"\x89PNG") and after != before
    assert after == bytes.fromhex(kernel_eval(page, "image.value.hex()").strip("'"))
