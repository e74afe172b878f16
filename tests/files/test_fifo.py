"""Opening FIFOs: ``open_file`` waits for the peer as ``open()`` does, on both engines.

The hazards covered: a writer that connects, writes and leaves before the reader's
blocking open starts (the reader must still get the data, not wait forever), a cancelled
open (prompt, no fd left open, no worker thread left blocked), and the non-blocking-first
``openat`` op both engines implement.
"""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest

import nursery_io
from nursery_io import lowlevel
from nursery_io._files._fifo import _Release, open_fifo_end

PAYLOAD = b"through the fifo\n" * 1000
# Generous bounds: these tests fail by hanging, and a hang should fail fast, not at the
# suite's timeout. Nothing here measures speed.
HANG = 10.0


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _ops_in_flight() -> int:
    engine = lowlevel.current_statistics().io_statistics.file_engine
    return 0 if engine is None else engine.ops_in_flight  # None: no file op was started


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


async def _warm_up(tmp_path: Path) -> int:
    """Open and close one file so lazily created fds (the ring, the wakeup pipe) exist;
    returns the fd count to compare against."""
    async with await nursery_io.open_file(tmp_path / "warm", "wb"):
        pass
    return _open_fds()


async def _reader(fifo: Path, received: list[bytes]) -> None:
    async with await nursery_io.open_file(fifo, "rb") as f:
        received.append(await f.read())  # until the writer closes


async def _writer(fifo: Path) -> None:
    async with await nursery_io.open_file(fifo, "wb") as f:
        await f.write(PAYLOAD)


@pytest.mark.parametrize("writer_first", [True, False])
async def test_reader_and_writer_meet(fifo: Path, writer_first: bool) -> None:
    received: list[bytes] = []
    with nursery_io.fail_after(HANG):
        async with nursery_io.open_nursery() as nursery:
            if writer_first:
                nursery.start_soon(_writer, fifo)
            else:
                nursery.start_soon(_reader, fifo, received)
            await nursery_io.sleep(0.02)  # the first one's open is now waiting for its peer
            if writer_first:
                nursery.start_soon(_reader, fifo, received)
            else:
                nursery.start_soon(_writer, fifo)
    assert received == [PAYLOAD]


async def test_reader_and_writer_meet_whatever_the_timing(fifo: Path) -> None:
    # Random interleavings of the two opens: every byte arrives, nothing hangs.
    rng = random.Random(7)
    for _ in range(40):
        received: list[bytes] = []
        writer_delay, reader_delay = rng.random() / 500, rng.random() / 500

        async def writer() -> None:
            await nursery_io.sleep(writer_delay)
            await _writer(fifo)

        async def reader() -> None:
            await nursery_io.sleep(reader_delay)
            await _reader(fifo, received)

        with nursery_io.fail_after(HANG):
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(writer)
                nursery.start_soon(reader)
        assert received == [PAYLOAD]


async def test_writer_that_came_and_went_before_the_blocking_open(fifo: Path) -> None:
    # The reader holds a non-blocking read end (as open_file does after the ring's open)
    # while a writer connects, writes and closes, all before the reader's blocking open in
    # a thread begins. That open alone would wait for the next writer, forever; the held
    # end sees the data and the thread is released. The data is still there to read.
    held = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        w = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # succeeds: `held` is a reader
        os.write(w, b"early bird\n")
        os.close(w)
        with nursery_io.fail_after(HANG):
            fd = await open_fifo_end(os.fsencode(fifo), os.O_RDONLY, held=held)
    finally:
        os.close(held)
    try:
        assert os.read(fd, 100) == b"early bird\n"
        assert os.read(fd, 100) == b""  # the writer is gone: end of file
    finally:
        os.close(fd)


async def test_writer_that_came_and_went_without_writing(fifo: Path) -> None:
    # Nothing to read, but a writer was there: open() would have returned, and so must we
    # (the reader then sees end-of-file).
    held = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        with nursery_io.fail_after(HANG):
            fd = await open_fifo_end(os.fsencode(fifo), os.O_RDONLY, held=held)
    finally:
        os.close(held)
    assert os.read(fd, 100) == b""
    os.close(fd)


@pytest.mark.parametrize("mode", ["rb", "wb", "r", "w"])
async def test_cancelled_open_of_a_fifo_with_no_peer(fifo: Path, tmp_path: Path, mode: str) -> None:
    # No peer ever comes. The cancel is still reported (the blocked thread is released),
    # nothing stays open, no op is left running on a thread, and the FIFO works afterwards
    # (no stale blocked open steals the next peer).
    baseline = await _warm_up(tmp_path)
    with nursery_io.fail_after(HANG):
        with nursery_io.move_on_after(0.02) as scope:
            await nursery_io.open_file(fifo, mode)
    assert scope.cancelled_caught
    assert _open_fds() == baseline
    assert _ops_in_flight() == 0

    received: list[bytes] = []
    with nursery_io.fail_after(HANG):
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(_writer, fifo)
            nursery.start_soon(_reader, fifo, received)
    assert received == [PAYLOAD]
    assert _open_fds() == baseline


async def test_cancelled_open_leaves_a_peer_that_arrives_later_alone(fifo: Path) -> None:
    # The writer arrives after the reader's open was cancelled: it finds no reader.
    with nursery_io.fail_after(HANG):
        with nursery_io.move_on_after(0.02):
            await nursery_io.open_file(fifo, "rb")
    with pytest.raises(OSError) as info:
        os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    assert info.value.errno == errno.ENXIO


async def test_openat_op_opens_a_fifo_without_waiting(fifo: Path) -> None:
    # The lowlevel openat op opens non-blocking first on every engine (as io_uring does;
    # the path is in the dentry cache, so the ring does not retry it in a kernel worker):
    # a read end opens at once, a write end with no reader fails with ENXIO.
    with nursery_io.fail_after(HANG):
        fd = await lowlevel.run_op(lowlevel.ops.openat(fifo, os.O_RDONLY))
    try:
        assert os.get_blocking(fd)  # O_NONBLOCK was only for the open
        assert os.read(fd, 10) == b""  # no writer yet: end of file, not a wait
    finally:
        os.close(fd)
    with pytest.raises(OSError) as info:
        await lowlevel.run_op(lowlevel.ops.openat(fifo, os.O_WRONLY))
    assert info.value.errno == errno.ENXIO


async def test_openat_op_keeps_o_nonblock_when_asked(fifo: Path) -> None:
    fd = await lowlevel.run_op(lowlevel.ops.openat(fifo, os.O_RDONLY | os.O_NONBLOCK))
    try:
        assert not os.get_blocking(fd)
    finally:
        os.close(fd)


async def test_fifo_opened_for_reading_and_writing_does_not_wait(fifo: Path) -> None:
    # O_RDWR on a FIFO never waits on Linux; open_file must not wait for a peer either.
    with nursery_io.fail_after(HANG):
        async with await nursery_io.open_file(fifo, "r+b", buffering=0) as f:
            await f.write(b"loop\n")
            assert await f.read(5) == b"loop\n"


# --- regressions found in review -------------------------------------------------------------


@pytest.mark.parametrize("checkpoints", range(6))
@pytest.mark.parametrize("mode", ["rb", "wb"])
async def test_cancel_at_any_point_of_the_open(fifo: Path, mode: str, checkpoints: int) -> None:
    # Whichever step of the open the cancel lands on (the first non-blocking open, the
    # helper set-up, the thread), it is reported as a plain Cancelled and nothing is left.
    scope = nursery_io.CancelScope()

    async def opener() -> None:
        with scope:
            await nursery_io.open_file(fifo, mode)

    async def canceller() -> None:
        for _ in range(checkpoints):
            await lowlevel.checkpoint()
        scope.cancel()

    with nursery_io.fail_after(HANG):
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(opener)
            nursery.start_soon(canceller)
    assert scope.cancelled_caught
    assert _ops_in_flight() == 0


async def test_open_fifo_end_in_a_cancelled_scope_returns(fifo: Path) -> None:
    with nursery_io.fail_after(HANG):
        with nursery_io.CancelScope() as scope:
            scope.cancel()
            await open_fifo_end(os.fsencode(fifo), os.O_RDONLY)
    assert scope.cancelled_caught


@pytest.mark.parametrize("mode", ["rb", "wb"])
async def test_errors_are_plain_exceptions(tmp_path: Path, mode: str) -> None:
    # ENXIO from the first open (here: a Unix socket's path) ends up in the thread's
    # open too; it must come out as the OSError open() raises, not an exception group.
    import socket

    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(OSError) as info:
            await nursery_io.open_file(path, mode)
    assert type(info.value) is OSError and info.value.errno == errno.ENXIO


@pytest.mark.parametrize("mode", ["rb", "wb"])
async def test_cancel_after_the_fifo_was_removed(fifo: Path, mode: str) -> None:
    # The waiting open is released through /proc/self/fd, not the (now gone) path.
    async def remove_soon() -> None:
        await nursery_io.sleep(0.05)
        os.unlink(fifo)

    with nursery_io.fail_after(HANG):
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(remove_soon)
            with nursery_io.move_on_after(0.15) as scope:
                await nursery_io.open_file(fifo, mode)
    assert scope.cancelled_caught
    assert _ops_in_flight() == 0


_KI_CHILD = """
import os, signal, sys, threading, nursery_io
threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
async def main():
    await nursery_io.open_file(sys.argv[1], sys.argv[2])
try:
    nursery_io.run(main)
except KeyboardInterrupt:
    print("KeyboardInterrupt")
"""


@pytest.mark.parametrize("mode", ["rb", "wb"])
def test_ctrl_c_while_waiting_for_a_peer(fifo: Path, mode: str) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _KI_CHILD, str(fifo), mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.stdout.strip() == "KeyboardInterrupt", proc.stderr


@pytest.mark.parametrize("target", ["dir", "file", "fifo"])
async def test_openat_op_with_o_path(tmp_path: Path, target: str) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_bytes(b"")
    os.mkfifo(tmp_path / "fifo")
    for extra in (0, os.O_NOFOLLOW):
        fd = await lowlevel.run_op(lowlevel.ops.openat(tmp_path / target, os.O_PATH | extra))
        try:
            assert os.fstat(fd).st_ino == os.stat(tmp_path / target).st_ino
        finally:
            os.close(fd)


_LEASE_HOLDER = """
import fcntl, os, signal, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
signal.signal(signal.SIGIO, lambda *a: fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK))
fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
print("leased", flush=True)
time.sleep(30)
"""


@pytest.mark.parametrize("mode", ["r+b", "wb", "ab"])
async def test_open_waits_for_a_lease_to_be_broken(tmp_path: Path, mode: str) -> None:
    # A non-blocking open of a file another process holds a lease on fails with EAGAIN;
    # a blocking one breaks the lease and waits. Both engines must do the latter.
    import subprocess
    import sys

    path = tmp_path / "leased"
    path.write_bytes(b"")
    holder = subprocess.Popen(
        [sys.executable, "-c", _LEASE_HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "leased":
            pytest.skip("leases not available here")
        with nursery_io.fail_after(HANG):
            async with await nursery_io.open_file(path, mode):
                pass
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


async def test_a_release_started_after_stop_never_runs(fifo: Path) -> None:
    # The watch task can wake from a readiness that came just before stop() and call
    # start() late. A release started then was never stopped: it kept opening the other end
    # (and later whatever file reused the held fd's number), so a later reader's open
    # returned without a writer and read end-of-file while the real writer hung.
    release = _Release(str(fifo), reading=True)
    release.stop()
    release.start()
    await nursery_io.testing.wait_all_tasks_blocked()
    tasks = nursery_io.lowlevel.current_root_task().child_nurseries
    names = [
        t.name
        for n in tasks
        for sub in n.child_tasks
        for t in [sub] + [c for nn in sub.child_nurseries for c in nn.child_tasks]
    ]
    assert not any("FIFO release" in name for name in names)
