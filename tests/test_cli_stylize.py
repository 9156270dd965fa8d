"""``nstcourse stylize``: end to end on tiny images, and every bad input refused up front.

Run in-process through ``nstcourse.cli.main``, with the data pack's partial VGG-19 found
through $NSTCOURSE_WEIGHTS_DIR and the shallow layers it covers.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from PIL import Image

import nstcourse.cli.stylize as stylize_command
from nstcourse.cli import main
from nstcourse.features import VGGFeatures

SHALLOW = {"--content-layers": "relu3_2", "--style-layers": "relu1_1,relu2_1,relu3_1"}
TINY_OPTIONS = {"--size": "48", "--steps": "3", **SHALLOW}
TINY = [*(x for item in TINY_OPTIONS.items() for x in item), "--quiet"]


@pytest.fixture(autouse=True)
def _partial_vgg(monkeypatch: pytest.MonkeyPatch, partial_vgg19: Path) -> None:
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(partial_vgg19.parent))
    monkeypatch.delenv("NSTCOURSE_VGG_MISSING", raising=False)


@pytest.fixture
def files(data_pack: Path, tmp_path: Path) -> dict[str, Path]:
    """Inputs from the data pack, bad files and masks in tmp_path, and OUT's folder."""
    images = data_pack / "images"
    content = images / "content" / "tubingen.jpg"  # 1024x768
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(content.read_bytes()[:3000])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    (tmp_path / "folder.png").mkdir()
    for name, size, box in [
        ("left.png", (64, 48), (0, 0, 32, 48)),  # the content's 4:3, another resolution
        ("right.png", (64, 48), (32, 0, 64, 48)),
        ("square.png", (48, 48), (0, 0, 24, 48)),
        ("black.png", (64, 48), None),
    ]:
        mask = Image.new("L", size, 0)
        if box:
            mask.paste(255, box)
        mask.save(tmp_path / name)
    out_dir = tmp_path / "out"
    return {
        "content": content,
        "style": images / "style" / "starry_night.jpg",
        "style2": images / "style" / "the_scream.jpg",
        "truncated": truncated,
        "text": text,
        "left": tmp_path / "left.png",
        "right": tmp_path / "right.png",
        "square": tmp_path / "square.png",
        "black": tmp_path / "black.png",
        "tmp": tmp_path,
        "out_dir": out_dir,
        "out": out_dir / "result.jpg",
    }


def run(capsys: pytest.CaptureFixture, argv: list[str]) -> tuple[int, str, str]:
    """main(argv) → (exit code, stdout, stderr); argparse's own errors exit via SystemExit."""
    try:
        code = main(["stylize", *map(str, argv)])
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_nothing_written(files: dict[str, Path]) -> None:
    folder = files["out_dir"]
    left = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert left == [], f"left behind in {folder}: {left}"


# ---------------------------------------------------------------- it works


def test_writes_an_image_of_the_requested_size(capsys, files) -> None:
    code, out, err = run(capsys, [files["content"], files["style"], "-o", files["out"], *TINY])
    assert code == 0, err
    with Image.open(files["out"]) as image:
        assert image.size == (48, 36) and image.format == "JPEG"
    assert sorted(p.name for p in files["out_dir"].iterdir()) == ["result.jpg"]  # no .part
    assert f"wrote {files['out']} (48x36) in " in out
    assert "last loss" in out and "content" in out and "style" in out


def test_coarse_to_fine_size_defaults_to_the_last_scale(capsys, files) -> None:
    out_png = files["out_dir"] / "result.png"
    argv = [files["content"], files["style"], "-o", out_png, "--scales", "24,48"]
    code, out, err = run(
        capsys, [*argv, "--steps", "2,1", *(x for item in SHALLOW.items() for x in item)]
    )
    assert code == 0, err
    with Image.open(out_png) as image:
        assert image.size == (48, 36)
    assert "scales 24,48, steps 2,1" in out  # the summary line
    assert "optimising" in err  # the progress bar


def test_many_options_together(capsys, files) -> None:
    argv = [files["content"], files["style"], files["style2"], "-o", files["out"], *TINY]
    options = [
        "--style-blend", "1,3", "--preserve-colour", "luminance", "--optimizer", "adam",
        "--lr", "0.05", "--init", "noise", "--seed", "3", "--tv-weight", "1",
        "--content-weight", "2", "--style-weight", "50", "--style-scale", "0.8",
        "--style-layers", "relu1_1:2,relu2_1,relu3_1:0.5", "--quality", "80", "--device", "cpu",
    ]  # fmt: skip
    code, _, err = run(capsys, [*argv, *options])
    assert code == 0, err
    assert files["out"].is_file()


def test_two_styles_in_two_masked_regions(capsys, files) -> None:
    argv = [files["content"], files["style"], files["style2"], "-o", files["out"], *TINY]
    code, _, err = run(capsys, [*argv, "--mask", files["left"], files["right"]])
    assert code == 0, err
    assert files["out"].is_file()


def test_fine_style(capsys, files) -> None:
    argv = [files["content"], files["style"], "-o", files["out"], *TINY]
    code, _, err = run(capsys, [*argv, "--fine-style", files["style2"], "--fine-layers", "relu1_1"])
    assert code == 0, err
    assert files["out"].is_file()


def test_help_lists_the_options(capsys) -> None:
    code, out, _ = run(capsys, ["--help"])
    assert code == 0
    for option in ["--size", "--scales", "--preserve-colour", "--mask", "--fine-style", "--seed"]:
        assert option in out
    assert "--content-layers relu3_2 --style-layers relu1_1,relu2_1,relu3_1" in out


# ---------------------------------------------------------------- bad input


# name: (the arguments, "-o OUT" added if absent; what the message must say)
BAD_INPUTS = {
    "missing content": ("{tmp}/nothere.jpg {style}", "image file not found: {tmp}/nothere.jpg"),
    "truncated content": ("{truncated} {style}", "{truncated}: cannot decode image"),
    "style is not an image": ("{content} {text}", "{text}: not an image file"),
    "unknown output suffix": (
        "{content} {style} -o {out_dir}/r.xyz",
        "r.xyz: unknown image suffix",
    ),
    "output is a folder": ("{content} {style} -o {tmp}/folder.png", "folder.png is a folder"),
    "output is an input": ("{content} {style} -o {content}", "is one of the input images"),
    "mask count": ("{content} {style} {style2} --mask {left}", "got 1 masks for 2 style images"),
    "mask aspect": (
        "{content} {style} --mask {square}",
        "--mask {square}: 48x48 px does not have the content image's aspect ratio (1024x768 px)",
    ),
    "black mask": ("{content} {style} --mask {black}", "--mask {black} is black everywhere"),
    "too small for the layers": (
        "{content} {style} --size 8 --content-layers relu3_2 --style-layers relu5_1",
        "--size: {content} would be 8x6 px, too small for the chosen layers",
    ),
    "scale too small": ("{content} {style} --scales 4,48", "--scales: {content} would be 4x3 px"),
    "style too small": (
        "{content} {style} --style-scale 0.1",
        "--style-scale: {style} would be 5x3",
    ),
    "absurd size": ("{content} {style} --size 10000", "--size: '10000' must be from 1 to 8192"),
    "absurd style scale": (
        "{content} {style} --size 4096 --style-scale 3",
        "--style-scale 3: style images of 12288 px exceed 8192 px",
    ),
    "scales decrease": ("{content} {style} --scales 48,24", "--scales must increase, got 48,24"),
    "scales repeat": ("{content} {style} --scales 24,24,48", "--scales must increase"),
    "last scale is not size": ("{content} {style} --scales 24,48 --size 64", "end at --size 64"),
    "steps per scale": ("{content} {style} --steps 1,2", "got 2 step counts for 1 scales"),
    "steps not a number": ("{content} {style} --steps 3,x", "--steps: 'x' is not a whole number"),
    "zero steps": ("{content} {style} --steps 0", "--steps: '0' must be at least 1"),
    "empty list item": ("{content} {style} --style-layers relu1_1,,relu2_1", "has an empty item"),
    "bad layer weight": ("{content} {style} --style-layers relu1_1:abc", "'abc' is not a number"),
    "layer twice": ("{content} {style} --style-layers relu1_1,relu1_1", "relu1_1 is listed twice"),
    "unknown layer": (
        "{content} {style} --style-layers relu1_1,relu9_1",
        "--style-layers: unknown vgg19 layer(s) relu9_1; known: conv1_1, relu1_1,",
    ),
    "vgg16 has no relu3_4": (
        "{content} {style} --arch vgg16 --content-layers relu3_4",
        "--content-layers: unknown vgg16 layer(s) relu3_4",
    ),
    "blend count": ("{content} {style} --style-blend 1,2", "got 2 weights for 1 style images"),
    "blend all zero": ("{content} {style} --style-blend 0", "the weights must not all be 0"),
    "blend with masks": (
        "{content} {style} --mask {left} --style-blend 1",
        "--style-blend has no effect with --mask",
    ),
    "fine layer not a style layer": (
        "{content} {style} --fine-style {style2} --fine-layers relu1_2",
        "--fine-layers: relu1_2 not in --style-layers",
    ),
    "default fine layers not style layers": (
        "{content} {style} --fine-style {style2} --style-layers relu2_1,relu3_1",
        "--fine-layers relu1_1,relu2_1: relu1_1 not in --style-layers",
    ),
    "fine layers alone": ("{content} {style} --fine-layers relu1_1", "needs --fine-style"),
    "masks and fine style": (
        "{content} {style} --mask {left} --fine-style {style2}",
        "use --mask or --fine-style, not both",
    ),
    "missing fine style": ("{content} {style} --fine-style {tmp}/gone.jpg", "{tmp}/gone.jpg"),
    "no such cuda device": ("{content} {style} --device cuda:99", "--device cuda:99:"),
    "not a device": ("{content} {style} --device gpu", "--device 'gpu': not a device"),
    "missing weights file": (
        "{content} {style} --weights {tmp}/vgg.pth",
        "--weights: VGG weights file not found: {tmp}/vgg.pth",
    ),
    "nan weight": ("{content} {style} --style-weight nan", "--style-weight: 'nan' must be at"),
    "negative lr": ("{content} {style} --lr -1", "--lr: '-1' must be at least 0"),
    "zero style scale": ("{content} {style} --style-scale 0", "'0' must be greater than 0"),
    "unknown optimizer": ("{content} {style} --optimizer sgd", "invalid choice: 'sgd'"),
    "unknown colour mode": ("{content} {style} --colour sepia", "invalid choice: 'sepia'"),
    "jpeg quality": ("{content} {style} --quality 0", "--quality: '0' must be from 1 to 100"),
}


@pytest.mark.parametrize(("arguments", "message"), BAD_INPUTS.values(), ids=BAD_INPUTS)
def test_bad_input_exits_2_names_it_and_writes_nothing(capsys, files, arguments, message):
    fill = {k: str(v) for k, v in files.items()}
    argv = arguments.format(**fill).split()
    argv += [] if "-o" in argv else ["-o", fill["out"]]
    for option, value in TINY_OPTIONS.items():  # unless the case sets it
        argv += [] if option in argv else [option, value]
    code, out, err = run(capsys, [*argv, "--quiet"])
    assert code == 2
    assert "nstcourse stylize: error: " in err
    assert message.format(**fill) in err
    assert "Traceback" not in err
    assert out == ""
    assert_nothing_written(files)


def test_default_layers_need_the_full_vgg(capsys, files) -> None:
    argv = [files["content"], files["style"], "-o", files["out"], "--size", "48", "--quiet"]
    code, _, err = run(capsys, argv)
    assert code == 2
    assert "conv4_1" in err and "are missing" in err and "--content-layers" in err
    assert_nothing_written(files)


# ---------------------------------------------------------------- failures mid-way


def test_a_failing_optimisation_exits_1_and_writes_nothing(capsys, files, monkeypatch) -> None:
    """The loss becomes NaN mid-way (VGG's features are poisoned after a few calls)."""
    real_forward, calls = VGGFeatures.forward, itertools.count()

    def poisoned(self, x):
        features = real_forward(self, x)
        return features if next(calls) < 4 else {k: v * math.nan for k, v in features.items()}

    monkeypatch.setattr(VGGFeatures, "forward", poisoned)
    argv = [files["content"], files["style"], "-o", files["out"], *TINY]
    code, _, err = run(capsys, argv)
    assert code == 1
    assert "error: the optimisation failed: the loss became" in err and "lower lr" in err
    assert_nothing_written(files)


def _interrupt_at_step(monkeypatch: pytest.MonkeyPatch, at: int) -> None:
    real_stylize = stylize_command.stylize

    def interrupted(*args, **kwargs):
        def callback(step, image, terms):
            if step == at:
                raise KeyboardInterrupt

        return real_stylize(*args, **kwargs, callback=callback)

    monkeypatch.setattr(stylize_command, "stylize", interrupted)


def test_ctrl_c_while_optimising_exits_130_and_keeps_the_old_file(capsys, files, monkeypatch):
    files["out_dir"].mkdir()
    files["out"].write_bytes(b"an earlier result")
    _interrupt_at_step(monkeypatch, 1)
    code, _, err = run(capsys, [files["content"], files["style"], "-o", files["out"], *TINY])
    assert code == 130
    assert f"interrupted; nothing written to {files['out']}" in err
    assert files["out"].read_bytes() == b"an earlier result"
    assert sorted(p.name for p in files["out_dir"].iterdir()) == ["result.jpg"]


def test_ctrl_c_while_saving_leaves_no_partial_file(capsys, files, monkeypatch) -> None:
    def save_half_then_interrupt(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\xff\xd8 half a JPEG")
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", save_half_then_interrupt)
    code, _, err = run(capsys, [files["content"], files["style"], "-o", files["out"], *TINY])
    assert code == 130
    assert "interrupted" in err
    assert_nothing_written(files)
