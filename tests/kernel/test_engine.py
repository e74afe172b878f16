"""``FileEngine``: every op on both engines against ``os.*``, batching, cancellation, fallback,
close and fork. Synchronous: a small driver plays the loop (flush, epoll, reap, run callbacks).

Runs on both engines by default; with ``NURSERY_IO_URING=0`` both parametrizations use the
worker pool and the io_uring-only tests skip.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import random
import select
import stat as stat_mod
import threading
import time
from collections import deque
from collections.abc import Callable

import pytest

from nursery_io._kernel import engine as engine_mod
from nursery_io._kernel import ops, workers
from nursery_io._kernel import ring_engine as ring_engine_mod
from nursery_io._kernel.errors import ClosedResourceError
from nursery_io._kernel.ops import Op
from nursery_io._kernel.uring import abi
from nursery_io._kernel.uring import ring as ring_mod


def _uring_unavailable() -> str | None:
    eng = engine_mod.FileEngine(lambda cb: None)
    try:
        return None if eng.engine == "io_uring" else f"io_uring unavailable: {eng.fallback_reason}"
    finally:
        eng.close()


_NO_URING = _uring_unavailable()
needs_uring = pytest.mark.skipif(_NO_URING is not None, reason=_NO_URING or "")


class HookedRing(ring_mod.Ring):
    """A real ring whose probe answer and completions a test rewrites (through the engine's
    ``ring_factory``): ``hide`` opcodes from the probe; ``cqe_hook(opcode, res)`` may replace
    each result (e.g. with ``-errno.EOPNOTSUPP``) before the engine sees it."""

    def __init__(
        self,
        entries: int,
        hide: frozenset[int] = frozenset(),
        cqe_hook: Callable[[int, int], int] | None = None,
    ) -> None:
        super().__init__(entries)
        self.supported_ops = self.supported_ops - hide
        self.cqe_hook = cqe_hook
        self.opcodes: dict[int, int] = {}

    def prep(self, opcode, fd, off, addr, length, op_flags, user_data, sqe_flags=0):
        self.opcodes[user_data] = opcode
        super().prep(opcode, fd, off, addr, length, op_flags, user_data, sqe_flags)

    def reap(self):
        cqes = super().reap()
        hook = self.cqe_hook
        if hook is None:
            return cqes
        return [(ud, hook(self.opcodes[ud], res) if ud else res, f) for ud, res, f in cqes]


def hooked(**kwargs: object) -> Callable[[int], HookedRing]:
    """A ``ring_factory`` making :class:`HookedRing` rings."""
    return lambda entries: HookedRing(entries, **kwargs)  # type: ignore[arg-type]


def failing(err: int) -> Callable[[int], ring_mod.Ring]:
    """A ``ring_factory`` whose setup fails with ``err`` (EPERM in a container, ...)."""

    def factory(entries: int) -> ring_mod.Ring:
        raise OSError(err, os.strerror(err))

    return factory


class Driver:
    """Plays the runtime loop for one engine: flush, sleep in epoll, reap, run callbacks."""

    def __init__(self, **kwargs: object) -> None:
        self.queue: deque[Callable[[], None]] = deque()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.engine = engine_mod.FileEngine(self.call_soon_threadsafe, **kwargs)  # type: ignore[arg-type]
        self.epoll = select.epoll()
        self.epoll.register(self.wake_r, select.EPOLLIN)
        if self.engine.ring_fd is not None:
            self.epoll.register(self.engine.ring_fd, select.EPOLLIN)
        self.done: list[Op] = []
        self.calls: dict[int, int] = {}

    def call_soon_threadsafe(self, cb: Callable[[], None]) -> None:
        self.queue.append(cb)
        try:
            os.write(self.wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def on_complete(self, op: Op) -> None:
        self.calls[id(op)] = self.calls.get(id(op), 0) + 1
        self.done.append(op)

    def submit(self, op: Op) -> Op:
        self.engine.submit(op, self.on_complete)
        return op

    def turn(self, timeout: float) -> None:
        self.engine.flush()
        for fd, _ in self.epoll.poll(timeout):
            if fd == self.wake_r:
                try:
                    os.read(self.wake_r, 4096)
                except BlockingIOError:
                    pass
        # Reap every turn rather than only when epoll reports the ring fd: after a fork the
        # engine has a new ring that this (shared!) epoll set must not be touched to add.
        self.engine.reap()
        while self.queue:
            self.queue.popleft()()

    def wait(self, ops_: list[Op], timeout: float = 10.0) -> list[Op]:
        deadline = time.monotonic() + timeout
        pending = {id(o) for o in ops_}
        while True:
            pending -= {id(o) for o in self.done}
            if not pending:
                return ops_
            assert time.monotonic() < deadline, f"{len(pending)} ops never completed"
            self.turn(0.05)

    def run(self, op: Op) -> Op:
        return self.wait([self.submit(op)])[0]

    def value(self, op: Op) -> object:
        self.run(op)
        if op.error is not None:
            raise op.error
        assert not op.cancelled
        return op.result

    def close(self) -> None:
        self.engine.close()
        self.epoll.close()
        os.close(self.wake_r)
        os.close(self.wake_w)


@pytest.fixture(params=["default", "threads"])
def drv(request):
    d = Driver(use_uring=False) if request.param == "threads" else Driver()
    yield d
    d.close()
    assert all(n == 1 for n in d.calls.values()), "on_complete ran more than once"


@pytest.fixture
def uring_drv():
    if _NO_URING is not None:
        pytest.skip(_NO_URING)
    d = Driver(use_uring=True)
    yield d
    d.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def same_error(a: BaseException | None, b: BaseException) -> None:
    assert type(a) is type(b), (a, b)
    assert isinstance(a, OSError) and isinstance(b, OSError)
    assert (a.errno, a.filename, a.filename2) == (b.errno, b.filename, b.filename2)
    assert str(a) == str(b)


def expect_same(drv: Driver, op: Op, call: Callable[[], object]) -> object:
    """Run op and call; both must return the same value or raise the same error."""
    drv.run(op)
    try:
        expected = call()
    except OSError as exc:
        same_error(op.error, exc)
        return exc
    assert op.error is None, op.error
    assert op.result == expected
    return expected


STAT_FIELDS = [
    "st_mode",
    "st_ino",
    "st_dev",
    "st_nlink",
    "st_uid",
    "st_gid",
    "st_size",
    "st_atime",
    "st_mtime",
    "st_ctime",
    "st_atime_ns",
    "st_mtime_ns",
    "st_ctime_ns",
    "st_blksize",
    "st_blocks",
    "st_rdev",
]


def assert_same_stat(a: object, b: os.stat_result) -> None:
    assert isinstance(a, os.stat_result)
    for name in STAT_FIELDS:
        assert getattr(a, name) == getattr(b, name), name


# --- engine choice ----------------------------------------------------------------------------


def test_default_engine_choice():
    d = Driver()
    try:
        st = d.engine.statistics()
        if os.environ.get("NURSERY_IO_URING") == "0":
            assert st.engine == "threads"
            assert st.fallback_reason == "disabled by NURSERY_IO_URING=0"
            assert d.engine.ring_fd is None
        elif _NO_URING is None:
            assert st.engine == "io_uring" and st.fallback_reason is None
            assert d.engine.ring_fd is not None
            assert "READ" in st.supported_opcodes and "STATX" in st.supported_opcodes
            assert st.ring_entries == 256
    finally:
        d.close()


def test_env_var_forces_threads(monkeypatch):
    monkeypatch.setenv("NURSERY_IO_URING", "0")
    d = Driver()
    try:
        st = d.engine.statistics()
        assert (st.engine, st.fallback_reason) == ("threads", "disabled by NURSERY_IO_URING=0")
        assert st.supported_opcodes == ()
        assert d.value(ops.stat("/")) == os.stat("/")
        st = d.engine.statistics()
        assert st.fallbacks_by_reason == {"disabled by NURSERY_IO_URING=0": 1}
        assert st.ops_by_engine == {"io_uring": 0, "threads": 1, "inline": 0}
    finally:
        d.close()


def test_use_uring_false():
    d = Driver(use_uring=False)
    try:
        assert d.engine.statistics().fallback_reason == "disabled by use_uring=False"
    finally:
        d.close()


@needs_uring
@pytest.mark.parametrize("err", [errno.EPERM, errno.ENOSYS, errno.ENOMEM])
def test_setup_failure_falls_back_to_threads(err):
    d = Driver(ring_factory=failing(err))
    try:
        st = d.engine.statistics()
        name = errno.errorcode[err]
        assert st.engine == "threads"
        assert st.fallback_reason == f"io_uring_setup failed: {name} ({os.strerror(err)})"
        assert d.engine.ring_fd is None
        assert d.value(ops.stat("/")) == os.stat("/")
    finally:
        d.close()
    # A simulated failure is not cached for the process.
    d = Driver()
    try:
        assert d.engine.engine == "io_uring"
    finally:
        d.close()
    # use_uring=True means "io_uring or an error".
    with pytest.raises(OSError):
        engine_mod.FileEngine(lambda cb: None, use_uring=True, ring_factory=failing(err))


@needs_uring
def test_real_setup_failure_is_cached(monkeypatch):
    def denied(entries, params):
        raise OSError(errno.EPERM, "io_uring_setup: simulated")

    monkeypatch.setattr(ring_mod, "io_uring_setup", denied)
    monkeypatch.setattr(engine_mod, "_cached_setup_failure", None)
    d = Driver()
    d.close()
    reason = d.engine.fallback_reason
    assert reason is not None and reason.startswith("io_uring_setup failed: EPERM")
    monkeypatch.undo()
    monkeypatch.setattr(engine_mod, "_cached_setup_failure", reason)
    d = Driver()  # not retried: same reason, no ring
    d.close()
    assert d.engine.fallback_reason == reason
    monkeypatch.undo()


def test_unvalidated_architecture_uses_threads(monkeypatch):
    monkeypatch.delenv("NURSERY_IO_URING", raising=False)
    monkeypatch.setattr(engine_mod, "validated_architecture", lambda: "riscv64")
    d = Driver()
    try:
        assert (
            d.engine.fallback_reason == "architecture riscv64 not validated for the io_uring ring"
        )
    finally:
        d.close()


def test_android_uses_threads(monkeypatch):
    monkeypatch.delenv("NURSERY_IO_URING", raising=False)
    monkeypatch.setattr(engine_mod.sys, "getandroidapilevel", lambda: 34, raising=False)
    d = Driver()
    try:
        assert d.engine.fallback_reason == "Android: io_uring is blocked by seccomp"
    finally:
        d.close()


def test_kernel_version_parsing():
    assert engine_mod.kernel_version("6.18.44-fc-v669") == (6, 18, 44)
    assert engine_mod.kernel_version("5.15") == (5, 15, 0)
    assert engine_mod.kernel_version("garbage") == (0, 0, 0)


@needs_uring
def test_version_gates(monkeypatch):
    monkeypatch.setattr(engine_mod, "kernel_version", lambda release=None: (6, 8, 0))
    d = Driver(use_uring=True)
    try:
        st = d.engine.statistics()
        assert "FTRUNCATE" not in st.supported_opcodes and "CLOSE" in st.supported_opcodes
        fd = os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY)
        os.close(fd)
        op = d.run(ops.ftruncate(fd, 0))  # EBADF either way; it's the routing we check
        assert op.engine == "threads"
        assert d.engine.statistics().fallbacks_by_reason == {"kernel < 6.9: FTRUNCATE": 1}
    finally:
        d.close()


# --- every op on both engines -----------------------------------------------------------------


@pytest.fixture
def data_file(tmp_path):
    data = random.Random(1234).randbytes(1 << 20)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


def test_read_random_offsets(drv, data_file):
    path, data = data_file
    fd = os.open(path, os.O_RDONLY)
    rng = random.Random(99)
    try:
        batch = []
        for _ in range(300):
            off = rng.randrange(0, len(data) + 100)
            n = rng.randrange(0, 9000)
            batch.append((off, n, drv.submit(ops.read(fd, n, off))))
        drv.wait([op for _, _, op in batch])
        for off, n, op in batch:
            assert op.error is None and not op.cancelled
            assert op.result == os.pread(fd, n, off) == data[off : off + n]
            assert type(op.result) is bytes
    finally:
        os.close(fd)


def test_read_at_current_position(drv, data_file):
    path, data = data_file
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, 10, os.SEEK_SET)
        assert drv.value(ops.read(fd, 5)) == data[10:15]
        assert drv.value(ops.read(fd, 5)) == data[15:20]
        assert os.lseek(fd, 0, os.SEEK_CUR) == 20
    finally:
        os.close(fd)


def test_readinto(drv, data_file):
    path, data = data_file
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = bytearray(100)
        op = ops.readinto(fd, buf, 1000)
        with pytest.raises(BufferError):  # the op pins the buffer until completion
            buf.extend(b"x")
        assert drv.value(op) == 100
        assert buf == data[1000:1100]
        buf.extend(b"x")  # released after completion
        # into a slice of a larger buffer, at the current position
        big = bytearray(50)
        os.lseek(fd, 7, os.SEEK_SET)
        assert drv.value(ops.readinto(fd, memoryview(big)[10:30])) == 20
        assert big[10:30] == data[7:27] and big[:10] == bytes(10)
        with pytest.raises(TypeError):
            ops.readinto(fd, b"readonly")
    finally:
        os.close(fd)


def test_write(drv, tmp_path):
    path = tmp_path / "w"
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        assert drv.value(ops.write(fd, b"hello world")) == 11
        assert drv.value(ops.write(fd, bytearray(b"HELLO"), 0)) == 5
        assert drv.value(ops.write(fd, memoryview(b"--abc--")[2:5], 20)) == 3  # read-only view
        assert drv.value(ops.write(fd, b"!")) == 1  # at the position: after "hello world"
        assert path.read_bytes() == b"HELLO world!" + bytes(8) + b"abc"
        with pytest.raises(OSError) as info:
            drv.value(ops.write(fd, b"x", -5))
        assert info.value.errno == errno.EINVAL
    finally:
        os.close(fd)


def test_openat_and_close(drv, tmp_path):
    path = tmp_path / "new"
    fd = drv.value(ops.openat(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640))
    assert isinstance(fd, int)
    try:
        assert not os.get_inheritable(fd)  # O_CLOEXEC, like os.open
        assert stat_mod.S_IMODE(os.fstat(fd).st_mode) == 0o640 & ~_umask()
    finally:
        assert drv.value(ops.close(fd)) is None
    with pytest.raises(OSError) as info:
        os.fstat(fd)
    assert info.value.errno == errno.EBADF
    # relative to a directory fd
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd2 = drv.value(ops.openat("new", os.O_RDONLY, dir_fd=dfd))
        assert os.fstat(fd2).st_ino == os.stat(path).st_ino
        os.close(fd2)
    finally:
        os.close(dfd)
    for p, flags in ((tmp_path / "missing", os.O_RDONLY), (path, os.O_CREAT | os.O_EXCL)):
        expect_same(drv, ops.openat(p, flags), lambda p=p, flags=flags: os.open(p, flags))
    expect_same(drv, ops.close(12345), lambda: os.close(12345))
    with pytest.raises(ValueError):
        ops.openat("a\0b", os.O_RDONLY)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_fsync_and_fdatasync(drv, tmp_path):
    fd = os.open(tmp_path / "f", os.O_CREAT | os.O_WRONLY)
    try:
        os.write(fd, b"data")
        assert drv.value(ops.fsync(fd)) is None
        assert drv.value(ops.fdatasync(fd)) is None
    finally:
        os.close(fd)
    expect_same(drv, ops.fsync(fd), lambda: os.fsync(fd))


def test_stat_lstat_fstat(drv, tmp_path):
    f = tmp_path / "file"
    f.write_bytes(b"x" * 12345)
    os.utime(f, ns=(1_700_000_000_123_456_789, 1_600_000_000_987_654_321))
    link = tmp_path / "link"
    os.symlink(f, link)
    for path in (f, tmp_path, "/dev/null", str(link), os.fsencode(f)):
        assert_same_stat(drv.value(ops.stat(path)), os.stat(path))
    assert_same_stat(drv.value(ops.lstat(link)), os.lstat(link))
    assert stat_mod.S_ISLNK(drv.value(ops.lstat(link)).st_mode)  # type: ignore[attr-defined]
    assert_same_stat(drv.value(ops.stat(link, follow_symlinks=False)), os.lstat(link))
    fd = os.open(f, os.O_RDONLY)
    try:
        assert_same_stat(drv.value(ops.fstat(fd)), os.fstat(fd))
        assert_same_stat(drv.value(ops.stat(fd)), os.fstat(fd))
    finally:
        os.close(fd)
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert_same_stat(drv.value(ops.stat("file", dir_fd=dfd)), os.stat(f))
    finally:
        os.close(dfd)
    expect_same(drv, ops.stat(tmp_path / "nope"), lambda: os.stat(tmp_path / "nope"))
    expect_same(drv, ops.fstat(fd), lambda: os.fstat(fd))


def test_rename(drv, tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    a.write_text("A")
    assert drv.value(ops.rename(a, b)) is None
    assert not a.exists() and b.read_text() == "A"
    c.write_text("C")
    with pytest.raises(FileExistsError):
        drv.value(ops.rename(c, b, flags=abi.RENAME_NOREPLACE))
    assert drv.value(ops.rename(c, b, flags=abi.RENAME_EXCHANGE)) is None
    assert (b.read_text(), c.read_text()) == ("C", "A")
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert drv.value(ops.rename("b", "d", src_dir_fd=dfd, dst_dir_fd=dfd)) is None
        assert (tmp_path / "d").read_text() == "C"
    finally:
        os.close(dfd)
    expect_same(drv, ops.rename(a, c), lambda: os.rename(a, c))


def test_unlink_rmdir_mkdir(drv, tmp_path):
    d = tmp_path / "dir"
    assert drv.value(ops.mkdir(d, 0o750)) is None
    assert stat_mod.S_IMODE(os.stat(d).st_mode) == 0o750 & ~_umask()
    expect_same(drv, ops.mkdir(d), lambda: os.mkdir(d))
    (d / "f").write_text("x")
    expect_same(drv, ops.rmdir(d), lambda: os.rmdir(d))  # ENOTEMPTY
    expect_same(drv, ops.unlink(d), lambda: os.unlink(d))  # EISDIR
    assert drv.value(ops.unlink(d / "f")) is None
    assert not (d / "f").exists()
    assert drv.value(ops.rmdir(d)) is None
    assert not d.exists()
    expect_same(drv, ops.unlink(d), lambda: os.unlink(d))
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert drv.value(ops.mkdir("sub", dir_fd=dfd)) is None
        assert drv.value(ops.rmdir("sub", dir_fd=dfd)) is None
        (tmp_path / "g").write_text("")
        assert drv.value(ops.unlink("g", dir_fd=dfd)) is None
        assert os.listdir(tmp_path) == []
    finally:
        os.close(dfd)


def test_symlink_and_link(drv, tmp_path):
    target = tmp_path / "target"
    target.write_text("T")
    assert drv.value(ops.symlink(target, tmp_path / "sym")) is None
    assert os.readlink(tmp_path / "sym") == str(target)
    expect_same(
        drv,
        ops.symlink(target, tmp_path / "sym"),
        lambda: os.symlink(target, tmp_path / "sym"),
    )
    assert drv.value(ops.link(target, tmp_path / "hard")) is None
    assert os.stat(tmp_path / "hard").st_ino == os.stat(target).st_ino
    # follow_symlinks, exactly as CPython 3.11's os.link does it: link(2) without dir fds
    # (which does not follow on Linux, bpo-41355), linkat(AT_SYMLINK_FOLLOW) with them.
    sym_ino = os.lstat(tmp_path / "sym").st_ino
    assert drv.value(ops.link(tmp_path / "sym", tmp_path / "h1")) is None
    assert drv.value(ops.link(tmp_path / "sym", tmp_path / "h2", follow_symlinks=False)) is None
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert drv.value(ops.link("sym", "h3", src_dir_fd=dfd, dst_dir_fd=dfd)) is None
        assert (
            drv.value(ops.link("sym", "h4", src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False))
            is None
        )
        os.link("sym", "h5", src_dir_fd=dfd, dst_dir_fd=dfd)
    finally:
        os.close(dfd)
    os.link(tmp_path / "sym", tmp_path / "h6")
    inos = {n: os.lstat(tmp_path / n).st_ino for n in ("h1", "h2", "h3", "h4", "h5", "h6")}
    assert inos["h1"] == inos["h6"]  # same as os.link, whatever that does here
    assert inos["h3"] == inos["h5"] == os.stat(target).st_ino  # followed
    assert inos["h2"] == inos["h4"] == sym_ino  # not followed
    expect_same(
        drv,
        ops.link(tmp_path / "missing", tmp_path / "x"),
        lambda: os.link(tmp_path / "missing", tmp_path / "x"),
    )


def test_fallocate_and_ftruncate(drv, tmp_path):
    path = tmp_path / "f"
    fd = os.open(path, os.O_CREAT | os.O_RDWR)
    try:
        assert drv.value(ops.fallocate(fd, 0, 1 << 20)) is None
        assert os.fstat(fd).st_size == 1 << 20
        assert drv.value(ops.fallocate(fd, 1 << 20, 1 << 20, mode=1)) is None  # KEEP_SIZE
        st = os.fstat(fd)
        assert st.st_size == 1 << 20 and st.st_blocks * 512 >= 2 << 20
        assert drv.value(ops.ftruncate(fd, 123)) is None
        assert os.fstat(fd).st_size == 123
    finally:
        os.close(fd)
    expect_same(drv, ops.ftruncate(fd, 0), lambda: os.ftruncate(fd, 0))
    ro = os.open(path, os.O_RDONLY)
    try:
        expect_same(drv, ops.ftruncate(ro, 0), lambda: os.ftruncate(ro, 0))  # EINVAL
    finally:
        os.close(ro)


def test_pool_only(drv, tmp_path):
    (tmp_path / "x").write_text("")
    op = drv.run(ops.pool_only(os.listdir, tmp_path))
    assert op.result == ["x"] and op.engine == "threads" and op.name == "listdir"

    def boom():
        raise ValueError("nope")

    op = drv.run(ops.pool_only(boom, name="boom"))
    assert isinstance(op.error, ValueError)
    st = drv.engine.statistics()
    assert st.ops_by_engine["threads"] >= 2
    assert not any("listdir" in r or "boom" in r for r in st.fallbacks_by_reason)


def test_read_errors_match(drv):
    expect_same(drv, ops.read(999_999, 10, 0), lambda: os.pread(999_999, 10, 0))
    with pytest.raises(ValueError):
        ops.read(0, -1)


@needs_uring
def test_ring_runs_every_ring_op(uring_drv, tmp_path):
    # Every constructor with an opcode really goes to the ring here (6.18 has them all).
    d = uring_drv
    f = tmp_path / "f"
    fd = d.value(ops.openat(f, os.O_CREAT | os.O_RDWR))
    assert isinstance(fd, int)
    batch = [
        ops.write(fd, b"abc", 0),
        ops.fsync(fd),
        ops.fdatasync(fd),
        ops.fallocate(fd, 0, 4096),
        ops.stat(f),
        ops.fstat(fd),
        ops.mkdir(tmp_path / "d"),
        ops.symlink(f, tmp_path / "s"),
        ops.link(f, tmp_path / "l"),
        ops.nop(),
    ]
    d.wait([d.submit(op) for op in batch])
    batch2 = [
        ops.read(fd, 3, 0),
        ops.ftruncate(fd, 1),
        ops.rename(tmp_path / "l", tmp_path / "m"),
        ops.unlink(tmp_path / "s"),
        ops.rmdir(tmp_path / "d"),
    ]
    d.wait([d.submit(op) for op in batch2])
    last = d.run(ops.close(fd))
    for op in [*batch, *batch2, last]:
        assert op.error is None and op.engine == "io_uring", op
    st = d.engine.statistics()
    assert st.ops_by_engine == {"io_uring": 17, "threads": 0, "inline": 0}
    assert st.fallbacks_by_reason == {}


# --- batching, statistics ---------------------------------------------------------------------


@needs_uring
def test_batching_one_enter_for_many_ops(uring_drv, tmp_path):
    d = uring_drv
    st0 = d.engine.statistics()
    batch = [d.submit(ops.stat(tmp_path)) for _ in range(200)]
    assert d.engine.statistics().ops_in_flight == 200
    d.engine.flush()
    st1 = d.engine.statistics()
    assert st1.submit_syscalls - st0.submit_syscalls == 1
    assert st1.ops_submitted - st0.ops_submitted == 200
    d.wait(batch)
    st = d.engine.statistics()
    assert st.syscalls_saved >= 150 and st.ops_in_flight == 0  # reaping may enter too
    assert all(op.error is None for op in batch)


@needs_uring
def test_more_ops_than_the_cq_holds(tmp_path):
    d = Driver(use_uring=True, entries=4)  # cq 8
    try:
        path = tmp_path / "f"
        path.write_bytes(bytes(range(256)))
        fd = os.open(path, os.O_RDONLY)
        batch = [d.submit(ops.read(fd, 1, i)) for i in range(256)]
        d.wait(batch)
        assert [op.result for op in batch] == [bytes([i]) for i in range(256)]
        os.close(fd)
    finally:
        d.close()


@needs_uring
def test_ring_ops_start_no_worker_thread(uring_drv, data_file):
    d = uring_drv
    path, data = data_file
    jobs_before = workers.worker_statistics().jobs_run
    threads_before = threading.active_count()
    for _ in range(5):
        fds = d.wait([d.submit(ops.openat(path, os.O_RDONLY)) for _ in range(20)])
        batch = []
        for o in fds:
            batch += [d.submit(ops.read(o.result, 4096, 4096 * i)) for i in range(5)]
            batch += [d.submit(ops.fstat(o.result)), d.submit(ops.stat(path))]
        d.wait(batch)
        d.wait([d.submit(ops.close(o.result)) for o in fds])
    st = d.engine.statistics()
    assert st.ops_by_engine == {"io_uring": 5 * (20 + 20 * 7 + 20), "threads": 0, "inline": 0}
    assert st.peak_worker_threads == 0 and st.fallbacks_by_reason == {}
    assert workers.worker_statistics().jobs_run == jobs_before
    assert threading.active_count() == threads_before


def test_statistics_is_a_frozen_snapshot(drv):
    st = drv.engine.statistics()
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.engine = "x"  # type: ignore[misc]
    drv.value(ops.pool_only(int))
    assert drv.engine.statistics().ops_by_engine != st.ops_by_engine


def test_pool_thread_cap(tmp_path):
    d = Driver(use_uring=False, max_threads=2)
    gate = threading.Event()
    try:
        batch = [d.submit(ops.pool_only(gate.wait, 10)) for _ in range(6)]
        time.sleep(0.05)
        st = d.engine.statistics()
        assert st.ops_in_flight == 6 and st.peak_worker_threads == 2
        gate.set()
        d.wait(batch)
        assert all(op.result is True for op in batch)
        assert d.engine.statistics().peak_worker_threads == 2
    finally:
        gate.set()
        d.close()


def test_op_runs_once(drv):
    op = drv.run(ops.nop())
    with pytest.raises(RuntimeError):
        drv.submit(op)


def test_op_fields_name_the_operation(tmp_path):
    # An Op carries what the operation is, whatever SQE field each part travels in.
    src, dst = tmp_path / "a", tmp_path / "b"
    op = ops.rename(src, dst, dst_dir_fd=7, flags=abi.RENAME_NOREPLACE)
    assert (op.name, op.path, op.path2, op.dir_fd, op.dir_fd2, op.flags) == (
        "RENAMEAT",
        str(src),
        str(dst),
        None,
        7,
        abi.RENAME_NOREPLACE,
    )
    assert op.opcode == abi.OP_RENAMEAT and op.c_path == os.fsencode(src)
    op = ops.fallocate(3, 4096, 8192, 1)
    assert (op.fd, op.offset, op.length, op.mode) == (3, 4096, 8192, 1)
    op = ops.read(3, 100)
    assert (op.fd, op.offset, op.length) == (3, None, 100)
    op = ops.stat(src, follow_symlinks=False)
    assert (op.path, op.flags) == (str(src), abi.AT_SYMLINK_NOFOLLOW)
    op = ops.splice(3, 10, 4, None, 50, abi.SPLICE_F_NONBLOCK)
    assert (op.fd_in, op.offset_in, op.fd, op.offset, op.length) == (3, 10, 4, None, 50)
    with pytest.raises(ValueError, match="embedded null byte"):
        ops.symlink("x", "y\0z")


def test_describe_and_in_flight_by_engine(drv):
    r, w = os.pipe()
    try:
        op = drv.submit(ops.read(r, 1))
        drv.turn(0)
        deadline = time.monotonic() + 10
        while op.user_data in drv.engine._pool._unclaimed:  # let a worker claim it
            assert time.monotonic() < deadline
            time.sleep(0.001)
        if drv.engine.engine == "io_uring":
            expected = ("io_uring", "in the ring")
            counts = {"io_uring": 1, "threads": 0}
        else:
            expected = ("threads", "on a thread")
            counts = {"io_uring": 0, "threads": 1}
        assert drv.engine.describe(op) == expected
        assert drv.engine.in_flight_by_engine() == counts
        assert drv.engine.ring_depth == counts["io_uring"]
        os.write(w, b"x")
        drv.wait([op])
        assert drv.engine.describe(op) == ("threads", "completing")
        assert drv.engine.in_flight_by_engine() == {"io_uring": 0, "threads": 0}
    finally:
        os.close(r)
        os.close(w)


def test_describe_a_queued_pool_op():
    d = Driver(use_uring=False, max_threads=1)
    gate = threading.Event()
    try:
        first = d.submit(ops.pool_only(gate.wait, 10))
        second = d.submit(ops.pool_only(int))
        assert d.engine.describe(second) == ("threads", "queued for a thread")
        assert d.engine.in_flight_by_engine() == {"io_uring": 0, "threads": 2}
        gate.set()
        d.wait([first, second])
    finally:
        gate.set()
        d.close()


# --- cancellation -----------------------------------------------------------------------------


@needs_uring
def test_cancel_pending_ring_read(uring_drv):
    d = uring_drv
    r, w = os.pipe()
    try:
        op = d.submit(ops.read(r, 10))
        d.turn(0.02)
        assert d.done == []
        d.engine.cancel(op)
        d.engine.cancel(op)  # idempotent
        d.wait([op])
        assert op.cancelled and op.cancel_requested and op.result is None and op.error is None
        assert op.buffer is None  # buffers released only now, after the target's own CQE
        assert d.engine.statistics().ops_in_flight == 0
    finally:
        os.close(r)
        os.close(w)


def test_cancel_an_open_blocked_in_io_wq(uring_drv, tmp_path):
    # O_CREAT forces the OPENAT to an io-wq worker, where opening a FIFO's write end
    # blocks until a reader comes. The cancel interrupts the worker, whose CQE then
    # carries -ERESTARTSYS (-512) rather than -EINTR: still a cancellation.
    d = uring_drv
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    op = d.submit(ops.openat(fifo, os.O_WRONLY | os.O_CREAT, 0o600))
    d.turn(0.05)
    assert d.done == []  # waiting for a reader
    d.engine.cancel(op)
    d.wait([op])
    assert op.cancelled and op.error is None and op.result is None
    assert d.engine.statistics().ops_in_flight == 0


def test_interrupted_without_cancel_request_is_eintr(uring_drv):
    # The same codes without a cancel request of ours are an interruption: EINTR.
    made: list[HookedRing] = []

    def factory(entries: int) -> HookedRing:
        made.append(HookedRing(entries))
        return made[-1]

    d = Driver(use_uring=True, ring_factory=factory)
    try:
        for code in (512, 513, 514, 516):
            made[0].cqe_hook = lambda opcode, res, code=code: -code
            op = d.run(ops.nop())
            assert isinstance(op.error, InterruptedError) and not op.cancelled
    finally:
        d.close()


@needs_uring
def test_cancel_too_late_delivers_the_result(uring_drv, data_file):
    d = uring_drv
    path, data = data_file
    fd = os.open(path, os.O_RDONLY)
    try:
        # Cached regular-file reads complete inline, before the cancel SQE is looked at.
        batch = [d.submit(ops.read(fd, 100, i * 100)) for i in range(20)]
        for op in batch:
            d.engine.cancel(op)
        d.wait(batch)
        for i, op in enumerate(batch):
            assert op.cancel_requested
            assert op.cancelled or op.result == data[i * 100 : i * 100 + 100]
        assert sum(not op.cancelled for op in batch) >= 1
    finally:
        os.close(fd)


@needs_uring
def test_cancel_in_the_backlog(tmp_path):
    d = Driver(use_uring=True, entries=2)  # cq 4
    r, w = os.pipe()
    try:
        batch = [d.submit(ops.read(r, 1)) for _ in range(10)]
        d.turn(0.01)
        for op in batch:
            d.engine.cancel(op)
        d.wait(batch)
        assert all(op.cancelled for op in batch)
    finally:
        os.close(r)
        os.close(w)
        d.close()


def test_cancel_queued_pool_op_never_runs():
    d = Driver(use_uring=False, max_threads=1)
    gate = threading.Event()
    ran = []
    try:
        started = threading.Event()

        def blocker() -> bool:
            started.set()
            return gate.wait(10)

        first = d.submit(ops.pool_only(blocker))
        second = d.submit(ops.pool_only(ran.append, "ran"))
        d.engine.cancel(second)
        assert d.done == []  # never delivered inside cancel()
        assert started.wait(5)
        d.engine.cancel(first)  # running: runs to completion
        gate.set()
        d.wait([first, second])
        assert second.cancelled and ran == []
        assert not first.cancelled and first.result is True and first.cancel_requested
    finally:
        gate.set()
        d.close()


def test_cancel_unclaimed_pool_op():
    # Cancelled between start_thread_soon and the worker picking it up.
    d = Driver(use_uring=False)
    ran = []
    try:
        batch = [d.submit(ops.pool_only(ran.append, i)) for i in range(50)]
        for op in batch:
            d.engine.cancel(op)
        d.wait(batch)
        for i, op in enumerate(batch):
            assert op.cancelled != (i in ran)
        assert d.engine.statistics().ops_in_flight == 0
    finally:
        d.close()


def test_cancel_finished_or_unsubmitted_op_is_a_no_op(drv):
    op = drv.run(ops.nop())
    drv.engine.cancel(op)
    assert not op.cancelled and op.cancel_requested
    fresh = ops.nop()
    drv.engine.cancel(fresh)
    assert not fresh.cancelled


@needs_uring
def test_openat_after_cancel_does_not_leak(uring_drv, data_file):
    d = uring_drv
    path, _ = data_file
    before = open_fds()
    batch = [d.submit(ops.openat(path, os.O_RDONLY)) for _ in range(100)]
    for op in batch:
        d.engine.cancel(op)
    d.wait(batch)
    for op in batch:
        assert op.cancelled or isinstance(op.result, int)
        # The waiter was cancelled: the core calls discard(), which closes a won-the-race fd.
        op.discard()
        op.discard()  # idempotent
    assert open_fds() == before


def test_discard_of_a_delivered_fd(drv, tmp_path):
    before = open_fds()
    op = drv.run(ops.openat(tmp_path, os.O_RDONLY | os.O_DIRECTORY))
    assert open_fds() == before + 1
    op.discard()
    assert open_fds() == before and op.result is None


# --- fallback per op --------------------------------------------------------------------------


@needs_uring
def test_probe_says_unsupported(tmp_path):
    d = Driver(use_uring=True, ring_factory=hooked(hide={abi.OP_STATX}))
    try:
        st = d.engine.statistics()
        assert "STATX" not in st.supported_opcodes
        batch = [d.submit(ops.stat(tmp_path)) for _ in range(3)]
        d.wait(batch)
        assert all(op.engine == "threads" and op.error is None for op in batch)
        assert d.value(ops.nop()) == 0
        st = d.engine.statistics()
        assert st.fallbacks_by_reason == {"opcode unsupported: STATX": 3}
        assert st.ops_by_engine == {"io_uring": 1, "threads": 3, "inline": 0}
        assert st.peak_worker_threads >= 1
    finally:
        d.close()


@needs_uring
def test_cqe_eopnotsupp_reruns_on_pool_and_marks_opcode(tmp_path):
    def hook(opcode, res):
        return -errno.EOPNOTSUPP if opcode == abi.OP_FALLOCATE else res

    d = Driver(use_uring=True, ring_factory=hooked(cqe_hook=hook))
    fd = os.open(tmp_path / "f", os.O_CREAT | os.O_RDWR)
    try:
        op = d.run(ops.fallocate(fd, 0, 8192))
        assert op.error is None and op.engine == "threads"
        assert os.fstat(fd).st_size == 8192
        op2 = d.run(ops.fallocate(fd, 0, 16384))  # now straight to the pool
        assert op2.error is None and op2.engine == "threads"
        st = d.engine.statistics()
        assert "FALLOCATE" not in st.supported_opcodes
        assert st.fallbacks_by_reason == {
            "ring returned EOPNOTSUPP: FALLOCATE": 1,
            "opcode unsupported: FALLOCATE": 1,
        }
        assert st.ops_by_engine == {"io_uring": 1, "threads": 2, "inline": 0}
    finally:
        os.close(fd)
        d.close()


@needs_uring
def test_genuine_einval_keeps_the_opcode(uring_drv, tmp_path):
    d = uring_drv
    path = tmp_path / "f"
    path.write_bytes(b"x")
    ro = os.open(path, os.O_RDONLY)
    try:
        op = d.run(ops.ftruncate(ro, 0))  # EINVAL from the ring and from os.ftruncate
        assert isinstance(op.error, OSError) and op.error.errno == errno.EINVAL
        st = d.engine.statistics()
        assert "FTRUNCATE" in st.supported_opcodes
        assert st.fallbacks_by_reason == {"ring returned EINVAL: FTRUNCATE": 1}
    finally:
        os.close(ro)


@needs_uring
def test_enter_eagain_moves_ops_to_the_pool(uring_drv, monkeypatch, tmp_path):
    d = uring_drv
    r, w = os.pipe()
    try:
        pending = d.submit(ops.read(r, 1))
        d.engine.flush()
        d.engine.cancel(pending)  # a cancel SQE that will be withdrawn and re-prepared

        def fail(*args):
            raise OSError(errno.EAGAIN, "io_uring_enter: simulated")

        monkeypatch.setattr(ring_mod, "io_uring_enter", fail)
        batch = [d.submit(ops.stat(tmp_path)) for _ in range(5)]
        d.engine.flush()
        monkeypatch.undo()
        d.wait([*batch, pending])
        assert all(op.engine == "threads" and op.error is None for op in batch)
        assert pending.cancelled
        st = d.engine.statistics()
        assert st.fallbacks_by_reason == {"io_uring_enter failed: EAGAIN": 5}
    finally:
        os.close(r)
        os.close(w)


# --- close ------------------------------------------------------------------------------------


def test_close_with_ops_in_flight(drv, tmp_path):
    d = drv
    r, w = os.pipe()
    gate = threading.Event()
    before = open_fds()
    try:
        pipe_reads = [d.submit(ops.read(r, 1)) for _ in range(5)]
        running = d.submit(ops.pool_only(gate.wait, 10))
        opener = d.submit(ops.pool_only(lambda: (gate.wait(10), os.open(tmp_path, os.O_RDONLY))[1]))
        opener.on_abandoned = ops.close_result_fd
        d.turn(0.02)
        d.engine.close(timeout=2)
        d.engine.close()  # idempotent
        if d.engine.engine == "io_uring":
            assert all(op.cancelled for op in pipe_reads)
            assert d.engine.ring_fd is None
        with pytest.raises(ClosedResourceError):
            d.engine.submit(ops.nop(), d.on_complete)
        gate.set()
        # The running pool ops finish into the closed engine: no delivery, fd closed.
        deadline = time.monotonic() + 5
        while opener.engine is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        assert running not in d.done and opener not in d.done
        assert opener.result is None  # discarded: the fd it opened was closed
        d.turn(0)
        while d.queue:
            d.queue.popleft()()
    finally:
        gate.set()
        os.close(r)
        os.close(w)
    assert open_fds() <= before  # the ring's fds are gone too
    if d.engine.engine == "threads":
        # Those reads were running on threads: closing the write end ended them (EOF),
        # into the closed engine, so they were never delivered.
        deadline = time.monotonic() + 5
        while any(op.engine is None for op in pipe_reads) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert all(op.result == b"" and op not in d.done for op in pipe_reads)
    else:
        assert all(d.calls[id(op)] == 1 for op in pipe_reads)


@needs_uring
def test_close_gives_up_on_ops_that_never_finish(uring_drv, monkeypatch):
    # Simulate a request the kernel never completes: the engine stops waiting after the
    # timeout and keeps the op (and its buffer) alive for good.
    d = uring_drv
    monkeypatch.setattr(ring_engine_mod, "_undrained_ops", [])
    r, w = os.pipe()
    try:
        op = d.submit(ops.read(r, 1))
        d.engine.flush()
        ring = d.engine._ring.ring
        ring.supported_ops = ring.supported_ops - {abi.OP_ASYNC_CANCEL}  # cancel impossible
        start = time.monotonic()
        d.engine.close(timeout=0.2)
        assert 0.15 < time.monotonic() - start < 2
        assert ring_engine_mod._undrained_ops == [op]
        assert op.buffer is not None
    finally:
        os.close(w)
        os.close(r)


# --- fork -------------------------------------------------------------------------------------


@needs_uring
def test_fork(uring_drv, tmp_path):
    d = uring_drv
    path = tmp_path / "f"
    path.write_bytes(b"fork test")
    r, w = os.pipe()
    try:
        parent_pending = d.submit(ops.read(r, 5))
        d.engine.flush()
        old_ring = d.engine._ring.ring
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                # A new engine works.
                child = Driver()
                if child.value(ops.read(os.open(path, os.O_RDONLY), 4, 0)) != b"fork":
                    code = 1
                child.close()
                # The inherited engine starts over with its own ring.
                if d.value(ops.stat(path)).st_size != 9:  # type: ignore[attr-defined]
                    code = 2
                if d.engine._ring.ring is old_ring or d.engine.statistics().ops_by_engine != {
                    "io_uring": 1,
                    "threads": 0,
                    "inline": 0,
                }:
                    code = 3
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 4
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's ring is untouched: its pending read completes, new ops work.
        assert d.engine._ring.ring is old_ring
        os.write(w, b"hello")
        d.wait([parent_pending])
        assert parent_pending.result == b"hello"
        fd = os.open(path, os.O_RDONLY)
        assert d.value(ops.read(fd, 4, 5)) == b"test"
        os.close(fd)
    finally:
        os.close(r)
        os.close(w)


def _fork_and_check(child_checks: Callable[[], int], timeout: float = 10.0) -> int:
    """Fork; the child runs ``child_checks`` and exits with its code (99 on an exception,
    98 if it hangs). Returns the child's exit code."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            signal_alarm = int(timeout) + 1
            import signal

            signal.signal(signal.SIGALRM, lambda *_: os._exit(98))
            signal.alarm(signal_alarm)
            code = child_checks()
        except BaseException:
            import traceback

            traceback.print_exc()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_fork_child_never_reruns_the_parents_queued_pool_ops(tmp_path):
    # One thread slot: op A has run and its result waits in the loop's queue; two writes wait
    # for the slot. The child must neither run those writes (the parent runs them: they would
    # happen twice) nor count them; A's result, which happened before the fork, is delivered.
    d = Driver(use_uring=False, max_threads=1)
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        first = d.submit(ops.fstat(fd))
        writes = [d.submit(ops.write(fd, b"one\n")), d.submit(ops.write(fd, b"two\n"))]
        deadline = time.monotonic() + 10
        while not d.queue:  # first's completion is queued, not yet run
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert d.engine.statistics().ops_in_flight == 3

        def child() -> int:
            for _ in range(5):
                d.turn(0.01)
            if [op for op in d.done] != [first] or first.result.st_ino != os.fstat(fd).st_ino:
                return 1
            if path.read_bytes() != b"" or any(w.engine is not None for w in writes):
                return 2  # a write ran in the child
            st = d.engine.statistics()
            if st.ops_in_flight != 0 or st.ops_by_engine["threads"] != 0:
                return 3
            # A forgotten op never completes by itself; cancelling it ends the wait.
            for w in writes:
                d.engine.cancel(w)
            d.wait(writes)
            if not all(w.cancelled for w in writes) or path.read_bytes() != b"":
                return 4
            # The child's own ops run, on its own threads.
            if d.value(ops.write(fd, b"child\n")) != 6 or path.read_bytes() != b"child\n":
                return 5
            st = d.engine.statistics()
            if st.ops_in_flight != 0 or st.ops_by_engine["threads"] != 1:
                return 6
            d.close()
            return 0

        assert _fork_and_check(child) == 0
        # The parent runs each write exactly once, after the child's.
        d.wait([first, *writes])
        assert [w.result for w in writes] == [4, 4]
        assert path.read_bytes() == b"child\none\ntwo\n"
        assert d.engine.statistics().ops_in_flight == 0
    finally:
        d.close()
        os.close(fd)


def test_fork_child_delivers_a_cancel_requested_before_the_fork(drv):
    # A read blocked in the pool (or on the ring) whose cancel was asked for before the fork:
    # in the child its abort has already run, so the engine must end the wait itself.
    r, w = os.pipe()
    try:
        blocked = drv.submit(ops.read(r, 5))
        drv.turn(0)
        deadline = time.monotonic() + 10
        while blocked.user_data in drv.engine._pool._unclaimed:  # let the worker claim it
            assert time.monotonic() < deadline
            time.sleep(0.001)
        drv.engine.cancel(blocked)
        drv.turn(0)

        def child() -> int:
            drv.wait([blocked])
            if drv.engine.engine == "threads" and not blocked.cancelled:
                return 1  # the pool can't interrupt the read: only the child's copy ends
            if not blocked.cancelled and blocked.result is not None:
                return 2
            if drv.engine.statistics().ops_in_flight != 0:
                return 3
            drv.close()
            return 0

        assert _fork_and_check(child) == 0
        os.write(w, b"hello")
        drv.wait([blocked])
        if drv.engine.engine == "threads":
            assert blocked.result == b"hello"  # ran to completion in the parent
        else:
            assert blocked.cancelled
    finally:
        os.close(r)
        os.close(w)


@needs_uring
def test_fork_child_forgets_the_parents_ring_ops(uring_drv, tmp_path):
    d = uring_drv
    r, w = os.pipe()
    try:
        pending = d.submit(ops.read(r, 5))
        d.turn(0)
        ring_fds: list[int] = []

        def child() -> int:
            engine = d.engine
            engine._on_ring = ring_fds.append
            d.turn(0.01)  # the engine starts over with a ring of its own
            if (
                not ring_fds
                or ring_fds != [engine.ring_fd]
                or pending._owner is not engine._forgotten
            ):
                return 1
            if engine.statistics().ops_in_flight != 0:
                return 2
            os.write(w, b"hello")  # only the parent's ring is reading the pipe
            d.turn(0.05)
            if pending in d.done:
                return 3
            engine.cancel(pending)
            d.wait([pending])
            if not pending.cancelled:
                return 4
            fd = os.open(tmp_path / "c", os.O_RDWR | os.O_CREAT, 0o644)
            if d.value(ops.write(fd, b"abc", 0)) != 3 or d.value(ops.read(fd, 3, 0)) != b"abc":
                return 5
            os.close(fd)
            if engine.statistics().ops_by_engine["io_uring"] != 2:
                return 6
            d.close()
            return 0

        assert _fork_and_check(child) == 0
        d.wait([pending])
        # The child's write went to the pipe: the parent's read, still on its ring, gets it.
        assert pending.result == b"hello"
    finally:
        os.close(r)
        os.close(w)


# --- precise fallback reasons -------------------------------------------------------------------


@needs_uring
def test_mmap_failure_is_named_and_not_cached(monkeypatch):
    class FailingMmap:
        PROT_READ = ring_mod.mmap.PROT_READ
        PROT_WRITE = ring_mod.mmap.PROT_WRITE
        MAP_SHARED = ring_mod.mmap.MAP_SHARED
        MAP_POPULATE = ring_mod.mmap.MAP_POPULATE

        @staticmethod
        def mmap(*args: object, **kwargs: object) -> None:
            raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))

    monkeypatch.delenv("NURSERY_IO_URING", raising=False)
    monkeypatch.setattr(engine_mod, "_cached_setup_failure", None)
    before = open_fds()
    monkeypatch.setattr(ring_mod, "mmap", FailingMmap)
    d = Driver()
    d.close()
    assert open_fds() == before  # the ring fd was closed
    assert d.engine.fallback_reason == (
        f"io_uring mmap failed: ENOMEM ({os.strerror(errno.ENOMEM)})"
    )
    assert engine_mod._cached_setup_failure is None
    monkeypatch.undo()
    monkeypatch.delenv("NURSERY_IO_URING", raising=False)
    d = Driver()
    d.close()
    assert d.engine.engine == "io_uring"


@needs_uring
@pytest.mark.parametrize("err", [errno.EPERM, errno.ENOSYS, errno.EFAULT])
def test_probe_failure_is_named_and_not_cached(monkeypatch, err):
    def probe(self: object) -> frozenset[int]:
        raise OSError(err, f"io_uring_register: {os.strerror(err)}")

    monkeypatch.delenv("NURSERY_IO_URING", raising=False)
    monkeypatch.setattr(engine_mod, "_cached_setup_failure", None)
    before = open_fds()
    monkeypatch.setattr(ring_mod.Ring, "_probe", probe)
    d = Driver()
    d.close()
    assert open_fds() == before
    name = errno.errorcode[err]
    assert d.engine.fallback_reason == f"io_uring probe failed: {name} ({os.strerror(err)})"
    assert d.engine.statistics().fallback_reason == d.engine.fallback_reason
    # Only a refused io_uring_setup is remembered for the process.
    assert engine_mod._cached_setup_failure is None
    monkeypatch.undo()
    monkeypatch.delenv("NURSERY_IO_URING", raising=False)
    d = Driver()
    d.close()
    assert d.engine.engine == "io_uring"


@needs_uring
@pytest.mark.parametrize("err", [errno.EPERM, errno.ENOSYS])
def test_setup_refusal_is_named_and_cached(monkeypatch, err):
    def refused(entries: int, params: bytearray) -> int:
        raise OSError(err, f"io_uring_setup: {os.strerror(err)}")

    monkeypatch.delenv("NURSERY_IO_URING", raising=False)
    monkeypatch.setattr(engine_mod, "_cached_setup_failure", None)
    monkeypatch.setattr(ring_mod, "io_uring_setup", refused)
    d = Driver()
    d.close()
    reason = f"io_uring_setup failed: {errno.errorcode[err]} ({os.strerror(err)})"
    assert d.engine.fallback_reason == reason
    assert engine_mod._cached_setup_failure == reason


@needs_uring
def test_unsupported_opcode_reason_names_the_opcode(monkeypatch):
    monkeypatch.delenv("NURSERY_IO_URING", raising=False)
    d = Driver(ring_factory=hooked(hide={abi.OP_WRITE}))
    try:
        r, w = os.pipe()
        d.value(ops.write(w, b"x"))
        os.close(r)
        os.close(w)
        st = d.engine.statistics()
        assert st.engine == "io_uring" and st.fallback_reason is None
        assert st.fallbacks_by_reason == {"opcode unsupported: WRITE": 1}
    finally:
        d.close()


# --- splice chains --------------------------------------------------------------------------


def test_splice_alone_runs_on_the_pool_with_the_same_result(drv, data_file):
    # A lone SpliceOp can't go to the ring (prep() has no splice_fd_in): the pool runs it.
    path, data = data_file
    fd = os.open(path, os.O_RDONLY)
    r, w = os.pipe()
    try:
        op = drv.run(ops.splice(fd, 100, w, None, 5000))
        assert op.result == 5000
        assert op.engine == "threads"
        assert os.read(r, 10000) == data[100:5100]
    finally:
        for x in (fd, r, w):
            os.close(x)


def test_submit_linked_chain_and_its_statistics(uring_drv, data_file):
    path, data = data_file
    fd = os.open(path, os.O_RDONLY)
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    try:
        assert "SPLICE" in uring_drv.engine.statistics().supported_opcodes
        assert uring_drv.engine.splice_on_ring
        chain = [
            ops.splice(fd, 0, w1, None, 8192),
            ops.splice(r1, None, w2, None, 8192, abi.SPLICE_F_NONBLOCK),
        ]
        before = uring_drv.engine.statistics().ops_by_engine["io_uring"]
        assert uring_drv.engine.submit_linked(chain, uring_drv.on_complete)
        uring_drv.wait(chain)
        assert [op.result for op in chain] == [8192, 8192]
        assert all(op.engine == "io_uring" for op in chain)
        assert uring_drv.engine.statistics().ops_by_engine["io_uring"] == before + 2
        assert os.read(r2, 10000) == data[:8192]
        # Cancelling the head cancels the chain; the target's own completions tell.
        chain = [
            ops.read(r1, 10),  # an empty pipe: waits
            ops.splice(r1, None, w2, None, 10, abi.SPLICE_F_NONBLOCK),
        ]
        assert uring_drv.engine.submit_linked(chain, uring_drv.on_complete)
        uring_drv.turn(0)
        for op in chain:
            uring_drv.engine.cancel(op)
        uring_drv.wait(chain)
        assert all(op.cancelled for op in chain)
        # Already submitted ops are refused; a chain with a non-ring op is not started.
        with pytest.raises(RuntimeError, match="already submitted"):
            uring_drv.engine.submit_linked(chain, uring_drv.on_complete)
        lone = ops.pool_only(int)
        assert not uring_drv.engine.submit_linked([lone], uring_drv.on_complete)
        assert lone.user_data == 0
    finally:
        for x in (fd, r1, w1, r2, w2):
            os.close(x)


def test_submit_linked_without_a_ring_says_no(data_file):
    d = Driver(use_uring=False)
    try:
        assert not d.engine.splice_on_ring
        assert not d.engine.submit_linked([ops.nop()], d.on_complete)
    finally:
        d.close()


def test_pipe_pool_reuses_only_empty_pipes_and_closes_them():
    from nursery_io._kernel.pipes import PipePool

    before = open_fds()
    pool = PipePool(size=256 * 1024)
    a = pool.take()
    assert a[2] == 256 * 1024
    pool.give_back(a, empty=True)
    assert pool.take() == a
    os.write(a[1], b"left over")
    pool.give_back(a, empty=False)  # closed, not kept
    b = pool.take()
    assert pool.created == 2
    pool.give_back(b, empty=True)
    pool.close()
    assert open_fds() == before
