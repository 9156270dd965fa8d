"""The one training loop of the course: every network it trains goes through ``train``.

``train`` runs ``steps`` updates of a step function with a progress bar, validates now
and then,
and checkpoints so that a run stopped by Ctrl-C or a crash resumes where it left off
and ends with exactly the weights of an uninterrupted run (bit-identical on the CPU).

How resume stays exact:

* Batches come from ``batches(step)``, a function of the step number only (see
  ``sample_batches``), not from an iterator whose position would have to be saved.
  ``sample_batches`` draws the indices with a generator seeded by (seed, step) and runs
  the dataset's own torch-random transforms (random crops, flips) under a torch RNG
  seeded the same way, so step k always sees the same batch.
* A checkpoint holds the model weights, the optimizer(s), the scheduler(s), the step,
  torch's RNG state (CPU and CUDA) and the history. Resuming restores all of it and
  continues from the next step. (Python's ``random`` and NumPy are not saved: code in
  the step should draw its randomness from torch.)
* A checkpoint is a folder: ``model-<step>.safetensors`` (weights) and
  ``train_state.pt`` (everything else, with the name of its weights file; read with
  ``torch.load(weights_only=True)``). Both are written atomically, the weights first,
  and older weights files are deleted only after the new ``train_state.pt`` is in
  place, so a crash at any moment leaves a complete, consistent checkpoint.
* Ctrl-C saves nothing (the interrupted step may be half applied): the run resumes from
  the last checkpoint and repeats the steps after it, which gives the same result.
* A NaN or infinite loss raises ``FloatingPointError`` naming the step, before the
  optimizer applies it (``optimizer_step``); the last good checkpoint is left as it was.

A step is a function ``step(batch) -> {"loss": float, ...}`` doing one whole update:
``supervised_step`` builds it for a network trained on one loss (optionally under
bfloat16 autocast); a GAN brings its own (``sr.srgan.SRGANStep``), built on the same
``optimizer_step`` and ``autocast``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn
from tqdm.auto import tqdm

from nstcourse.checkpoints import state_dict_on_cpu
from nstcourse.files import atomic_path
from nstcourse.runmode import native_bf16, pick_device

STATE_FILE = "train_state.pt"
WALL_TIME_FILE = "wall_time.json"  # seconds spent training, summed over resumes
PRECISIONS = ("float32", "bfloat16")  # autocast(device, precision)


@dataclass(frozen=True)
class AdjustableGradClip:
    """VDSR's adjustable gradient clipping (Kim et al. 2016, section 3.2).

    Each gradient component is clipped to [-theta/gamma, theta/gamma], gamma being the
    current learning rate of its parameter group: as the rate is cut, the bound grows, so
    the size of the actual update, gamma * g, stays at most theta.
    """

    theta: float = 0.01  # the paper's value, with lr 0.1 divided by 10 every 20 epochs

    def __call__(self, optimizer: torch.optim.Optimizer) -> None:
        for group in optimizer.param_groups:
            bound = self.theta / group["lr"]
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.clamp_(-bound, bound)


def sample_batches(
    dataset, *, batch_size: int, seed: int, collate: Callable | None = None
) -> Callable[[int], Any]:
    """A resumable batch source for ``train``: ``batches(step)`` is the same on every call.

    Draws ``batch_size`` indices uniformly (with replacement, across the whole dataset)
    from a generator seeded by (seed, step), and fetches them under a torch RNG seeded
    the same way, so random crops and flips done with torch inside ``dataset[i]`` repeat
    too. ``collate`` (default: ``torch.utils.data.default_collate``) stacks the items.
    """
    if len(dataset) == 0:
        raise ValueError("sample_batches: the dataset is empty")
    collate = collate or torch.utils.data.default_collate

    def batches(step: int):
        step_seed = seed * 1_000_003 + step
        generator = torch.Generator().manual_seed(step_seed)
        indices = torch.randint(len(dataset), (batch_size,), generator=generator).tolist()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step_seed + 1)
            return collate([dataset[i] for i in indices])

    return batches


Step = Callable[[Any], dict[str, float]]  # one update: batch -> {"loss": float, <term>: float}


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    loss: torch.Tensor,
    *,
    name: str = "loss",
    clip: Callable[[torch.optim.Optimizer], None] | None = None,
) -> None:
    """One guarded update: backward ``loss`` into the optimizer's parameters and step.

    A non-finite ``loss`` raises ``FloatingPointError`` naming it *before* anything is
    touched, so a NaN never reaches the weights or the optimizer state. ``clip(optimizer)``
    runs between backward and step (``AdjustableGradClip``, or ``clip_norm(max_norm)``).
    Every update of the course (supervised, SRGAN's G and D, CycleGAN's) goes through here.
    """
    if not torch.isfinite(loss).all():
        raise FloatingPointError(f"{name} is {loss.item()}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        clip(optimizer)
    optimizer.step()


def clip_norm(max_norm: float) -> Callable[[torch.optim.Optimizer], None]:
    """A ``clip`` for ``optimizer_step``: the global L2 norm of all gradients <= max_norm."""
    if not max_norm > 0:
        raise ValueError(f"clip norm {max_norm}: the maximum norm must be positive")

    def clip(optimizer: torch.optim.Optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        nn.utils.clip_grad_norm_(params, max_norm)

    return clip


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """``torch.autocast`` for ``precision``: "bfloat16" runs the convolutions in bfloat16
    (losses, weights and optimizer state stay float32; unlike float16, no loss scaling);
    "float32" is a no-op context."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; use one of {PRECISIONS}")
    return torch.autocast(device.type, torch.bfloat16, enabled=precision == "bfloat16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """ "auto" -> "bfloat16" where the device runs it natively (``runmode.native_bf16``),
    else "float32"; "float32" and "bfloat16" are returned as they are."""
    if precision == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; use 'auto' or one of {PRECISIONS}")
    return precision


def supervised_step(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor | Mapping[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    *,
    clip: Callable[[torch.optim.Optimizer], None] | None = None,
    precision: str = "float32",
) -> Step:
    """The update of a network trained on one loss, as a ``Step`` for ``train``.

    ``loss_fn(model, batch)`` returns the scalar loss, or a dict of scalar terms whose
    ``"total"`` is minimised (as ``PerceptualLoss`` and ``AdaINNet.loss`` return); every
    term goes into the history. It runs under ``autocast(precision)`` on the model's
    device; the update is ``optimizer_step`` (NaN guard, optional ``clip``).
    """
    autocast(torch.device("cpu"), precision)  # checks the name now, not at the first step

    def step(batch: Any) -> dict[str, float]:
        device = next(model.parameters()).device
        with autocast(device, precision):
            out = loss_fn(model, batch)
        terms = dict(out) if isinstance(out, Mapping) else {"total": out}
        total = terms.pop("total")
        optimizer_step(optimizer, total, clip=clip)
        return {"loss": total.item(), **{name: value.item() for name, value in terms.items()}}

    return step


def train(
    model: nn.Module,
    step: Step,
    batches: Callable[[int], Any],
    *,
    steps: int,
    optimizer: torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer],
    scheduler=None,
    validate: Callable[[nn.Module], dict[str, float]] | None = None,
    validate_every: int = 1000,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1000,
    resume: bool = True,
    progress: bool = True,
    device: str | torch.device | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, list]:
    """Train ``model`` for ``steps`` updates of ``step``; return the history.

    Args:
        model: every network the step updates (for a GAN, an ``nn.ModuleDict``): moved
            to the device, put in train mode, checkpointed.
        step: ``step(batch) -> {"loss": float, <term>: float}``, one whole update: a
            ``supervised_step``, or a GAN's step (``sr.srgan.SRGANStep``). It must raise
            ``FloatingPointError`` before a non-finite loss reaches the weights
            (``optimizer_step`` does).
        batches: ``batches(step) -> batch`` for step 0, 1, ...; it must depend on the step
            only (see ``sample_batches``). Tensors in the batch (alone, or in a tuple, list
            or dict) are moved to the device.
        steps: total number of updates (a resumed run counts the ones already done).
        optimizer: the optimizer the step uses, or a dict of them (a GAN's
            ``{"G": ..., "D": ...}``); checkpointed with the model.
        scheduler: None, a learning-rate scheduler, or a dict of them; stepped once per
            update.
        validate: ``validate(model) -> {"psnr": ...}``, run in eval mode without
            gradients every ``validate_every`` steps and after the last.
        checkpoint: a folder for the checkpoint, or None for none; written every
            ``checkpoint_every`` steps and after the last. Each checkpoint also adds the
            seconds since the previous one to the folder's training time
            (``add_wall_time``), so that a killed run keeps the time it checkpointed.
        resume: continue from the checkpoint in that folder if there is one.
        progress: show a tqdm progress bar with the loss.
        device: None picks CUDA, then MPS, then CPU.
        on_step: ``on_step(step, terms)`` after each step (and after any checkpoint of
            that step); for logging, or for tests that interrupt a run.

    Returns:
        ``{"step": [...], "loss": [...], <other terms>: [...], "validation": [{"step": k,
        **metrics}, ...]}``, one entry per step (validation: per validation).
    """
    optimizers = _named(optimizer, "optimizer")
    schedulers = _named(scheduler, "scheduler") if scheduler is not None else {}
    device = pick_device(device)
    model.to(device)

    history: dict[str, list] = {"step": [], "loss": [], "validation": []}
    start = 0
    if checkpoint is not None and resume and (Path(checkpoint) / STATE_FILE).is_file():
        start, history = load_checkpoint(checkpoint, model, optimizers, schedulers)

    model.train()
    clock = time.perf_counter()
    bar = tqdm(range(start, steps), initial=start, total=steps, disable=not progress)
    for index in bar:
        batch = _to_device(batches(index), device)
        try:
            terms = step(batch)
            bad = {name: value for name, value in terms.items() if not math.isfinite(value)}
            if bad:
                raise FloatingPointError(f"non-finite {bad}")
        except FloatingPointError as error:
            kept = f"the last good checkpoint in {checkpoint} is kept" if checkpoint else ""
            raise FloatingPointError(f"step {index}: {error}; {kept}".rstrip("; ")) from error
        for sched in schedulers.values():
            sched.step()
        history["step"].append(index)
        for name, value in terms.items():
            history.setdefault(name, []).append(value)
        bar.set_postfix(loss=f"{terms['loss']:.4g}", refresh=False)

        done = index + 1
        if validate is not None and (done % validate_every == 0 or done == steps):
            history["validation"].append({"step": done, **_validate(model, validate)})
        if checkpoint is not None and (done % checkpoint_every == 0 or done == steps):
            save_checkpoint(checkpoint, model, optimizers, schedulers, step=done, history=history)
            now = time.perf_counter()  # a run killed later keeps the time it checkpointed
            add_wall_time(checkpoint, now - clock)
            clock = now
        if on_step is not None:
            on_step(index, terms)
    bar.close()
    return history


def _validate(model: nn.Module, validate) -> dict[str, float]:
    model.eval()
    try:
        with torch.no_grad():
            return {name: float(value) for name, value in validate(model).items()}
    finally:
        model.train()


def _named(obj, what: str) -> dict:
    if isinstance(obj, Mapping):
        return dict(obj)
    return {what: obj}


def _to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(item, device) for item in batch)
    if isinstance(batch, Mapping):
        return {key: _to_device(value, device) for key, value in batch.items()}
    return batch


# --- checkpoints ------------------------------------------------------------------------


def save_checkpoint(
    folder: str | os.PathLike,
    model: nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    schedulers: Mapping[str, Any],
    *,
    step: int,
    history: dict[str, list],
) -> None:
    """Write a training checkpoint into ``folder`` (see the module docstring)."""
    folder = Path(folder)
    weights_name = f"model-{step:08d}.safetensors"
    with atomic_path(folder / weights_name) as tmp:
        safetensors.torch.save_file(state_dict_on_cpu(model), str(tmp))
    state = {
        "step": step,
        "weights": weights_name,
        "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
        "schedulers": {name: sched.state_dict() for name, sched in schedulers.items()},
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "history": history,
    }
    with atomic_path(folder / STATE_FILE) as tmp:
        torch.save(state, tmp)
    for old in folder.glob("model-*.safetensors"):  # only now is the new pair complete
        if old.name != weights_name:
            old.unlink(missing_ok=True)


def load_checkpoint(
    folder: str | os.PathLike,
    model: nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    schedulers: Mapping[str, Any],
) -> tuple[int, dict[str, list]]:
    """Restore a checkpoint written by ``save_checkpoint``; return (step, history)."""
    folder = Path(folder)
    state = torch.load(folder / STATE_FILE, weights_only=True, map_location="cpu")
    weights = folder / state["weights"]
    if not weights.is_file():
        raise FileNotFoundError(f"{folder / STATE_FILE} names {weights}, which is missing")
    model.load_state_dict(safetensors.torch.load_file(str(weights)))
    for kind, objects in (("optimizers", optimizers), ("schedulers", schedulers)):
        if set(state[kind]) != set(objects):
            raise ValueError(
                f"{folder / STATE_FILE} holds {kind} {sorted(state[kind])}, "
                f"this run has {sorted(objects)}"
            )
        for name, obj in objects.items():
            obj.load_state_dict(state[kind][name])
    torch.set_rng_state(state["rng_cpu"])
    if state["rng_cuda"] and torch.cuda.is_available():  # as many GPUs as this machine has
        torch.cuda.set_rng_state_all(state["rng_cuda"][: torch.cuda.device_count()])
    return state["step"], state["history"]


# --- shipped models ---------------------------------------------------------------------


# --- runs of a recipe ---------------------------------------------------------------------


def wall_time(workdir: str | os.PathLike) -> float:
    """The training seconds recorded so far in ``workdir`` (0.0 before the first)."""
    path = Path(workdir) / WALL_TIME_FILE
    return json.loads(path.read_text(encoding="utf-8"))["seconds"] if path.is_file() else 0.0


def add_wall_time(workdir: str | os.PathLike, seconds: float) -> float:
    """Add this call's ``seconds`` to the run's total in ``workdir`` and return the total.

    A run resumed several times records its whole training time, not just the last call's.
    """
    total = wall_time(workdir) + seconds
    with atomic_path(Path(workdir) / WALL_TIME_FILE) as tmp:
        tmp.write_text(json.dumps({"seconds": total}), encoding="utf-8")
    return total
