"""``Ring``: one io_uring instance in pure Python (ctypes ``syscall`` + ``mmap``, stdlib only).

The ring is a mechanism, not a policy: it prepares SQEs, submits them with one
``io_uring_enter`` and hands back CQEs as ``(user_data, res, flags)`` tuples. What an op *is*,
which engine runs it and what its result means is ``engine.py``'s business.

How it is used (see docs/design.rst, "The loop"):

1. ``prep()`` writes SQEs into the shared SQ array; nothing reaches the kernel yet.
2. ``submit()`` publishes the SQ tail and makes one ``io_uring_enter(to_submit, 0, 0)`` for the
   whole batch, without ``GETEVENTS``: the loop never sleeps here.
3. The loop sleeps in ``epoll_wait``; the ring fd is readable while the CQ is non-empty.
4. ``reap()`` copies out every available CQE and publishes the new CQ head.

Setup flags: ``SUBMIT_ALL|COOP_TASKRUN|TASKRUN_FLAG|SINGLE_ISSUER``, dropping flags on EINVAL
for older kernels. Never ``SQPOLL`` (a kernel thread per ring burning CPU: libuv's worst
io_uring trouble) and never ``DEFER_TASKRUN`` (its completions are posted only inside our own
``io_uring_enter``, so the ring fd never wakes epoll: measured on 6.18). With
``COOP_TASKRUN`` the kernel doesn't interrupt us to post completions; with ``TASKRUN_FLAG`` it
tells us in ``sq_flags`` that some are waiting, and ``reap()`` enters with ``GETEVENTS``.
``SINGLE_ISSUER`` makes a ring used from another thread (or a forked child) fail with
``EEXIST`` instead of corrupting the shared indices: the ring belongs to the thread that made it.

Memory ordering. The kernel writes a CQE, then ``smp_store_release(cq.tail)``; we must
load-acquire ``cq.tail`` before reading CQEs, and store-release ``cq.head`` after copying them
out. On x86-64 (TSO) loads are never reordered with loads nor stores with stores, and every
``memoryview`` item access / ``unpack_from`` is an opaque C call (a compiler barrier), so plain
accesses in program order are correct. The SQ side needs nothing on any architecture: without
SQPOLL the kernel reads SQEs only inside our own ``io_uring_enter`` (liburing uses a plain
store there too). A weakly ordered CPU (aarch64, ppc64) would need real acquire/release on the
CQ side, which Python can't express: either ``DEFER_TASKRUN`` (CQEs posted in our own syscall,
so same-thread program order) plus a registered eventfd for epoll, or a fence via a ctypes
mutex unlock/lock pair. Until one of those is written and validated, ``Ring`` refuses to run
on anything but x86_64 (the engine then uses threads, with the reason in its statistics).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import select
from collections import deque
from collections.abc import Sequence
from typing import Final

from .. import forks
from . import abi

__all__ = [
    "DEFAULT_SETUP_FLAGS",
    "MMAP_STEP",
    "PROBE_STEP",
    "SETUP_STEP",
    "Ring",
    "UnsupportedPlatformError",
    "failed_step",
    "validated_architecture",
]

_U32: Final = 0xFFFFFFFF

# Tried in order; EINVAL moves on to the next (an older kernel rejects flags it doesn't know).
DEFAULT_SETUP_FLAGS: Final[tuple[int, ...]] = (
    abi.SETUP_SUBMIT_ALL
    | abi.SETUP_COOP_TASKRUN
    | abi.SETUP_TASKRUN_FLAG
    | abi.SETUP_SINGLE_ISSUER,
    abi.SETUP_SUBMIT_ALL | abi.SETUP_COOP_TASKRUN | abi.SETUP_TASKRUN_FLAG,  # 5.19
    abi.SETUP_SUBMIT_ALL,  # 5.18
    0,
)

# sq_flags bits that mean "enter with GETEVENTS or completions stay invisible".
_NEEDS_GETEVENTS: Final = abi.SQ_CQ_OVERFLOW | abi.SQ_TASKRUN

# A request waiting in the backlog: (opcode, fd, off, addr, len, op_flags, user_data, sqe_flags).
_Entry = tuple[int, int, int, int, int, int, int, int]

_VALIDATED_MACHINES: Final = frozenset({"x86_64"})


class UnsupportedPlatformError(RuntimeError):
    """The pure-Python ring has not been validated on this CPU architecture."""


#: The steps of setting up a ring, as :attr:`RingSetupError.step` names them.
SETUP_STEP: Final = "io_uring_setup"
MMAP_STEP: Final = "io_uring mmap"
PROBE_STEP: Final = "io_uring probe"


_STEP_ATTR: Final = "_nursery_io_ring_step"


def failed_step(exc: OSError) -> str:
    """Which step of ``Ring()`` raised ``exc``: ``SETUP_STEP``, ``MMAP_STEP`` or ``PROBE_STEP``.

    It matters because only a refused ``io_uring_setup`` says something lasting about the
    process. The exception keeps its own type (``PermissionError``, ...) and message."""
    step = getattr(exc, _STEP_ATTR, SETUP_STEP)
    return step if isinstance(step, str) else SETUP_STEP


def validated_architecture() -> str | None:
    """None if the ring may run here, else the name of the unvalidated architecture."""
    machine = os.uname().machine
    return None if machine in _VALIDATED_MACHINES else machine


# --- raw syscalls -----------------------------------------------------------------------------
#
# libc's variadic syscall(), with fixed argtypes per call shape so that 64-bit pointers are
# passed whole (ctypes would otherwise convert Python ints to C int). On x86-64 SysV a
# variadic callee reads integer arguments from the same registers as a fixed one. CDLL
# releases the GIL around the call.

_libc = ctypes.CDLL(None, use_errno=True)

_sys_setup = _libc["syscall"]
_sys_setup.argtypes = (ctypes.c_long, ctypes.c_uint, ctypes.c_void_p)
_sys_setup.restype = ctypes.c_long

_sys_enter = _libc["syscall"]
_sys_enter.argtypes = (
    ctypes.c_long,
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_uint,
    ctypes.c_uint,
    ctypes.c_void_p,
    ctypes.c_size_t,
)
_sys_enter.restype = ctypes.c_long

_sys_register = _libc["syscall"]
_sys_register.argtypes = (
    ctypes.c_long,
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_void_p,
    ctypes.c_uint,
)
_sys_register.restype = ctypes.c_long

_get_errno = ctypes.get_errno


def _os_error(err: int, what: str) -> OSError:
    return OSError(err, f"{what}: {os.strerror(err)}")


def io_uring_setup(entries: int, params: bytearray) -> int:
    """Raw ``io_uring_setup``; ``params`` is a 120-byte ``struct io_uring_params`` (in/out)."""
    cparams = (ctypes.c_char * len(params)).from_buffer(params)
    fd = _sys_setup(abi.NR_IO_URING_SETUP, entries, ctypes.addressof(cparams))
    del cparams
    if fd < 0:
        raise _os_error(_get_errno(), "io_uring_setup")
    return int(fd)


def io_uring_enter(fd: int, to_submit: int, min_complete: int, flags: int) -> int:
    """Raw ``io_uring_enter`` without an argument block. Retries EINTR; raises OSError."""
    while True:
        n = _sys_enter(abi.NR_IO_URING_ENTER, fd, to_submit, min_complete, flags, None, 0)
        if n >= 0:
            return int(n)
        err = _get_errno()
        if err == errno.EEXIST:
            raise OSError(
                err,
                "io_uring_enter: the ring was used from a thread other than the one that"
                " created it (SINGLE_ISSUER); each thread needs its own ring",
            )
        if err != errno.EINTR:  # a ctypes call is not retried by PEP 475
            raise _os_error(err, "io_uring_enter")


def io_uring_register(fd: int, opcode: int, arg: int | None, nr_args: int) -> int:
    """Raw ``io_uring_register``; ``arg`` is an address (or None)."""
    while True:
        n = _sys_register(abi.NR_IO_URING_REGISTER, fd, opcode, arg, nr_args)
        if n >= 0:
            return int(n)
        err = _get_errno()
        if err != errno.EINTR:
            raise _os_error(err, "io_uring_register")


class Ring:
    """One io_uring instance: SQ/CQ/SQE mappings, probe, prep, submit, reap.

    Only the thread that created the ring may ``submit()``/``reap()`` (``SINGLE_ISSUER``), and
    a forked child must never touch it: ``prep()``/``submit()``/``reap()`` raise there; ``close()``
    only drops the child's mappings and fd (the parent's ring is unaffected).

    At most ``cq_entries`` requests are in flight (submitted or prepared, CQE not yet
    reaped), so the CQ can never overflow; further ``prep()`` calls queue in a Python deque
    and enter the SQ as completions are reaped. Multishot requests are not supported: every
    CQE ends its request.
    """

    __slots__ = (
        "_backlog",
        "_cq_head",
        "_cq_head_i",
        "_cq_mask",
        "_cq_mm",
        "_cq_tail_i",
        "_cq_u32",
        "_cqes",
        "_sq_flags_i",
        "_sq_head",
        "_sq_head_i",
        "_sq_mask",
        "_sq_mm",
        "_sq_tail",
        "_sq_tail_i",
        "_sq_u32",
        "_sqe_mm",
        "_sqes",
        "closed",
        "cq_entries",
        "enter_calls",
        "fd",
        "features",
        "flags",
        "in_flight",
        "last_op",
        "max_in_flight",
        "pid",
        "sq_entries",
        "sqes_submitted",
        "supported_ops",
    )

    def __init__(self, entries: int = 256, *, flags: int | None = None) -> None:
        machine = validated_architecture()
        if machine is not None:
            raise UnsupportedPlatformError(
                f"the pure-Python io_uring ring is not validated on {machine} (memory ordering"
                " of the shared rings); only x86_64 is supported for now"
            )
        self.closed = True  # until fully set up, so close() and __del__ are no-ops
        candidates = DEFAULT_SETUP_FLAGS if flags is None else (flags,)
        params = bytearray(abi.PARAMS_SIZE)
        fd = -1
        for candidate in candidates:
            params[:] = bytes(abi.PARAMS_SIZE)
            abi.PARAMS.pack_into(params, 0, *_params_fields(candidate))
            try:
                fd = io_uring_setup(entries, params)
            except OSError as exc:
                if exc.errno == errno.EINVAL and candidate != candidates[-1]:
                    continue
                raise
            self.flags = candidate
            break
        p = abi.PARAMS.unpack(params)
        self.fd = fd
        self.pid = forks.pid
        self.sq_entries: int = p[abi.P_SQ_ENTRIES]
        self.cq_entries: int = p[abi.P_CQ_ENTRIES]
        self.features: int = p[abi.P_FEATURES]
        (sq_head, sq_tail, sq_mask, _sq_n, sq_flags, _sq_dropped, sq_array) = p[
            abi.P_SQ_OFF : abi.P_SQ_OFF + 7
        ]
        (cq_head, cq_tail, cq_mask, _cq_n, _cq_overflow, cq_cqes) = p[
            abi.P_CQ_OFF : abi.P_CQ_OFF + 6
        ]
        try:
            sq_size = sq_array + self.sq_entries * 4
            cq_size = cq_cqes + self.cq_entries * abi.CQE_SIZE
            prot = mmap.PROT_READ | mmap.PROT_WRITE
            # MAP_POPULATE: fault the pages in now rather than on the first op.
            mflags = mmap.MAP_SHARED | mmap.MAP_POPULATE
            # No MADV_DONTFORK: a forked child then keeps a harmless private view of the
            # mapping, and munmap/GC in the child can never hit whatever got mapped at
            # that address later (it would, if the range were absent in the child).
            if self.features & abi.FEAT_SINGLE_MMAP:
                # 5.4+: SQ and CQ rings share one mapping.
                size = max(sq_size, cq_size)
                self._sq_mm = self._cq_mm = mmap.mmap(
                    fd, size, mflags, prot, offset=abi.OFF_SQ_RING
                )
            else:
                self._sq_mm = mmap.mmap(fd, sq_size, mflags, prot, offset=abi.OFF_SQ_RING)
                self._cq_mm = mmap.mmap(fd, cq_size, mflags, prot, offset=abi.OFF_CQ_RING)
            self._sqe_mm = mmap.mmap(
                fd, self.sq_entries * abi.SQE_SIZE, mflags, prot, offset=abi.OFF_SQES
            )
        except BaseException as exc:
            for name in ("_sqe_mm", "_cq_mm", "_sq_mm"):
                mm = getattr(self, name, None)
                if mm is not None:
                    mm.close()
            os.close(fd)
            if isinstance(exc, OSError):
                setattr(exc, _STEP_ATTR, MMAP_STEP)
            raise
        # u32 views for the shared indices (4-byte aligned loads/stores are single
        # instructions: atomic on x86).
        self._sq_u32 = memoryview(self._sq_mm).cast("I")
        self._cq_u32 = memoryview(self._cq_mm).cast("I")
        self._cqes = memoryview(self._cq_mm)[cq_cqes : cq_cqes + self.cq_entries * abi.CQE_SIZE]
        self._sqes = memoryview(self._sqe_mm)
        self._sq_head_i = sq_head // 4
        self._sq_tail_i = sq_tail // 4
        self._sq_flags_i = sq_flags // 4
        self._cq_head_i = cq_head // 4
        self._cq_tail_i = cq_tail // 4
        self._sq_mask: int = self._sq_u32[sq_mask // 4]
        self._cq_mask: int = self._cq_u32[cq_mask // 4]
        # The SQ index array indirection is filled once with the identity, so slot i of the
        # SQE array is always submitted at SQ position i and prep() never writes the array.
        array_i = sq_array // 4
        for i in range(self.sq_entries):
            self._sq_u32[array_i + i] = i
        self._sq_head: int = self._sq_u32[self._sq_head_i]
        self._sq_tail: int = self._sq_head  # local; published to the kernel by submit()
        self._cq_head: int = self._cq_u32[self._cq_head_i]
        self._backlog: deque[_Entry] = deque()
        self.in_flight = 0
        # The CQ size: with at most this many requests outstanding the CQ can't overflow.
        self.max_in_flight = self.cq_entries
        self.enter_calls = 0
        self.sqes_submitted = 0
        self.closed = False
        self.last_op = -1
        self.supported_ops: frozenset[int] = frozenset()
        try:
            self.supported_ops = self._probe()
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: pre-5.6 kernel without the probe
                self.close()
                setattr(exc, _STEP_ATTR, PROBE_STEP)
                raise

    # --- probe --------------------------------------------------------------------------------

    def _probe(self) -> frozenset[int]:
        buf = bytearray(abi.PROBE_SIZE)  # must be zeroed: the kernel rejects a dirty probe
        cbuf = (ctypes.c_char * len(buf)).from_buffer(buf)
        try:
            io_uring_register(
                self.fd, abi.REGISTER_PROBE, ctypes.addressof(cbuf), abi.PROBE_OPS_MAX
            )
        finally:
            del cbuf
        last_op, ops_len, _, _, _, _ = abi.PROBE_HEADER.unpack_from(buf)
        self.last_op = last_op
        supported = set()
        for i in range(ops_len):
            op, _, op_flags, _ = abi.PROBE_OP.unpack_from(
                buf, abi.PROBE_HEADER.size + i * abi.PROBE_OP.size
            )
            if op_flags & abi.IO_URING_OP_SUPPORTED:
                supported.add(op)
        return frozenset(supported)

    # --- submission ---------------------------------------------------------------------------

    @property
    def sq_pending(self) -> int:
        """SQEs prepared but not yet consumed by the kernel."""
        return (self._sq_tail - self._sq_head) & _U32

    @property
    def backlog(self) -> int:
        """Requests waiting in Python for room in the CQ."""
        return len(self._backlog)

    def prep(
        self,
        opcode: int,
        fd: int,
        off: int,
        addr: int,
        length: int,
        op_flags: int,
        user_data: int,
        sqe_flags: int = 0,
    ) -> None:
        """Prepare one SQE (all 64 bytes). ``off`` and ``addr`` are u64 (mask -1 yourself).

        If ``cq_entries`` requests are already in flight it queues instead (FIFO: nothing
        overtakes the queue, so a cancel is never submitted before its target); if the SQ is
        full it submits first (one extra ``io_uring_enter``).
        """
        tail = self._sq_tail
        if (
            self._backlog
            or self.in_flight >= self.max_in_flight
            or (tail - self._sq_head) & _U32 >= self.sq_entries
            or self.pid != forks.pid
        ):
            self._prep_slow((opcode, fd, off, addr, length, op_flags, user_data, sqe_flags))
            return
        # buf_index, personality, file_index, addr3 and pad are zero for every op we use.
        # fmt: off
        abi.SQE.pack_into(
            self._sqes, (tail & self._sq_mask) << 6,
            opcode, sqe_flags, 0, fd, off, addr, length, op_flags, user_data, 0, 0, 0, 0, 0,
        )
        # fmt: on
        self._sq_tail = tail + 1
        self.in_flight += 1

    def _prep_slow(self, entry: _Entry) -> None:
        if self.pid != forks.pid:
            # The SQE array is shared with the parent: writing a slot here could corrupt
            # an SQE the parent is preparing.
            raise RuntimeError("this io_uring ring belongs to the parent process (fork)")
        if self._backlog or self.in_flight >= self.max_in_flight or not self._put(entry):
            # Check the fields now: a struct.error later, inside reap(), would lose CQEs.
            opcode, fd, off, addr, length, op_flags, user_data, sqe_flags = entry
            abi.SQE.pack(opcode, sqe_flags, 0, fd, off, addr, length, op_flags, user_data,
                         0, 0, 0, 0, 0)  # fmt: skip
            self._backlog.append(entry)

    def _put(self, entry: _Entry) -> bool:
        opcode, fd, off, addr, length, op_flags, user_data, sqe_flags = entry
        tail = self._sq_tail
        if (tail - self._sq_head) & _U32 >= self.sq_entries:
            # The SQ is full of prepared SQEs: submit them now. An error is left for the
            # caller's next submit() to raise.
            try:
                self.submit()
            except OSError:
                return False
            tail = self._sq_tail
            if (tail - self._sq_head) & _U32 >= self.sq_entries:
                return False
        # buf_index, personality, file_index, addr3 and pad are zero for every op we use.
        # fmt: off
        abi.SQE.pack_into(
            self._sqes, (tail & self._sq_mask) << 6,
            opcode, sqe_flags, 0, fd, off, addr, length, op_flags, user_data, 0, 0, 0, 0, 0,
        )
        # fmt: on
        self._sq_tail = tail + 1
        self.in_flight += 1
        return True

    def prep_linked(self, entries: Sequence[tuple[int, int, int, int, int, int, int, int]]) -> bool:
        """Prepare a chain of SQEs linked with ``IOSQE_IO_LINK``; False if it can't be done now.

        Each entry is ``(opcode, fd, off, addr, length, op_flags, user_data, fd_in)``, where
        ``fd_in`` goes to ``splice_fd_in`` (byte 44; 0 for other ops). The kernel starts each
        SQE only after the one before it completed in full: an error or a short result
        (fewer bytes than ``length``) ends the chain, and the rest complete with
        ``-ECANCELED``.

        A chain must reach the kernel whole, in one SQ batch (a batch boundary would cut it),
        so it never goes to the backlog: with the in-flight cap reached, a backlog queued,
        or no SQ room even after submitting what is pending, nothing is prepared and the
        caller runs the ops one at a time instead.
        """
        n = len(entries)
        if (
            not n
            or self._backlog
            or self.in_flight + n > self.max_in_flight
            or self.pid != forks.pid
        ):
            return False
        if ((self._sq_tail - self._sq_head) & _U32) + n > self.sq_entries:
            try:
                self.submit()
            except OSError:
                return False
            if ((self._sq_tail - self._sq_head) & _U32) + n > self.sq_entries:
                return False
        tail = self._sq_tail
        mask = self._sq_mask
        last = n - 1
        for i, (opcode, fd, off, addr, length, op_flags, user_data, fd_in) in enumerate(entries):
            # fmt: off
            abi.SQE.pack_into(
                self._sqes, ((tail + i) & mask) << 6,
                opcode, abi.IOSQE_IO_LINK if i < last else 0, 0, fd, off, addr, length,
                op_flags, user_data, 0, 0, fd_in, 0, 0,
            )
            # fmt: on
        self._sq_tail = tail + n
        self.in_flight += n
        return True

    def prep_cancel(self, target: int, cancel_flags: int = 0, user_data: int = 0) -> None:
        """Prepare an ``ASYNC_CANCEL`` of the request whose user_data is ``target``.

        A cancel skips the in-flight cap and the backlog: with the cap reached, the cancel
        would otherwise wait for a completion that only the cancel can bring. The extra CQEs
        can at worst overflow the CQ, which NODROP kernels keep and ``reap()`` flushes.
        Don't use it for a target still in the backlog (``remove_backlog()`` that instead).
        """
        if self.pid != forks.pid:
            raise RuntimeError("this io_uring ring belongs to the parent process (fork)")
        entry = (abi.OP_ASYNC_CANCEL, -1, 0, target, 0, cancel_flags, user_data, 0)
        if not self._put(entry):
            self._backlog.appendleft(entry)

    def _drain_backlog(self) -> None:
        backlog = self._backlog
        while backlog and self.in_flight < self.max_in_flight:
            if not self._put(backlog[0]):
                return
            backlog.popleft()

    def remove_backlog(self, user_data: int) -> bool:
        """Drop a request still waiting in the backlog (never seen by the kernel)."""
        for entry in self._backlog:
            if entry[6] == user_data:
                self._backlog.remove(entry)
                return True
        return False

    def submit(self) -> int:
        """Publish the SQ tail and ``io_uring_enter(to_submit, 0, 0)``. Returns SQEs consumed.

        EINTR is retried. Other errors raise ``OSError`` with the unconsumed SQEs still
        queued: ``EAGAIN`` (kernel out of memory for requests) and ``EBUSY`` (CQ backlog, not
        reachable while in-flight requests are capped at the CQ size) are worth a later
        retry; see :meth:`take_unsubmitted` to hand them elsewhere. ``EEXIST`` means a thread
        other than the creator used a ``SINGLE_ISSUER`` ring.
        """
        if self.pid != forks.pid:
            raise RuntimeError("this io_uring ring belongs to the parent process (fork)")
        pending = (self._sq_tail - self._sq_head) & _U32
        if not pending:
            return 0
        u32 = self._sq_u32
        u32[self._sq_tail_i] = self._sq_tail & _U32
        # Pending task work or overflow: fold the GETEVENTS into this syscall for free.
        flags = abi.ENTER_GETEVENTS if u32[self._sq_flags_i] & _NEEDS_GETEVENTS else 0
        consumed = 0
        try:
            while pending:
                self.enter_calls += 1
                n = io_uring_enter(self.fd, pending, 0, flags)
                if n == 0:
                    break
                consumed += n
                pending -= n
        finally:
            # The kernel's head is the truth about what it consumed, even after an error.
            self._sq_head = u32[self._sq_head_i]
            self.sqes_submitted += consumed
        return consumed

    def take_unsubmitted(self) -> list[int]:
        """Withdraw every request the kernel has not seen -- prepared SQEs it hasn't consumed,
        then the backlog -- and return their user_data in order.

        Safe because without SQPOLL the kernel reads the SQ only inside ``io_uring_enter``.
        """
        head = self._sq_head
        pending = (self._sq_tail - head) & _U32
        sqes = self._sqes
        mask = self._sq_mask
        out = []
        for i in range(pending):
            pos = ((head + i) & mask) * abi.SQE_SIZE + 32  # user_data is at byte 32
            out.append(int.from_bytes(sqes[pos : pos + 8], "little"))
        self._sq_tail -= pending
        self._sq_u32[self._sq_tail_i] = self._sq_tail & _U32
        self.in_flight -= pending
        out.extend(entry[6] for entry in self._backlog)
        self._backlog.clear()
        return out

    # --- completion ---------------------------------------------------------------------------

    def reap(self) -> list[tuple[int, int, int]]:
        """Return every available CQE as ``(user_data, res, flags)`` and free its CQ slot.

        With ``TASKRUN_FLAG`` the kernel may be holding completions as task work, and with
        NODROP overflowed CQEs wait on a kernel list; either way ``sq_flags`` says so and an
        ``io_uring_enter(GETEVENTS)`` (with ``min_complete`` 0: never blocks) posts them.
        """
        if self.pid != forks.pid:
            raise RuntimeError("this io_uring ring belongs to the parent process (fork)")
        cq_u32 = self._cq_u32
        sq_u32 = self._sq_u32
        out: list[tuple[int, int, int]] = []
        head = self._cq_head
        # A few rounds at most: posting overflowed CQEs needs free CQ slots, which the
        # previous round made. The flags are cleared by the kernel once it's done.
        for _ in range(4):
            tail = cq_u32[self._cq_tail_i]  # load-acquire (TSO: plain load)
            if tail != head:
                n = (tail - head) & _U32
                start = head & self._cq_mask
                end = start + n
                cqes = self._cqes
                if end <= self.cq_entries:
                    out += abi.CQE.iter_unpack(cqes[start << 4 : end << 4])
                else:  # wrapped around the end of the array
                    out += abi.CQE.iter_unpack(cqes[start << 4 :])
                    out += abi.CQE.iter_unpack(cqes[: (end - self.cq_entries) << 4])
                head = tail
                cq_u32[self._cq_head_i] = head  # store-release (TSO: plain store)
            if not sq_u32[self._sq_flags_i] & _NEEDS_GETEVENTS:
                break
            self.enter_calls += 1
            io_uring_enter(self.fd, 0, 0, abi.ENTER_GETEVENTS)
        self._cq_head = head
        if out:
            self.in_flight -= len(out)
            if self._backlog:
                self._drain_backlog()
        return out

    def cq_ready(self) -> int:
        """CQEs waiting in the CQ now (not counting task work / overflow not yet posted)."""
        return int(self._cq_u32[self._cq_tail_i] - self._cq_head) & _U32

    def wait_readable(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for the ring fd to become readable (CQ non-empty).

        For teardown and tests; the runtime waits in its epoll set instead.
        """
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        return bool(poller.poll(max(0, int(timeout * 1000))))

    # --- teardown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Unmap and close. The caller drains in-flight requests first (``engine.close()``).

        In a forked child this only drops the child's own mappings and fd: the parent's ring
        is a different reference to the same kernel object and is not affected.
        """
        if self.closed:
            return
        self.closed = True
        self._backlog.clear()
        for view in (self._sqes, self._cqes, self._cq_u32, self._sq_u32):
            view.release()
        self._sqe_mm.close()
        self._cq_mm.close()
        if self._sq_mm is not self._cq_mm:
            self._sq_mm.close()
        os.close(self.fd)

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"fd={self.fd}"
        return f"<Ring {state} sq={self.sq_entries} cq={self.cq_entries} flags={self.flags:#x}>"


def _params_fields(flags: int) -> tuple[int, ...]:
    # Everything zero except the flags word; the kernel fills in the rest.
    fields = [0] * 28
    fields[abi.P_FLAGS] = flags
    return tuple(fields)
