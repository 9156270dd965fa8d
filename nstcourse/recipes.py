"""Runs of a recipe: from a frozen recipe dataclass to a course checkpoint.

Every checkpoint the course trains goes through ``run_recipe``, whichever track it belongs
to; a track's ``train_*`` function only says how to build its networks (a ``Run``) and
what to measure at the end. ``run_recipe`` owns the protocol:

1. check the arguments; lock the work folder for the whole run (a second run there is
   refused, ``training.lock_workdir``); check the folder: an old one must hold the same
   recipe and seed (``recipe.json``), so that the run resumes exactly, and a readable
   checkpoint; a checkpoint without ``recipe.json`` is refused;
2. seed torch (the initial weights) and build the run; only once that has succeeded (a
   mistyped style image fails here) does a new folder record the recipe and seed;
3. ``training.train``: checkpoints into the work folder, resumes from it bit-identically;
4. measure (the track's ``finish``), sum the wall time over every resume, and write OUT
   with ``checkpoints.save_model`` atomically. Its metadata, the same schema for every
   track: ``{"model", "class", "kwargs", "recipe": {<every field>, "name", "steps",
   "seed", "command", "torch", "device", "wall_time_s", "resumed_from_step", …},
   "metrics": {"train": {"<term>_mean_last_100": …, "validation": [...]}, …}, …}``.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from nstcourse.checkpoints import save_model
from nstcourse.files import atomic_path
from nstcourse.runmode import pick_device
from nstcourse.training import (
    STATE_FILE,
    Step,
    WorkdirError,
    add_wall_time,
    lock_workdir,
    read_state,
    sample_batches,
    train,
    wall_time,
    workdir_error,
)

RECIPE_FILE = "recipe.json"  # the recipe a work folder was started with


@dataclass
class Run:
    """What a track builds from a recipe: the network to ship and how to train it.

    Attributes:
        net: the network written to OUT.
        kwargs: the keyword arguments that rebuild it, ``type(net)(**kwargs)``.
        step: one update (``training.supervised_step``, or a GAN's step).
        optimizer: the optimizer(s) the step uses, checkpointed with the model.
        dataset: the training items; item i depends only on (seed, i).
        model: what is trained and checkpointed when it is more than ``net`` (a GAN's
            ``nn.ModuleDict`` of G and D); None: ``net``.
        scheduler: None, a learning-rate scheduler, or a dict of them.
        validate: ``validate(model) -> {metric: value}`` every ``validate_every`` steps.
        finish: ``finish(history) -> {"metrics": {...}, <other metadata>: ...}``, run in
            eval mode after training: the track's final measurements.
        info: facts about the recipe as it ran, added to the metadata's "recipe" (e.g.
            the number of training images, a loss weight resolved from None).
    """

    net: nn.Module
    kwargs: dict[str, Any]
    step: Step
    optimizer: torch.optim.Optimizer | Mapping[str, torch.optim.Optimizer]
    dataset: Dataset
    model: nn.Module | None = None
    scheduler: Any = None
    validate: Callable[[nn.Module], dict[str, float]] | None = None
    validate_every: int = 1000
    finish: Callable[[dict[str, list]], dict[str, Any]] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def run_recipe(
    name: str,
    recipe: Any,
    build: Callable[[Any, int, torch.device], Run],
    *,
    steps: int,
    out: str | os.PathLike,
    workdir: str | os.PathLike,
    command: str,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Train ``build(recipe, seed, device)`` for ``steps`` updates and write it to ``out``.

    Args:
        name: the model's name ("espcn", "johnson", …), stored in the metadata.
        recipe: a frozen recipe dataclass with at least ``batch_size``, ``lr`` and
            ``checkpoint_every``; all of its fields are stored.
        build: makes the ``Run`` (networks, data, step) from the recipe; called after
            ``torch.manual_seed(seed)``, so the initial weights follow the seed.
        steps: total updates (a resumed run counts those already done).
        out: the ``.safetensors`` file to write, atomically, at the end.
        workdir: the checkpoint folder; a run there is resumed (same recipe and seed;
            ``steps`` may grow).
        command: how ``out`` was made, as its caller tells it (the command line, or the
            Python call), stored in the metadata.
        seed: seeds the initial weights, the data and the batches.
        progress: show a progress bar.
        device: None picks CUDA, then MPS, then CPU.

    Returns:
        the metadata written into ``out`` plus "history", the ``training.train`` history
        (loss per step, validations), which is not stored.

    A Ctrl-C propagates; the checkpoint in ``workdir`` is complete and the same call
    resumes from it. A NaN loss raises ``FloatingPointError``, OUT untouched. A workdir in
    use by another run raises ``training.WorkdirBusy``; one holding another recipe, or a
    damaged checkpoint, ``training.WorkdirError`` (both ValueErrors) before any work.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not (isinstance(recipe.batch_size, int) and recipe.batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {recipe.batch_size!r}")
    if not recipe.lr > 0:
        raise ValueError(f"lr must be positive, got {recipe.lr}")
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"out={out}: the checkpoint must be a .safetensors file")
    workdir = Path(workdir)
    device = pick_device(device)
    with lock_workdir(workdir, command):
        return _run_locked(
            name, recipe, build, steps=steps, out=out, workdir=workdir, command=command,
            seed=seed, progress=progress, device=device,
        )  # fmt: skip


def _run_locked(
    name: str,
    recipe: Any,
    build: Callable[[Any, int, torch.device], Run],
    *,
    steps: int,
    out: Path,
    workdir: Path,
    command: str,
    seed: int,
    progress: bool,
    device: torch.device,
) -> dict[str, Any]:
    """``run_recipe`` once its arguments are checked and ``workdir`` is locked."""
    resumed_from = check_workdir(workdir, name, recipe, seed)
    start = time.perf_counter()
    torch.manual_seed(seed)  # the initial weights
    run = build(recipe, seed, device)
    record_recipe(workdir, name, recipe, seed)  # only now: the setup has succeeded
    add_wall_time(workdir, time.perf_counter() - start)  # the setup; train() adds its own
    history = train(
        run.model or run.net,
        run.step,
        sample_batches(run.dataset, batch_size=recipe.batch_size, seed=seed),
        steps=steps,
        optimizer=run.optimizer,
        scheduler=run.scheduler,
        validate=run.validate,
        validate_every=run.validate_every,
        checkpoint=workdir,
        checkpoint_every=recipe.checkpoint_every,
        progress=progress,
        device=device,
    )
    start = time.perf_counter()
    run.net.eval()
    report = dict(run.finish(history)) if run.finish is not None else {}
    metrics = {"train": train_summary(history), **report.pop("metrics", {})}
    total_seconds = add_wall_time(workdir, time.perf_counter() - start)
    metadata = {
        "model": name,
        **report,
        "recipe": {
            **jsonable(asdict(recipe)),
            **run.info,
            "name": name,
            "steps": steps,
            "seed": seed,
            "command": command,
            "torch": torch.__version__,
            "device": device_name(device),
            "wall_time_s": round(total_seconds, 1),
            "resumed_from_step": resumed_from,
        },
        "metrics": metrics,
    }
    save_model(run.net, out, kwargs=run.kwargs, metadata=metadata)
    return {"class": type(run.net).__name__, "kwargs": run.kwargs, **metadata, "history": history}


def train_summary(history: dict[str, list], last: int = 100) -> dict[str, Any]:
    """``{"<term>_mean_last_100": …}`` for every logged term, plus the validations."""
    terms = [key for key in history if key not in ("step", "validation") and history[key]]
    summary: dict[str, Any] = {
        f"{key}_mean_last_{last}": sum(history[key][-last:]) / len(history[key][-last:])
        for key in terms
    }
    if history.get("validation"):
        summary["validation"] = history["validation"]
    return summary


# --- the protocol's parts ----------------------------------------------------------------


def check_workdir(workdir: Path, name: str, recipe, seed: int) -> int:
    """Check, before any work, that this run can use ``workdir``; return the step of its
    checkpoint (0: none).

    An old folder must hold the same recipe and seed in ``recipe.json`` (``steps`` may
    differ; a field the folder predates counts as its default, what the code did before
    the field existed), and a readable checkpoint and training time. A checkpoint without
    ``recipe.json`` is refused: nothing says which recipe it continues, and resuming it
    with another would fail or, worse, mix two recipes. Raises ``WorkdirError``.
    """
    found = read_recipe(workdir)
    step = checkpoint_step(workdir)
    wall_time(workdir)  # a damaged wall_time.json is found now, not after the setup
    if found is None:
        if (workdir / STATE_FILE).is_file():
            raise workdir_error(
                workdir,
                f"workdir {workdir} holds a training checkpoint but no {RECIPE_FILE}, so "
                "it cannot be resumed with a known recipe",
            )
        return step
    wanted = recipe_record(name, recipe, seed)
    found = {**found, "recipe": with_defaults(found["recipe"], recipe)}
    if found != wanted:
        changed = sorted(
            key
            for key in {*found["recipe"], *wanted["recipe"]}
            if found["recipe"].get(key) != wanted["recipe"].get(key)
        )
        if found.get("name") != name or found.get("seed") != seed:
            changed = ["name/seed", *changed]
        raise WorkdirError(
            f"workdir {workdir} holds a run with another recipe (differs in "
            f"{', '.join(changed)}); resume it with the same settings, or use another "
            "work folder (or delete that folder to start over)"
        )
    return step


def recipe_record(name: str, recipe: Any, seed: int) -> dict[str, Any]:
    """What ``recipe.json`` holds: the model's name, the seed and every recipe field."""
    return {"name": name, "seed": seed, "recipe": jsonable(asdict(recipe))}


def read_recipe(workdir: Path) -> dict[str, Any] | None:
    """The record in ``workdir``'s ``recipe.json`` (None if there is none); a damaged file
    raises ``WorkdirError`` naming it."""
    path = workdir / RECIPE_FILE
    if not path.is_file():
        return None
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:  # not JSON, or not UTF-8
        raise workdir_error(workdir, f"{path} is damaged ({error})") from None
    if not (isinstance(found, dict) and isinstance(found.get("recipe"), dict)):
        problem = f'{path} is damaged (not {{"name": …, "seed": …, "recipe": {{…}}}})'
        raise workdir_error(workdir, problem)
    return found


def record_recipe(workdir: Path, name: str, recipe: Any, seed: int) -> None:
    """Write ``recipe.json`` into a new ``workdir`` (an old one keeps its own, checked by
    ``check_workdir``); called once the run's setup has succeeded."""
    path = workdir / RECIPE_FILE
    if not path.is_file():
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(recipe_record(name, recipe, seed), indent=1), "utf-8")


def checkpoint_step(workdir: Path) -> int:
    """The step of the training checkpoint in ``workdir``, 0 if there is none; a damaged
    ``train_state.pt`` raises ``WorkdirError`` naming it (``training.read_state``)."""
    if not (workdir / STATE_FILE).is_file():
        return 0
    return read_state(workdir)["step"]


def with_defaults(stored: Mapping[str, Any], recipe: Any) -> dict[str, Any]:
    """A stored recipe (JSON) with each field of ``recipe``'s dataclass that it lacks set to
    that field's default: what the code did before the field existed."""
    defaults = {f.name: f.default for f in fields(recipe) if f.default is not MISSING}
    return {**jsonable(defaults), **stored}


def jsonable(value):
    """Tuples -> lists, so a recipe compares equal to its JSON round trip."""
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [jsonable(item) for item in value]
    return value


def device_name(device: torch.device) -> str:
    """What trained a checkpoint, for its metadata: "cuda: NVIDIA H100 …", "cpu: x86_64, 2
    threads" or the device's name."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        cpu = platform.processor() or platform.machine()
        return f"cpu: {cpu}, {torch.get_num_threads()} threads"
    return str(device)
