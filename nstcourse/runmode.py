"""Run modes, budgets, devices and seeds.

Every notebook has a ``parameters`` cell whose first line is ``MODE = "full"``.
``full`` is what a student runs (real sizes and step counts, ideally on a GPU);
``smoke`` walks the very same code paths with tiny budgets so that CI can execute
every notebook on a 2-core CPU in seconds. The environment variable
``NSTCOURSE_MODE`` overrides ``MODE`` for runs that cannot inject parameters (nbval).
"""

from __future__ import annotations

import os
import random
from collections import namedtuple
from typing import Any

import numpy as np
import torch

MODES = ("full", "smoke")
MODE_ENV = "NSTCOURSE_MODE"


def resolve_mode(mode: str) -> str:
    """Return the run mode: ``$NSTCOURSE_MODE`` if set, else ``mode``; checked."""
    chosen = os.environ.get(MODE_ENV, "").strip() or mode
    if chosen not in MODES:
        source = f"${MODE_ENV}" if os.environ.get(MODE_ENV, "").strip() else "MODE"
        raise ValueError(f"{source}={chosen!r} is not a run mode; use one of {MODES}")
    return chosen


def budget(mode: str, *, full: dict[str, Any], smoke: dict[str, Any]) -> Any:
    """A notebook's budgets for both modes, written once; returns those of ``mode``.

    >>> B = budget("smoke", full=dict(steps=300, size=512), smoke=dict(steps=3, size=64))
    >>> B.steps, B.size
    (3, 64)

    Both modes must name the same budgets, so a smoke run cannot skip one.
    The result is an immutable named tuple.
    """
    if set(full) != set(smoke):
        raise ValueError(
            f"full and smoke budgets must have the same names; only in full: "
            f"{sorted(set(full) - set(smoke))}, only in smoke: {sorted(set(smoke) - set(full))}"
        )
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not a run mode; use one of {MODES}")
    values = full if mode == "full" else smoke
    Budget = namedtuple("Budget", list(full))  # type: ignore[misc]  # fields known at run time
    return Budget(**values)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA if present, else Apple's MPS, else CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` runs bfloat16 convolutions in hardware: a CUDA GPU with bf16
    (Ampere and later), or a CPU with AVX512-BF16 or AMX (Intel Cooper Lake, Sapphire
    Rapids and later; AMD Zen 4 and later). Elsewhere bf16 is emulated and slower than
    float32."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch < 2.3 has no emulation and no such argument
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu  # the checks are private: absent in some builds means "no"
        return any(
            getattr(cpu, check, lambda: False)()
            for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        )
    return False


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator with that seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
