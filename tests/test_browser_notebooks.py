"""The course's widgets in a real JupyterLab page, in headless Chromium.

Notebook 02 runs in smoke mode; the test moves the α/β slider (the picture switches to
the nearest precomputed result) and presses Run (the picture is re-optimised). Notebook 11
runs in smoke mode; the test picks a test photo and a direction from the menus, then
uploads a photo through the browser's file chooser. Screenshots are kept in
$NSTCOURSE_ARTIFACTS/browser/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

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
    select_option,
    set_slider,
    upload_file,
    wait_for_image_change,
)

from nstcourse.widgets import IMAGE_MENU, RATIO_SLIDER, RUN_BUTTON, UPLOAD_PREFIX, WAY_MENU

pytestmark = pytest.mark.browser
PNG_BYTES = "__import__('nstcourse.widgets', fromlist=['_']).png_bytes"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_notebook_02_sliders_rerun_style_transfer(
    browser_available: None, data_pack: Path, artifacts: Path, tmp_path: Path
) -> None:
    # A copy: JupyterLab autosaves, and the course's notebooks are stored without outputs.
    shutil.copy(NOTEBOOKS / "02_style_transfer.ipynb", tmp_path)
    server_cm = jupyterlab_server(tmp_path, {"NSTCOURSE_MODE": "smoke"})
    failure_shot = artifacts / "nb02_failure.png"
    with server_cm as server, chromium_page() as page, screenshot_on_failure(page, failure_shot):
        open_notebook(page, server, "02_style_transfer.ipynb")
        run_all_cells(page)
        base = float(kernel_eval(page, "base"))
        start_src, start = image_src(page), image_bytes(page)
        save_screenshot(page, artifacts / "nb02_before.png")

        set_slider(page, RATIO_SLIDER, base + 2)
        slid_src = wait_for_image_change(page, start_src)
        assert "precomputed" in kernel_eval(page, "status.value")
        assert image_bytes(page) == bytes.fromhex(
            kernel_eval(page, f"{PNG_BYTES}(grid[{base + 2:g}]).hex()").strip("'")
        ), "the slider should show the precomputed result for α/β = 1e(base + 2)"

        click_button(page, RUN_BUTTON)
        wait_for_image_change(page, slid_src, timeout=120)
        assert kernel_eval(page, "status.value").startswith("'optimised")
        after = image_bytes(page)
        assert after.startswith(b"\x89PNG") and after != start
        save_screenshot(page, artifacts / "nb02_after.png")


def test_notebook_11_menus_and_upload_translate_the_chosen_photo(
    browser_available: None, data_pack: Path, artifacts: Path, tmp_path: Path
) -> None:
    shutil.copy(NOTEBOOKS / "11_cyclegan.ipynb", tmp_path)
    env = {
        "NSTCOURSE_MODE": "smoke",
        "NSTCOURSE_DATA_DIR": str(data_pack),
        "NSTCOURSE_WEIGHTS_DIR": str(data_pack / "weights"),
    }
    photo = sorted((data_pack / "unpaired" / "horse2zebra" / "testA").glob("*.jpg"))[-1]
    expected_png = f"{PNG_BYTES}(render({{image}}, way_menu.value)).hex()"
    failure_shot = artifacts / "nb11_failure.png"
    with (
        jupyterlab_server(tmp_path, env) as server,
        chromium_page() as page,
        screenshot_on_failure(page, failure_shot),
    ):
        open_notebook(page, server, "11_cyclegan.ipynb")
        run_all_cells(page)
        start_src = image_src(page)
        save_screenshot(page, artifacts / "nb11_before.png")

        # The notebook's last cell chose "test zebra 1" and F; go back to a horse and G.
        select_option(page, IMAGE_MENU, "test horse 2")
        select_option(page, WAY_MENU, "horse → zebra (G)")
        chosen_src = wait_for_image_change(page, start_src)
        assert kernel_eval(page, "(image_menu.value, way_menu.value)") == (
            "('test horse 2', 'horse → zebra (G)')"
        )
        picture = expected_png.format(image="samples['test horse 2']")
        assert image_bytes(page) == bytes.fromhex(kernel_eval(page, picture).strip("'")), (
            "the page should show x | G(x) | F(G(x)) | 4|x − F(G(x))| of test horse 2"
        )

        upload_file(page, photo)
        wait_for_image_change(page, chosen_src)
        assert kernel_eval(page, "image_menu.value") == repr(UPLOAD_PREFIX + photo.name)
        loaded = f"__import__('nstcourse.images', fromlist=['_']).load_image({str(photo)!r})"
        assert image_bytes(page) == bytes.fromhex(
            kernel_eval(page, expected_png.format(image=loaded)).strip("'")
        ), "the page should show the uploaded photo's round trip"
        save_screenshot(page, artifacts / "nb11_after.png")
