"""Inline page-cache reads: preadv2(RWF_NOWAIT) before the ring, never a thread."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import nursery_io
from nursery_io import lowlevel
from nursery_io._kernel.engine import FileEngine
from nursery_io.testing import assert_checkpoints
from tests.page_cache import evict

forced_threads = os.environ.get("NURSERY_IO_URING") == "0"


def engine_counts() -> tuple[dict[str, int], int]:
    stats = lowlevel.current_statistics().io_statistics.file_engine
    if stats is None:  # no file op has run yet in this run
        return {"io_uring": 0, "threads": 0, "inline": 0}, 0
    return dict(stats.ops_by_engine), stats.inline_misses


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.write_bytes(os.urandom(1 << 20))
    path.read_bytes()  # into the page cache
    return path


@pytest.mark.skipif(forced_threads, reason="NURSERY_IO_URING=0 turns inline reads off")
async def test_cached_reads_are_served_inline(data_file: Path) -> None:
    expected = data_file.read_bytes()
    async with await nursery_io.open_file(data_file, "rb", buffering=0) as file:
        before, _ = engine_counts()
        for offset in (0, 4096, 123_456, len(expected) - 10):
            assert await file.pread(10, offset) == expected[offset : offset + 10]
        after, _ = engine_counts()
    assert after["inline"] - before["inline"] == 4
    assert after["threads"] == before["threads"]


async def test_uncached_reads_go_to_an_engine(data_file: Path) -> None:
    expected = data_file.read_bytes()
    async with await nursery_io.open_file(data_file, "rb", buffering=0) as file:
        if not evict(file.fileno()):
            pytest.skip("the kernel keeps the file in the page cache")
        before, misses_before = engine_counts()
        assert await file.pread(4096, 8192) == expected[8192 : 8192 + 4096]
        after, misses_after = engine_counts()
        # A short read at the end of the file is final (fstat says so): served either way.
        assert await file.pread(100, len(expected) - 10) == expected[-10:]
        assert await file.pread(100, len(expected) + 5) == b""
    # One inline try that missed, then the engine: the read is not tried inline twice.
    engine = "threads" if forced_threads else "io_uring"
    assert after[engine] == before[engine] + 1
    assert after["inline"] == before["inline"]
    if not forced_threads:
        assert misses_after == misses_before + 1


async def test_inline_read_is_a_checkpoint(data_file: Path) -> None:
    async with await nursery_io.open_file(data_file, "rb", buffering=0) as file:
        with assert_checkpoints():
            await file.pread(16, 0)
        with nursery_io.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(nursery_io.Cancelled):
                await lowlevel.read_at(file.fileno(), 16, 0)


async def test_read_at_errors_come_from_the_engine(tmp_path: Path) -> None:
    with pytest.raises(OSError) as info:
        await lowlevel.read_at(10_000, 16, 0)  # not an open fd
    assert info.value.errno == 9  # EBADF, as os.pread would say
    directory = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(IsADirectoryError):
            await lowlevel.read_at(directory, 16, 0)
    finally:
        os.close(directory)


def test_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    def inline_on() -> bool:
        engine = FileEngine(lambda callback: callback())
        try:
            return engine.inline_reads
        finally:
            engine.close()

    monkeypatch.delenv("NURSERY_IO_URING", raising=False)
    monkeypatch.delenv("NURSERY_IO_INLINE_READS", raising=False)
    assert inline_on() == hasattr(os, "RWF_NOWAIT")
    monkeypatch.setenv("NURSERY_IO_INLINE_READS", "0")
    assert not inline_on()
    monkeypatch.delenv("NURSERY_IO_INLINE_READS")
    monkeypatch.setenv("NURSERY_IO_URING", "0")
    assert not inline_on()
    # An engine without a ring (setup failed, or use_uring=False) keeps inline reads:
    # they don't need io_uring. Only the NURSERY_IO_URING=0 switch turns them off.
    monkeypatch.delenv("NURSERY_IO_URING")
    engine = FileEngine(lambda callback: callback(), use_uring=False)
    try:
        assert engine.engine == "threads"
        assert engine.inline_reads == hasattr(os, "RWF_NOWAIT")
    finally:
        engine.close()


@pytest.mark.skipif(forced_threads, reason="NURSERY_IO_URING=0 turns inline paths off")
async def test_cached_opens_are_inline_and_never_block_on_a_fifo(tmp_path: Path) -> None:
    regular = tmp_path / "regular"
    regular.write_bytes(b"abc")
    before, _ = engine_counts()
    async with await nursery_io.open_file(regular, "rb") as file:
        assert await file.read() == b"abc"
        # Served inline, and the fd is blocking as open() would make it.
        assert os.get_blocking(file.fileno())
    after, _ = engine_counts()
    assert after["inline"] > before["inline"]

    # A FIFO must not be opened inline: open() of a FIFO waits for the other end, which
    # would freeze the loop. The engine's open path handles it; a writer arrives later.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    async def writer() -> None:
        await nursery_io.sleep(0.05)
        async with await nursery_io.open_file(fifo, "wb") as out:
            await out.write(b"through the fifo")

    with nursery_io.fail_after(10):
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(writer)
            async with await nursery_io.open_file(fifo, "rb") as reader:
                assert await reader.read() == b"through the fifo"
