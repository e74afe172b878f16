"""``Ring``: batching, the in-flight cap, overflow, wrap-around, cancel, epoll, fork, teardown."""

from __future__ import annotations

import ctypes
import errno
import os
import select
import threading
import time

import pytest

from nursery_io._kernel.uring import abi
from nursery_io._kernel.uring import ring as ring_mod
from nursery_io._kernel.uring.ring import Ring, UnsupportedPlatformError


def _ring_unavailable() -> str | None:
    if os.environ.get("NURSERY_IO_URING") == "0":
        return "io_uring disabled by NURSERY_IO_URING=0"
    if ring_mod.validated_architecture() is not None:
        return "ring not validated on this architecture"
    try:
        Ring(4).close()
    except OSError as exc:
        return f"io_uring unavailable: {exc}"
    return None


_REASON = _ring_unavailable()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


def nop(ring: Ring, ud: int) -> None:
    ring.prep(abi.OP_NOP, -1, 0, 0, 0, 0, ud)


def collect(ring: Ring, n: int, timeout: float = 5.0) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    deadline = time.monotonic() + timeout
    while True:
        ring.submit()
        out += ring.reap()
        if len(out) >= n:
            return out
        assert time.monotonic() < deadline, f"only {len(out)} of {n} CQEs"
        ring.wait_readable(0.05)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def ring():
    r = Ring(16)
    yield r
    r.close()


def test_batch_is_one_enter(ring):
    for i in range(1, 17):
        nop(ring, i)
    assert ring.sq_pending == 16 and ring.in_flight == 16
    assert ring.submit() == 16
    assert ring.enter_calls == 1 and ring.sqes_submitted == 16
    assert ring.submit() == 0 and ring.enter_calls == 1  # nothing pending: no syscall
    got = collect(ring, 16)
    assert [ud for ud, _, _ in got] == list(range(1, 17))
    assert all(res == 0 for _, res, _ in got)
    assert ring.in_flight == 0


def test_full_sq_submits_by_itself():
    with Ring(4) as r:  # sq 4, cq 8
        for i in range(1, 9):
            nop(r, i)
        assert r.enter_calls == 1  # the 5th prep found the SQ full and submitted
        assert sorted(ud for ud, _, _ in collect(r, 8)) == list(range(1, 9))


def test_in_flight_cap_and_backlog_fifo():
    with Ring(4) as r:  # cq 8: at most 8 requests outstanding
        for i in range(1, 51):
            nop(r, i)
        assert r.in_flight == 8 and r.backlog == 42
        got = collect(r, 50)
        assert [ud for ud, _, _ in got] == list(range(1, 51))  # FIFO kept
        assert r.in_flight == 0 and r.backlog == 0
        assert not r._sq_u32[r._sq_flags_i] & abi.SQ_CQ_OVERFLOW  # never overflowed


def test_reap_flushes_overflow():
    with Ring(4) as r:
        r.max_in_flight = 1000  # lift the cap to provoke an overflow
        for i in range(1, 65):
            nop(r, i)
        r.submit()
        assert r._sq_u32[r._sq_flags_i] & abi.SQ_CQ_OVERFLOW
        got = collect(r, 64)
        assert sorted(ud for ud, _, _ in got) == list(range(1, 65))
        assert r.in_flight == 0


def test_indices_wrap_around(ring):
    # Batches of 7 on a 16/32 ring: the SQ and CQ indices wrap many times, and a reap has to
    # stitch CQEs from the end and the start of the CQ array.
    ud = 0
    for _ in range(300):
        for _ in range(7):
            ud += 1
            nop(ring, ud)
        ring.submit()
        got = collect(ring, 7)
        assert [u for u, _, _ in got] == list(range(ud - 6, ud + 1))


def test_every_sqe_byte_is_rewritten(ring, tmp_path):
    # A slot used by a READ with flags is reused by a NOP: stale fields must not leak in.
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    fd = os.open(path, os.O_RDONLY)
    buf = ctypes.create_string_buffer(3)
    try:
        for _ in range(20):
            ring.prep(abi.OP_READ, fd, 0, ctypes.addressof(buf), 3, 0, 1, abi.IOSQE_IO_HARDLINK)
            nop(ring, 2)
            assert sorted(collect(ring, 2)) == [(1, 3, 0), (2, 0, 0)]
        slot = ring._sqes[64:128].tobytes()
        assert slot[1] == 0 and slot[40:] == bytes(24)
    finally:
        os.close(fd)


def test_cancel_pending_pipe_read(ring):
    r_fd, w_fd = os.pipe()
    buf = ctypes.create_string_buffer(8)
    try:
        ring.prep(abi.OP_READ, r_fd, 0, ctypes.addressof(buf), 8, 0, 10)
        ring.submit()
        time.sleep(0.01)
        assert ring.reap() == []
        ring.prep(abi.OP_ASYNC_CANCEL, -1, 0, 10, 0, 0, 11)
        got = collect(ring, 2)
        assert sorted(got) == [(10, -errno.ECANCELED, 0), (11, 0, 0)]
        # Nothing left: cancelling again finds nothing.
        ring.prep(abi.OP_ASYNC_CANCEL, -1, 0, 10, 0, 0, 12)
        assert collect(ring, 1) == [(12, -errno.ENOENT, 0)]
    finally:
        os.close(r_fd)
        os.close(w_fd)


def test_epoll_wakes_for_a_completion_from_another_thread(ring):
    # The ring fd in epoll must wake us when the completion is posted while we sleep in
    # epoll_wait (COOP_TASKRUN without DEFER_TASKRUN): this is the loop's only wait.
    r_fd, w_fd = os.pipe()
    buf = ctypes.create_string_buffer(8)
    ep = select.epoll()
    try:
        ep.register(ring.fd, select.EPOLLIN)
        ring.prep(abi.OP_READ, r_fd, 0, ctypes.addressof(buf), 8, 0, 1)
        ring.submit()
        timer = threading.Timer(0.05, os.write, (w_fd, b"ping"))
        timer.start()
        start = time.monotonic()
        events = ep.poll(5)
        assert time.monotonic() - start < 4
        assert events == [(ring.fd, select.EPOLLIN)]
        assert ring.reap() == [(1, 4, 0)]
        assert buf.raw[:4] == b"ping"
        timer.join()
    finally:
        ep.close()
        os.close(r_fd)
        os.close(w_fd)


def test_take_unsubmitted_includes_backlog():
    with Ring(4) as r:  # cq 8
        for i in range(1, 11):
            nop(r, i)
        # 4 in the SQ were submitted when it filled up; 4 more prepared; 2 in the backlog.
        assert r.sq_pending == 4 and r.backlog == 2
        assert r.take_unsubmitted() == [5, 6, 7, 8, 9, 10]
        assert r.sq_pending == 0 and r.backlog == 0 and r.in_flight == 4
        assert r.submit() == 0
        assert sorted(ud for ud, _, _ in collect(r, 4)) == [1, 2, 3, 4]
        time.sleep(0.01)
        assert r.reap() == []


def test_submit_error_leaves_sqes_queued(ring, monkeypatch):
    nop(ring, 1)

    def fail(*args):
        raise OSError(errno.EAGAIN, "io_uring_enter: simulated")

    monkeypatch.setattr(ring_mod, "io_uring_enter", fail)
    with pytest.raises(OSError) as info:
        ring.submit()
    assert info.value.errno == errno.EAGAIN
    assert ring.sq_pending == 1
    monkeypatch.undo()
    assert collect(ring, 1) == [(1, 0, 0)]


def test_enter_retries_eintr(ring, monkeypatch):
    calls = []
    real = ring_mod._sys_enter

    def flaky(*args):
        calls.append(args)
        if len(calls) == 1:
            ctypes.set_errno(errno.EINTR)
            return -1
        return real(*args)

    monkeypatch.setattr(ring_mod, "_sys_enter", flaky)
    nop(ring, 1)
    assert ring.submit() == 1
    assert len(calls) == 2
    monkeypatch.undo()
    assert collect(ring, 1) == [(1, 0, 0)]


def test_setup_drops_flags_on_einval(monkeypatch):
    real = ring_mod.io_uring_setup
    tried = []

    def old_kernel(entries, params):
        flags = abi.PARAMS.unpack(params)[abi.P_FLAGS]
        tried.append(flags)
        if flags & abi.SETUP_SINGLE_ISSUER:  # pretend to be 5.19
            raise OSError(errno.EINVAL, "io_uring_setup: simulated")
        return real(entries, params)

    monkeypatch.setattr(ring_mod, "io_uring_setup", old_kernel)
    with Ring(4) as r:
        assert r.flags == ring_mod.DEFAULT_SETUP_FLAGS[1]
        assert tried == list(ring_mod.DEFAULT_SETUP_FLAGS[:2])
        nop(r, 1)
        assert collect(r, 1) == [(1, 0, 0)]


def test_setup_errors_other_than_einval_propagate(monkeypatch):
    def denied(entries, params):
        raise OSError(errno.EPERM, "io_uring_setup: simulated")

    monkeypatch.setattr(ring_mod, "io_uring_setup", denied)
    with pytest.raises(PermissionError):
        Ring(4)


def test_explicit_flags_are_not_downgraded():
    with pytest.raises(OSError) as info:
        Ring(4, flags=abi.SETUP_TASKRUN_FLAG)  # invalid alone
    assert info.value.errno == errno.EINVAL


def test_unvalidated_architecture_is_refused(monkeypatch):
    monkeypatch.setattr(ring_mod, "validated_architecture", lambda: "aarch64")
    with pytest.raises(UnsupportedPlatformError, match="aarch64"):
        Ring(4)


def test_close_releases_everything():
    before = open_fds()
    r = Ring(64)
    assert open_fds() > before
    nop(r, 1)
    collect(r, 1)
    r.close()
    assert open_fds() == before
    r.close()  # idempotent
    assert "closed" in repr(r)


def test_fork_child_must_not_touch_the_ring(ring):
    r_fd, w_fd = os.pipe()
    buf = ctypes.create_string_buffer(8)
    try:
        # An op pending across the fork must still complete in the parent.
        ring.prep(abi.OP_READ, r_fd, 0, ctypes.addressof(buf), 8, 0, 77)
        ring.submit()
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                for attempt in (lambda: nop(ring, 5), ring.submit):
                    try:
                        attempt()
                        code = 1
                    except RuntimeError:
                        pass
                try:
                    ring.reap()
                    code = 2
                except RuntimeError:
                    pass
                ring.close()  # drops only the child's mappings and fd
                with Ring(4) as mine:  # the child makes its own ring
                    nop(mine, 9)
                    mine.submit()
                    mine.wait_readable(5)
                    if mine.reap() != [(9, 0, 0)]:
                        code = 3
            except BaseException:
                code = 4
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent's ring is untouched: the child's prepared NOP never reached it.
        nop(ring, 6)
        os.write(w_fd, b"after")
        got = collect(ring, 2)
        assert sorted(got) == [(6, 0, 0), (77, 5, 0)]
        assert buf.raw[:5] == b"after"
    finally:
        os.close(r_fd)
        os.close(w_fd)


def test_nop_throughput_sanity(ring):
    # Not a benchmark: catches an accidental per-op syscall or quadratic behaviour.
    start = time.perf_counter()
    n = 0
    for _ in range(200):
        for i in range(16):
            nop(ring, i + 1)
        ring.submit()
        n += len(collect(ring, 16))
    elapsed = time.perf_counter() - start
    assert n == 3200
    assert ring.enter_calls == 200
    assert elapsed / n < 50e-6


# --- linked SPLICE chains -------------------------------------------------------------------


def test_linked_splice_chain_moves_a_file_to_a_socket(tmp_path):
    import socket

    data = os.urandom(200_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    r, w = os.pipe()
    a, b = socket.socketpair()
    a.setblocking(False)
    ring = Ring(16)
    try:
        assert abi.OP_SPLICE in ring.supported_ops
        assert ring.prep_linked(
            [
                (abi.OP_SPLICE, w, 2**64 - 1, 1000, 50_000, 0, 1, fd),
                (abi.OP_SPLICE, a.fileno(), 2**64 - 1, 2**64 - 1, 50_000, 0, 2, r),
            ]
        )
        ring.submit()
        cqes = []
        while len(cqes) < 2:
            ring.wait_readable(5)
            cqes += ring.reap()
        assert sorted(cqes) == [(1, 50_000, 0), (2, 50_000, 0)]
        got = b""
        while len(got) < 50_000:
            got += b.recv(65536)
        assert got == data[1000:51_000]
        # A short first splice (end of file) ends the chain: the second is cancelled and
        # what was read stays in the pipe.
        assert ring.prep_linked(
            [
                (abi.OP_SPLICE, w, 2**64 - 1, 199_000, 4096, 0, 3, fd),
                (abi.OP_SPLICE, a.fileno(), 2**64 - 1, 2**64 - 1, 4096, 0, 4, r),
            ]
        )
        ring.submit()
        cqes = []
        while len(cqes) < 2:
            ring.wait_readable(5)
            cqes += ring.reap()
        assert sorted(cqes) == [(3, 1000, 0), (4, -errno.ECANCELED, 0)]
        assert os.read(r, 5000) == data[199_000:]
    finally:
        ring.close()
        for x in (fd, r, w):
            os.close(x)
        a.close()
        b.close()


def test_prep_linked_refuses_what_would_not_fit_in_one_batch():
    ring = Ring(4)
    try:
        entry = (abi.OP_NOP, -1, 0, 0, 0, 0, 1, 0)
        assert not ring.prep_linked([])
        assert not ring.prep_linked([entry] * 5)  # more than the SQ holds
        assert ring.prep_linked([entry] * 3)
        ring.max_in_flight = 4
        assert not ring.prep_linked([entry] * 2)  # in-flight cap: nothing prepared
        assert ring.sq_pending == 3
    finally:
        ring.submit()
        ring.wait_readable(5)
        ring.reap()
        ring.close()
