"""python -m nursery_io: the kernel report, the demo and its statistics; and the same demo
head to head with a thread pool (python -m benchmarks.showcase)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from nursery_io import _showcase
from nursery_io._kernel.engine import FileEngine

ROOT = Path(__file__).resolve().parent.parent
# benchmarks/ is not an installed package: plain `pytest` needs the repo root on the path.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from benchmarks import showcase as head_to_head  # noqa: E402


def run_showcase(*args: str, env: dict[str, str] | None = None, module: str = "nursery_io") -> str:
    """The output of ``python -m nursery_io --quick`` (or another module's showcase)."""
    completed = subprocess.run(
        [sys.executable, "-m", module, "--quick", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    # Everything fits a standard terminal: the report on stdout, the progress on stderr.
    for line in completed.stdout.splitlines() + completed.stderr.splitlines():
        assert len(line) <= 80, line
    return completed.stdout


def verdict(output: str) -> str:
    """The verdict at the end of the report, its wrapped lines joined."""
    text = output[output.index("  => ") :]
    return " ".join(line.strip() for line in text.splitlines())


def uring_available() -> bool:
    engine = FileEngine(lambda callback: callback(), use_uring=None)
    try:
        return engine.engine == "io_uring"
    finally:
        engine.close()


def check_statistics(output: str, said: str) -> None:
    """The run's statistics, and the verdict's figures for nursery_io taken from them."""
    assert "sockets, pipes, signals: epoll" in output
    assert "64 tasks x 25 random 4 KiB file reads" in output
    assert re.search(r"time: [\d.]+ s for 1,600 file reads and 400 TCP round trips", output)
    # The process's own threads and the kernel's io-wq workers are counted apart.
    own = int(re.search(r"peak threads of the process: (\d+)", output).group(1))  # type: ignore[union-attr]
    assert (
        f"nursery_io: {said.split(' s on ', maxsplit=1)[0].split(': ')[1]} s on {own} thread"
        in said
    )
    workers = re.search(r"peak io_uring kernel workers .*?: (\d+)", output, re.S)
    if workers:
        assert f"(+{workers.group(1)} kernel io-wq)" in said
    else:
        assert "io-wq" not in said
    if os.environ.get("NURSERY_IO_URING") != "0" and uring_available():
        assert "files and disk ops: io_uring" in output
        assert "threads: 0" in output
        saved = re.search(r"batching saved ([\d,]+) syscalls", output)
        assert saved and int(saved.group(1).replace(",", "")) > 0
    else:
        assert "why not io_uring" in output


def test_reports_the_engines_and_statistics() -> None:
    output = run_showcase()
    said = verdict(output)
    assert re.fullmatch(
        r"=> nursery_io: [\d.]+ s on \d+ threads?( \(\+\d+ kernel io-wq\))?\.", said
    )
    check_statistics(output, said)
    # The comparison with other designs is a benchmark, not part of the runtime.
    assert "thread-pool design" not in output
    assert "floor" not in output


def test_head_to_head_compares_with_a_thread_pool_and_the_floor() -> None:
    output = run_showcase(module="benchmarks.showcase")
    assert "asyncio + thread pool (the thread-pool design)" in output
    assert re.search(r"the floor: .*\n  time: [\d.]+ s \(os.pread/os.pwrite in a loop", output)
    said = verdict(output)
    assert re.fullmatch(
        r"=> nursery_io: [\d.]+ s on \d+ threads?( \(\+\d+ kernel io-wq\))?; "
        r"thread pool: [\d.]+ s on \d+ threads \(nursery_io [\d.]+x (as fast|slower)\); "
        r"synchronous floor \(the file reads and writes alone, one thread, no event loop\): "
        r"[\d.]+ s\.",
        said,
    ), said
    check_statistics(output, said)


def test_forced_fallback_says_why() -> None:
    output = run_showcase(env={"NURSERY_IO_URING": "0"})
    assert "why not io_uring: disabled by NURSERY_IO_URING=0" in output
    assert "io_uring: 0, threads: 2,176, inline: 0" in output
    assert "thread-pool design" not in output


def test_the_report_comes_before_the_cleanup(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen_at_cleanup: list[str] = []

    class RecordingDirectory(tempfile.TemporaryDirectory[str]):
        def cleanup(self) -> None:
            seen_at_cleanup.append(capsys.readouterr().out)
            super().cleanup()

    monkeypatch.setattr(_showcase.tempfile, "TemporaryDirectory", RecordingDirectory)
    assert _showcase.main(["--quick"]) == 0
    [printed] = seen_at_cleanup
    assert "nursery_io run statistics" in printed
    assert verdict(printed).startswith("=> nursery_io: ")
    assert capsys.readouterr().out == ""  # nothing left to say after the cleanup


def test_verdict_wording() -> None:
    ours = _showcase.Outcome("nursery_io", 0.5, 1, 1, 1, {"kernel_workers": 3})
    theirs = _showcase.Outcome("asyncio + thread pool", 2.0, 1, 1, 9)
    assert head_to_head.verdict(ours, theirs, 0.25) == (
        "=> nursery_io: 0.50 s on 1 thread (+3 kernel io-wq); thread pool: 2.00 s on 9 "
        "threads (nursery_io 4.0x as fast); synchronous floor (the file reads and writes "
        "alone, one thread, no event loop): 0.25 s."
    )
    slower = _showcase.Outcome("asyncio + thread pool", 0.25, 1, 1, 2)
    ours.details = {}
    assert head_to_head.verdict(ours, slower, None) == (
        "=> nursery_io: 0.50 s on 1 thread; thread pool: 0.25 s on 2 threads "
        "(nursery_io 2.0x slower)."
    )
