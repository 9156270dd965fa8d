"""nstcourse.style.fast_style: the transform network, the perceptual loss, inference."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nstcourse.features import VGGFeatures
from nstcourse.style.fast_style import PerceptualLoss, TransformNet, stylize_batch

LAYERS = ["relu1_2", "relu2_2", "relu3_3"]


@pytest.fixture(scope="module")
def vgg(partial_vgg19: Path) -> VGGFeatures:
    return VGGFeatures(LAYERS, weights=partial_vgg19, device="cpu")


@pytest.mark.parametrize("upsample", ["nearest", "transpose"])
@pytest.mark.parametrize("size", [(37, 53), (32, 32), (8, 9)])
def test_output_has_input_size_and_range(upsample, size):
    net = TransformNet(width=8, res_blocks=2, upsample=upsample)
    x = torch.rand(2, 3, *size)
    y = net(x)
    assert y.shape == x.shape
    assert y.min() >= 0.0 and y.max() <= 1.0


def test_wide_output_range_reaches_past_white_in_training_only():
    torch.manual_seed(0)
    net = TransformNet(width=8, res_blocks=1, output_range=300 / 255)
    with torch.no_grad():
        net.conv_out.bias.fill_(3.0)  # tanh(3) = 0.995: past white at r = 300/255
    x = torch.rand(1, 3, 16, 16)
    assert net(x).max() > 1.05  # training: the loss sees the value and its gradient
    assert net.eval()(x).max() == 1.0  # eval: clamped to [0, 1]
    paper = TransformNet(width=8, res_blocks=1)
    with torch.no_grad():
        paper.conv_out.bias.fill_(3.0)
    assert paper(x).max() < 1.0  # r = 1: white only where tanh saturates
    with pytest.raises(ValueError, match="output_range=0.5"):
        TransformNet(output_range=0.5)


def test_multi_style_forward_and_errors():
    net = TransformNet(width=8, res_blocks=1, styles=3)
    x = torch.rand(2, 3, 20, 24)
    assert net.styles == 3
    assert net(x, 1).shape == x.shape
    assert net(x, torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])).shape == x.shape
    with pytest.raises(ValueError, match="3 styles"):
        net(x)
    with pytest.raises(ValueError, match="too small"):
        net(torch.rand(1, 3, 7, 20), 0)
    with pytest.raises(ValueError, match="norm="):
        TransformNet(norm="layer")


def test_paper_sizes_and_batch_norm():
    net = TransformNet(norm="batch", upsample="transpose")
    assert net.conv2.conv.out_channels == 64 and net.conv3.conv.out_channels == 128
    assert len(net.res) == 5 and net.conv1.conv.kernel_size == (9, 9)


def test_stylize_batch_matches_forward_and_keeps_mode():
    net = TransformNet(width=8, res_blocks=1, styles=2)
    x = torch.rand(1, 3, 17, 19)
    y = stylize_batch(net, x, style=1, channels_last=True)
    assert net.training and not y.requires_grad
    net.eval()
    torch.testing.assert_close(y, net(x, 1))


def test_perceptual_loss_zero_for_identical_image(vgg):
    image = torch.rand(1, 3, 32, 32)
    loss = PerceptualLoss(vgg, styles=[image], content_weight=1.0, style_weight=10.0, tv_weight=0)
    terms = loss(image, image)
    assert terms["content"].item() == 0.0
    assert terms["style"].item() == pytest.approx(0.0, abs=1e-6)
    assert set(terms) == {"content", "style", "tv", "total"}


def test_perceptual_loss_per_sample_targets(vgg):
    styles = [torch.rand(1, 3, 32, 32), torch.rand(1, 3, 40, 32)]
    loss = PerceptualLoss(vgg, styles=styles, content_weight=0, style_weight=1, tv_weight=0)
    batch = torch.cat([styles[1][..., :32, :], styles[0]])
    picked = loss.style_targets("relu2_2", torch.tensor([1, 0]), 2)
    assert picked.shape == (2, 128, 128)
    assert torch.equal(picked[0], loss.target_relu2_2[1])
    mixed = loss.style_targets("relu1_2", torch.tensor([[0.5, 0.5]] * 2), 2)
    torch.testing.assert_close(mixed[0], loss.target_relu1_2.mean(dim=0))
    assert (
        loss(batch, batch, style=torch.tensor([1, 0]))["style"]
        < loss(batch, batch, style=torch.tensor([0, 1]))["style"]
    )
    with pytest.raises(ValueError, match="2 styles"):
        loss(batch, batch)


def test_perceptual_loss_decreases_in_a_few_steps(vgg):
    torch.manual_seed(0)
    net = TransformNet(width=8, res_blocks=1)
    style = torch.rand(1, 3, 32, 32)
    loss = PerceptualLoss(vgg, styles=[style], content_weight=1, style_weight=10, tv_weight=1)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(2, 3, 32, 32)
    totals = []
    for _ in range(8):
        total = loss(net(x), x)["total"]
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] < 0.7 * totals[0]


def test_perceptual_loss_checks_layers(vgg):
    with pytest.raises(ValueError, match="relu4_3"):
        PerceptualLoss(
            vgg,
            styles=[torch.rand(1, 3, 32, 32)],
            style_layers=["relu4_3"],
            content_weight=1,
            style_weight=1,
            tv_weight=0,
        )


# Tiny recipes: 2 photos, 32 px crops, a width-8 net; seconds on a CPU.
TINY = dict(max_images=2, short_side=40, crop=32, style_size=32, width=8, res_blocks=1)
TINY_RUN = dict(crops_per_image=4, batch_size=2, checkpoint_every=2, time_size=32)


@pytest.mark.parametrize("name", ["johnson", "cin"])
def test_train_style_writes_checkpoint_and_resumes_exactly(name, tmp_path, data_pack):
    from nstcourse.checkpoints import load_model, read_metadata
    from nstcourse.style.recipes import RECIPES, train_style

    recipe = RECIPES[name](**TINY, **TINY_RUN)
    if name == "cin":
        recipe = replace(recipe, styles=recipe.styles[:2])
    run = dict(seed=3, recipe=recipe, progress=False, device="cpu")
    train_style(name, steps=2, out=tmp_path / "a.safetensors", workdir=tmp_path / "a", **run)
    resumed = train_style(
        name, steps=3, out=tmp_path / "a.safetensors", workdir=tmp_path / "a", **run
    )
    straight = train_style(
        name, steps=3, out=tmp_path / "b.safetensors", workdir=tmp_path / "b", **run
    )
    assert resumed["recipe"]["resumed_from_step"] == 2
    assert resumed["history"]["loss"] == straight["history"]["loss"]
    net = load_model(TransformNet, tmp_path / "a.safetensors", device="cpu")
    other = load_model(TransformNet, tmp_path / "b.safetensors", device="cpu")
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), other.parameters(), strict=True))
    meta = read_metadata(tmp_path / "a.safetensors")
    assert meta["recipe"]["crop"] == 32 and meta["recipe"]["seed"] == 3
    assert meta["metrics"]["speed"]["ms_per_32px_image"] > 0
    assert {"loss_mean_last_100", "style_mean_last_100"} <= set(meta["metrics"]["train"])
    assert net.styles == (1 if name == "johnson" else 2)
    x = torch.rand(1, 3, 33, 35)
    assert stylize_batch(net, x, style=None if name == "johnson" else 1).shape == x.shape


def test_train_style_refuses_a_changed_recipe(tmp_path, data_pack):
    from nstcourse.style.recipes import JohnsonRecipe, train_style

    run = dict(out=tmp_path / "a.safetensors", workdir=tmp_path / "a", progress=False)
    train_style("johnson", steps=1, recipe=JohnsonRecipe(**TINY, **TINY_RUN), device="cpu", **run)
    with pytest.raises(ValueError, match="lr"):
        train_style("johnson", steps=2, recipe=JohnsonRecipe(**TINY, **TINY_RUN, lr=0.1), **run)
    with pytest.raises(ValueError, match="one style"):
        train_style("johnson", steps=1, recipe=JohnsonRecipe(styles=("a.jpg", "b.jpg")), **run)
