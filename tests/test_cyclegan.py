"""CycleGAN's networks, losses, pool, schedule and update (nstcourse.translate.cyclegan)."""

from __future__ import annotations

import copy

import pytest
import safetensors.torch
import torch
from torch import nn

from nstcourse.training import train
from nstcourse.translate.cyclegan import (
    L1_SCALE,
    CycleGANStep,
    ImagePool,
    PatchDiscriminator,
    ResnetGenerator,
    cycle_loss,
    identity_loss,
    init_weights,
    linear_decay,
    lsgan_d_loss,
    lsgan_g_loss,
)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_equal_the_reference_code():
    assert count(ResnetGenerator(ngf=64, blocks=9)) == 11_378_179
    assert count(ResnetGenerator(ngf=32, blocks=6)) == 1_965_059
    assert count(PatchDiscriminator(ndf=64)) == 2_764_737


@pytest.mark.parametrize("size", [(8, 8), (12, 20), (36, 52)])
def test_generator_keeps_any_multiple_of_4_and_stays_in_range(size):
    torch.manual_seed(0)
    G = ResnetGenerator(ngf=4, blocks=1)
    out = G(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, *size)
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("shape", [(1, 3, 10, 12), (1, 3, 4, 4), (1, 1, 16, 16), (3, 16, 16)])
def test_generator_refuses_other_shapes_and_says_what_fits(shape):
    with pytest.raises(ValueError, match="multiples of 4|shape"):
        ResnetGenerator(ngf=4, blocks=1)(torch.rand(*shape))


def test_discriminator_map_sizes():
    D = PatchDiscriminator(ndf=4)
    assert D(torch.rand(1, 3, 256, 256)).shape == (1, 1, 30, 30)
    assert D(torch.rand(2, 3, 128, 96)).shape == (2, 1, 14, 10)
    with pytest.raises(ValueError, match="32 px"):
        D(torch.rand(1, 3, 16, 16))


def test_receptive_field_is_70_px_measured_by_gradient():
    """Back-propagate one output pixel away from the borders: the input gradient is non-zero
    on exactly a 70x70 window. Instance norm is swapped for the identity first, because its
    mean and variance make every output depend a little on every input pixel."""
    torch.manual_seed(0)
    D = PatchDiscriminator(ndf=4).double()
    assert D.receptive_field == 70
    for i, layer in enumerate(D.model):
        if isinstance(layer, nn.InstanceNorm2d):
            D.model[i] = nn.Identity()
    x = torch.rand(1, 3, 160, 160, dtype=torch.float64, requires_grad=True)
    out = D(x)  # (1, 1, 18, 18)
    out[0, 0, 9, 9].backward()
    assert x.grad is not None
    hit = x.grad.abs().sum(1)[0] > 0
    rows, cols = hit.any(1).nonzero().flatten(), hit.any(0).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70
    assert int(hit.sum()) == 70 * 70  # dense: no hole inside the window
    assert rows.min() > 0 and rows.max() < 159  # away from the borders


def test_init_weights_is_normal_0_002_with_zero_biases():
    torch.manual_seed(0)
    G = ResnetGenerator(ngf=16, blocks=2)
    nn.init.ones_(G.model[1].weight)
    init_weights(G)
    weights = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, nn.Conv2d)])
    assert abs(weights.mean().item()) < 2e-3
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert all(
        float(m.bias.detach().abs().max()) == 0
        for m in G.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    )


def test_losses_on_known_values():
    real = torch.tensor([[1.0, 0.0], [3.0, 1.0]])  # (D - 1)^2: 0, 1, 4, 0 -> mean 1.25
    fake = torch.tensor([0.0, 2.0])  # D^2: 0, 4 -> mean 2; (D - 1)^2: 1, 1 -> mean 1
    assert lsgan_d_loss(real, fake).item() == pytest.approx(0.5 * (1.25 + 2.0))
    assert lsgan_g_loss(fake).item() == pytest.approx(1.0)
    assert lsgan_d_loss(torch.ones(4), torch.zeros(4)).item() == 0  # a perfect D
    x = torch.zeros(1, 3, 2, 2)
    x_rec = x.clone()
    x_rec[0, 0, 0, 0] = 0.6  # one of 12 values off by 0.6
    assert cycle_loss(x, x_rec).item() == pytest.approx(0.05)
    assert identity_loss(x, x_rec - 1.2).item() == pytest.approx((0.6 + 11 * 1.2) / 12)
    assert L1_SCALE == 2.0  # the reference's L1 on [-1, 1] images


def test_pool_fills_then_returns_new_images_until_full():
    pool = ImagePool(3)
    images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 2, 2)
    assert torch.equal(pool(images[:2]), images[:2])
    assert int(pool.count) == 2
    torch.manual_seed(0)
    assert torch.equal(pool(images[2:3]), images[2:3])  # the third fills it, no draw
    assert int(pool.count) == 3 and torch.equal(pool.images, images[:3])
    assert torch.equal(ImagePool(0)(images), images)  # no pool


def test_pool_swaps_half_the_time_once_full():
    torch.manual_seed(0)
    pool = ImagePool(5)
    pool(-torch.ones(5, 3, 2, 2))  # full of -1
    new = torch.arange(1, 1001.0).view(-1, 1, 1, 1).expand(-1, 3, 2, 2)
    out = pool(new)
    kept_new = int((out == new).all(dim=(1, 2, 3)).sum())
    assert 450 < kept_new < 550  # p = 1/2 over 1000 draws (sd 16)
    values, given = out[:, 0, 0, 0], new[:, 0, 0, 0]
    swapped = values != given
    assert int(swapped.sum()) == 1000 - kept_new
    # a swapped-out image was stored before: one of the -1s or an earlier new image
    assert ((values[swapped] == -1) | (values[swapped] < given[swapped])).all()
    assert int((values == -1).sum()) == 5  # each of the 5 first images comes out once
    torch.manual_seed(0)
    again = ImagePool(5)
    again(-torch.ones(5, 3, 2, 2))
    assert torch.equal(again(new), out)  # the draws come from torch's seeded RNG


def test_pool_state_round_trips_partly_filled_and_full():
    torch.manual_seed(0)
    pool = ImagePool(4)
    pool(torch.rand(2, 3, 8, 8))
    fresh = ImagePool(4)
    fresh.load_state_dict(pool.state_dict())
    assert int(fresh.count) == 2 and torch.equal(fresh.images, pool.images)
    pool(torch.rand(5, 3, 8, 8))  # now full, with swaps
    fresh.load_state_dict(pool.state_dict())
    batch = torch.rand(6, 3, 8, 8)
    rng = torch.get_rng_state()
    expected = pool(batch)
    torch.set_rng_state(rng)
    assert torch.equal(fresh(batch), expected)
    with pytest.raises(RuntimeError, match="holds 4 images"):
        ImagePool(3).load_state_dict(pool.state_dict())
    with pytest.raises(ValueError, match="one image size"):
        pool(torch.rand(1, 3, 4, 4))


def test_pool_state_survives_safetensors(tmp_path):
    pool = ImagePool(3)
    pool(torch.rand(1, 3, 4, 4))
    safetensors.torch.save_file(pool.state_dict(), str(tmp_path / "pool.safetensors"))
    fresh = ImagePool(3)
    fresh.load_state_dict(safetensors.torch.load_file(str(tmp_path / "pool.safetensors")))
    assert int(fresh.count) == 1 and torch.equal(fresh.images, pool.images)


def test_linear_decay_keeps_then_decays_to_zero():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2e-4)
    sched = linear_decay(opt, constant_steps=3, decay_steps=4)
    rates = []
    for _ in range(9):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [2e-4, 2e-4, 2e-4, 2e-4, 1.5e-4, 1e-4, 0.5e-4, 0.0, 0.0]
    assert rates == pytest.approx(expected)
    with pytest.raises(ValueError, match="decay_steps"):
        linear_decay(opt, constant_steps=3, decay_steps=0)


def make_step(**kwargs) -> CycleGANStep:
    torch.manual_seed(0)
    G, F = ResnetGenerator(ngf=4, blocks=1), ResnetGenerator(ngf=4, blocks=1)
    D_X, D_Y = PatchDiscriminator(ndf=4), PatchDiscriminator(ndf=4)
    opt_G = torch.optim.Adam([*G.parameters(), *F.parameters()], lr=2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam([*D_X.parameters(), *D_Y.parameters()], lr=2e-4, betas=(0.5, 0.999))
    return CycleGANStep(G, F, D_X, D_Y, opt_G=opt_G, opt_D=opt_D, **kwargs)


def batches(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(step)
    x = torch.rand(1, 3, 32, 32, generator=generator)
    return x, torch.rand(1, 3, 32, 32, generator=generator) ** 2


def test_step_updates_everything_and_leaves_d_trainable():
    gan = make_step(pool_size=2)
    before = copy.deepcopy(gan.models.state_dict())
    terms = gan(batches(0))
    assert set(terms) == {"loss", "gan_G", "gan_F", "cycle", "identity", "D_X", "D_Y"}
    total = terms["gan_G"] + terms["gan_F"] + 10 * (terms["cycle"] + 0.5 * terms["identity"])
    assert terms["loss"] == pytest.approx(total, rel=1e-5)
    after = gan.models.state_dict()
    for key in ("G.model.1.weight", "F.model.1.weight", "D_X.model.0.weight", "D_Y.model.0.weight"):
        assert not torch.equal(before[key], after[key]), key
    assert int(after["pool_X.count"]) == 1 and int(after["pool_Y.count"]) == 1
    assert all(p.requires_grad for p in gan.models.parameters())
    no_id = make_step(lambda_id=0.0)(batches(0))
    assert no_id["identity"] == 0


def test_generators_step_leaves_the_discriminators_without_gradients():
    gan = make_step()
    gan._generators_step(*batches(0))
    assert all(p.grad is None for p in [*gan.D_X.parameters(), *gan.D_Y.parameters()])
    assert all(p.grad is not None for p in gan.G.parameters())


def test_nan_raises_before_any_weight_changes():
    gan = make_step()
    before = copy.deepcopy(gan.models.state_dict())
    x, y = batches(0)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="generator loss"):
        gan((x, y))
    for key, value in gan.models.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.requires_grad for p in gan.models.parameters())  # D unfrozen again


def test_interrupted_run_resumes_bit_identical_with_the_pool(tmp_path):
    def run(gan, folder, steps):
        return train(
            gan.models,
            gan,
            batches,
            steps=steps,
            optimizer=gan.optimizers,
            scheduler={"G": linear_decay(gan.opt_G, constant_steps=2, decay_steps=4)},
            checkpoint=folder,
            checkpoint_every=1,
            progress=False,
            device="cpu",
        )

    whole = make_step(pool_size=2)  # full after 2 steps: steps 3 and 4 draw from it
    history = run(whole, tmp_path / "a", 5)
    assert set(history) >= {"loss", "gan_G", "cycle", "identity", "D_X", "D_Y"}
    run(make_step(pool_size=2), tmp_path / "b", 3)
    run(make_step(pool_size=2), tmp_path / "b", 5)  # resumes at step 3 into fresh networks
    resumed = safetensors.torch.load_file(str(tmp_path / "b" / "model-00000005.safetensors"))
    assert set(resumed) == set(whole.models.state_dict())
    for key, value in whole.models.state_dict().items():
        assert torch.equal(resumed[key], value), key


def test_bfloat16_step_is_finite():
    gan = make_step(precision="bfloat16")
    terms = gan(batches(1))
    assert all(torch.isfinite(torch.tensor(v)) for v in terms.values())
    with pytest.raises(ValueError, match="precision"):
        make_step(precision="float16")
