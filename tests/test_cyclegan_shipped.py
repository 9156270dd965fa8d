"""The shipped horse ↔ zebra CycleGAN: what its file says, the issue's goal re-measured on
held-out photos, and ``nstcourse translate --model`` on a folder of full-size photos."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from clirun import run
from PIL import Image

from nstcourse.checkpoints import checkpoint_info
from nstcourse.features import VGGFeatures
from nstcourse.translate.cyclegan import CycleGAN
from nstcourse.translate.data import load_domain
from nstcourse.translate.metrics import DESCRIPTOR_LAYERS
from nstcourse.translate.models import checkpoint_path, load_cyclegan
from nstcourse.translate.recipes import (
    HORSES,
    TEST_SPLITS,
    ZEBRAS,
    CycleGANRecipe,
    TranslationScore,
)

PROBE_IMAGES = 150  # training photos per domain the probe is fit on (all 500: ~1 min more)


@pytest.fixture(autouse=True)
def _shipped_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NSTCOURSE_CHECKPOINTS_DIR", raising=False)
    monkeypatch.delenv("NSTCOURSE_VGG_MISSING", raising=False)


def test_the_file_holds_g_and_f_and_the_recipe_it_was_trained_by() -> None:
    info = checkpoint_info(checkpoint_path())
    recipe = info["recipe"]
    assert info["class"] == "CycleGAN" and info["model"] == "cyclegan"
    defaults = CycleGANRecipe()
    for field in ("domain_a", "domain_b", "crop", "ngf", "blocks", "lambda_cyc", "pool_size"):
        assert recipe[field] == getattr(defaults, field), field
    assert recipe["steps"] == recipe["constant_steps"] + recipe["decay_steps"]  # finished
    assert recipe["images_a"] == recipe["images_b"] == 500
    assert recipe["validate_on"] == list(TEST_SPLITS)
    assert info["metrics"]["test"] == {
        k: v for k, v in info["metrics"]["train"]["validation"][-1].items() if k != "step"
    }
    net = load_cyclegan(device="cpu")
    assert isinstance(net, CycleGAN) and not net.training


def test_the_goal_holds_on_the_test_photos(data_env: None) -> None:
    """Half-way from the probe's floor (real test horses) to its ceiling (real test
    zebras), re-measured here with a probe fit on part of the training photos, and no
    collapse (G's outputs vary at least half as much as its inputs)."""
    torch.set_num_threads(2)
    side = CycleGANRecipe().crop
    train = [load_domain(f, short_side=side, max_images=PROBE_IMAGES) for f in (HORSES, ZEBRAS)]
    test = [load_domain(f, short_side=side) for f in TEST_SPLITS]
    extractor = VGGFeatures(DESCRIPTOR_LAYERS, arch="vgg19", device="cpu")
    score = TranslationScore(
        extractor, (train[0], train[1]), (test[0], test[1]), device=torch.device("cpu")
    )
    floor, ceiling = score.reference["b_share_of_real_a"], score.reference["b_share_of_real_b"]
    assert ceiling - floor > 0.5, "the probe should tell real horses from real zebras"
    result = score(load_cyclegan(device="cpu"))
    assert result["b_share_of_G"] >= floor + (ceiling - floor) / 2, (result, floor, ceiling)
    assert result["spread_ratio_G"] > 0.5, result


def test_translate_a_folder_of_full_size_photos_both_ways(data_pack: Path, tmp_path, capsys):
    photos = tmp_path / "horses"
    photos.mkdir()
    for path in sorted((data_pack / "unpaired/horse2zebra/testA").glob("*.jpg"))[:2]:
        shutil.copy(path, photos)
    code, _, err = run(capsys, ["translate", photos, "-o", tmp_path / "zebras"])
    assert code == 0, err
    written = sorted((tmp_path / "zebras").iterdir())
    assert [p.stem for p in written] == sorted(p.stem for p in photos.iterdir())
    for src, dst in zip(sorted(photos.iterdir()), written, strict=True):
        assert Image.open(dst).size == Image.open(src).size
    code, _, err = run(capsys, ["translate", written[0], "-o", tmp_path / "back.png",
                                "--model", "zebra2horse"])  # fmt: skip
    assert code == 0, err
    assert Image.open(tmp_path / "back.png").size == Image.open(written[0]).size
