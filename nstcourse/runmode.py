"""Run modes, budgets, devices and seeds.

Every notebook has a ``parameters`` cell whose first line is ``MODE = "auto"``:

- ``full``: the papers' sizes and step counts, for one GPU;
- ``laptop``: meaningful pictures (256 px and more, the shipped checkpoints where training
  would take hours) within about ten minutes per notebook on a 2-core CPU;
- ``smoke``: the very same code paths with tiny budgets, so that CI can execute every
  notebook on a 2-core CPU in seconds; its pictures mean nothing;
- ``auto``: ``full`` when a CUDA GPU is present, else ``laptop``.

The environment variable ``NSTCOURSE_MODE`` overrides ``MODE`` for runs that cannot inject
parameters (nbval).
"""

from __future__ import annotations

import os
import random
from collections import namedtuple
from typing import Any

import numpy as np
import torch

MODES = ("full", "laptop", "smoke")
AUTO = "auto"
MODE_ENV = "NSTCOURSE_MODE"


def resolve_mode(mode: str) -> str:
    """Return the run mode: ``$NSTCOURSE_MODE`` if set, else ``mode``; checked.

    ``"auto"`` (either way) becomes ``"full"`` when CUDA is available, else ``"laptop"``:
    Apple's MPS GPUs get ``laptop`` too, the papers' budgets take hours there.
    """
    from_env = os.environ.get(MODE_ENV, "").strip()
    chosen = from_env or mode
    if chosen == AUTO:
        return "full" if torch.cuda.is_available() else "laptop"
    if chosen not in MODES:
        source = f"${MODE_ENV}" if from_env else "MODE"
        raise ValueError(f"{source}={chosen!r} is not a run mode; use one of {(AUTO, *MODES)}")
    return chosen


def budget(
    mode: str, *, full: dict[str, Any], laptop: dict[str, Any], smoke: dict[str, Any]
) -> Any:
    """A notebook's budgets for every mode, written once; returns those of ``mode``.

    >>> B = budget(
    ...     "laptop",
    ...     full=dict(steps=300, size=512),
    ...     laptop=dict(steps=100, size=256),
    ...     smoke=dict(steps=3, size=64),
    ... )
    >>> B.steps, B.size
    (100, 256)

    Every mode must name the same budgets, so that no mode can skip one.
    The result is an immutable named tuple.
    """
    budgets = {"full": full, "laptop": laptop, "smoke": smoke}
    for name, values in budgets.items():
        if set(values) != set(full):
            raise ValueError(
                f"{name} and full budgets must have the same names; only in full: "
                f"{sorted(set(full) - set(values))}, only in {name}: "
                f"{sorted(set(values) - set(full))}"
            )
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not a run mode; use one of {MODES}")
    Budget = namedtuple("Budget", list(full))  # type: ignore[misc]  # fields known at run time
    return Budget(**budgets[mode])


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
