"""nstcourse.style.gatys and guided Gram matrices: losses, optimiser, stylize and its controls.

Tiny images (long side 40–48 px) and the data pack's partial VGG-19 with the shallow
layers it covers (README, "Data and weights"), so that every test runs in well under a
second on a CPU.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from nstcourse.colour import luminance, rgb_to_yiq
from nstcourse.features import VGGFeatures
from nstcourse.images import load_image, resize_long_side
from nstcourse.losses import (
    content_loss,
    gram_matrix,
    guided_gram_matrix,
    layer_weights,
    style_loss,
    tv_loss,
)
from nstcourse.style.gatys import (
    DEFAULT_STYLE_WEIGHT,
    SHALLOW_CONTENT_LAYERS,
    SHALLOW_STYLE_LAYERS,
    GatysLoss,
    clamp_pixels,
    optimise_image,
    reconstruct_content,
    stylize,
    synthesize_texture,
)

SHALLOW = {"content_layers": SHALLOW_CONTENT_LAYERS, "style_layers": SHALLOW_STYLE_LAYERS}
HISTORY_KEYS = {"content", "style", "tv", "total", "scale", "seconds"}


@pytest.fixture(scope="module")
def vgg(partial_vgg19: Path) -> VGGFeatures:
    layers = ["relu1_1", "relu1_2", "relu2_1", "relu3_1", "relu3_2"]
    return VGGFeatures(layers, weights=partial_vgg19, device="cpu")


@pytest.fixture(scope="module")
def content(data_pack: Path) -> torch.Tensor:
    """tubingen.jpg, (1, 3, 30, 40)."""
    return load_image(data_pack / "images" / "content" / "tubingen.jpg", long_side=40)


@pytest.fixture(scope="module")
def style(data_pack: Path) -> torch.Tensor:
    """starry_night.jpg, (1, 3, 25, 40)."""
    return load_image(data_pack / "images" / "style" / "starry_night.jpg", long_side=40)


@pytest.fixture(scope="module")
def style2(data_pack: Path) -> torch.Tensor:
    """the_scream.jpg, (1, 3, 40, 31)."""
    return load_image(data_pack / "images" / "style" / "the_scream.jpg", long_side=40)


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    return -10 * math.log10(((x - y) ** 2).mean().item())


# ---------------------------------------------------------------- guided Gram matrices


def test_guided_gram_with_a_mask_of_ones_equals_gram() -> None:
    features = torch.randn(2, 4, 5, 6)
    torch.testing.assert_close(
        guided_gram_matrix(features, torch.ones(1, 1, 5, 6)), gram_matrix(features)
    )


def test_guided_gram_of_a_rectangle_equals_gram_of_the_crop() -> None:
    features = torch.randn(2, 4, 6, 7)
    mask = torch.zeros(1, 1, 6, 7)
    mask[..., 1:4, 2:6] = 1.0
    expected = gram_matrix(features[..., 1:4, 2:6])  # normalised by the crop's area
    torch.testing.assert_close(guided_gram_matrix(features, mask), expected)


def test_guided_gram_does_not_depend_on_a_constant_mask_value() -> None:
    features = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(
        guided_gram_matrix(features, torch.full((1, 1, 4, 4), 0.5)), gram_matrix(features)
    )


def test_guided_gram_per_sample_masks() -> None:
    features = torch.randn(2, 3, 4, 4)
    masks = torch.zeros(2, 1, 4, 4)
    masks[0, :, :2] = 1.0  # top half for sample 0
    masks[1, :, :, 2:] = 1.0  # right half for sample 1
    gram = guided_gram_matrix(features, masks)
    torch.testing.assert_close(gram[0], gram_matrix(features[:1, :, :2])[0])
    torch.testing.assert_close(gram[1], gram_matrix(features[1:, :, :, 2:])[0])


def test_guided_gram_mask_size_mismatch_is_value_error() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        guided_gram_matrix(torch.randn(1, 3, 4, 4), torch.ones(1, 1, 4, 5))


# ---------------------------------------------------------------- GatysLoss


def test_content_loss_is_zero_at_the_content_image(vgg, content, style) -> None:
    terms = GatysLoss(vgg, content, [style], **SHALLOW, content_weight=1.0, style_weight=1.0)(
        content
    )
    assert set(terms) == {"content", "style", "tv", "total"}
    assert terms["content"].item() == 0.0
    assert terms["style"].item() > 0.0


def test_style_loss_is_zero_at_the_style_image(vgg, style) -> None:
    objective = GatysLoss(
        vgg, None, [style], content_layers=[], style_layers=SHALLOW_STYLE_LAYERS,
        content_weight=1.0, style_weight=1.0,
    )  # fmt: skip
    terms = objective(style)
    assert terms["style"].item() == pytest.approx(0.0, abs=1e-6)
    assert terms["total"].item() == pytest.approx(0.0, abs=1e-6)
    assert objective(torch.rand_like(style))["style"].item() > 1.0


def test_terms_are_the_weighted_losses_of_the_losses_module(vgg, content, style) -> None:
    layers = {"relu1_1": 2.0, "relu2_1": 0.5}
    objective = GatysLoss(
        vgg, content, [style], content_layers={"relu3_2": 3.0}, style_layers=layers,
        content_weight=0.1, style_weight=10.0, tv_weight=4.0,
    )  # fmt: skip
    x = torch.rand_like(content)
    terms = objective(x)
    f_x, f_c, f_s = vgg(x), vgg(content), vgg(style)
    expected_content = 0.1 * 3.0 * content_loss(f_x["relu3_2"], f_c["relu3_2"])
    expected_style = 10.0 * sum(
        w * style_loss(f_x[k], gram_matrix(f_s[k])) for k, w in layers.items()
    )
    torch.testing.assert_close(terms["content"], expected_content)
    torch.testing.assert_close(terms["style"], expected_style)
    torch.testing.assert_close(terms["tv"], 4.0 * tv_loss(x))
    torch.testing.assert_close(terms["total"], terms["content"] + terms["style"] + terms["tv"])


@pytest.mark.parametrize("blend", [None, [0.3, 0.7]])
def test_blend_of_two_identical_styles_equals_one_style(vgg, content, style, blend) -> None:
    def loss(styles, style_blend):
        objective = GatysLoss(
            vgg, content, styles, **SHALLOW, content_weight=1.0, style_weight=1.0,
            style_blend=style_blend,
        )  # fmt: skip
        return objective(torch.rand_like(content, generator=torch.Generator().manual_seed(1)))

    torch.testing.assert_close(loss([style, style], blend)["style"], loss([style], None)["style"])


def test_blend_weight_zero_ignores_a_style(vgg, content, style, style2) -> None:
    x = torch.rand_like(content)
    kwargs = dict(**SHALLOW, content_weight=1.0, style_weight=1.0)
    blended = GatysLoss(vgg, content, [style, style2], style_blend=[1.0, 0.0], **kwargs)(x)
    alone = GatysLoss(vgg, content, [style], **kwargs)(x)
    torch.testing.assert_close(blended["style"], alone["style"])


def test_mask_of_ones_equals_no_mask(vgg, content, style) -> None:
    x = torch.rand_like(content)
    kwargs = dict(**SHALLOW, content_weight=1.0, style_weight=1.0)
    masked = GatysLoss(vgg, content, [style], masks=[torch.ones(30, 40)], **kwargs)(x)
    torch.testing.assert_close(
        masked["style"], GatysLoss(vgg, content, [style], **kwargs)(x)["style"]
    )


def test_fine_style_on_every_layer_equals_that_style(vgg, content, style, style2) -> None:
    x = torch.rand_like(content)
    kwargs = dict(**SHALLOW, content_weight=1.0, style_weight=1.0)
    fine = GatysLoss(
        vgg, content, [style], fine_style=style2, fine_layers=SHALLOW_STYLE_LAYERS, **kwargs
    )(x)
    torch.testing.assert_close(
        fine["style"], GatysLoss(vgg, content, [style2], **kwargs)(x)["style"]
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"style_blend": [1.0]}, "style_blend has 1 weights for 2 styles"),
        ({"masks": [torch.ones(30, 40)]}, "got 1 masks for 2 style images"),
        ({"style_layers": ["relu1_1", "relu4_1"]}, r"does not return layer\(s\) \['relu4_1'\]"),
        ({"content_layers": ["conv4_2"]}, "conv4_2"),
        ({"fine_style": "style", "fine_layers": ["relu1_2"]}, r"fine_layers \['relu1_2'\]"),
    ],
)
def test_gatys_loss_bad_arguments(vgg, content, style, overrides, message) -> None:
    if overrides.get("fine_style") == "style":
        overrides["fine_style"] = style
    kwargs = dict(**SHALLOW, content_weight=1.0, style_weight=1.0) | overrides
    with pytest.raises(ValueError, match=message):
        GatysLoss(vgg, content, [style, style], **kwargs)


def test_layer_weights() -> None:
    assert layer_weights(["relu1_1", "relu2_1"]) == {"relu1_1": 1.0, "relu2_1": 1.0}
    assert layer_weights({"relu1_1": 2}) == {"relu1_1": 2.0}
    with pytest.raises(TypeError, match="not the string"):
        layer_weights("relu1_1")


# ---------------------------------------------------------------- optimise_image


def quadratic(target: torch.Tensor):
    """An objective with a known minimum: sum (x - target)²."""

    def objective(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"total": ((x - target) ** 2).sum()}

    return objective


def test_optimise_image_finds_a_known_minimum_and_clamps() -> None:
    target = torch.tensor([[[[0.3, 0.8], [1.5, -0.2]]]])  # the last two lie outside [0, 1]
    x = optimise_image(torch.zeros_like(target), quadratic(target), steps=20)
    torch.testing.assert_close(x, target.clamp(0, 1), atol=1e-4, rtol=0)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_optimise_image_decreases_the_loss_and_counts_steps(vgg, content, style, optimizer):
    objective = GatysLoss(vgg, content, [style], **SHALLOW, content_weight=1.0, style_weight=100.0)
    x0 = torch.rand_like(content)
    calls: list[int] = []
    x = optimise_image(
        x0, objective, steps=8, optimizer=optimizer, on_step=lambda i, x, t: calls.append(i)
    )
    assert x.shape == x0.shape and x.min() >= 0 and x.max() <= 1
    with torch.no_grad():
        before, after = objective(x0)["total"].item(), objective(x)["total"].item()
    assert after < 0.9 * before
    assert calls == list(range(len(calls)))
    if optimizer == "adam":
        assert len(calls) == 8
    else:  # L-BFGS may finish its last line search (at most 25 evaluations)
        assert 8 <= len(calls) <= 8 + 25


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_optimise_image_nan_objective_is_floating_point_error(optimizer) -> None:
    def objective(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"total": (x * float("nan")).sum()}

    with pytest.raises(FloatingPointError, match="lower lr"):
        optimise_image(torch.rand(1, 3, 4, 4), objective, steps=5, optimizer=optimizer)


def test_optimise_image_zero_steps_returns_the_start() -> None:
    x0 = torch.rand(1, 3, 4, 4)
    calls: list[int] = []
    x = optimise_image(x0, quadratic(x0 * 0), steps=0, on_step=lambda *a: calls.append(1))
    assert torch.equal(x, x0) and not calls


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"optimizer": "sgd"}, "optimizer='sgd'"), ({"steps": -1}, "steps")]
)
def test_optimise_image_bad_arguments(kwargs, message) -> None:
    x0 = torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match=message):
        optimise_image(x0, quadratic(x0), **({"steps": 3} | kwargs))


# ---------------------------------------------------------------- stylize


def test_stylize_output_and_history(vgg, content, style) -> None:
    seen: list[tuple[int, tuple[int, ...]]] = []
    result = stylize(
        content, style, extractor=vgg, **SHALLOW, optimizer="adam", steps=4, progress=False,
        callback=lambda i, x, terms: seen.append((i, tuple(x.shape))),
    )  # fmt: skip
    assert result.image.shape == content.shape
    assert result.image.min() >= 0 and result.image.max() <= 1
    assert set(result.history) == HISTORY_KEYS
    assert all(len(v) == 4 for v in result.history.values())
    assert result.history["scale"] == [40] * 4
    seconds = result.history["seconds"]
    assert seconds == sorted(seconds) and result.seconds >= seconds[-1]
    assert seen == [(i, tuple(content.shape)) for i in range(4)]


def test_stylize_coarse_to_fine(vgg, content, style) -> None:
    seen: list[tuple[int, ...]] = []
    result = stylize(
        content, style, extractor=vgg, **SHALLOW, optimizer="adam", steps=[2, 3],
        scales=[16, 24], progress=False, callback=lambda i, x, terms: seen.append(x.shape),
    )  # fmt: skip
    assert result.history["scale"] == [16, 16, 24, 24, 24]
    assert result.image.shape == (1, 3, 18, 24)  # the last scale, not the content's 40 px
    assert [s[-1] for s in seen] == [16, 16, 24, 24, 24]


def test_stylize_lbfgs_from_content_moves_towards_the_style(vgg, content, style) -> None:
    result = stylize(content, style, extractor=vgg, **SHALLOW, steps=10, progress=False)
    total = result.history["total"]
    assert total[-1] < 0.5 * total[0]
    assert not torch.equal(result.image, content)


def test_stylize_default_style_weight_follows_the_weights_convention(vgg, content, style):
    def first_style_term(style_weight):
        return stylize(
            content, style, extractor=vgg, **SHALLOW, steps=1, optimizer="adam",
            style_weight=style_weight, progress=False,
        ).history["style"][0]  # fmt: skip

    assert vgg.weights_info.convention == "caffe"
    assert first_style_term(None) == pytest.approx(first_style_term(DEFAULT_STYLE_WEIGHT["caffe"]))


def test_stylize_is_deterministic_with_a_seed(vgg, content, style) -> None:
    def run(seed: int) -> torch.Tensor:
        return stylize(
            content, style, extractor=vgg, **SHALLOW, init="noise", steps=3, seed=seed,
            progress=False,
        ).image  # fmt: skip

    first = run(7)
    assert torch.equal(first, run(7))
    assert not torch.equal(first, run(8))


@pytest.mark.parametrize("init", ["style", "image"])
def test_stylize_other_inits(vgg, content, style, init) -> None:
    start = torch.rand(1, 3, 10, 10) if init == "image" else init
    result = stylize(
        content, style, extractor=vgg, **SHALLOW, init=start, steps=2, optimizer="adam",
        progress=False,
    )  # fmt: skip
    assert result.image.shape == content.shape


@pytest.mark.parametrize("colour", ["luminance", "swap"])
def test_stylize_keeps_the_content_chrominance(vgg, content, style, colour) -> None:
    result = stylize(
        content, style, extractor=vgg, **SHALLOW, colour=colour, steps=5, progress=False
    )
    out = result.image
    inside = ((out > 0) & (out < 1)).all(dim=1)  # pixels not clamped to the RGB cube
    assert inside.float().mean() > 0.5
    iq_out, iq_content = rgb_to_yiq(out)[:, 1:], rgb_to_yiq(content)[:, 1:]
    diff = (iq_out - iq_content).abs().amax(dim=1)
    assert diff[inside].max() < 1e-4
    plain = stylize(content, style, extractor=vgg, **SHALLOW, steps=5, progress=False).image
    assert (rgb_to_yiq(plain)[:, 1:] - iq_content).abs().max() > 0.05  # it did matter
    # the luminance came from the optimisation, not from the content
    assert (luminance(out) - luminance(content)).abs().max() > 0.05


def test_stylize_histogram_colour_runs(vgg, content, style) -> None:
    result = stylize(
        content, style, extractor=vgg, **SHALLOW, colour="histogram", steps=3, progress=False
    )
    assert result.image.shape == content.shape
    assert torch.isfinite(result.image).all()


def test_stylize_two_styles_in_two_regions(vgg, content, style, style2) -> None:
    left = torch.zeros(30, 40)
    left[:, :20] = 1.0
    result = stylize(
        content, [style, style2], extractor=vgg, **SHALLOW, masks=[left, 1 - left],
        scales=[20, 40], steps=2, optimizer="adam", progress=False,
    )  # fmt: skip
    assert result.image.shape == content.shape
    assert result.history["style"][-1] > 0


def test_stylize_fine_style_runs(vgg, content, style, style2) -> None:
    result = stylize(
        content, style, extractor=vgg, **SHALLOW, fine_style=style2, fine_layers=["relu1_1"],
        steps=2, optimizer="adam", progress=False,
    )  # fmt: skip
    assert result.image.shape == content.shape


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"content": torch.rand(3, 30, 40)}, r"content image must be \(1, 3, H, W\)"),
        ({"styles": torch.rand(1, 1, 30, 40)}, r"style 0 image must be \(1, 3, H, W\)"),
        ({"styles": []}, "at least one style"),
        ({"init": "zeros"}, "init='zeros'"),
        ({"init": torch.rand(3, 8, 8)}, r"init image must be \(1, 3, H, W\)"),
        ({"optimizer": "sgd"}, "optimizer='sgd'"),
        ({"colour": "sepia"}, "colour='sepia'"),
        ({"scales": [32, 16]}, "scales must be increasing"),
        ({"steps": [1, 2]}, "2 step counts for 1 scales"),
        ({"steps": -1}, "steps must be"),
        ({"style_scale": 0.0}, "style_scale"),
        ({"masks": [torch.ones(30, 41)]}, r"mask 0 is \(30, 41\)"),
        ({"masks": [torch.ones(30, 40)] * 2}, "got 2 masks for 1 style images"),
        ({"fine_style": "style2", "fine_layers": ["relu1_2"]}, "fine_layers"),
        ({"fine_style": "style2", "masks": [torch.ones(30, 40)]}, "masks or fine_style"),
        ({"style_layers": ["relu9_1"], "extractor": None}, r"unknown vgg19 layer\(s\)"),
    ],
)
def test_stylize_bad_arguments(vgg, content, style, style2, kwargs, message) -> None:
    arguments = dict(content=content, styles=style, extractor=vgg, **SHALLOW, steps=1)
    arguments.update(kwargs)
    if arguments.get("fine_style") == "style2":
        arguments["fine_style"] = style2
    with pytest.raises(ValueError, match=message):
        stylize(**arguments, progress=False)


def test_stylize_interrupted_closes_its_progress_bar(vgg, content, style, capsys) -> None:
    def interrupt(step, image, terms):
        if step == 2:
            raise KeyboardInterrupt

    try:
        stylize(content, style, extractor=vgg, **SHALLOW, steps=5, callback=interrupt)
    except KeyboardInterrupt:  # what the CLI does: say so at once
        print("interrupted", file=sys.stderr)
    else:
        pytest.fail("KeyboardInterrupt was not raised")
    assert "\ninterrupted\n" in capsys.readouterr().err  # the bar ended its line first


# ---------------------------------------------------------------- reconstruction, texture


def test_reconstruct_content_from_relu1_2_comes_close_to_the_image(vgg, data_pack) -> None:
    image = load_image(data_pack / "images" / "content" / "tubingen.jpg", long_side=48)
    result = reconstruct_content(image, "relu1_2", extractor=vgg, steps=100, progress=False)
    noise = torch.rand(image.shape, generator=torch.Generator().manual_seed(0))
    # measured 17.1 dB (noise: 9.0 dB); relu1_2 keeps the image up to its ReLU's losses
    assert psnr(result.image, image) > 15.0
    assert psnr(result.image, image) > psnr(noise, image) + 5.0
    assert result.history["total"][-1] < 1e-3 * result.history["total"][0]


def test_synthesize_texture_decreases_the_style_loss(vgg, style) -> None:
    result = synthesize_texture(
        style, SHALLOW_STYLE_LAYERS, size=(24, 32), extractor=vgg, steps=20, progress=False
    )
    assert result.image.shape == (1, 3, 24, 32)
    total = result.history["total"]
    assert total[-1] < 0.2 * total[0]  # measured: 0.06
    assert result.history["content"] == [0.0] * len(total)


def test_reconstruct_builds_its_own_extractor(partial_vgg19, monkeypatch, content) -> None:
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(partial_vgg19.parent))
    small = resize_long_side(content, 16)
    result = reconstruct_content(small, "relu1_1", steps=2, device="cpu", progress=False)
    assert result.image.shape == small.shape


def test_clamp_pixels_has_the_value_of_clamp_and_a_gradient_back_into_range() -> None:
    x = torch.tensor([-0.5, 0.0, 0.3, 1.0, 1.5], requires_grad=True)
    y = clamp_pixels(x)
    torch.testing.assert_close(y, x.detach().clamp(0, 1))
    # A loss that wants every pixel darker: -grad points down. The pixel at -0.5 must not
    # go further down; the one at 1.5 may come back (torch.clamp would freeze it, and
    # the pixels at 0 and 1 too).
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0]))
    x.grad = None
    (-clamp_pixels(x)).sum().backward()  # wants them brighter
    torch.testing.assert_close(x.grad, torch.tensor([-1.0, -1.0, -1.0, -1.0, 0.0]))


def test_optimise_image_scores_the_image_it_returns(vgg, content, style) -> None:
    """Every evaluation is of an image in [0, 1], and its loss is that image's loss."""
    objective = GatysLoss(vgg, content, [style], **SHALLOW, content_weight=1.0, style_weight=1e4)
    seen = []
    optimise_image(
        content, objective, steps=8, on_step=lambda step, image, terms: seen.append((image, terms))
    )
    for image, terms in seen:
        assert image.min() >= 0 and image.max() <= 1
        with torch.no_grad():
            assert objective(image)["total"].item() == pytest.approx(terms["total"], rel=1e-4)
