"""Run modes, budgets, devices and seeds."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from nstcourse.runmode import MODE_ENV, budget, pick_device, resolve_mode, seed_everything

FULL = {"steps": 300, "size": 512}
LAPTOP = {"steps": 100, "size": 256}
SMOKE = {"steps": 3, "size": 64}
ALL = {"full": FULL, "laptop": LAPTOP, "smoke": SMOKE}


@pytest.fixture
def no_mode_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The repository's conftest.py sets NSTCOURSE_MODE=smoke for notebook runs.
    monkeypatch.delenv(MODE_ENV, raising=False)


# ---------------------------------------------------------------- resolve_mode


@pytest.mark.parametrize("mode", ["full", "laptop", "smoke"])
def test_resolve_mode_without_env_returns_argument(no_mode_env: None, mode: str) -> None:
    assert resolve_mode(mode) == mode


@pytest.mark.parametrize(
    "env, mode", [("smoke", "full"), ("full", "smoke"), (" smoke\n", "full"), ("laptop", "auto")]
)
def test_resolve_mode_env_overrides_argument(monkeypatch, env: str, mode: str) -> None:
    monkeypatch.setenv(MODE_ENV, env)
    assert resolve_mode(mode) == env.strip()


@pytest.mark.parametrize("cuda, expected", [(True, "full"), (False, "laptop")])
def test_auto_is_full_on_cuda_else_laptop(
    no_mode_env: None, monkeypatch: pytest.MonkeyPatch, cuda: bool, expected: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_mode("auto") == expected
    monkeypatch.setenv(MODE_ENV, "auto")  # the variable may say auto too
    assert resolve_mode("smoke") == expected


def test_resolve_mode_blank_env_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODE_ENV, "   ")
    assert resolve_mode("full") == "full"


def test_resolve_mode_bad_argument_names_mode(no_mode_env: None) -> None:
    with pytest.raises(ValueError, match=r"MODE='fast'") as excinfo:
        resolve_mode("fast")
    assert MODE_ENV not in str(excinfo.value)


def test_resolve_mode_bad_env_names_env_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODE_ENV, "turbo")
    with pytest.raises(ValueError, match=rf"\${MODE_ENV}='turbo'"):
        resolve_mode("full")


# ---------------------------------------------------------------- budget


@pytest.mark.parametrize("mode", ["full", "laptop", "smoke"])
def test_budget_returns_values_of_each_mode(mode: str) -> None:
    assert budget(mode, **ALL)._asdict() == ALL[mode]


def test_budget_is_immutable() -> None:
    b = budget("smoke", **ALL)
    with pytest.raises(AttributeError):
        b.steps = 1000
    with pytest.raises(AttributeError):
        b.new_field = 1
    assert b.steps == 3


@pytest.mark.parametrize("odd", ["laptop", "smoke"])
def test_budget_mismatched_names_raise_naming_them(odd: str) -> None:
    budgets = {**ALL, odd: {"steps": 1, "lr": 0.1}}
    with pytest.raises(ValueError) as excinfo:
        budget("full", **budgets)
    message = str(excinfo.value)
    assert "size" in message and "lr" in message and odd in message


def test_budget_bad_mode_raises() -> None:
    with pytest.raises(ValueError, match="fast"):
        budget("fast", **ALL)
    with pytest.raises(ValueError, match="auto"):  # resolve_mode turns auto into a mode
        budget("auto", **ALL)


# ---------------------------------------------------------------- pick_device


@pytest.fixture
def no_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if getattr(torch.backends, "mps", None) is not None:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_pick_device_none_is_cpu_without_accelerator(no_accelerator: None) -> None:
    assert pick_device(None) == torch.device("cpu")
    assert pick_device() == torch.device("cpu")


def test_pick_device_prefers_cuda_when_available(no_accelerator: None, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(None).type == "cuda"


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu")])
def test_pick_device_explicit(device) -> None:
    chosen = pick_device(device)
    assert isinstance(chosen, torch.device) and chosen.type == "cpu"
    assert torch.zeros(1, device=chosen).device.type == "cpu"


# ---------------------------------------------------------------- seed_everything


def draw() -> tuple[torch.Tensor, np.ndarray, float]:
    return torch.rand(5), np.random.rand(5), random.random()


def test_seed_everything_makes_draws_reproducible() -> None:
    seed_everything(123)
    first = draw()
    seed_everything(123)
    second = draw()
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])
    assert first[2] == second[2]
    seed_everything(124)
    assert not torch.equal(draw()[0], first[0])


def test_seed_everything_returns_seeded_generator() -> None:
    a = torch.rand(4, generator=seed_everything(7))
    b = torch.rand(4, generator=seed_everything(7))
    assert torch.equal(a, b)
    assert seed_everything(7).initial_seed() == 7
