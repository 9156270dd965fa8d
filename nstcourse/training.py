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
  and the weights file the previous ``train_state.pt`` named (that one only) is deleted
  after the new ``train_state.pt`` is in place, so a crash at any moment leaves a
  complete, consistent checkpoint. A damaged or foreign ``train_state.pt`` is refused
  with a ``WorkdirError`` naming it (``read_state``); ``lock_workdir`` keeps a second run
  out of a folder in use (``recipes.run_recipe`` holds it for a whole run).
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

import contextlib
import json
import math
import os
import re
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn
from tqdm.auto import tqdm

from nstcourse.checkpoints import state_dict_on_cpu
from nstcourse.files import atomic_path
from nstcourse.runmode import native_bf16, pick_device

if sys.platform != "win32":
    import fcntl

STATE_FILE = "train_state.pt"
WALL_TIME_FILE = "wall_time.json"  # seconds spent training, summed over resumes
LOCK_FILE = "run.lock"  # locked while a run uses the folder; names its process
WEIGHTS_NAME = re.compile(r"model-\d{8,}\.safetensors")  # what save_checkpoint writes
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
        history = {"step": [], "loss": [], "validation": [], **history}  # a minimal one too

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
    """Write a training checkpoint into ``folder`` (see the module docstring).

    The only weights file deleted is the one the previous ``train_state.pt`` named, once
    the new state is in place: a file this run did not write is never touched.
    """
    folder = Path(folder)
    previous = _named_weights(folder)
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
    if previous is not None and previous != weights_name:  # only now is the new pair complete
        (folder / previous).unlink(missing_ok=True)


def _named_weights(folder: Path) -> str | None:
    """The weights file named by ``folder``'s ``train_state.pt``; None without a readable one."""
    if not (folder / STATE_FILE).is_file():
        return None
    try:
        return read_state(folder)["weights"]
    except WorkdirError:  # nothing to delete: the damaged state is replaced
        return None


def load_checkpoint(
    folder: str | os.PathLike,
    model: nn.Module,
    optimizers: Mapping[str, torch.optim.Optimizer],
    schedulers: Mapping[str, Any],
) -> tuple[int, dict[str, list]]:
    """Restore a checkpoint written by ``save_checkpoint``; return (step, history).

    A damaged or foreign checkpoint (unreadable, missing weights, weights or optimizer
    state that do not fit this run) raises ``WorkdirError`` naming the file.
    """
    folder = Path(folder)
    state = read_state(folder)
    weights = folder / state["weights"]
    if not weights.is_file():
        raise workdir_error(folder, f"{folder / STATE_FILE} names {weights}, which is missing")
    try:
        model.load_state_dict(safetensors.torch.load_file(str(weights)))
    except (safetensors.SafetensorError, RuntimeError) as error:
        problem = f"{weights} does not fit this run's model ({_short(error)})"
        raise workdir_error(folder, problem) from None
    for kind, objects in (("optimizers", optimizers), ("schedulers", schedulers)):
        if set(state[kind]) != set(objects):
            raise workdir_error(
                folder,
                f"{folder / STATE_FILE} holds {kind} {sorted(state[kind])}, "
                f"this run has {sorted(objects)}",
            )
    try:
        _restore_state(state, optimizers, schedulers)
    except (ValueError, KeyError, RuntimeError) as error:
        problem = f"{folder / STATE_FILE} does not fit this run ({_short(error)})"
        raise workdir_error(folder, problem) from None
    return state["step"], state["history"]


def _short(error: Exception, limit: int = 200) -> str:
    """``error``'s message on one line, at most ``limit`` characters."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _restore_state(
    state: dict[str, Any],
    optimizers: Mapping[str, torch.optim.Optimizer],
    schedulers: Mapping[str, Any],
) -> None:
    """Load the optimizers, schedulers and RNGs of a checked ``state`` (``read_state``)."""
    for kind, objects in (("optimizers", optimizers), ("schedulers", schedulers)):
        for name, obj in objects.items():
            obj.load_state_dict(state[kind][name])
    torch.set_rng_state(state["rng_cpu"])
    if state["rng_cuda"] and torch.cuda.is_available():  # as many GPUs as this machine has
        torch.cuda.set_rng_state_all(state["rng_cuda"][: torch.cuda.device_count()])


# --- work folders ---------------------------------------------------------------------------


class WorkdirError(ValueError):
    """A training work folder that cannot be used as it is: damaged, foreign or busy."""


def workdir_error(folder: str | os.PathLike, problem: str) -> WorkdirError:
    """A ``WorkdirError`` saying ``problem`` and the ways out, for ``folder``."""
    return WorkdirError(
        f"{problem}; use another work folder (--workdir), or delete {folder} to start over"
    )


_STATE_TYPES: dict[str, type] = {
    "step": int,
    "weights": str,
    "optimizers": dict,
    "schedulers": dict,
    "rng_cpu": torch.Tensor,
    "rng_cuda": list,
    "history": dict,
}  # what save_checkpoint writes into train_state.pt


def read_state(folder: str | os.PathLike) -> dict[str, Any]:
    """The contents of ``folder``'s ``train_state.pt``, checked key by key.

    A file that is truncated, empty, not a torch file, a pickle of anything but plain
    data (``weights_only``: nothing is executed) or a dict without the keys and types
    ``save_checkpoint`` writes raises ``WorkdirError`` naming it. An unreadable file (no
    permission) raises the ``OSError``.
    """
    path = Path(folder) / STATE_FILE
    try:
        with warnings.catch_warnings():  # torch warns of the pickle protocol of a foreign file
            warnings.simplefilter("ignore")
            state = torch.load(path, weights_only=True, map_location="cpu")
    except OSError:
        raise
    except Exception:  # any other failure comes from the bytes of the file
        # torch's own message would advise weights_only=False, which runs the pickle
        damaged = f"{path} is damaged or not a training checkpoint (truncated, or another file)"
        raise workdir_error(folder, damaged) from None
    problem = _state_problem(state)
    if problem is not None:
        raise workdir_error(folder, f"{path} is not a training checkpoint: {problem}")
    return state


def _state_problem(state: Any) -> str | None:
    """What is wrong with a loaded ``train_state.pt``, or None."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a dict"
    missing = [key for key in _STATE_TYPES if key not in state]
    if missing:
        return f"it has no {', '.join(map(repr, missing))}"
    for key, kind in _STATE_TYPES.items():
        value = state[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"{key!r} is {type(value).__name__}, expected {kind.__name__}"
    if state["step"] < 1:
        return f"'step' is {state['step']}"
    if not WEIGHTS_NAME.fullmatch(state["weights"]):
        return f"'weights' is {state['weights']!r}, not a model-<step>.safetensors beside it"
    if state["rng_cpu"].dtype != torch.uint8:
        return f"'rng_cpu' is a {state['rng_cpu'].dtype} tensor, not a uint8 one"
    if not all(isinstance(value, list) for value in state["history"].values()):
        return "'history' holds something other than lists"
    return None


# --- training time ----------------------------------------------------------------------


def wall_time(workdir: str | os.PathLike) -> float:
    """The training seconds recorded so far in ``workdir`` (0.0 before the first).

    A damaged ``wall_time.json`` raises ``WorkdirError`` naming it.
    """
    path = Path(workdir) / WALL_TIME_FILE
    if not path.is_file():
        return 0.0
    try:
        seconds = json.loads(path.read_text(encoding="utf-8"))["seconds"]
    except (ValueError, KeyError, TypeError):  # not JSON, or not {"seconds": …}
        seconds = None
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        problem = (
            f'{path} is damaged (it should hold {{"seconds": <training time>}}); delete that '
            "file to restart the recorded time from 0"
        )
        raise workdir_error(workdir, problem)
    return float(seconds)


def add_wall_time(workdir: str | os.PathLike, seconds: float) -> float:
    """Add this call's ``seconds`` to the run's total in ``workdir`` and return the total.

    A run resumed several times records its whole training time, not just the last call's.
    """
    total = wall_time(workdir) + seconds
    with atomic_path(Path(workdir) / WALL_TIME_FILE) as tmp:
        tmp.write_text(json.dumps({"seconds": total}), encoding="utf-8")
    return total


@contextlib.contextmanager
def lock_workdir(workdir: str | os.PathLike, command: str) -> Iterator[None]:
    """Hold an exclusive lock on the training folder ``workdir`` (made if missing).

    Two runs sharing a folder would count their time twice and could delete each other's
    weights; so a second run raises ``WorkdirBusy`` at once, naming the process that holds
    the lock (its pid, host and ``command`` are written into ``run.lock``). The lock is an
    ``flock``: it ends with the ``with`` block, on an exception or Ctrl-C, and with the
    process itself if it is killed; the file may stay and blocks nothing. A folder this
    call made that holds nothing else when the block ends (the run failed before it
    recorded anything) is removed again, so that a mistyped command leaves no litter.
    """
    folder = Path(workdir)
    if folder.exists() and not folder.is_dir():
        raise WorkdirError(f"workdir {folder} is a file; give a folder for the checkpoints")
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        _take_lock(fd, folder)
        try:
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command}
            os.write(fd, json.dumps(holder).encode())
            yield
        finally:
            os.ftruncate(fd, 0)  # still locked: nobody reads a stale holder
            if made and [p.name for p in folder.iterdir()] == [LOCK_FILE]:
                (folder / LOCK_FILE).unlink()  # while locked: no other run can be inside
                folder.rmdir()
    finally:
        os.close(fd)


class WorkdirBusy(WorkdirError):
    """Another process is running in the training folder (``lock_workdir``)."""


def _take_lock(fd: int, folder: Path) -> None:
    """Lock ``fd`` (``folder``'s lock file) without waiting; ``WorkdirBusy`` if held."""
    if sys.platform == "win32":  # msvcrt.locking is untested here: no lock on Windows
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise WorkdirBusy(
            f"workdir {folder} is in use by {_holder(folder)}; wait for that run to end "
            "(or stop it), or use another work folder (--workdir)"
        ) from None
    except OSError as error:  # a file system without locks (some network mounts)
        warnings.warn(
            f"cannot lock {folder / LOCK_FILE} ({error.strerror}); make sure that no other "
            "run uses this folder at the same time",
            stacklevel=3,
        )
    os.ftruncate(fd, 0)


def _holder(folder: Path) -> str:
    """Who holds ``folder``'s lock, as its lock file says: "process 123 on host (cmd)"."""
    try:
        holder = json.loads((folder / LOCK_FILE).read_text(encoding="utf-8"))
        return f"process {holder['pid']} on {holder['host']} ({holder['command']})"
    except (OSError, ValueError, KeyError, TypeError):  # not written yet, or foreign
        return "another process"
