"""``FileEngine``: runs each :class:`~.ops.Op` on the io_uring ring or on the worker pool.

The file engine is a router (docs/design.rst, "One Op, two engines"). It sets up the ring,
applies the probe and the kernel-version gates, routes each op, keeps the statistics and
holds the one fork guard; the two engines it routes to own their ops' state:

- :class:`~.ring_engine.RingEngine`: SQEs on one ring, its backlog, the completion-port
  cancellation, draining at close;
- :class:`~.pool_engine.PoolEngine`: the blocking equivalents on worker threads;
- before both, :class:`~.inline.InlineOps` is a pre-filter the core tries first
  (:meth:`FileEngine.try_inline`): a cached read, open or stat done right away.

Routing:

1. the ring exists and the probe says it supports the opcode, and no kernel-version gate
   applies -> an SQE on the ring;
2. otherwise -> the worker pool runs ``op.blocking()``;
3. a ring completion of ``-EOPNOTSUPP``/``-EINVAL`` -> the op is rerun on the pool. If the pool
   succeeds (or fails differently), the ring can't do this op: the opcode is marked
   unsupported for this ring. If the pool fails with the same errno the arguments were bad,
   the error is delivered and the opcode keeps its ring (an ``EINVAL`` read on an ``O_DIRECT``
   fd must not move every later read to threads).

Every op ends through :meth:`~.completion.Completions.complete`: ``on_complete(op)`` runs
in the loop thread, exactly once per submitted op, never synchronously inside ``submit`` or
``cancel`` (so callers' abort functions are never re-entered). ``cancel(op)`` only *asks*;
see ``ring_engine.py`` and ``pool_engine.py`` for what each engine can stop.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from . import forks
from .cachestat import PageCacheCheck
from .completion import ENGINE_INLINE, ENGINE_THREADS, ENGINE_URING, LATER, Completions
from .errors import ClosedResourceError
from .inline import INLINE_ENV_VAR, InlineOps
from .kinds import NO_OPCODE
from .ops import Op
from .pipes import PipePool
from .pool_engine import PoolEngine
from .ring_engine import RingEngine, errname
from .uring import abi
from .uring.ring import (
    SETUP_STEP,
    Ring,
    UnsupportedPlatformError,
    failed_step,
    validated_architecture,
)

__all__ = [
    "ENGINE_INLINE",
    "ENGINE_THREADS",
    "ENGINE_URING",
    "ENV_VAR",
    "INLINE_ENV_VAR",
    "FileEngine",
    "IOStatistics",
    "RingFactory",
]

#: Set to "0" to make every engine use the worker pool (inline reads included).
ENV_VAR: Final = "NURSERY_IO_URING"

#: Worker threads one engine keeps busy at most; further pool ops queue (and stay
#: cancellable) until a thread is free.
DEFAULT_MAX_THREADS: Final = 32

#: Makes the ring: ``factory(entries)``. Tests inject one that fails (EPERM, ENOSYS), probes
#: fewer opcodes or rewrites completions.
RingFactory = Callable[[int], Ring]


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


class _ForgottenOps:
    """The parent's in-flight ops, in a forked child: they never run here."""

    def __init__(self, completions: Completions) -> None:
        self._completions = completions
        self.ops: dict[int, Op] = {}

    def add(self, op: Op) -> None:
        op._owner = self
        self.ops[op.user_data] = op

    def cancel(self, op: Op) -> None:
        # Nothing else would ever end its wait.
        if self.ops.pop(op.user_data, None) is op:
            self._completions.complete(op, None, LATER, cancelled=True)

    def claim(self, op: Op) -> bool:
        """Whether ``op`` is a forgotten op still waiting (its pool result, decided before
        the fork, may then be delivered); it stops being forgotten."""
        return not self._completions.closed and self.ops.pop(op.user_data, None) is op

    def cancel_all(self) -> None:
        ops = list(self.ops.values())
        self.ops.clear()
        for op in ops:
            op.cancel_requested = True
            self._completions.complete(op, None, LATER, cancelled=True)


class FileEngine:
    """Routes ops to the io_uring ring or the worker pool; see the module docstring.

    Everything except the pool's worker-side delivery runs in the loop thread, which must be
    the thread that created the engine (the ring is ``SINGLE_ISSUER``).

    ``use_uring``: None decides (``NURSERY_IO_URING=0``, Android, an unvalidated CPU
    architecture, or any setup failure -> threads, with the reason in :meth:`statistics`);
    True requires the ring and raises if it can't be set up; False uses threads.

    ``on_ring(fd)`` is called whenever a ring is set up (at creation, and again in a forked
    child), so the caller can watch the new ring fd in its epoll set.

    ``ring_factory(entries)`` makes the ring (default: :class:`~.uring.ring.Ring`). Only the
    default's setup refusals (EPERM, ENOSYS) are remembered for the process.
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
        ring_factory: RingFactory = Ring,
    ) -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
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
        self._on_ring = on_ring
        self._ring_factory = ring_factory
        self._closed = False
        self._seq = 0
        self._completions = Completions(call_soon_threadsafe)
        self._forgotten = _ForgottenOps(self._completions)
        self._pool = PoolEngine(
            self._completions,
            call_soon_threadsafe,
            max_threads,
            check_fork=self._check_fork,
            claim_forgotten=self._forgotten.claim,
            on_rerun_result=self._on_rerun_result,
        )
        self._pipes: PipePool | None = None
        self._reset_state()
        self._setup()

    def _reset_state(self) -> None:
        # _seq, the deferred completions and the forgotten ops survive a fork (_after_fork).
        self._pid = forks.pid
        self._ring: RingEngine | None = None
        self.ring_fd = None
        self.fallback_reason: str | None = None
        self._engine_name = ENGINE_THREADS
        self._kernel = kernel_version()
        # Why each opcode that does not go to the ring doesn't.
        self._op_reasons: dict[int, str] = {}
        # Of rings already closed.
        self._closed_ring_ops = 0
        self._enter_calls = 0
        self._sqes_submitted = 0

    # --- engine choice ------------------------------------------------------------------------

    def _setup(self) -> None:
        reason = self._unavailable_reason()
        if reason is not None:
            self._fall_back(reason)
            return
        default = self._ring_factory is Ring
        try:
            ring = self._ring_factory(self._entries)
        except OSError as exc:
            if self._use_uring:
                raise
            step = failed_step(exc)  # a factory's own errors count as io_uring_setup's
            reason = f"{step} failed: {errname(exc.errno)} ({os.strerror(exc.errno or 0)})"
            # Only io_uring_setup's own refusal is a property of the process (seccomp,
            # sysctl, no io_uring): an mmap or probe failure may not happen next time.
            if default and step == SETUP_STEP and exc.errno in _PERMANENT_SETUP_ERRNOS:
                global _cached_setup_failure
                _cached_setup_failure = reason
            self.fallback_reason = reason
            return
        missing = abi.FEATURES_REQUIRED & ~ring.features
        if missing or not ring.supported_ops:
            ring.close()
            if missing:
                names = [n for bit, n in abi.FEATURE_NAMES.items() if missing & bit]
                self._fall_back(f"kernel lacks io_uring features: {', '.join(names)}")
            else:
                self._fall_back("io_uring probe unavailable (kernel < 5.6)")
            return
        ring_ops = set(ring.supported_ops)
        for opcode, denied, gate_reason in _VERSION_GATES:
            if denied(self._kernel):
                ring_ops.discard(opcode)
                self._op_reasons[opcode] = gate_reason
        for opcode in abi.OPCODE_NAMES:
            if opcode not in ring_ops and opcode not in self._op_reasons:
                self._op_reasons[opcode] = f"opcode unsupported: {_opname(opcode)}"
        splice = abi.OP_SPLICE in ring_ops
        if splice:
            # SPLICE needs a field prep() doesn't write (splice_fd_in): it reaches the ring
            # only through submit_linked().
            ring_ops.discard(abi.OP_SPLICE)
            self._op_reasons[abi.OP_SPLICE] = "SPLICE runs on the ring only in linked chains"
        self._ring = RingEngine(
            ring,
            ring_ops,
            self._completions,
            self._pool.submit,
            splice=splice,
            cancel_any=self._kernel >= (5, 19, 0),
        )
        self.ring_fd = ring.fd
        self._engine_name = ENGINE_URING
        if self._on_ring is not None:
            self._on_ring(ring.fd)

    def _unavailable_reason(self) -> str | None:
        use = self._use_uring
        if use is False:
            return "disabled by use_uring=False"
        if use is None and os.environ.get(ENV_VAR) == "0":
            return f"disabled by {ENV_VAR}=0"
        if hasattr(sys, "getandroidapilevel"):
            # Android's seccomp policy kills the process (SIGSYS) on io_uring syscalls.
            return "Android: io_uring is blocked by seccomp"
        if (machine := validated_architecture()) is not None:
            return f"architecture {machine} not validated for the io_uring ring"
        if use is None and self._ring_factory is Ring:
            return _cached_setup_failure
        return None

    def _fall_back(self, reason: str) -> None:
        if self._use_uring:
            raise UnsupportedPlatformError(f"io_uring requested but unavailable: {reason}")
        self.fallback_reason = reason

    @property
    def engine(self) -> str:
        """``"io_uring"`` or ``"threads"`` (what was chosen; unchanged by ``close()``)."""
        return self._engine_name

    # --- the fork guard -----------------------------------------------------------------------

    def _check_fork(self) -> None:
        """The one fork guard: every entry point calls it first."""
        if self._pid != forks.pid:
            self._after_fork()

    def _after_fork(self) -> None:
        # Forked child: everything we hold describes the parent's ring and threads. Drop our
        # copies and start over. The parent's ops are forgotten (see the module docstring);
        # _seq keeps counting so that their user_data never collides with a new op's.
        held = self._pool.forget()
        if self._ring is not None:
            held += self._ring.forget()
        for op in held:
            if op.cancel_requested:
                # Its abort already ran, so nothing else would ever end its wait.
                self._completions.complete(op, None, LATER, cancelled=True)
            else:
                self._forgotten.add(op)
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

    def _refuse(self, op: Op) -> None:
        if self._closed:
            raise ClosedResourceError("the file engine is closed")
        if op.user_data:
            raise RuntimeError(f"{op!r} was already submitted; an Op runs once")

    def submit(self, op: Op, on_complete: Callable[[Op], None]) -> None:
        """Start ``op``; ``on_complete(op)`` runs later in the loop thread, exactly once."""
        self._check_fork()
        if self._closed or op.user_data:
            self._refuse(op)
        op._on_complete = on_complete
        self._seq = op.user_data = self._seq + 1
        ring = self._ring
        opcode = op.kind.opcode
        if ring is not None and opcode in ring.opcodes:
            ring.submit(op)
        elif opcode == NO_OPCODE:
            self._pool.submit(op, None)
        elif ring is None:
            self._pool.submit(op, self.fallback_reason)
        else:
            reason = self._op_reasons.get(opcode) or f"opcode unsupported: {_opname(opcode)}"
            self._pool.submit(op, reason)

    @property
    def splice_on_ring(self) -> bool:
        """Whether :meth:`submit_linked` can run SPLICE chains on the ring."""
        ring = self._ring
        return ring is not None and ring.splice and self._pid == forks.pid

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
        self._check_fork()
        if self._closed:
            raise ClosedResourceError("the file engine is closed")
        ring = self._ring
        if ring is None or not ops:
            return False
        for op in ops:
            self._refuse(op)
        entries = ring.chain_entries(ops, self._seq)
        if entries is None or not ring.submit_linked(ops, entries):
            return False
        for op in ops:
            op._on_complete = on_complete
        self._seq = entries[-1][6]
        return True

    def flush(self) -> None:
        """Submit every prepared SQE with one ``io_uring_enter`` (the loop calls this once
        per turn, before it sleeps)."""
        # The guard matters here too for a threads-only engine: a cancel its child's tasks
        # asked for before the fork is delivered only once the engine notices the fork.
        self._check_fork()
        if self._ring is not None:
            self._ring.flush()

    def reap(self) -> None:
        """Deliver every finished ring op (loop thread; call when the ring fd is readable)."""
        self._check_fork()
        if self._ring is not None:
            self._ring.reap()

    def _on_rerun_result(self, op: Op) -> None:
        # The ring said EOPNOTSUPP/EINVAL and the pool reran the op. Same errno from os.* too:
        # bad arguments, the ring is fine. Otherwise the ring can't do this op here: stop
        # sending it there.
        error = op.error
        if not (isinstance(error, OSError) and error.errno == op._ring_errno):
            if self._ring is not None:
                self._ring.opcodes.discard(op.kind.opcode)
            self._op_reasons[op.kind.opcode] = f"opcode unsupported: {op.name}"

    # --- cancellation -------------------------------------------------------------------------

    def cancel(self, op: Op) -> None:
        """Ask for ``op`` to be cancelled. Its completion still arrives through
        ``on_complete``: ``op.cancelled`` if it was, or its real result if it had already
        happened or could not be stopped."""
        self._check_fork()
        asked = op.cancel_requested
        op.cancel_requested = True
        holder = op._owner
        if holder is not None and not asked:
            holder.cancel(op)

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
        self._completions.closed = True
        self._check_fork()  # drops the parent's ring without touching it; no new one
        self._forgotten.cancel_all()
        self._pool.cancel_unstarted()
        ring = self._ring
        if ring is not None:
            try:
                ring.drain(timeout)
            finally:
                self._closed_ring_ops += ring.ops_run
                self._enter_calls += ring.ring.enter_calls
                self._sqes_submitted += ring.ring.sqes_submitted
                self._ring = None
                self.ring_fd = None
        if self._pipes is not None:  # after the drain: no splice uses them any more
            self._pipes.close()
        self._completions.deliver_deferred()

    # --- statistics ---------------------------------------------------------------------------

    def statistics(self) -> IOStatistics:
        self._check_fork()  # a forked child's numbers, not the parent's
        ring = self._ring
        enter_calls = self._enter_calls
        sqes = self._sqes_submitted
        ring_ops = self._closed_ring_ops
        supported: tuple[str, ...] = ()
        if ring is not None:
            enter_calls += ring.ring.enter_calls
            sqes += ring.ring.sqes_submitted
            ring_ops += ring.ops_run
            supported = tuple(
                sorted(
                    name
                    for code, name in abi.OPCODE_NAMES.items()
                    if code in ring.opcodes or (code == abi.OP_SPLICE and ring.splice)
                )
            )
        pool = self._pool
        return IOStatistics(
            engine=self.engine,
            fallback_reason=self.fallback_reason,
            supported_opcodes=supported,
            ops_by_engine={
                ENGINE_URING: ring_ops,
                ENGINE_THREADS: pool.ops_run,
                ENGINE_INLINE: self._inline.served,
            },
            inline_misses=self._inline.misses,
            inline_sendfiles=self.page_cache.served,
            inline_sendfile_misses=self.page_cache.misses,
            fallbacks_by_reason=dict(pool.fallbacks),
            submit_syscalls=enter_calls,
            ops_submitted=sqes,
            ops_in_flight=self.in_flight,
            peak_worker_threads=pool.peak,
            ring_entries=ring.ring.sq_entries if ring is not None else 0,
            features=ring.ring.features if ring is not None else 0,
        )

    def in_flight_by_engine(self) -> dict[str, int]:
        """Ops in flight on each engine right now (introspection)."""
        ring = self._ring
        return {
            ENGINE_URING: ring.in_flight if ring is not None else 0,
            ENGINE_THREADS: self._pool.in_flight,
        }

    @property
    def ring_depth(self) -> int:
        """Requests on the ring (submitted or prepared, CQE not reaped yet)."""
        ring = self._ring
        return ring.ring.in_flight if ring is not None else 0

    def describe(self, op: Op) -> tuple[str, str]:
        """``(engine, where)`` of a submitted op, for introspection."""
        holder = op._owner
        if isinstance(holder, (RingEngine, PoolEngine)):
            return (holder.name, holder.where(op))
        return (ENGINE_THREADS, "completing")

    @property
    def ring_busy(self) -> bool:
        """Whether the ring has SQEs to submit or ops whose CQEs are still to come (cheap)."""
        ring = self._ring
        return ring is not None and ring.busy

    @property
    def in_flight(self) -> int:
        """Submitted ops whose completion hasn't been delivered yet (both engines)."""
        ring = self._ring
        return (
            (ring.in_flight if ring is not None else 0)
            + self._pool.in_flight
            + len(self._completions.deferred)
        )

    def __repr__(self) -> str:
        ring = self._ring
        in_ring = ring.in_flight if ring is not None else 0
        return f"<FileEngine {self.engine} fd={self.ring_fd} in_flight={in_ring}>"
