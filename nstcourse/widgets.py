"""ipywidgets UIs for the notebooks.

Images cross into the browser as PNG bytes in an ``ipywidgets.Image``; every slider has
``continuous_update=False``, so work starts only when a slider is released or a button
pressed, never on every pixel of a drag.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as widgets
import torch

from .images import to_pil

RATIO_SLIDER = "log10(α/β)"
RUN_BUTTON = "Run"


def png_bytes(image: torch.Tensor) -> bytes:
    """(1, 3, H, W) or (3, H, W) in [0, 1] → PNG file bytes."""
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG")
    return buffer.getvalue()


def image_widget(image: torch.Tensor, width: int = 384) -> widgets.Image:
    """An ``ipywidgets.Image`` showing ``image``; set ``.value = png_bytes(x)`` to update."""
    return widgets.Image(value=png_bytes(image), format="png", width=width)


def style_transfer_controls(
    run: Callable[[float, dict[str, float]], torch.Tensor],
    style_layers: Sequence[str],
    *,
    initial: torch.Tensor,
    log_ratio: float = -2.0,
    ratio_range: tuple[float, float] = (-6.0, 2.0),
    precomputed: Mapping[float, torch.Tensor] | None = None,
) -> widgets.VBox:
    """Sliders for log10(α/β) and each style layer's weight w_l, a Run button, the result.

    Args:
        run: ``run(log10_alpha_over_beta, {layer: w_l})`` → (1, 3, H, W) in [0, 1]; called
            when Run is pressed (it should optimise at preview size: seconds, not minutes).
        style_layers: one weight slider (0 … 1, start 1) per layer, labelled by its name.
        initial: the image shown before anything runs.
        log_ratio, ratio_range: the α/β slider's start and range (log10 units, step 0.5).
        precomputed: {log10(α/β): image} made beforehand; until Run is pressed, moving the
            α/β slider shows the nearest of these, so the cell is useful straight away.

    Returns:
        The UI (``display`` it, or make it a cell's last expression). Its ``children`` are
        the sliders' box, the Run button, a status label and the image.
    """
    ratio = widgets.FloatSlider(
        value=log_ratio, min=ratio_range[0], max=ratio_range[1], step=0.5,
        description=RATIO_SLIDER, continuous_update=False, readout_format=".1f",
    )  # fmt: skip
    weights = {
        layer: widgets.FloatSlider(
            value=1.0, min=0.0, max=1.0, step=0.05, description=layer, continuous_update=False
        )
        for layer in style_layers
    }
    button = widgets.Button(description=RUN_BUTTON, button_style="primary", icon="play")
    status = widgets.Label("ready: move the sliders, then press Run")
    picture = image_widget(initial)

    def show_nearest(change: dict) -> None:
        if not precomputed:
            return
        nearest = min(precomputed, key=lambda r: abs(r - change["new"]))
        picture.value = png_bytes(precomputed[nearest])
        status.value = f"precomputed result for log10(α/β) = {nearest:g}; press Run to optimise"

    def on_run(_: widgets.Button) -> None:
        w = {layer: slider.value for layer, slider in weights.items()}
        if not any(w.values()):
            status.value = "all style weights are 0: nothing to transfer; raise one"
            return
        button.disabled, status.value = True, "optimising …"
        start = time.perf_counter()
        try:
            result = run(ratio.value, w)
            picture.value = png_bytes(result)
            status.value = (
                f"optimised: α/β = {10**ratio.value:.3g}, {time.perf_counter() - start:.1f} s"
            )
        except Exception as error:  # the UI must say what went wrong, not swallow it
            status.value = f"failed: {type(error).__name__}: {error}"
            raise
        finally:
            button.disabled = False

    ratio.observe(show_nearest, names="value")
    button.on_click(on_run)
    sliders = widgets.VBox([ratio, *weights.values()])
    return widgets.VBox([sliders, button, status, picture])
