"""Child processes: lowlevel.open_process, Process and run_process (Trio's semantics)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

import nursery_io
from nursery_io import _subprocess, lowlevel
from nursery_io.testing import wait_all_tasks_blocked

PY = sys.executable
# A child that blocks until its stdin reaches EOF, then exits 0: lets tests decide when it
# exits without any timing.
CAT = ["cat"]
BLOCK_ON_STDIN = [PY, "-c", "import sys; sys.stdin.read()"]


@pytest.fixture(params=["pidfd", "thread"])
def exit_watcher(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test once with pidfds and once with the waitid-thread fallback."""
    if request.param == "pidfd" and not _subprocess._USE_PIDFD:
        pytest.skip("os.pidfd_open is not available")
    monkeypatch.setattr(_subprocess, "_USE_PIDFD", request.param == "pidfd")
    yield request.param


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def assert_reaped(pid: int) -> None:
    # Already waited for: it is not our child any more (neither running nor a zombie).
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


# ----- run_process: results, errors, I/O -----


async def test_run_process_captures_output_and_status(exit_watcher: str) -> None:
    result = await nursery_io.run_process(
        [PY, "-c", "import sys; sys.stdout.write('out'); sys.stderr.write('err')"],
        capture_stdout=True,
        capture_stderr=True,
    )
    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode == 0
    assert result.stdout == b"out"
    assert result.stderr == b"err"
    assert result.args[0] == PY


async def test_run_process_feeds_stdin_and_handles_big_payloads(exit_watcher: str) -> None:
    # Bigger than any pipe buffer in both directions: feeding and collecting must run
    # concurrently or this deadlocks.
    payload = os.urandom(3 * 1024 * 1024)
    result = await nursery_io.run_process(CAT, stdin=payload, capture_stdout=True)
    assert result.stdout == payload


async def test_default_stdin_is_empty_and_uncaptured_output_is_none() -> None:
    result = await nursery_io.run_process(CAT, capture_stdout=True)
    assert result.stdout == b""
    assert result.stderr is None
    result = await nursery_io.run_process(["true"])
    assert result.stdout is None


async def test_check_raises_called_process_error_with_the_output() -> None:
    with pytest.raises(subprocess.CalledProcessError) as info:
        await nursery_io.run_process(
            [PY, "-c", "import sys; print('partial'); sys.exit(3)"], capture_stdout=True
        )
    assert info.value.returncode == 3
    assert info.value.stdout == b"partial\n"


async def test_check_false_returns_the_failure() -> None:
    result = await nursery_io.run_process(["false"], check=False)
    assert result.returncode == 1


async def test_stderr_to_stdout_and_shell_commands() -> None:
    result = await nursery_io.run_process(
        "echo one; echo two 1>&2",
        shell=True,
        capture_stdout=True,
        stderr=subprocess.STDOUT,
    )
    assert result.stdout == b"one\ntwo\n"


async def test_stdin_from_a_file_descriptor_and_options_pass_through(tmp_path: object) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"from a pipe")
    os.close(write_end)
    try:
        result = await nursery_io.run_process(
            [PY, "-c", "import os, sys; print(os.getcwd(), os.environ['NIO'], sys.stdin.read())"],
            stdin=read_end,
            capture_stdout=True,
            cwd=str(tmp_path),
            env={**os.environ, "NIO": "set"},
        )
    finally:
        os.close(read_end)
    assert result.stdout.decode().split() == [str(tmp_path), "set", "from", "a", "pipe"]


async def test_argument_errors() -> None:
    with pytest.raises(UnicodeError, match="bytes, not str"):
        await nursery_io.run_process(CAT, stdin="text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nursery.start"):
        await nursery_io.run_process(CAT, stdin=subprocess.PIPE)
    with pytest.raises(ValueError, match="nursery.start"):
        await nursery_io.run_process(CAT, stdout=subprocess.PIPE)
    with pytest.raises(ValueError, match="can't specify both"):
        await nursery_io.run_process(CAT, capture_stdout=True, stdout=subprocess.DEVNULL)
    with pytest.raises(ValueError, match="can't specify both"):
        await nursery_io.run_process(CAT, capture_stderr=True, stderr=subprocess.DEVNULL)
    with pytest.raises(TypeError, match="input"):
        await nursery_io.run_process(CAT, input=b"x")
    with pytest.raises(TypeError, match="'text' option"):
        await nursery_io.run_process(CAT, text=True)
    with pytest.raises(TypeError, match="if shell=False"):
        await nursery_io.run_process("echo hi")
    with pytest.raises(TypeError, match="not a sequence"):
        await nursery_io.run_process(["echo", "hi"], shell=True)


async def test_spawn_failure_raises_and_leaks_no_fds() -> None:
    await nursery_io.run_process(["true"])  # warm up whatever the run opens lazily
    before = open_fds()
    for _ in range(3):
        with pytest.raises(FileNotFoundError):
            await nursery_io.run_process(
                ["/nonexistent/program"], capture_stdout=True, capture_stderr=True
            )
    assert open_fds() == before


async def test_no_fds_leak_and_children_are_reaped(exit_watcher: str) -> None:
    await nursery_io.run_process(CAT, capture_stdout=True)
    before = open_fds()
    pids = []
    for _ in range(5):
        async with nursery_io.open_nursery() as nursery:
            process = await nursery.start(
                lambda task_status: nursery_io.run_process(
                    CAT,
                    stdin=b"x",
                    capture_stdout=True,
                    capture_stderr=True,
                    task_status=task_status,
                )
            )
            pids.append(process.pid)
    assert open_fds() == before
    for pid in pids:
        assert_reaped(pid)


# ----- run_process: cancellation -----


async def test_cancel_terminates_and_reaps_the_child(exit_watcher: str) -> None:
    async with nursery_io.open_nursery() as nursery:
        process: nursery_io.Process = await nursery.start(
            lambda task_status: nursery_io.run_process(
                BLOCK_ON_STDIN, stdin=subprocess.PIPE, task_status=task_status
            )
        )
        await wait_all_tasks_blocked()
        assert process.returncode is None
        nursery.cancel_scope.cancel()
    assert process.returncode == -signal.SIGTERM
    assert_reaped(process.pid)
    assert process.stdin is not None
    await process.stdin.aclose()


async def test_cancel_with_a_timeout_while_feeding_and_capturing() -> None:
    before = open_fds()
    with nursery_io.move_on_after(0.01) as scope:
        await nursery_io.run_process(
            [PY, "-c", "import time; time.sleep(60)"],
            stdin=b"unread",
            capture_stdout=True,
            capture_stderr=True,
        )
    assert scope.cancelled_caught
    assert open_fds() == before


async def test_child_ignoring_sigterm_is_killed_after_the_grace_period(
    autojump_clock: object,
) -> None:
    ignore_term = (
        "import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); sys.stdin.read()"
    )
    # The warning comes from run_process's cleanup, which runs while the nursery exits.
    with pytest.warns(RuntimeWarning, match="ignored SIGTERM"):
        async with nursery_io.open_nursery() as nursery:
            process: nursery_io.Process = await nursery.start(
                lambda task_status: nursery_io.run_process(
                    [PY, "-c", ignore_term],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    task_status=task_status,
                )
            )
            assert process.stdout is not None
            received = b""
            while not received.endswith(b"\n"):
                received += await process.stdout.receive_some()
            assert received == b"ready\n"
            started = nursery_io.current_time()
            nursery.cancel_scope.cancel()
    assert nursery_io.current_time() - started >= _subprocess.TERMINATE_GRACE_SECONDS
    assert process.returncode == -signal.SIGKILL
    assert process.stdin is not None and process.stdout is not None
    await process.stdin.aclose()
    await process.stdout.aclose()


async def test_custom_deliver_cancel_runs_and_the_child_is_still_reaped() -> None:
    calls: list[int] = []

    async def send_sigint(process: nursery_io.Process) -> None:
        calls.append(process.pid)
        process.send_signal(signal.SIGINT)

    with nursery_io.move_on_after(0.01):
        await nursery_io.run_process(
            [PY, "-c", "import time; time.sleep(60)"], deliver_cancel=send_sigint
        )
    assert len(calls) == 1
    assert_reaped(calls[0])


async def test_failing_deliver_cancel_kills_the_child_and_propagates() -> None:
    pids: list[int] = []

    async def broken(process: nursery_io.Process) -> None:
        pids.append(process.pid)
        raise ValueError("could not stop it")

    with pytest.raises(BaseExceptionGroup) as info:
        with nursery_io.move_on_after(0.01):
            await nursery_io.run_process(BLOCK_ON_STDIN, stdin=None, deliver_cancel=broken)
    assert info.group_contains(ValueError, match="could not stop it")
    assert_reaped(pids[0])


# ----- open_process and Process -----


async def test_open_process_pipes_and_stdio(exit_watcher: str) -> None:
    process = await lowlevel.open_process(CAT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert isinstance(process.stdin, lowlevel.FdStream)
    assert isinstance(process.stdout, lowlevel.FdStream)
    assert process.stderr is None
    assert process.stdio is not None
    await process.stdio.send_all(b"ping")
    assert await process.stdio.receive_some() == b"ping"
    assert process.poll() is None
    assert "running with PID" in repr(process)
    await process.stdio.send_eof()
    assert await process.stdio.receive_some() == b""
    assert await process.wait() == 0
    assert process.returncode == 0
    assert process.poll() == 0
    assert "exited with status 0" in repr(process)
    await process.stdio.aclose()


async def test_stderr_pipe_and_stdout_shared_with_stderr() -> None:
    script = "import sys; sys.stdout.write('a'); sys.stdout.flush(); sys.stderr.write('b')"
    process = await lowlevel.open_process(
        [PY, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert process.stderr is None and process.stdout is not None
    data = b""
    while chunk := await process.stdout.receive_some():
        data += chunk
    assert data == b"ab"
    assert await process.wait() == 0
    await process.stdout.aclose()


async def test_signals_and_status(exit_watcher: str) -> None:
    for method, signum in [("terminate", signal.SIGTERM), ("kill", signal.SIGKILL)]:
        process = await lowlevel.open_process(BLOCK_ON_STDIN, stdin=subprocess.PIPE)
        getattr(process, method)()
        assert await process.wait() == -signum
        assert f"exited with signal {signum.value}" in repr(process)
        # After the child is reaped, signals are silently dropped (its pid may be reused).
        process.kill()
        assert process.stdin is not None
        await process.stdin.aclose()


async def test_many_waiters_and_cancelled_wait_leaves_the_child_alone(exit_watcher: str) -> None:
    process = await lowlevel.open_process(BLOCK_ON_STDIN, stdin=subprocess.PIPE)
    results: list[int] = []

    async def waiter() -> None:
        results.append(await process.wait())

    with nursery_io.move_on_after(0.01) as scope:
        await process.wait()
    assert scope.cancelled_caught
    assert process.poll() is None
    async with nursery_io.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(waiter)
        await wait_all_tasks_blocked()
        assert results == []
        assert process.stdin is not None
        await process.stdin.aclose()
    assert results == [0, 0, 0]
    assert await process.wait() == 0  # already reaped: still a checkpoint, same answer


async def test_poll_reaping_under_a_waiting_task(exit_watcher: str) -> None:
    process = await lowlevel.open_process(BLOCK_ON_STDIN, stdin=subprocess.PIPE)
    results: list[int] = []

    async def waiter() -> None:
        results.append(await process.wait())

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await wait_all_tasks_blocked()
        assert process.stdin is not None
        await process.stdin.aclose()
        # Reap it from here while the waiter is still parked: the waiter must still wake.
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        assert process.poll() == 0
    assert results == [0]


async def test_aclose_waits_and_kills_when_cancelled() -> None:
    process = await lowlevel.open_process(CAT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    await process.aclose()  # closing stdin makes cat exit
    assert process.returncode == 0

    process = await lowlevel.open_process(
        [PY, "-c", "import time; time.sleep(60)"], stdout=subprocess.PIPE
    )
    with nursery_io.move_on_after(0.01):
        await process.aclose()
    assert process.returncode == -signal.SIGKILL
    assert_reaped(process.pid)


async def test_open_process_rejects_text_mode_and_checks_cancellation() -> None:
    with pytest.raises(TypeError, match="'encoding' option"):
        await lowlevel.open_process(CAT, encoding="utf-8")
    with nursery_io.CancelScope() as scope:
        scope.cancel()
        await lowlevel.open_process(["true"])  # cancelled before anything is spawned
        pytest.fail("not reached")  # pragma: no cover
    assert scope.cancelled_caught
