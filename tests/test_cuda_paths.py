"""The package's CUDA-only branches, run on a CPU by faking the ``torch.cuda`` calls they make.

The test machines have no GPU, so these branches never ran in a test, and a misspelled
``torch.cuda.getdevice_name`` once crashed every GPU training run. Each test fakes the
exact torch functions its branch calls with ``monkeypatch.setattr``, which fails if the
attribute does not exist, and checks what the branch does with their results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import nstcourse.style.recipes as style_recipes
from nstcourse.cli.common import UsageError, check_device, run_command
from nstcourse.inference import prepare_for_inference
from nstcourse.recipes import device_name
from nstcourse.runmode import native_bf16, pick_device
from nstcourse.training import load_checkpoint, resolve_precision, save_checkpoint

CUDA = torch.device("cuda")


def test_device_name_asks_cuda_for_the_gpu_name(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[torch.device] = []

    def get_device_name(device: torch.device) -> str:
        asked.append(device)
        return "Fake GPU"

    monkeypatch.setattr(torch.cuda, "get_device_name", get_device_name)
    assert device_name(CUDA) == "cuda: Fake GPU"
    assert asked == [CUDA]


def test_checkpoint_saves_and_restores_the_cuda_rng(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = [torch.ByteTensor([1, 2, 3]), torch.ByteTensor([4, 5])]
    restored: list[list[torch.Tensor]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: rng)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    opt = {"optimizer": torch.optim.SGD(model.parameters(), lr=0.1)}
    save_checkpoint(tmp_path, model, opt, {}, step=3, history={"loss": [1.0]})

    again = nn.Linear(2, 2)
    opt = {"optimizer": torch.optim.SGD(again.parameters(), lr=0.1)}
    assert load_checkpoint(tmp_path, again, opt, {}) == (3, {"loss": [1.0]})
    assert len(restored) == 1 and len(restored[0]) == len(rng)
    assert all(torch.equal(a, b) for a, b in zip(restored[0], rng, strict=True))

    # resumed on a machine with fewer GPUs: only the states of the GPUs it has
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    load_checkpoint(tmp_path, again, opt, {})
    assert len(restored[1]) == 1 and torch.equal(restored[1][0], rng[0])


def test_pick_device_prefers_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(None) == CUDA


@pytest.mark.parametrize("supported", [True, False])
@pytest.mark.parametrize("has_keyword", [True, False], ids=["torch>=2.3", "torch<2.3"])
def test_native_bf16_on_cuda_follows_is_bf16_supported(
    monkeypatch: pytest.MonkeyPatch, supported: bool, has_keyword: bool
) -> None:
    calls: list[dict[str, Any]] = []

    def is_bf16_supported(**kwargs: Any) -> bool:
        calls.append(kwargs)
        if kwargs and not has_keyword:
            raise TypeError("is_bf16_supported() got an unexpected keyword argument")
        return supported

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert native_bf16(CUDA) is supported
    expected = [{"including_emulation": False}] + ([] if has_keyword else [{}])
    assert calls == expected
    assert resolve_precision("auto", CUDA) == ("bfloat16" if supported else "float32")


class _StaysOnCpu(torch.Tensor):
    """A tensor whose ``.to(device)`` is a no-op, so a "cuda" input can stay on the CPU."""

    def to(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self


def test_ms_per_image_synchronizes_cuda_after_each_run(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_rand = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *a, **k: real_rand(*a, **k).as_subclass(_StaysOnCpu))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device: events.append(f"sync {device}"))

    def stylize(x: torch.Tensor) -> torch.Tensor:
        events.append(f"stylize {tuple(x.shape)}")
        return x

    ms = style_recipes.ms_per_image(stylize, size=8, device="cuda", repeats=3)
    assert ms >= 0
    assert events == ["stylize (1, 3, 8, 8)", "sync cuda"] * 4  # warm-up + 3 timed runs


def test_check_device_cuda_and_mps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert check_device("cuda") == CUDA
    assert check_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(UsageError, match="--device cuda:1: 1 CUDA device"):
        check_device("cuda:1")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UsageError, match="--device mps: Apple's MPS is not available"):
        check_device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert check_device("mps") == torch.device("mps")


def test_run_command_reports_cuda_out_of_memory(capsys: pytest.CaptureFixture[str]) -> None:
    def work() -> int:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")

    assert run_command("prog", Path("out.png"), work, failed="training failed") == 1
    assert "prog: error: training failed: CUDA out of memory" in capsys.readouterr().err


def test_prepare_for_inference_on_cuda_defaults_to_bf16_channels_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The weights stay on the CPU; only the device they report is faked.
    monkeypatch.setattr(nn.Parameter, "device", property(lambda self: CUDA))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda **kwargs: True)
    torch.manual_seed(0)
    net = nn.Conv2d(3, 4, 3)
    fast = prepare_for_inference(net)
    assert (fast.device, fast.dtype, fast.channels_last) == (CUDA, torch.bfloat16, True)
    weight = fast.module.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    assert net.weight.dtype == torch.float32 and net.weight.is_contiguous()  # left as it was
