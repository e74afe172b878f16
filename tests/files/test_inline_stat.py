"""Inline stat: an O_PATH + RESOLVE_CACHED open and fstat, instead of the ring's STATX
(which the kernel always hands to a worker thread). Same answers as os.stat, on both
engines; served inline only when io_uring (and so the inline paths) are on."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

import nursery_io
from nursery_io import lowlevel
from nursery_io.testing import assert_checkpoints

forced_threads = os.environ.get("NURSERY_IO_URING") == "0"

FIELDS = ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size", "st_rdev")
FIELDS += ("st_mtime_ns", "st_ctime_ns", "st_blocks", "st_blksize")


def counts() -> dict[str, int]:
    stats = lowlevel.current_statistics().io_statistics.file_engine
    if stats is None:
        return {"io_uring": 0, "threads": 0, "inline": 0}
    return dict(stats.ops_by_engine)


def same(a: os.stat_result, b: os.stat_result) -> None:
    for name in FIELDS:
        assert getattr(a, name) == getattr(b, name), name


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "file").write_bytes(b"12345")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to("file")
    (tmp_path / "dangling").symlink_to("nowhere")
    os.mkfifo(tmp_path / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
    for name in os.listdir(tmp_path):
        # Warm the dentry cache. Following a symlink the first time also updates its atime,
        # which a cached-only lookup can't do: that one stat would go to an engine.
        os.lstat(tmp_path / name)
        if name != "dangling":
            os.stat(tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("name", ["file", "dir", "link", "fifo", "sock"])
async def test_stat_and_lstat_match_os(tree: Path, name: str) -> None:
    path = nursery_io.Path(tree / name)
    before = counts()
    same(await path.stat(), os.stat(tree / name))
    same(await path.lstat(), os.lstat(tree / name))
    same(await lowlevel.run_op(lowlevel.ops.stat(os.fsencode(tree / name))), os.stat(tree / name))
    after = counts()
    if not forced_threads:
        assert after["inline"] - before["inline"] == 3
        assert after["io_uring"] == before["io_uring"]  # no STATX went to the ring


async def test_stat_of_a_fifo_does_not_open_it(tree: Path) -> None:
    # O_PATH never opens the FIFO, so nothing waits for a writer and no writer sees a
    # reader come and go.
    with nursery_io.fail_after(10):
        assert stat.S_ISFIFO((await nursery_io.Path(tree / "fifo").stat()).st_mode)
    with pytest.raises(OSError):  # still no reader
        os.open(tree / "fifo", os.O_WRONLY | os.O_NONBLOCK)


async def test_symlinks_and_dangling_symlinks(tree: Path) -> None:
    dangling = nursery_io.Path(tree / "dangling")
    assert stat.S_ISLNK((await dangling.lstat()).st_mode)
    with pytest.raises(FileNotFoundError) as info:
        await dangling.stat()
    assert str(info.value) == str(_os_error(os.stat, tree / "dangling"))
    assert not await dangling.exists()
    assert await nursery_io.Path(tree / "link").is_file()
    assert not await nursery_io.Path(tree / "link").is_dir()


def _os_error(fn: object, *args: object) -> OSError:
    try:
        fn(*args)  # type: ignore[operator]
    except OSError as exc:
        return exc
    raise AssertionError("no error")


@pytest.mark.parametrize("relative", ["missing", "file/below", "dir/missing/deeper"])
async def test_errors_match_os_stat(tree: Path, relative: str) -> None:
    target = tree / relative
    expected = _os_error(os.stat, target)
    for attempt in range(2):  # the second time the negative answer is cached
        with pytest.raises(OSError) as info:
            await nursery_io.Path(target).stat()
        got = info.value
        assert type(got) is type(expected), attempt
        assert (got.errno, got.filename) == (expected.errno, expected.filename)
        assert str(got) == str(expected)
    assert not await nursery_io.Path(target).exists()


async def test_permission_errors_come_from_the_engine(tree: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root is never denied")
    locked = tree / "locked"
    locked.mkdir(mode=0)
    try:
        expected = _os_error(os.stat, locked / "x")
        with pytest.raises(PermissionError) as info:
            await nursery_io.Path(locked / "x").stat()
        assert str(info.value) == str(expected)
    finally:
        locked.chmod(0o700)


async def test_fstat_of_an_open_file(tree: Path) -> None:
    async with await nursery_io.open_file(tree / "file", "rb") as f:
        before = counts()
        same(await lowlevel.run_op(lowlevel.ops.fstat(f.fileno())), os.fstat(f.fileno()))
        after = counts()
    if not forced_threads:
        assert after["inline"] - before["inline"] == 1
    with pytest.raises(OSError) as info:
        await lowlevel.run_op(lowlevel.ops.fstat(987654))
    assert info.value.errno == 9  # EBADF, reported by an engine as os.fstat would


async def test_inline_stat_is_a_checkpoint(tree: Path) -> None:
    with assert_checkpoints():
        await nursery_io.Path(tree / "file").stat()
    with assert_checkpoints():
        await nursery_io.Path(tree / "missing").exists()
    with nursery_io.CancelScope() as scope:
        scope.cancel()
        await nursery_io.Path(tree / "file").stat()
    assert scope.cancelled_caught


async def test_relative_paths_and_dir_fd(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    same(await nursery_io.Path("file").stat(), os.stat(tree / "file"))
    fd = os.open(tree / "dir", os.O_RDONLY | os.O_DIRECTORY)
    try:
        (tree / "dir" / "inner").write_bytes(b"")
        op = lowlevel.ops.stat("inner", dir_fd=fd)
        same(await lowlevel.run_op(op), os.stat("inner", dir_fd=fd))
    finally:
        os.close(fd)
