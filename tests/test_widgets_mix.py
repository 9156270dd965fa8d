"""nstcourse.widgets.style_mix_controls in Python: normalised weights, rendering, errors.

The same UI in a real JupyterLab page: tests/test_browser_cin.py.
"""

from __future__ import annotations

import pytest
import torch

from nstcourse.widgets import ALPHA_SLIDER, png_bytes, style_mix_controls

NAMES = ("wave", "scream", "udnie")


class Recorder:
    """A render function that remembers its calls and paints a flat image of the mix:
    red = weight of style 0, green = weight of style 1, blue = α (0 without one)."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[float], float | None]] = []

    def __call__(self, weights: list[float], alpha: float | None) -> torch.Tensor:
        self.calls.append((weights, alpha))
        colour = torch.tensor([weights[0], weights[1], alpha or 0.0])
        return colour.view(1, 3, 1, 1).expand(1, 3, 8, 12).clone()


def test_start_image_is_rendered_with_the_initial_mix() -> None:
    render = Recorder()
    controls = style_mix_controls(render, NAMES, initial_weights=[0.5, 0.5, 0.0])
    sliders, status, picture = controls.children
    assert [s.description for s in sliders.children] == list(NAMES)
    assert all(not s.continuous_update and (s.min, s.max, s.step) == (0, 1, 0.05)
               for s in sliders.children)  # fmt: skip
    assert render.calls == [([0.5, 0.5, 0.0], None)]
    assert picture.value == png_bytes(render(*render.calls[0]))
    assert status.value.startswith("mix: wave 0.50, scream 0.50;"), status.value
    assert "udnie" not in status.value, "styles with weight 0 are left out of the status"


def test_moving_a_slider_renders_the_normalised_mix() -> None:
    render = Recorder()
    sliders, status, picture = style_mix_controls(render, NAMES).children
    assert render.calls == [([1.0, 0.0, 0.0], None)]  # default: all on the first style
    before = picture.value

    sliders.children[1].value = 0.25  # scream: raw weights (1, 0.25, 0) → (0.8, 0.2, 0)

    assert len(render.calls) == 2
    weights, alpha = render.calls[-1]
    assert weights == pytest.approx([0.8, 0.2, 0.0]) and alpha is None
    assert picture.value != before
    assert picture.value == png_bytes(render(weights, None))
    assert status.value.startswith("mix: wave 0.80, scream 0.20;"), status.value
    assert status.value.endswith(" ms")


def test_alpha_slider_is_passed_to_render() -> None:
    render = Recorder()
    sliders, status, picture = style_mix_controls(render, NAMES[:2], alpha=0.5).children
    assert [s.description for s in sliders.children] == [*NAMES[:2], ALPHA_SLIDER]
    assert render.calls[-1] == ([1.0, 0.0], 0.5)
    before = picture.value

    sliders.children[2].value = 0.75

    assert render.calls[-1] == ([1.0, 0.0], 0.75)
    assert picture.value != before
    assert "α 0.75" in status.value


def test_all_zero_weights_show_an_error_and_keep_the_image() -> None:
    render = Recorder()
    sliders, status, picture = style_mix_controls(render, NAMES).children
    before, calls = picture.value, len(render.calls)

    sliders.children[0].value = 0.0  # the only non-zero weight

    assert len(render.calls) == calls, "render must not be called without a style"
    assert picture.value == before
    assert "all style weights are 0" in status.value

    sliders.children[2].value = 0.4  # any weight back: rendering resumes, all on udnie
    assert render.calls[-1] == ([0.0, 0.0, 1.0], None)
    assert status.value.startswith("mix: udnie 1.00;"), status.value


def test_a_failing_render_is_shown_in_the_status_and_raised() -> None:
    def broken(weights: list[float], alpha: float | None) -> torch.Tensor:
        if weights[0] < 1:
            raise RuntimeError("out of memory")
        return torch.zeros(1, 3, 4, 4)

    sliders, status, _picture = style_mix_controls(broken, NAMES[:2]).children
    with pytest.raises(RuntimeError, match="out of memory"):
        sliders.children[1].value = 0.5
    assert status.value == "failed: RuntimeError: out of memory"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(names=[]), "names is empty"),
        (dict(names=["a", "a"]), "names has repeats"),
        (dict(initial_weights=[1.0, 0.0]), "initial_weights has 2 values for 3 names"),
        (dict(initial_weights=[0.0, 0.0, 0.0]), "initial_weights"),
        (dict(initial_weights=[1.5, 0.0, 0.0]), "initial_weights"),
        (dict(alpha=1.2), "alpha=1.2"),
        (dict(width=0), "width=0"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(kwargs: dict, match: str) -> None:
    render = Recorder()
    arguments = {"names": NAMES, **kwargs}
    with pytest.raises(ValueError, match=match):
        style_mix_controls(render, **arguments)
    assert render.calls == [], "nothing is rendered for bad arguments"
