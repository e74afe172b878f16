"""``RingEngine``: runs ops as SQEs on one io_uring :class:`~.uring.ring.Ring`.

It owns everything about the ring's side of an op's life: preparing its SQE (through the
op's :class:`~.kinds.Kind`), the ring's backlog (requests waiting in Python for room in the
CQ), submitting, reaping, the completion-port cancellation, and draining at close.

Cancellation only *asks*: an op still in the backlog never reached the kernel and completes
as cancelled; an op in the kernel gets an ``IORING_OP_ASYNC_CANCEL`` for its user_data and its
own CQE still arrives. ``-ECANCELED`` (or ``-EINTR`` after our request) -> ``op.cancelled``;
any other result means the operation happened and is delivered as such. An ``openat`` that
wins that race delivers its fd: the caller owns it and must close it if its task was
cancelled meanwhile, e.g. by calling ``op.discard()`` -- tokio leaked exactly these fds
(#7979).

Buffers stay referenced by the op until its own CQE has been reaped; a cancel's CQE is not
enough, because the kernel may still be writing.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Sequence
from typing import Final

from .completion import ENGINE_URING, LATER, NOW, Completions
from .kinds import Sqe
from .ops import Op
from .uring import abi
from .uring.ring import Ring

__all__ = ["RingEngine", "errname"]

_ECANCELED: Final = -errno.ECANCELED
_EINTR: Final = -errno.EINTR
# An io-wq worker interrupted by our cancel request can report the kernel-internal
# "restart" codes instead of -EINTR: a FIFO open blocked waiting for its peer completes
# with -ERESTARTSYS (-512), measured on 6.18. They all mean "interrupted".
_ERESTART_CODES: Final = frozenset({-512, -513, -514, -516})
_RERUN_ERRNOS: Final = frozenset({errno.EOPNOTSUPP, errno.EINVAL})

#: ``Ring.prep_linked`` entries: ``(opcode, fd, off, addr, len, op_flags, user_data, fd_in)``.
ChainEntry = tuple[int, int, int, int, int, int, int, int]

# Ops whose CQE never came during close()'s bounded drain. The kernel may still write into
# their buffers, so they are kept alive for the life of the process.
_undrained_ops: list[Op] = []


def errname(err: int | None) -> str:
    """The errno's name as the kernel and io_uring docs spell it."""
    # errno.errorcode maps 95 to its alias ENOTSUP; the kernel and io_uring docs say EOPNOTSUPP.
    if err == errno.EOPNOTSUPP:
        return "EOPNOTSUPP"
    return errno.errorcode.get(err or 0, str(err))


class RingEngine:
    """The io_uring engine of one :class:`~.engine.FileEngine`.

    ``opcodes``: the opcodes routed here (the file engine's route table; it removes one the
    ring turns out not to support). ``splice``: whether SPLICE may run in linked chains.
    ``to_pool(op, reason)`` reruns an op the ring could not take on the worker pool.
    """

    name = ENGINE_URING

    def __init__(
        self,
        ring: Ring,
        opcodes: set[int],
        completions: Completions,
        to_pool: Callable[[Op, str], None],
        *,
        splice: bool,
        cancel_any: bool,
    ) -> None:
        self.ring = ring
        self.opcodes = opcodes
        self.splice = splice
        self._cancel_any = cancel_any  # one ASYNC_CANCEL_ANY cancels all (Linux 5.19+)
        self._completions = completions
        self._to_pool = to_pool
        self._inflight: dict[int, Op] = {}  # by user_data: prepared, submitted or backlogged
        #: Statistics: ops run here.
        self.ops_run = 0

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    @property
    def busy(self) -> bool:
        """SQEs to submit or ops whose CQEs are still to come (cheap)."""
        return bool(self._inflight or self.ring.sq_pending)

    # --- submission ---------------------------------------------------------------------------

    def submit(self, op: Op) -> None:
        kind = op.kind
        fd, off, addr, length, op_flags, _ = kind.sqe(op)  # type: ignore[misc]
        # prep() first: if a field doesn't fit the SQE it raises with nothing recorded.
        self.ring.prep(kind.opcode, fd, off, addr, length, op_flags, op.user_data)
        op._owner = self
        self._inflight[op.user_data] = op
        self.ops_run += 1

    def chain_entries(self, ops: Sequence[Op], seq: int) -> list[ChainEntry] | None:
        """The SQE entries of a linked chain, numbered from ``seq + 1``; None if an op of
        it can't run here."""
        opcodes = self.opcodes
        entries: list[ChainEntry] = []
        for op in ops:
            kind = op.kind
            opcode = kind.opcode
            if not (opcode in opcodes or (opcode == abi.OP_SPLICE and self.splice)):
                return None
            sqe: Sqe = kind.sqe(op)  # type: ignore[misc]
            seq += 1
            fd, off, addr, length, op_flags, fd_in = sqe
            entries.append((opcode, fd, off, addr, length, op_flags, seq, fd_in))
        return entries

    def submit_linked(self, ops: Sequence[Op], entries: list[ChainEntry]) -> bool:
        """Prepare ``ops`` (their ``chain_entries``) as one link chain; False if the ring
        can't take the whole chain now (nothing was prepared)."""
        if not self.ring.prep_linked(entries):
            return False
        inflight = self._inflight
        for op, entry in zip(ops, entries, strict=True):
            op.user_data = entry[6]
            op._owner = self
            inflight[entry[6]] = op
        self.ops_run += len(ops)
        return True

    def flush(self) -> None:
        """Submit every prepared SQE with one ``io_uring_enter``."""
        ring = self.ring
        if not ring.sq_pending:
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
        ring = self.ring
        reason = f"io_uring_enter failed: {errname(exc.errno)}"
        recancel = False
        for ud in ring.take_unsubmitted():
            if not ud:
                recancel = True
                continue
            op = self._inflight.pop(ud, None)
            if op is None:
                continue
            if op.cancel_requested:  # never reached the kernel: nothing to wait for
                self._completions.complete(op, ENGINE_URING, LATER, cancelled=True)
            else:
                self._to_pool(op, reason)
        if recancel:
            for ud, op in self._inflight.items():
                if op.cancel_requested:
                    ring.prep_cancel(ud)

    # --- completion ---------------------------------------------------------------------------

    def reap(self) -> None:
        """Deliver every finished op (loop thread; when the ring fd is readable)."""
        cqes = self.ring.reap()
        if not cqes:
            return
        inflight = self._inflight
        complete = self._completions.complete
        first_error: BaseException | None = None
        for ud, res, _flags in cqes:
            if not ud:  # our own cancel requests: their targets' CQEs carry the outcome
                continue
            op = inflight.pop(ud, None)
            if op is None:
                continue
            if res >= 0:  # the common case, inline: see _record
                convert = op.kind.convert
                if convert is None:
                    op.result = res
                else:
                    try:
                        op.result = convert(op, res)
                    except BaseException as exc:
                        op.error = exc
            elif not self._record_failure(op, res, rerun=True):
                continue
            try:
                complete(op, ENGINE_URING, NOW)
            except BaseException as exc:  # keep delivering the rest: they are off the CQ
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error

    def _record(self, op: Op, res: int) -> None:
        if res >= 0:
            try:
                op.result = op.convert(res)
            except BaseException as exc:  # a converter bug must not lose the completion
                op.error = exc
        else:
            self._record_failure(op, res, rerun=False)

    def _record_failure(self, op: Op, res: int, *, rerun: bool) -> bool:
        """Record a negative ring result on ``op``. False if it was handed to the pool
        instead (``rerun``: an EOPNOTSUPP/EINVAL may mean the ring can't do this op)."""
        if res in _ERESTART_CODES:
            if op.cancel_requested:
                op.cancelled = True
            else:
                op.error = op.make_error(errno.EINTR)
        elif res == _ECANCELED or (res == _EINTR and op.cancel_requested):
            op.cancelled = True
        elif -res in _RERUN_ERRNOS and rerun and not op.cancel_requested:
            op._ring_errno = -res
            op.release()  # the kernel is done with it; blocking() has its own buffers
            self._to_pool(op, f"ring returned {errname(-res)}: {op.name}")
            return False
        else:
            op.error = op.make_error(-res)
        return True

    # --- cancellation -------------------------------------------------------------------------

    def cancel(self, op: Op) -> None:
        ring = self.ring
        ud = op.user_data
        if ring.backlog and ring.remove_backlog(ud):
            # Never reached the kernel.
            del self._inflight[ud]
            self._completions.complete(op, ENGINE_URING, LATER, cancelled=True)
        elif abi.OP_ASYNC_CANCEL in ring.supported_ops:
            # Its CQE (0 / -ENOENT / -EALREADY) is ignored: the target's own CQE tells.
            ring.prep_cancel(ud)

    # --- teardown -----------------------------------------------------------------------------

    def forget(self) -> list[Op]:
        """In a forked child: drop this process's view of the parent's ring without any
        syscall on it (munmap + close touch only this process) and return the parent's ops
        that were in flight on it (none of them will complete in this process)."""
        self.ring.close()
        held = list(self._inflight.values())
        self._inflight.clear()
        return held

    def drain(self, timeout: float) -> None:
        """Cancel every op in flight and wait up to ``timeout`` seconds for their CQEs (they
        complete ``LATER``), then close the ring. Ops still running after that (uncancellable
        disk I/O on a hung device) are never delivered; they stay referenced for the life of
        the process because the kernel may still write into their buffers."""
        ring = self.ring
        try:
            if self._inflight or ring.in_flight:
                self._drain(ring, timeout)
        finally:
            ring.close()

    def _drain(self, ring: Ring, timeout: float) -> None:
        inflight = self._inflight
        complete = self._completions.complete
        for ud in list(inflight):
            if ring.backlog and ring.remove_backlog(ud):
                op = inflight.pop(ud)
                op.cancel_requested = True
                complete(op, ENGINE_URING, LATER, cancelled=True)
        if inflight and abi.OP_ASYNC_CANCEL in ring.supported_ops:
            if self._cancel_any:
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
                    drained = inflight.pop(ud, None) if ud else None
                    if drained is not None:
                        self._record(drained, res)
                        complete(drained, ENGINE_URING, LATER)
                if not ring.in_flight:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                ring.wait_readable(min(remaining, 0.1))
        except OSError:
            pass  # can't submit or reap any more: treat what's left as undrained
        # Timed out: keep what the kernel may still write into alive forever. Nothing can
        # cancel them any more (the ring is closing).
        for op in inflight.values():
            op._owner = None
        _undrained_ops.extend(inflight.values())
        inflight.clear()

    def __del__(self) -> None:
        # Dropped without drain() (a crash path): release the ring fd quietly, and keep any
        # op the kernel may still write into alive for good. Never in a forked child's copy:
        # there only our own mappings go, which the mmap objects do by themselves.
        ring = getattr(self, "ring", None)
        if ring is None or ring.closed or ring.pid != os.getpid():
            return
        try:
            _undrained_ops.extend(self._inflight.values())
            ring.close()
        except Exception:
            pass

    def where(self, op: Op) -> str:
        """Where ``op`` is, for introspection."""
        return "in the ring"
