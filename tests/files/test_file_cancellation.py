"""Cancellation of file operations: storms of cancels while hundreds of ops are in flight.

What must hold whatever the timing: no fd leaks (counted in /proc/self/fd), every read that
returned gave the right bytes, a cancelled call changed nothing (sequential reads resume
exactly where the last successful one stopped), and buffered writes that returned are in
the file, in order, once.
"""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import nursery_io
from nursery_io import lowlevel


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(scope="module")
def data_files(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, bytes]]:
    rng = random.Random(99)
    directory = tmp_path_factory.mktemp("storm")
    files = []
    for i in range(8):
        # Bytes with plenty of newlines so readline has work to do; latin-1 decodes anything.
        data = bytes(rng.choice(b"abcdefghij\n\r\xe9") for _ in range(rng.randrange(1, 300_000)))
        path = directory / f"f{i}"
        path.write_bytes(data)
        files.append((path, data))
    return files


class Canceller:
    """Cancels random registered scopes at random moments, to hit ops at every stage.

    Paced by time (a cancel every ``interval`` seconds on average), not by loop turns: a
    thread hop takes far longer than a turn, and cancelling per turn would cancel every
    pool op before it ever started.
    """

    def __init__(self, seed: int, rate: float, interval: float = 0.0002) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        self.interval = interval
        self.scopes: list[nursery_io.CancelScope] = []
        self.cancels = 0

    async def run(self) -> None:
        while True:
            if self.rng.random() < 0.5:
                await lowlevel.checkpoint()
            else:
                await nursery_io.sleep(self.rng.random() * 2 * self.interval)
            if self.scopes:
                self.rng.choice(self.scopes).cancel()
                self.cancels += 1

    async def call(self, fn: Callable[[], Awaitable[Any]]) -> tuple[bool, Any]:
        """(True, result), or (False, None) if this call was cancelled.

        A fraction ``rate`` of calls is cancelled before it starts; the others may be
        cancelled by run() while they wait for their ops (which then often complete
        anyway: a cached read is done by the time the cancel request reaches the kernel)."""
        with nursery_io.CancelScope() as scope:
            if self.rng.random() < self.rate:
                scope.cancel()
                self.cancels += 1
            self.scopes.append(scope)
            try:
                return True, await fn()
            finally:
                self.scopes.remove(scope)
        return False, None


async def _sequential_reader(
    canceller: Canceller, rng: random.Random, path: Path, data: bytes, stats: dict[str, int]
) -> None:
    mode, buffering = rng.choice([("rb", -1), ("rb", 0), ("rb", 37), ("r", -1), ("r", 16)])
    text = "b" not in mode
    expected: Any = data.decode("latin-1") if text else data
    if text:
        expected = expected.replace("\r\n", "\n").replace("\r", "\n")
    ok, f = await canceller.call(
        lambda: nursery_io.open_file(
            path, mode, buffering=buffering, encoding="latin-1" if text else None
        )
    )
    if not ok:
        stats["open_cancelled"] += 1
        return
    got: list[Any] = []
    async with f:
        while True:
            kind = rng.choice(["read", "readline", "read1", "readinto", "pread", "tell"])
            if kind == "read1" and (text or buffering == 0):
                kind = "read"
            if kind == "readinto" and text:
                kind = "readline"
            if kind == "read":
                ok, chunk = await canceller.call(lambda: f.read(rng.randrange(1, 20000)))
            elif kind == "readline":
                ok, chunk = await canceller.call(f.readline)
            elif kind == "read1":
                ok, chunk = await canceller.call(lambda: f.read1(rng.randrange(1, 9000)))
            elif kind == "readinto":
                buf = bytearray(rng.randrange(1, 9000))
                ok, n = await canceller.call(lambda: f.readinto(buf))  # noqa: B023
                chunk = bytes(buf[:n]) if ok else None
            elif kind == "pread":
                offset = rng.randrange(len(data) + 10)
                size = rng.randrange(0, 5000)
                ok, chunk = await canceller.call(lambda: f.pread(size, offset))  # noqa: B023
                if ok:
                    assert chunk == data[offset : offset + size]
                    stats["ok"] += 1
                else:
                    stats["cancelled"] += 1
                continue
            else:
                ok, pos = await canceller.call(f.tell)
                if ok and not text:
                    assert pos == sum(map(len, got))
                continue
            if not ok:
                stats["cancelled"] += 1
                continue
            stats["ok"] += 1
            if not chunk:
                break
            got.append(chunk)
    joined = ("" if text else b"").join(got)
    assert joined == expected


@pytest.mark.parametrize("seed", range(4))
async def test_sequential_reads_survive_a_cancel_storm(
    data_files: list[tuple[Path, bytes]], seed: int
) -> None:
    # Warm up: the engine (and its ring fd) exists before the baseline count.
    async with await nursery_io.open_file(data_files[0][0], "rb") as f:
        await f.read(1)
    baseline = _open_fds()
    canceller = Canceller(seed, rate=0.01)
    stats = {"ok": 0, "cancelled": 0, "open_cancelled": 0}
    rng = random.Random(seed)
    async with nursery_io.open_nursery() as outer:
        outer.start_soon(canceller.run)
        async with nursery_io.open_nursery() as nursery:
            for i in range(500):
                path, data = rng.choice(data_files)
                nursery.start_soon(
                    _sequential_reader, canceller, random.Random(f"{seed}/{i}"), path, data, stats
                )
        outer.cancel_scope.cancel()
    assert _open_fds() == baseline
    assert stats["ok"] > 1000
    assert canceller.cancels > 100
    assert stats["cancelled"] + stats["open_cancelled"] > 10


@pytest.mark.parametrize("seed", range(6))
async def test_cancelling_everything_at_random_points_leaks_no_fd(
    data_files: list[tuple[Path, bytes]], tmp_path: Path, seed: int
) -> None:
    async with await nursery_io.open_file(data_files[0][0], "rb") as f:
        await f.read(1)
    baseline = _open_fds()
    rng = random.Random(seed)
    completed = 0

    def opener(path: str, flags: int) -> int:
        return os.open(path, flags, 0o666)

    async def worker(i: int) -> None:
        nonlocal completed
        wrng = random.Random(f"{seed}:{i}")
        path, data = wrng.choice(data_files)
        how = wrng.choice(["read", "pread", "write", "opener", "text", "path"])
        if how == "read":
            async with await nursery_io.open_file(path, "rb") as f:
                assert await f.read() == data
        elif how == "pread":
            async with await nursery_io.open_file(path, "rb", buffering=0) as f:
                offset = wrng.randrange(len(data))
                assert await f.pread(100, offset) == data[offset : offset + 100]
        elif how == "write":  # O_CREAT|O_TRUNC opens run on kernel workers: slow, cancellable
            target = tmp_path / f"w{i}"
            async with await nursery_io.open_file(target, "wb") as f:
                await f.write(data[:5000])
        elif how == "opener":  # opener runs on the worker pool
            async with await nursery_io.open_file(path, "rb", opener=opener) as f:
                assert await f.read(10) == data[:10]
        elif how == "text":
            async with await nursery_io.open_file(path, encoding="latin-1", newline="") as f:
                assert await f.readline() == data.decode("latin-1").splitlines(True)[0]
        else:
            assert await nursery_io.Path(path).read_bytes() == data
        completed += 1

    for _round in range(3):
        async with nursery_io.open_nursery() as nursery:
            for i in range(500):
                nursery.start_soon(worker, i)
            for _ in range(rng.randrange(0, 40)):
                await lowlevel.checkpoint()
            nursery.cancel_scope.cancel()
        assert _open_fds() == baseline
    # Let whatever the pool was still running finish, then count again.
    async with nursery_io.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(worker, i)
    assert _open_fds() == baseline
    assert completed >= 50


@pytest.mark.parametrize("buffering", [-1, 0, 64])
async def test_buffered_writes_that_returned_are_in_the_file(
    tmp_path: Path, buffering: int
) -> None:
    path = tmp_path / "records"
    canceller = Canceller(buffering, rate=0.02)
    written: list[bytes] = []
    rng = random.Random(buffering)
    async with nursery_io.open_nursery() as outer:
        outer.start_soon(canceller.run)
        async with await nursery_io.open_file(path, "wb", buffering=buffering) as f:
            for i in range(3000):
                record = f"{i}:".encode() + b"x" * rng.randrange(0, 200) + b"\n"
                if buffering == 0:
                    # Unbuffered writes may be short: write the rest, like a caller must.
                    view = memoryview(record)
                    while view:
                        ok, n = await canceller.call(lambda: f.write(view))  # noqa: B023
                        if ok:
                            written.append(bytes(view[:n]))
                            view = view[n:]
                else:
                    ok, n = await canceller.call(lambda: f.write(record))  # noqa: B023
                    if ok:
                        assert n == len(record)
                        written.append(record)
                if rng.random() < 0.05:
                    await canceller.call(f.flush)
        outer.cancel_scope.cancel()
    assert canceller.cancels > 10
    assert path.read_bytes() == b"".join(written)


async def test_cancelled_pipe_read_loses_nothing() -> None:
    # A read waiting for a pipe is cancelled. On io_uring the kernel drops the read; on
    # the thread engine the read can't be interrupted and returns data once it comes.
    # Either way every byte arrives exactly once.
    r, w = os.pipe()

    async def feed() -> None:
        for chunk in (b"first\n", b"second\n", b"third\n"):
            await nursery_io.sleep(0.03)  # after the reader's timeout below
            os.write(w, chunk)
        os.close(w)

    got: list[bytes] = []
    async with await nursery_io.open_file(r, "rb") as reader:
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(feed)
            for _ in range(3):
                with nursery_io.move_on_after(0.01):
                    got.append(await reader.readline())
            got.append(await reader.read())
    assert b"".join(got) == b"first\nsecond\nthird\n"
