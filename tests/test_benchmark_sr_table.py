"""The shipped SR checkpoints score on Set5 what their metadata (and so the README table)
says, and benchmarks/sr_table.py prints its rows from them, so neither can rot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from nstcourse.checkpoints import checkpoint_info
from nstcourse.features import VGGFeatures
from nstcourse.sr.data import load_sr_set
from nstcourse.sr.models import MODELS, checkpoint_path, evaluate, load_pretrained

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "sr_table.py"
SHIPPED = [(name, scale) for name in MODELS for scale in MODELS[name].scales]


def stored_set5(name: str, scale: int) -> dict[str, float]:
    return checkpoint_info(checkpoint_path(name, scale))["metrics"]["Set5"][f"x{scale}"]


@pytest.mark.datapack
@pytest.mark.parametrize(("name", "scale"), SHIPPED)
def test_shipped_checkpoint_reproduces_its_stored_set5_scores(data_env, name, scale):
    result = evaluate(load_pretrained(name, scale, device="cpu"), name, scale, load_sr_set("Set5"))
    stored = stored_set5(name, scale)
    # the table prints 2 decimals (PSNR) and 4 (SSIM); float32 may differ across CPUs below that
    assert result["psnr_y"] == pytest.approx(stored["psnr_y"], abs=0.005)
    assert result["ssim_y"] == pytest.approx(stored["ssim_y"], abs=5e-5)


@pytest.mark.datapack
def test_sr_table_prints_ours_reference_and_bicubic_rows(data_env, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("sr_table", SCRIPT)
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    everything = table.models_to_score
    keep = {"espcn (ours)", "espcn_x3_yjn870 (reference)"}
    monkeypatch.setattr(
        table,
        "models_to_score",
        lambda names: [f for f in everything(names) if f[0] in keep and f[3] == (3,)],
    )
    table.main(["--sets", "Set5", "--threads", "1"])
    out = capsys.readouterr().out
    ours = stored_set5("espcn", 3)
    assert f"| espcn (ours) | ×3 | {ours['psnr_y']:.2f} / {ours['ssim_y']:.4f} (33.00) | " in out
    assert "| espcn_x3_yjn870 (reference) | ×3 | 32.25 / 0.9002 (33.00) | " in out
    assert "| bicubic | ×3 | 30.39 / 0.8679 (30.39) | — |" in out
    assert "×2" not in out and "×4" not in out


@pytest.mark.datapack
def test_sr_table_scores_what_a_perceptual_loss_sees(data_env, capsys):
    """The second table: feature distance and sharpness of the perceptual net and SRResNet at
    x4 (as ``evaluate(features=)`` computes them), and the verdict line built from them."""
    spec = importlib.util.spec_from_file_location("sr_table", SCRIPT)
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    table.main(["--sets", "Set5", "--threads", "1", "--models", "perceptual", "srresnet"])
    out = capsys.readouterr().out
    vgg = VGGFeatures(["relu2_2"], arch="vgg19", device="cpu")
    set5 = load_sr_set("Set5")
    scores = {
        name: evaluate(load_pretrained(name, 4, device="cpu"), name, 4, set5, features=vgg)
        for name in ("perceptual", "srresnet")
    }
    for name, r in scores.items():
        row = f"| {name} (ours) | ×4 | {r['feature_distance']:.0f} / {r['sharpness']:.2f} |"
        assert row in out
    p, m = scores["perceptual"], scores["srresnet"]
    bicubic = f"{p['bicubic_feature_distance']:.0f} / {p['bicubic_sharpness']:.2f}"
    assert f"| bicubic | ×4 | {bicubic} |" in out
    lower = "lower" if p["feature_distance"] < m["feature_distance"] else "NOT lower"
    assert f"Set5 ×4: the perceptual net's distance {p['feature_distance']:.0f} is " in out
    assert f"{lower} than SRResNet's ({m['feature_distance']:.0f})" in out
