"""The per-convention loss weights: their sources, their use, and the measurement behind them."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
import torch

from nstcourse.checkpoints import read_metadata
from nstcourse.conventions import (
    CAFFE,
    CONVENTIONS,
    FEATURE_RATIO,
    MEASURED_FEATURE_RATIO,
    TABLE,
    TORCHVISION,
    by_convention,
    weights_for,
)
from nstcourse.features import Normalize, VGGFeatures
from nstcourse.images import load_image, resize_long_side
from nstcourse.losses import content_loss, gram_matrix, tv_loss
from nstcourse.sr.srgan import VGGContentLoss
from nstcourse.style import gatys
from nstcourse.style import recipes as style_recipes
from nstcourse.style.adain import INPUT_SCALE

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
LAYERS = ("relu1_1", "relu2_1", "relu3_1")
PAIRS = [("tubingen", "candy"), ("chicago", "mondrian"), ("amber", "composition_vii")]


def test_every_convention_has_a_row_and_unknown_ones_are_refused() -> None:
    assert set(TABLE) == set(CONVENTIONS)
    assert weights_for("caffe") is CAFFE and weights_for("torchvision") is TORCHVISION
    with pytest.raises(ValueError, match="'bgr'.*caffe.*torchvision"):
        weights_for("bgr")


def test_package_defaults_read_the_table() -> None:
    assert by_convention("gatys_style_weight") == gatys.DEFAULT_STYLE_WEIGHT
    assert by_convention("gatys_tv_weight") == gatys.TV_WEIGHT
    assert by_convention("feed_forward_style_weight") == style_recipes.DEFAULT_STYLE_WEIGHT
    assert by_convention("adain_input_scale") == INPUT_SCALE


@pytest.mark.parametrize(
    ("checkpoint", "field", "recorded"),
    [
        ("srgan_x4", "srgan_vgg_rescale", lambda m: m["recipe"]["vgg_rescale"]),
        ("johnson_wave", "feed_forward_style_weight", lambda m: m["recipe"]["style_weight"]),
        ("cin", "feed_forward_style_weight", lambda m: m["recipe"]["style_weight"]),
        ("adain", "adain_input_scale", lambda m: m["kwargs"]["input_scale"]),
    ],
)
def test_caffe_values_are_those_the_shipped_checkpoints_record(checkpoint, field, recorded) -> None:
    metadata = read_metadata(CHECKPOINTS / f"{checkpoint}.safetensors")
    assert metadata.get("vgg", {"convention": "caffe"})["convention"] == "caffe"
    assert getattr(CAFFE, field) == pytest.approx(recorded(metadata), rel=1e-12)


def test_tv_weight_follows_the_content_term_not_beta() -> None:
    # TV is a pixel term: the same share of the loss needs γ scaled like α·L_content (ratio²).
    assert TORCHVISION.gatys_tv_weight * FEATURE_RATIO**2 == pytest.approx(CAFFE.gatys_tv_weight)
    # The sweep notebook 02 used to run (γ = 10·β) is 10⁷ under torchvision: ~3·10⁷ too large.
    assert 10 * TORCHVISION.gatys_style_weight / TORCHVISION.gatys_tv_weight > 1e7


def test_vgg_content_loss_takes_the_rescale_of_its_extractors_convention(partial_vgg19) -> None:
    vgg = VGGFeatures(["relu2_2"], weights=partial_vgg19, device="cpu")
    assert VGGContentLoss(vgg).rescale == CAFFE.srgan_vgg_rescale
    assert VGGContentLoss(vgg, rescale=0.5).rescale == 0.5


def _pair(data_pack: Path, content: str, style: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two 128×128 crops (content photo, painting) from the data pack."""

    def crop(path: Path) -> torch.Tensor:
        image = resize_long_side(load_image(path), 256)
        return image.reshape(1, 3, *image.shape[-2:])[..., :128, :128]

    images = data_pack / "images"
    return crop(images / "content" / f"{content}.jpg"), crop(images / "style" / f"{style}.jpg")


def _losses(vgg: VGGFeatures, convention: str, a: torch.Tensor, b: torch.Tensor):
    """Per layer: (content loss, Gram loss) of a against b under ``convention``'s input."""
    vgg.normalize = Normalize(convention)
    with torch.no_grad():
        fa, fb = vgg(a), vgg(b)
    return {
        layer: (
            content_loss(fa[layer], fb[layer]).item(),
            ((gram_matrix(fa[layer]) - gram_matrix(fb[layer])) ** 2).mean().item(),
        )
        for layer in LAYERS
    }


@pytest.mark.datapack
def test_measured_feature_ratio_on_the_partial_vgg(data_pack, partial_vgg19) -> None:
    """The same weights, fed a Caffe and a torchvision normalisation of the same images:
    content losses differ by ratio², style losses by ratio⁴, ratio near the table's."""
    vgg = VGGFeatures(list(LAYERS), weights=partial_vgg19, device="cpu")
    ratios = []
    for content, style in PAIRS:
        a, b = _pair(data_pack, content, style)
        caffe, torchvision = _losses(vgg, "caffe", a, b), _losses(vgg, "torchvision", a, b)
        for layer in LAYERS:
            ratios.append((caffe[layer][0] / torchvision[layer][0]) ** 0.5)
            ratios.append((caffe[layer][1] / torchvision[layer][1]) ** 0.25)
    assert min(ratios) > 30 and max(ratios) < FEATURE_RATIO
    assert statistics.median(ratios) == pytest.approx(MEASURED_FEATURE_RATIO, rel=0.15)


@pytest.mark.datapack
def test_tv_share_of_the_loss_is_kept_across_conventions(data_pack, partial_vgg19) -> None:
    """γ·TV against α·L_content: the table's γ gives the same share under both inputs (up to
    (FEATURE_RATIO / measured ratio)²), where γ = 10·β would not."""
    vgg = VGGFeatures(["relu3_1"], weights=partial_vgg19, device="cpu")
    a, b = _pair(data_pack, "tubingen", "candy")
    tv = tv_loss(a).item()
    content, share = {}, {}
    for convention in CONVENTIONS:
        vgg.normalize = Normalize(convention)
        with torch.no_grad():
            content[convention] = content_loss(vgg(a)["relu3_1"], vgg(b)["relu3_1"]).item()
        share[convention] = weights_for(convention).gatys_tv_weight * tv / content[convention]
    assert share["torchvision"] / share["caffe"] == pytest.approx(1.0, abs=0.8)
    ten_beta = 10 * TORCHVISION.gatys_style_weight
    assert ten_beta * tv / content["torchvision"] > 1e4 * share["caffe"]
