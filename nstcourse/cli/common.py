"""What every ``nstcourse`` command shares: argument types, checks of devices and output
paths, the folder loop, the training runner, and the map from errors to exit codes.

Exit codes, the same for every command: 0 done; 1 the work failed (a NaN loss, out of
memory) or some images in a folder failed; 2 bad input, found before any work; 130
interrupted (Ctrl-C), 143 terminated (SIGTERM, handled as Ctrl-C is; 128 + the signal's
number, as a shell reports it). Outputs are written atomically: after a failure, Ctrl-C
or SIGTERM there is no partial file, and an older one is left as it was.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from nstcourse.images import SAVE_FORMATS
from nstcourse.vgg_weights import WeightsError

# Larger is beyond any machine the course targets (at 8192² px relu1_1 alone is 17 GB of
# float32), so it is refused up front instead of after minutes of loading and an OOM.
MAX_SIDE = 8192


class UsageError(ValueError):
    """Bad input found before any work: exit 2."""


# ---------------------------------------------------------------- argument types


def items(text: str) -> list[str]:
    """'a,b,c' → ['a', 'b', 'c']; an empty item is an error."""
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty item; write e.g. 'a,b,c'")
    return parts


def number(text: str, kind: type, low: float, high: float = math.inf) -> float:
    """``kind(text)`` within [low, high], or an ArgumentTypeError naming the text."""
    try:
        value = kind(text)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not (low <= value <= high and math.isfinite(value)):  # also refuses nan
        bound = f"at least {low:g}" if high == math.inf else f"from {low:g} to {high:g}"
        raise argparse.ArgumentTypeError(f"{text!r} must be {bound}")
    return value


def positive(text: str) -> float:
    value = number(text, float, 0.0)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def count(text: str) -> int:
    """A whole number ≥ 1 (steps, batch size, tile size)."""
    return int(number(text, int, 1))


def side(text: str) -> int:
    """An image side in pixels, 1 … MAX_SIDE."""
    return int(number(text, int, 1, MAX_SIDE))


def weight(text: str) -> float:
    """A loss or mixing weight ≥ 0."""
    return number(text, float, 0.0)


def normalised(weights: Sequence[float] | None, n: int, option: str) -> list[float]:
    """``n`` weights divided by their sum (None: equal weights). A sum that overflows to
    infinity is a UsageError: dividing by it would silently give all zeros."""
    if weights is None:
        return [1.0 / n] * n
    if len(weights) != n:
        raise UsageError(f"{option}: got {len(weights)} weights for {n} style images")
    total = sum(weights)
    if not total > 0:
        raise UsageError(f"{option}: the weights must not all be 0")
    if not math.isfinite(total):
        raise UsageError(
            f"{option}: the weights add up to more than the largest float; only their "
            "ratios matter, so give smaller ones (e.g. 0.7 and 0.3)"
        )
    return [w / total for w in weights]


# ---------------------------------------------------------------- checks


def check_device(name: str | None) -> torch.device | None:
    """``--device NAME`` as a torch.device, or a UsageError if it is not here."""
    if name is None:
        return None
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r}: not a device; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: {torch.cuda.device_count()} CUDA device(s) here")
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps is not None and mps.is_available()):
        raise UsageError(f"--device {name}: Apple's MPS is not available here")
    if device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {name}: use cpu, cuda, cuda:N or mps")
    return device


def check_output(out: Path, inputs: Sequence[Path]) -> None:
    """OUT must have an image suffix, be no folder and no input, and be writable
    (``check_writable``)."""
    if out.suffix.lower() not in SAVE_FORMATS:
        raise UsageError(f"-o {out}: unknown image suffix; use one of {' '.join(SAVE_FORMATS)}")
    check_writable(out)
    if any(path.exists() and out.resolve() == path.resolve() for path in inputs):
        raise UsageError(f"-o {out} is one of the input images; choose another name")


def check_writable(out: Path, option: str = "-o", *, folder: bool = False) -> None:
    """Raise a UsageError naming ``option OUT`` unless OUT can be written: OUT is a file
    name (or, with ``folder``, a folder), every name still to be created fits the file
    system, and the nearest existing folder above it is a folder we may write in.

    Checked before any work, so that a bad OUT is not found only after minutes of
    computing, and reported as OUT rather than as the temporary file beside it."""
    # os.path's tests, unlike Path's, answer False for a name too long to look up
    if folder and os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"{option} {out} is a file; give a folder")
    if not folder and os.path.isdir(out):
        raise UsageError(f"{option} {out} is a folder; give a file name")
    existing, missing = out.absolute(), []
    while not os.path.exists(existing):  # missing folders are created when writing
        missing.append(existing.name)
        existing = existing.parent
    if not folder and not missing:  # OUT is an existing file: it is replaced in its folder
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{option} {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {out}: cannot write in {existing} (permission denied)")
    limit = name_max(existing)
    for name in missing:
        size = len(os.fsencode(name))
        if size > limit:
            raise UsageError(
                f"{option} {out}: the name {name[:24]}… is {size} bytes; this file system "
                f"allows at most {limit}; choose a shorter name"
            )


def name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` allows (255 where the
    system cannot say)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows) or no answer
        return 255


def os_error_message(err: OSError, out: Path) -> str:
    """The message of an OSError from writing ``out``, naming ``out`` instead of the
    temporary ``.part`` file that was being written when it happened (a full disk)."""
    names = [str(name) for name in (err.filename, err.filename2) if name is not None]
    if any(name.endswith(".part") for name in names):
        return f"-o {out}: cannot write it: {err.strerror or err}"
    return str(err)


# ---------------------------------------------------------------- running


def run_command(
    prog: str, out: Path, work: Callable[[], int | None], *, failed: str = "the work failed"
) -> int:
    """Run ``work()`` and turn what goes wrong into an exit code and one line on stderr
    (``failed`` says what failed when the work itself does: a NaN loss, out of memory)."""
    try:
        return work() or 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing written to {out}", file=sys.stderr)
        return 130
    except (FloatingPointError, torch.cuda.OutOfMemoryError) as err:
        print(f"{prog}: error: {failed}: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"{prog}: error: {os_error_message(err, out)}", file=sys.stderr)
        return 2
    except (ValueError, WeightsError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[list[int]]:
    """While the block runs, SIGTERM (``kill``, ``timeout``, a container or service stop)
    raises KeyboardInterrupt as Ctrl-C does, so that atomic writes remove their temporary
    files and training commands say how to resume: Python's default for SIGTERM ends the
    process at once, without running a single ``finally``.

    Yields a list that receives the signal's number when one came. Only the first SIGTERM
    interrupts; later ones are ignored so that the cleanup it started can finish (SIGKILL
    still ends the process). Outside the main thread, where Python cannot handle signals,
    it does nothing."""
    received: list[int] = []

    def interrupt(signum: int, _frame: object) -> None:
        if not received:
            received.append(signum)
            raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield received
        return
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


class OutOfMemory(torch.OutOfMemoryError):
    """The work on one input ran out of memory (CPU or GPU): exit 1, with a message that
    names the input and what to try. A ``torch.OutOfMemoryError``, which ``run_command``
    already reports as a failed work."""


# Phrases of PyTorch's CPU allocator (Linux/macOS, Windows) when malloc fails: it raises
# a plain RuntimeError, unlike the GPU allocators' torch.OutOfMemoryError.
_ALLOCATOR_FAILED = ("can't allocate memory", "not enough memory")


@contextlib.contextmanager
def out_of_memory_as_failure(what: Path, advice: str) -> Iterator[None]:
    """Inside the block, an allocation that fails (``MemoryError``, ``torch``'s
    ``OutOfMemoryError`` or the CPU allocator's RuntimeError) raises ``OutOfMemory``
    naming ``what`` and giving ``advice`` (e.g. "use --tile 256"), instead of a
    traceback. Any other RuntimeError, a programming error, goes through as it is."""
    try:
        yield
    except (MemoryError, torch.OutOfMemoryError) as err:
        if isinstance(err, OutOfMemory):
            raise
        raise OutOfMemory(f"{what}: out of memory ({_first_line(err)}); {advice}") from None
    except RuntimeError as err:
        if not any(phrase in str(err) for phrase in _ALLOCATOR_FAILED):
            raise
        raise OutOfMemory(f"{what}: out of memory ({_first_line(err)}); {advice}") from None


def _first_line(err: BaseException) -> str:
    """The gist of an allocator's message: its first line without the C++ source place
    (``[enforce fail at alloc_cpu.cpp:127] err == 0.``), or the exception's name."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.split("] ", 1)[-1].removeprefix("err == 0. ")[:200]


def each_image(
    prog: str,
    folder: Path,
    out: Path,
    run: Callable[[Path, Path], None],
    *,
    protected: Sequence[Path] = (),
) -> int:
    """``run(image, out / image.name)`` for every image in ``folder``; a bad image (or one
    that runs out of memory) is reported and the rest go on. Returns the exit code: 0, 1
    (some failed) or 130.

    Raises UsageError before any work if OUT is a file or the input folder, the folder has
    no images, or an output would replace one of the ``protected`` files.
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: IN is a folder, so OUT must be a folder too")
    if out.resolve() == folder.resolve():
        raise UsageError(f"-o {out} is the input folder; outputs would replace the inputs")
    check_writable(out, folder=True)
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    images = [p for p in files if p.is_file() and p.suffix.lower() in SAVE_FORMATS]
    if not images:
        raise UsageError(f"{folder}: no images ({' '.join(SAVE_FORMATS)}) in this folder")
    keep = {p.resolve() for p in protected}
    for path in images:
        if (out / path.name).resolve() in keep:
            raise UsageError(f"-o {out}: {out / path.name} would replace {path.name}, an input")
    for path in files:
        if path not in images:
            print(f"{prog}: skipping {path}: not an image file", file=sys.stderr)
    failed = []
    for path in images:
        try:
            run(path, out / path.name)
        except KeyboardInterrupt:
            print(f"{prog}: interrupted; {out / path.name} not written", file=sys.stderr)
            return 130
        except OSError as err:
            print(f"{prog}: error: {os_error_message(err, out / path.name)}", file=sys.stderr)
            failed.append(path.name)
        except (ValueError, torch.OutOfMemoryError) as err:  # OutOfMemory names the image
            print(f"{prog}: error: {err}", file=sys.stderr)
            failed.append(path.name)
    if failed:
        print(
            f"{prog}: {len(failed)} of {len(images)} images failed: {', '.join(failed)}",
            file=sys.stderr,
        )
        return 1
    return 0


def size_advice(
    need: Callable[[int, int], int], height: int, width: int, budget: int, min_size: int
) -> str:
    """ "use --size N" with about the largest long side N at which an image of ``height`` ×
    ``width`` needs (``need(h, w)``, bytes) at most ``budget``, or "use a smaller image"
    when none of at least ``min_size`` px does."""
    long_side = max(height, width)
    size = int(long_side * (budget / need(height, width)) ** 0.5)  # memory ~ the pixels
    while size >= min_size:
        ratio = size / long_side
        h, w = max(round(height * ratio), 1), max(round(width * ratio), 1)
        if min(h, w) >= min_size and need(h, w) <= budget:
            return f"use --size {size}"
        size = int(size * 0.9)
    return "use a smaller image"


# ---------------------------------------------------------------- training commands


def add_training_options(p: argparse.ArgumentParser, *, workdir_default: str) -> None:
    """The options every ``train-*`` command has (its recipe's fields come on top)."""
    p.add_argument("--steps", type=count, required=True, metavar="N", help="total updates")
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT", help="the .safetensors file"
    )
    p.add_argument(
        "--workdir", type=Path, default=None,
        help=f"checkpoint folder (default {workdir_default}); resumed if present",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--batch-size", type=count, default=None, help="default: the recipe's")
    p.add_argument(
        "--lr", type=positive, default=None, help="learning rate (default: the recipe's)"
    )
    add_device_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def add_device_option(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--device NAME``, checked later by ``check_device``."""
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: best)")


def command_line(words: Sequence[str], options: Sequence[tuple[str, object]]) -> str:
    """``nstcourse train-… MODEL`` and the options that were given, as one shell line:
    the command that makes (or resumes) a run, stored in the checkpoint's metadata."""
    parts = list(words)
    for option, value in options:
        if value is not None:
            parts += [option, f"{value:g}" if isinstance(value, float) else str(value)]
    return shlex.join(parts)


def run_training(
    prog: str,
    args: argparse.Namespace,
    command: str,
    train: Callable[[], str],
    workdir: Callable[[], object],
) -> int:
    """Run ``train()`` (which returns its report) for a training command and turn what
    goes wrong into an exit code: 130 interrupted (the checkpoint in ``workdir()`` is kept
    and ``command`` resumes), 1 the loss went NaN, 2 bad input; else print the report
    unless ``args.quiet`` and return 0."""
    if args.output.suffix != ".safetensors":
        print(f"{prog}: error: -o {args.output}: the checkpoint must be a .safetensors file",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        report = train()
    except KeyboardInterrupt:
        print(
            f"{prog}: interrupted; {args.output} not written. The last checkpoint in "
            f"{workdir()} is kept; resume with the same command:\n  {command}",
            file=sys.stderr,
        )
        return 130
    except FloatingPointError as err:
        print(f"{prog}: error: training failed: {err}", file=sys.stderr)
        return 1
    except (OSError, ValueError, WeightsError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(report)
    return 0
