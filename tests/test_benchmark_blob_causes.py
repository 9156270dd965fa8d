"""benchmarks/blob_causes.py: each training run changes one thing; the size table scores
each shipped net with ``metrics.blob_share``."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch

from nstcourse.checkpoints import checkpoint_info
from nstcourse.data import load_sample
from nstcourse.metrics import blob_share
from nstcourse.style.models import JOHNSON_STYLES, checkpoint_path, load_style_model
from nstcourse.style.recipes import CINRecipe, JohnsonRecipe

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "blob_causes.py"


@pytest.fixture(scope="module")
def causes():
    spec = importlib.util.spec_from_file_location("blob_causes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_run_changes_one_thing(causes) -> None:
    base = dataclasses.replace(causes.BEFORE_FIX, style_weight=1.0)
    fields = [f.name for f in dataclasses.fields(JohnsonRecipe)]
    for run in causes.TRAINED:
        recipe, steps = causes.changed(base, run, 500)
        moved = [name for name in fields if getattr(recipe, name) != getattr(base, name)]
        if run == "base":
            assert moved == [] and steps == 500
        elif run == "steps_x3":
            assert moved == [] and steps == 1500
        elif run == "crop256":  # the crop and the scaling before it, in proportion
            assert moved == ["short_side", "crop"]
        else:
            assert len(moved) == 1 and steps == 500, (run, moved)
    with pytest.raises(ValueError, match="unknown run 'shipped'"):  # scored, not trained
        causes.changed(base, "shipped", 500)


def test_the_fix_is_todays_recipe(causes) -> None:
    """lr_half is the recipe the course ships now: the runs found the fix."""
    named = dataclasses.replace(causes.BEFORE_FIX, style_weight=1.0)
    recipe, _ = causes.changed(named, "lr_half", 500)
    assert recipe == dataclasses.replace(JohnsonRecipe(), style_weight=1.0) != named


def test_the_cin_fix_is_todays_cin_recipe_and_shipped(causes) -> None:
    base = causes.base_recipe("cin", None, 1.0)
    assert base == dataclasses.replace(CINRecipe(), lr=5e-4) and len(base.styles) == 10
    assert causes.changed(base, "lr_half", 1200)[0].lr == 2.5e-4
    assert causes.changed(base, "lr_quarter", 1200)[0] == CINRecipe() != base
    stored = checkpoint_info(checkpoint_path("cin"))["recipe"]
    causes.same_recipe(stored, dataclasses.replace(base, style_weight=1.0))
    assert (stored["lr"], stored["steps"]) == (CINRecipe.lr, 2400)
    johnson = causes.base_recipe("wave", 2, 1.0)
    assert johnson.styles == (JOHNSON_STYLES["wave"],) and johnson.lr == 1e-3
    assert (johnson.max_images, johnson.style_weight) == (2, 1.0)


def test_the_shipped_nets_are_todays_recipe(causes) -> None:
    for style, painting in JOHNSON_STYLES.items():
        stored = checkpoint_info(checkpoint_path(style))["recipe"]
        base = dataclasses.replace(JohnsonRecipe(), styles=(painting,), style_weight=1.0)
        causes.same_recipe(stored, base)
        assert (stored["lr"], stored["steps"]) == (JohnsonRecipe.lr, 1000)
    causes.same_recipe(stored, dataclasses.replace(base, lr=causes.BEFORE_FIX.lr))  # lr: free
    with pytest.raises(ValueError, match="the net's crop is 128, the base's 256"):
        causes.same_recipe(stored, dataclasses.replace(base, crop=256))


@pytest.mark.datapack
def test_size_table_scores_each_net(causes, data_env, monkeypatch) -> None:
    monkeypatch.setattr(causes, "SIZES", (96,))
    photo = load_sample("tubingen", long_side=96)
    lines = causes.size_table({"tubingen": photo})
    assert len(lines) == 2 + 4 + 10  # header, rule, four Johnson nets, ten CIN styles
    with torch.inference_mode():
        share = blob_share(load_style_model("udnie", device="cpu")(photo).clamp(0, 1), photo)
    assert f"| udnie | {100 * share:.2f} | {100 * share:.2f} |" in lines
