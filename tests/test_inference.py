"""nstcourse.inference.prepare_for_inference: the fast path gives the eager image."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch._inductor.config as inductor_config

from nstcourse import inference
from nstcourse.data import load_sample
from nstcourse.inference import prepare_for_inference
from nstcourse.runmode import native_bf16
from nstcourse.style.fast_style import TransformNet
from nstcourse.style.models import load_style_model
from nstcourse.style.reference import load_engstrom


def _psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    return 10 * math.log10(1 / torch.mean((x - y) ** 2).item())


@pytest.mark.parametrize("channels_last", [False, True])
def test_float32_path_gives_the_eager_image_and_leaves_the_net(channels_last):
    net = TransformNet(width=8, res_blocks=2, styles=3)
    x = torch.rand(2, 3, 37, 53)
    fast = prepare_for_inference(net, dtype=torch.float32, channels_last=channels_last)
    y = fast(x, 1)
    net.eval()
    with torch.no_grad():
        expected = net(x, 1)
    assert y.dtype == torch.float32 and y.is_contiguous() and not y.requires_grad
    assert (y - expected).abs().max() < 1e-5
    mix = torch.tensor([0.2, 0.3, 0.5])
    with torch.no_grad():
        assert (fast(x, mix) - net(x, mix)).abs().max() < 1e-5
    # The caller's net is untouched: float32, NCHW, trainable.
    assert all(p.requires_grad and p.dtype == torch.float32 for p in net.parameters())
    assert net.conv1.conv.weight.is_contiguous()
    assert not any(p.requires_grad for p in fast.module.parameters())
    assert fast.channels_last == channels_last and fast.dtype == torch.float32


def test_auto_picks_bfloat16_only_where_it_is_native(monkeypatch):
    net = TransformNet(width=4, res_blocks=0)
    native = native_bf16("cpu")
    assert prepare_for_inference(net).dtype == (torch.bfloat16 if native else torch.float32)
    monkeypatch.setattr(inference, "native_bf16", lambda device: False)
    assert prepare_for_inference(net).dtype == torch.float32
    assert not prepare_for_inference(net).channels_last  # NHWC only by default on CUDA
    assert native_bf16("meta") is False
    with pytest.raises(ValueError, match="dtype=torch.float64"):
        prepare_for_inference(net, dtype=torch.float64)


@pytest.mark.datapack
def test_bfloat16_path_keeps_the_image(data_pack, monkeypatch):
    """bfloat16 rounds every activation; for trained nets on a photo the result stays
    within 40 dB PSNR of float32 eager (measured at 512 px: ours 58 dB, lengstrom's wave
    51 dB, scream 47 dB)."""
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(data_pack / "weights"))
    photo = load_sample("tubingen", long_side=128)
    for net in (load_style_model("wave", device="cpu"), load_engstrom("scream", device="cpu")):
        fast = prepare_for_inference(net, dtype=torch.bfloat16)
        with torch.no_grad():
            expected = net(photo)
        y = fast(photo)
        assert y.shape == photo.shape and y.dtype == torch.float32
        assert _psnr(y, expected) >= 40, type(net).__name__


def test_compile_without_a_cpp_compiler_says_so(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    with (
        inductor_config.patch({"cpp.cxx": ("no-such-compiler++",)}),
        pytest.raises(RuntimeError, match=r"needs a C\+\+ compiler"),
    ):
        prepare_for_inference(TransformNet(width=4, res_blocks=0), compile=True)


def test_compiled_path_gives_the_eager_image(tmp_path: Path, monkeypatch):
    """torch.compile on a tiny net (~25 s of C++ compilation on two busy cores), where a
    C++ compiler is installed."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    net = TransformNet(width=4, res_blocks=1)
    x = torch.rand(1, 3, 16, 20)
    try:
        fast = prepare_for_inference(net, dtype=torch.float32, compile=True)
    except RuntimeError as err:  # a machine without g++/clang++: the error must say so
        assert "needs a C++ compiler" in str(err)
        return
    assert fast.compiled
    y = fast(x)
    with torch.no_grad():
        assert (y - net.eval()(x)).abs().max() < 1e-5
