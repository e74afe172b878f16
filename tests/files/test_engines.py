"""Which engine ran the file operations: io_uring without threads, or the worker pool."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import nursery_io
from nursery_io import lowlevel
from nursery_io._kernel.workers import worker_statistics


async def _ring_capable_workload(directory: Path, supported: tuple[str, ...]) -> list[Any]:
    """Files and paths through operations io_uring can do; returns what they returned."""
    results: list[Any] = []
    root = nursery_io.Path(directory)
    d = root / "d"
    await d.mkdir()
    await (d / "sub").mkdir(parents=True, exist_ok=True)
    f = d / "file.txt"
    results.append(await f.write_text("héllo\nworld\n", encoding="utf-8"))
    results.append(await f.read_text(encoding="utf-8"))
    results.append(await f.read_bytes())
    async with await nursery_io.open_file(f, "r+b") as bf:
        results.append(await bf.readline())
        results.append(await bf.pread(3, 1))
        results.append(await bf.pwrite(b"H", 0))
        await bf.seek(0, 2)
        results.append(await bf.write(b"more\n" * 3000))
        await bf.flush()
        await bf.fsync()
        await bf.fdatasync()
        results.append(await bf.tell())
        if "FTRUNCATE" in supported:
            results.append(await bf.truncate(20))
    async with await nursery_io.open_file(f, "a", encoding="latin-1") as tf:
        results.append(await tf.write("appended\n"))
    async with await nursery_io.open_file(f, "rb", buffering=0) as raw:
        results.append(await raw.readall())
    async with await nursery_io.open_file(d / "new", "x") as xf:
        await xf.write("x")
    await (d / "touched").touch()
    results.append((await f.stat()).st_size)
    results.append([await f.exists(), await f.is_file(), await d.is_dir(), await f.is_symlink()])
    await (d / "link").symlink_to(f)
    results.append(await (d / "link").is_symlink())
    await (d / "hard").hardlink_to(f)
    results.append((await (d / "hard").stat()).st_nlink)
    moved = await (d / "new").rename(d / "renamed")
    results.append(await moved.read_text())
    for name in ("renamed", "touched", "link", "hard", "file.txt"):
        await (d / name).unlink()
    await (d / "sub").rmdir()
    await d.rmdir()
    results.append(await d.exists())
    fd = os.open(directory / "sync", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        await lowlevel.run_op(lowlevel.ops.fsync(fd))
        await lowlevel.run_op(lowlevel.ops.fdatasync(fd))
        await lowlevel.run_op(lowlevel.ops.fallocate(fd, 0, 4096))
    finally:
        os.close(fd)
    return results


async def test_ring_capable_operations_start_no_worker_thread(tmp_path: Path) -> None:
    # Create the engine first, to know whether this run has a ring at all.
    await lowlevel.run_op(lowlevel.ops.nop())
    stats = lowlevel.current_statistics().io_statistics.file_engine
    if stats.engine != "io_uring":
        pytest.skip(f"the file engine fell back to threads: {stats.fallback_reason}")
    jobs_before = worker_statistics().jobs_run
    await _ring_capable_workload(tmp_path, stats.supported_opcodes)
    stats = lowlevel.current_statistics().io_statistics.file_engine
    assert stats.ops_by_engine["threads"] == 0, stats.fallbacks_by_reason
    assert stats.fallbacks_by_reason == {}
    # On the ring, or served inline from the caches (cached reads and opens): no threads.
    assert stats.ops_by_engine["io_uring"] + stats.ops_by_engine["inline"] > 40
    assert stats.peak_worker_threads == 0
    assert worker_statistics().jobs_run == jobs_before
    # Many ops, few syscalls: submissions are batched per loop turn.
    assert stats.submit_syscalls <= stats.ops_submitted


def test_with_io_uring_disabled_everything_runs_on_threads_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NURSERY_IO_URING", "0")
    jobs_before = worker_statistics().jobs_run

    async def main() -> tuple[list[Any], Any]:
        results = await _ring_capable_workload(tmp_path, ("FTRUNCATE",))
        return results, lowlevel.current_statistics().io_statistics.file_engine

    _, stats = nursery_io.run(main)
    assert stats.engine == "threads"
    assert stats.fallback_reason == "disabled by NURSERY_IO_URING=0"
    assert stats.ops_by_engine["io_uring"] == 0
    assert stats.ops_by_engine["threads"] > 40
    assert stats.fallbacks_by_reason == {
        "disabled by NURSERY_IO_URING=0": stats.ops_by_engine["threads"]
    }
    assert stats.supported_opcodes == ()
    assert stats.peak_worker_threads >= 1
    assert worker_statistics().jobs_run >= jobs_before + stats.ops_by_engine["threads"]


def test_both_engines_give_the_same_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes = {}
    for setting in ("0", "1"):
        monkeypatch.setenv("NURSERY_IO_URING", setting)
        directory = tmp_path / setting
        directory.mkdir()
        outcomes[setting] = nursery_io.run(_ring_capable_workload, directory, ("FTRUNCATE",))
    assert outcomes["0"] == outcomes["1"]


async def test_pool_only_operations_are_counted_as_threads(tmp_path: Path) -> None:
    (tmp_path / "a").touch()
    before = lowlevel.current_statistics().io_statistics.file_engine
    threads_before = before.ops_by_engine["threads"] if before is not None else 0
    assert [p.name for p in await nursery_io.Path(tmp_path).iterdir()] == ["a"]
    await nursery_io.Path(tmp_path / "a").chmod(0o600)
    stats = lowlevel.current_statistics().io_statistics.file_engine
    assert stats.ops_by_engine["threads"] == threads_before + 2
