"""Memory budgets for big inputs (reliability review M6): ``nstcourse.budget``, tiling
that covers every step of ``super_resolve``, MATLAB's resize without dense matrices, and
the refusals of ``upscale`` and ``fast-stylize``.

Nothing here allocates a big image's memory: the estimates run on the ``meta`` device,
the CLI cases force a small budget with $NSTCOURSE_MEMORY_BUDGET, and the 64-MP cases
run in a subprocess under a 6 GB address-space limit, where they must be refused.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from clirun import run
from PIL import Image

from nstcourse import budget
from nstcourse.budget import (
    BUDGET_ENV,
    image_save_bytes,
    memory_budget,
    needed_bytes,
    parse_bytes,
    peak_bytes,
)
from nstcourse.cli import main
from nstcourse.images import load_image
from nstcourse.sr.data import bicubic_upscale, imresize, matlab_resize_matrix
from nstcourse.sr.models import load_pretrained, super_resolve, super_resolve_bytes

REPO = Path(__file__).resolve().parent.parent
CHECKPOINTS = REPO / "checkpoints"
ADDRESS_SPACE = 6 * 2**30  # the acceptance's limit; torch (a CUDA build) imports under 4
ALLOCATOR_ERROR = (
    "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
    "memory: you tried to allocate 1536000000 bytes. Error code 12 (Cannot allocate memory)"
)


@pytest.fixture(autouse=True)
def _shipped_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSTCOURSE_CHECKPOINTS_DIR", str(CHECKPOINTS))
    monkeypatch.delenv(BUDGET_ENV, raising=False)


def noise_png(path: Path, height: int, width: int) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


# --- MATLAB's resize as taps, by windows -------------------------------------------------


@pytest.mark.parametrize("scale", [3.0, 2.0, 0.5, 1 / 3, 0.25, (1.7, 0.6), (0.6, 1.7)])
def test_resize_by_taps_equals_the_dense_matrices(scale) -> None:
    image = torch.rand(2, 3, 23, 17, dtype=torch.float64)
    got = imresize(image, scale=scale)
    scale_h, scale_w = (scale, scale) if isinstance(scale, float) else scale
    rows = matlab_resize_matrix(23, got.shape[-2], scale_h)
    cols = matlab_resize_matrix(17, got.shape[-1], scale_w)
    dense = (rows @ image) @ cols.T if scale_h <= scale_w else rows @ (image @ cols.T)
    torch.testing.assert_close(got, dense, atol=1e-12, rtol=0)


@pytest.mark.parametrize("scale", [3.0, 0.5, (2.0, 0.25)])
@pytest.mark.parametrize("window", [(0, 5, 0, 4), (7, 19, 3, 9), (10, 24, 1, 2)])
def test_a_resize_window_is_exactly_that_part_of_the_whole(scale, window) -> None:
    image = torch.rand(1, 2, 48, 40)
    whole = imresize(image, scale=scale)
    top, bottom, left, right = window
    part = imresize(image, scale=scale, window=window)
    assert torch.equal(part, whole[..., top:bottom, left:right])


def test_resize_window_errors() -> None:
    image = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match=r"window \(0, 25, 0, 4\) is not .* the 24x24 output"):
        imresize(image, scale=3.0, window=(0, 25, 0, 4))
    with pytest.raises(ValueError, match=r"window \(3, 3, 0, 4\)"):
        imresize(image, scale=3.0, window=(3, 3, 0, 4))
    with pytest.raises(ValueError, match='window= is for method="matlab" only'):
        imresize(image, scale=3.0, method="torch", window=(0, 4, 0, 4))


def test_resizing_a_tile_of_a_64_mp_image_needs_no_dense_matrix() -> None:
    # Before: two (24000 x 8000) float64 matrices, 1.5 GB each, for any part of the image.
    chroma = torch.empty(1, 2, 8000, 8000, device="meta")
    peak = peak_bytes(lambda: bicubic_upscale(chroma, 3, window=(3000, 3512, 600, 1112)))
    assert 0 < peak < 30_000_000


# --- super_resolve in tiles ------------------------------------------------------------


@pytest.mark.parametrize(("name", "scale"), [("espcn", 3), ("srcnn", 3), ("vdsr", 2)])
def test_tiles_of_shipped_models_give_the_whole_image(name, scale) -> None:
    model = load_pretrained(name, scale, device="cpu")
    lr = torch.rand(1, 3, 29, 37)
    whole = super_resolve(model, lr, name=name, scale=scale)
    for tile in (7, 16):  # smaller than the receptive-field margin, and larger
        tiled = super_resolve(model, lr, name=name, scale=scale, tile=tile)
        torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_tiled_estimate_is_bounded_by_the_output_and_one_tile() -> None:
    model = load_pretrained("espcn", 3, device="cpu")
    whole = super_resolve_bytes(model, 8000, 8000, name="espcn", scale=3)
    tiled = super_resolve_bytes(model, 8000, 8000, name="espcn", scale=3, tile=256)
    output = 3 * 24000 * 24000 * 4
    ycbcr = 3 * 8000 * 8000 * 4  # made once, from a temporary of the same size
    assert whole > 5 * output  # 64 channels at 64 MP, the chroma in float64
    assert output < tiled < output + 2 * ycbcr + 100_000_000  # + one tile's work


def test_estimate_is_the_peak_of_live_tensors() -> None:
    def work() -> torch.Tensor:
        a = torch.empty(1000, device="meta")  # 4 kB
        b = torch.empty(2000, device="meta")  # 8 kB: 12 kB live
        view = b[:100]  # shares b's memory
        del a
        c = torch.empty(500, device="meta")  # 10 kB live
        return (b, view, c, c.to(torch.float32))  # returned as it is: not new

    assert peak_bytes(work) == 12_000


# --- the budget ---------------------------------------------------------------------------


def test_budget_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget, "address_space_room", lambda: None)
    assert parse_bytes("6G", BUDGET_ENV) == 6_000_000_000
    assert parse_bytes("2.5g", BUDGET_ENV) == 2_500_000_000
    assert parse_bytes("512MB", BUDGET_ENV) == 512_000_000
    assert parse_bytes("1000", BUDGET_ENV) == 1000
    monkeypatch.setenv(BUDGET_ENV, "3G")
    assert memory_budget().size == 3_000_000_000
    assert f"${BUDGET_ENV}=3G" in str(memory_budget())
    for bad in ("lots", "0", "-1G", "6 GiB"):
        monkeypatch.setenv(BUDGET_ENV, bad)
        with pytest.raises(ValueError, match=rf"\${BUDGET_ENV}='{bad}': not a memory size"):
            memory_budget()


def test_budget_is_half_the_memory_within_the_address_space_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(budget, "physical_memory", lambda: 16_000_000_000)
    monkeypatch.setattr(budget, "address_space_room", lambda: None)
    assert memory_budget().size == 8_000_000_000
    assert "50% of the 16.0 GB of memory" in str(memory_budget())
    monkeypatch.setattr(budget, "physical_memory", lambda: None)  # e.g. no sysconf
    assert memory_budget().size == budget.FALLBACK_BYTES
    monkeypatch.setattr(budget, "address_space_room", lambda: 2_000_000_000)
    assert memory_budget().size == 2_000_000_000
    assert "ulimit -v" in str(memory_budget())
    monkeypatch.setenv(BUDGET_ENV, "100G")  # a hard limit caps even an explicit budget
    assert memory_budget().size == 2_000_000_000


def test_physical_memory_and_address_space_room_are_read_from_the_system() -> None:
    physical = budget.physical_memory()
    assert physical is None or physical > 100_000_000
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    room = budget.address_space_room()
    assert (room is None) == (soft == resource.RLIM_INFINITY)


# --- upscale -------------------------------------------------------------------------------


def _upscale_need(path: Path, tile: int | None) -> int:
    """What ``upscale --model espcn --scale 3`` asks of the budget for ``path``."""
    model = load_pretrained("espcn", 3, device="cpu")
    height, width = load_image(path).shape[-2:]
    peak = super_resolve_bytes(model, height, width, name="espcn", scale=3, tile=tile)
    return needed_bytes(peak) + image_save_bytes(3 * height, 3 * width)


def test_upscale_tiles_when_the_whole_image_does_not_fit(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = noise_png(tmp_path / "in.png", 600, 700)
    assert _upscale_need(src, None) > _upscale_need(src, 512) > _upscale_need(src, 256)
    argv = ["upscale", src, "--model", "espcn", "--scale", 3, "-o"]
    code, stdout, err = run(capsys, [*argv, tmp_path / "whole.png"])
    assert code == 0, err
    assert "running in tiles" not in stdout
    monkeypatch.setenv(BUDGET_ENV, str(_upscale_need(src, 256)))
    code, stdout, err = run(capsys, [*argv, tmp_path / "tiled.png"])
    assert code == 0, err
    assert f"{src}: 700x600 px x3 needs about" in stdout
    assert "running in tiles of 256 px (the same result)" in stdout
    whole = np.asarray(Image.open(tmp_path / "whole.png"), dtype=int)
    tiled = np.asarray(Image.open(tmp_path / "tiled.png"), dtype=int)
    assert whole.shape == tiled.shape == (1800, 2100, 3)
    assert np.abs(whole - tiled).max() <= 1  # float rounding may cross an 8-bit level
    assert (whole != tiled).mean() < 1e-3


def test_upscale_refuses_what_does_not_fit_even_in_tiles(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = noise_png(tmp_path / "in.png", 60, 80)
    monkeypatch.setenv(BUDGET_ENV, "100M")
    out = tmp_path / "out.png"
    code, stdout, err = run(capsys, ["upscale", src, "-o", out, "--scale", 3])
    assert code == 2
    assert f"error: {src}: 80x60 px x3 needs about" in err
    assert "even in tiles of 64 px" in err
    assert f"more than the 100 MB this command may use (${BUDGET_ENV}=100M)" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_upscale_with_a_tile_too_large_says_which_tile_fits(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = noise_png(tmp_path / "in.png", 600, 700)
    monkeypatch.setenv(BUDGET_ENV, str(_upscale_need(src, 256)))
    argv = ["upscale", src, "-o", tmp_path / "o.png", "--scale", 3, "--tile", 600]
    code, _, err = run(capsys, argv)
    assert code == 2
    assert f"{src}: 700x600 px x3 with --tile 600 needs about" in err
    assert err.rstrip().endswith("; use --tile 256")


def test_upscale_out_of_memory_is_a_failure_naming_the_image(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = noise_png(tmp_path / "in.png", 20, 30)
    for error in (RuntimeError(ALLOCATOR_ERROR), MemoryError()):

        def fail(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr("nstcourse.cli.sr.super_resolve", fail)
        code, _, err = run(capsys, ["upscale", src, "-o", tmp_path / "o.png", "--scale", 3])
        assert code == 1
        assert f"{src}: out of memory (" in err
        assert "try --tile 256" in err
        assert "Traceback" not in err and "alloc_cpu.cpp" not in err
    # Any other RuntimeError is a programming error: it is not dressed up as one.
    monkeypatch.setattr(
        "nstcourse.cli.sr.super_resolve", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x"))
    )
    with pytest.raises(RuntimeError, match="^x$"):
        main(["upscale", str(src), "-o", str(tmp_path / "o.png"), "--scale", "3"])


def test_in_a_folder_an_image_out_of_memory_fails_and_the_others_go_on(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nstcourse.cli.sr

    folder = tmp_path / "in"
    folder.mkdir()
    big, small = noise_png(folder / "a.png", 20, 30), noise_png(folder / "b.png", 20, 30)
    real = nstcourse.cli.sr.super_resolve

    def fail_on_a(model, image, **kwargs):
        if image.shape[-1] == 30 and not fail_on_a.done:  # the first image, a.png
            fail_on_a.done = True
            raise RuntimeError(ALLOCATOR_ERROR)
        return real(model, image, **kwargs)

    fail_on_a.done = False
    monkeypatch.setattr("nstcourse.cli.sr.super_resolve", fail_on_a)
    out = tmp_path / "out"
    code, _, err = run(capsys, ["upscale", folder, "-o", out, "--scale", 3, "--quiet"])
    assert code == 1
    assert f"{big}: out of memory (" in err and "1 of 2 images failed: a.png" in err
    assert sorted(p.name for p in out.iterdir()) == [small.name]


# --- fast-stylize ----------------------------------------------------------------------


@pytest.mark.parametrize("model", ["wave", "cin", "adain"])
def test_fast_stylize_refuses_a_large_image_and_the_size_it_suggests_fits(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_env, model: str
) -> None:
    src = noise_png(tmp_path / "in.png", 900, 1200)
    options = {"cin": ["--style", "0"], "adain": ["--style-image", src, "--preserve-colour"]}
    argv = ["fast-stylize", src, "--model", model, *options.get(model, []), "-o"]
    monkeypatch.setenv(BUDGET_ENV, "1G")
    code, _, err = run(capsys, [*argv, tmp_path / "out.png"])
    assert code == 2
    assert f"error: {src}: 1200x900 px needs about" in err
    assert f"with --model {model}, more than the 1.0 GB" in err
    assert "Traceback" not in err
    size = int(err.rstrip().rpartition("use --size ")[2])
    assert 64 <= size < 1200
    code, _, err = run(capsys, [*argv, tmp_path / "out.png", "--size", size])
    assert code == 0, err
    assert max(Image.open(tmp_path / "out.png").size) == size


def test_fast_stylize_out_of_memory_is_a_failure_naming_the_image(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = noise_png(tmp_path / "in.png", 48, 64)

    def fail(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB.")

    monkeypatch.setattr("nstcourse.cli.style.stylize_batch", fail)
    code, _, err = run(capsys, ["fast-stylize", src, "-o", tmp_path / "o.png", "--model", "wave"])
    assert code == 1
    assert f"{src}: out of memory (CUDA out of memory. Tried to allocate 20.00 GiB.)" in err
    assert "try --size 1024" in err


# --- 64 MP under a 6 GB address-space limit ---------------------------------------------


def _limited(argv: list, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``python -m nstcourse.cli ARGV`` under ADDRESS_SPACE bytes of address space."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    return subprocess.run(
        [sys.executable, *argv],
        preexec_fn=limit,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def big_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8000 x 8000 PNG (64 MP, the loader's limit), striped so that it compresses."""
    pixels = np.zeros((8000, 8000, 3), dtype=np.uint8)
    pixels[::7, :, 0] = 200
    pixels[:, ::5, 1] = 100
    path = tmp_path_factory.mktemp("big") / "big.png"
    Image.fromarray(pixels).save(path, compress_level=1)
    return path


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_AS"), reason="needs RLIMIT_AS (POSIX)")
def test_torch_imports_under_the_address_space_limit() -> None:
    result = _limited(["-c", "import torch, nstcourse.cli"], {})
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_AS"), reason="needs RLIMIT_AS (POSIX)")
@pytest.mark.parametrize("command", ["upscale", "fast-stylize"])
def test_64_mp_under_6_gb_is_refused_cleanly(
    big_png: Path, tmp_path: Path, data_env, command: str
) -> None:
    out = tmp_path / "huge.png"
    model = ["--model", "espcn", "--scale", "3"] if command == "upscale" else ["--model", "wave"]
    # An explicit budget larger than the limit allows is capped by the limit.
    env = {BUDGET_ENV: "1T", "NSTCOURSE_CHECKPOINTS_DIR": str(CHECKPOINTS)}
    result = _limited(["-m", "nstcourse.cli", command, str(big_png), "-o", str(out), *model], env)
    # An ×3 output of 64 MP is 6.9 GB as floats: it cannot be written under 6 GB, tiled or not.
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"error: {big_png}: 8000x8000 px" in result.stderr
    assert "what the address-space limit, ulimit -v, leaves" in result.stderr
    advice = "even in tiles of 64 px" if command == "upscale" else "; use --size "
    assert advice in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
