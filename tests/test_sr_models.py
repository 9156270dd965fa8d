"""Super-resolution models: shapes, the paper's structure, SRGAN's step, reference files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nstcourse.features import VGGFeatures
from nstcourse.sr.espcn import ESPCN, pixel_shuffle, pixel_unshuffle
from nstcourse.sr.reference import REFERENCES, load_reference
from nstcourse.sr.srcnn import SRCNN, paper_param_groups
from nstcourse.sr.srgan import Discriminator, SRGANStep, SRResNet, VGGContentLoss
from nstcourse.sr.vdsr import VDSR
from nstcourse.vgg_weights import WeightsError


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    return 10 * math.log10(1 / F.mse_loss(x, y).item())


def _smooth_image(size: int, channels: int = 1) -> torch.Tensor:
    """A smooth test image in [0, 1]: a few low-frequency sinusoids."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    planes = [
        0.5 + 0.3 * torch.sin(2 * math.pi * (xx + c * 0.3)) * torch.cos(3 * yy)
        for c in range(channels)
    ]
    return torch.stack(planes)[None]


@pytest.fixture(scope="module")
def tiny_vgg(tmp_path_factory) -> VGGFeatures:
    """A random VGG-19 file with conv1_1 … conv2_2 only (enough for relu2_2)."""
    torch.manual_seed(0)
    shapes = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128)}
    state = {}
    for index, (c_out, c_in) in shapes.items():
        state[f"features.{index}.weight"] = torch.randn(c_out, c_in, 3, 3) * (2 / (9 * c_in)) ** 0.5
        state[f"features.{index}.bias"] = torch.zeros(c_out)
    path = tmp_path_factory.mktemp("vgg") / "tiny_vgg19.pth"
    torch.save(state, path)
    return VGGFeatures(["relu2_2"], weights=path, convention="torchvision", device="cpu")


# --- shapes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("f2", [1, 5])
def test_srcnn_keeps_the_size(f2):
    x = torch.rand(2, 1, 17, 23)
    assert SRCNN(f2=f2, n1=8, n2=4)(x).shape == x.shape
    assert SRCNN(f2=f2, n1=8, n2=4, channels=3)(torch.rand(1, 3, 12, 12)).shape == (1, 3, 12, 12)


def test_srcnn_parameter_counts_match_the_paper():
    # weights: n1*c*f1^2 + n2*n1*f2^2 + c*n2*f3^2; biases: n1 + n2 + c (c = 1)
    w_915 = 64 * 81 + 32 * 64 * 1 + 32 * 25  # 8032, the paper's count for 9-1-5
    w_955 = 64 * 81 + 32 * 64 * 25 + 32 * 25
    assert w_915 == 8032
    assert _n_params(SRCNN(f2=1)) == w_915 + 64 + 32 + 1
    assert _n_params(SRCNN(f2=5)) == w_955 + 64 + 32 + 1 == 57281


def test_srcnn_rejects_even_kernels_and_splits_learning_rates():
    with pytest.raises(ValueError, match="f2=4"):
        SRCNN(f2=4)
    groups = paper_param_groups(SRCNN(), lr=1e-4)
    assert [g["lr"] for g in groups] == [1e-4, 1e-5]
    assert [len(g["params"]) for g in groups] == [4, 2]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_espcn_upscales_in_lr_space(scale):
    model = ESPCN(scale=scale, n1=8, n2=4)
    assert model(torch.rand(2, 1, 7, 9)).shape == (2, 1, 7 * scale, 9 * scale)
    assert model.conv3.out_channels == scale * scale
    rgb = ESPCN(scale=scale, channels=3, n1=8, n2=4)
    assert rgb(torch.rand(1, 3, 5, 6)).shape == (1, 3, 5 * scale, 6 * scale)


@pytest.mark.parametrize("r", [1, 2, 3, 4])
def test_pixel_shuffle_equals_torch_and_unshuffle_inverts_it(r):
    x = torch.randn(2, 3 * r * r, 5, 7)
    y = pixel_shuffle(x, r)
    assert torch.equal(y, nn.PixelShuffle(r)(x))
    assert torch.equal(pixel_unshuffle(y, r), x)
    assert torch.equal(pixel_unshuffle(y, r), nn.PixelUnshuffle(r)(y))


def test_pixel_shuffle_layout_and_errors():
    x = torch.arange(4.0).view(1, 4, 1, 1)  # channel i*r + j -> row i, column j
    assert pixel_shuffle(x, 2).view(2, 2).tolist() == [[0.0, 1.0], [2.0, 3.0]]
    with pytest.raises(ValueError, match="multiple of r"):
        pixel_shuffle(torch.rand(1, 3, 2, 2), 2)
    with pytest.raises(ValueError, match="divisible"):
        pixel_unshuffle(torch.rand(1, 1, 5, 4), 2)


def test_vdsr_keeps_the_size_and_has_no_bias():
    model = VDSR(depth=5, width=8)
    x = torch.rand(2, 1, 13, 11)
    assert model(x).shape == x.shape
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 5


def test_vdsr_zero_last_conv_is_the_identity():
    model = VDSR(depth=4, width=8)
    with torch.no_grad():
        model.output.weight.zero_()
    x = torch.rand(1, 1, 9, 9)
    assert torch.equal(model(x), x)


def test_vdsr_he_initialisation():
    model = VDSR(depth=3, width=64)
    std = model.body[0].weight.std().item()
    assert std == pytest.approx((2 / (9 * 64)) ** 0.5, rel=0.05)


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("output", ["clamp", "tanh"])
def test_srresnet_shapes_and_range(scale, output):
    model = SRResNet(scale=scale, blocks=2, width=8, output=output)
    y = model(torch.rand(2, 3, 6, 5) * 4 - 2)  # out-of-range input: output still in [0, 1]
    assert y.shape == (2, 3, 6 * scale, 5 * scale)
    assert y.min() >= 0 and y.max() <= 1
    assert len(model.upsample) == int(math.log2(scale))


def test_srresnet_clamp_passes_gradients_outside_the_range():
    model = SRResNet(scale=2, blocks=1, width=4)
    with torch.no_grad():
        model.tail.bias.fill_(-5.0)  # every output pixel far below 0, clamped to 0
    y = model(torch.rand(1, 3, 4, 4))
    assert torch.all(y == 0)
    y.sub(1).pow(2).mean().backward()
    assert model.tail.bias.grad.abs().min().item() > 0


def test_srresnet_bad_arguments():
    for kwargs, match in [({"scale": 3}, "scale=3"), ({"output": "sigmoid"}, "output")]:
        with pytest.raises(ValueError, match=match):
            SRResNet(**kwargs)


@pytest.mark.parametrize("size", [96, 64, 40])
def test_discriminator_returns_one_logit_per_image(size):
    model = Discriminator(width=4)
    assert model(torch.rand(3, 3, size, size)).shape == (3,)


def test_discriminator_is_the_paper_on_96():
    model = Discriminator(width=64)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 7
    assert model.classifier[1].in_features == 512 * 6 * 6  # a 96x96 crop ends at 6x6
    with torch.no_grad():
        assert model.features(torch.rand(1, 3, 96, 96)).shape == (1, 512, 6, 6)


# --- losses and the SRGAN step --------------------------------------------------------------


def test_vgg_content_loss_zero_for_the_same_image_and_scaled(tiny_vgg):
    a, b = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    loss = VGGContentLoss(tiny_vgg, layer="relu2_2")
    assert loss(a, a).item() == 0
    plain = VGGContentLoss(tiny_vgg, layer="relu2_2", rescale=1.0)(a, b)
    assert loss(a, b).item() == pytest.approx(plain.item() / 12.75**2, rel=1e-5)
    with pytest.raises(ValueError, match="relu5_4"):
        VGGContentLoss(tiny_vgg, layer="relu5_4")


@pytest.mark.datapack
def test_vgg_content_loss_with_the_data_pack_vgg(partial_vgg19: Path):
    vgg = VGGFeatures(["relu2_2"], weights=partial_vgg19, device="cpu")
    x = _smooth_image(24, channels=3)
    loss = VGGContentLoss(vgg)
    assert loss(x, x).item() == 0
    assert loss(x, x.flip(-1)).item() > 0


def test_srgan_step_updates_both_networks(tiny_vgg):
    G = SRResNet(scale=2, blocks=1, width=8)
    D = Discriminator(width=4, pooled_size=1)
    opt_G = torch.optim.Adam(G.parameters(), lr=1e-3)
    opt_D = torch.optim.Adam(D.parameters(), lr=1e-3)
    step = SRGANStep(G, D, VGGContentLoss(tiny_vgg), opt_G=opt_G, opt_D=opt_D)
    g0 = [p.clone() for p in G.parameters()]
    d0 = [p.clone() for p in D.parameters()]
    hr = torch.rand(2, 3, 16, 16)
    lr = F.avg_pool2d(hr, 2)
    terms = step((lr, hr))
    assert set(terms) == {"loss", "content", "adversarial", "discriminator", "d_real", "d_fake"}
    assert all(math.isfinite(v) for v in terms.values())
    assert terms["loss"] == pytest.approx(terms["content"] + 1e-3 * terms["adversarial"], rel=1e-5)
    assert any(not torch.equal(a, b) for a, b in zip(g0, G.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(d0, D.parameters(), strict=True))
    assert all(p.requires_grad for p in D.parameters())


def test_srgan_step_raises_on_nan_before_stepping():
    G = SRResNet(scale=2, blocks=1, width=4)
    D = Discriminator(width=4, pooled_size=1)
    opt_G = torch.optim.SGD(G.parameters(), lr=0.1)
    opt_D = torch.optim.SGD(D.parameters(), lr=0.1)
    step = SRGANStep(G, D, F.mse_loss, opt_G=opt_G, opt_D=opt_D)
    hr = torch.full((2, 3, 16, 16), float("nan"))
    before = [p.clone() for p in D.parameters()]
    with pytest.raises(FloatingPointError, match="discriminator"):
        step((torch.rand(2, 3, 8, 8), hr))
    assert all(torch.equal(a, b) for a, b in zip(before, D.parameters(), strict=True))


# --- reference checkpoints ------------------------------------------------------------------


@pytest.fixture
def sr_weights(data_pack: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(data_pack / "weights"))
    return data_pack / "weights" / "sr"


@pytest.mark.datapack
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_loads_strictly_and_is_finite(sr_weights, name):
    model = load_reference(name)
    file_keys = torch.load(
        sr_weights / REFERENCES[name].file, weights_only=True, map_location="cpu"
    )
    assert set(REFERENCES[name].keys.values()) == set(file_keys)
    key = next(iter(REFERENCES[name].keys))
    their = REFERENCES[name].keys[key]
    assert torch.equal(model.state_dict()[key], file_keys[their])
    channels = 3 if name.startswith("srgan") else 1
    with torch.no_grad():
        y = model(torch.rand(1, channels, 12, 12))
    assert torch.isfinite(y).all()


@pytest.mark.datapack
@pytest.mark.parametrize(
    ("name", "scale", "upscale_first"),
    [
        ("srcnn_x3_fuyongXu", 3, True),
        ("espcn_x3_yjn870", 3, False),
        ("vdsr_twtygqyy", 3, True),
        ("srgan_x4_leftthomas", 4, False),
    ],
)
def test_reference_on_a_smooth_image_stays_close(sr_weights, name, scale, upscale_first):
    channels = 3 if name.startswith("srgan") else 1
    hr = _smooth_image(12 * scale, channels)
    lr = F.interpolate(hr, scale_factor=1 / scale, mode="bicubic", antialias=True)
    bicubic = F.interpolate(lr, scale_factor=scale, mode="bicubic").clamp(0, 1)
    with torch.no_grad():
        sr = load_reference(name)(bicubic if upscale_first else lr).clamp(0, 1)
    assert sr.shape == hr.shape
    # A smooth image is easy: the network changes the bicubic result only a little.
    assert _psnr(sr, bicubic) > 25


@pytest.mark.datapack
def test_reference_srgan_needs_the_long_skip(sr_weights, tmp_path):
    """The file cannot show leftthomas's forward pass; the long skip must be there."""
    G = load_reference("srgan_x4_leftthomas")
    hr = _smooth_image(48, 3)
    lr = F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True)
    with torch.no_grad():
        with_skip = G(lr)
        h = G.head(lr)
        without = (torch.tanh(G.tail(G.upsample(G.trunk_tail(G.blocks(h))))) + 1) / 2
    assert _psnr(with_skip, hr) > _psnr(without, hr) + 10


def test_reference_errors_name_the_file(tmp_path):
    path = tmp_path / "srcnn.pth"
    torch.save({"conv1.weight": torch.zeros(64, 1, 9, 9)}, path)
    with pytest.raises(WeightsError, match="srcnn.pth") as info:
        load_reference("srcnn_x3_fuyongXu", path)
    assert "missing" in str(info.value)
    state = SRCNN(f2=1).state_dict()  # 9-1-5: conv2 has the wrong shape
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"conv2.weight has shape \(32, 64, 1, 1\)"):
        load_reference("srcnn_x3_fuyongXu", path)
    torch.save({**SRCNN().state_dict(), "extra": torch.zeros(1)}, path)
    with pytest.raises(WeightsError, match="not used"):
        load_reference("srcnn_x3_fuyongXu", path)
    with pytest.raises(ValueError, match="unknown reference"):
        load_reference("edsr", path)
    with pytest.raises(WeightsError, match="not found"):
        load_reference("srcnn_x3_fuyongXu", tmp_path / "nothing.pth")


def test_measured_macs_counts_each_convolution_from_its_output_shape():
    from nstcourse.macs import measured_macs

    # 3→8 channels, 3×3, no padding: 8×8 outputs of 8 channels, 3·9 MACs each;
    # then a grouped 1×1 conv 8→8 in 4 groups: 2 MACs per output.
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 1, groups=4))
    assert measured_macs(model, torch.rand(1, 3, 10, 10)) == 8 * 64 * 27 + 8 * 64 * 2
    assert all(not m._forward_hooks for m in model.modules())  # the hooks are removed
