"""``os.fork()`` inside a run: the child goes on using the run (files, sleeps, threads,
sockets, timeouts) and the parent is not disturbed. On both file engines.

The child shares the parent's epoll set, eventfd and signal socket unless the kernel layer
replaces them, and its file engine needs a ring of its own, watched in the child's set.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import nursery_io
import nursery_io.testing
from nursery_io._kernel.engine import FileEngine
from nursery_io.lowlevel import current_statistics


def _expected_engine() -> str:
    engine = FileEngine(lambda callback: None)
    engine.close()
    return engine.engine


@pytest.fixture(params=["default", "threads"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "threads":
        monkeypatch.setenv("NURSERY_IO_URING", "0")
    return str(request.param)


def _file_engine() -> str:
    stats = current_statistics().io_statistics.file_engine
    assert stats is not None
    return str(stats.engine)


async def _file_round_trip(path: Path, text: str) -> str:
    async with await nursery_io.open_file(path, "w") as f:
        await f.write(text)
        await f.flush()
    async with await nursery_io.open_file(path, "r") as f:
        return await f.read()


def test_fork_in_a_run_child_and_parent_both_go_on(tmp_path: Path, engine: str) -> None:
    parent_pid = os.getpid()
    # What signal.set_wakeup_fd points at outside the run; the child's run must restore it.
    outside_wakeup_fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(outside_wakeup_fd)
    child_result: dict[str, object] = {}
    parent_result: dict[str, object] = {}

    async def child_body(nursery: nursery_io.Nursery) -> None:
        with nursery_io.fail_after(5):
            child_result["engine"] = _file_engine()
            # Several ring ops (open, write, close, read), each waited for in epoll.
            child_result["file"] = await _file_round_trip(tmp_path / "child", "from the child\n")
            await nursery_io.sleep(0.01)
            child_result["thread"] = await nursery_io.to_thread.run_sync(os.getpid)
            a, b = nursery_io.socket.socketpair()
            with a, b:
                async with nursery_io.open_nursery() as inner:
                    inner.start_soon(a.send, b"ping")
                    child_result["socket"] = await b.recv(10)
            stats = current_statistics().io_statistics.file_engine
            child_result["in_flight"] = stats.ops_in_flight
        nursery.cancel_scope.cancel()  # the inherited socket reader too

    async def main() -> None:
        await _file_round_trip(tmp_path / "before", "before the fork\n")  # engine started
        parent_result["engine"] = _file_engine()
        a, b = nursery_io.socket.socketpair()
        with a, b:
            async with nursery_io.open_nursery() as nursery:
                received: list[bytes] = []

                async def reader() -> None:
                    # Waiting in the epoll set when the fork happens.
                    received.append(await a.recv(10))

                nursery.start_soon(reader)
                await nursery_io.testing.wait_all_tasks_blocked()
                pid = os.fork()
                if pid == 0:
                    await child_body(nursery)
                    return

                async def wait_child() -> None:
                    try:
                        with nursery_io.fail_after(10):
                            while True:
                                done, status = os.waitpid(pid, os.WNOHANG)
                                if done:
                                    break
                                await nursery_io.sleep(0.005)
                    except nursery_io.TooSlowError:
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                        raise
                    parent_result["child_exit"] = os.waitstatus_to_exitcode(status)

                with nursery_io.fail_after(15):
                    # The parent keeps using its run while the child runs.
                    async with nursery_io.open_nursery() as inner:
                        inner.start_soon(wait_child)
                        for i in range(20):
                            text = f"parent {i}\n"
                            assert await _file_round_trip(tmp_path / "parent", text) == text
                            await nursery_io.sleep(0.001)
                    await b.send(b"pong")
                parent_result["received"] = received
                parent_result["after"] = await _file_round_trip(tmp_path / "after", "after\n")

    exit_code = 1
    try:
        nursery_io.run(main)
        exit_code = 0
    finally:
        if os.getpid() != parent_pid:  # the child: never return into pytest
            try:
                if exit_code == 0 and signal.set_wakeup_fd(-1) != outside_wakeup_fd:
                    exit_code = 2
                expected = {
                    "engine": "threads" if engine == "threads" else _expected_engine(),
                    "file": "from the child\n",
                    "thread": os.getpid(),
                    "socket": b"ping",
                    "in_flight": 0,
                }
                if exit_code == 0 and child_result != expected:
                    print("child:", child_result, "expected:", expected, flush=True)
                    exit_code = 3
            finally:
                os._exit(exit_code)
    assert parent_result["child_exit"] == 0
    assert parent_result["received"] == [b"pong"]
    assert parent_result["after"] == "after\n"
    assert (tmp_path / "child").read_text() == "from the child\n"
    assert parent_result["engine"] == ("threads" if engine == "threads" else _expected_engine())
