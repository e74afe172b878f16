"""Smoke test of the benchmark harness (benchmarks/): structure only, no timing assertions."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def classify(exc: BaseException) -> dict[str, Any]:
    # benchmarks/ is not an installed package: plain `pytest` needs the repo root on the path.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    worker = importlib.import_module("benchmarks.worker")
    result: dict[str, Any] = worker.classify(exc)
    return result


def test_quick_run_reports_both_libraries(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "benchmarks.run", "--quick", "--only", "spawn"]
    cmd += ["--libraries", "trio,asyncio", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stderr

    report = json.loads((tmp_path / "latest.json").read_text())
    assert report["meta"]["rounds"] == 1
    assert report["meta"]["size"] == "quick"
    spawn = report["workloads"]["spawn"]
    assert spawn["reference"] == "trio"
    assert set(spawn["libraries"]) == {"trio", "asyncio"}
    for lib, summary in spawn["libraries"].items():
        assert summary["status"] == "ok", (lib, summary)
        assert summary["median_s"] > 0
        assert summary["ops"] == spawn["params"]["tasks"]
        assert summary["threads"] >= 1
        assert len(summary["runs"]) == 1
        # nursery_io was not selected, so there is no baseline ratio.
        assert summary["vs_baseline"] is None
    assert spawn["libraries"]["trio"]["vs_reference"] == 1.0
    assert spawn["libraries"]["asyncio"]["vs_reference"] > 0
    assert [t["verdict"] for t in spawn["targets"]] == ["N/A", "N/A"]

    markdown = (tmp_path / "latest.md").read_text()
    assert "## spawn" in markdown and "| trio |" in markdown and "| asyncio |" in markdown
    assert "## Targets" in markdown
    assert "| trio |" in proc.stdout
    assert (tmp_path / "latest.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_missing_features_are_unavailable_not_errors() -> None:
    missing = AttributeError("module 'nursery_io' has no attribute 'run'")
    missing.obj = sys  # what Python sets for a module attribute lookup
    assert classify(missing)["status"] == "unavailable"
    assert classify(ModuleNotFoundError("No module named 'x'"))["status"] == "unavailable"
    assert classify(LookupError("No such backend: nursery_io"))["status"] == "unavailable"
    group = ExceptionGroup("g", [NotImplementedError("pread"), ImportError("y")])
    assert classify(group)["status"] == "unavailable"
    assert classify(ValueError("bug"))["status"] == "error"
    assert classify(KeyError("bug"))["status"] == "error"
    assert classify(ExceptionGroup("g", [NotImplementedError(), ValueError()]))["status"] == "error"
