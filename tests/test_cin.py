"""nstcourse.style.cin: conditional instance norm, style mixing, adding a style."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nstcourse.style.cin import (
    ConditionalInstanceNorm2d,
    interpolate_styles,
    new_style_parameters,
    style_weights,
)
from nstcourse.style.fast_style import TransformNet


def test_one_style_equals_instance_norm_affine():
    x = torch.randn(2, 5, 7, 9) * 3 + 1
    cin = ConditionalInstanceNorm2d(5, 1)
    norm = nn.InstanceNorm2d(5, affine=True)
    with torch.no_grad():
        cin.gamma.copy_(torch.randn(1, 5))
        cin.beta.copy_(torch.randn(1, 5))
        norm.weight.copy_(cin.gamma[0])
        norm.bias.copy_(cin.beta[0])
    torch.testing.assert_close(cin(x, torch.ones(2, 1)), norm(x))


def test_half_half_mix_uses_average_gamma_beta():
    x = torch.randn(1, 4, 6, 6)
    cin = ConditionalInstanceNorm2d(4, 2)
    with torch.no_grad():
        cin.gamma.copy_(torch.randn(2, 4))
        cin.beta.copy_(torch.randn(2, 4))
    single = ConditionalInstanceNorm2d(4, 1)
    with torch.no_grad():
        single.gamma.copy_(cin.gamma.mean(dim=0, keepdim=True))
        single.beta.copy_(cin.beta.mean(dim=0, keepdim=True))
    torch.testing.assert_close(cin(x, torch.tensor([[0.5, 0.5]])), single(x, torch.ones(1, 1)))


def test_style_weights_and_interpolation():
    assert style_weights(1, num_styles=3, batch_size=2).tolist() == [[0, 1, 0], [0, 1, 0]]
    assert style_weights([0.2, 0.8], num_styles=2, batch_size=3).shape == (3, 2)
    torch.testing.assert_close(
        interpolate_styles(0, 2, 0.25, num_styles=3), torch.tensor([[0.75, 0.0, 0.25]])
    )
    with pytest.raises(ValueError, match="out of range"):
        style_weights(3, num_styles=3, batch_size=1)
    with pytest.raises(ValueError, match=r"\(N, S\)"):
        ConditionalInstanceNorm2d(4, 2)(torch.randn(1, 4, 3, 3), torch.ones(1, 3))


def test_adding_a_style_trains_only_its_gamma_beta():
    net = TransformNet(width=8, res_blocks=1, styles=2)
    for layer in net.modules():  # a "trained" net: distinct rows per style
        if isinstance(layer, ConditionalInstanceNorm2d):
            nn.init.normal_(layer.gamma)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    params = new_style_parameters(net)
    assert net.styles == 3
    assert all(p.shape[0] == 3 for p in params)
    first = next(p for p in params)
    torch.testing.assert_close(first[2], before["conv1.norm.norm.gamma"].mean(dim=0))
    optimizer = torch.optim.Adam(params, lr=0.1)
    x = torch.rand(2, 3, 16, 16)
    for _ in range(3):  # mixes touch the old rows in the forward pass, but must not train them
        loss = net(x, torch.tensor([[0.3, 0.0, 0.7], [0.0, 0.0, 1.0]])).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = net.state_dict()
    for key, value in before.items():
        if key.endswith(("gamma", "beta")):
            assert torch.equal(after[key][:2], value), key
        else:
            assert torch.equal(after[key], value), key
    assert any(not torch.equal(after[k][2], before[k].mean(dim=0)) for k in before if "gamma" in k)


def test_new_style_parameters_needs_conditional_norms():
    with pytest.raises(ValueError, match="styles >= 2"):
        new_style_parameters(TransformNet(width=8, res_blocks=1))
