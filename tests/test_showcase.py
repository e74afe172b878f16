"""python -m nursery_io: the kernel report, the demo and its statistics."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from nursery_io._kernel.engine import FileEngine


def run_showcase(*args: str, env: dict[str, str] | None = None) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", "nursery_io", "--quick", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return completed.stdout


def uring_available() -> bool:
    engine = FileEngine(lambda callback: callback(), use_uring=None)
    try:
        return engine.engine == "io_uring"
    finally:
        engine.close()


def test_reports_the_engines_and_statistics() -> None:
    output = run_showcase()
    assert "sockets, pipes, signals: epoll" in output
    assert "64 tasks x 25 random 4 KiB file reads" in output
    assert re.search(r"time: [\d.]+ s for 1,600 file reads and 400 TCP round trips", output)
    assert "asyncio + thread pool (the thread-pool design)" in output
    if os.environ.get("NURSERY_IO_URING") != "0" and uring_available():
        assert "files and disk ops: io_uring" in output
        assert "threads: 0" in output
        saved = re.search(r"batching saved ([\d,]+) syscalls", output)
        assert saved and int(saved.group(1).replace(",", "")) > 0
    else:
        assert "why not io_uring" in output


def test_forced_fallback_says_why() -> None:
    output = run_showcase("--no-compare", env={"NURSERY_IO_URING": "0"})
    assert "why not io_uring: disabled by NURSERY_IO_URING=0" in output
    assert "io_uring: 0, threads: 2,176, inline: 0" in output
    assert "thread-pool design" not in output
