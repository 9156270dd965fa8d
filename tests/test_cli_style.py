"""``nstcourse fast-stylize`` and ``nstcourse train-style``, in-process through ``cli.main``.

fast-stylize runs the shipped checkpoints (``checkpoints/``) on 64x48 images and compares
what it writes with the same network called directly; AdaIN's encoder is the data pack's
partial VGG-19. train-style trains a tiny recipe for a few steps into tmp_path.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from clirun import run
from PIL import Image

import nstcourse.cli.style
from nstcourse.checkpoints import checkpoint_info, save_model
from nstcourse.images import load_image, to_numpy
from nstcourse.style.fast_style import TransformNet, stylize_batch
from nstcourse.style.models import load_style_checkpoint, load_style_model
from nstcourse.style.recipes import CINRecipe, JohnsonRecipe

REPO = Path(__file__).resolve().parent.parent
STYLE = "images/style/starry_night.jpg"  # relative to the data pack
STYLE2 = "images/style/the_scream.jpg"


@pytest.fixture(autouse=True)
def _shipped_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NSTCOURSE_CHECKPOINTS_DIR", raising=False)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Path]:
    """Three images, a truncated one, a 5 px one and a text file; OUT's folder."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(images / "a.png")
    Image.new("L", (40, 56), 128).save(images / "b.jpg")
    (images / "c.png").write_bytes((images / "a.png").read_bytes()[:60])  # truncated
    Image.new("RGB", (64, 5)).save(images / "d.png")  # too small for the network
    (images / "notes.txt").write_text("not an image")
    return {"images": images, "out": tmp_path / "out", "tmp": tmp_path}


@pytest.fixture
def vgg(monkeypatch: pytest.MonkeyPatch, partial_vgg19: Path) -> None:
    """AdaIN's encoder: the data pack's VGG-19 (it covers relu3_1), no random layers."""
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(partial_vgg19.parent))
    monkeypatch.delenv("NSTCOURSE_VGG_MISSING", raising=False)


def written(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def expected(y: torch.Tensor) -> np.ndarray:
    """What a PNG of y holds: 8-bit RGB."""
    return to_numpy(y, dtype=np.uint8).astype(np.int16)


# ---------------------------------------------------------------- fast-stylize


def test_fast_stylize_one_file_is_the_network_output(capsys, env) -> None:
    src, out = env["images"] / "a.png", env["out"] / "a_wave.png"
    code, stdout, err = run(capsys, ["fast-stylize", src, "-o", out, "--model", "wave"])
    assert code == 0, err
    assert f"wrote {out} (64x48)" in stdout
    net = load_style_model("wave", device="cpu")
    assert np.abs(pixels(out) - expected(stylize_batch(net, load_image(src)))).max() <= 1
    assert written(env["out"]) == ["a_wave.png"]  # no temporary file left


def test_fast_stylize_size_is_the_long_side(capsys, env) -> None:
    out = env["out"] / "b.png"
    argv = ["fast-stylize", env["images"] / "b.jpg", "-o", out, "--model", "udnie", "--size", 28]
    code, _, err = run(capsys, [*argv, "--quiet"])
    assert code == 0, err
    assert Image.open(out).size == (20, 28)


def test_fast_stylize_folder_reports_bad_images_and_writes_the_rest(capsys, env) -> None:
    argv = ["fast-stylize", env["images"], "-o", env["out"], "--model", "scream", "--quiet"]
    code, stdout, err = run(capsys, argv)
    assert code == 1
    assert stdout == ""
    assert written(env["out"]) == ["a.png", "b.jpg"]
    assert Image.open(env["out"] / "b.jpg").size == (40, 56)
    assert f"skipping {env['images'] / 'notes.txt'}: not an image file" in err
    assert f"{env['images'] / 'c.png'}: cannot decode image" in err
    assert f"{env['images'] / 'd.png'}: 64x5 px is too small" in err
    assert "2 of 4 images failed: c.png, d.png" in err


def test_fast_stylize_cin_mix_by_name_or_index(capsys, env) -> None:
    src = env["images"] / "a.png"
    by_name, by_index = env["out"] / "name.png", env["out"] / "index.png"
    mix = ["--style", "starry_night=0.7", "--style", "the_scream=0.3"]
    code, _, err = run(capsys, ["fast-stylize", src, "-o", by_name, "--model", "cin", *mix])
    assert code == 0, err
    mix = ["--style", "1=3", "--style", "0=7"]  # same mix: indices, weights normalised
    code, _, err = run(capsys, ["fast-stylize", src, "-o", by_index, "--model", "cin", *mix])
    assert code == 0, err
    net = load_style_model("cin", device="cpu")
    weights = [0.7, 0.3] + [0.0] * (net.styles - 2)
    y = stylize_batch(net, load_image(src), style=weights)
    assert np.abs(pixels(by_name) - expected(y)).max() <= 1
    assert np.array_equal(pixels(by_name), pixels(by_index))


def test_fast_stylize_adain_alpha_mix_and_colour(capsys, env, vgg, data_pack) -> None:
    src, out = env["images"] / "a.png", env["out"] / "adain.png"
    styles = [data_pack / STYLE, data_pack / STYLE2]
    argv = ["fast-stylize", src, "-o", out, "--model", "adain", "--alpha", "0.5",
            "--style-image", styles[0], "--style-image", styles[1],
            "--style-weights", "3", "1", "--preserve-colour", "--style-size", "64"]  # fmt: skip
    code, _, err = run(capsys, [*argv, "--device", "cpu"])
    assert code == 0, err
    net = load_style_model("adain", device="cpu")
    style_images = [load_image(path, long_side=64) for path in styles]
    with torch.inference_mode():
        y = net(load_image(src), style_images, alpha=0.5, style_weights=[0.75, 0.25],
                preserve_colour=True)  # fmt: skip
    assert np.abs(pixels(out) - expected(y)).max() <= 1


def test_fast_stylize_with_a_file_from_train_style(capsys, env, tmp_path) -> None:
    model = tmp_path / "mine.safetensors"
    kwargs = {"width": 4, "res_blocks": 0, "upsample": "nearest", "styles": 1}
    net = TransformNet(**kwargs)
    save_model(net, model, kwargs=kwargs, metadata={"model": "johnson"})
    out = env["out"] / "a.png"
    argv = ["fast-stylize", env["images"] / "a.png", "-o", out, "--model", model, "--quiet"]
    code, _, err = run(capsys, argv)
    assert code == 0, err
    y = stylize_batch(net, load_image(env["images"] / "a.png"))
    assert np.abs(pixels(out) - expected(y)).max() <= 1


# name: (arguments after "fast-stylize", what stderr must say)
ERRORS = {
    "unknown model": (
        "{a} -o {out}/x.png --model mosaic",
        "--model mosaic: unknown model; known: wave, scream, udnie, wreck, cin, adain",
    ),
    "missing model file": (
        "{a} -o {out}/x.png --model {tmp}/gone.safetensors",
        "--model {tmp}/gone.safetensors: no such file",
    ),
    "not a style checkpoint": (
        "{a} -o {out}/x.png --model {repo}/checkpoints/espcn_x2.safetensors",
        "holds a ESPCN, not a style network",
    ),
    "missing input": ("{tmp}/nope.png -o {out}/x.png --model wave", "nope.png: no such file"),
    "unreadable image": ("{c} -o {out}/x.png --model wave", "{c}: cannot decode image"),
    "too small": ("{d} -o {out}/x.png --model wave", "{d}: 64x5 px is too small"),
    "too small after --size": (
        "{a} -o {out}/x.png --model wave --size 8",
        "{a}: 8x6 px (after --size 8) is too small; both sides need at least 8 px",
    ),
    "style for a single-style model": (
        "{a} -o {out}/x.png --model wave --style starry_night",
        "--style: wave has one style; --style is for the cin model",
    ),
    "cin without style": ("{a} -o {out}/x.png --model cin", "--style: cin has 10 styles"),
    "unknown cin style": (
        "{a} -o {out}/x.png --model cin --style mona_lisa",
        "--style mona_lisa: unknown style of cin; known: 0 starry_night, 1 the_scream,",
    ),
    "cin index out of range": (
        "{a} -o {out}/x.png --model cin --style 10",
        "--style 10: cin has styles 0 to 9",
    ),
    "cin style twice": (
        "{a} -o {out}/x.png --model cin --style 0 --style starry_night",
        "--style starry_night: style 0 is listed twice",
    ),
    "cin weights all zero": (
        "{a} -o {out}/x.png --model cin --style 0=0",
        "--style: the weights must not all be 0",
    ),
    "bad cin weight": ("{a} -o {out}/x.png --model cin --style 0=x", "'x' is not a number"),
    "style image for a TransformNet": (
        "{a} -o {out}/x.png --model cin --style 0 --style-image {a}",
        "--style-image is for --model adain",
    ),
    "alpha for a TransformNet": ("{a} -o {out}/x.png --model wave --alpha 0", "--alpha is for"),
    "adain without style image": (
        "{a} -o {out}/x.png --model adain",
        "--style-image: adain needs at least one style image",
    ),
    "adain with a cin style": (
        "{a} -o {out}/x.png --model adain --style 0",
        "--style: adain takes any style image; use --style-image PATH",
    ),
    "alpha above 1": (
        "{a} -o {out}/x.png --model adain --style-image {a} --alpha 1.5",
        "argument --alpha: '1.5' must be from 0 to 1",
    ),
    "alpha below 0": (
        "{a} -o {out}/x.png --model adain --style-image {a} --alpha -0.1",
        "argument --alpha: '-0.1' must be from 0 to 1",
    ),
    "style weights count": (
        "{a} -o {out}/x.png --model adain --style-image {a} --style-weights 1 2",
        "--style-weights: got 2 weights for 1 style images",
    ),
    "unreadable style image": (
        "{a} -o {out}/x.png --model adain --style-image {notes}",
        "{notes}: not an image file",
    ),
    "style image too small": (
        "{a} -o {out}/x.png --model adain --style-image {d}",
        "{d}: 64x5 px is too small; both sides need at least 8 px",
    ),
    "style image too small after --style-size": (
        "{a} -o {out}/x.png --model adain --style-image {a} --style-size 9",
        "{a}: 9x7 px (after --style-size 9) is too small",
    ),
    "output is the input": ("{a} -o {a} --model wave", "is one of the input images"),
    "output is the style image": (
        "{a} -o {b} --model adain --style-image {b}",
        "is one of the input images",
    ),
    "bad suffix": ("{a} -o {out}/x.txt --model wave", "unknown image suffix"),
    "folder onto itself": ("{images} -o {images} --model wave", "is the input folder"),
    "size zero": ("{a} -o {out}/x.png --model wave --size 0", "--size: '0' must be from 1"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_fast_stylize_errors(capsys, env, case) -> None:
    args, message = ERRORS[case]
    names = {
        **{key: env["images"] / f"{key}.png" for key in ("a", "c", "d")},
        "b": env["images"] / "b.jpg",
        "notes": env["images"] / "notes.txt",
        **{key: env[key] for key in ("images", "out", "tmp")},
        "repo": REPO,
    }
    before = {p.name: p.read_bytes() for p in env["images"].iterdir()}
    code, stdout, err = run(capsys, ["fast-stylize", *args.format(**names).split()])
    assert code == 2
    assert err.startswith("nstcourse fast-stylize: error: ") or "usage:" in err, err
    assert message.format(**names) in err
    assert "Traceback" not in err
    assert stdout == ""
    assert written(env["out"]) == []
    assert {p.name: p.read_bytes() for p in env["images"].iterdir()} == before


# ---------------------------------------------------------------- train-style

# Test configuration: a width-8 net with one residual block on 40 px photos, timed at
# 32 px, checkpointing every 2 steps; the command line sets --crop and --max-images.
TINY = dict(short_side=40, style_size=32, width=8, res_blocks=1, crops_per_image=4,
            batch_size=2, checkpoint_every=2, time_size=32)  # fmt: skip


@pytest.fixture
def tiny_recipes(monkeypatch, data_pack, partial_vgg19) -> None:
    monkeypatch.setenv("NSTCOURSE_DATA_DIR", str(data_pack))
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(partial_vgg19.parent))
    monkeypatch.delenv("NSTCOURSE_VGG_MISSING", raising=False)
    recipes = {
        **nstcourse.cli.style.RECIPES,
        "johnson": functools.partial(JohnsonRecipe, **TINY),
        "cin": functools.partial(CINRecipe, **TINY),
    }
    monkeypatch.setattr(nstcourse.cli.style, "RECIPES", recipes)


def train_argv(model: Path, workdir: Path, steps: int) -> list:
    return ["train-style", "johnson", "--steps", steps, "-o", model, "--workdir", workdir,
            "--max-images", 2, "--crop", 32, "--device", "cpu"]  # fmt: skip


@pytest.mark.datapack
def test_train_style_writes_a_checkpoint_with_its_command(capsys, tmp_path, tiny_recipes):
    model, workdir = tmp_path / "m.safetensors", tmp_path / "run"
    code, stdout, err = run(capsys, train_argv(model, workdir, 2))
    assert code == 0, err
    assert f"wrote {model} in " in stdout
    assert "training loss (mean of the last 100 steps): loss " in stdout
    assert "ms per 32x32 image on cpu" in stdout
    net = load_style_checkpoint(model, device="cpu")
    assert isinstance(net, TransformNet) and net.styles == 1
    recipe = checkpoint_info(model)["recipe"]
    assert recipe["command"] == (
        f"nstcourse train-style johnson --steps 2 -o {model} --workdir {workdir} "
        "--crop 32 --max-images 2 --device cpu"
    )
    assert (recipe["crop"], recipe["max_images"], recipe["steps"]) == (32, 2, 2)
    assert recipe["resumed_from_step"] == 0


@pytest.mark.datapack
def test_train_style_resumes_with_the_same_command(capsys, tmp_path, tiny_recipes):
    model, workdir = tmp_path / "m.safetensors", tmp_path / "run"
    code, _, err = run(capsys, [*train_argv(model, workdir, 2), "--quiet"])
    assert code == 0, err
    code, stdout, err = run(capsys, train_argv(model, workdir, 4))
    assert code == 0, err
    assert "(resumed from step 2)" in stdout
    recipe = checkpoint_info(model)["recipe"]
    assert recipe["resumed_from_step"] == 2 and recipe["steps"] == 4
    assert "--steps 4" in recipe["command"]
    code, _, err = run(capsys, [*train_argv(model, workdir, 4), "--crop", "40", "--quiet"])
    assert code == 2 and "holds a run with another recipe (differs in crop)" in err


@pytest.mark.datapack
def test_train_style_cin_then_fast_stylize_by_style_name(capsys, tmp_path, tiny_recipes, env):
    model = tmp_path / "cin.safetensors"
    argv = ["train-style", "cin", "--steps", 1, "-o", model, "--workdir", tmp_path / "run",
            "--style", STYLE, STYLE2, "--max-images", 1, "--crop", 32, "--quiet"]  # fmt: skip
    code, _, err = run(capsys, argv)
    assert code == 0, err
    assert (
        "--style images/style/starry_night.jpg --style"
        in checkpoint_info(model)["recipe"]["command"]
    )
    out = env["out"] / "a.png"
    argv = ["fast-stylize", env["images"] / "a.png", "-o", out, "--model", model]
    code, _, err = run(capsys, [*argv, "--style", "the_scream", "--quiet"])
    assert code == 0, err
    net = load_style_checkpoint(model, device="cpu")
    y = stylize_batch(net, load_image(env["images"] / "a.png"), style=1)
    assert np.abs(pixels(out) - expected(y)).max() <= 1
    code, _, err = run(capsys, [*argv, "--style", "udnie"])
    assert code == 2 and "known: 0 starry_night, 1 the_scream" in err


def test_train_style_interrupted_says_how_to_resume(capsys, tmp_path, monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nstcourse.cli.style, "train_style", interrupted)
    out = tmp_path / "m.safetensors"
    argv = ["train-style", "adain", "--steps", "10", "-o", out, "--style-weight", "5", "--quiet"]
    code, _, err = run(capsys, argv)
    assert code == 130
    assert "The last checkpoint in runs/adain is kept" in err
    assert (
        f"resume with the same command:\n  nstcourse train-style adain --steps 10 -o {out} "
        "--style-weight 5\n" in err
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("johnson --steps 1 -o {tmp}/m.pt", "-o {tmp}/m.pt: the checkpoint must be a .safetensors"),
        ("mosaic --steps 1 -o {tmp}/m.safetensors", "invalid choice: 'mosaic'"),
        ("johnson --steps 0 -o {tmp}/m.safetensors", "--steps: '0' must be at least 1"),
        ("johnson --steps 1 -o {tmp}/m.safetensors --crop 4", "--crop: '4' must be at least 8"),
        ("cin --steps 1 -o {tmp}/m.safetensors --batch-size 0", "'0' must be at least 1"),
        ("adain --steps 1 -o {tmp}/m.safetensors --style-weight -1", "'-1' must be at least 0"),
        (
            "johnson --steps 1 -o {tmp}/m.safetensors --style a.jpg b.jpg",
            "johnson trains one style, got 2; use 'cin' for several",
        ),
        ("cin --steps 1 -o {tmp}/m.safetensors --style a.jpg", "cin trains on several styles"),
    ],
)
def test_train_style_bad_input(capsys, tmp_path, arguments, message) -> None:
    argv = ["train-style", *arguments.format(tmp=tmp_path).split(), "--workdir", tmp_path / "w"]
    code, _, err = run(capsys, argv)
    assert code == 2
    assert message.format(tmp=tmp_path) in err
    assert "Traceback" not in err
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "w").exists()
