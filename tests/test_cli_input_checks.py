"""The command line's own input checks (reliability probe M8, L2, L5, L6, L7, L10; SIGTERM):
an OUT that cannot be written is refused before any work and named as OUT, never as a
temporary ``.part`` file; ``run-notebooks`` checks its output folder and cell timeout;
SIGTERM is handled as Ctrl-C; images that are no regular file, style images too small to
train on and misleading VGG messages. In-process through ``cli.main``, except SIGTERM.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clirun import run
from PIL import Image

import nstcourse.cli.sr
import nstcourse.cli.style
import nstcourse.cli.stylize
import nstcourse.runner
from nstcourse.checkpoints import save_model
from nstcourse.cli.common import UsageError, os_error_message, run_command
from nstcourse.images import ImageError, load_image
from nstcourse.sr.espcn import ESPCN
from nstcourse.style.recipes import JohnsonRecipe, _style_images

LONG_NAME = "a" * 300 + ".png"  # over any file system's 255-byte limit
SHALLOW = ["--content-layers", "relu3_2", "--style-layers", "relu1_1,relu2_1,relu3_1"]


def refused(code: int, err: str, *names: object) -> None:
    """Exit 2, one clean message naming each of ``names``, no traceback, no temp file."""
    assert code == 2, err
    assert "Traceback" not in err
    assert ".part" not in err
    for name in names:
        assert str(name) in err


def never(what: str) -> Callable[..., None]:
    """A stand-in for the work, failing the test if a check lets the command reach it."""

    def called(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{what} ran although OUT cannot be written")

    return called


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    Image.new("RGB", (24, 18), (200, 30, 40)).save(path)
    return path


@pytest.fixture
def readonly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder nobody may write in. chmod does not bind root (who runs some CI
    containers), so there os.access is made to answer as it would for anyone else."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        real_access = os.access

        def access(path: object, mode: int, **kwargs: object) -> bool:
            inside = Path(str(path)).absolute().is_relative_to(folder)
            return False if inside and mode & os.W_OK else real_access(path, mode, **kwargs)

        monkeypatch.setattr(os, "access", access)
    yield folder
    folder.chmod(0o755)


@pytest.fixture
def espcn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny espcn_x2 course checkpoint in $NSTCOURSE_CHECKPOINTS_DIR."""
    kwargs = {"scale": 2, "n1": 4, "n2": 4}
    checkpoints = tmp_path / "checkpoints"
    save_model(
        ESPCN(**kwargs), checkpoints / "espcn_x2.safetensors", kwargs=kwargs, metadata={"scale": 2}
    )
    monkeypatch.setenv("NSTCOURSE_CHECKPOINTS_DIR", str(checkpoints))


# ---------------------------------------------------------------- L2: OUT checked first


def test_upscale_refuses_a_readonly_out_before_loading_the_model(
    capsys, image, readonly, espcn, monkeypatch
) -> None:
    monkeypatch.setattr(nstcourse.cli.sr, "_load_upscaler", never("the model load"))
    out = readonly / "x.png"
    code, _, err = run(capsys, ["upscale", image, "-o", out, "--scale", 2])
    refused(code, err, f"-o {out}", f"cannot write in {readonly}")


def test_upscale_of_a_folder_refuses_a_readonly_out_before_any_image(
    capsys, image, readonly, espcn, monkeypatch
) -> None:
    monkeypatch.setattr(nstcourse.cli.sr, "_upscale_one", never("an upscale"))
    out = readonly / "outdir"
    code, _, err = run(capsys, ["upscale", image.parent, "-o", out, "--scale", 2])
    refused(code, err, f"-o {out}", f"cannot write in {readonly}")
    assert not out.exists()


def test_upscale_writes_a_folder_it_creates(capsys, tmp_path, image, espcn) -> None:
    out = tmp_path / "new" / "outdir"
    code, _, err = run(capsys, ["upscale", image.parent, "-o", out, "--scale", 2, "--quiet"])
    assert code == 0, err
    assert Image.open(out / "in.png").size == (48, 36)


@pytest.mark.parametrize(
    ("out", "message"),
    [
        (LONG_NAME, "is 304 bytes; this file system allows at most"),
        (f"{LONG_NAME}/x.png", "is 304 bytes; this file system allows at most"),
        ("in.png/x.png", "in.png is a file, not a folder"),
    ],
)
def test_upscale_refuses_an_out_it_cannot_create(capsys, image, espcn, out, message) -> None:
    out = image.parent / out
    code, _, err = run(capsys, ["upscale", image, "-o", out, "--scale", 2])
    refused(code, err, f"-o {out}", message)


def test_fast_stylize_and_stylize_refuse_a_name_too_long(capsys, image, monkeypatch) -> None:
    monkeypatch.delenv("NSTCOURSE_CHECKPOINTS_DIR", raising=False)  # the shipped ones
    monkeypatch.setattr(nstcourse.cli.style, "load_style_checkpoint", never("the model load"))
    monkeypatch.setattr(nstcourse.cli.stylize, "stylize", never("the optimisation"))
    out = image.parent / LONG_NAME
    code, _, err = run(capsys, ["fast-stylize", image, "-o", out, "--model", "wave"])
    refused(code, err, f"-o {out}", "bytes; this file system allows at most")
    code, _, err = run(capsys, ["stylize", image, image.parent / "style.png", "-o", out])
    refused(code, err, f"-o {out}", "bytes; this file system allows at most")


def test_fast_stylize_of_a_folder_refuses_a_readonly_out_before_any_image(
    capsys, image, readonly, monkeypatch
) -> None:
    monkeypatch.delenv("NSTCOURSE_CHECKPOINTS_DIR", raising=False)  # the shipped ones
    monkeypatch.setattr(nstcourse.cli.style, "_stylize_one", never("a stylisation"))
    out = readonly / "outdir"
    code, _, err = run(capsys, ["fast-stylize", image.parent, "-o", out, "--model", "wave"])
    refused(code, err, f"-o {out}", f"cannot write in {readonly}")


@pytest.mark.parametrize("where", ["readonly", "folder", "long name"])
def test_train_commands_check_out_before_training(
    capsys, tmp_path, readonly, monkeypatch, where
) -> None:
    monkeypatch.setattr(nstcourse.cli.sr, "train_sr", never("train_sr"))
    monkeypatch.setattr(nstcourse.cli.style, "train_style", never("train_style"))
    out = {
        "readonly": readonly / "m.safetensors",
        "folder": tmp_path / "m.safetensors",
        "long name": tmp_path / f"{'a' * 300}.safetensors",
    }[where]
    if where == "folder":
        out.mkdir()
    message = {
        "readonly": f"cannot write in {readonly}",
        "folder": "is a folder; give a file name",
        "long name": "bytes; this file system allows at most",
    }[where]
    workdir = tmp_path / "run"
    for command in (["train-sr", "espcn", "--scale", 3], ["train-style", "johnson"]):
        argv = [*command, "--steps", 2, "-o", out, "--workdir", workdir, "--quiet"]
        code, _, err = run(capsys, argv)
        refused(code, err, f"-o {out}", message)
    assert not workdir.exists()


def test_a_late_write_failure_names_out_not_the_temporary_file(capsys, tmp_path) -> None:
    out = tmp_path / "x.png"
    temporary = str(tmp_path / ".x.png.1a2b.part")
    disk_full = OSError(28, "No space left on device", temporary)
    expected = f"-o {out}: cannot write it: No space left on device"
    assert os_error_message(disk_full, out) == expected

    def work() -> None:
        raise disk_full

    assert run_command("nstcourse upscale", out, work) == 2
    err = capsys.readouterr().err
    assert f"-o {out}: cannot write it" in err and ".part" not in err


# ---------------------------------------------------------------- M8, L7: run-notebooks


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    """A folder with one (empty) course notebook."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    cells = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (folder / "00_empty.ipynb").write_text(json.dumps(cells))
    return folder


def test_run_notebooks_refuses_an_output_dir_that_is_a_file(
    capsys, tmp_path, notebooks, monkeypatch
) -> None:
    monkeypatch.setattr(nstcourse.runner, "run_notebook", never("a notebook"))
    out = tmp_path / "outfile"
    out.write_text("keep me")
    code, _, err = run(capsys, ["run-notebooks", "--notebooks-dir", notebooks, "--output-dir", out])
    refused(code, err, f"--output-dir {out}", "is a file")
    assert out.read_text() == "keep me"


def test_run_notebooks_refuses_a_readonly_output_dir(
    capsys, notebooks, readonly, monkeypatch
) -> None:
    monkeypatch.setattr(nstcourse.runner, "run_notebook", never("a notebook"))
    out = readonly / "nbout"
    code, _, err = run(capsys, ["run-notebooks", "--notebooks-dir", notebooks, "--output-dir", out])
    refused(code, err, f"--output-dir {out}", f"cannot write in {readonly}")


def test_run_notebooks_library_names_its_output_folder(tmp_path, notebooks) -> None:
    out = tmp_path / "outfile"
    out.write_text("")
    with pytest.raises(NotADirectoryError, match=f"output folder {out} is a file"):
        nstcourse.runner.run_notebooks(sorted(notebooks.glob("*.ipynb")), out, mode="smoke")


@pytest.mark.parametrize("seconds", ["-5", "0", "nan", "inf", "soon"])
def test_run_notebooks_cell_timeout_must_be_a_positive_number(capsys, notebooks, seconds) -> None:
    argv = ["run-notebooks", "--notebooks-dir", notebooks, "--cell-timeout", seconds]
    code, _, err = run(capsys, argv)
    refused(code, err, f"argument --cell-timeout: '{seconds}'")


def test_run_notebooks_cell_timeout_reaches_papermill_as_whole_seconds(
    capsys, tmp_path, notebooks, monkeypatch
) -> None:
    import papermill

    given = {}

    def execute_notebook(source: str, output: str, **kwargs: object) -> None:
        given.update(kwargs)
        Path(output).write_text(Path(source).read_text())

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    out = tmp_path / "new" / "nbout"
    argv = [
        "run-notebooks",
        "--notebooks-dir",
        notebooks,
        "--output-dir",
        out,
        "--cell-timeout",
        "2.5",
    ]
    code, stdout, err = run(capsys, argv)
    assert code == 0, err
    assert given["execution_timeout"] == 3 and isinstance(given["execution_timeout"], int)
    assert (out / "00_empty.ipynb").is_file() and "1 passed, 0 failed" in stdout
    with pytest.raises(ValueError, match="cell_timeout=-1"):
        nstcourse.runner.run_notebook(
            notebooks / "00_empty.ipynb", out, mode="smoke", cell_timeout=-1
        )


# ---------------------------------------------------------------- SIGTERM


def test_main_puts_the_previous_sigterm_handler_back(capsys, tmp_path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    code, _, _ = run(capsys, ["upscale", tmp_path / "nothere.png", "-o", tmp_path / "x.png"])
    assert code == 2
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.datapack
@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM cannot be handled on Windows")
def test_sigterm_during_stylize_leaves_no_output_and_no_temporary_file(
    tmp_path, partial_vgg19, monkeypatch
) -> None:
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(partial_vgg19.parent))
    monkeypatch.delenv("NSTCOURSE_VGG_MISSING", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    Image.new("RGB", (32, 24), (200, 30, 40)).save(work / "content.png")
    Image.new("RGB", (32, 24), (20, 130, 240)).save(work / "style.png")
    argv = [
        "stylize",
        "content.png",
        "style.png",
        "-o",
        "out.png",
        "--size",
        "32",
        "--steps",
        "100000",
        *SHALLOW,
    ]
    command = [sys.executable, "-m", "nstcourse.cli", *argv]
    with subprocess.Popen(
        command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        first = process.stdout.readline()  # printed once everything is loaded, then optimising
        assert "in the style of" in first
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "interrupted; nothing written to out.png" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in work.iterdir()) == ["content.png", "style.png"]


# ---------------------------------------------------------------- L5, L10: messages


def test_load_image_says_what_a_non_regular_file_is(tmp_path) -> None:
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(ImageError, match="folder.png is not a regular file but a folder"):
        load_image(tmp_path / "folder.png")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.png")
        with pytest.raises(ImageError, match="fifo.png is not a regular file but a FIFO"):
            load_image(tmp_path / "fifo.png")  # and it does not hang reading the pipe
    if Path("/dev/zero").exists():
        (tmp_path / "zero.png").symlink_to("/dev/zero")
        with pytest.raises(ImageError, match="zero.png is not a regular file but a character"):
            load_image(tmp_path / "zero.png")
    with pytest.raises(FileNotFoundError, match="image file not found"):
        load_image(tmp_path / "nothere.png")


@pytest.mark.parametrize(
    "background", [(2.0, 2.0, 2.0), (0.0, -0.1, 0.0), (0.0, 0.0, float("nan")), (1.0, 1.0), "white"]
)
def test_load_image_background_must_be_in_range(tmp_path, background) -> None:
    path = tmp_path / "rgba.png"
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(path)
    with pytest.raises(ValueError, match=r"background=.*three numbers \(R, G, B\) in \[0, 1\]"):
        load_image(path, background=background)
    assert load_image(path, background=(0.0, 0.5, 1.0)).amax() == 1.0


def test_stylize_mask_that_is_a_folder_is_not_called_missing(capsys, tmp_path, image) -> None:
    (tmp_path / "mask.png").mkdir()
    argv = [
        "stylize",
        image,
        image,
        "-o",
        tmp_path / "o.png",
        "--size",
        "16",
        "--steps",
        "1",
        *SHALLOW,
        "--mask",
        tmp_path / "mask.png",
    ]
    code, _, err = run(capsys, argv)
    refused(code, err, "mask.png is not a regular file but a folder")
    assert "not found" not in err


@pytest.mark.parametrize("convention", [[], ["--convention", "caffe"]])
def test_a_vgg_file_with_a_catalog_name_and_other_bytes(
    capsys, tmp_path, image, convention
) -> None:
    weights = tmp_path / "vgg19-dcbb9e9d.pth"
    weights.write_bytes(os.urandom(4096))
    argv = [
        "stylize",
        image,
        image,
        "-o",
        tmp_path / "o.png",
        "--size",
        "16",
        "--steps",
        "1",
        *SHALLOW,
        "--weights",
        weights,
        *convention,
    ]
    code, _, err = run(capsys, argv)
    refused(code, err, weights, "download it again from https://download.pytorch.org")
    assert "--convention) does not bypass that check" in err
    assert "pass convention= explicitly" not in err


def test_an_unknown_vgg_file_names_the_command_line_option(capsys, tmp_path, image) -> None:
    argv = [
        "stylize",
        image,
        image,
        "-o",
        tmp_path / "o.png",
        "--size",
        "16",
        "--steps",
        "1",
        *SHALLOW,
        "--weights",
        image,
    ]
    code, _, err = run(capsys, argv)
    refused(code, err, image, "--convention on the command line")


# ---------------------------------------------------------------- L6: tiny style images

TINY = dict(
    short_side=40,
    style_size=32,
    width=8,
    res_blocks=1,
    crops_per_image=4,
    batch_size=2,
    checkpoint_every=2,
    time_size=32,
)


@pytest.mark.datapack
@pytest.mark.parametrize(("size", "after"), [((1, 1), ""), ((300, 8), " (after scaling")])
def test_train_style_refuses_a_style_image_too_small_to_train_on(
    capsys, tmp_path, data_pack, partial_vgg19, monkeypatch, size, after
) -> None:
    monkeypatch.setenv("NSTCOURSE_DATA_DIR", str(data_pack))
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(partial_vgg19.parent))
    monkeypatch.delenv("NSTCOURSE_VGG_MISSING", raising=False)
    recipes = {**nstcourse.cli.style.RECIPES, "johnson": functools.partial(JohnsonRecipe, **TINY)}
    monkeypatch.setattr(nstcourse.cli.style, "RECIPES", recipes)
    style = tmp_path / "tiny_style.png"
    Image.new("RGB", size, (20, 130, 240)).save(style)
    out = tmp_path / "m.safetensors"
    argv = [
        "train-style",
        "johnson",
        "--steps",
        2,
        "-o",
        out,
        "--workdir",
        tmp_path / "run",
        "--style",
        style,
        "--max-images",
        1,
        "--crop",
        32,
        "--device",
        "cpu",
    ]
    code, _, err = run(capsys, argv)
    refused(code, err, f"style image {style}: ", after, "at least 8 px")
    assert not out.exists()


def test_adain_style_images_are_checked_too(tmp_path) -> None:
    style = tmp_path / "one.png"
    Image.new("RGB", (1, 1)).save(style)
    with pytest.raises(ImageError, match="one.png: 1x1 px is too small to train on"):
        _style_images([str(style)])  # the adain builder's call: no long side


def test_usage_error_is_a_value_error() -> None:
    """The commands map ValueError to exit 2; the checks above rely on it."""
    assert issubclass(UsageError, ValueError)
