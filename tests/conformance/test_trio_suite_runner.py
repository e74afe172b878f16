"""The conformance runner works, and a few of trio's own test files pass on nursery_io.

The full run (``python tests/conformance/run_trio_suite.py``) takes minutes and is a
measurement; this runs two small files of trio's suite through the same machinery on both
targets, so a broken runner or a regression in those areas fails CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).with_name("run_trio_suite.py")
FILES = ["_tests/test_highlevel_generic.py", "_core/_tests/test_parking_lot.py"]


def test_small_files_of_trios_suite_pass_on_both(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    subprocess.run(
        [sys.executable, str(RUNNER), "--target", "both", "--json", str(report), *FILES],
        check=True,
        capture_output=True,
        timeout=300,
    )
    summary = json.loads(report.read_text())
    comparison = summary["comparison"]
    # Trio passes these files; if the runner broke, it would pass none of them.
    assert comparison["trio_passed"] >= 10
    assert comparison["regressions"] == []
    assert comparison["nursery_io_passed"] == comparison["trio_passed"]


def test_private_modules_imported_from_trio_go_to_the_stand_ins() -> None:
    # Loaded by path: the runner is a script, not part of a package.
    import importlib.util

    spec = importlib.util.spec_from_file_location("run_trio_suite", RUNNER)
    assert spec is not None and spec.loader is not None
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    source = "import trio\nfrom trio import _core, _file_io\n    from trio import sleep, _sync\n"
    rewritten = runner._rewrite(source)
    assert "from trio_suite import _core, _file_io\n" in rewritten
    assert "    from trio import sleep\n    from trio_suite import _sync\n" in rewritten
    assert "from trio import _" not in rewritten
