"""Memory budgets: how much memory a command may use, and how much its work needs.

The commands that take an image of any size (``nstcourse upscale``, ``fast-stylize``)
estimate their peak memory from the input's size and the model before the work starts
and compare it with a budget, so that an image too large is tiled or refused with a
message that says what to do, instead of ending after minutes in an allocator traceback
or the kernel's out-of-memory killer.

The budget (``memory_budget``): ``$NSTCOURSE_MEMORY_BUDGET`` if set (bytes, or with a
suffix k, M, G or T, powers of 1000: ``6G``), else half the machine's physical memory
(or of the container's limit, if smaller), else 8 GB where the system says neither. Half,
because the rest is the system's, the notebook's and other programs', and an estimate
is not a measurement. Whatever the source, it is never more than the room left under the
process's address-space limit (``ulimit -v``).

The estimate (``peak_bytes``): run the same code on tensors of PyTorch's ``meta``
device, which have shapes and dtypes but no data, and follow every tensor the torch
functions return, adding its bytes while it is alive; the peak is what the code would
allocate on real tensors, found in milliseconds without allocating it.
"""

from __future__ import annotations

import copy
import os
import re
import sys
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

if sys.platform != "win32":  # POSIX only; Windows has no address-space limit to read
    import resource

ModuleT = TypeVar("ModuleT", bound=nn.Module)

BUDGET_ENV = "NSTCOURSE_MEMORY_BUDGET"
PHYSICAL_FRACTION = 0.5  # of the physical memory (or container limit) a command may use
FALLBACK_BYTES = 8_000_000_000  # where the system tells neither its memory nor a limit
_SUFFIXES = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_CGROUP_LIMIT = Path("/sys/fs/cgroup/memory.max")  # cgroup v2: a container's memory limit
# What peak_bytes cannot see: the allocator's cache and fragmentation from tile to tile,
# convolution workspaces, thread stacks. Measured on CPU with the course's SR models: up
# to 1.35 × the estimate + 0.35 GB of resident memory (docs in needed_bytes).
ESTIMATE_FACTOR = 1.4
ESTIMATE_OVERHEAD = 400_000_000
# images.save_image holds, beside the float32 RGB image it writes (12 B/px), a clamped
# copy, NumPy's ×255 and its rounding (3 × 12 B/px), then the 8-bit array and Pillow's
# 4-byte pixels: at most 36 B/px more than the image.
SAVE_BYTES_PER_PIXEL = 36


@dataclass(frozen=True)
class Budget:
    """The bytes a command may allocate for its work, and where that number comes from
    (for messages: "the 12.3 GB this command may use (half of the physical memory; set
    $NSTCOURSE_MEMORY_BUDGET to change it)")."""

    size: int
    source: str

    def __str__(self) -> str:
        return f"the {gigabytes(self.size)} this command may use ({self.source})"


def memory_budget() -> Budget:
    """The memory budget of a command (see the module docstring).

    Raises:
        ValueError: ``$NSTCOURSE_MEMORY_BUDGET`` is not a size; the message names it.
    """
    text = os.environ.get(BUDGET_ENV, "").strip()
    if text:
        budget = Budget(parse_bytes(text, BUDGET_ENV), f"${BUDGET_ENV}={text}")
    else:
        physical = physical_memory()
        change = f"set ${BUDGET_ENV} to change it"
        if physical is None:
            budget = Budget(FALLBACK_BYTES, f"the default where the memory is unknown; {change}")
        else:
            share = f"{PHYSICAL_FRACTION:.0%} of the {gigabytes(physical)} of memory"
            budget = Budget(int(physical * PHYSICAL_FRACTION), f"{share}; {change}")
    room = address_space_room()
    if room is not None and room < budget.size:
        return Budget(room, "what the address-space limit, ulimit -v, leaves")
    return budget


def needed_bytes(peak: int) -> int:
    """The memory to ask of the budget for work whose ``peak_bytes`` is ``peak``: with a
    margin for what the count cannot see (allocator caching and fragmentation from tile
    to tile, convolution workspaces, thread stacks)."""
    return int(peak * ESTIMATE_FACTOR) + ESTIMATE_OVERHEAD


def parse_bytes(text: str, name: str) -> int:
    """'6G' → 6_000_000_000; '512M', '2.5G', '1000000' likewise (powers of 1000)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([kKmMgGtT]?)[bB]?\s*", text)
    if match is None or float(match[1]) <= 0:
        raise ValueError(
            f"${name}={text!r}: not a memory size; write bytes or a number with k, M, G or T, "
            "e.g. 6G"
        )
    return int(float(match[1]) * _SUFFIXES[match[2].lower()])


def physical_memory() -> int | None:
    """The machine's physical memory in bytes, or the container's (cgroup v2) limit if
    smaller; None where the system does not say (``os.sysconf`` is POSIX only)."""
    try:
        physical: int | None = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # Windows, or an unknown name
        physical = None
    try:
        limit = _CGROUP_LIMIT.read_text().strip()
    except OSError:  # no cgroup v2 here
        limit = "max"
    if limit.isdigit():
        physical = int(limit) if physical is None else min(physical, int(limit))
    return physical if physical is None or physical > 0 else None


def address_space_room() -> int | None:
    """Bytes the process may still map under its address-space limit (``ulimit -v``,
    ``RLIMIT_AS``): the limit less what is mapped now; None without a limit. Linux
    reports the mapped size in /proc/self/statm; elsewhere the whole limit is counted."""
    if sys.platform == "win32":
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
        mapped = pages * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        mapped = 0
    return max(soft - mapped, 0)


def image_save_bytes(height: int, width: int) -> int:
    """What ``images.save_image`` allocates beyond the float image it writes."""
    return SAVE_BYTES_PER_PIXEL * height * width


def gigabytes(size: int) -> str:
    """12_345_678_901 → '12.3 GB', 45_600_000 → '46 MB' (powers of 1000, as
    ``$NSTCOURSE_MEMORY_BUDGET``)."""
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


# ---------------------------------------------------------------- estimating


def meta_copy(module: ModuleT) -> ModuleT:
    """A copy of ``module`` on the ``meta`` device (shapes without data), to run through
    ``peak_bytes``; the module itself is left as it is."""
    return copy.deepcopy(module).to("meta")


def peak_bytes(work: Callable[[], Any]) -> int:
    """The largest number of bytes the tensors made inside ``work()`` hold at one time.

    ``work`` runs its torch code on ``meta`` tensors (``meta_copy`` for modules); every
    tensor a torch function returns is counted from its creation until Python frees it,
    views (which share their base's memory) and a function's own inputs returned as they
    are (``x.to(x.dtype)``) excepted. Tensors made before ``work`` runs are not counted.
    What this misses (a convolution's internal workspace) is small beside the
    activations; the budget's margin is for it.
    """
    with _Tracker() as tracker:
        work()
    return tracker.peak


class _Tracker(TorchFunctionMode):
    """Counts the bytes of the live tensors that torch functions return (``peak_bytes``)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._counted: set[int] = set()

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Iterable[type],
        args: tuple = (),
        kwargs: dict | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {id(t) for t in _tensors((*args, *kwargs.values()))}
        for tensor in _tensors((out,)):
            if id(tensor) not in inputs:
                self._count(tensor)
        return out

    def _count(self, tensor: torch.Tensor) -> None:
        key = id(tensor)
        if key in self._counted or tensor._base is not None:  # counted, or a view
            return
        size = tensor.numel() * tensor.element_size()
        self._counted.add(key)
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(tensor, self._free, key, size)

    def _free(self, key: int, size: int) -> None:
        self._counted.discard(key)
        self.live -= size


def _tensors(values: Iterable[Any]) -> list[torch.Tensor]:
    """The tensors among ``values``, looking one level into tuples and lists."""
    found = []
    for value in values:
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (tuple, list)):
            found.extend(v for v in value if isinstance(v, torch.Tensor))
    return found
