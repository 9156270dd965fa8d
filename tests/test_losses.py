"""Losses of neural style transfer, checked against values worked out by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nstcourse.losses import content_loss, gram_matrix, style_loss, tv_loss


def two_channel_features() -> torch.Tensor:
    """N=1, C=2, H=1, W=2: channel 0 is [1, 2], channel 1 is [3, 4]."""
    return torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])


# ---------------------------------------------------------------- gram_matrix


def test_gram_matrix_by_hand_unnormalised() -> None:
    # G_00 = 1*1 + 2*2 = 5, G_01 = 1*3 + 2*4 = 11, G_11 = 3*3 + 4*4 = 25
    gram = gram_matrix(two_channel_features(), normalize=False)
    assert gram.tolist() == [[[5.0, 11.0], [11.0, 25.0]]]


def test_gram_matrix_by_hand_normalised_divides_by_chw() -> None:
    gram = gram_matrix(two_channel_features())  # C*H*W = 2*1*2 = 4
    assert gram.tolist() == [[[1.25, 2.75], [2.75, 6.25]]]


def test_gram_matrix_batched_equals_per_sample_and_is_symmetric() -> None:
    features = torch.randn(2, 4, 3, 5)
    gram = gram_matrix(features)
    assert gram.shape == (2, 4, 4)
    for i in range(2):
        assert torch.allclose(gram[i : i + 1], gram_matrix(features[i : i + 1]))
    assert torch.allclose(gram, gram.transpose(1, 2))
    assert (torch.linalg.eigvalsh(gram) > -1e-5).all()  # positive semi-definite


@pytest.mark.parametrize("shape", [(4, 3, 5), (1, 2, 3, 4, 5)])
def test_gram_matrix_rejects_non_4d(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        gram_matrix(torch.randn(shape))


# ---------------------------------------------------------------- style_loss


def test_style_loss_zero_for_own_gram_positive_otherwise() -> None:
    features = torch.randn(1, 3, 4, 4)
    assert style_loss(features, gram_matrix(features)).item() == 0.0
    assert style_loss(features, gram_matrix(torch.randn(1, 3, 4, 4))).item() > 0.0


def test_style_loss_by_hand() -> None:
    # The normalised Gram is [[1.25, 2.75], [2.75, 6.25]]; against zeros the MSE is
    # (1.25^2 + 2 * 2.75^2 + 6.25^2) / 4.
    expected = (1.25**2 + 2 * 2.75**2 + 6.25**2) / 4
    loss = style_loss(two_channel_features(), torch.zeros(1, 2, 2))
    assert loss.item() == pytest.approx(expected)


def test_style_loss_broadcasts_one_target_over_batch() -> None:
    features = torch.randn(3, 4, 5, 5)
    target = gram_matrix(torch.randn(1, 4, 6, 6))
    batched = style_loss(features, target)
    per_sample = [style_loss(features[i : i + 1], target) for i in range(3)]
    assert batched.dim() == 0
    assert batched.item() == pytest.approx(sum(p.item() for p in per_sample) / 3, rel=1e-5)
    assert torch.allclose(style_loss(features, target.expand(3, 4, 4)), batched)


def test_style_loss_channel_mismatch_is_value_error() -> None:
    with pytest.raises(ValueError, match="channels"):
        style_loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4))


# ---------------------------------------------------------------- content_loss


def test_content_loss_is_mean_squared_error() -> None:
    features, target = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    expected = ((features - target) ** 2).mean()
    assert torch.allclose(content_loss(features, target), expected)
    assert content_loss(features, features).item() == 0.0


def test_content_loss_by_hand() -> None:
    loss = content_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]]))
    assert loss.item() == pytest.approx((1 + 4) / 2)


def test_content_loss_shape_mismatch_is_value_error() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        content_loss(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 5))


# ---------------------------------------------------------------- tv_loss


def test_tv_loss_of_constant_image_is_zero() -> None:
    assert tv_loss(torch.full((2, 3, 5, 7), 0.3)).item() == 0.0


def test_tv_loss_by_hand() -> None:
    # [[1, 2], [4, 8]]: horizontal |2-1|, |8-4| -> mean 2.5; vertical |4-1|, |8-2| -> 4.5
    image = torch.tensor([[[[1.0, 2.0], [4.0, 8.0]]]])
    assert tv_loss(image).item() == pytest.approx(7.0)


def test_tv_loss_is_positive_for_noise() -> None:
    assert tv_loss(torch.rand(1, 3, 8, 8)).item() > 0.0


# ---------------------------------------------------------------- gradients


def test_gradients_flow_through_every_loss() -> None:
    image = torch.rand(1, 3, 6, 6, requires_grad=True)
    features = F.conv2d(image, torch.randn(4, 3, 3, 3), padding=1)
    total = (
        content_loss(features, torch.randn_like(features))
        + style_loss(features, gram_matrix(torch.randn(1, 4, 6, 6)))
        + tv_loss(image)
    )
    total.backward()
    assert image.grad is not None
    assert torch.isfinite(image.grad).all()
    assert image.grad.abs().sum() > 0


@pytest.mark.parametrize("loss_name", ["content", "style", "tv"])
def test_each_loss_alone_gives_finite_nonzero_gradient(loss_name: str) -> None:
    x = torch.rand(1, 2, 4, 4, requires_grad=True)
    loss = {
        "content": lambda: content_loss(x, torch.zeros(1, 2, 4, 4)),
        "style": lambda: style_loss(x, torch.zeros(1, 2, 2)),
        "tv": lambda: tv_loss(x),
    }[loss_name]()
    loss.backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
