"""Notebook 09's style-mix sliders in a real JupyterLab page, in headless Chromium.

Notebook 09 runs in smoke mode; the test raises the weight of a style that is not yet in
the mix and checks that the picture the page shows changes (to the kernel's new render)
and that the page's status line shows the newly normalised weights. Screenshots are kept
in $NSTCOURSE_ARTIFACTS/browser/.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from browser import (
    chromium_page,
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
NOTEBOOK = "09_conditional_instance_norm.ipynb"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
STATUS_S = 60.0


def kernel_value(page: Page, expression: str):
    """A Python literal evaluated in the notebook's kernel (str, list, float …)."""
    return ast.literal_eval(kernel_eval(page, expression))


def wait_for_status(page: Page, pieces: list[str], timeout: float = STATUS_S) -> str:
    """The text of the page's mix status label ("mix: …") once it contains all ``pieces``."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    label = page.locator(".jp-NotebookPanel .widget-label").filter(has_text=re.compile("^mix: "))
    try:
        page.wait_for_function(
            """(pieces) => [...document.querySelectorAll('.jp-NotebookPanel .widget-label')]
                .some(l => l.textContent.startsWith('mix: ')
                           && pieces.every(p => l.textContent.includes(p)))""",
            arg=pieces,
            timeout=timeout * 1000,
            polling=250,
        )
    except PlaywrightTimeout:
        shown = label.all_inner_texts()
        raise TimeoutError(
            f"the status never showed {pieces} within {timeout:.0f} s; it shows {shown}"
        ) from None
    return label.first.inner_text()


def test_notebook_09_style_weight_slider_rerenders_the_mix(
    browser_available: None, data_pack: Path, artifacts: Path, tmp_path: Path
) -> None:
    # A copy: JupyterLab autosaves, and the course's notebooks are stored without outputs.
    shutil.copy(NOTEBOOKS / NOTEBOOK, tmp_path)
    env = {
        "NSTCOURSE_MODE": "smoke",
        "NSTCOURSE_DATA_DIR": str(data_pack),
        "NSTCOURSE_WEIGHTS_DIR": str(data_pack / "weights"),
    }
    failure_shot = artifacts / "nb09_failure.png"
    with (
        jupyterlab_server(tmp_path, env) as server,
        chromium_page() as page,
        screenshot_on_failure(page, failure_shot),
    ):
        open_notebook(page, server, NOTEBOOK)
        run_all_cells(page)
        names = kernel_value(page, "names")
        raw = kernel_value(page, "[s.value for s in mix_sliders.children]")
        assert len(raw) == len(names), "one weight slider per style (no α slider)"
        start_src, start = image_src(page), image_bytes(page)
        assert start == bytes.fromhex(kernel_value(page, "mix_picture.value.hex()")), (
            "the page should show the kernel's picture"
        )
        save_screenshot(page, artifacts / "nb09_before.png")

        # A style with weight 0 joins the mix at 0.5: the others' shares shrink.
        target = raw.index(0.0)
        raw[target] = 0.5
        set_slider(page, names[target], 0.5)
        wait_for_image_change(page, start_src)

        after = image_bytes(page)
        assert after.startswith(b"\x89PNG") and after != start
        assert after == bytes.fromhex(kernel_value(page, "mix_picture.value.hex()"))
        expected = [f"{n} {w / sum(raw):.2f}" for n, w in zip(names, raw, strict=True) if w]
        shown = wait_for_status(page, expected)
        assert shown == kernel_value(page, "mix_status.value"), (shown, "≠ the kernel's status")
        page.locator(".jp-NotebookPanel img.widget-image").scroll_into_view_if_needed()
        save_screenshot(page, artifacts / "nb09_after.png")
