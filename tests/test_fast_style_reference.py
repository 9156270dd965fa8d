"""nstcourse.style.reference: lengstrom's nets, TF 'SAME' padding, loading checks."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nstcourse.checkpoints import translate_state_dict
from nstcourse.data import load_sample
from nstcourse.features import VGGFeatures
from nstcourse.images import load_image
from nstcourse.losses import gram_matrix, style_loss
from nstcourse.style.reference import (
    ENGSTROM_WEIGHTS,
    FOLDER,
    STYLES,
    EngstromDeconv,
    EngstromNet,
    engstrom_keys,
    load_engstrom,
    tf_same_conv2d,
    tf_same_conv_transpose2d,
    tf_same_padding,
)
from nstcourse.vgg_weights import WeightsError


@pytest.fixture
def weights_dir(data_pack: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(data_pack / "weights"))
    return data_pack / "weights"


# --- TF 'SAME' padding, by hand ------------------------------------------------------------


def test_tf_same_padding_rules():
    # out = ceil(n / s); total = max((out - 1) s + k - n, 0); the odd pixel goes after.
    assert tf_same_padding(8, 3, 2) == (0, 1)  # even: (4 - 1) * 2 + 3 - 8 = 1
    assert tf_same_padding(7, 3, 2) == (1, 1)  # odd: (4 - 1) * 2 + 3 - 7 = 2
    assert tf_same_padding(1, 3, 2) == (1, 1)
    assert tf_same_padding(5, 9, 1) == (4, 4)
    assert tf_same_padding(6, 3, 1) == (1, 1)
    assert tf_same_padding(6, 1, 2) == (0, 0)  # 1×1 stride 2 needs none


def test_tf_same_conv2d_by_hand():
    ones = torch.ones(1, 1, 3, 3)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # Even size: windows start at 0, 2; the zero row/column is after the image.
    expected = torch.tensor([[0 + 1 + 2 + 4 + 5 + 6 + 8 + 9 + 10, 2 + 3 + 6 + 7 + 10 + 11],
                             [8 + 9 + 10 + 12 + 13 + 14, 10 + 11 + 14 + 15]])  # fmt: skip
    assert torch.equal(tf_same_conv2d(x, ones, 2)[0, 0], expected.float())
    # Odd size (5×5): one zero before and one after, so window 0 covers rows -1 … 1.
    x = torch.arange(25.0).view(1, 1, 5, 5)
    y = tf_same_conv2d(x, ones, 2)[0, 0]
    assert y.shape == (3, 3)
    assert y[0, 0] == 0 + 1 + 5 + 6
    assert y[1, 1] == x[0, 0, 1:4, 1:4].sum()
    assert y[2, 2] == 18 + 19 + 23 + 24


def test_tf_same_conv_transpose2d_by_hand():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    # Each input pixel (i, j) adds to rows 2i … 2i+2, columns 2j … 2j+2; keep [0:4, 0:4].
    expected = torch.tensor(
        [[1, 1, 3, 2], [1, 1, 3, 2], [4, 4, 10, 6], [3, 3, 7, 4]], dtype=torch.float32
    )
    assert torch.equal(tf_same_conv_transpose2d(x, torch.ones(1, 1, 3, 3), 2)[0, 0], expected)


@pytest.mark.parametrize("size", [8, 10])
def test_tf_same_conv_transpose_is_the_adjoint_of_the_conv(size):
    """TF's conv2d_transpose is the gradient of conv2d: <conv(a), b> = <a, conv^T(b)>."""
    weight = torch.randn(5, 4, 3, 3)  # conv: 4 -> 5 channels; its transpose: 5 -> 4
    a = torch.randn(2, 4, size, size + 2, dtype=torch.float64)
    b = torch.randn(2, 5, size // 2, size // 2 + 1, dtype=torch.float64)
    w = weight.double()
    lhs = (tf_same_conv2d(a, w, 2) * b).sum()
    rhs = (a * tf_same_conv_transpose2d(b, w, 2)).sum()
    torch.testing.assert_close(lhs, rhs)


# --- the network ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(37, 53), (33, 33), (5, 7), (64, 48)])
def test_output_has_input_size_and_range(size):
    net = EngstromNet().eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape
    assert y.min() >= 0 and y.max() <= 1
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        net(torch.rand(1, 1, 16, 16))


def test_instance_norm_uses_lengstroms_epsilon():
    conv = EngstromDeconv(2, 3).eval()
    x = torch.randn(1, 2, 4, 5)
    pre = tf_same_conv_transpose2d(x, conv.weight, 2)
    mean = pre.mean(dim=(2, 3), keepdim=True)
    var = pre.var(dim=(2, 3), keepdim=True, unbiased=False)
    expected = F.relu((pre - mean) / torch.sqrt(var + 1e-3))  # scale 1, shift 0
    torch.testing.assert_close(conv(x), expected)


def test_key_table_covers_the_network():
    keys = engstrom_keys()
    assert set(keys) == set(EngstromNet().state_dict())
    assert len(keys) == 48  # 16 layers × (weight, in_shift, in_scale): Variable_0 … _47
    assert keys["res.4.conv2.in_scale"] == "res5.conv2.in_scale"


# --- the data pack's files ------------------------------------------------------------------


@pytest.mark.datapack
@pytest.mark.parametrize("style", STYLES)
def test_loads_strictly(weights_dir, style):
    net = load_engstrom(style, device="cpu")
    theirs = torch.load(
        weights_dir / FOLDER / ENGSTROM_WEIGHTS[style].file, weights_only=True, map_location="cpu"
    )
    assert set(engstrom_keys().values()) == set(theirs)
    ours = net.state_dict()
    for our_key, their_key in engstrom_keys().items():
        assert torch.equal(ours[our_key], theirs[their_key]), our_key
    assert not net.training


def _colour_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance of Gaussians fitted to the RGB pixels of two (1, 3, H, W) images:
    |μ_a − μ_b|² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^½)."""
    pa, pb = (image[0].reshape(3, -1).double() for image in (a, b))
    mu_a, mu_b, cov_a, cov_b = pa.mean(1), pb.mean(1), torch.cov(pa), torch.cov(pb)
    root_trace = torch.linalg.eigvals(cov_a @ cov_b).real.clamp(min=0).sqrt().sum()
    return float(((mu_a - mu_b) ** 2).sum() + torch.trace(cov_a + cov_b) - 2 * root_trace)


@pytest.mark.datapack
@pytest.mark.parametrize("style", STYLES)
def test_output_takes_the_paintings_colours(weights_dir, data_pack, style):
    """Trained weights, loaded right, recolour a photo towards their painting: the RGB
    distribution of the output on tubingen (256 px) is several times closer to the
    painting's than the photo's is. Measured: 0.06 (scream) … 0.16 (rain_princess) of the
    photo's distance; random weights give ~2, a net doing nothing 1."""
    content = load_sample("tubingen", long_side=256)
    painting = load_image(data_pack / ENGSTROM_WEIGHTS[style].style_image)
    with torch.no_grad():
        y = load_engstrom(style, device="cpu")(content)
    assert _colour_distance(y, painting) < 0.25 * _colour_distance(content, painting)


@pytest.mark.datapack
def test_transposed_conv_layout_is_the_trained_one(weights_dir, data_pack, partial_vgg19):
    """Colours cannot see the deconv kernels' orientation; the style loss can. With the
    kernels as loaded, each net's output on tubingen is closer in Gram matrices
    (VGG-19 relu1_1 … relu3_1) to its painting than with the kernels mirrored, which is
    what a conversion that forgot TF's layout would give (at 128 px, measured 2.2× … 4.6×
    closer for these three, 1.3× … 2× for scream and rain_princess)."""
    layers = ["relu1_1", "relu2_1", "relu3_1"]
    vgg = VGGFeatures(layers, weights=partial_vgg19, device="cpu")
    content = load_sample("tubingen", long_side=128)

    def loss(image: torch.Tensor, targets: dict) -> float:
        feats = vgg(image)
        return sum(float(style_loss(feats[k], targets[k])) for k in layers)

    for style in ("wave", "udnie", "wreck"):
        painting = load_image(data_pack / ENGSTROM_WEIGHTS[style].style_image, long_side=256)
        net = load_engstrom(style, device="cpu")
        mirrored = copy.deepcopy(net)
        for module in mirrored.modules():
            if isinstance(module, EngstromDeconv):
                module.weight.data = module.weight.data.flip(-2, -1)
        with torch.no_grad():
            targets = {k: gram_matrix(v) for k, v in vgg(painting).items()}
            assert loss(net(content), targets) < loss(mirrored(content), targets), style


# --- errors ---------------------------------------------------------------------------------


def test_unknown_style_lists_the_known_ones():
    with pytest.raises(ValueError, match="candy.*wave, scream, udnie, rain_princess, wreck"):
        load_engstrom("candy")


def test_missing_file_names_the_path_and_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match="NSTCOURSE_WEIGHTS_DIR") as info:
        load_engstrom("wave")
    assert str(tmp_path / FOLDER / "engstrom_wave.pth") in str(info.value)
    monkeypatch.delenv("NSTCOURSE_WEIGHTS_DIR")
    with pytest.raises(WeightsError, match=r"set \$NSTCOURSE_WEIGHTS_DIR"):
        load_engstrom("wave")


def test_wrong_file_fails_the_checksum_before_loading(tmp_path):
    path = tmp_path / "engstrom_wave.pth"
    torch.save(EngstromNet().state_dict(), path)
    with pytest.raises(WeightsError, match="sha256 .* is not the data pack's 22bbad72"):
        load_engstrom("wave", path=path)


def _translate(theirs: dict, ours: dict, path: Path) -> dict:
    return translate_state_dict(theirs, ours, engstrom_keys(), path=path, what="EngstromNet")


def test_translate_is_strict(tmp_path):
    ours = EngstromNet().state_dict()
    theirs = {their_key: ours[our_key] for our_key, their_key in engstrom_keys().items()}
    assert set(_translate(theirs, ours, tmp_path / "f.pth")) == set(ours)
    extra = {**theirs, "Variable_48": torch.zeros(1)}
    with pytest.raises(WeightsError, match="(?s)f.pth.*not used.*Variable_48"):
        _translate(extra, ours, tmp_path / "f.pth")
    partial = {k: v for k, v in theirs.items() if k != "conv_out.in_scale"}
    with pytest.raises(WeightsError, match="(?s)missing from the file.*conv_out.in_scale"):
        _translate(partial, ours, tmp_path / "f.pth")
    bad = {**theirs, "deconv1.weight": torch.zeros(64, 128, 3, 3)}  # Conv2d's layout
    with pytest.raises(WeightsError, match=r"deconv1.weight has shape \(64, 128, 3, 3\)"):
        _translate(bad, ours, tmp_path / "f.pth")
