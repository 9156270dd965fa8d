"""Training work folders (``training`` and ``recipes``): the lock that keeps a second run
out, checkpoint writes that delete only their predecessor's weights, the recipe recorded
only after the setup, and damaged or foreign files refused with a message naming them."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

import nstcourse.cli.sr
from nstcourse.cli import main
from nstcourse.recipes import RECIPE_FILE, check_workdir, record_recipe
from nstcourse.sr.recipes import RECIPES, ESPCNRecipe, train_sr
from nstcourse.training import (
    LOCK_FILE,
    STATE_FILE,
    WALL_TIME_FILE,
    WorkdirBusy,
    WorkdirError,
    load_checkpoint,
    lock_workdir,
    save_checkpoint,
    wall_time,
)

TINY = ESPCNRecipe(
    n1=4, n2=4, max_images=2, lr_patch=6, patches_per_image=4, batch_size=2,
    validate_every=100, checkpoint_every=1, scales=(2,),
)  # fmt: skip
NO_DATA = dict(validate_on=None, progress=False, device="cpu")  # refused before any data


def cli(capsys: pytest.CaptureFixture, argv: list) -> tuple[int, str]:
    """``nstcourse ARGV`` in-process: (exit code, stderr)."""
    try:
        code = main([str(arg) for arg in argv])
    except SystemExit as exit:
        code = exit.code
    return code, capsys.readouterr().err


def linear_checkpoint(folder: Path, step: int = 2, seed: int = 0) -> nn.Linear:
    """A real checkpoint of a small linear model in ``folder`` (``save_checkpoint``)."""
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(4, 3)).sum().backward()
    optimizer.step()
    history = {"step": list(range(step)), "loss": [1.0] * step, "validation": []}
    save_checkpoint(folder, model, {"optimizer": optimizer}, {}, step=step, history=history)
    return model


def espcn_workdir(folder: Path) -> Path:
    """``folder`` as a TINY espcn run left it: its recipe and a checkpoint."""
    record_recipe(folder, "espcn", TINY, 0)
    linear_checkpoint(folder)
    return folder


# --- the lock ----------------------------------------------------------------------------------

HOLD = """
import sys, time
from nstcourse.training import lock_workdir
with lock_workdir(sys.argv[1], "the other run"):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen]]:
    """A work folder locked by another Python process (killed at the end)."""
    folder = tmp_path / "busy"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield folder, proc
    finally:
        proc.kill()
        proc.wait()


def test_a_busy_workdir_is_refused_naming_the_holder(held) -> None:
    folder, proc = held
    busy = rf"in use by process {proc.pid} on .*the other run"
    with pytest.raises(WorkdirBusy, match=busy), lock_workdir(folder, "mine"):
        pass
    with pytest.raises(WorkdirBusy, match=f"process {proc.pid}"):
        train_sr("espcn", steps=1, out=folder.parent / "m.safetensors", workdir=folder,
                 recipe=TINY, **NO_DATA)  # fmt: skip
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_FILE]  # nothing recorded

    proc.kill()  # a killed holder leaves its file, but not its lock
    proc.wait()
    assert (folder / LOCK_FILE).exists()
    with lock_workdir(folder, "mine"):
        assert json.loads((folder / LOCK_FILE).read_text())["pid"] == os.getpid()


@pytest.mark.parametrize("error", [KeyboardInterrupt, FileNotFoundError])
def test_the_lock_ends_with_the_run_however_it_ends(tmp_path, error) -> None:
    (tmp_path / "w").mkdir()  # a folder made by the lock alone would be removed again
    with pytest.raises(error), lock_workdir(tmp_path / "w", "first"):
        raise error
    assert (tmp_path / "w" / LOCK_FILE).read_text() == ""  # no stale holder
    with lock_workdir(tmp_path / "w", "second"):  # a new open file: refused if still held
        assert "second" in (tmp_path / "w" / LOCK_FILE).read_text()


def test_a_workdir_that_is_a_file_is_refused(tmp_path) -> None:
    (tmp_path / "w").write_text("notes")
    with pytest.raises(WorkdirError, match="workdir .*w is a file"):
        train_sr("espcn", steps=1, out=tmp_path / "m.safetensors", workdir=tmp_path / "w",
                 recipe=TINY, **NO_DATA)  # fmt: skip


@pytest.mark.datapack
def test_train_sr_on_a_busy_workdir_exits_2(capsys, held, data_env, monkeypatch) -> None:
    folder, proc = held
    monkeypatch.setattr(nstcourse.cli.sr, "RECIPES", {**RECIPES, "espcn": lambda: TINY})
    out = folder.parent / "m.safetensors"
    argv = ["train-sr", "espcn", "--scale", "2", "--steps", "1", "-o", out, "--workdir", folder,
            "--device", "cpu", "--quiet"]  # fmt: skip
    code, err = cli(capsys, argv)
    assert code == 2 and f"is in use by process {proc.pid}" in err
    assert "Traceback" not in err and not out.exists()


# --- checkpoint writes --------------------------------------------------------------------------


def test_a_checkpoint_write_deletes_only_its_predecessors_weights(tmp_path) -> None:
    linear_checkpoint(tmp_path, step=1)
    other = tmp_path / "model-00000200.safetensors"  # another writer's file
    other.write_bytes(b"weights another process is about to name")
    linear_checkpoint(tmp_path, step=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["model-00000002.safetensors", other.name, STATE_FILE]
    assert torch.load(tmp_path / STATE_FILE, weights_only=True)["weights"] == names[0]


def test_a_checkpoint_over_a_damaged_state_deletes_nothing(tmp_path) -> None:
    linear_checkpoint(tmp_path, step=1)
    (tmp_path / STATE_FILE).write_bytes(b"")
    linear_checkpoint(tmp_path, step=2)
    assert (tmp_path / "model-00000001.safetensors").exists()
    model = nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    assert load_checkpoint(tmp_path, model, {"optimizer": optimizer}, {})[0] == 2


# --- the recipe ---------------------------------------------------------------------------------


@pytest.mark.datapack
def test_a_failed_setup_records_no_recipe(tmp_path, data_env) -> None:
    from nstcourse.style.recipes import JohnsonRecipe, train_style

    tiny = dict(max_images=2, short_side=40, crop=32, style_size=32, width=8, res_blocks=1,
                crops_per_image=4, batch_size=2, checkpoint_every=2, time_size=32)  # fmt: skip
    run = dict(out=tmp_path / "s.safetensors", workdir=tmp_path / "w", progress=False,
               device="cpu")  # fmt: skip
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        train_style("johnson", steps=1, recipe=JohnsonRecipe(**tiny, styles=("nope.jpg",)), **run)
    assert not (tmp_path / "w").exists()  # the folder it made is gone again, lock and all
    (tmp_path / "w").mkdir()
    with lock_workdir(tmp_path / "w", "released"):  # the failed run let go of its lock
        pass
    assert (tmp_path / "w").is_dir()  # a folder that was there before is kept
    result = train_style("johnson", steps=1, recipe=JohnsonRecipe(**tiny), **run)  # corrected
    assert result["recipe"]["resumed_from_step"] == 0
    assert json.loads((tmp_path / "w" / RECIPE_FILE).read_text())["recipe"]["styles"] == list(
        JohnsonRecipe().styles
    )


def test_a_checkpoint_without_its_recipe_is_refused(tmp_path) -> None:
    workdir = espcn_workdir(tmp_path / "w")
    (workdir / RECIPE_FILE).unlink()
    with pytest.raises(WorkdirError, match=f"holds a training checkpoint but no {RECIPE_FILE}"):
        train_sr("espcn", steps=3, out=tmp_path / "m.safetensors", workdir=workdir,
                 recipe=replace(TINY, scales=(3,)), **NO_DATA)  # fmt: skip
    assert not (workdir / RECIPE_FILE).exists()  # not adopted


def test_a_changed_recipe_is_still_refused(tmp_path) -> None:
    workdir = espcn_workdir(tmp_path / "w")
    with pytest.raises(WorkdirError, match=r"another recipe \(differs in lr\)"):
        check_workdir(workdir, "espcn", replace(TINY, lr=0.5), 0)
    assert check_workdir(workdir, "espcn", TINY, 0) == 2


def test_a_recipe_field_newer_than_the_folder_counts_as_its_default(tmp_path) -> None:
    workdir = espcn_workdir(tmp_path / "w")
    record = json.loads((workdir / RECIPE_FILE).read_text())
    del record["recipe"]["lr_decay"]  # as if the folder predated the field
    (workdir / RECIPE_FILE).write_text(json.dumps(record))
    assert check_workdir(workdir, "espcn", TINY, 0) == 2
    with pytest.raises(WorkdirError, match=r"differs in lr_decay"):
        check_workdir(workdir, "espcn", replace(TINY, lr_decay=0.5), 0)


# --- damaged files ------------------------------------------------------------------------------


class Evil:
    """A pickle that would create a file if it were ever run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=True)


DAMAGES: dict[str, Callable[[Path], object]] = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:1000]),
    "empty": lambda p: p.write_bytes(b""),
    "evil pickle": lambda p: p.write_bytes(pickle.dumps(Evil(p.parent / "PWNED"))),
    "a list": lambda p: torch.save([1, 2], p),
    "no weights": lambda p: torch.save({k: v for k, v in _state(p).items() if k != "weights"}, p),
    "step abc": lambda p: torch.save({**_state(p), "step": "abc"}, p),
    "step True": lambda p: torch.save({**_state(p), "step": True}, p),
    "weights outside": lambda p: torch.save({**_state(p), "weights": "../m.safetensors"}, p),
    "history of ints": lambda p: torch.save({**_state(p), "history": {"loss": 3}}, p),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_train_state_is_a_clear_error(tmp_path, damage) -> None:
    workdir = espcn_workdir(tmp_path / "w")
    DAMAGES[damage](workdir / STATE_FILE)
    with pytest.raises(WorkdirError) as error:
        train_sr("espcn", steps=3, out=tmp_path / "m.safetensors", workdir=workdir,
                 recipe=TINY, **NO_DATA)  # fmt: skip
    message = str(error.value)
    assert str(workdir / STATE_FILE) in message and "weights_only" not in message
    assert f"use another work folder (--workdir), or delete {workdir}" in message
    assert not (workdir / "PWNED").exists()
    assert not (tmp_path / "m.safetensors").exists()


def test_load_checkpoint_refuses_missing_or_foreign_weights(tmp_path) -> None:
    linear_checkpoint(tmp_path)
    other = nn.Linear(5, 2)
    optimizers = {"optimizer": torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)}
    with pytest.raises(WorkdirError, match=r"model-00000002.safetensors does not fit .*size"):
        load_checkpoint(tmp_path, other, optimizers, {})
    model = nn.Linear(3, 2)
    optimizers = {"optimizer": torch.optim.Adam(model.parameters())}
    with pytest.raises(WorkdirError, match=f"{STATE_FILE} does not fit this run"):
        load_checkpoint(tmp_path, model, optimizers, {})
    (tmp_path / "model-00000002.safetensors").unlink()
    with pytest.raises(WorkdirError, match="model-00000002.safetensors, which is missing"):
        load_checkpoint(tmp_path, model, optimizers, {})


@pytest.mark.parametrize("text", ["{x", "[]", '{"recipe": 3}', b"\xff\xfe"])
def test_a_damaged_recipe_json_is_a_clear_error(tmp_path, text) -> None:
    workdir = espcn_workdir(tmp_path / "w")
    path = workdir / RECIPE_FILE
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(WorkdirError, match=f"{path} is damaged .*delete {workdir} to start"):
        train_sr("espcn", steps=3, out=tmp_path / "m.safetensors", workdir=workdir,
                 recipe=TINY, **NO_DATA)  # fmt: skip


@pytest.mark.parametrize("text", ["x", "[]", '{"seconds": "a"}', '{"seconds": -1}', "NaN"])
def test_a_damaged_wall_time_is_a_clear_error(tmp_path, text) -> None:
    workdir = espcn_workdir(tmp_path / "w")
    path = workdir / WALL_TIME_FILE
    path.write_text(text)
    with pytest.raises(WorkdirError, match=f"{path} is damaged .*delete that file"):
        wall_time(workdir)
    with pytest.raises(WorkdirError, match=f"{path} is damaged"):
        train_sr("espcn", steps=3, out=tmp_path / "m.safetensors", workdir=workdir,
                 recipe=TINY, **NO_DATA)  # fmt: skip
    path.write_text('{"seconds": 2}')
    assert wall_time(workdir) == 2.0


@pytest.mark.datapack
def test_train_sr_on_a_truncated_state_exits_2_then_resumes_elsewhere(
    capsys, tmp_path, data_env, monkeypatch
) -> None:
    monkeypatch.setattr(nstcourse.cli.sr, "RECIPES", {**RECIPES, "espcn": lambda: TINY})
    out, workdir = tmp_path / "m.safetensors", tmp_path / "w"
    argv = ["train-sr", "espcn", "--scale", "2", "--steps", "2", "-o", out, "--workdir", workdir,
            "--device", "cpu", "--quiet"]  # fmt: skip
    code, err = cli(capsys, argv)
    assert code == 0, err
    state = workdir / STATE_FILE
    state.write_bytes(state.read_bytes()[:1000])  # what a power cut can leave
    out.unlink()
    code, err = cli(capsys, [*argv[:5], "3", *argv[6:]])
    assert code == 2 and "Traceback" not in err
    assert f"error: {state} is damaged" in err and f"delete {workdir} to start over" in err
    assert not out.exists()
