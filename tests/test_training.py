"""nstcourse.training: the loop, steps, exact resume, NaN guard, atomic checkpoints, clipping."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from nstcourse import training
from nstcourse.checkpoints import load_model, read_metadata, save_model
from nstcourse.sr.espcn import ESPCN
from nstcourse.sr.srcnn import SRCNN
from nstcourse.sr.srgan import Discriminator, SRGANStep, SRResNet
from nstcourse.training import (
    AdjustableGradClip,
    add_wall_time,
    clip_norm,
    load_checkpoint,
    sample_batches,
    save_checkpoint,
    supervised_step,
    train,
    wall_time,
)


class NoisyPairs(torch.utils.data.Dataset):
    """(blurred, sharp) 8x8 patches with a random flip drawn from torch's RNG."""

    def __init__(self, n: int = 16):
        generator = torch.Generator().manual_seed(1)
        self.sharp = torch.rand(n, 1, 8, 8, generator=generator)
        self.blurred = F.avg_pool2d(self.sharp, 3, stride=1, padding=1, count_include_pad=False)

    def __len__(self) -> int:
        return len(self.sharp)

    def __getitem__(self, i: int):
        x, y = self.blurred[i], self.sharp[i]
        if torch.rand(()) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return x, y


def mse(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return F.mse_loss(model(x), y)


def noisy_mse(model: nn.Module, batch) -> torch.Tensor:
    """Draws from the global RNG inside the step: resume must restore that RNG too."""
    x, y = batch
    return F.mse_loss(model(x + 0.01 * torch.randn_like(x)), y)


def tiny_srcnn(seed: int = 0) -> SRCNN:
    torch.manual_seed(seed)
    return SRCNN(f1=3, f2=1, f3=3, n1=4, n2=4)


def _run(model, folder, *, steps=12, on_step=None, loss_fn=noisy_mse, precision="float32"):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    return train(
        model,
        supervised_step(model, loss_fn, optimizer, precision=precision),
        sample_batches(NoisyPairs(), batch_size=4, seed=3),
        steps=steps,
        optimizer=optimizer,
        scheduler=scheduler,
        validate=lambda m: {"psnr": 10.0},
        validate_every=3,
        checkpoint=folder,
        checkpoint_every=4,
        progress=False,
        device="cpu",
        on_step=on_step,
    )


def test_loss_goes_down():
    model = tiny_srcnn()
    batches = sample_batches(NoisyPairs(), batch_size=8, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = train(
        model,
        supervised_step(model, mse, optimizer),
        batches,
        steps=60,
        optimizer=optimizer,
        progress=False,
        device="cpu",
    )
    assert history["step"] == list(range(60))
    first, last = sum(history["loss"][:5]) / 5, sum(history["loss"][-5:]) / 5
    assert last < 0.5 * first


def test_bfloat16_runs_the_convolutions_in_bf16_and_keeps_float32_weights():
    model = tiny_srcnn()
    seen = set()
    model.conv1.register_forward_hook(lambda module, args, out: seen.add(out.dtype))
    batches = sample_batches(NoisyPairs(), batch_size=8, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    step = supervised_step(model, mse, optimizer, precision="bfloat16")
    history = train(
        model, step, batches, steps=60, optimizer=optimizer, progress=False, device="cpu"
    )
    assert seen == {torch.bfloat16}
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32
               for p in model.parameters())  # fmt: skip
    first, last = sum(history["loss"][:5]) / 5, sum(history["loss"][-5:]) / 5
    assert last < 0.5 * first
    model.eval()  # outside train() the model is plain float32 again
    seen.clear()
    model(torch.rand(1, 1, 8, 8))
    assert seen == {torch.float32}


def test_sample_batches_depends_on_the_step_only():
    batches = sample_batches(NoisyPairs(), batch_size=4, seed=7)
    x5, y5 = batches(5)
    batches(0)
    torch.rand(10)  # the global RNG moving on does not matter
    assert torch.equal(batches(5)[0], x5) and torch.equal(batches(5)[1], y5)
    assert not torch.equal(batches(6)[1], y5)
    with pytest.raises(ValueError, match="empty"):
        sample_batches([], batch_size=1, seed=0)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_resume_after_interruption_is_bit_identical(tmp_path, precision):
    reference = tiny_srcnn()
    expected_history = _run(reference, tmp_path / "a", precision=precision)

    def interrupt(step, terms):
        if step == 6:  # the last checkpoint was after step index 3 (4 steps done)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(tiny_srcnn(), tmp_path / "b", on_step=interrupt, precision=precision)
    assert torch.load(tmp_path / "b" / training.STATE_FILE, weights_only=True)["step"] == 4
    interrupted_seconds = wall_time(tmp_path / "b")  # kept from the checkpoint
    assert interrupted_seconds > 0

    torch.manual_seed(123)  # a fresh process: other init, other RNG state
    resumed = tiny_srcnn(seed=99)
    history = _run(resumed, tmp_path / "b", precision=precision)
    for key, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    assert history == expected_history
    assert [v["step"] for v in history["validation"]] == [3, 6, 9, 12]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "model-00000012.safetensors",
        training.STATE_FILE,
        training.WALL_TIME_FILE,
    ]
    assert wall_time(tmp_path / "b") > interrupted_seconds


def test_a_finished_run_resumes_as_a_no_op(tmp_path):
    model = tiny_srcnn()
    _run(model, tmp_path, steps=4)
    again = tiny_srcnn(seed=5)
    history = _run(again, tmp_path, steps=4)
    assert len(history["loss"]) == 4
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters(), strict=True)
    )


def test_nan_loss_raises_and_keeps_the_last_good_checkpoint(tmp_path):
    def poisoned(model, batch):
        loss = mse(model, batch)
        return loss * float("nan") if poisoned.calls == 5 else loss

    poisoned.calls = 0

    def count(step, terms):
        poisoned.calls += 1

    model = tiny_srcnn()
    with pytest.raises(FloatingPointError, match="step 5: loss is nan"):
        _run(model, tmp_path, loss_fn=poisoned, on_step=count)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # never applied
    good = tiny_srcnn(seed=1)
    optimizer = torch.optim.SGD(good.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    step, history = load_checkpoint(
        tmp_path, good, {"optimizer": optimizer}, {"scheduler": scheduler}
    )
    assert step == 4 and len(history["loss"]) == 4
    assert all(math.isfinite(v) for v in history["loss"])


def _save(folder, model, step):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    save_checkpoint(folder, model, {"optimizer": optimizer}, {}, step=step, history={"loss": []})


@pytest.mark.parametrize("target", ["torch.save", "safetensors"])
def test_a_half_written_checkpoint_never_replaces_a_good_one(tmp_path, monkeypatch, target):
    good = tiny_srcnn(seed=0)
    _save(tmp_path, good, step=10)

    def write_half_then_crash(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt  # Ctrl-C in the middle of the write

    if target == "torch.save":
        monkeypatch.setattr(training.torch, "save", write_half_then_crash)
    else:
        monkeypatch.setattr(training.safetensors.torch, "save_file", write_half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, tiny_srcnn(seed=1), step=20)
    monkeypatch.undo()

    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[-1] == training.STATE_FILE and not any(n.endswith(".part") for n in names)
    restored = tiny_srcnn(seed=2)
    optimizer = torch.optim.SGD(restored.parameters(), lr=0.1)
    step, _ = load_checkpoint(tmp_path, restored, {"optimizer": optimizer}, {})
    assert step == 10
    assert all(
        torch.equal(a, b) for a, b in zip(good.parameters(), restored.parameters(), strict=True)
    )


def _one_step(clip, lr=0.1):
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    start = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(8, 4) * 100, torch.randn(8, 1) * 100  # large gradients
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    train(
        model,
        supervised_step(model, lambda m, b: F.mse_loss(m(b[0]), b[1]), optimizer, clip=clip),
        lambda step: (x, y),
        steps=1,
        optimizer=optimizer,
        progress=False,
        device="cpu",
    )
    return torch.cat([(p - s).flatten() for p, s in zip(model.parameters(), start, strict=True)])


def test_gradient_clipping_by_norm_and_vdsr_adjustable():
    assert _one_step(None).norm() > 10
    assert _one_step(clip_norm(0.5)).norm().item() == pytest.approx(0.1 * 0.5, rel=1e-4)
    # VDSR: each component of the gradient within theta / lr, so each update within theta
    step = _one_step(AdjustableGradClip(theta=0.01), lr=0.1)
    assert step.abs().max().item() == pytest.approx(0.01, rel=1e-5)
    step = _one_step(AdjustableGradClip(theta=0.01), lr=0.01)  # bound grows as lr falls
    assert step.abs().max().item() == pytest.approx(0.01, rel=1e-5)
    with pytest.raises(ValueError, match="clip norm 0"):
        clip_norm(0.0)


def test_step_argument_errors():
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="precision='float16'"):
        supervised_step(model, mse, opt, precision="float16")
    with pytest.raises(ValueError, match="precision='float16'"):
        SRGANStep(model, model, F.mse_loss, opt_G=opt, opt_D=opt, precision="float16")
    with pytest.raises(ValueError, match="precision='half'"):
        training.resolve_precision("half", torch.device("cpu"))


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_follows_native_bf16(monkeypatch, native):
    monkeypatch.setattr(training, "native_bf16", lambda device: native)
    expected = "bfloat16" if native else "float32"
    assert training.resolve_precision("auto", torch.device("cpu")) == expected
    assert training.resolve_precision("float32", torch.device("cpu")) == "float32"


def test_a_loss_dict_logs_every_term_and_minimises_the_total():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def terms(m, batch):
        a = m(batch).pow(2).mean()
        return {"total": 2 * a, "a": a}

    step = supervised_step(model, terms, opt)
    first = step(torch.ones(4, 2))
    assert set(first) == {"loss", "a"} and first["loss"] == pytest.approx(2 * first["a"])
    assert step(torch.ones(4, 2))["loss"] < first["loss"]


def test_optimizer_step_refuses_a_nan_loss_before_touching_anything():
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.ones(1, 2)).sum() * float("nan")
    with pytest.raises(FloatingPointError, match="generator loss is nan"):
        training.optimizer_step(opt, loss, name="generator loss")
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_gan_update_with_two_optimizers_checkpoints_and_resumes(tmp_path):
    def make():
        torch.manual_seed(0)
        G, D = SRResNet(scale=2, blocks=1, width=4), Discriminator(width=4, pooled_size=1)
        opt_G = torch.optim.Adam(G.parameters(), lr=1e-3)
        opt_D = torch.optim.Adam(D.parameters(), lr=1e-3)
        return SRGANStep(G, D, F.mse_loss, opt_G=opt_G, opt_D=opt_D)

    hr = torch.rand(2, 3, 16, 16)

    def run(gan, folder, steps):
        return train(
            gan.models,
            gan,
            lambda step: (F.avg_pool2d(hr, 2), hr),
            steps=steps,
            optimizer=gan.optimizers,
            checkpoint=folder,
            checkpoint_every=1,
            progress=False,
            device="cpu",
        )

    whole = make()
    history = run(whole, tmp_path / "a", 3)
    assert set(history) >= {"loss", "content", "adversarial", "discriminator", "d_real"}
    parted = make()
    run(parted, tmp_path / "b", 2)
    run(make(), tmp_path / "b", 3)  # resumes at step 2 into fresh networks
    resumed = safetensors.torch.load_file(str(tmp_path / "b" / "model-00000003.safetensors"))
    for key, value in whole.models.state_dict().items():
        assert torch.equal(resumed[key], value), key


def test_save_and_load_model(tmp_path):
    model = ESPCN(scale=3, n1=8, n2=4)
    path = tmp_path / "espcn.safetensors"
    recipe = {"steps": 10, "seed": 0, "data": "T91"}
    save_model(model, path, kwargs={"scale": 3, "n1": 8, "n2": 4}, metadata={"recipe": recipe})
    info = read_metadata(path)
    assert info == {"class": "ESPCN", "kwargs": {"scale": 3, "n1": 8, "n2": 4}, "recipe": recipe}
    loaded = load_model(ESPCN, path, device="cpu")
    assert not loaded.training
    x = torch.rand(1, 1, 5, 5)
    assert torch.equal(loaded(x), model.eval()(x))
    load_model(ESPCN(scale=3, n1=8, n2=4), path, device="cpu")
    with pytest.raises(ValueError, match="not a SRCNN"):
        load_model(SRCNN, path)
    with pytest.raises(ValueError, match="does not fit"):
        load_model(ESPCN(scale=2, n1=8, n2=4), path, device="cpu")
    with pytest.raises(TypeError):
        save_model(model, tmp_path / "bad.safetensors", kwargs={"f": object()})
    assert not (tmp_path / "bad.safetensors").exists()


def test_add_wall_time_sums_over_resumed_calls(tmp_path) -> None:
    assert add_wall_time(tmp_path, 1.5) == 1.5
    assert add_wall_time(tmp_path, 2.0) == 3.5
    assert add_wall_time(tmp_path / "other", 0.25) == 0.25  # each run folder its own total
