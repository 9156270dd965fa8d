"""Fast inference of a trained image-to-image network: a frozen copy, optionally in
bfloat16 or float16, channels-last and compiled (``prepare_for_inference``).

Used by the feed-forward style networks of both the course and the references; the
speed it gains is measured in ``benchmarks/fast_style_speed.py``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from nstcourse.runmode import native_bf16

INFERENCE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # besides "auto"


class InferenceNet:
    """A style network prepared by ``prepare_for_inference``: a frozen copy in eval mode.

    ``fast(images, style=None)``: images (N, 3, H, W) in [0, 1] on any device; style as the
    net's forward takes it (omitted when None, so nets without a style argument work).
    Returns (N, 3, H, W) float32 in [0, 1] on the images' device, NCHW-contiguous.

    Attributes: ``module`` (the copy), ``device``, ``dtype``, ``channels_last``,
    ``compiled``.
    """

    def __init__(
        self, module: nn.Module, *, dtype: torch.dtype, channels_last: bool, compiled: bool
    ):
        self.module, self.dtype = module, dtype
        self.device = next(module.parameters()).device
        self.channels_last, self.compiled = channels_last, compiled
        self._forward = torch.compile(module, dynamic=False) if compiled else module

    def __call__(self, images: torch.Tensor, style=None) -> torch.Tensor:
        x = images.to(self.device, self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = self._forward(x) if style is None else self._forward(x, style)
        return y.float().contiguous().to(images.device)

    def __repr__(self) -> str:
        return (
            f"InferenceNet({type(self.module).__name__}, device={self.device}, "
            f"dtype={self.dtype}, channels_last={self.channels_last}, compiled={self.compiled})"
        )


def prepare_for_inference(
    net: nn.Module,
    *,
    dtype: str | torch.dtype = "auto",
    channels_last: bool | None = None,
    compile: bool = False,
) -> InferenceNet:
    """The project's fast path for stylising: a frozen copy of ``net`` set up for speed.

    ``net`` is left as it is (it can go on training). Any module mapping (N, 3, H, W) in
    [0, 1] to the same, with an optional style choice, works: a ``TransformNet``,
    ``style.reference.EngstromNet`` (not an ``AdaINNet``: its style is an image).
    The settings (measured speed-ups: the README's "Feed-forward style: speed", from
    benchmarks/fast_style_speed.py; per setting: docs/experiments.md):

    * always: eval mode, weights frozen, ``torch.inference_mode`` (no autograd graph to
      record);
    * ``dtype``: "auto" is bfloat16 where ``native_bf16(device)``, else float32. bfloat16
      weights and activations put a CPU's convolutions on AMX, a few pixels off a float32
      output; float32 gives a plain call's numbers up to rounding. float16 is there for
      GPUs without bf16;
    * ``channels_last``: None means on for CUDA (cuDNN's tensor-core kernels want NHWC)
      and off elsewhere: on a CPU it did not help (instance norm copies NHWC to NCHW and
      back);
    * ``compile``: ``torch.compile`` (needs a C++ compiler on a CPU): faster again, but
      every new image size compiles first, which takes long on a CPU; so it is off by
      default.

    Args:
        net: the trained network, on the device to run on.
        dtype: "auto", torch.float32, torch.bfloat16 or torch.float16.
        channels_last: NHWC memory layout for weights and images; None picks by device.
        compile: wrap the copy in ``torch.compile(dynamic=False)``.
    """
    if not (dtype == "auto" or dtype in INFERENCE_DTYPES):
        raise ValueError(f"dtype={dtype!r}; use 'auto', torch.float32, bfloat16 or float16")
    device = next(net.parameters()).device
    if isinstance(dtype, str):  # "auto"
        dtype = torch.bfloat16 if native_bf16(device) else torch.float32
    if channels_last is None:
        channels_last = device.type == "cuda"
    if compile and device.type == "cpu":
        _check_cpp_compiler()
    module = copy.deepcopy(net).eval().requires_grad_(False).to(dtype)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    return InferenceNet(module, dtype=dtype, channels_last=channels_last, compiled=compile)


def _check_cpp_compiler() -> None:
    """torch.compile builds C++ kernels for a CPU: fail here, clearly, if it cannot."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler  # private; may move
    except ImportError:
        return  # torch.compile reports it on the first call
    try:
        get_cpp_compiler()
    except RuntimeError as err:
        raise RuntimeError(
            "prepare_for_inference(compile=True) on a CPU needs a C++ compiler (g++ or "
            f"clang++, or $CXX): {err}. Install one, or use compile=False."
        ) from err
