"""Subprocesses, worker processes and signals through anyio on nursery_io."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import anyio
import pytest
from anyio import ClosedResourceError, EndOfStream, open_process, run_process, to_process

pytestmark = pytest.mark.anyio

PY = sys.executable


async def test_run_process_captures_and_checks() -> None:
    result = await run_process(
        [PY, "-c", "import sys; print(sys.stdin.read().upper())"], input=b"hi"
    )
    assert result.stdout == b"HI\n"
    assert result.returncode == 0
    with pytest.raises(subprocess.CalledProcessError) as info:
        await run_process("echo out; echo err >&2; exit 3")  # a string runs in the shell
    assert info.value.returncode == 3
    assert info.value.stdout == b"out\n"
    assert info.value.stderr == b"err\n"


async def test_open_process_streams_and_errors() -> None:
    async with await open_process(["cat"]) as process:
        assert process.stdin is not None and process.stdout is not None
        await process.stdin.send(b"echo")
        assert await process.stdout.receive() == b"echo"
        await process.stdin.aclose()
        with pytest.raises(EndOfStream):
            await process.stdout.receive()
        with pytest.raises(ClosedResourceError):
            await process.stdin.send(b"too late")
        assert await process.wait() == 0
    assert process.returncode == 0


async def test_process_options_are_passed_on(tmp_path: object) -> None:
    result = await run_process(
        [
            PY,
            "-c",
            "import os; print(os.getcwd(), os.environ['ANYIO_NIO'], os.getsid(0) == os.getpid())",
        ],
        cwd=str(tmp_path),
        env={**os.environ, "ANYIO_NIO": "yes"},
        start_new_session=True,
    )
    assert result.stdout.decode().split() == [str(tmp_path), "yes", "True"]


async def test_aclose_kills_the_process_when_cancelled() -> None:
    process = await open_process([PY, "-c", "import time; time.sleep(60)"])
    with anyio.move_on_after(0.05):
        await process.aclose()
    assert process.returncode == -signal.SIGKILL
    with pytest.raises(ChildProcessError):  # reaped
        os.waitpid(process.pid, os.WNOHANG)


async def test_signals_and_terminate() -> None:
    process = await open_process([PY, "-c", "import sys; sys.stdin.read()"])
    process.send_signal(signal.SIGTERM)
    assert await process.wait() == -signal.SIGTERM
    await process.aclose()


def _square(x: int) -> int:
    return x * x


def test_worker_processes_are_reaped_when_the_run_ends() -> None:
    async def main() -> tuple[int, set[int]]:
        value = await to_process.run_sync(_square, 7)
        workers = to_process._process_pool_workers.get()
        return value, {worker.pid for worker in workers}

    value, pids = anyio.run(main, backend="nursery_io")
    assert value == 49
    assert pids
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


async def test_signal_receiver_yields_signals() -> None:
    with anyio.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2) as signals:
        os.kill(os.getpid(), signal.SIGUSR2)
        async for received in signals:
            assert received is signal.Signals.SIGUSR2
            break
