"""The course's widgets in a real JupyterLab page, in headless Chromium.

Notebook 02 runs in smoke mode; the test moves the α/β slider (the picture switches to
the nearest precomputed result), presses Run (the picture is re-optimised) and keeps
screenshots in $NSTCOURSE_ARTIFACTS/browser/.
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
    set_slider,
    wait_for_image_change,
)

from nstcourse.widgets import RATIO_SLIDER, RUN_BUTTON

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
