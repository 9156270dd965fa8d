"""benchmarks/sr_train_speed.py runs end to end (``--quick``: tiny budgets), so it cannot rot."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "sr_train_speed.py"


@pytest.mark.datapack
def test_quick_run_prints_both_tables(data_pack, monkeypatch, capsys):
    monkeypatch.setenv("NSTCOURSE_DATA_DIR", str(data_pack))
    spec = importlib.util.spec_from_file_location("sr_train_speed", SCRIPT)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    benchmark.main(["--quick", "--threads", "1"])
    out = capsys.readouterr().out
    for name, batch in (("srcnn", 16), ("espcn", 16), ("vdsr", 16), ("srresnet", 4)):
        assert re.search(rf"\| {name} \| {batch} \| [\d.]+ \| [\d.]+ \| \*\*[\d.]+×\*\* \|", out)
    for name in ("srcnn", "espcn"):
        assert re.search(rf"\| {name} \| [\d.]+ \| [\d.]+ \| 30\.\d\d \|", out)  # bicubic 30.39
