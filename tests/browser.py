"""Drive ipywidgets in a real JupyterLab page: a headless Chromium under Playwright.

A helper module for browser tests, not a test file. The parts:

- ``jupyterlab_server(root_dir, env)``: a private JupyterLab server on 127.0.0.1 with a
  random token, no announcements and no update checks, stopped (kernels first) on exit;
- ``chromium_page()``: Debian's ``/usr/bin/chromium`` launched by Playwright (it cannot
  download browsers here), one page;
- ``open_notebook``, ``run_all_cells``: open a notebook, run it, fail on any error output;
- ``set_slider``, ``click_button``, ``image_src``, ``image_bytes``,
  ``wait_for_image_change``, ``kernel_eval``: what a test does with the widgets.

The server runs with ``--LabApp.expose_app_in_browser=True``, so the page has
``window.jupyterapp``: commands, the notebook model and the kernel are reached through
it rather than through menus. Every wait is bounded and says what it waited for.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import json
import math
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

CHROMIUM = Path("/usr/bin/chromium")
# --headless and the rest: no sandbox as root, no GPU, and no background traffic (without
# the networking flags Chromium keeps trying to reach Google and logs refused connections).
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
)
# Bounded but generous: CI has two slow cores, and JupyterLab alone takes 10-20 s there.
SERVER_START_S = 120.0
SERVER_STOP_S = 30.0
NOTEBOOK_OPEN_S = 180.0
RUN_ALL_S = 600.0
WIDGET_S = 60.0
LOG_TAIL_CHARS = 4000

# How ipywidgets 8 renders the widgets the helpers below look for.
_SLIDER = ".widget-slider"
_BUTTON = "button.widget-button"
_IMAGE = "img.widget-image"
_DROPDOWN = ".widget-dropdown"
_UPLOAD = "button.widget-upload"


def browser_unavailable() -> str | None:
    """Why browser tests cannot run here (no Chromium, no Playwright), or None."""
    if not CHROMIUM.is_file():
        return f"{CHROMIUM} is missing: apt-get install chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: pip install -e '.[test]'"
    return None


# --- the server -------------------------------------------------------------------------


@dataclass(frozen=True)
class LabServer:
    """A running JupyterLab: base ``url`` (no trailing slash), its ``token`` and log file."""

    url: str
    token: str
    log_path: Path

    def api(self, path: str, method: str = "GET", timeout: float = 10.0) -> bytes:
        """Call the server's REST API (``path`` like ``/api/status``); the response body."""
        request = urllib.request.Request(
            self.url + path, method=method, headers={"Authorization": f"token {self.token}"}
        )
        with _no_proxy_opener().open(request, timeout=timeout) as response:
            return response.read()

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        """The end of the server's combined stdout and stderr."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:] or "(empty)"
        except OSError as error:
            return f"(no server log: {error})"


def _no_proxy_opener() -> urllib.request.OpenerDirector:
    """A urllib opener that ignores http_proxy and friends (the server is on 127.0.0.1)."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _lab_command(root_dir: Path, state: Path, port: int, token: str) -> list[str]:
    """The ``jupyter lab`` command line: headless, private settings, nothing fetched."""
    return [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.disable_check_xsrf=False",
        "--ServerApp.terminals_enabled=False",
        # No news feed (and so no "receive official Jupyter news?" question), no update
        # check, no PyPI extension manager: nothing reaches for the internet.
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        "--LabApp.expose_app_in_browser=True",
        # Fresh settings and workspace: no layout or open tabs from an earlier run.
        f"--LabApp.user_settings_dir={state / 'settings'}",
        f"--LabApp.workspaces_dir={state / 'workspaces'}",
    ]


def _write_user_settings(settings_dir: Path) -> None:
    """Never ask about or fetch Jupyter news, no update check, no toasts over the widgets."""
    notification = settings_dir / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True})
    )


def _wait_until_ready(server: LabServer, process: subprocess.Popen, timeout: float) -> None:
    """Poll ``/api/status`` until it answers; a clear error with the log tail if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"JupyterLab exited with code {process.returncode} before answering "
                f"/api/status. Server log tail:\n{server.log_tail()}"
            )
        try:
            server.api("/api/status", timeout=5.0)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.25)
    raise TimeoutError(
        f"JupyterLab did not answer {server.url}/api/status within {timeout:g} s. "
        f"Server log tail:\n{server.log_tail()}"
    )


def _stop(server: LabServer, process: subprocess.Popen, timeout: float) -> None:
    """Shut kernels down, then the server (/api/shutdown); SIGTERM, SIGKILL if it hangs."""
    if process.poll() is None:
        with contextlib.suppress(Exception):
            for kernel in json.loads(server.api("/api/kernels")):
                server.api(f"/api/kernels/{kernel['id']}", method="DELETE", timeout=timeout)
        with contextlib.suppress(Exception):
            server.api("/api/shutdown", method="POST", timeout=timeout)
    for stop in (None, process.terminate, process.kill):
        if stop is not None and process.poll() is None:
            stop()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
            return


@contextlib.contextmanager
def jupyterlab_server(
    root_dir: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    *,
    timeout: float = SERVER_START_S,
) -> Iterator[LabServer]:
    """A JupyterLab server serving ``root_dir``; stopped, kernels included, on exit.

    The server (and so its kernels) gets ``os.environ`` updated with ``env``, e.g.
    ``{"NSTCOURSE_MODE": "smoke", "NSTCOURSE_DATA_DIR": ...}``. Its runtime files,
    settings and workspaces live in a temporary folder removed afterwards.
    """
    root = Path(root_dir).resolve()
    token = secrets.token_hex(24)
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="nstcourse-lab-") as state_dir:
        state = Path(state_dir)
        _write_user_settings(state / "settings")
        child_env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(state / "runtime"), **(env or {})}
        server = LabServer(f"http://127.0.0.1:{port}", token, state / "server.log")
        with server.log_path.open("wb") as log:
            process = subprocess.Popen(
                _lab_command(root, state, port, token),
                cwd=root,
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                _wait_until_ready(server, process, timeout)
                yield server
            finally:
                _stop(server, process, SERVER_STOP_S)


# --- the browser ------------------------------------------------------------------------


@contextlib.contextmanager
def chromium_page(
    *, width: int = 1280, height: int = 900, timeout: float = WIDGET_S
) -> Iterator[Page]:
    """One page in headless Debian Chromium (``/usr/bin/chromium``) under Playwright.

    ``timeout`` (seconds) is the page's default for Playwright actions. The browser's
    console errors are kept in ``page.console_errors`` (a list of str) for diagnostics.
    """
    reason = browser_unavailable()
    if reason:
        raise RuntimeError(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(timeout * 1000)
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.console_errors = errors  # type: ignore[attr-defined]
            yield page
        finally:
            browser.close()


def _diagnostics(page: Page) -> str:
    """What the page shows that may explain a timeout: dialogs, kernel state, errors."""
    try:
        state = page.evaluate(
            """() => {
                const app = window.jupyterapp;
                const panel = app && app.shell.currentWidget;
                const ctx = panel && panel.sessionContext;
                const dialogs = [...document.querySelectorAll('.jp-Dialog')]
                    .map(d => d.innerText.replace(/\\s+/g, ' ').trim());
                return {
                    url: location.href.replace(/token=[^&]*/, 'token=…'),
                    app: !!app,
                    widget: panel ? panel.title.label : null,
                    kernel: ctx ? ctx.kernelDisplayStatus : null,
                    dialogs,
                };
            }"""
        )
    except Exception as error:  # the page itself may be gone
        state = f"(page state unavailable: {error})"
    errors = getattr(page, "console_errors", [])[-5:]
    return f"page state: {state}; last console errors: {errors}"


def _wait_for(page: Page, predicate: str, arg: Any, timeout: float, what: str) -> Any:
    """``page.wait_for_function`` with a message that says what was awaited, and why not."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        return page.wait_for_function(predicate, arg=arg, timeout=timeout * 1000, polling=250)
    except PlaywrightTimeout:
        raise TimeoutError(
            f"timed out after {timeout:.0f} s waiting for {what}; {_diagnostics(page)}"
        ) from None


# --- the notebook -----------------------------------------------------------------------

_NOTEBOOK_READY_JS = """(name) => {
    const app = window.jupyterapp;
    const panel = app && app.shell.currentWidget;
    if (!panel || !panel.content || !panel.sessionContext) return false;
    if (!panel.context || panel.context.path.split('/').pop() !== name) return false;
    const ctx = panel.sessionContext;
    return panel.context.isReady && ctx.isReady && ctx.session && ctx.session.kernel
        && ctx.session.kernel.status === 'idle'
        && !!document.querySelector('.jp-NotebookPanel .jp-Cell');
}"""


def open_notebook(
    page: Page, server: LabServer, relpath: str, timeout: float = NOTEBOOK_OPEN_S
) -> None:
    """Open ``relpath`` (relative to the server's root) in JupyterLab; wait for an idle kernel."""
    page.goto(
        f"{server.url}/lab/tree/{quote(relpath)}?token={server.token}",
        timeout=timeout * 1000,
    )
    name = relpath.rstrip("/").split("/")[-1]
    _wait_for(page, _NOTEBOOK_READY_JS, name, timeout, f"{relpath} open with an idle kernel")


_START_RUN_ALL_JS = """() => {
    const state = {done: false, ok: null, error: null};
    window.__nstRunAll = state;
    window.jupyterapp.commands.execute('notebook:run-all-cells').then(
        ok => { state.ok = ok; state.done = true; },
        err => { state.error = String(err); state.done = true; });
}"""

_RUN_ALL_DONE_JS = """() => {
    const state = window.__nstRunAll;
    const ctx = window.jupyterapp.shell.currentWidget.sessionContext;
    const busy = [...document.querySelectorAll('.jp-NotebookPanel .jp-InputPrompt')]
        .some(p => p.textContent.includes('[*]'));
    return state.done && !busy && ctx.session.kernel.status === 'idle';
}"""

_ERROR_OUTPUTS_JS = """() => {
    const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
    const found = [];
    for (let i = 0; i < cells.length; i++) {
        const cell = cells.get(i);
        if (cell.type !== 'code') continue;
        for (const out of cell.outputs.toJSON()) {
            if (out.output_type === 'error') {
                found.push(`cell ${i}: ${out.ename}: ${out.evalue}\\n` + out.traceback.join('\\n'));
            } else if (out.output_type === 'stream' && out.name === 'stderr') {
                const text = [].concat(out.text).join('');
                if (text.includes('Traceback (most recent call last)')) {
                    found.push(`cell ${i}, stderr:\\n${text}`);
                }
            }
        }
    }
    return {found, state: window.__nstRunAll};
}"""

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def run_all_cells(page: Page, timeout: float = RUN_ALL_S) -> None:
    """Run → Run All Cells in the current notebook; wait until done; fail on any error.

    Done means: the command's promise settled, no cell shows ``[*]``, the kernel is idle.
    An ``error`` output in any cell, or a traceback on stderr, raises AssertionError. The
    outputs are read from the notebook model, not the DOM: JupyterLab may leave cells far
    out of view unrendered.
    """
    page.evaluate(_START_RUN_ALL_JS)
    _wait_for(page, _RUN_ALL_DONE_JS, None, timeout, "Run All Cells to finish")
    report = page.evaluate(_ERROR_OUTPUTS_JS)
    if report["found"]:
        details = _ANSI.sub("", "\n\n".join(report["found"]))
        raise AssertionError(f"a cell failed during Run All Cells:\n{details}")
    state = report["state"]
    if state["error"] or state["ok"] is False:
        raise AssertionError(f"Run All Cells did not complete: {state}")


def kernel_eval(page: Page, expression: str, timeout: float = WIDGET_S) -> str:
    """Evaluate ``expression`` in the current notebook's kernel; its ``text/plain`` repr.

    Uses a silent execute request with ``user_expressions``: nothing is added to the
    notebook, the execution count or the history.
    """
    result = page.evaluate(
        """async ([expression, ms]) => {
            const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
            const future = kernel.requestExecute({
                code: '', silent: true, store_history: false,
                user_expressions: {value: expression},
            });
            const timer = new Promise((_, reject) => setTimeout(
                () => reject(new Error('no reply from the kernel')), ms));
            const reply = await Promise.race([future.done, timer]);
            return reply.content.user_expressions.value;
        }""",
        [expression, int(timeout * 1000)],
    )
    if result.get("status") != "ok":
        raise AssertionError(
            f"kernel could not evaluate {expression!r}: "
            f"{result.get('ename')}: {result.get('evalue')}"
        )
    return result["data"]["text/plain"]


# --- widgets ----------------------------------------------------------------------------


def _exactly(text: str) -> re.Pattern[str]:
    """A pattern for an element whose whole text is ``text`` (surrounding space allowed)."""
    return re.compile(rf"^\s*{re.escape(text)}\s*$")


def _one(
    page: Page, selector: str, label_selector: str | None, text: str, what: str, timeout: float
) -> Locator:
    """The single visible widget matching ``selector`` whose label (or own text) is ``text``."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    candidates = page.locator(f".jp-NotebookPanel {selector}")
    if label_selector:
        label = page.locator(label_selector).filter(has_text=_exactly(text))
        matches = candidates.filter(has=label)
    else:
        matches = candidates.filter(has_text=_exactly(text))
    try:
        matches.first.wait_for(state="visible", timeout=timeout * 1000)
    except PlaywrightTimeout:
        raise TimeoutError(
            f"no {what} {text!r} appeared within {timeout:.0f} s "
            f"({candidates.count()} {selector} on the page); {_diagnostics(page)}"
        ) from None
    if matches.count() != 1:
        raise AssertionError(f"expected one {what} {text!r}, found {matches.count()}")
    return matches.first


def _kernel_slider_value(page: Page, description: str) -> float | None:
    """The value of the kernel's one slider widget with this description (None if none)."""
    expression = (
        "[w.value for w in list(__import__('ipywidgets').widgets.widget._instances.values())"
        " if getattr(w, '_model_name', '').endswith('SliderModel')"
        f" and getattr(w, 'description', None) == {description!r}]"
    )
    values = ast.literal_eval(kernel_eval(page, expression))
    return float(values[0]) if len(values) == 1 else None


def set_slider(page: Page, description: str, value: float, timeout: float = WIDGET_S) -> None:
    """Set the ipywidgets slider labelled ``description`` to ``value`` as a user would.

    ipywidgets 8 draws the slider with noUiSlider beside a ``contenteditable``
    ``.widget-readout``: the readout is filled with the number and Enter is pressed. Then
    waits until the kernel's widget has exactly that value, so pick one on the slider's
    step grid (the widget rounds to it).
    """
    slider = _one(page, _SLIDER, ".widget-label", description, "slider", timeout)
    readout = slider.locator(".widget-readout")
    readout.click()
    readout.fill(repr(float(value)))
    readout.press("Enter")
    deadline = time.monotonic() + timeout
    seen: float | None = None
    while time.monotonic() < deadline:
        seen = _kernel_slider_value(page, description)
        if seen is not None and math.isclose(seen, value, rel_tol=1e-6, abs_tol=1e-6):
            return
        time.sleep(0.25)
    raise TimeoutError(
        f"slider {description!r} set to {value} in the page, but after {timeout:.0f} s "
        f"the kernel has {seen} (readout shows {readout.inner_text()!r}); {_diagnostics(page)}"
    )


def click_button(page: Page, description: str, timeout: float = WIDGET_S) -> None:
    """Click the ipywidgets Button whose description is ``description``."""
    _one(page, _BUTTON, None, description, "button", timeout).click()


def select_option(page: Page, description: str, option: str, timeout: float = WIDGET_S) -> None:
    """Choose ``option`` (its label) in the ipywidgets Dropdown labelled ``description``."""
    menu = _one(page, _DROPDOWN, ".widget-label", description, "dropdown", timeout)
    menu.locator("select").select_option(label=option, timeout=timeout * 1000)


def upload_file(page: Page, path: str | os.PathLike[str], timeout: float = WIDGET_S) -> None:
    """Give ``path`` to the notebook's one ipywidgets FileUpload, as a user would: click
    the button and answer the browser's file chooser."""
    buttons = page.locator(f".jp-NotebookPanel {_UPLOAD}")
    buttons.first.wait_for(state="visible", timeout=timeout * 1000)
    if buttons.count() != 1:
        raise AssertionError(f"expected one upload button, found {buttons.count()}")
    with page.expect_file_chooser(timeout=timeout * 1000) as chooser:
        buttons.first.click()
    chooser.value.set_files(str(path))


def image_src(page: Page, index: int = 0, timeout: float = WIDGET_S) -> str:
    """The ``src`` of the ``index``-th ipywidgets Image in the notebook (a ``blob:`` URL)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    image = page.locator(f".jp-NotebookPanel {_IMAGE}").nth(index)
    try:
        image.wait_for(state="attached", timeout=timeout * 1000)
    except PlaywrightTimeout:
        raise TimeoutError(
            f"no ipywidgets Image #{index} within {timeout:.0f} s; {_diagnostics(page)}"
        ) from None
    return image.get_attribute("src") or ""


def image_bytes(page: Page, index: int = 0, timeout: float = WIDGET_S) -> bytes:
    """The bytes the ``index``-th ipywidgets Image shows (its blob fetched in the page)."""
    src = image_src(page, index, timeout)
    encoded = page.evaluate(
        """async (src) => {
            const bytes = new Uint8Array(await (await fetch(src)).arrayBuffer());
            let text = '';
            for (const b of bytes) text += String.fromCharCode(b);
            return btoa(text);
        }""",
        src,
    )
    return base64.b64decode(encoded)


def wait_for_image_change(
    page: Page, old_src: str, index: int = 0, timeout: float = WIDGET_S
) -> str:
    """Wait until the ``index``-th Image's ``src`` differs from ``old_src``; the new src."""
    _wait_for(
        page,
        """([selector, index, old]) => {
            const img = document.querySelectorAll(selector)[index];
            return !!img && !!img.getAttribute('src') && img.getAttribute('src') !== old;
        }""",
        [f".jp-NotebookPanel {_IMAGE}", index, old_src],
        timeout,
        f"ipywidgets Image #{index} to change",
    )
    return image_src(page, index, timeout)


def save_screenshot(page: Page, path: str | os.PathLike[str]) -> Path:
    """A screenshot of the page at ``path`` (folders created); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target))
    return target


@contextlib.contextmanager
def screenshot_on_failure(page: Page, path: str | os.PathLike[str]) -> Iterator[None]:
    """Inside: any exception leaves a screenshot at ``path`` (best effort), then goes on."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            save_screenshot(page, path)
        raise


__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "LabServer",
    "browser_unavailable",
    "chromium_page",
    "click_button",
    "image_bytes",
    "image_src",
    "jupyterlab_server",
    "kernel_eval",
    "open_notebook",
    "run_all_cells",
    "save_screenshot",
    "screenshot_on_failure",
    "select_option",
    "set_slider",
    "upload_file",
    "wait_for_image_change",
]
