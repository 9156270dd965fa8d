"""Johnson et al.'s perceptual-loss SR: the network, its loss, the measures, the recipe."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from nstcourse.checkpoints import read_metadata
from nstcourse.features import VGGFeatures
from nstcourse.metrics import mean_gradient
from nstcourse.sr.data import load_sr_set
from nstcourse.sr.models import evaluate, load_sr_checkpoint, super_resolve
from nstcourse.sr.perceptual import (
    PerceptualSRLoss,
    PerceptualSRNet,
    feature_distance,
    upsample_block,
)
from nstcourse.sr.recipes import PerceptualSRRecipe, train_sr
from nstcourse.sr.srgan import VGGContentLoss


@pytest.fixture(scope="module")
def vgg22(partial_vgg19) -> VGGFeatures:
    return VGGFeatures(["relu2_2"], arch="vgg19", weights=partial_vgg19, device="cpu")


# --- the network -----------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("upsample", ["nearest", "transpose"])
def test_network_upscales_by_scale_into_the_unit_range(scale, upsample) -> None:
    torch.manual_seed(0)
    net = PerceptualSRNet(scale=scale, blocks=1, width=8, upsample=upsample).eval()
    x = torch.rand(2, 3, 7, 5)
    y = net(x)
    assert y.shape == (2, 3, 7 * scale, 5 * scale)
    assert y.min() >= 0 and y.max() <= 1


def test_residual_network_with_a_zero_tail_is_bicubic_upscaling() -> None:
    net = PerceptualSRNet(scale=4, blocks=1, width=8, residual=True).eval()
    with torch.no_grad():
        net.tail.weight.zero_()
        net.tail.bias.zero_()
    x = torch.rand(1, 3, 9, 7)
    expected = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    torch.testing.assert_close(net(x), expected)
    # the clamp passes gradients through (straight-through), so pixels outside [0, 1] learn
    y = net(x * 3)
    y.sum().backward()
    assert net.tail.bias.grad is not None and (net.tail.bias.grad == y[0, 0].numel()).all()


def test_network_layout_is_the_papers() -> None:
    net = PerceptualSRNet(scale=8)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].kernel_size == (9, 9) and convs[-1].kernel_size == (9, 9)
    assert {c.kernel_size for c in convs[1:-1]} == {(3, 3)}
    assert len(net.blocks) == 4 and len(net.upsample) == 3  # log2(8) doublings
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 1 + 4 * 2 + 3


def test_network_and_block_refuse_bad_settings() -> None:
    with pytest.raises(ValueError, match="scale=3"):
        PerceptualSRNet(scale=3)
    with pytest.raises(ValueError, match="upsample='bilinear'"):
        upsample_block(8, "bilinear")


def test_nearest_upsampling_makes_no_checkerboard_on_a_flat_input() -> None:
    """Resize-convolution maps a constant to a constant (away from the border); the
    stride-1/2 convolution alternates, the checkerboard of notebook 11."""
    torch.manual_seed(0)
    flat = torch.ones(1, 4, 8, 8)
    spreads = {}
    for kind in ("nearest", "transpose"):
        conv = upsample_block(4, kind)[:-2]  # without BN and ReLU
        with torch.no_grad():
            for m in conv.modules():
                if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                    m.weight.fill_(1.0)
                    m.bias.zero_()
            inner = conv(flat)[..., 4:-4, 4:-4]
        spreads[kind] = (inner.max() - inner.min()).item()
    assert spreads["nearest"] == 0 and spreads["transpose"] > 0


# --- the loss and the measures --------------------------------------------------------------


def test_loss_is_the_feature_reconstruction_plus_weighted_tv(vgg22) -> None:
    torch.manual_seed(0)
    sr = torch.rand(2, 3, 24, 24, requires_grad=True)
    hr = torch.rand(2, 3, 24, 24)
    loss = PerceptualSRLoss(vgg22, tv_weight=0.5, rescale=0.1)
    terms = loss(sr, hr)
    expected = VGGContentLoss(vgg22, layer="relu2_2", rescale=0.1)(sr, hr)
    torch.testing.assert_close(terms["feature"], expected)
    dx, dy = sr[..., :, 1:] - sr[..., :, :-1], sr[..., 1:, :] - sr[..., :-1, :]
    tv = dx.abs().mean() + dy.abs().mean()
    torch.testing.assert_close(terms["total"], expected + 0.5 * tv)
    terms["total"].backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert loss(hr, hr)["feature"].item() == 0


def test_feature_distance_is_zero_for_the_truth_and_grows_with_blur(vgg22) -> None:
    torch.manual_seed(0)
    hr = torch.rand(1, 3, 32, 32)
    blurred = F.avg_pool2d(hr, 3, stride=1, padding=1, count_include_pad=False)
    assert feature_distance(hr, hr, vgg22, layer="relu2_2") == 0
    d = feature_distance(blurred, hr, vgg22, layer="relu2_2")
    assert d > 0
    assert feature_distance(blurred, hr, vgg22, layer="relu2_2", shave=4) != d
    with pytest.raises(ValueError, match="differ"):
        feature_distance(hr, hr[..., :16], vgg22, layer="relu2_2")


def test_mean_gradient_of_a_ramp_and_of_blur() -> None:
    ramp = torch.linspace(0, 1, 11).repeat(1, 3, 11, 1)  # grey ramp: Y steps of 0.1 · 219/255
    assert mean_gradient(ramp) == pytest.approx(0.1 * 219 / 255, rel=1e-4)
    assert mean_gradient(torch.full((1, 3, 8, 8), 0.3)) == 0
    noise = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    blurred = F.avg_pool2d(noise, 3, stride=1, padding=1, count_include_pad=False)
    assert mean_gradient(blurred, shave=2) < mean_gradient(noise, shave=2)
    with pytest.raises(ValueError, match="one"):
        mean_gradient(noise[0])


@pytest.mark.datapack
def test_evaluate_adds_the_perceptual_measures(data_env, vgg22) -> None:
    images = load_sr_set("Set5")[:2]
    net = PerceptualSRNet(scale=4, blocks=1, width=4).eval()
    plain = evaluate(net, "perceptual", 4, images)
    result = evaluate(net, "perceptual", 4, images, features=vgg22)
    assert "feature_distance" not in plain
    assert result["psnr_y"] == plain["psnr_y"]
    assert 0 < result["bicubic_sharpness"] < 1  # bicubic is softer than the truth
    stem, hr = images[0]
    assert set(result["per_image"][stem]) == set(result) - {"per_image"}
    assert result["feature_distance"] > 0 and result["bicubic_feature_distance"] > 0


# --- the recipe --------------------------------------------------------------------------------

TINY = PerceptualSRRecipe(
    blocks=1, width=4, max_images=1, hr_patch=16, patches_per_image=2, batch_size=2,
    checkpoint_every=1, precision="auto",
)  # fmt: skip


@pytest.mark.datapack
@pytest.mark.parametrize("scale", [4, 8])
def test_train_sr_perceptual_writes_a_checkpoint_that_upscales(scale, tmp_path, data_env) -> None:
    out = tmp_path / f"perceptual_x{scale}.safetensors"
    val = load_sr_set("Set5")[:1]
    recipe = replace(TINY, scales=(scale,))
    train_sr(
        "perceptual", steps=2, out=out, workdir=tmp_path / "run", recipe=recipe,
        validate_on=val, progress=False, device="cpu",
    )  # fmt: skip
    metadata = read_metadata(out)
    assert metadata["class"] == "PerceptualSRNet" and metadata["scale"] == scale
    recipe = metadata["recipe"]
    assert recipe["vgg_layer"] == "relu2_2" and recipe["hr_patch"] == 16
    assert recipe["vgg_rescale"] == pytest.approx(1 / 12.75)  # resolved from None, recorded
    model = load_sr_checkpoint(out, name="perceptual", scale=scale, device="cpu")
    sr = super_resolve(model, torch.rand(1, 3, 12, 10), name="perceptual", scale=scale)
    assert sr.shape == (1, 3, 12 * scale, 10 * scale)
    with pytest.raises(ValueError, match=f"trained for x{scale}, not x{12 - scale}"):
        load_sr_checkpoint(out, name="perceptual", scale=12 - scale, device="cpu")


def test_perceptual_recipe_refuses_a_patch_the_scale_does_not_divide(tmp_path) -> None:
    with pytest.raises(ValueError, match="hr_patch=20 is not a multiple of x8"):
        train_sr(
            "perceptual", steps=1, out=tmp_path / "p.safetensors", workdir=tmp_path / "run",
            recipe=replace(TINY, scales=(8,), hr_patch=20), validate_on=None, progress=False,
        )  # fmt: skip
    with pytest.raises(ValueError, match="scale must be 2, 4, 8"):
        train_sr(
            "perceptual", steps=1, out=tmp_path / "p.safetensors",
            recipe=replace(TINY, scales=(3,)), validate_on=None, progress=False,
        )  # fmt: skip
