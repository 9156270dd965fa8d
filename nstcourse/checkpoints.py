"""Course checkpoints: one ``.safetensors`` file per trained network, with its metadata.

``save_model`` writes the weights and a JSON record (the class, the keyword arguments that
rebuild it, the recipe and the measured metrics) atomically; ``load_model`` rebuilds the
network from it (strict: every key and shape), never unpickling anything;
``checkpoint_info`` reads the record alone.

A checkpoint may come from anyone, so nothing in it is trusted: the record is checked
against one schema (``check_metadata``) before it is used; the settings are checked
against the class's constructor, the network is first built on the ``meta`` device
(no memory) and every tensor name and shape compared with the file's header, and only
then built for real; NaN or infinite weights are refused. Each problem is a
``CheckpointError`` (a ValueError) naming the file. ``find_checkpoints_dir`` says where the
course's shipped checkpoints are. ``translate_state_dict`` loads another project's tensors
into one of our networks by an explicit key table (the reference checkpoints of both
tracks).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeGuard, TypeVar

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

# What a checkpoint that is damaged, foreign or crafted should do instead.
_WAY_OUT = "use a checkpoint written by nstcourse train-sr/train-style (or the course's own)"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: damaged, foreign or crafted. The message
    names the file and what is wrong with it."""


def _is_int(value: object) -> TypeGuard[int]:
    """An int that is not a bool (JSON's true is no number of filters)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_scalar(value: object) -> bool:
    """A JSON string, finite number (an integer within 64 bits, what torch takes for a
    size), bool or null: what a constructor setting may be."""
    if isinstance(value, float):
        return math.isfinite(value)
    if _is_int(value):
        return -(2**63) <= value < 2**63
    return value is None or isinstance(value, (str, int, bool))


def _shown(value: object) -> str:
    """``repr(value)``, cut to 60 characters: a crafted file may hold megabytes."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _field_problem(info: dict[str, Any]) -> str | None:
    """What is wrong with the first field that breaks the schema ("metadata field 'scale'
    is 'three', not ..."), or None."""
    for field in ("class", "kwargs"):
        if field not in info:
            return f"metadata field {field!r} is missing"
    if not (isinstance(info["class"], str) and info["class"].isidentifier()):
        return f"metadata field 'class' is {_shown(info['class'])}, not the name of a class"
    kwargs = info["kwargs"]
    if not isinstance(kwargs, dict):
        return f"metadata field 'kwargs' is {_shown(kwargs)}, not an object of settings"
    for key, value in kwargs.items():
        if not _is_scalar(value):
            return (
                f"setting {_shown(key)} in metadata field 'kwargs' is {_shown(value)}, not a "
                "string, finite number (an integer within 64 bits), bool or null"
            )
    if "scale" in info and not (_is_int(info["scale"]) and info["scale"] >= 2):
        return f"metadata field 'scale' is {_shown(info['scale'])}, not an integer >= 2"
    scales = info.get("scales", [2])
    if not (isinstance(scales, list) and scales and all(_is_int(s) and s >= 2 for s in scales)):
        return f"metadata field 'scales' is {_shown(scales)}, not a non-empty list of integers >= 2"
    return None


def check_metadata(info: object, path: str | os.PathLike) -> dict[str, Any]:
    """``info`` if it is a course checkpoint's record, else a CheckpointError naming
    ``path`` and the field.

    The schema: a JSON object; ``class`` a class name (an identifier); ``kwargs`` an
    object whose values are JSON scalars (the constructor's settings; integers within 64
    bits, no NaN or infinity); ``scale`` an int >= 2 and
    ``scales`` a non-empty list of them, where present. Other fields (recipe, metrics)
    are free-form.
    """
    if not isinstance(info, dict):
        raise CheckpointError(
            f"{path}: its metadata is a JSON {type(info).__name__}, not an object; {_WAY_OUT}"
        )
    problem = _field_problem(info)
    if problem is not None:
        raise CheckpointError(f"{path}: {problem}; {_WAY_OUT}")
    return info


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
    check_metadata(json.loads(text), path)  # never write a file that load_model refuses
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(
            state_dict_on_cpu(model), str(tmp), metadata={METADATA_KEY: text}
        )


def _open_error(path: str | os.PathLike, error: Exception) -> Exception:
    """What opening ``path`` with safetensors raised, as an error that names the file."""
    if isinstance(error, OSError):
        return type(error)(f"{path}: cannot read it ({error})")
    return CheckpointError(f"{path} is not a safetensors checkpoint ({error}); {_WAY_OUT}")


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata ``save_model`` stored in ``path``, checked by ``check_metadata``.

    Raises:
        CheckpointError: not a safetensors file (e.g. a pickle renamed), no or bad JSON
            metadata, or a field that breaks the schema; the message names the file.
        OSError: the file cannot be read.
    """
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            text = (f.metadata() or {}).get(METADATA_KEY)
    except (safetensors.SafetensorError, OSError) as error:
        raise _open_error(path, error) from error
    if text is None:
        raise CheckpointError(f"{path} has no nstcourse metadata: not written by save_model")
    try:
        info = json.loads(text)
    except (ValueError, RecursionError) as error:  # bad JSON, too many digits, too deep
        raise CheckpointError(
            f"{path}: its metadata is not valid JSON ({error}); {_WAY_OUT}"
        ) from error
    return check_metadata(info, path)


def tensor_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """The name and shape of every tensor in ``path``, read from its header alone."""
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            names = f.keys()  # safe_open is no mapping: iterating it is not defined
            return {name: tuple(f.get_slice(name).get_shape()) for name in names}
    except (safetensors.SafetensorError, OSError) as error:
        raise _open_error(path, error) from error


def check_tensors(
    path: str | os.PathLike, model: nn.Module, shapes: dict[str, tuple[int, ...]]
) -> None:
    """Every tensor of ``model.state_dict()`` in ``shapes`` (a file's header) with the same
    shape, and nothing else there; else a CheckpointError naming ``path`` listing (the
    first few of) the problems. ``model`` may live on the ``meta`` device."""
    what = type(model).__name__
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    problems = [
        f"{key}: the file has {shapes[key]}, the {what} needs {shape}"
        for key, shape in expected.items()
        if key in shapes and shapes[key] != shape
    ]
    missing, unused = sorted(set(expected) - set(shapes)), sorted(set(shapes) - set(expected))
    if missing:
        problems.append(f"missing from the file: {', '.join(missing[:5])}")
    if unused:
        problems.append(f"not in a {what}: {', '.join(unused[:5])}")
    if problems:
        shown = problems[:5] + ([f"… {len(problems) - 5} more"] if len(problems) > 5 else [])
        raise CheckpointError(f"{path} does not fit {what}:\n  " + "\n  ".join(shown))


def check_finite(path: str | os.PathLike, state: dict[str, torch.Tensor]) -> None:
    """A CheckpointError naming ``path`` and the tensors if any holds NaN or ±inf (a run
    that diverged, or a damaged file: the network would only output garbage)."""
    bad = [
        key
        for key, value in state.items()
        if value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]
    if bad:
        raise CheckpointError(
            f"{path}: {', '.join(bad[:5])} {'holds' if len(bad) == 1 else 'hold'} NaN or "
            "infinite weights (a training run that diverged, or a damaged file); retrain "
            "it or use another checkpoint"
        )


def _check_kwargs(cls: type, kwargs: dict[str, Any], path: str | os.PathLike) -> None:
    """The file's settings against ``cls``'s constructor: known keywords only, every
    required one given, and of the annotated type where that is int, float, str or bool."""
    parameters = inspect.signature(cls).parameters
    named = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        unknown = [
            key for key in kwargs if key not in parameters or parameters[key].kind not in named
        ]
        if unknown:
            raise CheckpointError(
                f"{path}: setting {_shown(unknown[0])} in metadata field 'kwargs' is not an "
                f"argument of {cls.__name__}; {_WAY_OUT}"
            )
    required = [
        name
        for name, p in parameters.items()
        if p.kind in named and p.default is inspect.Parameter.empty and name not in kwargs
    ]
    if required:
        raise CheckpointError(
            f"{path}: metadata field 'kwargs' lacks {required[0]!r}, which {cls.__name__} "
            f"needs; {_WAY_OUT}"
        )
    for key, value in kwargs.items():
        expected = _annotated_type(cls, key)
        if expected is not None and not _has_type(value, expected):
            raise CheckpointError(
                f"{path}: setting {_shown(key)} in metadata field 'kwargs' is {_shown(value)}, not "
                f"{'an' if expected is int else 'a'} {expected.__name__}; {_WAY_OUT}"
            )


def _annotated_type(cls: type, name: str) -> type | None:
    """int, float, str or bool if that is how ``cls.__init__`` annotates ``name``."""
    try:
        hints = typing.get_type_hints(cls.__init__)  # type: ignore[misc]
    except (NameError, TypeError):  # an annotation that cannot be evaluated here
        return None
    hint = hints.get(name)
    return hint if hint in (int, float, str, bool) else None


def _has_type(value: object, expected: type) -> bool:
    """``value`` fits an argument annotated ``expected`` (an int fits float; bool fits
    neither int nor float)."""
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return _is_int(value)
    return isinstance(value, expected)


@contextmanager
def _parameter_budget(limit: int, path: str | os.PathLike, cls: type) -> Iterator[None]:
    """Stop building a network as soon as it registers more than ``limit`` parameter
    tensors: a file with ``limit`` tensors cannot hold it, and settings such as a million
    layers would take minutes (and memory for the modules) even on the ``meta`` device."""
    seen: set[tuple[int, str]] = set()
    owners: list[nn.Module] = []  # kept alive so that no id() is reused while counting

    def count(module: nn.Module, name: str, param: nn.Parameter) -> None:
        owners.append(module)
        seen.add((id(module), name))
        if len(seen) > limit:
            raise CheckpointError(
                f"{path}: the settings in its metadata make a {cls.__name__} with more "
                f"parameter tensors than the {limit} tensors in the file; {_WAY_OUT}"
            )

    handle = torch.nn.modules.module.register_module_parameter_registration_hook(count)
    try:
        yield
    finally:
        handle.remove()


def _build_checked(
    cls: type[M], info: dict[str, Any], path: str | os.PathLike, shapes: dict[str, tuple[int, ...]]
) -> M:
    """``cls(**kwargs)`` from the file's metadata, built for real only after a skeleton on
    the ``meta`` device (no memory) has matched every tensor name and shape in the file."""
    if cls.__name__ != info["class"]:
        raise CheckpointError(f"{path} holds a {info['class']}, not a {cls.__name__}")
    kwargs = info["kwargs"]
    _check_kwargs(cls, kwargs, path)
    with torch.device("meta"), _parameter_budget(len(shapes), path, cls):
        try:
            skeleton = cls(**kwargs)
        except CheckpointError:
            raise
        except (ValueError, RuntimeError, OverflowError) as error:  # the class's own checks
            raise CheckpointError(
                f"{path}: the settings in its metadata field 'kwargs' do not make a "
                f"{cls.__name__} ({str(error)[:200]}); {_WAY_OUT}"
            ) from error
    check_tensors(path, skeleton, shapes)
    return cls(**kwargs)


def load_model(
    cls_or_model: type[M] | M,
    path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
) -> M:
    """Load a ``save_model`` file into a new ``cls(**kwargs)`` or into a given model.

    Loading is strict (every key, every shape) and checked before any memory is spent:
    the metadata against the schema, the settings against the constructor, the tensor
    names and shapes (from the header) against a ``meta``-device skeleton; then the
    weights must be finite. Returns the model in eval mode on ``device`` (None: CUDA,
    then MPS, then CPU). Read the metadata with ``read_metadata``.

    Raises:
        CheckpointError: (a ValueError) the file is damaged, foreign or crafted, holds
            another class, or does not fit; the message names it.
    """
    info = read_metadata(path)
    shapes = tensor_shapes(path)
    if isinstance(cls_or_model, nn.Module):
        model = cls_or_model
        check_tensors(path, model, shapes)
    else:
        model = _build_checked(cls_or_model, info, path, shapes)
    try:
        state = safetensors.torch.load_file(str(path))
    except safetensors.SafetensorError as error:  # e.g. truncated after its header
        raise _open_error(path, error) from error
    check_finite(path, state)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:  # e.g. a dtype that cannot be copied in
        raise CheckpointError(f"{path} does not fit {type(model).__name__}: {error}") from error
    return model.to(pick_device(device)).eval()


CHECKPOINTS_DIR_ENV = "NSTCOURSE_CHECKPOINTS_DIR"


REPO_CHECKPOINTS_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
# An installed wheel's copy of them (pyproject.toml, [tool.hatch.build.targets.wheel]).
PACKAGE_CHECKPOINTS_DIR = Path(__file__).resolve().parent / "shipped_checkpoints"


def _in_checkout() -> bool:
    """This package is the ``nstcourse/`` folder of a checkout (or an editable install of
    one): beside it are the checkout's ``pyproject.toml`` and ``checkpoints/``. An installed
    package has site-packages there, where a ``checkpoints`` folder would be another's."""
    repo = REPO_CHECKPOINTS_DIR.parent
    return (repo / "pyproject.toml").is_file() and REPO_CHECKPOINTS_DIR.is_dir()


def find_checkpoints_dir(checkpoints_dir: str | os.PathLike | None = None) -> Path:
    """Where the course checkpoints are: the argument, else ``$NSTCOURSE_CHECKPOINTS_DIR``,
    else the ``checkpoints/`` folder of the checkout this package is in (where they are
    trained and updated), else the copy an installed package carries."""
    if checkpoints_dir is not None:
        return Path(checkpoints_dir).expanduser()
    value = os.environ.get(CHECKPOINTS_DIR_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    return REPO_CHECKPOINTS_DIR if _in_checkout() else PACKAGE_CHECKPOINTS_DIR


def checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """The checked metadata of a checkpoint (``read_metadata``): a CheckpointError naming
    the file if it is no safetensors file, has no metadata, or breaks the schema."""
    return read_metadata(path)
