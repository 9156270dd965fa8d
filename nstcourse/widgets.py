"""ipywidgets UIs for the notebooks.

Images cross into the browser as PNG bytes in an ``ipywidgets.Image``; every slider has
``continuous_update=False``, so work starts only when a slider is released or a button
pressed, never on every pixel of a drag.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import ipywidgets as widgets
import torch

from nstcourse.images import ImageError, load_image, resize_long_side, to_pil

RATIO_SLIDER = "log10(α/β)"
RUN_BUTTON = "Run"
ALPHA_SLIDER = "α"  # the content–style trade-off of style_mix_controls
IMAGE_MENU = "image"  # the picture menu of image_choice_controls
WAY_MENU = "way"  # its second menu (for example the direction of a translation)
UPLOAD_PREFIX = "upload: "  # menu entries of uploaded files


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


def style_mix_controls(
    render: Callable[[list[float], float | None], torch.Tensor],
    names: Sequence[str],
    *,
    initial_weights: Sequence[float] | None = None,
    alpha: float | None = None,
    width: int = 384,
) -> widgets.VBox:
    r"""One weight slider per style (and optionally an α slider), and the rendered mix.

    When a slider is released the weights are normalised to a convex mix,
    :math:`w_s \leftarrow w_s / \sum_t w_t`, and ``render`` draws the image again (all
    weights 0: the status says so, nothing is rendered, the image stays). Meant for
    feed-forward networks (CIN's γ/β mix, AdaIN's style interpolation): one render should
    take milliseconds, not seconds.

    Args:
        render: ``render(weights, alpha)`` → (1, 3, H, W) in [0, 1]; ``weights`` are S
            floats summing to 1, ``alpha`` the α slider's value (None without one).
        names: the S style names, one slider each (0 … 1, step 0.05), labelled by name.
        initial_weights: the sliders' start values, S numbers in [0, 1], not all 0
            (default: all weight on the first style).
        alpha: the α slider's start value in [0, 1]; None: no α slider.
        width: the image's display width in pixels.

    Returns:
        The UI (``display`` it, or make it a cell's last expression); ``render`` has been
        called once for the start image. Its ``children`` are the sliders' box (the S
        weight sliders in the order of ``names``, then the α slider if any), a status label
        (normalised weights and the render time) and the image:
        ``sliders, status, picture = controls.children``.

    Raises:
        ValueError: empty or repeated ``names``, ``initial_weights`` of the wrong length,
            out of [0, 1] or all 0, ``alpha`` out of [0, 1], ``width`` < 1.
    """
    names = list(names)
    if not names:
        raise ValueError("names is empty: give at least one style name")
    if len(set(names)) != len(names):
        raise ValueError(f"names has repeats: {names} (each names one slider)")
    if initial_weights is None:
        initial_weights = [1.0] + [0.0] * (len(names) - 1)
    initial_weights = [float(w) for w in initial_weights]
    if len(initial_weights) != len(names):
        raise ValueError(
            f"initial_weights has {len(initial_weights)} values for {len(names)} names"
        )
    if not all(0.0 <= w <= 1.0 for w in initial_weights) or not any(initial_weights):
        raise ValueError(f"initial_weights={initial_weights}: each in [0, 1], not all 0")
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha} must be in [0, 1] (or None for no α slider)")
    if width < 1:
        raise ValueError(f"width={width} must be a positive number of pixels")

    # Labels as wide as the longest name (1 ch: the width of "0", wider than most letters),
    # so no name is cut off and the slider tracks line up.
    label_ch = max(len(name) for name in names) + 1

    def new_slider(value: float, description: str) -> widgets.FloatSlider:
        return widgets.FloatSlider(
            value=value, min=0.0, max=1.0, step=0.05, description=description,
            continuous_update=False, style={"description_width": f"{label_ch}ch"},
            layout=widgets.Layout(width=f"calc({label_ch}ch + 260px)"),
        )  # fmt: skip

    weight_sliders = [new_slider(w, name) for name, w in zip(names, initial_weights, strict=True)]
    alpha_slider = None if alpha is None else new_slider(alpha, ALPHA_SLIDER)
    status = widgets.Label()
    picture = widgets.Image(format="png", width=width)

    def update(_: object = None) -> None:
        raw = [s.value for s in weight_sliders]
        total = sum(raw)
        if total <= 0:
            status.value = "all style weights are 0: raise one to choose a style"
            return
        weights = [w / total for w in raw]
        a = None if alpha_slider is None else alpha_slider.value
        start = time.perf_counter()
        try:
            picture.value = png_bytes(render(weights, a))
        except Exception as error:  # the UI must say what went wrong, not swallow it
            status.value = f"failed: {type(error).__name__}: {error}"
            raise
        ms = 1000 * (time.perf_counter() - start)
        mix = ", ".join(f"{n} {w:.2f}" for n, w in zip(names, weights, strict=True) if w)
        status.value = "mix: " + mix + ("" if a is None else f"; α {a:.2f}") + f"; {ms:.0f} ms"

    update()
    all_sliders = [*weight_sliders, *([alpha_slider] if alpha_slider else [])]
    for s in all_sliders:
        s.observe(update, names="value")
    return widgets.VBox([widgets.VBox(all_sliders), status, picture])


def image_choice_controls(
    render: Callable[[torch.Tensor, str], torch.Tensor],
    samples: Mapping[str, torch.Tensor],
    ways: Sequence[str],
    *,
    max_side: int = 1024,
    width: int = 768,
) -> widgets.VBox:
    """Pick an image from a menu, or upload one, and a way to render it; shows the result.

    Choosing a menu entry calls ``render(image, way)`` and shows what it returns (for
    example a strip x | G(x) | F(G(x))). An uploaded file is read by ``images.load_image``
    (EXIF orientation, transparency, the decompression-bomb check), shrunk to a long side
    of at most ``max_side``, added to the image menu as "upload: NAME" and shown; a file
    that cannot be read leaves the picture as it was and the status names it.

    Args:
        render: ``render(image, way)`` → (1, 3, H, W) in [0, 1], for ``image`` (1, 3, h, w)
            in [0, 1] of any size and ``way`` one of ``ways``.
        samples: {menu name: (1, 3, h, w) image in [0, 1]}, at least one; the first is shown.
        ways: the second menu's entries (at least one), e.g. the two directions of a
            translation.
        max_side: uploads larger than this are shrunk (bicubic) before ``render``.
        width: the picture's display width in pixels.

    Returns:
        The UI (``display`` it, or make it a cell's last expression); ``render`` has been
        called once. ``menus, status, picture = controls.children``, and
        ``image_menu, way_menu, upload = menus.children``.

    Raises:
        ValueError: no samples, a name starting with "upload: ", no ways, repeated ways,
            ``max_side`` or ``width`` < 1.
    """
    images = dict(samples)
    if not images:
        raise ValueError("samples is empty: give at least one {name: image}")
    taken = [name for name in images if name.startswith(UPLOAD_PREFIX)]
    if taken:
        raise ValueError(f"sample names {taken} start with {UPLOAD_PREFIX!r}, kept for uploads")
    ways = list(ways)
    if not ways or len(set(ways)) != len(ways):
        raise ValueError(f"ways={ways}: give one or more distinct names")
    if max_side < 1 or width < 1:
        raise ValueError(f"max_side={max_side}, width={width}: both must be positive")

    image_menu = widgets.Dropdown(options=list(images), description=IMAGE_MENU)
    way_menu = widgets.Dropdown(options=ways, description=WAY_MENU)
    upload = widgets.FileUpload(accept="image/*", multiple=False, description="upload")
    status = widgets.Label()
    picture = widgets.Image(format="png", width=width)

    def update(_: object = None) -> None:
        start = time.perf_counter()
        try:
            picture.value = png_bytes(render(images[image_menu.value], way_menu.value))
        except Exception as error:  # the UI must say what went wrong, not swallow it
            status.value = f"failed: {type(error).__name__}: {error}"
            raise
        ms = 1000 * (time.perf_counter() - start)
        status.value = f"{image_menu.value}, {way_menu.value}: {ms:.0f} ms"

    def on_upload(change: dict) -> None:
        for item in change["new"]:
            name = str(item["name"])
            try:
                image = _read_upload(name, bytes(item["content"]))
            except (ImageError, OSError) as error:
                status.value = f"could not read {name}: {error}"
                continue
            if max(image.shape[-2:]) > max_side:
                image = resize_long_side(image, max_side)
            key = UPLOAD_PREFIX + name
            images[key] = image
            if key not in image_menu.options:
                image_menu.options = [*image_menu.options, key]
            if image_menu.value == key:
                update()  # the same name again: a new file, the same menu entry
            else:
                image_menu.value = key  # observed: renders

    update()
    image_menu.observe(update, names="value")
    way_menu.observe(update, names="value")
    upload.observe(on_upload, names="value")
    return widgets.VBox([widgets.HBox([image_menu, way_menu, upload]), status, picture])


def _read_upload(name: str, content: bytes) -> torch.Tensor:
    """An uploaded file's bytes → (1, 3, H, W) in [0, 1]; errors name the upload, not the
    temporary file it was read from."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("upload" + Path(name).suffix.lower())
        path.write_bytes(content)
        try:
            return load_image(path)
        except ImageError as error:
            raise ImageError(str(error).replace(str(path), name)) from None
