"""CycleGAN's data, recipe, metrics and commands: nstcourse.translate.data, .recipes,
.metrics and ``nstcourse translate`` / ``train-cyclegan``."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from nstcourse.checkpoints import load_model, read_metadata, save_model
from nstcourse.translate.cyclegan import CycleGAN
from nstcourse.translate.data import UnpairedCrops, load_domain, load_size_for, to_float
from nstcourse.translate.metrics import (
    DESCRIPTOR_LAYERS,
    DomainProbe,
    channel_statistics,
    cycle_l1,
    kid,
    spread,
)
from nstcourse.translate.models import translate_image
from nstcourse.translate.recipes import CycleGANRecipe, TranslationScore, train_cyclegan
from tests.clirun import run


def write_images(folder: Path, sizes: list[tuple[int, int]], seed: int) -> Path:
    """Random RGB images of (width, height) ``sizes`` as PNGs in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k, (w, h) in enumerate(sizes):
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{k:02d}.png")
    return folder


@pytest.fixture
def domains(tmp_path: Path) -> tuple[Path, Path]:
    a = write_images(tmp_path / "a", [(48, 40), (40, 60), (44, 44)], seed=1)
    b = write_images(tmp_path / "b", [(50, 50), (36, 48)], seed=2)
    return a, b


TINY = CycleGANRecipe(
    crop=32, ngf=4, blocks=1, ndf=4, pool_size=2, constant_steps=2, decay_steps=2,
    precision="float32", checkpoint_every=2,
)  # fmt: skip


# ---------------------------------------------------------------- data


def test_load_size_keeps_the_papers_ratio():
    assert load_size_for(256) == 286
    assert load_size_for(128) == 143


def test_load_domain_gives_uint8_squares_of_the_short_side(domains):
    a, _ = domains
    images = load_domain(str(a), short_side=36)
    assert images.shape == (3, 3, 36, 36) and images.dtype == torch.uint8
    assert load_domain(str(a), short_side=36, max_images=2).shape[0] == 2
    with pytest.raises(ValueError, match="short_side"):
        load_domain(str(a), short_side=0)


def test_unpaired_crops_depend_only_on_seed_and_index():
    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8, generator=gen)
    b = torch.arange(5, dtype=torch.uint8).mul(40).view(5, 1, 1, 1).expand(5, 3, 40, 40)
    crops = UnpairedCrops(a, b, crop=32, seed=7)
    assert len(crops) == 5  # max(|A|, |B|): the reference's epoch
    x, y = crops[4]
    assert x.shape == y.shape == (3, 32, 32) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    again = UnpairedCrops(a, b, crop=32, seed=7)[4]
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    # x is a crop of A[4 mod 3], or its mirror image
    windows = to_float(a[1]).unfold(1, 32, 1).unfold(2, 32, 1)  # (3, 9, 9, 32, 32)
    positions = [(i, j) for i in range(9) for j in range(9)]
    assert any(torch.equal(windows[:, i, j], c) for i, j in positions for c in (x, x.flip(-1)))
    # y's partner is drawn at random (B image k is the grey level 40k): all appear
    partners = {round(UnpairedCrops(a, b, crop=32, seed=s)[0][1].mean().item() * 255 / 40)
                for s in range(40)}  # fmt: skip
    assert partners == set(range(5))


@pytest.mark.parametrize(
    "a, message",
    [
        (torch.zeros(2, 3, 40, 40), "uint8"),
        (torch.zeros(0, 3, 40, 40, dtype=torch.uint8), "no images"),
        (torch.zeros(2, 3, 20, 20, dtype=torch.uint8), "smaller than crop"),
    ],
)
def test_unpaired_crops_refuse_bad_domains_naming_them(a, message):
    b = torch.zeros(2, 3, 40, 40, dtype=torch.uint8)
    with pytest.raises(ValueError, match=message) as excinfo:
        UnpairedCrops(a, b, crop=32)
    assert "domain_a" in str(excinfo.value)


# ---------------------------------------------------------------- recipe


def test_train_cyclegan_writes_g_and_f_with_its_recipe(domains, tmp_path):
    a, b = domains
    recipe = replace(TINY, domain_a=str(a), domain_b=str(b))
    out = tmp_path / "tiny.safetensors"
    meta = train_cyclegan(out=out, workdir=tmp_path / "run", recipe=recipe, progress=False)
    assert meta["recipe"]["steps"] == 4 and meta["recipe"]["images_a"] == 3
    assert meta["recipe"]["images_b"] == 2 and meta["recipe"]["lambda_cyc"] == 10.0
    assert set(meta["history"]) >= {"gan_G", "cycle", "identity", "D_X", "D_Y"}
    net = load_model(CycleGAN, out, device="cpu")
    assert read_metadata(out)["kwargs"] == {"ngf": 4, "blocks": 1}
    x = torch.rand(1, 3, 36, 44)
    assert net(x).shape == net(x, reverse=True).shape == x.shape
    assert not torch.equal(net(x), net(x, reverse=True))  # two generators


def test_train_cyclegan_refuses_a_crop_the_generator_cannot_take(tmp_path):
    with pytest.raises(ValueError, match="crop=30"):
        train_cyclegan(out=tmp_path / "x.safetensors", workdir=tmp_path / "w",
                       recipe=replace(TINY, crop=30))  # fmt: skip


# ---------------------------------------------------------------- commands


def test_translate_image_keeps_any_size():
    torch.manual_seed(0)
    G = CycleGAN(ngf=4, blocks=1).G.eval()
    for h, w in [(37, 45), (8, 9), (64, 64)]:
        y = translate_image(G, torch.rand(1, 3, h, w))
        assert y.shape == (1, 3, h, w) and y.min() >= 0 and y.max() <= 1


def test_train_cyclegan_then_translate_a_file_and_a_folder(domains, tmp_path, capsys):
    a, b = domains
    out = tmp_path / "mine.safetensors"
    argv = ["train-cyclegan", "--domain-a", a, "--domain-b", b, "--steps", 2, "-o", out,
            "--workdir", tmp_path / "run", "--crop", 32, "--ngf", 4, "--blocks", 1,
            "--precision", "float32", "--validate-on", a, b, "--quiet"]  # fmt: skip
    code, _, err = run(capsys, argv)
    assert code == 0, err
    metadata = read_metadata(out)
    recipe = metadata["recipe"]
    assert recipe["constant_steps"] == 1 and recipe["decay_steps"] == 1
    assert recipe["command"].startswith("nstcourse train-cyclegan --domain-a")
    assert recipe["command"].endswith(f"--validate-on {a} {b}")
    assert "b_share_of_G" in metadata["metrics"]["test"]
    photo = write_images(tmp_path / "in", [(45, 37)], seed=3) / "00.png"
    code, stdout, err = run(capsys, ["translate", photo, "-o", tmp_path / "z.png",
                                     "--checkpoint", out])  # fmt: skip
    assert code == 0, err
    assert Image.open(tmp_path / "z.png").size == (45, 37) and "wrote" in stdout
    code, _, err = run(capsys, ["translate", a, "-o", tmp_path / "folder", "--checkpoint", out,
                                "--reverse", "--quiet"])  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["00.png", "01.png", "02.png"]
    g = np.asarray(Image.open(tmp_path / "z.png"))
    run(capsys, ["translate", photo, "-o", tmp_path / "f.png", "--checkpoint", out, "--reverse"])
    assert not np.array_equal(g, np.asarray(Image.open(tmp_path / "f.png")))


def test_translate_errors_name_the_option(tmp_path, capsys, monkeypatch):
    photo = write_images(tmp_path / "in", [(40, 40)], seed=4) / "00.png"
    monkeypatch.setenv("NSTCOURSE_CHECKPOINTS_DIR", str(tmp_path / "none"))
    code, _, err = run(capsys, ["translate", photo, "-o", tmp_path / "o.png"])
    assert code == 2 and "--model horse2zebra" in err and "train-cyclegan" in err
    code, _, err = run(capsys, ["translate", photo, "-o", tmp_path / "o.png", "--model", "cat2dog"])
    assert code == 2 and "--model cat2dog: unknown model" in err
    code, _, err = run(capsys, ["translate", photo, "-o", tmp_path / "o.png", "--model",
                                "horse2zebra", "--checkpoint", photo])  # fmt: skip
    assert code == 2 and "not both" in err
    code, _, err = run(capsys, ["translate", photo, "-o", tmp_path / "o.png", "--checkpoint",
                                tmp_path / "missing.safetensors"])  # fmt: skip
    assert code == 2 and "--checkpoint" in err and "no such file" in err
    assert not (tmp_path / "o.png").exists()


def test_translate_refuses_an_image_beyond_the_memory_budget(tmp_path, capsys, monkeypatch):
    out = tmp_path / "g.safetensors"
    save_model(CycleGAN(ngf=4, blocks=1), out, kwargs={"ngf": 4, "blocks": 1})
    photo = write_images(tmp_path / "in", [(400, 300)], seed=5) / "00.png"
    monkeypatch.setenv("NSTCOURSE_MEMORY_BUDGET", "405M")  # 400 MB is overhead
    code, _, err = run(capsys, ["translate", photo, "-o", tmp_path / "o.png", "--checkpoint", out])
    assert code == 2 and "use --size" in err and "400x300" in err
    assert not (tmp_path / "o.png").exists()


# ---------------------------------------------------------------- metrics


def test_channel_statistics_are_means_and_stds_of_each_channel():
    def extractor(images):  # two "layers": the image itself and its square
        return {"a": images, "b": images**2}

    images = torch.rand(5, 3, 8, 8)
    f = channel_statistics(images, extractor, layers=("a", "b"), batch_size=2)
    assert f.shape == (5, 12)
    flat = images.flatten(2)
    assert torch.allclose(f[:, :3], flat.mean(-1)) and torch.allclose(f[:, 3:6], flat.std(-1))
    assert torch.allclose(f[:, 6:9], (flat**2).mean(-1))


def test_probe_separates_two_blobs_and_calls_a_mix_half_and_half():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(60, 10, generator=gen)
    y = torch.randn(60, 10, generator=gen) + 3 * torch.eye(10)[0]
    probe = DomainProbe.fit(x, y)
    assert probe.share(x) < 0.1 and probe.share(y) > 0.9
    assert 0.4 <= probe.share(torch.cat([x, y])) <= 0.6
    p = probe.probability(y)
    assert p.shape == (60,) and float(p.min()) >= 0 and float(p.max()) <= 1


def test_kid_is_near_zero_for_one_distribution_and_large_for_two():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 8, generator=gen), torch.randn(200, 8, generator=gen)
    same, same_std = kid(a, b, subsets=50)
    shifted, _ = kid(a, b + 2, subsets=50)
    assert abs(same) < 3 * same_std + 0.05
    assert shifted > 10 * max(abs(same), same_std)
    assert kid(a, b, subsets=5, seed=1) == kid(a, b, subsets=5, seed=1)
    with pytest.raises(ValueError, match="at least 2"):
        kid(a[:1], b)


def test_cycle_l1_and_spread():
    x = torch.rand(4, 3, 8, 8)
    assert cycle_l1(x, x) == 0 and cycle_l1(x, x + 0.25) == pytest.approx(0.25)
    collapsed = torch.full((4, 3, 8, 8), 0.5)
    assert spread(collapsed) == 0 and spread(x) > 0.1
    with pytest.raises(ValueError, match="at least 2"):
        spread(x[:1])


# ---------------------------------------------------------------- validation


@pytest.fixture
def extractor():
    from nstcourse.features import VGGFeatures

    return VGGFeatures(DESCRIPTOR_LAYERS, arch="vgg19", device="cpu")


def test_translation_score_of_the_identity_is_the_floor_with_no_cycle_error(extractor):
    gen = torch.Generator().manual_seed(0)
    dark = torch.randint(0, 100, (8, 3, 32, 32), dtype=torch.uint8, generator=gen)
    bright = torch.randint(150, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=gen)
    score = TranslationScore(
        extractor, (dark[:6], bright[:6]), (dark[6:], bright[6:]), device=torch.device("cpu")
    )
    assert score.reference == {"b_share_of_real_a": 0.0, "b_share_of_real_b": 1.0}
    identity = SimpleNamespace(G=torch.nn.Identity(), F=torch.nn.Identity())
    result = score(identity)
    assert result["b_share_of_G"] == 0.0 and result["a_share_of_F"] == 0.0
    assert result["cycle_l1_a"] == result["cycle_l1_b"] == 0.0
    assert result["spread_ratio_G"] == pytest.approx(1.0)
    swap = SimpleNamespace(G=lambda x: 1 - x, F=lambda y: 1 - y)  # dark <-> bright
    assert score(swap)["b_share_of_G"] == 1.0 and score(swap)["a_share_of_F"] == 1.0


def test_train_cyclegan_validates_on_held_out_folders(domains, tmp_path):
    a, b = domains
    recipe = replace(TINY, domain_a=str(a), domain_b=str(b))
    meta = train_cyclegan(
        out=tmp_path / "v.safetensors", workdir=tmp_path / "run", recipe=recipe, progress=False,
        validate_on=(str(a), str(b)), validate_every=2,
    )  # fmt: skip
    assert [v["step"] for v in meta["history"]["validation"]] == [2, 4]
    test = meta["metrics"]["test"]
    assert set(test) == {"b_share_of_G", "a_share_of_F", "cycle_l1_a", "cycle_l1_b",
                         "spread_ratio_G"}  # fmt: skip
    assert 0 <= test["b_share_of_G"] <= 1 and test["cycle_l1_a"] > 0
    assert set(meta["recipe"]["probe_reference"]) == {"b_share_of_real_a", "b_share_of_real_b"}


# ---------------------------------------------------------------- benchmark


@pytest.mark.datapack
def test_cyclegan_eval_prints_the_floor_ceiling_baselines_and_the_model(data_env, tmp_path, capsys):
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "cyclegan_eval.py"
    spec = importlib.util.spec_from_file_location("cyclegan_eval", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "tiny.safetensors"
    save_model(CycleGAN(ngf=4, blocks=1), out, kwargs={"ngf": 4, "blocks": 1})
    module.main(["--checkpoint", str(out), "--size", "64", "--max-images", "6", "--threads", "1"])
    lines = capsys.readouterr().out.splitlines()
    rows = {line[:20].strip(): line[20:].split() for line in lines[2:-1]}
    assert list(rows) == [
        "real test horses", "real test zebras", "identity", "colour statistics", "AdaIN",
        "CycleGAN",
    ]  # fmt: skip
    identity = [float(v) for v in rows["identity"]]
    floor = float(rows["real test horses"][0])
    assert identity[0] == floor  # doing nothing scores the floor
    assert identity[4] == identity[5] == 0.0 and identity[6] == 1.0  # cycle L1, spread
