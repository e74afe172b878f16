"""``FileEngine``: runs each :class:`~.ops.Op` on the io_uring ring or on the worker pool.

Routing (DESIGN.md, "One Op, two engines"):

1. the ring exists and the probe says it supports the opcode, and no kernel-version gate
   applies -> an SQE on the ring;
2. otherwise -> the worker pool runs ``op.blocking()``;
3. a ring completion of ``-EOPNOTSUPP``/``-EINVAL`` -> the op is rerun on the pool. If the pool
   succeeds (or fails differently), the ring can't do this op: the opcode is marked
   unsupported for this ring. If the pool fails with the same errno the arguments were bad,
   the error is delivered and the opcode keeps its ring (an ``EINVAL`` read on an ``O_DIRECT``
   fd must not move every later read to threads).

Both engines finish through the same path: ``op.result`` / ``op.error`` / ``op.cancelled`` are
set and ``on_complete(op)`` runs in the loop thread, exactly once per submitted op. Ring ops
complete inside :meth:`FileEngine.reap`; pool ops and ops cancelled before reaching the
kernel complete through ``call_soon_threadsafe`` (never synchronously inside ``submit`` or
``cancel``, so callers' abort functions are never re-entered).

Cancellation is the completion-port pattern. ``cancel(op)`` only *asks*:

- a ring op still queued in Python is dropped and completes as cancelled;
- a ring op in the kernel gets an ``IORING_OP_ASYNC_CANCEL`` for its user_data; its own CQE
  still arrives. ``-ECANCELED`` (or ``-EINTR`` after our request) -> ``op.cancelled``; any
  other result means the operation happened and is delivered as such. An ``openat`` that
  wins that race delivers its fd: the caller owns it and must close it if its task was
  cancelled meanwhile, e.g. by calling ``op.discard()``, which runs ``op.on_abandoned``
  (closing the fd) -- tokio leaked exactly these fds (#7979);
- a pool op that no worker has picked up yet completes as cancelled without running; once
  running it runs to completion (threads can't be interrupted), like Trio's
  ``to_thread.run_sync(abandon_on_cancel=False)``.

Buffers stay referenced by the op (``op.keep``) until its own CQE has been reaped; a cancel's
CQE is not enough, because the kernel may still be writing.

Fork: a forked child must never touch the parent's ring (a shared SQ/CQ would lose the
parent's completions), and must never run the parent's queued pool ops (a write would
happen twice). The engine notices it is in a child on its next call and starts over: it
drops its view of the parent's ring without any syscall on it, sets up a fresh ring (so
``ring_fd`` changes: ``on_ring`` is called with the new one, for whoever watches it in
epoll), and forgets the parent's in-flight ops. A forgotten op never runs in the child; its
waiter gets a completion only if it was already decided before the fork (a pool result or
a cancellation waiting to be delivered), or as ``cancelled`` once it asks ``cancel()`` (or
at once, if it had asked before the fork). Forgotten ops don't count in ``in_flight``.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final

import outcome

from . import workers
from .cachestat import PageCacheCheck
from .errors import ClosedResourceError
from .inline import INLINE_ENV_VAR, InlineOps
from .ops import NO_OPCODE, Op, SpliceOp
from .pipes import PipePool
from .uring import abi
from .uring.ring import (
    SETUP_STEP,
    Ring,
    UnsupportedPlatformError,
    failed_step,
    validated_architecture,
)

__all__ = ["ENV_VAR", "INLINE_ENV_VAR", "FileEngine", "IOStatistics"]

#: Set to "0" to make every engine use the worker pool (inline reads included).
ENV_VAR: Final = "NURSERY_IO_URING"

ENGINE_URING: Final = "io_uring"
ENGINE_THREADS: Final = "threads"
#: Reads served from the page cache by an inline ``preadv2(RWF_NOWAIT)``: no ring, no thread.
ENGINE_INLINE: Final = "inline"

#: Worker threads one engine keeps busy at most; further pool ops queue (and stay
#: cancellable) until a thread is free.
DEFAULT_MAX_THREADS: Final = 32

_ECANCELED: Final = -errno.ECANCELED
_EINTR: Final = -errno.EINTR
# An io-wq worker interrupted by our cancel request can report the kernel-internal
# "restart" codes instead of -EINTR: a FIFO open blocked waiting for its peer completes
# with -ERESTARTSYS (-512), measured on 6.18. They all mean "interrupted".
_ERESTART_CODES: Final = frozenset({-512, -513, -514, -516})
_RERUN_ERRNOS: Final = frozenset({errno.EOPNOTSUPP, errno.EINVAL})

# Op._state values.
_NEW: Final = 0
_RING: Final = 1  # SQE prepared or submitted, or waiting in the ring's backlog
_POOL_QUEUED: Final = 2  # waiting for one of our thread slots
_POOL_HANDED: Final = 3  # handed to a worker that hasn't claimed it yet
_POOL_RUNNING: Final = 4
_DONE: Final = 5
_FORGOTTEN: Final = 6  # in flight in the parent at a fork; never runs in this process

# A pool job that found its op cancelled before it started.
_SKIPPED: Final = object()


def kernel_version(release: str | None = None) -> tuple[int, int, int]:
    """``os.uname().release`` as a tuple: "6.18.44-fc-v669" -> (6, 18, 44)."""
    # Plain string handling: the first engine of a process is made on the first file op,
    # and compiling a regex there would be most of its cost.
    numbers: list[int] = []
    for part in (release or os.uname().release).split(".", 3)[:3]:
        digits = len(part) - len(part.lstrip("0123456789"))
        if digits == 0:
            break
        numbers.append(int(part[:digits]))
        if digits < len(part):
            break  # "18-fc": the version ends inside this part
    if len(numbers) < 2:
        return (0, 0, 0)
    return (numbers[0], numbers[1], numbers[2] if len(numbers) > 2 else 0)


# Kernel-version deny list, one table for all ops: (opcode, denied(version), reason).
# A probed opcode isn't necessarily a bug-free one. CLOSE: libuv saw ETXTBSY after
# close+execve and skips it below 5.15.90 and on 5.16-6.0. FTRUNCATE appeared in 6.9 (the
# probe covers that too; the gate documents it).
_VERSION_GATES: Final[tuple[tuple[int, Callable[[tuple[int, int, int]], bool], str], ...]] = (
    (
        abi.OP_CLOSE,
        lambda v: v < (5, 15, 90) or (5, 16, 0) <= v < (6, 1, 0),
        "kernel < 5.15.90 or 5.16-6.0: CLOSE",
    ),
    (abi.OP_FTRUNCATE, lambda v: v < (6, 9, 0), "kernel < 6.9: FTRUNCATE"),
)

# Setup failures that won't change during the life of the process (seccomp, sysctl, no
# io_uring in the kernel) are remembered, so each new run doesn't pay for a failing syscall.
_cached_setup_failure: str | None = None
_PERMANENT_SETUP_ERRNOS: Final = frozenset({errno.ENOSYS, errno.EPERM})

# Ops whose CQE never came during close()'s bounded drain. The kernel may still write into
# their buffers, so they are kept alive for the life of the process.
_undrained_ops: list[Op] = []

_pid = os.getpid()


def _after_fork_in_child() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _errname(err: int | None) -> str:
    # errno.errorcode maps 95 to its alias ENOTSUP; the kernel and io_uring docs say EOPNOTSUPP.
    if err == errno.EOPNOTSUPP:
        return "EOPNOTSUPP"
    return errno.errorcode.get(err or 0, str(err))


def _opname(opcode: int) -> str:
    return abi.OPCODE_NAMES.get(opcode, f"opcode {opcode}")


@dataclass(frozen=True)
class IOStatistics:
    """What the file engine did, for ``current_statistics().io_statistics``."""

    engine: str
    """``"io_uring"`` or ``"threads"``."""
    fallback_reason: str | None
    """Why the engine is ``"threads"`` (None when it is io_uring)."""
    supported_opcodes: tuple[str, ...]
    """The opcodes nursery_io uses that currently run on the ring."""
    ops_by_engine: Mapping[str, int]
    """Ops run by each engine (an op rerun on the pool counts for both)."""
    fallbacks_by_reason: Mapping[str, int]
    """Ring-capable ops that ran on the pool instead, by reason."""
    submit_syscalls: int
    """``io_uring_enter`` calls."""
    ops_submitted: int
    """SQEs the kernel consumed (cancel requests included)."""
    ops_in_flight: int
    """Submitted ops whose completion hasn't been delivered yet (both engines)."""
    peak_worker_threads: int
    """Most pool ops this engine had on worker threads at once."""
    ring_entries: int = 0
    """SQ size of the ring (0 without one)."""
    inline_misses: int = 0
    """Inline read attempts that found the data not cached and went to an engine instead."""
    features: int = 0
    """``io_uring_params.features`` of the ring."""
    inline_sendfiles: int = 0
    """``sendfile`` calls made on the loop thread for ranges ``cachestat`` found cached."""
    inline_sendfile_misses: int = 0
    """Ranges of a file transfer found not cached: they went to the ring or a thread."""

    @property
    def syscalls_saved(self) -> int:
        """``io_uring_enter`` calls avoided by batching (one per op would be the naive cost)."""
        return max(0, self.ops_submitted - self.submit_syscalls)


class FileEngine:
    """Routes ops to the io_uring ring or the worker pool; see the module docstring.

    Everything except the pool's worker-side delivery runs in the loop thread, which must be
    the thread that created the engine (the ring is ``SINGLE_ISSUER``).

    ``use_uring``: None decides (``NURSERY_IO_URING=0``, Android, an unvalidated CPU
    architecture, or any setup failure -> threads, with the reason in :meth:`statistics`);
    True requires the ring and raises if it can't be set up; False uses threads.

    ``on_ring(fd)`` is called whenever a ring is set up (at creation, and again in a forked
    child), so the caller can watch the new ring fd in its epoll set.

    The ``_setup_hook``, ``_probe_hook`` and ``_cqe_hook`` arguments are for tests only: the
    first runs just before ring setup and may raise ``OSError`` to simulate EPERM/ENOSYS; the
    second filters the set of probed opcodes; the third may rewrite each ring result
    (e.g. to ``-errno.EOPNOTSUPP``) before the engine sees it.
    """

    ring_fd: int | None

    def __init__(
        self,
        call_soon_threadsafe: Callable[[Callable[[], None]], None],
        *,
        use_uring: bool | None = None,
        inline_reads: bool | None = None,
        entries: int = 256,
        max_threads: int = DEFAULT_MAX_THREADS,
        on_ring: Callable[[int], object] | None = None,
        _setup_hook: Callable[[], object] | None = None,
        _probe_hook: Callable[[frozenset[int]], frozenset[int]] | None = None,
        _cqe_hook: Callable[[Op, int], int] | None = None,
    ) -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self._call_soon_threadsafe = call_soon_threadsafe
        self._use_uring = use_uring
        if inline_reads is None:
            # Forcing the pool with NURSERY_IO_URING=0 means every op on a thread: that is
            # how the test suite exercises the thread engine. A ring that merely failed to set
            # up (EPERM in a container, ...) keeps inline reads: they need no io_uring.
            inline_reads = os.environ.get(ENV_VAR) != "0" and os.environ.get(INLINE_ENV_VAR) != "0"
        self._inline = InlineOps(bool(inline_reads))
        #: Whether cached positional reads are tried inline first (``try_inline``).
        self.inline_reads = self._inline.enabled
        #: Whether a file range can be sent inline (``sendfile`` on the loop thread).
        self.page_cache = PageCacheCheck(self._inline.enabled)
        self._entries = entries
        self._max_threads = max_threads
        self._on_ring = on_ring
        self._setup_hook = _setup_hook
        self._probe_hook = _probe_hook
        self._cqe_hook = _cqe_hook
        self._closed = False
        self._seq = 0
        self._deferred: dict[int, Op] = {}  # completions waiting for call_soon_threadsafe
        self._forgotten: dict[int, Op] = {}  # the parent's ops, in a forked child
        self._pipes: PipePool | None = None
        self._reset_state()
        self._setup()

    def _reset_state(self) -> None:
        self._pid = _pid
        self._ring: Ring | None = None
        self.ring_fd = None
        self.fallback_reason: str | None = None
        self._engine_name = ENGINE_THREADS
        self._kernel = kernel_version()
        # Opcodes that go to the ring; everything else has a reason in _op_reasons.
        self._ring_ops: set[int] = set()
        self._op_reasons: dict[int, str] = {}
        # _seq, _deferred and _forgotten survive a fork (see _after_fork).
        self._inflight: dict[int, Op] = {}  # ring ops by user_data
        self._pool_queue: deque[Op] = deque()
        self._unclaimed: dict[int, Op] = {}  # handed to a worker, not started
        self._pool_ops: dict[int, Op] = {}  # holding one of our thread slots (handed or running)
        self._pool_skipping = 0  # of those, cancelled ones whose worker will skip them
        self._pool_peak = 0
        self._n_ring = 0
        self._n_threads = 0
        self._fallbacks: dict[str, int] = {}
        self._enter_calls = 0  # of rings already closed
        self._sqes_submitted = 0
        self._splice_on_ring = False

    # --- engine choice ------------------------------------------------------------------------

    def _setup(self) -> None:
        global _cached_setup_failure
        use = self._use_uring
        reason: str | None = None
        if use is False:
            reason = "disabled by use_uring=False"
        elif use is None and os.environ.get(ENV_VAR) == "0":
            reason = f"disabled by {ENV_VAR}=0"
        elif hasattr(sys, "getandroidapilevel"):
            # Android's seccomp policy kills the process (SIGSYS) on io_uring syscalls.
            reason = "Android: io_uring is blocked by seccomp"
        elif (machine := validated_architecture()) is not None:
            reason = f"architecture {machine} not validated for the io_uring ring"
        elif use is None and _cached_setup_failure is not None and self._setup_hook is None:
            reason = _cached_setup_failure
        if reason is not None:
            if use:
                raise UnsupportedPlatformError(f"io_uring requested but unavailable: {reason}")
            self.fallback_reason = reason
            return
        try:
            if self._setup_hook is not None:
                self._setup_hook()
            ring = Ring(self._entries)
        except OSError as exc:
            if use:
                raise
            step = failed_step(exc)  # the test hook's errors count as io_uring_setup's
            code = _errname(exc.errno)
            reason = f"{step} failed: {code} ({os.strerror(exc.errno or 0)})"
            # Only io_uring_setup's own refusal is a property of the process (seccomp,
            # sysctl, no io_uring): an mmap or probe failure may not happen next time.
            if (
                step == SETUP_STEP
                and exc.errno in _PERMANENT_SETUP_ERRNOS
                and self._setup_hook is None
            ):
                _cached_setup_failure = reason
            self.fallback_reason = reason
            return
        missing = abi.FEATURES_REQUIRED & ~ring.features
        if missing or not ring.supported_ops:
            ring.close()
            if missing:
                names = [n for bit, n in abi.FEATURE_NAMES.items() if missing & bit]
                reason = f"kernel lacks io_uring features: {', '.join(names)}"
            else:
                reason = "io_uring probe unavailable (kernel < 5.6)"
            if use:
                raise UnsupportedPlatformError(f"io_uring requested but unavailable: {reason}")
            self.fallback_reason = reason
            return
        supported = ring.supported_ops
        if self._probe_hook is not None:
            supported = self._probe_hook(supported)
        ring_ops = set(supported)
        for opcode, denied, gate_reason in _VERSION_GATES:
            if denied(self._kernel):
                ring_ops.discard(opcode)
                self._op_reasons[opcode] = gate_reason
        for opcode in abi.OPCODE_NAMES:
            if opcode not in ring_ops and opcode not in self._op_reasons:
                self._op_reasons[opcode] = f"opcode unsupported: {_opname(opcode)}"
        if abi.OP_SPLICE in ring_ops:
            # SPLICE needs a field prep() doesn't write (splice_fd_in): it reaches the ring
            # only through submit_linked().
            self._splice_on_ring = True
            ring_ops.discard(abi.OP_SPLICE)
            self._op_reasons[abi.OP_SPLICE] = "SPLICE runs on the ring only in linked chains"
        self._ring_ops = ring_ops
        self._ring = ring
        self.ring_fd = ring.fd
        self._engine_name = ENGINE_URING
        if self._on_ring is not None:
            self._on_ring(ring.fd)

    @property
    def engine(self) -> str:
        """``"io_uring"`` or ``"threads"`` (what was chosen; unchanged by ``close()``)."""
        return self._engine_name

    def _after_fork(self) -> None:
        # Forked child: everything we hold describes the parent's ring and threads. Close
        # our copies (munmap + close touch only this process) and start over. The parent's
        # ops are forgotten (see the module docstring); _seq keeps counting so that their
        # user_data never collides with a new op's.
        ring = self._ring
        if ring is not None:
            ring.close()
        forgotten = self._forgotten
        for op in (*self._inflight.values(), *self._pool_queue, *self._pool_ops.values()):
            if op._state == _DONE:  # cancelled while handed to a worker: already deferred
                continue
            if op.cancel_requested:
                # Its abort already ran, so nothing else would ever end its wait.
                op.cancelled = True
                op.keep = None
                self._defer(op)
            else:
                op._state = _FORGOTTEN
                forgotten[op.user_data] = op
        self._reset_state()
        if not self._closed:
            self._setup()

    # --- submission ---------------------------------------------------------------------------

    def try_inline(self, op: Op) -> bool:
        """Complete ``op`` right here if it can't block (a cached read, open or stat); see
        :mod:`nursery_io._kernel.inline`. True: ``op.result`` (or, for an answer as final as
        the engines', ``op.error``) is set and the op counts for the "inline" engine. False:
        nothing happened; submit it."""
        if self._inline.try_op(op):
            op.engine = ENGINE_INLINE
            return True
        return False

    def read_nowait(self, fd: int, length: int, offset: int) -> bytes | None:
        """``try_inline`` for a plain ``pread`` without building an Op: the bytes, or None
        (run ``ops.read(fd, length, offset)`` instead)."""
        return self._inline.read(fd, length, offset)

    def submit(self, op: Op, on_complete: Callable[[Op], None]) -> None:
        """Start ``op``; ``on_complete(op)`` runs later in the loop thread, exactly once."""
        if self._pid != _pid:
            self._after_fork()
        if self._closed:
            raise ClosedResourceError("the file engine is closed")
        if op._state:
            raise RuntimeError(f"{op!r} was already submitted; an Op runs once")
        op._on_complete = on_complete
        self._seq = seq = self._seq + 1
        op.user_data = seq
        ring = self._ring
        opcode = op.opcode
        if ring is not None and opcode in self._ring_ops:
            # prep() first: if a field doesn't fit the SQE it raises with nothing recorded.
            ring.prep(opcode, op.fd, op.off, op.addr, op.length, op.op_flags, seq)
            op._state = _RING
            self._inflight[seq] = op
            self._n_ring += 1
            return
        if opcode == NO_OPCODE:
            self._to_pool(op, None)
        elif ring is None:
            self._to_pool(op, self.fallback_reason)
        else:
            reason = self._op_reasons.get(opcode) or f"opcode unsupported: {_opname(opcode)}"
            self._to_pool(op, reason)

    @property
    def splice_on_ring(self) -> bool:
        """Whether :meth:`submit_linked` can run SPLICE chains on the ring."""
        return self._splice_on_ring and self._ring is not None and self._pid == _pid

    @property
    def pipes(self) -> PipePool:
        """The run's pool of pipe pairs for splice transfers (created on first use, closed
        with the engine)."""
        pool = self._pipes
        if pool is None:
            if self._closed:
                raise ClosedResourceError("the file engine is closed")
            pool = self._pipes = PipePool()
        return pool

    def submit_linked(self, ops: Sequence[Op], on_complete: Callable[[Op], None]) -> bool:
        """Start ``ops`` as one io_uring link chain: each starts only after the previous one
        completed in full (an error or a short count ends the chain, and the rest complete
        as cancelled). ``on_complete(op)`` runs once per op, as for :meth:`submit`.

        False, with nothing submitted, if the chain can't go to the ring now (no ring, an
        opcode it can't run, or no room for the whole chain at once); the caller then runs
        the ops one at a time with :meth:`submit`. SPLICE reaches the ring only this way.
        """
        if self._pid != _pid:
            self._after_fork()
        if self._closed:
            raise ClosedResourceError("the file engine is closed")
        ring = self._ring
        if ring is None or not ops:
            return False
        ring_ops = self._ring_ops
        entries = []
        seq = self._seq
        for op in ops:
            if op._state:
                raise RuntimeError(f"{op!r} was already submitted; an Op runs once")
            opcode = op.opcode
            if opcode == abi.OP_SPLICE:
                if not self._splice_on_ring or not isinstance(op, SpliceOp):
                    return False
                fd_in = op.fd_in
            elif opcode in ring_ops:
                fd_in = 0
            else:
                return False
            seq += 1
            entries.append((opcode, op.fd, op.off, op.addr, op.length, op.op_flags, seq, fd_in))
        if not ring.prep_linked(entries):
            return False
        inflight = self._inflight
        for op, entry in zip(ops, entries, strict=True):
            op._on_complete = on_complete
            op.user_data = entry[6]
            op._state = _RING
            inflight[entry[6]] = op
        self._seq = seq
        self._n_ring += len(ops)
        return True

    def flush(self) -> None:
        """Submit every prepared SQE with one ``io_uring_enter`` (the loop calls this once
        per turn, before it sleeps)."""
        if self._pid != _pid:
            # Checked first: a threads-only engine must notice a fork here too, or a
            # cancel its child's tasks asked for before the fork is never delivered.
            self._after_fork()
            return
        ring = self._ring
        if ring is None or not ring.sq_pending:
            return
        try:
            ring.submit()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EBUSY):
                raise
            if exc.errno == errno.EBUSY:
                # Completions are backed up: take them, then try once more.
                self.reap()
                try:
                    ring.submit()
                    return
                except OSError as again:
                    if again.errno not in (errno.EAGAIN, errno.EBUSY):
                        raise
                    exc = again
            self._withdraw_unsubmitted(exc)

    def _withdraw_unsubmitted(self, exc: OSError) -> None:
        # The kernel is short of memory for requests (EAGAIN) or can't take them now (EBUSY):
        # rather than leave SQEs that nothing will retry while the loop sleeps, run those
        # ops on the pool. Withdrawn cancel requests are re-prepared for their targets.
        ring = self._ring
        assert ring is not None
        reason = f"io_uring_enter failed: {_errname(exc.errno)}"
        recancel = False
        for ud in ring.take_unsubmitted():
            if not ud:
                recancel = True
                continue
            op = self._inflight.pop(ud, None)
            if op is None:
                continue
            if op.cancel_requested:  # never reached the kernel: nothing to wait for
                op.cancelled = True
                op.keep = None
                op.engine = ENGINE_URING
                self._defer(op)
            else:
                self._to_pool(op, reason)
        if recancel:
            for ud, op in self._inflight.items():
                if op.cancel_requested:
                    ring.prep_cancel(ud)

    # --- completion ---------------------------------------------------------------------------

    def reap(self) -> None:
        """Deliver every finished ring op (loop thread; call when the ring fd is readable)."""
        ring = self._ring
        if ring is None:
            return
        if self._pid != _pid:
            self._after_fork()
            return
        cqes = ring.reap()
        if not cqes:
            return
        inflight = self._inflight
        hook = self._cqe_hook
        first_error: BaseException | None = None
        for ud, res, _flags in cqes:
            if not ud:  # our own cancel requests: their targets' CQEs carry the outcome
                continue
            op = inflight.pop(ud, None)
            if op is None:
                continue
            if hook is not None:
                res = hook(op, res)  # noqa: PLW2901
            if res >= 0:  # the common case, inline: see _finish_ring_op
                convert = op._convert
                if convert is None:
                    op.result = res
                else:
                    try:
                        op.result = convert(op, res)
                    except BaseException as exc:
                        op.error = exc
                op.keep = None
                op.engine = ENGINE_URING
                op._state = _DONE
            elif not self._finish_ring_op(op, res, rerun=True):
                continue
            try:
                op._on_complete(op)  # type: ignore[misc]
            except BaseException as exc:  # keep delivering the rest: they are off the CQ
                if first_error is None:
                    first_error = exc
            op._on_complete = None
        if first_error is not None:
            raise first_error

    def _finish_ring_op(self, op: Op, res: int, *, rerun: bool) -> bool:
        """Record a ring result on ``op``. False if it was handed to the pool instead."""
        if res >= 0:
            try:
                op.result = op.convert(res)
            except BaseException as exc:  # a converter bug must not lose the completion
                op.error = exc
        elif res in _ERESTART_CODES:
            if op.cancel_requested:
                op.cancelled = True
            else:
                op.error = op.make_error(errno.EINTR)
        elif res == _ECANCELED or (res == _EINTR and op.cancel_requested):
            op.cancelled = True
        elif -res in _RERUN_ERRNOS and rerun and not op.cancel_requested:
            op._ring_errno = -res
            op.keep = None  # the kernel is done with it; blocking() has its own buffers
            self._to_pool(op, f"ring returned {_errname(-res)}: {op.name}")
            return False
        else:
            op.error = op.make_error(-res)
        op.keep = None  # the CQE is reaped: the kernel will not touch the buffers again
        op.engine = ENGINE_URING
        op._state = _DONE
        return True

    # --- worker pool --------------------------------------------------------------------------

    def _to_pool(self, op: Op, reason: str | None) -> None:
        if reason is not None:
            self._fallbacks[reason] = self._fallbacks.get(reason, 0) + 1
        self._n_threads += 1
        if len(self._pool_ops) < self._max_threads:
            self._start_pool(op)
        else:
            op._state = _POOL_QUEUED
            self._pool_queue.append(op)

    def _start_pool(self, op: Op) -> None:
        ud = op.user_data
        unclaimed = self._unclaimed
        op._state = _POOL_HANDED
        unclaimed[ud] = op
        pool_ops = self._pool_ops
        pool_ops[ud] = op
        self._pool_peak = max(self._pool_peak, len(pool_ops))

        def job() -> object:
            # dict.pop is atomic: either this worker or cancel() takes the op, never both.
            if unclaimed.pop(ud, None) is None:
                return _SKIPPED
            op._state = _POOL_RUNNING
            return op.blocking()

        def deliver(result: outcome.Outcome[object]) -> None:
            # Runs in the worker thread. After close() the loop may never run another
            # callback: finish here so that on_abandoned (closing an fd) still happens.
            if self._closed:
                self._abandon_pool_result(op, result)
                return
            try:
                self._call_soon_threadsafe(partial(self._pool_done, op, result))
            except BaseException:
                self._abandon_pool_result(op, result)

        try:
            workers.start_thread_soon(job, deliver)
        except BaseException as exc:  # e.g. RuntimeError("can't start new thread")
            unclaimed.pop(ud, None)
            del pool_ops[ud]
            op.error = exc
            op.engine = ENGINE_THREADS
            self._defer(op)

    def _pool_done(self, op: Op, result: outcome.Outcome[object]) -> None:
        if self._pid != _pid:
            self._after_fork()
        pool_ops = self._pool_ops
        if pool_ops.pop(op.user_data, None) is None:
            # Not holding one of this process's slots: a forked child got the parent's
            # pool result (queued before the fork). Starting queued ops here would run
            # the parent's ops a second time.
            self._forgotten_pool_done(op, result)
            return
        queue = self._pool_queue
        while queue and len(pool_ops) < self._max_threads and not self._closed:
            self._start_pool(queue.popleft())
        if type(result) is outcome.Value and result.value is _SKIPPED:
            self._pool_skipping -= 1
            return  # cancelled before it started; already delivered by cancel()
        if self._closed:
            self._abandon_pool_result(op, result)
            return
        self._record_pool_result(op, result)
        self._deliver(op)

    def _forgotten_pool_done(self, op: Op, result: outcome.Outcome[object]) -> None:
        if type(result) is outcome.Value and result.value is _SKIPPED:
            return
        if not self._closed and self._forgotten.pop(op.user_data, None) is op:
            # It ran before the fork, so the result is true in this process too: its
            # waiter is still waiting for it.
            self._record_pool_result(op, result)
            self._deliver(op)
        else:
            self._abandon_pool_result(op, result)

    def _record_pool_result(self, op: Op, result: outcome.Outcome[object]) -> None:
        if type(result) is outcome.Value:
            op.result = result.value
        else:
            op.error = result.error  # type: ignore[attr-defined]
        op.engine = ENGINE_THREADS
        op.keep = None
        ring_errno = op._ring_errno
        if ring_errno:
            # The ring said EOPNOTSUPP/EINVAL. Same errno from os.* too: bad arguments, the
            # ring is fine. Otherwise the ring can't do this op here: stop sending it there.
            error = op.error
            if not (isinstance(error, OSError) and error.errno == ring_errno):
                self._ring_ops.discard(op.opcode)
                self._op_reasons[op.opcode] = f"opcode unsupported: {op.name}"

    def _abandon_pool_result(self, op: Op, result: outcome.Outcome[object]) -> None:
        if type(result) is outcome.Value and result.value is _SKIPPED:
            return
        self._record_pool_result(op, result)
        op._state = _DONE
        op._on_complete = None
        op.discard()

    # --- delivery helpers ---------------------------------------------------------------------

    def _deliver(self, op: Op) -> None:
        op._state = _DONE
        callback = op._on_complete
        op._on_complete = None
        if callback is not None:
            callback(op)

    def _defer(self, op: Op) -> None:
        # Completed outside reap() (cancelled before reaching the kernel or a thread, or a
        # thread couldn't start): deliver on the next loop turn, never re-entrantly.
        op._state = _DONE
        self._deferred[op.user_data] = op
        self._call_soon_threadsafe(partial(self._run_deferred, op.user_data))

    def _run_deferred(self, ud: int) -> None:
        op = self._deferred.pop(ud, None)
        if op is not None:  # None: close() delivered it already
            self._deliver(op)

    # --- cancellation -------------------------------------------------------------------------

    def cancel(self, op: Op) -> None:
        """Ask for ``op`` to be cancelled. Its completion still arrives through
        ``on_complete``: ``op.cancelled`` if it was, or its real result if it had already
        happened or could not be stopped."""
        if self._pid != _pid:
            self._after_fork()
        state = op._state
        if op.cancel_requested or state in (_DONE, _NEW):
            op.cancel_requested = True
            return
        op.cancel_requested = True
        if state == _FORGOTTEN:
            if self._forgotten.pop(op.user_data, None) is op:
                op.cancelled = True
                op.keep = None
                self._defer(op)
        elif state == _RING:
            ring = self._ring
            if ring is None:
                return
            if ring.backlog and ring.remove_backlog(op.user_data):
                # Never reached the kernel.
                del self._inflight[op.user_data]
                op.cancelled = True
                op.keep = None
                op.engine = ENGINE_URING
                self._defer(op)
                return
            if abi.OP_ASYNC_CANCEL in ring.supported_ops:
                # Its CQE (0 / -ENOENT / -EALREADY) is ignored: the target's own CQE tells.
                ring.prep_cancel(op.user_data)
        elif state == _POOL_QUEUED:
            self._pool_queue.remove(op)
            op.cancelled = True
            op.engine = ENGINE_THREADS
            self._defer(op)
        elif state == _POOL_HANDED and self._unclaimed.pop(op.user_data, None) is not None:
            # The worker will find it gone and skip it (and free our thread slot).
            self._pool_skipping += 1
            op.cancelled = True
            op.engine = ENGINE_THREADS
            self._defer(op)
        # _POOL_RUNNING: runs to completion.

    # --- teardown -----------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Cancel and drain in-flight ring ops (waiting up to ``timeout`` seconds for
        ones that can't be cancelled), then unmap and close the ring.

        Ring ops, queued pool ops and pending deferred completions are delivered to
        ``on_complete`` before this returns (mostly as cancelled). Pool ops already running
        on a thread finish later into the closed engine: their ``on_complete`` is not called,
        ``op.discard()`` is (so an fd they opened is closed). Ring ops still running after
        ``timeout`` (uncancellable disk I/O on a hung device) are never delivered; they stay
        referenced for the life of the process because the kernel may still write into
        their buffers.
        """
        if self._closed:
            return
        self._closed = True
        if self._pid != _pid:
            self._after_fork()  # drops the parent's ring without touching it; no new one
        finished: list[Op] = []
        for op in self._forgotten.values():
            op.cancel_requested = op.cancelled = True
            op.keep = None
            finished.append(op)
        self._forgotten.clear()
        for op in self._pool_queue:
            op.cancel_requested = op.cancelled = True
            op.engine = ENGINE_THREADS
            finished.append(op)
        self._pool_queue.clear()
        for ud in list(self._unclaimed):
            op_or_none = self._unclaimed.pop(ud, None)
            if op_or_none is not None:
                self._pool_skipping += 1
                op_or_none.cancel_requested = op_or_none.cancelled = True
                op_or_none.engine = ENGINE_THREADS
                finished.append(op_or_none)
        finished.extend(self._deferred.values())
        self._deferred.clear()
        ring = self._ring
        if ring is not None:
            try:
                self._drain(ring, finished, timeout)
            finally:
                self._enter_calls += ring.enter_calls
                self._sqes_submitted += ring.sqes_submitted
                ring.close()
                self._ring = None
                self.ring_fd = None
        if self._pipes is not None:  # after the drain: no splice uses them any more
            self._pipes.close()
        first_error: BaseException | None = None
        for op in finished:
            try:
                self._deliver(op)
            except BaseException as exc:
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error

    def _drain(self, ring: Ring, finished: list[Op], timeout: float) -> None:
        inflight = self._inflight
        if not inflight and not ring.in_flight:
            return
        for ud in list(inflight):
            if ring.backlog and ring.remove_backlog(ud):
                op = inflight.pop(ud)
                op.cancel_requested = op.cancelled = True
                op.keep = None
                op.engine = ENGINE_URING
                finished.append(op)
        if inflight and abi.OP_ASYNC_CANCEL in ring.supported_ops:
            if self._kernel >= (5, 19, 0):
                # One SQE cancels every request on the ring.
                ring.prep_cancel(0, abi.ASYNC_CANCEL_ANY)
            else:
                for ud in inflight:
                    ring.prep_cancel(ud)
            for op in inflight.values():
                op.cancel_requested = True
        deadline = time.monotonic() + timeout
        try:
            while True:
                ring.submit()
                for ud, res, _flags in ring.reap():
                    op_or_none = inflight.pop(ud, None) if ud else None
                    if op_or_none is not None:
                        self._finish_ring_op(op_or_none, res, rerun=False)
                        finished.append(op_or_none)
                if not ring.in_flight:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                ring.wait_readable(min(remaining, 0.1))
        except OSError:
            pass  # can't submit or reap any more: treat what's left as undrained
        # Timed out: keep what the kernel may still write into alive forever.
        _undrained_ops.extend(inflight.values())
        inflight.clear()

    # --- statistics ---------------------------------------------------------------------------

    def statistics(self) -> IOStatistics:
        if self._pid != _pid:
            self._after_fork()  # a forked child's numbers, not the parent's
        ring = self._ring
        enter_calls = self._enter_calls
        sqes = self._sqes_submitted
        if ring is not None:
            enter_calls += ring.enter_calls
            sqes += ring.sqes_submitted
        return IOStatistics(
            engine=self.engine,
            fallback_reason=self.fallback_reason,
            supported_opcodes=tuple(
                sorted(
                    name
                    for code, name in abi.OPCODE_NAMES.items()
                    if code in self._ring_ops or (code == abi.OP_SPLICE and self._splice_on_ring)
                )
            )
            if ring is not None
            else (),
            ops_by_engine={
                ENGINE_URING: self._n_ring,
                ENGINE_THREADS: self._n_threads,
                ENGINE_INLINE: self._inline.served,
            },
            inline_misses=self._inline.misses,
            inline_sendfiles=self.page_cache.served,
            inline_sendfile_misses=self.page_cache.misses,
            fallbacks_by_reason=dict(self._fallbacks),
            submit_syscalls=enter_calls,
            ops_submitted=sqes,
            ops_in_flight=self.in_flight,
            peak_worker_threads=self._pool_peak,
            ring_entries=ring.sq_entries if ring is not None else 0,
            features=ring.features if ring is not None else 0,
        )

    def __del__(self) -> None:
        # Dropped without close() (a crash path): release the ring fd quietly, and keep any
        # op the kernel may still write into alive for good. Never in a forked child's
        # copy: there only our own mappings go, which the mmap objects do by themselves.
        ring = getattr(self, "_ring", None)
        if ring is None or getattr(self, "_pid", None) != _pid:
            return
        try:
            _undrained_ops.extend(self._inflight.values())
            ring.close()
        except Exception:
            pass

    @property
    def ring_busy(self) -> bool:
        """Whether the ring has SQEs to submit or ops whose CQEs are still to come (cheap)."""
        ring = self._ring
        return ring is not None and bool(self._inflight or ring.sq_pending)

    @property
    def in_flight(self) -> int:
        """Submitted ops whose completion hasn't been delivered yet (both engines)."""
        return (
            len(self._inflight)
            + len(self._pool_queue)
            + len(self._pool_ops)
            - self._pool_skipping
            + len(self._deferred)
        )

    def __repr__(self) -> str:
        return f"<FileEngine {self.engine} fd={self.ring_fd} in_flight={len(self._inflight)}>"
