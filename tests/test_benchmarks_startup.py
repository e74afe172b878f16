"""Smoke test of the start-up benchmark (benchmarks/startup.py): structure only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_one_round_reports_every_number(tmp_path: Path) -> None:
    out = tmp_path / "startup.json"
    cmd = [sys.executable, "-m", "benchmarks.startup", "--rounds", "1"]
    cmd += ["--libraries", "nursery_io,asyncio", "--json", str(out)]
    proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| nursery_io |" in proc.stdout and "| asyncio |" in proc.stdout

    report = json.loads(out.read_text())
    assert report["meta"]["rounds"] == 1
    assert report["meta"]["bytecode"] == "cached"
    assert set(report["libraries"]) == {"nursery_io", "asyncio"}
    for lib, kinds in report["libraries"].items():
        assert set(kinds) == {"import", "first_read", "process"}, lib
        for summary in kinds.values():
            assert summary["median"] > 0
        # The first read includes the import; the process includes both.
        assert kinds["first_read"]["median"] < kinds["process"]["median"]
