"""nursery_io.Path: async pathlib.Path methods, checked against pathlib on the same tree."""

from __future__ import annotations

import os
import pathlib
import pickle
import socket
import stat
import sys
from pathlib import Path as SyncPath
from typing import Any

import pytest

import nursery_io
from nursery_io import Path


@pytest.fixture
def tree(tmp_path: SyncPath) -> SyncPath:
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "a.txt").write_text("alpha\n")
    (tmp_path / "dir" / "b.py").write_text("print('b')\n")
    (tmp_path / "dir" / "sub" / "c.txt").write_text("gamma\n")
    (tmp_path / "file").write_bytes(b"data")
    (tmp_path / "link").symlink_to(tmp_path / "file")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "fifo")
    return tmp_path


def test_pure_path_behaviour_is_sync_and_keeps_the_class() -> None:
    p = Path("/a/b/c.txt")
    assert type(p) is nursery_io.PosixPath
    assert isinstance(p, pathlib.PurePosixPath)
    assert isinstance(p, Path)
    assert repr(p) == "nursery_io.Path('/a/b/c.txt')"
    for derived in (p.parent, p / "x", p.with_suffix(".py"), p.with_name("d"), p.parents[1]):
        assert type(derived) is nursery_io.PosixPath
    assert p.suffix == ".txt"
    assert p.name == "c.txt"
    assert p.relative_to("/a") == Path("b/c.txt")
    assert os.fspath(p) == "/a/b/c.txt"
    assert str(Path(pathlib.PurePosixPath("x"), "y")) == "x/y"
    assert Path("a") == pathlib.PurePosixPath("a")
    assert p.as_uri() == "file:///a/b/c.txt"
    assert pickle.loads(pickle.dumps(p)) == p
    assert hash(Path("q")) == hash(pathlib.PurePosixPath("q"))


PREDICATES = [
    "exists",
    "is_dir",
    "is_file",
    "is_symlink",
    "is_fifo",
    "is_socket",
    "is_block_device",
    "is_char_device",
    "is_mount",
]


@pytest.mark.parametrize(
    "name",
    [
        "dir",
        "dir/a.txt",
        "file",
        "link",
        "dangling",
        "fifo",
        "nope",
        "file/under-a-file",
        "/",
        "/dev/null",
    ],
)
async def test_predicates_and_stat_match_pathlib(tree: SyncPath, name: str) -> None:
    sync = tree / name
    ours = Path(sync)
    for predicate in PREDICATES:
        assert await getattr(ours, predicate)() == getattr(sync, predicate)(), predicate
    for method in ("stat", "lstat"):
        try:
            expected: Any = getattr(sync, method)()
        except OSError as exc:
            with pytest.raises(type(exc)) as info:
                await getattr(ours, method)()
            assert info.value.errno == exc.errno
            assert info.value.filename == exc.filename
        else:
            got = await getattr(ours, method)()
            assert (got.st_ino, got.st_dev, got.st_mode, got.st_size, got.st_mtime_ns) == (
                expected.st_ino,
                expected.st_dev,
                expected.st_mode,
                expected.st_size,
                expected.st_mtime_ns,
            )
    if sys.version_info >= (3, 12):  # pathlib's (and so Trio's) exists() has no flag before
        assert await ours.exists(follow_symlinks=False) == os.path.lexists(sync)


def _a_block_device() -> SyncPath | None:
    for entry in sorted(SyncPath("/dev").iterdir()):
        try:
            if stat.S_ISBLK(entry.lstat().st_mode):
                return entry
        except OSError:
            pass
    return None


async def test_socket_and_device_predicates_match_pathlib(tmp_path: SyncPath) -> None:
    # The kinds the shared tree lacks: a unix socket, a character and a block device.
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(os.fspath(tmp_path / "sock"))
        block = _a_block_device()
        for sync in [tmp_path / "sock", SyncPath("/dev/null"), *([block] if block else [])]:
            ours = Path(sync)
            for predicate in PREDICATES:
                assert await getattr(ours, predicate)() == getattr(sync, predicate)(), (
                    sync,
                    predicate,
                )


async def test_contents(tmp_path: SyncPath) -> None:
    p = Path(tmp_path / "f.txt")
    assert await p.write_text("héllo\nwörld\n", encoding="utf-8") == 12
    assert (tmp_path / "f.txt").read_text(encoding="utf-8") == "héllo\nwörld\n"
    assert await p.read_text(encoding="utf-8") == "héllo\nwörld\n"
    assert await p.read_text(encoding="latin-1", errors="strict") == (
        (tmp_path / "f.txt").read_text(encoding="latin-1")
    )
    assert await p.write_bytes(bytearray(b"\x00\x01")) == 2
    assert await p.read_bytes() == b"\x00\x01"
    await p.write_text("a\nb\n", newline="\r\n")
    assert await p.read_bytes() == b"a\r\nb\r\n"
    with pytest.raises(TypeError, match="data must be str, not bytes"):
        await p.write_text(b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await p.write_bytes("x")
    async with await p.open("rb") as f:
        assert await f.read() == b"a\r\nb\r\n"
    async with await p.open("a", newline="") as f:
        await f.write("c\n")
    assert (tmp_path / "f.txt").read_bytes() == b"a\r\nb\r\nc\n"
    with pytest.raises(FileNotFoundError):
        await Path(tmp_path / "missing").read_bytes()


async def test_create_remove_rename(tmp_path: SyncPath) -> None:
    d = Path(tmp_path / "x" / "y" / "z")
    with pytest.raises(FileNotFoundError):
        await d.mkdir()
    await d.mkdir(parents=True)
    assert (tmp_path / "x" / "y" / "z").is_dir()
    with pytest.raises(FileExistsError):
        await d.mkdir()
    await d.mkdir(exist_ok=True)
    await d.mkdir(parents=True, exist_ok=True)
    f = d / "file"
    await f.touch()
    with pytest.raises(FileExistsError):
        await f.mkdir(exist_ok=True)  # exists, but as a file: exist_ok doesn't cover that
    with pytest.raises(FileExistsError):
        await f.touch(exist_ok=False)
    old = os.stat(f).st_mtime_ns
    os.utime(f, ns=(0, 0))
    await f.touch()  # existing: its times are bumped
    assert os.stat(f).st_mtime_ns >= old
    await (d / "mode").touch(mode=0o600)
    assert stat.S_IMODE(os.stat(d / "mode").st_mode) == 0o600 & ~_umask()
    renamed = await f.rename(d / "renamed")
    assert type(renamed) is nursery_io.PosixPath
    assert renamed == d / "renamed"
    assert not await f.exists()
    (tmp_path / "other").write_text("other")
    replaced = await Path(tmp_path / "other").replace(renamed)
    assert await replaced.read_text() == "other"
    await renamed.unlink()
    with pytest.raises(FileNotFoundError):
        await renamed.unlink()
    await renamed.unlink(missing_ok=True)
    with pytest.raises(OSError):
        await d.parent.rmdir()  # not empty
    await (d / "mode").unlink()
    await d.rmdir()
    assert not (tmp_path / "x" / "y" / "z").exists()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


async def test_links(tmp_path: SyncPath) -> None:
    target = Path(tmp_path / "target")
    await target.write_text("t")
    link = Path(tmp_path / "sym")
    await link.symlink_to(target)
    assert await link.is_symlink()
    assert await link.readlink() == target
    assert type(await link.readlink()) is nursery_io.PosixPath
    assert await link.resolve() == target
    assert await link.samefile(target)
    assert await link.samefile(str(target))
    hard = Path(tmp_path / "hard")
    await hard.hardlink_to(target)
    assert (await hard.stat()).st_ino == (await target.stat()).st_ino
    assert (await target.stat()).st_nlink == 2
    with pytest.raises(FileExistsError):
        await hard.hardlink_to(target)
    if hasattr(Path, "link_to"):
        with pytest.warns(DeprecationWarning):
            await target.link_to(tmp_path / "old-style")
        assert (tmp_path / "old-style").read_text() == "t"


async def test_listings(tree: SyncPath) -> None:
    d = Path(tree / "dir")
    entries = await d.iterdir()
    assert sorted(entries) == sorted(Path(p) for p in (tree / "dir").iterdir())
    assert all(type(e) is nursery_io.PosixPath for e in entries)
    assert sorted([p async for p in d.iterdir()]) == sorted(entries)
    assert sorted(await d.glob("*.txt")) == sorted(Path(p) for p in (tree / "dir").glob("*.txt"))
    assert sorted(await d.rglob("*.txt")) == sorted(Path(p) for p in (tree / "dir").rglob("*.txt"))
    assert sorted([p async for p in d.rglob("*.py")]) == [Path(tree / "dir" / "b.py")]
    with pytest.raises(FileNotFoundError):
        await Path(tree / "nope").iterdir()
    rel = await Path(".").iterdir()
    assert sorted(rel) == sorted(Path(p) for p in pathlib.Path(".").iterdir())


async def test_misc_methods(tmp_path: SyncPath, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert await Path.cwd() == Path(tmp_path)
    assert type(await Path.cwd()) is nursery_io.PosixPath
    monkeypatch.setenv("HOME", "/home/someone")
    assert await Path.home() == Path("/home/someone")
    assert await Path("~/x").expanduser() == Path("/home/someone/x")
    assert await Path("rel").absolute() == Path(tmp_path / "rel")
    assert await Path("/abs").absolute() == Path("/abs")
    assert await Path("a/../b").resolve() == Path(pathlib.Path("a/../b").resolve())
    with pytest.raises(FileNotFoundError):
        await Path("missing").resolve(strict=True)
    f = Path(tmp_path / "f")
    await f.touch()
    await f.chmod(0o640)
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o640
    assert await f.owner() == pathlib.Path(f).owner()
    assert await f.group() == pathlib.Path(f).group()
    sync_error: type[BaseException] | None = None
    try:
        pathlib.Path(f).lchmod(0o600)
    except (NotImplementedError, OSError) as exc:
        sync_error = type(exc)
    if sync_error is not None:
        with pytest.raises(sync_error):
            await f.lchmod(0o600)


async def test_path_methods_are_checkpoints(tmp_path: SyncPath) -> None:
    from nursery_io.testing import assert_checkpoints

    p = Path(tmp_path)
    for call in (p.exists, p.stat, p.absolute, Path.cwd, p.is_dir):
        with assert_checkpoints():
            await call()
