"""Counting the multiply-accumulates (MACs) a network's convolutions perform.

A Conv2d with C_in input channels, a k_h × k_w kernel and g groups computes, for each of
its output values, C_in·k_h·k_w / g products and sums: MACs = numel(output) · C_in·k_h·k_w
/ g. Notebooks 04 and 06 derive these counts layer by layer by hand and check them
against ``measured_macs``.
"""

from __future__ import annotations

import torch
from torch import nn


def measured_macs(model: nn.Module, x: torch.Tensor) -> int:
    """MACs of every ``nn.Conv2d`` of ``model`` in one forward pass on ``x``, counted from
    the output shapes that forward hooks see (biases, norms and activations not counted)."""
    total = 0

    def hook(conv: nn.Conv2d, _inputs, out: torch.Tensor) -> None:
        nonlocal total
        k_h, k_w = conv.kernel_size
        total += out.numel() * conv.in_channels * k_h * k_w // conv.groups

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return total
