"""A small training loop shared by the super-resolution and fast style networks.

``train`` runs ``steps`` optimizer updates with a progress bar, validates now and then,
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
  optimizer applies it; the last good checkpoint is left as it was.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn
from tqdm.auto import tqdm

from nstcourse.files import atomic_path
from nstcourse.runmode import pick_device

STATE_FILE = "train_state.pt"
RECIPE_FILE = "recipe.json"  # the recipe a work folder was started with
WALL_TIME_FILE = "wall_time.json"  # seconds spent training, summed over resumes
METADATA_KEY = "nstcourse"
PRECISIONS = ("float32", "bfloat16")  # train(precision=...)


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


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None,
    batches: Callable[[int], Any],
    *,
    steps: int,
    optimizer: torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer],
    scheduler=None,
    clip_grad: float | AdjustableGradClip | None = None,
    validate: Callable[[nn.Module], dict[str, float]] | None = None,
    validate_every: int = 1000,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1000,
    resume: bool = True,
    progress: bool = True,
    device: str | torch.device | None = None,
    update: Callable[[Any], dict[str, float]] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    precision: str = "float32",
) -> dict[str, list]:
    """Train ``model`` for ``steps`` updates; return the history.

    Args:
        model: the network (for a GAN, an ``nn.ModuleDict`` of all its networks).
        loss_fn: ``loss_fn(model, batch) -> scalar tensor``; the loop does zero_grad,
            backward, clipping and ``optimizer.step()``. None when ``update`` is given.
        batches: ``batches(step) -> batch`` for step 0, 1, ...; it must depend on the step
            only (see ``sample_batches``). Tensors in the batch (alone, or in a tuple, list
            or dict) are moved to the device.
        steps: total number of updates (a resumed run counts the ones already done).
        optimizer: an optimizer, or a dict of them (a GAN's ``{"G": ..., "D": ...}``).
        scheduler: None, a learning-rate scheduler, or a dict of them; stepped once per
            update.
        clip_grad: None; a float: clip the gradients' global L2 norm to it; or
            ``AdjustableGradClip(theta)``: VDSR's clipping to [-theta/lr, theta/lr].
        validate: ``validate(model) -> {"psnr": ...}``, run in eval mode without
            gradients every ``validate_every`` steps and after the last.
        checkpoint: a folder for the checkpoint, or None for none; written every
            ``checkpoint_every`` steps and after the last. Each checkpoint also adds the
            seconds since the previous one to the folder's training time
            (``add_wall_time``), so that a killed run keeps the time it checkpointed.
        resume: continue from the checkpoint in that folder if there is one.
        progress: show a tqdm progress bar with the loss.
        device: None picks CUDA, then MPS, then CPU.
        update: instead of ``loss_fn``, a function doing one whole update,
            ``update(batch) -> {"loss": float, ...}`` (e.g. ``srgan.SRGANStep``).
        on_step: ``on_step(step, terms)`` after each step (and after any checkpoint of
            that step); for logging, or for tests that interrupt a run.
        precision: "float32", or "bfloat16": mixed precision, ``loss_fn`` runs under
            ``torch.autocast`` (convolutions in bfloat16, losses and the weights and
            optimizer state in float32). 2.2-3.3x faster on a CPU with native bfloat16
            (``runmode.native_bf16``). Unlike float16, bfloat16 needs no loss scaling.

    Returns:
        ``{"step": [...], "loss": [...], <other terms>: [...], "validation": [{"step": k,
        **metrics}, ...]}``, one entry per step (validation: per validation).
    """
    if (loss_fn is None) == (update is None):
        raise ValueError("give exactly one of loss_fn (a loss to minimise) or update")
    if clip_grad is not None and update is not None:
        raise ValueError("clip_grad works with loss_fn only; an update function clips itself")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; use one of {PRECISIONS}")
    if precision != "float32" and update is not None:
        raise ValueError("precision='bfloat16' works with loss_fn only, not with update")
    if isinstance(clip_grad, (int, float)) and not clip_grad > 0:
        raise ValueError(f"clip_grad={clip_grad}: the maximum norm must be positive")
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
    for step in bar:
        batch = _to_device(batches(step), device)
        try:
            if update is not None:
                terms = update(batch)
            else:
                with torch.autocast(device.type, torch.bfloat16, precision == "bfloat16"):
                    loss = loss_fn(model, batch)
                terms = _supervised_update(model, loss, optimizers, clip_grad)
            bad = {name: value for name, value in terms.items() if not math.isfinite(value)}
            if bad:
                raise FloatingPointError(f"non-finite {bad}")
        except FloatingPointError as error:
            kept = f"the last good checkpoint in {checkpoint} is kept" if checkpoint else ""
            raise FloatingPointError(f"step {step}: {error}; {kept}".rstrip("; ")) from error
        for sched in schedulers.values():
            sched.step()
        history["step"].append(step)
        for name, value in terms.items():
            history.setdefault(name, []).append(value)
        bar.set_postfix(loss=f"{terms['loss']:.4g}", refresh=False)

        done = step + 1
        if validate is not None and (done % validate_every == 0 or done == steps):
            history["validation"].append({"step": done, **_validate(model, validate)})
        if checkpoint is not None and (done % checkpoint_every == 0 or done == steps):
            save_checkpoint(checkpoint, model, optimizers, schedulers, step=done, history=history)
            now = time.perf_counter()  # a run killed later keeps the time it checkpointed
            add_wall_time(checkpoint, now - clock)
            clock = now
        if on_step is not None:
            on_step(step, terms)
    bar.close()
    return history


def _supervised_update(model, loss, optimizers, clip_grad) -> dict[str, float]:
    (optimizer,) = optimizers.values()  # a loss_fn has exactly one optimizer
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss is {loss.item()}")  # before it reaches the weights
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if isinstance(clip_grad, AdjustableGradClip):
        clip_grad(optimizer)
    elif clip_grad is not None:
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    optimizer.step()
    return {"loss": loss.item()}


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
        safetensors.torch.save_file(_cpu_state(model), str(tmp))
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
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    return state["step"], state["history"]


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}


# --- shipped models ---------------------------------------------------------------------


def save_model(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    kwargs: dict[str, Any],
    metadata: dict[str, Any] | None = None,
) -> None:
    """Save a trained model as safetensors with JSON metadata, atomically.

    Args:
        model: the network.
        path: the ``.safetensors`` file.
        kwargs: the keyword arguments that rebuild it, e.g. ``{"scale": 3}`` for ESPCN.
        metadata: anything else worth keeping, e.g. ``{"scale": 3, "recipe": {...},
            "metrics": {...}}`` (must be JSON-serialisable).
    """
    info = {"class": type(model).__name__, "kwargs": kwargs, **(metadata or {})}
    text = json.dumps(info)  # fails here, before writing, if not serialisable
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(_cpu_state(model), str(tmp), metadata={METADATA_KEY: text})


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata ``save_model`` stored in ``path``."""
    with safetensors.safe_open(str(path), framework="pt") as f:
        text = (f.metadata() or {}).get(METADATA_KEY)
    if text is None:
        raise ValueError(f"{path} has no nstcourse metadata: not written by save_model")
    return json.loads(text)


def load_model(
    cls_or_model: type[nn.Module] | nn.Module,
    path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
) -> nn.Module:
    """Load a ``save_model`` file into a new ``cls(**kwargs)`` or into a given model.

    Loading is strict (every key, every shape). Returns the model in eval mode on
    ``device`` (None: CUDA, then MPS, then CPU). Read the metadata with ``read_metadata``.
    """
    info = read_metadata(path)
    if isinstance(cls_or_model, nn.Module):
        model = cls_or_model
    else:
        if cls_or_model.__name__ != info["class"]:
            raise ValueError(f"{path} holds a {info['class']}, not a {cls_or_model.__name__}")
        model = cls_or_model(**info["kwargs"])
    try:
        model.load_state_dict(safetensors.torch.load_file(str(path)))
    except RuntimeError as error:
        raise ValueError(f"{path} does not fit {type(model).__name__}: {error}") from error
    return model.to(pick_device(device)).eval()


# --- runs of a recipe ---------------------------------------------------------------------


def check_workdir(workdir: Path, name: str, recipe, seed: int) -> None:
    """A new workdir gets recipe.json; an old one must hold the same recipe (except steps)."""
    wanted = {"name": name, "seed": seed, "recipe": jsonable(asdict(recipe))}
    path = workdir / RECIPE_FILE
    if path.is_file():
        found = json.loads(path.read_text(encoding="utf-8"))
        if found != wanted:
            changed = sorted(
                key
                for key in {*found.get("recipe", {}), *wanted["recipe"]}
                if found.get("recipe", {}).get(key) != wanted["recipe"].get(key)
            )
            if found.get("name") != name or found.get("seed") != seed:
                changed = ["name/seed", *changed]
            raise ValueError(
                f"workdir {workdir} holds a run with another recipe (differs in "
                f"{', '.join(changed)}); resume it with the same settings, or use another "
                "--workdir (or delete that folder to start over)"
            )
        return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(wanted, indent=1), encoding="utf-8")


def checkpoint_step(workdir: Path) -> int:
    state = workdir / STATE_FILE
    if not state.is_file():
        return 0
    return int(torch.load(state, weights_only=True, map_location="cpu")["step"])


def jsonable(value):
    """Tuples -> lists, so a recipe compares equal to its JSON round trip."""
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [jsonable(item) for item in value]
    return value


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.getdevice_name(device)}"
    if device.type == "cpu":
        cpu = platform.processor() or platform.machine()
        return f"cpu: {cpu}, {torch.get_num_threads()} threads"
    return str(device)


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
