"""The task-tree dump (lowlevel.format_task_tree) on the shapes real programs get stuck in."""

from __future__ import annotations

import functools
import io
import json
import math
import os
import re
import signal
import threading
from collections.abc import Iterator

import pytest

import nursery_io
import nursery_io.testing
from nursery_io import lowlevel
from nursery_io._core._context import current_runner
from nursery_io._introspect import _sites
from nursery_io._introspect._format import find_lock_cycles, format_snapshot
from nursery_io._introspect._timing import acquire_timer, release_timer, timer_of

HERE = os.path.basename(__file__)


def _source_line(needle: str) -> int:
    with open(__file__) as f:
        return next(i for i, line in enumerate(f, 1) if needle in line)


@pytest.fixture
def creation_sites() -> Iterator[None]:
    lowlevel.record_creation_sites()
    try:
        yield
    finally:
        _sites.stop_recording_creation_sites()


def _line_of(text: str, needle: str) -> str:
    for line in text.splitlines():
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} not in:\n{text}")


async def test_deadlock_between_two_locks(creation_sites: None) -> None:
    first = nursery_io.Lock()
    second = nursery_io.Lock()  # a line of its own: the dump must name it
    both_hold_one = nursery_io.Event()
    holding = 0

    async def take(name_a: nursery_io.Lock, name_b: nursery_io.Lock) -> None:
        nonlocal holding
        async with name_a:
            holding += 1
            if holding == 2:
                both_hold_one.set()
            await both_hold_one.wait()
            async with name_b:
                pass  # never reached

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(take, first, second, name="alice")
        nursery.start_soon(take, second, first, name="bob")
        await nursery_io.testing.wait_all_tasks_blocked()
        text = lowlevel.format_task_tree()
        snapshot = lowlevel.task_tree_snapshot()
        nursery.cancel_scope.cancel()

    alice = _line_of(text, "task 'alice'")
    bob = _line_of(text, "task 'bob'")
    assert "[blocked] Lock at" in alice and "held by 'bob'" in alice
    assert "[blocked] Lock at" in bob and "held by 'alice'" in bob
    # Where each lock was created, and where each task waits (the inner `async with`).
    assert f"{HERE}:" in alice.split("created at")[1]
    wait_line = _source_line("async with name_b:")
    assert f"{HERE}:{wait_line} in take" in text
    assert "DEADLOCK: each task waits for a lock held by the next:" in text
    cycles = find_lock_cycles(snapshot)
    assert [sorted(t["name"] for t in cycle) for cycle in cycles] == [["alice", "bob"]]
    json.dumps(snapshot)  # all of it is JSON-able


async def test_lock_without_creation_sites_still_names_owner() -> None:
    lock = nursery_io.Lock()
    await lock.acquire()

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(lock.acquire, name="waiter")
        await nursery_io.testing.wait_all_tasks_blocked()
        line = _line_of(lowlevel.format_task_tree(), "task 'waiter'")
        nursery.cancel_scope.cancel()
    assert "held by" in line and "created at" not in line
    lock.release()


async def test_server_with_1000_connections_is_compressed() -> None:
    connections = 1000

    async def handler(stream: nursery_io.SocketStream) -> None:
        await stream.receive_some(100)

    async with nursery_io.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(nursery_io.serve_tcp, handler, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        clients = [await nursery_io.open_tcp_stream("127.0.0.1", port) for _ in range(connections)]
        await nursery_io.testing.wait_all_tasks_blocked()
        text = lowlevel.format_task_tree()
        snapshot = lowlevel.task_tree_snapshot()
        nursery.cancel_scope.cancel()
    for client in clients:
        await client.aclose()

    handlers = _line_of(text, f"x{connections} tasks")
    assert "[blocked] fd readable (fds " in handlers
    handler_line = _source_line("await stream.receive")
    assert f"{HERE}:{handler_line} in handler" in text
    assert len(text.splitlines()) < 40, text
    # Uncompressed, every connection has its own lines.
    full = format_snapshot(snapshot, compress_min=0)
    assert len(full.splitlines()) > 2 * connections
    # The connections and the listener.
    assert f"{connections + 1}x fd readable" in _line_of(text, "top waits:")


@pytest.fixture(params=["io_uring", "threads"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "threads":
        monkeypatch.setenv("NURSERY_IO_URING", "0")
    else:
        monkeypatch.delenv("NURSERY_IO_URING", raising=False)
    return str(request.param)


async def test_ring_op_in_flight(engine: str) -> None:
    read_end, write_end = os.pipe()
    try:
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(lowlevel.run_op, lowlevel.ops.read(read_end, 4096), name="reader")
            # (wait_all_tasks_blocked doesn't count a run waiting for its own file op as
            # idle, so look for the reader to park instead.)
            with nursery_io.fail_after(10):
                while "task 'reader'  [blocked]" not in lowlevel.format_task_tree():
                    await nursery_io.sleep(0.01)
            text = lowlevel.format_task_tree()
            snapshot = lowlevel.task_tree_snapshot()
            os.write(write_end, b"x")
    finally:
        os.close(read_end)
        os.close(write_end)
    line = _line_of(text, "task 'reader'")
    assert f"[blocked] READ fd {read_end} 4096 (" in line
    engine_info = snapshot["kernel"]["engine"]
    assert engine_info is not None
    (reader,) = [t for t in snapshot["tasks"] if t["name"] == "reader"]
    if engine_info["name"] == "io_uring":
        assert "(in the ring)" in line
        assert reader["wait"]["op"]["engine"] == "io_uring"
        assert engine_info["in_flight"]["io_uring"] == 1
    else:
        assert engine == "threads" or engine_info["fallback_reason"]
        assert "(on a thread)" in line or "(queued for a thread)" in line
        assert engine_info["in_flight"]["threads"] == 1
    assert "file engine: " + engine_info["name"] in text


async def test_op_with_offset_is_shown_with_it(tmp_path: os.PathLike[str]) -> None:
    fifo = os.path.join(str(tmp_path), "fifo")
    os.mkfifo(fifo)
    read_end = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    write_end = os.open(fifo, os.O_WRONLY)
    try:
        async with nursery_io.open_nursery() as nursery:
            # pread on a FIFO fails at once (ESPIPE): describe an op without running it.
            op = lowlevel.ops.read(read_end, 4096, 81920)
            from nursery_io._introspect._snapshot import _describe_op

            assert _describe_op(op)["text"] == f"READ fd {read_end} 4096@81920"
            nursery.cancel_scope.cancel()
    finally:
        os.close(read_end)
        os.close(write_end)


async def test_worker_thread() -> None:
    release = threading.Event()

    def block_until_released() -> None:
        release.wait(10)

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(nursery_io.to_thread.run_sync, block_until_released, name="offload")
        await nursery_io.testing.wait_all_tasks_blocked()
        text = lowlevel.format_task_tree()
        release.set()
    line = _line_of(text, "task 'offload'")
    assert (
        "[blocked] worker thread running test_worker_thread.<locals>.block_until_released" in line
    )
    assert re.search(r"worker threads: [1-9]\d* busy", text)


async def test_shielded_scope_with_deadline() -> None:
    shields = []

    async def guarded() -> None:
        with nursery_io.CancelScope(
            shield=True, deadline=nursery_io.current_time() + 100
        ) as shield:
            shields.append(shield)
            with nursery_io.move_on_after(5):
                await nursery_io.sleep_forever()

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(guarded, name="guarded")
        await nursery_io.testing.wait_all_tasks_blocked()
        text = lowlevel.format_task_tree()
        nursery.cancel_scope.cancel()
        with nursery_io.CancelScope(shield=True):
            await lowlevel.checkpoint()
            after_cancel = lowlevel.format_task_tree()
        shields[0].cancel()
    line = _line_of(text, "task 'guarded'")
    assert re.search(r"\[blocked\] sleep \(wakes in [45]\.\d+s\)", line), line
    scopes = [s.strip() for s in text.splitlines() if "cancel scope:" in s]
    assert re.fullmatch(r"cancel scope: deadline in [45]\.\ds", scopes[0]), scopes
    assert re.fullmatch(r"cancel scope: deadline in (9\d|100)\.\ds, shielded", scopes[1]), scopes
    # The nursery's cancellation doesn't reach through the shield: still blocked.
    assert "[blocked] sleep" in _line_of(after_cancel, "task 'guarded'")
    assert "nursery (1 task)  [cancelled]" in after_cancel


async def test_channel_sleep_and_event_waits(creation_sites: None) -> None:
    send, receive = nursery_io.open_memory_channel[int](0)
    event = nursery_io.Event()
    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(receive.receive, name="receiver")
        nursery.start_soon(send.send, 1, name="sender-1")
        await nursery_io.testing.wait_all_tasks_blocked()
        nursery.start_soon(event.wait, name="event-waiter")
        nursery.start_soon(nursery_io.sleep, math.inf, name="sleeper")
        await nursery_io.testing.wait_all_tasks_blocked()
        send2, receive2 = nursery_io.open_memory_channel[int](1)
        await send2.send(1)
        nursery.start_soon(send2.send, 2, name="sender-2")
        await nursery_io.testing.wait_all_tasks_blocked()
        text = lowlevel.format_task_tree()
        nursery.cancel_scope.cancel()
    assert "[blocked] Event at" in _line_of(text, "task 'event-waiter'")
    assert "[blocked] sleep forever" in _line_of(text, "task 'sleeper'")
    sender = _line_of(text, "task 'sender-2'")
    assert "[blocked] send to memory channel (1/1 buffered) created at " in sender
    assert f"{HERE}:{_source_line('send2, receive2 =')}" in sender


async def test_running_and_runnable_states() -> None:
    async def spin() -> None:
        while True:
            await lowlevel.checkpoint()

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(spin, name="spinner")
        await lowlevel.checkpoint()
        snapshot = lowlevel.task_tree_snapshot()
        nursery.cancel_scope.cancel()
    states = {t["name"]: t["state"] for t in snapshot["tasks"]}
    assert states["spinner"] == "runnable"
    me = lowlevel.current_task().name
    assert states[me] == "running"


async def test_print_task_tree_to_file() -> None:
    out = io.StringIO()
    lowlevel.print_task_tree(out)
    assert out.getvalue().startswith("nursery_io task tree, pid ")
    assert "[running]" in out.getvalue()


async def test_debug_signal_dumps_from_the_loop() -> None:
    out = io.StringIO()
    before = signal.getsignal(signal.SIGUSR1)
    lowlevel.enable_debug_signal(file=out)
    _sites.stop_recording_creation_sites()  # not needed here: keep other tests unaffected
    try:
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(nursery_io.sleep_forever, name="idle")
            await nursery_io.testing.wait_all_tasks_blocked()
            os.kill(os.getpid(), signal.SIGUSR1)
            # The dump happens in a callback between batches, not inside this task.
            with nursery_io.fail_after(5):
                while "end of task dump" not in out.getvalue():
                    await nursery_io.sleep(0.01)
            nursery.cancel_scope.cancel()
    finally:
        lowlevel.disable_debug_signal()
    text = out.getvalue()
    assert "--- nursery_io task dump at" in text
    assert "[blocked] sleep forever" in _line_of(text, "task 'idle'")
    # Taken between batches: this task was not running at the time.
    me = lowlevel.current_task().name
    assert "[blocked] sleep" in _line_of(text, f"task {me!r}")
    assert signal.getsignal(signal.SIGUSR1) is before


def test_debug_signal_handler_restored_when_the_run_ends() -> None:
    before = signal.getsignal(signal.SIGUSR1)

    async def main() -> None:
        lowlevel.enable_debug_signal()
        _sites.stop_recording_creation_sites()
        assert signal.getsignal(signal.SIGUSR1) is not before

    nursery_io.run(main)
    assert signal.getsignal(signal.SIGUSR1) is before


def test_nothing_installed_without_debug_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NURSERY_IO_DEBUG_SIGNAL", "NURSERY_IO_CONSOLE", "NURSERY_IO_TRACE"):
        monkeypatch.delenv(name, raising=False)
    before = signal.getsignal(signal.SIGUSR1)

    async def main() -> tuple[int, bool]:
        runner = current_runner()
        return len(runner.instruments), _sites.recording_creation_sites()

    assert nursery_io.run(main) == (0, False)
    assert signal.getsignal(signal.SIGUSR1) is before


async def test_timer_measures_steps_and_goes_away() -> None:
    runner = current_runner()
    acquire_timer(runner)
    assert "before_task_step" in runner.instruments

    async def work() -> None:
        for _ in range(10):
            await lowlevel.checkpoint()

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(work, name="worker")
        nursery.start_soon(nursery_io.sleep_forever, name="idler")
        await nursery_io.sleep(0.05)
        snapshot = lowlevel.task_tree_snapshot()
        nursery.cancel_scope.cancel()
    release_timer(runner)
    assert timer_of(runner) is None
    assert "before_task_step" not in runner.instruments
    timings = {t["name"]: t["timing"] for t in snapshot["tasks"]}
    assert timings["idler"]["steps"] == 1
    assert timings["idler"]["idle_s"] > 0.04
    assert timings["idler"]["busy_s"] < 0.04
    me = lowlevel.current_task().name
    assert timings[me]["busy_s"] < 1


async def test_dump_never_disturbs_a_task_it_describes() -> None:
    # A dump taken from another task's step reads frames and tables only.
    lock = nursery_io.Lock()
    results = []

    async def use_lock() -> None:
        async with lock:
            await nursery_io.sleep(0.01)
            results.append(1)

    async with nursery_io.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(use_lock)
        for _ in range(5):
            lowlevel.format_task_tree()
            await nursery_io.sleep(0.005)
    assert results == [1] * 5
