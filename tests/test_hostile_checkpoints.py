"""Hostile checkpoint files: crafted metadata, settings that ask for unbounded memory, NaN
weights, mixing weights that overflow (reliability review M4, M5, L1, L5, L6).

Every crafted file is made here, in tmp_path, from a shipped checkpoint (``checkpoints/``)
with its metadata or tensors edited. Each must be refused with a message naming the file
(exit 2 at the command line, no traceback) before any large allocation: the ``upscale``
cases run as subprocesses under a 6 GiB address-space limit (enough for ``import torch``
of a CUDA build: 3 GiB is not), where the old loader died allocating 200 GB.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import safetensors
import safetensors.torch
import torch
from PIL import Image

from nstcourse.checkpoints import (
    REPO_CHECKPOINTS_DIR,
    CheckpointError,
    check_metadata,
    checkpoint_info,
    load_model,
    read_metadata,
    save_model,
)
from nstcourse.cli import main
from nstcourse.cli.common import UsageError, normalised
from nstcourse.sr.espcn import ESPCN
from nstcourse.sr.models import load_sr_checkpoint
from nstcourse.sr.vdsr import VDSR
from nstcourse.style.adain import Decoder
from nstcourse.style.fast_style import TransformNet
from nstcourse.style.models import load_style_model
from nstcourse.translate.cyclegan import CycleGAN
from nstcourse.translate.models import load_cyclegan

ADDRESS_SPACE = 6 * 2**30  # bytes; a CUDA build of torch maps ~3.5 GiB just to import

Edit = Callable[[dict[str, Any]], Any]


@pytest.fixture(autouse=True)
def _shipped_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NSTCOURSE_CHECKPOINTS_DIR", raising=False)


def craft(
    folder: Path,
    source: str,
    name: str,
    edit: Edit | None = None,
    *,
    raw: str | None = None,
    tensors: Callable[[dict[str, torch.Tensor]], None] | None = None,
) -> Path:
    """A copy of shipped checkpoint ``source`` as ``folder/name``: its metadata record
    changed in place by ``edit`` (or replaced by what ``edit`` returns, if not None), or
    replaced by the text ``raw``; its tensors changed in place by ``tensors``."""
    path = REPO_CHECKPOINTS_DIR / source
    state = safetensors.torch.load_file(str(path))
    with safetensors.safe_open(str(path), framework="pt") as f:
        info = json.loads(f.metadata()["nstcourse"])
    if edit is not None:
        replaced = edit(info)
        info = info if replaced is None else replaced
    if tensors is not None:
        tensors(state)
    out = folder / name
    text = json.dumps(info) if raw is None else raw
    safetensors.torch.save_file(state, str(out), metadata={"nstcourse": text})
    return out


def kwargs_set(**changes: Any) -> Edit:
    return lambda info: info["kwargs"].update(changes)


def nan_first(state: dict[str, torch.Tensor]) -> None:
    state["conv1.weight"][0, 0, 0, 0] = math.nan


# name: (shipped source, edit, raw metadata, extra upscale options, what the message says)
UPSCALE_CASES: dict[str, tuple[str, Edit | None, str | None, list[str], str]] = {
    "no kwargs": ("espcn_x3", lambda i: i.pop("kwargs") and None, None, [], "'kwargs' is miss"),
    "bogus kwarg": ("espcn_x3", kwargs_set(bogus=1), None, [], "'bogus' in metadata field"),
    "kwargs a string": ("espcn_x3", lambda i: i.update(kwargs="scale=3"), None, [], "'kwargs'"),
    "scales an int": ("espcn_x3", lambda i: i.update(scales=3), None, [], "field 'scales' is 3"),
    "metadata a list": ("espcn_x3", lambda i: [i], None, ["--scale", "3"], "is a JSON list"),
    "bad JSON": ("espcn_x3", None, "{x", [], "not valid JSON"),
    "scale a string": ("espcn_x3", lambda i: i.update(scale="three"), None, [], "'three'"),
    "huge n1": ("espcn_x3", kwargs_set(n1=2 * 10**9), None, [], "(2000000000, 1, 5, 5)"),
    "VDSR depth 10**6": ("vdsr", kwargs_set(depth=10**6), None, ["--scale", "2"], "more param"),
}


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS is only enforced on Linux")
@pytest.mark.parametrize("case", [*UPSCALE_CASES, "NaN weights"])
def test_upscale_refuses_a_crafted_checkpoint_under_a_memory_limit(
    tmp_path: Path, case: str
) -> None:
    if case == "NaN weights":
        source, edit, raw, options, says = "espcn_x3", None, None, [], "NaN or infinite"
    else:
        source, edit, raw, options, says = UPSCALE_CASES[case]
    crafted = craft(
        tmp_path, f"{source}.safetensors", "crafted.safetensors", edit, raw=raw,
        tensors=nan_first if case == "NaN weights" else None,
    )  # fmt: skip
    Image.new("RGB", (16, 12), (200, 30, 40)).save(tmp_path / "in.png")
    model = "vdsr" if source == "vdsr" else "espcn"
    command = [sys.executable, "-m", "nstcourse.cli", "upscale", "in.png", "-o", "out.png",
               "--model", model, "--checkpoint", crafted.name, *options]  # fmt: skip

    def limit_memory() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        preexec_fn=limit_memory,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "crafted.safetensors" in done.stderr and says in done.stderr
    assert not (tmp_path / "out.png").exists()


def test_torch_imports_under_the_memory_limit() -> None:
    """The limit the test above uses leaves room for torch itself (else it tests nothing)."""
    if sys.platform != "linux":
        pytest.skip("RLIMIT_AS is only enforced on Linux")
    import resource

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    done = subprocess.run(
        [sys.executable, "-c", "import torch, nstcourse.cli; torch.zeros(4, 4)"],
        capture_output=True, text=True, timeout=300, preexec_fn=limit_memory,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def run(capsys: pytest.CaptureFixture, argv: list) -> tuple[int, str]:
    try:
        code = main([str(arg) for arg in argv])
    except SystemExit as exit:
        code = exit.code
    return code, capsys.readouterr().err


STYLE_CASES: dict[str, tuple[str, Edit, list[str], str]] = {
    "TransformNet no kwargs": (
        "johnson_wave",
        lambda i: i.pop("kwargs") and None,
        [],
        "'kwargs' is missing",
    ),
    "kwargs a list": ("johnson_wave", lambda i: i.update(kwargs=[1]), [], "'kwargs' is [1]"),
    "styles a string": ("johnson_wave", kwargs_set(styles="x"), [], "'styles' in metadata"),
    "styles 0": ("cin", kwargs_set(styles=0), ["--style", "0"], "is 0, not an integer >= 1"),
    "AdaIN layer relu9_9": (
        "adain",
        kwargs_set(layer="relu9_9"),
        ["--style-image", "in.png"],
        "'relu9_9'",
    ),
}


@pytest.mark.parametrize("case", STYLE_CASES)
def test_fast_stylize_refuses_a_crafted_model(
    capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    source, edit, options, says = STYLE_CASES[case]
    crafted = craft(tmp_path, f"{source}.safetensors", "crafted.safetensors", edit)
    Image.new("RGB", (32, 24), (200, 30, 40)).save(tmp_path / "in.png")
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, ["fast-stylize", "in.png", "-o", "out.png", "--model", crafted.name,
                             *options])  # fmt: skip
    assert code == 2 and "crafted.safetensors" in err and says in err, err
    assert not (tmp_path / "out.png").exists()


def test_load_style_model_names_the_crafted_file(tmp_path: Path) -> None:
    craft(tmp_path, "johnson_wave.safetensors", "johnson_wave.safetensors",
          lambda i: i.pop("kwargs") and None)  # fmt: skip
    with pytest.raises(CheckpointError, match=r"johnson_wave\.safetensors: .*'kwargs' is miss"):
        load_style_model("wave", checkpoints_dir=tmp_path)


# ---------------------------------------------------------------- the schema


@pytest.mark.parametrize(
    ("record", "says"),
    [
        ([{"class": "ESPCN"}], "is a JSON list, not an object"),
        ({"kwargs": {}}, "'class' is missing"),
        ({"class": 3, "kwargs": {}}, "'class' is 3, not the name of a class"),
        ({"class": "ESPCN"}, "'kwargs' is missing"),
        ({"class": "ESPCN", "kwargs": "scale=3"}, "'kwargs' is 'scale=3', not an object"),
        ({"class": "ESPCN", "kwargs": {"n1": [64]}}, "setting 'n1' .* is \\[64\\], not a str"),
        ({"class": "ESPCN", "kwargs": {"n1": 2**70}}, "within 64 bits"),
        ({"class": "ESPCN", "kwargs": {"f": math.nan}}, "setting 'f' .* nan"),
        ({"class": "ESPCN", "kwargs": {}, "scale": "3"}, "'scale' is '3', not an integer >= 2"),
        ({"class": "ESPCN", "kwargs": {}, "scale": True}, "'scale' is True"),
        ({"class": "ESPCN", "kwargs": {}, "scale": 1}, "'scale' is 1"),
        ({"class": "VDSR", "kwargs": {}, "scales": []}, "'scales' is \\[\\], not a non-empty"),
        ({"class": "VDSR", "kwargs": {}, "scales": [2, "3"]}, "'scales' is \\[2, '3'\\]"),
    ],
)
def test_the_schema_names_the_file_and_the_field(record: object, says: str) -> None:
    with pytest.raises(CheckpointError, match=f"^some/file.safetensors: .*{says}"):
        check_metadata(record, "some/file.safetensors")


def test_a_good_record_passes_unchanged() -> None:
    record = {"class": "VDSR", "kwargs": {"depth": 20, "f": 0.5, "s": "x", "b": None},
              "scales": [2, 3], "recipe": {"anything": [1, {"goes": None}]}}  # fmt: skip
    assert check_metadata(record, "f.safetensors") is record


def test_read_metadata_names_the_file_for_what_is_no_checkpoint(tmp_path: Path) -> None:
    pickle = tmp_path / "evil_upscale.pth"
    torch.save({"weights": torch.zeros(2)}, pickle)  # a zip of pickles, not safetensors
    with pytest.raises(CheckpointError, match="evil_upscale.pth is not a safetensors checkpoint"):
        read_metadata(pickle)
    bad_json = craft(tmp_path, "espcn_x3.safetensors", "bad.safetensors", raw="{x")
    with pytest.raises(CheckpointError, match="bad.safetensors: its metadata is not valid JSON"):
        checkpoint_info(bad_json)
    deep = craft(tmp_path, "espcn_x3.safetensors", "deep.safetensors", raw="[" * 100_000)
    with pytest.raises(CheckpointError, match="deep.safetensors: its metadata is not valid JSON"):
        checkpoint_info(deep)
    bare = tmp_path / "bare.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(1)}, str(bare))
    with pytest.raises(CheckpointError, match="bare.safetensors has no nstcourse metadata"):
        checkpoint_info(bare)


def test_save_model_refuses_a_record_it_could_not_load(tmp_path: Path) -> None:
    out = tmp_path / "a.safetensors"
    with pytest.raises(CheckpointError, match="'scale' is 'x'"):
        save_model(ESPCN(scale=2, n1=4, n2=4), out, kwargs={"scale": 2}, metadata={"scale": "x"})
    assert not out.exists()


# ---------------------------------------------------------------- settings and tensors


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"bogus": 1}, "setting 'bogus' in metadata field 'kwargs' is not an argument of ESPCN"),
        ({"scale": "3"}, "setting 'scale' .* is '3', not an int"),
        ({"n1": True}, "setting 'n1' .* is True, not an int"),
        ({"n1": 64.0}, "setting 'n1' .* is 64.0, not an int"),
        ({"n1": -5}, "do not make a ESPCN .*negative dimension"),
        ({"n1": 2**62}, "do not make a ESPCN"),  # a size torch cannot even compute
        ({"n1": 2 * 10**9}, r"conv1.weight: the file has \(64, 1, 5, 5\), the ESPCN needs"),
    ],
)
def test_settings_are_checked_before_anything_is_built(
    tmp_path: Path, changes: dict[str, Any], says: str
) -> None:
    crafted = craft(tmp_path, "espcn_x3.safetensors", "c.safetensors", kwargs_set(**changes))
    with pytest.raises(CheckpointError, match=f"(?s)c.safetensors.*{says}"):
        load_model(ESPCN, crafted, device="cpu")


def test_a_missing_required_setting_is_named(tmp_path: Path) -> None:
    crafted = craft(tmp_path, "espcn_x3.safetensors", "c.safetensors",
                    lambda i: i["kwargs"].pop("scale") and None)  # fmt: skip
    with pytest.raises(CheckpointError, match="c.safetensors: .* lacks 'scale', which ESPCN"):
        load_model(ESPCN, crafted, device="cpu")


def test_a_million_layers_are_refused_after_a_few(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The build stops once it has more parameter tensors than the file (20 for VDSR)."""
    crafted = craft(tmp_path, "vdsr.safetensors", "deep.safetensors", kwargs_set(depth=10**6))
    built: list[int] = []
    original = torch.nn.Conv2d.__init__

    def counting(self: torch.nn.Conv2d, *args: Any, **kwargs: Any) -> None:
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Conv2d, "__init__", counting)
    with pytest.raises(CheckpointError, match="make a VDSR with more parameter tensors than"):
        load_model(VDSR, crafted, device="cpu")
    assert len(built) <= 21


def test_nan_or_infinite_weights_are_refused(tmp_path: Path) -> None:
    nan = craft(tmp_path, "espcn_x3.safetensors", "nan.safetensors", tensors=nan_first)
    with pytest.raises(CheckpointError, match="nan.safetensors: conv1.weight holds NaN"):
        load_model(ESPCN, nan, device="cpu")

    def inf_bias(state: dict[str, torch.Tensor]) -> None:
        state["conv3.bias"][0] = -math.inf

    inf = craft(tmp_path, "espcn_x3.safetensors", "inf.safetensors", tensors=inf_bias)
    with pytest.raises(CheckpointError, match="inf.safetensors: conv3.bias holds NaN or inf"):
        load_model(ESPCN(scale=3), inf, device="cpu")


def test_every_shipped_checkpoint_still_loads() -> None:
    """The checks refuse nothing the course writes."""
    for path in sorted(REPO_CHECKPOINTS_DIR.glob("*.safetensors")):
        info = checkpoint_info(path)
        if info["class"] == "TransformNet":
            assert isinstance(load_model(TransformNet, path, device="cpu"), TransformNet)
        elif info["class"] == "Decoder":
            assert isinstance(load_model(Decoder, path, device="cpu"), Decoder)
        elif info["class"] == "CycleGAN":
            assert isinstance(load_cyclegan(path, device="cpu"), CycleGAN)
        else:
            net = load_sr_checkpoint(path, name=info["model"], device="cpu")
            assert type(net).__name__ == info["class"], path


def test_an_sr_file_whose_settings_build_another_scale(tmp_path: Path) -> None:
    crafted = craft(tmp_path, "espcn_x3.safetensors", "c.safetensors",
                    lambda i: i.update(scale=2))  # fmt: skip
    with pytest.raises(CheckpointError, match="c.safetensors: its settings build a x3 espcn"):
        load_sr_checkpoint(crafted, name="espcn", scale=2, device="cpu")


def test_upscale_says_a_style_file_is_no_sr_model(
    capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    Image.new("RGB", (16, 12)).save(tmp_path / "in.png")
    cin = REPO_CHECKPOINTS_DIR / "cin.safetensors"
    code, err = run(capsys, ["upscale", tmp_path / "in.png", "-o", tmp_path / "o.png",
                             "--model", "srresnet", "--checkpoint", cin])  # fmt: skip
    assert code == 2 and f"{cin} holds a TransformNet, not an SR model" in err


def test_upscale_asks_for_the_scale_a_file_does_not_record(
    capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    Image.new("RGB", (16, 12)).save(tmp_path / "in.png")
    crafted = craft(tmp_path, "espcn_x3.safetensors", "c.safetensors",
                    lambda i: i.pop("scale") and None)  # fmt: skip
    code, err = run(capsys, ["upscale", tmp_path / "in.png", "-o", tmp_path / "o.png",
                             "--model", "espcn", "--checkpoint", crafted])  # fmt: skip
    assert code == 2 and "c.safetensors does not record its scale" in err


# ---------------------------------------------------------------- mixing weights


def test_weights_whose_sum_overflows_are_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--style-weights: the weights add up to more than"):
        normalised([1e308, 1e308], 2, "--style-weights")
    assert normalised([1e307, 3e307], 2, "--x") == pytest.approx([0.25, 0.75])


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--model", "cin", "--style", "0=1e308", "--style", "1=1e308"], "--style: the weights"),
        (
            [
                "--model",
                "adain",
                "--style-image",
                "in.png",
                "--style-image",
                "in.png",
                "--style-weights",
                "1e308",
                "1e308",
            ],
            "--style-weights: the weights add up",
        ),  # fmt: skip
        (["--model", "cin", "--style", "²"], "--style ²: unknown style of cin"),
    ],
)
def test_fast_stylize_refuses_overflowing_or_odd_styles(
    capsys: pytest.CaptureFixture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: list[str],
    says: str,
) -> None:
    Image.new("RGB", (32, 24), (200, 30, 40)).save(tmp_path / "in.png")
    monkeypatch.chdir(tmp_path)
    code, err = run(capsys, ["fast-stylize", "in.png", "-o", "out.png", *options])
    assert code == 2 and says in err, err
    assert "Traceback" not in err and not (tmp_path / "out.png").exists()
