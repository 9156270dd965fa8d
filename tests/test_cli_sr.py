"""``nstcourse upscale`` and ``nstcourse train-sr``, in-process through ``cli.main``, with a
tiny ESPCN x2 checkpoint saved in tmp_path ($NSTCOURSE_CHECKPOINTS_DIR)."""

from __future__ import annotations

from pathlib import Path

import pytest
from clirun import run
from PIL import Image

import nstcourse.cli.sr
from nstcourse.checkpoints import save_model
from nstcourse.images import load_image, save_image
from nstcourse.sr.data import load_sr_set
from nstcourse.sr.espcn import ESPCN
from nstcourse.sr.models import load_pretrained, super_resolve
from nstcourse.sr.recipes import RECIPES, ESPCNRecipe


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A tiny espcn_x2 checkpoint, three images, a corrupt one, a text file; OUT folder."""
    checkpoints = tmp_path / "checkpoints"
    kwargs = {"scale": 2, "n1": 4, "n2": 4}
    save_model(ESPCN(**kwargs), checkpoints / "espcn_x2.safetensors", kwargs=kwargs,
               metadata={"scale": 2})  # fmt: skip
    monkeypatch.setenv("NSTCOURSE_CHECKPOINTS_DIR", str(checkpoints))
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (12, 10), (200, 30, 40)).save(images / "a.png")
    Image.new("L", (9, 11), 128).save(images / "b.jpg")
    (images / "c.png").write_bytes((images / "a.png").read_bytes()[:40])  # truncated
    (images / "notes.txt").write_text("not an image")
    small = tmp_path / "small.png"
    Image.new("RGB", (3, 20)).save(small)
    return {"images": images, "small": small, "out": tmp_path / "out", "tmp": tmp_path}


def written(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_upscale_one_file(capsys, env) -> None:
    out = env["out"] / "a_x2.png"
    code, stdout, err = run(capsys, ["upscale", env["images"] / "a.png", "-o", out, "--scale", 2])
    assert code == 0, err
    assert Image.open(out).size == (24, 20)
    assert f"wrote {out} (24x20)" in stdout


def test_upscale_folder_reports_a_bad_image_and_writes_the_rest(capsys, env) -> None:
    argv = ["upscale", env["images"], "-o", env["out"], "--scale", "2", "--quiet"]
    code, _, err = run(capsys, argv)
    assert code == 1
    assert written(env["out"]) == ["a.png", "b.jpg"]
    assert Image.open(env["out"] / "b.jpg").size == (18, 22)
    assert f"skipping {env['images'] / 'notes.txt'}: not an image file" in err
    assert f"{env['images'] / 'c.png'}: not an image file Pillow can read" in err
    assert "1 of 3 images failed: c.png" in err


# name: (arguments after "upscale", what stderr must say)
ERRORS = {
    "unknown model": (
        "{a} -o {out}/x.png --model edsr",
        "--model edsr: unknown model; known: srcnn, espcn, vdsr, srresnet, srgan, perceptual",
    ),
    "scale not shipped": (
        "{a} -o {out}/x.png --scale 5",
        "--scale 5: espcn has no x5 checkpoint; the course ships scale 2, 3, 4",
    ),
    "no scale": ("{a} -o {out}/x.png", "--scale: espcn needs a scale; the course ships 2, 3, 4"),
    "missing checkpoint": (
        "{a} -o {out}/x.png --scale 3",
        "espcn_x3.safetensors not found; train it with: nstcourse train-sr espcn --scale 3",
    ),
    "corrupt image": ("{c} -o {out}/x.png --scale 2", "{c}: not an image file Pillow can read"),
    "too small": (
        "{small} -o {out}/x.png --scale 2",
        "3x20 px is too small for espcn x2; both sides need at least 5 px",
    ),
    "missing input": ("{tmp}/nope.png -o {out}/x.png --scale 2", "nope.png: no such file"),
    "bad suffix": ("{a} -o {out}/x.txt --scale 2", "unknown image suffix"),
    "bad checkpoint": ("{a} -o {out}/x.png --checkpoint {notes}", "is not a safetensors"),
    "folder onto itself": ("{images} -o {images} --scale 2", "is the input folder"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_upscale_errors(capsys, env, case) -> None:
    args, message = ERRORS[case]
    names = {
        "a": env["images"] / "a.png",
        "c": env["images"] / "c.png",
        "notes": env["images"] / "notes.txt",
        **{key: env[key] for key in ("images", "small", "out", "tmp")},
    }
    before = written(env["images"])
    code, _, err = run(capsys, ["upscale", *args.format(**names).split()])
    assert code == 2
    assert err.startswith("nstcourse upscale: error: "), err
    assert message.format(**names) in err
    assert written(env["out"]) == []
    assert written(env["images"]) == before


TINY = ESPCNRecipe(n1=4, n2=4, max_images=1, lr_patch=6, patches_per_image=2, batch_size=2,
                   checkpoint_every=1)  # fmt: skip


@pytest.mark.datapack
def test_train_sr_then_upscale_with_the_checkpoint(capsys, env, data_pack, monkeypatch) -> None:
    monkeypatch.setenv("NSTCOURSE_DATA_DIR", str(data_pack))
    monkeypatch.setattr(nstcourse.cli.sr, "RECIPES", {**RECIPES, "espcn": lambda: TINY})
    model = env["tmp"] / "m.safetensors"
    argv = ["train-sr", "espcn", "--scale", "3", "--steps", "1", "-o", model,
            "--workdir", env["tmp"] / "run", "--device", "cpu"]  # fmt: skip
    code, stdout, err = run(capsys, argv)
    assert code == 0, err
    assert f"wrote {model}" in stdout and "Set5 x3: PSNR-Y" in stdout
    out = env["out"] / "a.png"
    argv = ["upscale", env["images"] / "a.png", "-o", out, "--checkpoint", model, "--quiet"]
    code, _, err = run(capsys, argv)
    assert code == 0, err
    assert Image.open(out).size == (36, 30)


def test_train_sr_interrupted_says_how_to_resume(capsys, env, monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nstcourse.cli.sr, "train_sr", interrupted)
    out = env["tmp"] / "m.safetensors"
    code, _, err = run(capsys, ["train-sr", "vdsr", "--steps", "10", "-o", out, "--quiet"])
    assert code == 130
    assert "The last checkpoint in runs/vdsr_x2-3-4 is kept" in err
    assert f"resume with the same command:\n  nstcourse train-sr vdsr --steps 10 -o {out}" in err
    assert not out.exists()


def test_train_sr_bad_input(capsys, env) -> None:
    out = env["tmp"] / "m.safetensors"
    code, _, err = run(capsys, ["train-sr", "espcn", "--scale", "2,3", "--steps", "1", "-o", out])
    assert code == 2
    assert "nstcourse train-sr: error: espcn is trained for one scale at a time" in err
    code, _, err = run(capsys, ["train-sr", "espcn", "--steps", "1", "-o", env["tmp"] / "m.pt"])
    assert code == 2 and "must be a .safetensors file" in err
    code, _, err = run(capsys, ["train-sr", "edsr", "--steps", "1", "-o", out])
    assert code == 2 and "invalid choice: 'edsr'" in err
    code, _, err = run(capsys, ["train-sr", "espcn", "--steps", "1", "-o", out,
                                "--precision", "float16"])  # fmt: skip
    assert code == 2 and "--precision: invalid choice: 'float16'" in err
    code, _, err = run(capsys, ["train-sr", "espcn", "--steps", "1", "-o", out,
                                "--lr-decay-every", "-1"])  # fmt: skip
    assert code == 2 and "--lr-decay-every -1: use N >= 0 (0: never)" in err
    assert not out.exists()


@pytest.mark.datapack
@pytest.mark.parametrize("scale", [4, 8])
def test_upscale_with_the_shipped_perceptual_nets(capsys, tmp_path, data_env, scale) -> None:
    """A file and a folder of real photos (96-px crops of Set5) through the course's x4 / x8
    perceptual checkpoint: the CLI's pictures are the package's, to 8-bit rounding."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for stem, hr in load_sr_set("Set5")[:2]:
        save_image(hr[..., 96:192, 96:192], photos / f"{stem}.png")
    out = tmp_path / "out"
    argv = ["upscale", photos, "-o", out, "--model", "perceptual", "--scale", scale, "--quiet"]
    code, _, err = run(capsys, argv)
    assert code == 0, err
    assert written(out) == written(photos)
    model = load_pretrained("perceptual", scale, device="cpu")
    for name in written(photos):
        expected = super_resolve(model, load_image(photos / name), name="perceptual", scale=scale)
        got = load_image(out / name)
        assert got.shape == (1, 3, 96 * scale, 96 * scale)
        assert (got - expected).abs().max() <= 1 / 255 + 1e-6
    single = tmp_path / "one.png"
    argv = ["upscale", photos / "baby.png", "-o", single, "--model", "perceptual", "--scale", scale]
    code, stdout, err = run(capsys, argv)
    assert code == 0, err
    assert f"wrote {single} ({96 * scale}x{96 * scale})" in stdout
