"""nstcourse.features: names, shapes, truncation, normalisation, freezing, partial files."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from nstcourse.features import Normalize, RandomLayersWarning, VGGFeatures, layer_names
from nstcourse.vgg_weights import WeightsError, load_vgg_weights


def _random_vgg(arch: str, folder: Path) -> tuple[nn.Sequential, Path]:
    """A randomly initialised torchvision VGG's features, and the same saved to a file."""
    torch.manual_seed(0)
    features = getattr(torchvision.models, arch)(weights=None).features.eval()
    path = folder / f"random_{arch}.pth"
    torch.save(features.state_dict(), path)
    return features, path


@pytest.fixture(scope="module")
def random_vgg19(tmp_path_factory) -> tuple[nn.Sequential, Path]:
    return _random_vgg("vgg19", tmp_path_factory.mktemp("w"))


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_layer_names_match_torchvision_module_order(arch):
    modules = getattr(torchvision.models, arch)(weights=None).features
    names = layer_names(arch)
    assert len(names) == len(modules)
    kinds = {nn.Conv2d: "conv", nn.ReLU: "relu", nn.MaxPool2d: "pool"}
    assert [kinds[type(m)] for m in modules] == [n.rstrip("0123456789_") for n in names]
    assert names[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert names[-1] == "pool5"


@pytest.mark.parametrize(
    ("arch", "wanted"),
    [
        ("vgg19", ["conv1_1", "relu2_2", "pool3", "conv4_2", "relu5_4"]),
        ("vgg16", ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "pool5"]),
    ],
)
def test_outputs_equal_torchvision_on_the_same_weights(arch, wanted, tmp_path):
    features, path = _random_vgg(arch, tmp_path)
    ours = VGGFeatures(wanted, arch=arch, weights=path, convention="torchvision", device="cpu")
    x = torch.rand(2, 3, 64, 48)
    out = ours(x)
    h = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(1, 3, 1, 1)
    names = layer_names(arch)
    with torch.no_grad():
        for index, module in enumerate(features):
            h = module(h.clone())
            if names[index] in wanted:
                torch.testing.assert_close(out[names[index]], h, rtol=1e-4, atol=1e-4)
    assert list(out) == wanted


def test_truncated_after_the_deepest_requested_layer(random_vgg19):
    _, path = random_vgg19
    net = VGGFeatures(["relu2_1", "conv1_1"], weights=path, convention="torchvision", device="cpu")
    assert len(net.body) == layer_names("vgg19").index("relu2_1") + 1
    assert set(net(torch.rand(1, 3, 16, 16))) == {"relu2_1", "conv1_1"}


def test_frozen_but_differentiable_in_the_input(random_vgg19):
    _, path = random_vgg19
    net = VGGFeatures(["relu3_1"], weights=path, convention="torchvision", device="cpu")
    assert not any(p.requires_grad for p in net.parameters())
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    net(x)["relu3_1"].square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_average_pooling_option(random_vgg19):
    _, path = random_vgg19
    net = VGGFeatures(
        ["pool2"], weights=path, convention="torchvision", pooling="avg", device="cpu"
    )
    pools = [m for m in net.body if not isinstance(m, (nn.Conv2d, nn.ReLU))]
    assert len(pools) == 2 and all(isinstance(m, nn.AvgPool2d) for m in pools)


def test_normalisation_known_values():
    x = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)
    caffe = Normalize("caffe")(x).flatten()
    expected = torch.tensor([0.6 * 255 - 103.939, 0.4 * 255 - 116.779, 0.2 * 255 - 123.68])
    torch.testing.assert_close(caffe, expected)
    tv = Normalize("torchvision")(x).flatten()
    torch.testing.assert_close(
        tv, torch.tensor([(0.2 - 0.485) / 0.229, (0.4 - 0.456) / 0.224, (0.6 - 0.406) / 0.225])
    )
    with pytest.raises(ValueError, match="keras"):
        Normalize("keras")


def test_data_pack_vgg19_shapes_match_torchvision(partial_vgg19: Path):
    names = layer_names("vgg19")[: layer_names("vgg19").index("relu3_4") + 1]
    ours = VGGFeatures(names, weights=partial_vgg19, device="cpu")
    assert ours.weights_info.convention == "caffe" and ours.random_layers == []
    x = torch.rand(1, 3, 224, 224)
    out = ours(x)
    reference = torchvision.models.vgg19(weights=None).features
    h = x
    for index, name in enumerate(names):
        h = reference[index](h)
        assert out[name].shape == h.shape, name
    assert out["relu3_4"].shape == (1, 256, 56, 56)


def test_data_pack_vgg19_uses_the_caffe_input(partial_vgg19: Path):
    """conv1_1 equals a convolution of the hand-made BGR 0-255 mean-subtracted image."""
    ours = VGGFeatures(["conv1_1"], weights=partial_vgg19, device="cpu")
    weight, bias = load_vgg_weights("vgg19", partial_vgg19).convs["conv1_1"]
    x = torch.rand(1, 3, 20, 20)
    bgr = 255 * x[:, [2, 1, 0]] - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    torch.testing.assert_close(ours(x)["conv1_1"], F.conv2d(bgr, weight, bias, padding=1))


def test_data_pack_vgg19_refuses_deeper_layers(partial_vgg19: Path, monkeypatch):
    monkeypatch.delenv("NSTCOURSE_VGG_MISSING", raising=False)
    with pytest.raises(WeightsError) as err:
        VGGFeatures(["conv4_2"], weights=partial_vgg19, device="cpu")
    message = str(err.value)
    assert "conv1_1 … conv3_4 only" in message and "conv4_1, conv4_2" in message
    assert "NSTCOURSE_VGG_MISSING=random" in message


def test_random_deeper_layers_only_when_asked(partial_vgg19: Path, monkeypatch):
    monkeypatch.setenv("NSTCOURSE_VGG_MISSING", "random")
    with pytest.warns(RandomLayersWarning, match="conv4_1, conv4_2"):
        net = VGGFeatures(["conv4_2", "relu3_1"], weights=partial_vgg19, device="cpu")
    assert net.random_layers == ["conv4_1", "conv4_2"]
    x = torch.rand(1, 3, 224, 224)
    out = net(x)
    assert out["conv4_2"].shape == (1, 512, 28, 28)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RandomLayersWarning)
        again = VGGFeatures(["conv4_2"], weights=partial_vgg19, missing="random", device="cpu")
    torch.testing.assert_close(again(x)["conv4_2"], out["conv4_2"])  # same random layers
    with pytest.raises(ValueError, match="missing='sometimes'"):
        VGGFeatures(["conv4_2"], weights=partial_vgg19, missing="sometimes", device="cpu")


@pytest.mark.parametrize(
    ("layers", "error", "match"),
    [
        (["relu6_1"], ValueError, "relu6_1"),
        ([], ValueError, "unknown"),
        ("relu1_1", TypeError, "list of names"),
    ],
)
def test_bad_layer_requests(random_vgg19, layers, error, match):
    _, path = random_vgg19
    with pytest.raises(error, match=match):
        VGGFeatures(layers, weights=path, convention="torchvision", device="cpu")


def test_bad_input_shape(random_vgg19):
    _, path = random_vgg19
    net = VGGFeatures(["relu1_1"], weights=path, convention="torchvision", device="cpu")
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        net(torch.rand(3, 8, 8))


def test_image_too_small_for_the_deepest_layer(random_vgg19):
    _, path = random_vgg19
    net = VGGFeatures(["pool3"], weights=path, convention="torchvision", device="cpu")
    assert net(torch.rand(1, 3, 8, 9))["pool3"].shape == (1, 256, 1, 1)
    with pytest.raises(ValueError, match="7x9 image is too small for pool3.*at least 8 px"):
        net(torch.rand(1, 3, 7, 9))
