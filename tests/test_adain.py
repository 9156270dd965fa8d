"""nstcourse.style.adain: the AdaIN operation, the decoder, the network and its loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nstcourse.features import RandomLayersWarning, VGGFeatures
from nstcourse.style.adain import AdaINNet, Decoder, adain, channel_stats


@pytest.fixture(scope="module")
def net(partial_vgg19: Path) -> AdaINNet:
    torch.manual_seed(0)
    encoder = VGGFeatures(["relu1_1", "relu2_1", "relu3_1"], weights=partial_vgg19, device="cpu")
    return AdaINNet(encoder, Decoder(layer="relu3_1"))


def test_adain_known_answer():
    x = torch.randn(2, 3, 5, 7) * 2 + 3
    y = torch.randn(1, 3, 4, 4) * torch.tensor([0.5, 1.0, 4.0]).view(1, 3, 1, 1) - 1
    out = adain(x, y)
    mu, sigma = channel_stats(out, eps=0)
    mu_y, sigma_y = channel_stats(y, eps=0)
    torch.testing.assert_close(mu, mu_y.expand_as(mu), atol=1e-5, rtol=0)
    torch.testing.assert_close(sigma, sigma_y.expand_as(sigma), atol=1e-4, rtol=1e-4)
    # a hand-made case: x = (0, 2) → standardised (-1, 1); y has mean 10, std 3
    x = torch.tensor([0.0, 2.0]).view(1, 1, 1, 2)
    y = torch.tensor([7.0, 13.0]).view(1, 1, 1, 2)
    torch.testing.assert_close(adain(x, y, eps=0).flatten(), torch.tensor([7.0, 13.0]))


def test_adain_masked_statistics():
    x = torch.tensor([0.0, 2.0, 100.0, 300.0]).view(1, 1, 1, 4)
    y = torch.tensor([7.0, 13.0]).view(1, 1, 1, 2)
    mask = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 1, 4)
    torch.testing.assert_close(adain(x, y, eps=0, mask=mask)[..., :2].flatten(), y.flatten())


@pytest.mark.parametrize("layer, channels, pools", [("relu3_1", 256, 2), ("relu4_1", 512, 3)])
def test_decoder_shapes(layer, channels, pools):
    decoder = Decoder(layer=layer)
    convs = [m for m in decoder.body if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].in_channels == channels and convs[-1].out_channels == 3
    assert decoder.pools == pools
    assert decoder(torch.rand(1, channels, 3, 5)).shape == (1, 3, 3 * 2**pools, 5 * 2**pools)


def test_relu4_1_network_with_random_layers(partial_vgg19: Path):
    with pytest.warns(RandomLayersWarning):
        encoder = VGGFeatures(
            ["relu1_1", "relu2_1", "relu3_1", "relu4_1"],
            weights=partial_vgg19,
            missing="random",
            device="cpu",
        )
    model = AdaINNet(encoder, Decoder(layer="relu4_1"))
    content = torch.rand(1, 3, 37, 53)
    out = model(content, torch.rand(1, 3, 32, 32))
    assert out.shape == content.shape


def test_network_output_size_and_range(net):
    content = torch.rand(2, 3, 37, 53)
    out = net(content, torch.rand(1, 3, 40, 32), alpha=0.5)
    assert out.shape == content.shape
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_alpha_zero_returns_content_features(net):
    content, style = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    t = net.target(content, style, alpha=0.0)
    assert torch.equal(t, net.encode(content)["relu3_1"])


def test_style_mix_and_mask(net):
    content = torch.rand(1, 3, 32, 32)
    s1, s2 = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 24, 24) * 0.5
    one = net.target(content, [s1, s2], style_weights=[1.0, 0.0])
    torch.testing.assert_close(one, net.target(content, s1))
    mask = torch.zeros(2, 32, 32)
    mask[0, :, :16], mask[1, :, 16:] = 1, 1
    assert net(content, [s1, s2], mask=mask).shape == content.shape
    assert net(content, s1, preserve_colour=True).shape == content.shape
    with pytest.raises(ValueError, match="style_weights or mask"):
        net.target(content, [s1, s2])


def test_loss_terms_and_decoder_learns(net):
    content, style = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    optimizer = torch.optim.Adam(net.decoder.parameters(), lr=1e-3)
    totals = []
    for _ in range(4):
        terms = net.loss(content, style, style_weight=10.0)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        totals.append(terms["total"].item())
    assert set(terms) == {"content", "style", "total"}
    assert totals[-1] < totals[0]
    assert all(p.grad is None for p in net.encoder.parameters())


def test_encoder_must_reach_decoder_layer(partial_vgg19: Path):
    encoder = VGGFeatures(["relu1_1", "relu2_1"], weights=partial_vgg19, device="cpu")
    with pytest.raises(ValueError, match="relu3_1"):
        AdaINNet(encoder, Decoder(layer="relu3_1"))


def test_decoder_input_scale_multiplies_its_input():
    torch.manual_seed(0)
    scaled = Decoder(layer="relu2_1", input_scale=1 / 255)
    plain = Decoder(layer="relu2_1")
    plain.load_state_dict(scaled.state_dict())
    t = 255 * torch.rand(1, 128, 4, 4)
    torch.testing.assert_close(scaled(t), plain(t / 255))
    with pytest.raises(ValueError, match="input_scale"):
        Decoder(input_scale=0.0)


def test_train_style_adain_checkpoint_and_resume(tmp_path, data_pack):
    from nstcourse.checkpoints import load_model, read_metadata
    from nstcourse.style.recipes import AdaINRecipe, train_style

    recipe = AdaINRecipe(
        max_images=2,
        styles=AdaINRecipe().styles[:2],
        short_side=40,
        style_short_side=40,
        crop=32,
        crops_per_image=4,
        batch_size=2,
        checkpoint_every=2,
        time_size=32,
    )
    run = dict(recipe=recipe, seed=1, progress=False, device="cpu", workdir=tmp_path / "w")
    out = tmp_path / "decoder.safetensors"
    train_style("adain", steps=2, out=out, **run)
    result = train_style("adain", steps=3, out=out, **run)
    assert result["recipe"]["resumed_from_step"] == 2
    assert len(result["history"]["loss"]) == 3
    decoder = load_model(Decoder, out, device="cpu")
    assert decoder.layer == "relu3_1" and decoder.input_scale == 1 / 255  # Caffe VGG
    meta = read_metadata(out)
    assert meta["recipe"]["style_weight"] == 10.0
    assert meta["vgg"]["convention"] == "caffe"
