"""benchmarks/fast_style_speed.py runs end to end (``--quick``: tiny sizes), so it cannot rot."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from nstcourse.style.models import JOHNSON_STYLES

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "fast_style_speed.py"


@pytest.mark.datapack
def test_quick_run_prints_the_tables_and_writes_the_images(
    data_pack, monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv("NSTCOURSE_DATA_DIR", str(data_pack))
    monkeypatch.setenv("NSTCOURSE_WEIGHTS_DIR", str(data_pack / "weights"))
    spec = importlib.util.spec_from_file_location("fast_style_speed", SCRIPT)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    benchmark.main(["--quick", "--threads", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "| 32×32 |" in out and "| 48×48 |" in out
    assert re.search(r"\*\*extrapolated\*\* from \d+ evaluations", out)
    assert "| TransformNet, fast |" in out
    for style in JOHNSON_STYLES:
        assert f"| {style} | tubingen |" in out and f"| {style} | chicago |" in out
        assert (tmp_path / f"fast_style_{style}.jpg").stat().st_size > 0
        assert f"| ours | {style} |" in out and f"| lengstrom | {style} |" in out
        assert f"| adain | {style} |" in out
    cin_rows = {line.strip() for line in out.splitlines() if line.strip().startswith("| cin |")}
    assert len(cin_rows) == 10  # one per style
    assert re.search(r"\| ours \| wave \| \d+\.\d\d \| \d+\.\d\d \| \d+\.\d\d \|", out)
