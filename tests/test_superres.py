"""``nstcourse.sr.models`` and ``nstcourse.sr.recipes``: feeding each SR model, the papers'
scoring protocol, course checkpoints, and ``train_sr`` (tiny recipes, a few steps)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from nstcourse import training
from nstcourse.checkpoints import read_metadata, save_model
from nstcourse.colour import rgb_to_ycbcr, ycbcr_to_rgb
from nstcourse.sr.data import bicubic_upscale
from nstcourse.sr.espcn import ESPCN
from nstcourse.sr.models import MODELS, checkpoint_path, evaluate, load_pretrained, super_resolve
from nstcourse.sr.perceptual import PerceptualSRNet
from nstcourse.sr.recipes import (
    ESPCNRecipe,
    MultiScalePatchDataset,
    SRGANRecipe,
    SRResNetRecipe,
    VDSRRecipe,
    train_sr,
)
from nstcourse.sr.srcnn import SRCNN
from nstcourse.sr.srgan import SRResNet
from nstcourse.sr.vdsr import VDSR


def tiny_model(name: str, scale: int) -> nn.Module:
    """A random-weight model of ``name``'s class, a few channels wide (tiny for speed)."""
    if name == "srcnn":
        return SRCNN(n1=4, n2=4)
    if name == "espcn":
        return ESPCN(scale=scale, n1=4, n2=4)
    if name == "vdsr":
        return VDSR(depth=3, width=4)
    if name == "perceptual":
        return PerceptualSRNet(scale=scale, blocks=1, width=4)
    return SRResNet(scale=scale, blocks=1, width=4)


POWERS_OF_TWO = ("srresnet", "srgan", "perceptual")
CASES = [(name, s) for name in MODELS for s in ((2, 4) if name in POWERS_OF_TWO else (2, 3, 4))]


# --- super_resolve ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "scale"), CASES)
def test_super_resolve_shape_and_range(name, scale) -> None:
    lr = torch.rand(1, 3, 13, 11)
    sr = super_resolve(tiny_model(name, scale), lr, name=name, scale=scale)
    assert sr.shape == (1, 3, 13 * scale, 11 * scale)
    assert sr.min() >= 0 and sr.max() <= 1


def test_identity_y_model_is_bicubic_luma_with_bicubic_chroma() -> None:
    lr = torch.rand(1, 3, 10, 12)
    sr = super_resolve(nn.Identity(), lr, name="vdsr", scale=3)
    ycbcr = rgb_to_ycbcr(lr)
    expected = ycbcr_to_rgb(bicubic_upscale(ycbcr, 3, method="matlab")).clamp(0, 1)
    torch.testing.assert_close(sr, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(("name", "scale"), [("espcn", 3), ("vdsr", 2), ("srresnet", 2)])
def test_tiles_give_the_whole_image_result(name, scale) -> None:
    model = tiny_model(name, scale).eval()
    lr = torch.rand(1, 3, 19, 23)
    whole = super_resolve(model, lr, name=name, scale=scale)
    tiled = super_resolve(model, lr, name=name, scale=scale, tile=8)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_super_resolve_keeps_the_training_mode() -> None:
    model = tiny_model("srresnet", 2).train()
    super_resolve(model, torch.rand(1, 3, 9, 9), name="srresnet", scale=2)
    assert model.training


def test_super_resolve_errors() -> None:
    model = tiny_model("espcn", 3)
    with pytest.raises(ValueError, match="unknown SR model 'x'; known: srcnn, espcn"):
        super_resolve(model, torch.rand(1, 3, 9, 9), name="x", scale=3)
    with pytest.raises(ValueError, match="too small for espcn x3: both sides need at least 5 px"):
        super_resolve(model, torch.rand(1, 3, 4, 9), name="espcn", scale=3)
    with pytest.raises(ValueError, match=r"expected \(1, 1, 18, 18\); was it built for x2"):
        super_resolve(model, torch.rand(1, 3, 9, 9), name="espcn", scale=2)


# --- evaluate --------------------------------------------------------------------------------


@pytest.mark.datapack
def test_bicubic_baseline_on_set5_x3(data_pack, monkeypatch) -> None:
    monkeypatch.setenv("NSTCOURSE_DATA_DIR", str(data_pack))
    result = evaluate(nn.Identity(), "srcnn", 3, "Set5")
    assert result["bicubic_psnr_y"] == pytest.approx(30.39, abs=0.05)  # papers: 30.39
    assert set(result["per_image"]) == {"baby", "bird", "butterfly", "head", "woman"}
    # an identity net on bicubic Y is the bicubic baseline
    assert result["psnr_y"] == pytest.approx(result["bicubic_psnr_y"], abs=1e-3)


# --- course checkpoints ----------------------------------------------------------------------


def test_missing_checkpoint_names_the_file_and_the_command(tmp_path) -> None:
    with pytest.raises(FileNotFoundError) as error:
        load_pretrained("espcn", 4, checkpoints_dir=tmp_path)
    message = str(error.value)
    assert str(tmp_path / "espcn_x4.safetensors") in message
    assert "nstcourse train-sr espcn --scale 4 --steps N -o" in message


def test_checkpoint_names_and_scales(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NSTCOURSE_CHECKPOINTS_DIR", str(tmp_path))
    assert checkpoint_path("srcnn") == tmp_path / "srcnn_x3.safetensors"
    assert checkpoint_path("vdsr", 4).name == "vdsr.safetensors"
    assert checkpoint_path("srgan").name == "srgan_x4.safetensors"
    with pytest.raises(ValueError, match="espcn has no x5 checkpoint; the course ships x2, x3, x4"):
        checkpoint_path("espcn", 5)
    with pytest.raises(ValueError, match="espcn: give a scale"):
        load_pretrained("espcn")


def test_load_pretrained_round_trip_and_class_check(tmp_path) -> None:
    model = ESPCN(scale=2, n1=4, n2=4)
    save_model(model, tmp_path / "espcn_x2.safetensors", kwargs={"scale": 2, "n1": 4, "n2": 4},
               metadata={"scale": 2})  # fmt: skip
    loaded = load_pretrained("espcn", 2, device="cpu", checkpoints_dir=tmp_path)
    assert not loaded.training
    torch.testing.assert_close(loaded.conv1.weight, model.conv1.weight)
    save_model(SRCNN(n1=4, n2=4), tmp_path / "srcnn_x3.safetensors", kwargs={"n1": 4, "n2": 4})
    (tmp_path / "espcn_x3.safetensors").write_bytes(
        (tmp_path / "srcnn_x3.safetensors").read_bytes()
    )
    with pytest.raises(ValueError, match="holds a SRCNN, not a espcn"):
        load_pretrained("espcn", 3, checkpoints_dir=tmp_path)
    (tmp_path / "espcn_x4.safetensors").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="espcn_x4.safetensors is not a safetensors checkpoint"):
        load_pretrained("espcn", 4, checkpoints_dir=tmp_path)


# --- train_sr ---------------------------------------------------------------------------------

TINY_ESPCN = ESPCNRecipe(
    n1=4, n2=4, max_images=2, lr_patch=6, patches_per_image=4, batch_size=2,
    validate_every=100, checkpoint_every=1,
)  # fmt: skip


@pytest.mark.datapack
def test_train_sr_writes_a_loadable_checkpoint_and_resumes(tmp_path, data_env) -> None:
    out, workdir = tmp_path / "espcn_x2.safetensors", tmp_path / "run"
    kwargs = dict(out=out, workdir=workdir, progress=False, device="cpu")
    recipe = replace(TINY_ESPCN, scales=(2,))
    first = train_sr("espcn", steps=2, recipe=recipe, **kwargs)
    assert first["recipe"]["resumed_from_step"] == 0
    metadata = read_metadata(out)
    assert metadata["class"] == "ESPCN" and metadata["scale"] == 2
    recipe = metadata["recipe"]
    assert recipe["lr_patch"] == 6 and recipe["batch_size"] == 2 and recipe["steps"] == 2
    assert (
        recipe["data"] == ["sr/T91", "photos/bsds500_train"]
        and recipe["torch"] == torch.__version__
    )
    assert recipe["command"] == f"train_sr('espcn', steps=2, seed=0, out={str(out)!r})"
    set5 = metadata["metrics"]["Set5"]["x2"]
    assert set5["bicubic_psnr_y"] == pytest.approx(33.65, abs=0.05)
    assert set(set5) >= {"psnr_y", "ssim_y", "bicubic_ssim_y", "per_image"}
    assert load_pretrained("espcn", 2, device="cpu", checkpoints_dir=tmp_path).scale == 2

    second = train_sr("espcn", steps=3, recipe=replace(TINY_ESPCN, scales=(2,)), **kwargs)
    assert second["recipe"]["resumed_from_step"] == 2
    # the recorded wall time is the whole run's, summed over both calls
    assert second["recipe"]["wall_time_s"] > first["recipe"]["wall_time_s"]
    state = torch.load(workdir / "train_state.pt", weights_only=True)
    assert state["step"] == 3 and state["history"]["step"] == [0, 1, 2]

    with pytest.raises(ValueError, match="holds a run with another recipe .*batch_size"):
        train_sr("espcn", steps=4, recipe=replace(TINY_ESPCN, scales=(2,), batch_size=3), **kwargs)


@pytest.mark.datapack
@pytest.mark.parametrize("name", ["vdsr", "srgan"])
def test_every_recipe_trains_a_step(name, tmp_path, data_env) -> None:
    common = dict(
        max_images=1, patches_per_image=2, batch_size=2, checkpoint_every=1, precision="auto"
    )
    kwargs = dict(steps=1, validate_on=None, progress=False, device="cpu")
    if name == "vdsr":
        recipe = VDSRRecipe(depth=3, width=4, hr_patch=12, scales=(2, 3), **common)
    else:
        init = tmp_path / "srresnet_x4.safetensors"
        srresnet = SRResNetRecipe(blocks=1, width=4, lr_patch=4, **common)
        train_sr("srresnet", out=init, workdir=tmp_path / "r0", recipe=srresnet, **kwargs)
        recipe = SRGANRecipe(generator_init=str(init), lr_patch=4, d_width=4, **common)
    out = tmp_path / f"{name}.safetensors"
    train_sr(name, out=out, workdir=tmp_path / "r1", recipe=recipe, **kwargs)
    metadata = read_metadata(out)
    assert metadata["model"] == name
    if name == "vdsr":
        assert metadata["scales"] == [2, 3] and metadata["recipe"]["clip"] == "adjustable"
    else:
        assert metadata["class"] == "SRResNet" and metadata["recipe"]["vgg_layer"] == "relu2_2"
    assert json.loads(json.dumps(metadata)) == metadata


def test_multi_scale_patches_mix_scales_at_one_size() -> None:
    images = [torch.rand(1, 3, 48, 48)]
    dataset = MultiScalePatchDataset(images, scales=(2, 3, 4), patch_size=12, patches_per_image=2)
    assert len(dataset) == 6
    for index in range(6):
        x, y = dataset[index]
        assert x.shape == y.shape == (1, 12, 12)


def test_train_sr_refuses_bad_arguments(tmp_path) -> None:
    kwargs = dict(out=tmp_path / "m.safetensors", progress=False, steps=1)
    espcn = ESPCNRecipe(scales=(2,))
    with pytest.raises(ValueError, match="espcn is trained for one scale at a time"):
        train_sr("espcn", recipe=replace(espcn, scales=(2, 3)), **kwargs)
    with pytest.raises(ValueError, match="upsamples by 2 per block"):
        train_sr("srresnet", recipe=SRResNetRecipe(scales=(3,)), **kwargs)
    with pytest.raises(ValueError, match="scales must be integers >= 2"):
        train_sr("espcn", recipe=replace(espcn, scales=(1,)), **kwargs)
    with pytest.raises(ValueError, match="must be a .safetensors file"):
        train_sr("espcn", recipe=espcn, steps=1, out=tmp_path / "m.pt", progress=False)
    with pytest.raises(ValueError, match="no training recipe for 'edsr'"):
        train_sr("edsr", **kwargs)
    with pytest.raises(TypeError, match="recipe for srcnn must be a SRCNNRecipe"):
        train_sr("srcnn", recipe=espcn, **kwargs)
    with pytest.raises(ValueError, match="precision='float16'; use 'auto' or one of"):
        train_sr("espcn", recipe=replace(espcn, precision="float16"), **kwargs)
    with pytest.raises(ValueError, match="lr_decay_every must be >= 1"):
        train_sr("espcn", recipe=replace(espcn, lr_decay_every=0), **kwargs)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        train_sr("espcn", recipe=replace(espcn, batch_size=0), **kwargs)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        train_sr("espcn", recipe=espcn, out=tmp_path / "m.safetensors", steps=0)
    assert not any(Path(tmp_path).iterdir())


@pytest.mark.datapack
@pytest.mark.parametrize("native", [True, False])
def test_train_sr_precision_auto_and_the_command_given(native, tmp_path, data_env, monkeypatch):
    monkeypatch.setattr(training, "native_bf16", lambda device: native)
    out = tmp_path / "espcn_x2.safetensors"
    recipe = replace(TINY_ESPCN, scales=(2,), lr_decay_every=None, precision="auto")
    train_sr(
        "espcn", steps=1, out=out, workdir=tmp_path / "run", recipe=recipe, validate_on=None,
        progress=False, device="cpu", command="made by hand",
    )  # fmt: skip
    stored = read_metadata(out)["recipe"]
    assert stored["precision"] == ("bfloat16" if native else "float32")
    assert stored["lr_decay_every"] is None and stored["command"] == "made by hand"


def test_recipes_are_frozen() -> None:
    with pytest.raises(AttributeError):
        replace(TINY_ESPCN).lr = 1.0  # type: ignore[misc]
