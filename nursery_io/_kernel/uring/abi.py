"""io_uring ABI: syscall numbers, flags, opcodes and struct layouts.

Everything here is a plain ``int`` or a precompiled :class:`struct.Struct` (no enums on the
hot path). Values come from ``include/uapi/linux/io_uring.h``; every one is checked against
the running kernel by ``tests/kernel/test_uring_abi.py``, because a wrong hand-written constant
fails silently (a shifted SQE flag or register opcode just does something else).
"""

from __future__ import annotations

import os
import struct
from typing import Final

# --- syscalls (x86_64; identical on aarch64 thanks to the unified table, alpha differs) -------

NR_IO_URING_SETUP: Final = 425
NR_IO_URING_ENTER: Final = 426
NR_IO_URING_REGISTER: Final = 427

# --- io_uring_setup() flags -------------------------------------------------------------------

SETUP_IOPOLL: Final = 1 << 0
SETUP_SQPOLL: Final = 1 << 1  # never used: libuv's trouble came from it
SETUP_CQSIZE: Final = 1 << 3
SETUP_CLAMP: Final = 1 << 4
SETUP_R_DISABLED: Final = 1 << 6  # 5.10
SETUP_SUBMIT_ALL: Final = 1 << 7  # 5.18: don't stop a batch at the first bad SQE
SETUP_COOP_TASKRUN: Final = 1 << 8  # 5.19
SETUP_TASKRUN_FLAG: Final = 1 << 9  # 5.19: needs COOP_TASKRUN or DEFER_TASKRUN
SETUP_SINGLE_ISSUER: Final = 1 << 12  # 6.0: other tasks get EEXIST
SETUP_DEFER_TASKRUN: Final = 1 << 13  # 6.1: never used, the ring fd would not wake epoll
SETUP_NO_SQARRAY: Final = 1 << 16  # 6.6

# --- features reported in io_uring_params.features --------------------------------------------

FEAT_SINGLE_MMAP: Final = 1 << 0
FEAT_NODROP: Final = 1 << 1
FEAT_SUBMIT_STABLE: Final = 1 << 2
FEAT_RW_CUR_POS: Final = 1 << 3
FEAT_CUR_PERSONALITY: Final = 1 << 4
FEAT_FAST_POLL: Final = 1 << 5
FEAT_POLL_32BITS: Final = 1 << 6
FEAT_SQPOLL_NONFIXED: Final = 1 << 7
FEAT_EXT_ARG: Final = 1 << 8
FEAT_NATIVE_WORKERS: Final = 1 << 9
FEAT_RSRC_TAGS: Final = 1 << 10
FEAT_CQE_SKIP: Final = 1 << 11
FEAT_LINKED_FILE: Final = 1 << 12
FEAT_REG_REG_RING: Final = 1 << 13
FEAT_RECVSEND_BUNDLE: Final = 1 << 14
FEAT_MIN_TIMEOUT: Final = 1 << 15
FEAT_RW_ATTR: Final = 1 << 16
FEAT_NO_IOWAIT: Final = 1 << 17

FEATURE_NAMES: Final[dict[int, str]] = {
    FEAT_SINGLE_MMAP: "SINGLE_MMAP",
    FEAT_NODROP: "NODROP",
    FEAT_SUBMIT_STABLE: "SUBMIT_STABLE",
    FEAT_RW_CUR_POS: "RW_CUR_POS",
    FEAT_CUR_PERSONALITY: "CUR_PERSONALITY",
    FEAT_FAST_POLL: "FAST_POLL",
    FEAT_POLL_32BITS: "POLL_32BITS",
    FEAT_SQPOLL_NONFIXED: "SQPOLL_NONFIXED",
    FEAT_EXT_ARG: "EXT_ARG",
    FEAT_NATIVE_WORKERS: "NATIVE_WORKERS",
    FEAT_RSRC_TAGS: "RSRC_TAGS",
    FEAT_CQE_SKIP: "CQE_SKIP",
    FEAT_LINKED_FILE: "LINKED_FILE",
    FEAT_REG_REG_RING: "REG_REG_RING",
    FEAT_RECVSEND_BUNDLE: "RECVSEND_BUNDLE",
    FEAT_MIN_TIMEOUT: "MIN_TIMEOUT",
    FEAT_RW_ATTR: "RW_ATTR",
    FEAT_NO_IOWAIT: "NO_IOWAIT",
}

# Our floor (5.12): no dropped CQEs, SQE-referenced data copied at submit, offset -1 = file
# position, and io-wq workers that are real threads of this process (older kernels borrowed
# identities in kthreads, with a history of credential bugs).
FEATURES_REQUIRED: Final = FEAT_NODROP | FEAT_SUBMIT_STABLE | FEAT_RW_CUR_POS | FEAT_NATIVE_WORKERS

# --- io_uring_enter() flags -------------------------------------------------------------------

ENTER_GETEVENTS: Final = 1 << 0
ENTER_EXT_ARG: Final = 1 << 3

# --- bits of the shared sq_flags word ---------------------------------------------------------

SQ_NEED_WAKEUP: Final = 1 << 0  # SQPOLL only
SQ_CQ_OVERFLOW: Final = 1 << 1  # CQEs wait on the overflow list: enter(GETEVENTS) flushes them
SQ_TASKRUN: Final = 1 << 2  # TASKRUN_FLAG: task work pending, enter(GETEVENTS) posts CQEs

# --- SQE flags (byte 1) -----------------------------------------------------------------------

IOSQE_FIXED_FILE: Final = 1 << 0
IOSQE_IO_LINK: Final = 1 << 2
IOSQE_IO_HARDLINK: Final = 1 << 3
IOSQE_CQE_SKIP_SUCCESS: Final = 1 << 6

# --- opcodes (those nursery_io submits; each one is exercised against the kernel) -----------

OP_NOP: Final = 0
OP_FSYNC: Final = 3
OP_ASYNC_CANCEL: Final = 14
OP_FALLOCATE: Final = 17
OP_OPENAT: Final = 18
OP_CLOSE: Final = 19
OP_STATX: Final = 21
OP_READ: Final = 22
OP_WRITE: Final = 23
OP_SPLICE: Final = 30  # 5.7; needs splice_fd_in, so only Ring.prep_linked() prepares it
OP_RENAMEAT: Final = 35  # 5.11
OP_UNLINKAT: Final = 36  # 5.11
OP_MKDIRAT: Final = 37  # 5.15
OP_SYMLINKAT: Final = 38  # 5.15
OP_LINKAT: Final = 39  # 5.15
OP_FTRUNCATE: Final = 55  # 6.9

# The opcodes nursery_io submits, by name (statistics and error messages use the names).
OPCODE_NAMES: Final[dict[int, str]] = {
    OP_NOP: "NOP",
    OP_FSYNC: "FSYNC",
    OP_ASYNC_CANCEL: "ASYNC_CANCEL",
    OP_FALLOCATE: "FALLOCATE",
    OP_OPENAT: "OPENAT",
    OP_CLOSE: "CLOSE",
    OP_STATX: "STATX",
    OP_READ: "READ",
    OP_WRITE: "WRITE",
    OP_SPLICE: "SPLICE",
    OP_RENAMEAT: "RENAMEAT",
    OP_UNLINKAT: "UNLINKAT",
    OP_MKDIRAT: "MKDIRAT",
    OP_SYMLINKAT: "SYMLINKAT",
    OP_LINKAT: "LINKAT",
    OP_FTRUNCATE: "FTRUNCATE",
}

# --- op-specific flags ------------------------------------------------------------------------

FSYNC_DATASYNC: Final = 1 << 0

# splice(2) flags (os.SPLICE_F_* on Python >= 3.10); SPLICE_F_FD_IN_FIXED is io_uring's own.
SPLICE_F_MOVE: Final = 1 << 0
SPLICE_F_NONBLOCK: Final = 1 << 1
SPLICE_F_MORE: Final = 1 << 2
SPLICE_F_FD_IN_FIXED: Final = 1 << 31

ASYNC_CANCEL_ALL: Final = 1 << 0
ASYNC_CANCEL_FD: Final = 1 << 1
ASYNC_CANCEL_ANY: Final = 1 << 2  # 5.19: match every request; one SQE cancels everything

# <fcntl.h> values used in SQEs (x86_64 / generic; os.* exposes only some of them).
AT_FDCWD: Final = -100
AT_SYMLINK_NOFOLLOW: Final = 0x100
AT_REMOVEDIR: Final = 0x200
AT_SYMLINK_FOLLOW: Final = 0x400
AT_EMPTY_PATH: Final = 0x1000
RENAME_NOREPLACE: Final = 1 << 0
RENAME_EXCHANGE: Final = 1 << 1

# --- io_uring_register() opcodes --------------------------------------------------------------

REGISTER_PROBE: Final = 8

# --- mmap offsets on the ring fd --------------------------------------------------------------

OFF_SQ_RING: Final = 0
OFF_CQ_RING: Final = 0x8000000
OFF_SQES: Final = 0x10000000

# --- struct layouts ---------------------------------------------------------------------------

# struct io_uring_sqe, 64 bytes. Field order:
#   opcode u8, flags u8, ioprio u16, fd s32, off/addr2 u64, addr u64, len u32,
#   op_flags u32 (rw/fsync/open/statx/rename/unlink/cancel flags...), user_data u64,
#   buf_index u16, personality u16, splice_fd_in/file_index s32, addr3 u64, __pad2 u64.
# Every SQE is written whole with one pack_into, so no field survives from a slot's last use.
SQE: Final = struct.Struct("<BBHiQQIIQHHiQQ")
SQE_SIZE: Final = 64

# struct io_uring_cqe, 16 bytes: user_data u64, res s32 (>= 0 or -errno), flags u32.
CQE: Final = struct.Struct("<QiI")
CQE_SIZE: Final = 16

# struct io_uring_params, 120 bytes:
#   sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle, features, wq_fd, resv[3]
#   sq_off: head, tail, ring_mask, ring_entries, flags, dropped, array, resv1, user_addr(u64)
#   cq_off: head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1, user_addr(u64)
PARAMS: Final = struct.Struct("<10I8IQ8IQ")
PARAMS_SIZE: Final = 120

# Indices into PARAMS.unpack() output.
P_SQ_ENTRIES: Final = 0
P_CQ_ENTRIES: Final = 1
P_FLAGS: Final = 2
P_FEATURES: Final = 5
P_SQ_OFF: Final = 10  # 9 values: head, tail, ring_mask, ring_entries, flags, dropped, array, ...
P_CQ_OFF: Final = 19  # 9 values: head, tail, ring_mask, ring_entries, overflow, cqes, flags, ...

# struct io_uring_probe: header {u8 last_op, u8 ops_len, u16 resv, u32 resv2[3]} then
# ops_len x struct io_uring_probe_op {u8 op, u8 resv, u16 flags, u32 resv2}.
PROBE_HEADER: Final = struct.Struct("<BBHIII")
PROBE_OP: Final = struct.Struct("<BBHI")
PROBE_OPS_MAX: Final = 256
PROBE_SIZE: Final = PROBE_HEADER.size + PROBE_OPS_MAX * PROBE_OP.size
IO_URING_OP_SUPPORTED: Final = 1 << 0

# --- statx ------------------------------------------------------------------------------------

STATX_TYPE: Final = 0x1
STATX_MODE: Final = 0x2
STATX_NLINK: Final = 0x4
STATX_UID: Final = 0x8
STATX_GID: Final = 0x10
STATX_ATIME: Final = 0x20
STATX_MTIME: Final = 0x40
STATX_CTIME: Final = 0x80
STATX_INO: Final = 0x100
STATX_SIZE: Final = 0x200
STATX_BLOCKS: Final = 0x400
STATX_BASIC_STATS: Final = 0x7FF
STATX_BTIME: Final = 0x800
# What os.stat() reports, plus btime (free, and useful later for st_birthtime).
STATX_MASK: Final = STATX_BASIC_STATS | STATX_BTIME

# struct statx is 256 bytes; we read the first 144:
#   stx_mask u32, stx_blksize u32, stx_attributes u64, stx_nlink u32, stx_uid u32, stx_gid u32,
#   stx_mode u16, pad u16, stx_ino u64, stx_size u64, stx_blocks u64, stx_attributes_mask u64,
#   4 x statx_timestamp {s64 tv_sec, u32 tv_nsec, s32 reserved}: atime, btime, ctime, mtime,
#   stx_rdev_major, stx_rdev_minor, stx_dev_major, stx_dev_minor (u32 each).
STATX: Final = struct.Struct("<IIQIIIHxxQQQQqIxxxxqIxxxxqIxxxxqIxxxxIIII")
STATX_BUFFER_SIZE: Final = 256

_NS: Final = 1_000_000_000
_makedev = os.makedev
_stat_result = os.stat_result


def statx_to_stat_result(buf: bytes | bytearray | memoryview) -> os.stat_result:
    """Build the ``os.stat_result`` that ``os.stat()`` would return from a ``struct statx``.

    Field by field as CPython's ``_pystat_fromstructstat`` does it, so results compare equal to
    ``os.stat()``'s, float timestamps included (``sec + nsec * 1e-9`` in double precision).
    """
    (
        _mask,
        blksize,
        _attributes,
        nlink,
        uid,
        gid,
        mode,
        ino,
        size,
        blocks,
        _attributes_mask,
        a_sec,
        a_nsec,
        _b_sec,
        _b_nsec,
        c_sec,
        c_nsec,
        m_sec,
        m_nsec,
        rdev_major,
        rdev_minor,
        dev_major,
        dev_minor,
    ) = STATX.unpack_from(buf)
    # The 19 fields in os.stat_result's internal order: the 10 visible ones (integer times at
    # 7..9), then float times, nanosecond times, st_blksize, st_blocks, st_rdev.
    return _stat_result(
        (
            mode,
            ino,
            _makedev(dev_major, dev_minor),
            nlink,
            uid,
            gid,
            size,
            a_sec,
            m_sec,
            c_sec,
            a_sec + a_nsec * 1e-9,
            m_sec + m_nsec * 1e-9,
            c_sec + c_nsec * 1e-9,
            a_sec * _NS + a_nsec,
            m_sec * _NS + m_nsec,
            c_sec * _NS + c_nsec,
            blksize,
            blocks,
            _makedev(rdev_major, rdev_minor),
        )
    )
