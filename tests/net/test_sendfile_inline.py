"""Inline ``os.sendfile`` of cached data (``cachestat(2)``), and its fallbacks.

The ABI tests check the hand-written syscall number and struct layouts against the running
kernel: a wrong one would not fail loudly, it would just answer nonsense.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path
from typing import Any

import pytest

import nursery_io
from nursery_io import lowlevel
from nursery_io._kernel import cachestat
from nursery_io._kernel.cachestat import PageCacheCheck, cached_pages
from tests.page_cache import evict

MIB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")


def _has_cachestat() -> bool:
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        cached_pages(fd, 0, 0)
    except OSError as exc:
        return exc.errno not in (errno.ENOSYS, errno.EPERM)
    finally:
        os.close(fd)
    return True


needs_cachestat = pytest.mark.skipif(not _has_cachestat(), reason="no cachestat (Linux < 6.5)")


@pytest.fixture(params=["io_uring", "threads"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("NURSERY_IO_URING", "1" if request.param == "io_uring" else "0")
    return str(request.param)


@pytest.fixture
def data_file(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "data.bin"
    data = os.urandom(4 * MIB + 123)
    with open(path, "wb") as f:
        f.write(data)
        # Written back now, not by the flusher in the middle of a test: a page being
        # written back can make a RWF_NOWAIT probe fail, and the transfer take the ring.
        f.flush()
        os.fsync(f.fileno())
    return path, data


def file_stats() -> Any:
    return lowlevel.current_statistics().io_statistics.file_engine


async def send_and_receive(path: Path, offset: int = 0, count: int | None = None) -> bytes:
    a, b = nursery_io.socket.socketpair()
    server, client = nursery_io.SocketStream(a), nursery_io.SocketStream(b)
    got = bytearray()

    async def receive() -> None:
        while data := await client.receive_some(MIB):
            got.extend(data)

    async with nursery_io.open_nursery() as nursery:
        nursery.start_soon(receive)
        with open(path, "rb") as f:
            await nursery_io.send_file(server, f, offset, count)
        await server.send_eof()
    await server.aclose()
    await client.aclose()
    return bytes(got)


# --- the ABI, against the kernel ----------------------------------------------------------


def test_struct_layouts() -> None:
    assert ctypes.sizeof(cachestat._Range) == 16  # two __u64
    assert ctypes.sizeof(cachestat._Stat) == 40  # five __u64
    assert cachestat.NR_CACHESTAT == 451


@needs_cachestat
def test_cachestat_counts_what_the_kernel_has_cached(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(2 * MIB))
    fd = os.open(path, os.O_RDONLY)
    try:
        pages = 2 * MIB // PAGE
        assert cached_pages(fd, 0, 0) == pages  # just written: all of it
        assert cached_pages(fd, 0, 2 * MIB) == pages
        assert cached_pages(fd, PAGE // 2, PAGE) == 2  # straddles two pages
        assert evict(fd)
        assert cached_pages(fd, 0, 0) == 0
        os.pread(fd, 64 * 1024, MIB)
        assert cached_pages(fd, 0, MIB) == 0  # readahead never goes backwards
        assert cached_pages(fd, MIB, 64 * 1024) == 64 * 1024 // PAGE
    finally:
        os.close(fd)


def test_cachestat_on_a_bad_fd_raises_ebadf() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        cached_pages(r, 0, 0)
    assert info.value.errno in (errno.EBADF, errno.ENOSYS, errno.EPERM)


@needs_cachestat
def test_page_cache_check_ready_and_misses(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(MIB))
    fd = os.open(path, os.O_RDONLY)
    try:
        check = PageCacheCheck(True)
        assert check.enabled
        assert check.ready(fd, 0, MIB)
        assert check.ready(fd, 100, 5000)
        assert not check.ready(fd, 0, 0)
        assert evict(fd)
        assert not check.ready(fd, 0, MIB)
        # Read back the first half only (no readahead: the second half stays out).
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        os.pread(fd, MIB // 2, 0)
        assert check.ready(fd, 0, MIB // 2)
        assert not check.ready(fd, 0, MIB // 2 + 1)  # one page over
        assert check.misses == 2
        assert not PageCacheCheck(False).ready(fd, 0, MIB // 2)
    finally:
        os.close(fd)


# --- which path a transfer takes -----------------------------------------------------------


@needs_cachestat
@pytest.mark.parametrize(("offset", "count"), [(0, None), (5, 3 * MIB + 1), (4 * MIB, 123)])
def test_cached_data_is_sent_inline_on_the_loop_thread(
    engine: str, data_file: tuple[Path, bytes], offset: int, count: int | None
) -> None:
    path, data = data_file

    async def main() -> None:
        await lowlevel.checkpoint()
        before = file_stats()
        got = await send_and_receive(path, offset, count)
        assert got == data[offset : offset + count if count else None]
        after = file_stats()
        inline = after.inline_sendfiles - (before.inline_sendfiles if before else 0)
        ring = after.ops_by_engine["io_uring"] - (before.ops_by_engine["io_uring"] if before else 0)
        threads = after.ops_by_engine["threads"] - (
            before.ops_by_engine["threads"] if before else 0
        )
        if engine == "io_uring":
            assert inline >= 1
            assert ring == 0 and threads == 0
        else:  # NURSERY_IO_URING=0 puts every file op on a thread, inline ones too
            assert inline == 0
            assert threads >= 1

    nursery_io.run(main)


@needs_cachestat
def test_cold_data_goes_through_the_ring(monkeypatch: pytest.MonkeyPatch, data_file: Any) -> None:
    monkeypatch.setenv("NURSERY_IO_URING", "1")
    path, data = data_file

    async def main() -> None:
        evict(path)
        assert await send_and_receive(path) == data
        stats = file_stats()
        assert stats.inline_sendfiles == 0
        assert stats.inline_sendfile_misses == 1  # once missed, the ring does the rest
        assert stats.ops_by_engine["io_uring"] >= 2

    nursery_io.run(main)


@needs_cachestat
def test_cached_start_then_cold_rest(monkeypatch: pytest.MonkeyPatch, data_file: Any) -> None:
    # The first MiB inline, then a miss, then the ring for everything after it.
    monkeypatch.setenv("NURSERY_IO_URING", "1")
    path, data = data_file

    async def main() -> None:
        evict(path, 2 * MIB)
        assert await send_and_receive(path, 1000) == data[1000:]
        stats = file_stats()
        assert stats.inline_sendfiles >= 1
        assert stats.inline_sendfile_misses == 1
        assert stats.ops_by_engine["io_uring"] >= 2

    nursery_io.run(main)


def test_inline_sends_follow_the_inline_reads_switch(
    monkeypatch: pytest.MonkeyPatch, data_file: Any
) -> None:
    monkeypatch.setenv("NURSERY_IO_URING", "1")
    monkeypatch.setenv("NURSERY_IO_INLINE_READS", "0")
    path, data = data_file

    async def main() -> None:
        assert await send_and_receive(path) == data
        stats = file_stats()
        assert stats.inline_sendfiles == 0
        assert stats.ops_by_engine["io_uring"] >= 2

    nursery_io.run(main)


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EPERM])
def test_without_cachestat_everything_goes_to_the_engine(
    monkeypatch: pytest.MonkeyPatch, engine: str, data_file: Any, err: int
) -> None:
    # An old kernel (ENOSYS) or a seccomp filter (EPERM): the first refusal turns the
    # check off for the process, and the transfers run exactly as without it.
    monkeypatch.setattr(cachestat, "_supported", None)
    calls = []

    def refuse(fd: int, offset: int, length: int) -> int:
        calls.append(fd)
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(cachestat, "cached_pages", refuse)
    path, data = data_file

    async def main() -> None:
        for _ in range(2):
            assert await send_and_receive(path, 7) == data[7:]
        stats = file_stats()
        assert stats.inline_sendfiles == 0
        assert stats.inline_sendfile_misses == 0
        used = "io_uring" if engine == "io_uring" else "threads"
        assert stats.ops_by_engine[used] >= 2

    nursery_io.run(main)
    if engine == "io_uring":
        assert len(calls) == 1  # asked once
        assert cachestat._supported is False
        assert not PageCacheCheck(True).enabled
    else:
        assert calls == []  # the thread engine never asks


@needs_cachestat
def test_a_file_error_from_cachestat_just_means_not_inline(
    monkeypatch: pytest.MonkeyPatch, data_file: Any
) -> None:
    monkeypatch.setenv("NURSERY_IO_URING", "1")

    def refuse(fd: int, offset: int, length: int) -> int:
        raise OSError(errno.EOPNOTSUPP, "not here")

    monkeypatch.setattr(cachestat, "cached_pages", refuse)
    path, data = data_file

    async def main() -> None:
        assert await send_and_receive(path) == data
        assert file_stats().ops_by_engine["io_uring"] >= 2
        assert current_check().enabled  # still on for other files

    nursery_io.run(main)


def current_check() -> PageCacheCheck:
    from nursery_io._core._context import current_runner

    check: PageCacheCheck = current_runner().kernel.engine.page_cache
    return check


# --- partial sends, cancellation, peers going away, on the inline path --------------------


@needs_cachestat
def test_inline_partial_sends_and_cancellation(
    monkeypatch: pytest.MonkeyPatch, data_file: Any
) -> None:
    monkeypatch.setenv("NURSERY_IO_URING", "1")
    path, data = data_file

    async def main() -> None:
        a, b = nursery_io.socket.socketpair()
        server, client = nursery_io.SocketStream(a), nursery_io.SocketStream(b)
        got = bytearray()
        scope = nursery_io.CancelScope()

        async def read_slowly() -> None:
            while len(got) < MIB:
                got.extend(await client.receive_some(8192))
                await nursery_io.sleep(0.001)
            scope.cancel()

        with open(path, "rb") as f:
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(read_slowly)
                with scope:
                    await nursery_io.send_file(server, f)
            sent = f.tell()
        assert scope.cancelled_caught
        assert MIB <= sent < len(data)
        stats = file_stats()
        assert stats.inline_sendfiles >= 2  # short sends, waits, more sends
        assert stats.ops_by_engine["io_uring"] == 0
        with pytest.raises(nursery_io.BrokenResourceError):
            await server.send_all(b"x")
        await server.aclose()
        # Exactly the bytes reported sent reached the peer, nothing more.
        while chunk := await client.receive_some(MIB):
            got.extend(chunk)
        assert bytes(got) == data[:sent]
        await client.aclose()

    nursery_io.run(main)


@needs_cachestat
def test_inline_send_to_a_peer_that_goes_away(
    monkeypatch: pytest.MonkeyPatch, data_file: Any
) -> None:
    monkeypatch.setenv("NURSERY_IO_URING", "1")
    path, _ = data_file

    async def main() -> None:
        a, b = nursery_io.socket.socketpair()
        server, client = nursery_io.SocketStream(a), nursery_io.SocketStream(b)

        async def close_soon() -> None:
            await client.receive_some(1000)
            await client.aclose()

        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(close_soon)
            with open(path, "rb") as f, pytest.raises(nursery_io.BrokenResourceError) as info:
                await nursery_io.send_file(server, f)
        assert isinstance(info.value.__cause__, (BrokenPipeError, ConnectionResetError))
        assert file_stats().inline_sendfiles >= 1
        await server.aclose()

    nursery_io.run(main)
