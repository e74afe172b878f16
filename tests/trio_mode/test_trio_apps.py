"""Real trio applications, run unchanged on real trio and in trio mode, must agree.

Each program under ``apps/`` is written for trio and prints a JSON report. It runs twice in
fresh interpreters: ``python app.py`` (real trio) and ``python -m nursery_io run --as-trio
app.py`` (nursery_io). The reports must be the same apart from which runtime ran them.
Both runs inherit ``NURSERY_IO_URING``, so CI covers both file engines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("httpx")
pytest.importorskip("hypercorn")

APPS = Path(__file__).parent / "apps"


def run_app(name: str, *arguments: str, trio_mode: bool) -> dict[str, object]:
    prefix = ["-m", "nursery_io", "run", "--as-trio"] if trio_mode else []
    result = subprocess.run(
        [sys.executable, *prefix, str(APPS / name), *arguments],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_httpx_client_against_hypercorn() -> None:
    on_trio = run_app("http_roundtrips.py", trio_mode=False)
    on_ours = run_app("http_roundtrips.py", trio_mode=True)
    assert on_trio.pop("runtime") == "trio"
    assert on_ours.pop("runtime") == "nursery_io"
    assert on_ours == on_trio
    # What the program saw, spelled out: the comparison above is only as good as this.
    assert on_ours["library"] == "trio"
    assert on_ours["post"] == [200, f"{4 * 1024 * 1024} {sum(range(256)) * 16 * 1024 % 65521}"]
    assert on_ours["cancelled"] is True
    assert on_ours["timeout"] == "ReadTimeout"
    assert on_ours["after"] == [200, "afterafterafter"]


def test_hypercorn_serving_starlette_under_load() -> None:
    arguments = ("--requests", "400", "--concurrency", "20")
    on_trio = run_app("starlette_load.py", *arguments, trio_mode=False)
    on_ours = run_app("starlette_load.py", *arguments, trio_mode=True)
    assert on_trio["runtime"] == "trio"
    assert on_ours["runtime"] == "nursery_io"
    assert on_ours["answers"] == on_trio["answers"]
    answers = on_ours["answers"]
    assert isinstance(answers, list)
    assert len(answers) == 400
    assert answers[2] == {"length": 2, "library": "trio"}
