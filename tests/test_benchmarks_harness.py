"""Smoke test of the benchmark harness (benchmarks/): structure only, no timing assertions."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

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


def harness_module() -> Any:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("benchmarks.harness")


def synthetic_report() -> dict[str, Any]:
    def ok(median: float) -> dict[str, Any]:
        return {
            "status": "ok",
            "version": "1.0",
            "median_s": median,
            "min_s": median,
            "max_s": median * 1.5,
            "n": 3,
            "failed": 0,
            "ops": 100,
            "ops_per_s": 100 / median,
            "threads": 1,
            "library_threads": None,
            "notes": "",
        }

    libraries = {"nursery_io": ok(0.5), "trio": ok(1.0), "sync": ok(0.125)}
    libraries["asyncio"] = {"status": "unavailable", "version": "", "reason": "no | module"}
    return {
        "meta": {
            "date": "2026-01-01 00:00:00 +0000",
            "python": "3.11",
            "platform": "Linux",
            "cpus": 2,
            "rounds": 3,
            "size": "quick",
        },
        "workloads": {
            "demo": {
                "title": "a *demo* workload",
                "unit": "ops",
                "params": {"n": 1},
                "reference": "trio",
                "notes": {},
                "libraries": libraries,
                "targets": [
                    {"text": "x", "measured": "2.00x (needs >= 1x)", "verdict": "PASS"},
                ],
            }
        },
    }


def test_one_ratio_convention_in_tables_and_chart() -> None:
    # trio took twice as long as nursery_io: nursery_io's speed-up over it is 2.00x, in the
    # Markdown table, the docs' reST table and the chart alike; the sync floor, 4x faster
    # than nursery_io, is 0.25x.
    harness = harness_module()
    report = synthetic_report()
    wl = report["workloads"]["demo"]
    assert harness.speedup(wl, "trio") == 2.0
    assert harness.speedup(wl, "sync") == 0.25
    assert harness.chart_values(wl) == (
        "nursery_io",
        {"nursery_io": 1.0, "trio": 2.0, "sync": 0.25},
    )

    markdown = harness.render_markdown(report)
    assert "| nursery_io speed-up |" in markdown
    assert "| trio | 1 s | 100 | 1 s - 1.5 s (3 runs) | 1 | 2.00x | 1.0 |" in markdown
    assert "| sync | 125 ms | 800 | 125 ms - 188 ms (3 runs) | 1 | 0.25x | 1.0 |" in markdown
    assert "above 1 means nursery_io is faster" in markdown

    rst = harness.render_rst(report)
    assert "     - nursery_io speed-up\n" in rst
    assert (
        "   * - trio\n     - 1 s\n     - 100\n     - 1 s - 1.5 s (3 runs)\n     - 1\n"
        "     - 2.00x\n" in rst
    )
    assert "above 1 means nursery_io is faster" in rst


def test_the_rst_tables_are_valid_restructuredtext() -> None:
    docutils_core = pytest.importorskip("docutils.core")  # comes with Sphinx (the docs extra)

    harness = harness_module()
    for report in (synthetic_report(), None):
        text = "Results\n-------\n\n" + harness.render_rst(report)
        # Warnings are errors, as in the docs build (sphinx-build -W).
        tree = docutils_core.publish_doctree(
            text, settings_overrides={"halt_level": 2, "report_level": 2}
        )
        assert tree.astext()
    tree = docutils_core.publish_doctree(
        "Results\n-------\n\n" + harness.render_rst(synthetic_report())
    )
    tables = [node for node in tree.findall() if node.tagname == "table"]
    assert len(tables) == 2  # the workload's and the targets'
    assert "a *demo* workload" in tree.astext()  # escaped, not emphasis
    assert "no | module" in tree.astext()


def test_the_chart_is_drawn(tmp_path: Path) -> None:
    harness = harness_module()
    harness.write_chart(synthetic_report(), tmp_path / "chart.png")
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
