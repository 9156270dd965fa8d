"""Course checkpoints: one ``.safetensors`` file per trained network, with its metadata.

``save_model`` writes the weights and a JSON record (the class, the keyword arguments that
rebuild it, the recipe and the measured metrics) atomically; ``load_model`` rebuilds the
network from it (strict: every key and shape), never unpickling anything;
``checkpoint_info`` reads the record alone. ``find_checkpoints_dir`` says where the
course's shipped checkpoints are. ``translate_state_dict`` loads another project's tensors
into one of our networks by an explicit key table (the reference checkpoints of both
tracks).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

import safetensors
import safetensors.torch
import torch
from torch import nn

from nstcourse.files import atomic_path
from nstcourse.runmode import pick_device
from nstcourse.vgg_weights import WeightsError

M = TypeVar("M", bound=nn.Module)


def translate_state_dict(
    theirs: dict[str, torch.Tensor],
    ours: dict[str, torch.Tensor],
    keys: dict[str, str],
    *,
    path: Path,
    what: str,
) -> dict[str, torch.Tensor]:
    """Another project's tensors under our names, by an explicit key table {ours: theirs}.

    Every key of ``ours`` must be in the table, every tensor of the file used and every
    shape right; otherwise one WeightsError naming ``path`` lists all the problems.
    """
    problems = []
    if set(keys) != set(ours):
        problems.append(f"key table does not match {what}: {set(keys) ^ set(ours)}")
    unused = set(theirs) - set(keys.values())
    missing = set(keys.values()) - set(theirs)
    if unused:
        problems.append(f"keys in the file that were not used: {sorted(unused)}")
    if missing:
        problems.append(f"keys missing from the file: {sorted(missing)}")
    for our_key, their_key in keys.items():
        if their_key not in theirs or our_key not in ours:
            continue
        if theirs[their_key].shape != ours[our_key].shape:
            problems.append(
                f"{their_key} has shape {tuple(theirs[their_key].shape)}, "
                f"{our_key} needs {tuple(ours[our_key].shape)}"
            )
    if problems:
        raise WeightsError(f"{path} does not fit {what}:\n  " + "\n  ".join(problems))
    return {our_key: theirs[their_key] for our_key, their_key in keys.items()}


METADATA_KEY = "nstcourse"


def state_dict_on_cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors, detached, contiguous and on the CPU, as safetensors wants them."""
    return {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}


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
        safetensors.torch.save_file(
            state_dict_on_cpu(model), str(tmp), metadata={METADATA_KEY: text}
        )


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata ``save_model`` stored in ``path``."""
    with safetensors.safe_open(str(path), framework="pt") as f:
        text = (f.metadata() or {}).get(METADATA_KEY)
    if text is None:
        raise ValueError(f"{path} has no nstcourse metadata: not written by save_model")
    return json.loads(text)


def load_model(
    cls_or_model: type[M] | M,
    path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
) -> M:
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


CHECKPOINTS_DIR_ENV = "NSTCOURSE_CHECKPOINTS_DIR"


REPO_CHECKPOINTS_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


def find_checkpoints_dir(checkpoints_dir: str | os.PathLike | None = None) -> Path:
    """Where the course checkpoints are: the argument, else ``$NSTCOURSE_CHECKPOINTS_DIR``,
    else the ``checkpoints/`` folder of the repository checkout this package is in."""
    if checkpoints_dir is not None:
        return Path(checkpoints_dir).expanduser()
    value = os.environ.get(CHECKPOINTS_DIR_ENV, "").strip()
    return Path(value).expanduser() if value else REPO_CHECKPOINTS_DIR


def checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a checkpoint, or a ValueError naming the file if it has none."""
    try:
        return read_metadata(path)
    except ValueError:
        raise
    except Exception as error:  # safetensors raises its own error type on a bad header
        raise ValueError(f"{path} is not a safetensors checkpoint ({error})") from error
