"""An AdaIN decoder runs behind exactly the encoder it was trained with, whichever VGG-19
a user has; and the VGG search takes the first file that has the layers asked for.

The trap: a torchvision-convention VGG-19 first in the search (what a student downloads)
gives features ~60× larger than the Caffe VGG-19 the shipped decoder was trained behind.
Here that file is synthetic (random tensors under torchvision's file name, the catalog's
checksum patched to match it).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from clirun import run
from PIL import Image

from nstcourse import vgg_weights as W
from nstcourse.checkpoints import CheckpointError, checkpoint_info, load_model, save_model
from nstcourse.features import VGGFeatures
from nstcourse.style.adain import STYLE_LAYERS, AdaINNet, Decoder
from nstcourse.style.models import checkpoint_path, load_style_checkpoint, load_style_model
from nstcourse.vgg_weights import WeightsError, find_vgg_file, load_vgg_weights

TORCHVISION_VGG19 = "vgg19-dcbb9e9d.pth"
PARTIAL_VGG19 = "vgg19_keras_caffe_conv1_1-conv3_4.pth"


@pytest.fixture(autouse=True)
def _shipped_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NSTCOURSE_CHECKPOINTS_DIR", raising=False)
    monkeypatch.delenv("NSTCOURSE_VGG_MISSING", raising=False)


def _catalog_file(monkeypatch, folder: Path, filename: str, convs: int | None = None) -> Path:
    """A random VGG-19 features file saved as catalog file ``filename`` in ``folder`` (its
    first ``convs`` conv layers only, if given), the catalog's sha256 patched to match."""
    generator = torch.Generator().manual_seed(len(filename))
    names, state, c_in = W.layer_names("vgg19"), {}, 3
    layers = list(zip(W.conv_names("vgg19"), W.conv_channels("vgg19"), strict=True))
    for name, c_out in layers[:convs]:
        index = names.index(name)  # torchvision's key: features.<index>
        state[f"{index}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=generator) * 0.05
        state[f"{index}.bias"] = torch.randn(c_out, generator=generator) * 0.05
        c_in = c_out
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / filename)
    digest = hashlib.sha256((folder / filename).read_bytes()).hexdigest()
    catalog = tuple(
        dataclasses.replace(k, sha256=digest) if k.filename == filename else k
        for k in W.VGG_CATALOG
    )
    monkeypatch.setattr(W, "VGG_CATALOG", catalog)
    return folder / filename


@pytest.fixture
def torchvision_first(monkeypatch, tmp_path: Path) -> Path:
    """$NSTCOURSE_WEIGHTS_DIR holds a torchvision-convention VGG-19 and nothing else."""
    path = _catalog_file(monkeypatch, tmp_path / "tv_weights", TORCHVISION_VGG19)
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(path.parent))
    return path


@pytest.fixture
def photo_and_style() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, 40, 48, generator=generator), torch.rand(
        1, 3, 32, 32, generator=generator
    )


def _caffe_reference(decoder: Decoder, partial_vgg19: Path) -> AdaINNet:
    """The decoder behind the data pack's Caffe VGG-19, as it was trained."""
    layers = list(STYLE_LAYERS[decoder.layer])
    return AdaINNet(VGGFeatures(layers, weights=partial_vgg19, device="cpu"), decoder).eval()


def test_shipped_adain_carries_the_caffe_encoder_it_was_trained_with(partial_vgg19: Path):
    info = checkpoint_info(checkpoint_path("adain"))
    assert info["kwargs"]["encoder_convention"] == info["vgg"]["convention"] == "caffe"
    assert info["vgg"]["sha256"] == W.weights_sha256(partial_vgg19)
    carried = load_model(Decoder, checkpoint_path("adain"), device="cpu").encoder_weights()
    caffe = load_vgg_weights("vgg19", partial_vgg19).convs
    assert list(carried) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]
    for name, (weight, bias) in carried.items():
        assert torch.equal(weight, caffe[name][0]) and torch.equal(bias, caffe[name][1])


def test_shipped_adain_ignores_a_torchvision_vgg_first_in_the_search(
    torchvision_first: Path, partial_vgg19: Path, photo_and_style
):
    plain = VGGFeatures(["relu3_1"], device="cpu")  # the trap is armed:
    assert plain.weights_info.path == torchvision_first
    assert plain.weights_info.convention == "torchvision"
    net = load_style_model("adain", device="cpu")
    assert isinstance(net, AdaINNet) and net.encoder.weights_info.convention == "caffe"
    reference = _caffe_reference(load_model(Decoder, checkpoint_path("adain")), partial_vgg19)
    with torch.no_grad():
        assert torch.equal(net(*photo_and_style), reference(*photo_and_style))


def _write_photo(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "photo.png")
    Image.fromarray(pixels[::-1, ::-1].copy()).save(folder / "style.png")
    return folder / "photo.png"


def test_fast_stylize_adain_is_the_same_whichever_vgg_is_first(
    capsys, monkeypatch, tmp_path: Path, partial_vgg19: Path
):
    photo = _write_photo(tmp_path / "in")
    style = photo.parent / "style.png"
    outputs = []
    for weights_dir in (partial_vgg19.parent, None):
        if weights_dir is None:  # now a torchvision VGG-19 comes first
            tv = _catalog_file(monkeypatch, tmp_path / "tv", TORCHVISION_VGG19)
            weights_dir = tv.parent
        monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(weights_dir))
        out = tmp_path / f"out{len(outputs)}.png"
        argv = ["fast-stylize", photo, "-o", out, "--model", "adain", "--style-image", style]
        code, _, err = run(capsys, [*argv, "--device", "cpu", "--quiet"])
        assert code == 0, err
        outputs.append(np.asarray(Image.open(out)))
    assert np.array_equal(outputs[0], outputs[1])


def _without_encoder(tmp_path: Path, *, vgg: dict | None) -> Path:
    """The shipped decoder saved as an older file (or a foreign one): no encoder inside,
    the ``vgg`` record given (None: none)."""
    shipped = load_model(Decoder, checkpoint_path("adain"), device="cpu")
    info = checkpoint_info(checkpoint_path("adain"))
    kwargs = {"layer": shipped.layer, "input_scale": shipped.input_scale}
    decoder = Decoder(**kwargs)
    decoder.body.load_state_dict(shipped.body.state_dict())
    metadata = {k: v for k, v in info.items() if k not in ("class", "kwargs", "vgg")}
    if vgg is not None:
        metadata["vgg"] = vgg
    save_model(decoder, tmp_path / "old.safetensors", kwargs=kwargs, metadata=metadata)
    return tmp_path / "old.safetensors"


def test_decoder_without_encoder_loads_only_its_recorded_vgg(
    monkeypatch, tmp_path: Path, partial_vgg19: Path, photo_and_style
):
    record = {"arch": "vgg19", "file": PARTIAL_VGG19, "convention": "caffe", "random_layers": []}
    old = _without_encoder(tmp_path, vgg=record)  # as written before the sha256 field
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(partial_vgg19.parent))
    net = load_style_checkpoint(old, device="cpu")
    assert isinstance(net, AdaINNet) and net.encoder.weights_info.path == partial_vgg19
    shipped = load_style_model("adain", device="cpu")
    with torch.no_grad():
        assert torch.equal(net(*photo_and_style), shipped(*photo_and_style))
    _catalog_file(monkeypatch, tmp_path / "tv", TORCHVISION_VGG19)
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(tmp_path / "tv"))
    with pytest.raises(WeightsError) as refused:
        load_style_checkpoint(old, device="cpu")
    message = str(refused.value)
    assert str(old) in message and PARTIAL_VGG19 in message and "caffe" in message
    assert str(tmp_path / "tv") in message and "train-style adain" in message


def test_decoder_without_encoder_refuses_a_file_of_another_sha256(
    monkeypatch, tmp_path: Path, partial_vgg19: Path
):
    record = {"file": PARTIAL_VGG19, "convention": "caffe", "sha256": "0" * 64}
    old = _without_encoder(tmp_path, vgg=record)
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(partial_vgg19.parent))
    with pytest.raises(WeightsError, match="sha256 0000"):
        load_style_checkpoint(old, device="cpu")


@pytest.mark.parametrize(
    "vgg",
    [None, {"file": "../../vgg.pth", "convention": "caffe"}, {"file": PARTIAL_VGG19}],
)
def test_decoder_without_encoder_or_record_is_refused(tmp_path: Path, vgg):
    old = _without_encoder(tmp_path, vgg=vgg)
    with pytest.raises(CheckpointError, match="must record the VGG-19"):
        load_style_checkpoint(old, device="cpu")


def test_decoder_with_a_bad_encoder_convention_is_refused(tmp_path: Path):
    decoder = Decoder(encoder_convention="caffe")
    path = tmp_path / "bad.safetensors"
    save_model(decoder, path, kwargs={"encoder_convention": "keras"})
    with pytest.raises(CheckpointError, match="encoder_convention"):
        load_style_checkpoint(path, device="cpu")


def test_train_style_adain_writes_its_encoder(
    monkeypatch, tmp_path: Path, data_pack: Path, partial_vgg19: Path, photo_and_style
):
    from nstcourse.style.recipes import AdaINRecipe, train_style

    monkeypatch.setenv("NSTCOURSE_DATA_DIR", str(data_pack))
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(partial_vgg19.parent))
    recipe = AdaINRecipe(
        max_images=1,
        styles=AdaINRecipe().styles[:2],
        short_side=40,
        style_short_side=40,
        crop=32,
        crops_per_image=2,
        batch_size=1,
        time_size=32,
    )
    out = tmp_path / "decoder.safetensors"
    train_style("adain", steps=1, out=out, recipe=recipe, progress=False, device="cpu",
                workdir=tmp_path / "w")  # fmt: skip
    info = checkpoint_info(out)
    assert info["kwargs"]["encoder_convention"] == "caffe"
    assert info["vgg"]["sha256"] == W.weights_sha256(partial_vgg19)
    _catalog_file(monkeypatch, tmp_path / "tv", TORCHVISION_VGG19)
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(tmp_path / "tv"))
    net = load_style_checkpoint(out, device="cpu")
    reference = _caffe_reference(load_model(Decoder, out), partial_vgg19)
    with torch.no_grad():
        assert torch.equal(net(*photo_and_style), reference(*photo_and_style))


# --- the VGG search ---------------------------------------------------------------------------


@pytest.fixture
def partial_then_full(monkeypatch, tmp_path: Path) -> tuple[Path, Path]:
    """A partial VGG-19 (conv1_1 … conv3_4) in $NSTCOURSE_WEIGHTS_DIR and a full one in
    the torch hub cache, both synthetic catalog files."""
    partial = _catalog_file(monkeypatch, tmp_path / "weights", PARTIAL_VGG19, convs=8)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    full = _catalog_file(monkeypatch, hub, TORCHVISION_VGG19)
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(partial.parent))
    return partial, full


def test_search_takes_the_first_file_that_has_the_layers(partial_then_full):
    partial, full = partial_then_full
    assert find_vgg_file("vgg19", layers=["relu2_1", "relu3_1"]) == (
        partial,
        "$NSTCOURSE_WEIGHTS_DIR",
    )
    assert find_vgg_file("vgg19", layers=["conv3_4"])[0] == partial
    assert find_vgg_file("vgg19", layers=["relu1_1", "relu4_1"]) == (full, "torch hub cache")
    assert find_vgg_file("vgg19")[0] == full  # no layers named: all of them
    deep = VGGFeatures(["relu1_1", "conv4_2"], device="cpu")
    assert deep.weights_info.path == full and not deep.random_layers
    assert VGGFeatures(["relu3_1"], device="cpu").weights_info.path == partial


def test_search_falls_back_to_the_first_file_when_none_has_the_layers(monkeypatch, tmp_path: Path):
    partial = _catalog_file(monkeypatch, tmp_path / "weights", PARTIAL_VGG19, convs=8)
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(partial.parent))
    assert find_vgg_file("vgg19", layers=["relu5_1"], download=False)[0] == partial
    with pytest.raises(WeightsError, match="conv4_1"):
        VGGFeatures(["relu5_1"], device="cpu")


def test_search_refuses_unknown_layer_names(partial_then_full):
    with pytest.raises(ValueError, match="relu9_1"):
        find_vgg_file("vgg19", layers=["relu9_1"])
