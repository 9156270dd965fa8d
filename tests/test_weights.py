"""nstcourse.vgg_weights: catalog, resolution order, downloads, file layouts, bad files."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import pytest
import torch
import torchvision

from nstcourse import vgg_weights as W
from nstcourse.vgg_weights import WeightsError, conv_names, identify, load_vgg_weights

PARTIAL_SHA = "ec76ebde9301c2552adaff3f52c4a166176fbb664b5e1dc71a52ceb9448f23ab"


def _features_file(path: Path, arch: str = "vgg19", full: bool = False) -> Path:
    """Save a randomly initialised torchvision VGG as a features-only or full state dict."""
    model = getattr(torchvision.models, arch)(weights=None)
    state = model.state_dict() if full else model.features.state_dict()
    torch.save(state, path)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _patch_catalog(monkeypatch, filename: str, **changes) -> W.KnownWeights:
    catalog = tuple(
        dataclasses.replace(k, **changes) if k.filename == filename else k for k in W.VGG_CATALOG
    )
    monkeypatch.setattr(W, "VGG_CATALOG", catalog)
    return next(k for k in catalog if k.filename == filename)


def test_conv_names_follow_the_paper():
    assert conv_names("vgg16")[:3] == ["conv1_1", "conv1_2", "conv2_1"]
    assert len(conv_names("vgg16")) == 13 and conv_names("vgg16")[-1] == "conv5_3"
    assert len(conv_names("vgg19")) == 16 and conv_names("vgg19")[-1] == "conv5_4"
    with pytest.raises(ValueError, match="vgg11"):
        conv_names("vgg11")


def test_data_pack_vgg19_is_recognised_as_partial_caffe(partial_vgg19: Path):
    assert identify(partial_vgg19).sha256 == PARTIAL_SHA
    w = load_vgg_weights("vgg19", partial_vgg19)
    assert (w.convention, w.source, w.arch) == ("caffe", "explicit", "vgg19")
    assert w.layers == conv_names("vgg19")[:8]  # conv1_1 … conv3_4
    assert w.convs["conv3_4"][0].shape == (256, 256, 3, 3)


def test_weights_dir_is_searched(partial_vgg19: Path, monkeypatch):
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(partial_vgg19.parent))
    w = load_vgg_weights("vgg19", download=False)
    assert w.path == partial_vgg19 and w.source == "$NSTCOURSE_WEIGHTS_DIR"


def test_torch_hub_cache_is_searched_after_weights_dir(partial_vgg19: Path, monkeypatch):
    monkeypatch.delenv("NSTCOURSE_WEIGHTS_DIR", raising=False)
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    hub.mkdir(parents=True)
    shutil.copy(partial_vgg19, hub / partial_vgg19.name)
    w = load_vgg_weights("vgg19", download=False)
    assert w.source == "torch hub cache" and w.path == hub / partial_vgg19.name


def test_missing_offline_names_file_url_and_folder(monkeypatch, tmp_path, closed_port_url):
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(tmp_path / "empty"))
    url = closed_port_url
    _patch_catalog(monkeypatch, "vgg19-dcbb9e9d.pth", url=url)
    with pytest.raises(WeightsError) as err:
        load_vgg_weights("vgg19")
    message = str(err.value)
    assert "vgg19-dcbb9e9d.pth" in message and url in message
    assert str(tmp_path / "empty") in message and "checkpoints" in message
    assert not list((Path(torch.hub.get_dir()) / "checkpoints").glob("*"))


def test_download_false_says_where_to_put_the_file(monkeypatch):
    monkeypatch.delenv("NSTCOURSE_WEIGHTS_DIR", raising=False)
    with pytest.raises(WeightsError, match=r"vgg16-397923af\.pth.*download\.pytorch\.org"):
        load_vgg_weights("vgg16", download=False)


def test_download_verifies_sha256_prefix(http_server, monkeypatch):
    monkeypatch.delenv("NSTCOURSE_WEIGHTS_DIR", raising=False)
    served = _features_file(http_server.root / "vgg16-397923af.pth", "vgg16")
    url = http_server.url(served.name)
    _patch_catalog(monkeypatch, "vgg16-397923af.pth", url=url, sha256=_sha(served)[:8])
    w = load_vgg_weights("vgg16")
    assert w.source == "downloaded" and w.convention == "torchvision"
    assert w.path.read_bytes() == served.read_bytes()
    assert w.layers == conv_names("vgg16")


def test_download_with_bad_checksum_keeps_nothing(http_server, monkeypatch):
    monkeypatch.delenv("NSTCOURSE_WEIGHTS_DIR", raising=False)
    served = _features_file(http_server.root / "vgg16-397923af.pth", "vgg16")
    url = http_server.url(served.name)
    _patch_catalog(monkeypatch, "vgg16-397923af.pth", url=url, sha256="00000000")
    with pytest.raises(WeightsError, match="checksum mismatch"):
        load_vgg_weights("vgg16")
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    assert not hub.exists() or not list(hub.iterdir())


def test_features_only_full_checkpoint_and_safetensors_agree(tmp_path):
    from safetensors.torch import save_file

    model = torchvision.models.vgg19(weights=None)
    torch.save(model.state_dict(), tmp_path / "full.pth")
    torch.save(model.features.state_dict(), tmp_path / "features.pth")
    save_file(model.features.state_dict(), str(tmp_path / "features.safetensors"))
    loaded = [
        load_vgg_weights("vgg19", tmp_path / name, convention="torchvision")
        for name in ("full.pth", "features.pth", "features.safetensors")
    ]
    for w in loaded:
        assert w.layers == conv_names("vgg19")
        assert torch.equal(w.convs["conv5_4"][0], model.features[34].weight)


def test_loads_with_weights_only_on_cpu(tmp_path, monkeypatch):
    path = _features_file(tmp_path / "f.pth")
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_vgg_weights("vgg19", path, convention="torchvision")
    assert calls and calls[0]["weights_only"] is True and str(calls[0]["map_location"]) == "cpu"


def test_unknown_file_needs_a_convention(tmp_path):
    path = _features_file(tmp_path / "mine.pth")
    with pytest.raises(WeightsError, match="convention="):
        load_vgg_weights("vgg19", path)
    assert load_vgg_weights("vgg19", path, convention="caffe").convention == "caffe"
    with pytest.raises(ValueError, match="convention"):
        load_vgg_weights("vgg19", path, convention="keras")


def test_catalog_convention_and_arch_are_enforced(partial_vgg19: Path):
    with pytest.raises(WeightsError, match="'caffe', not 'torchvision'"):
        load_vgg_weights("vgg19", partial_vgg19, convention="torchvision")
    with pytest.raises(WeightsError, match="holds vgg19"):
        load_vgg_weights("vgg16", partial_vgg19)


def test_file_with_a_catalog_name_but_other_bytes_is_refused(tmp_path):
    path = _features_file(tmp_path / "vgg19-dcbb9e9d.pth")
    with pytest.raises(WeightsError, match="corrupt or different"):
        load_vgg_weights("vgg19", path)


def test_vgg16_file_read_as_vgg19_fails_on_shapes(tmp_path):
    path = _features_file(tmp_path / "v16.pth", "vgg16")
    with pytest.raises(WeightsError, match=r"conv4_1 \(features\.19\).*really vgg19"):
        load_vgg_weights("vgg19", path, convention="torchvision")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a checkpoint at all", "cannot read"),
        (None, "no VGG feature keys"),
    ],
)
def test_bad_files_get_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.pth"
    if content is None:
        torch.save({"encoder.weight": torch.zeros(3)}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(WeightsError, match=message) as err:
        load_vgg_weights("vgg19", path, convention="torchvision")
    assert str(path) in str(err.value)


class _NotATensor:
    pass


def test_pickled_objects_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"features.0.weight": _NotATensor()}, path)
    with pytest.raises(WeightsError, match="cannot read"):
        load_vgg_weights("vgg19", path, convention="torchvision")


def test_missing_explicit_file():
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_vgg_weights("vgg19", "/nonexistent/nope.pth")
