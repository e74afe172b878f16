"""Low-level building blocks, for writing your own primitives and integrations.

Names follow Trio's ``trio.lowlevel``. Where Trio's name mentions "trio", a neutral name is
the primary one and the Trio spelling is an alias (``current_token`` /
``current_trio_token``, ``RunToken`` / ``TrioToken``, ``in_run`` / ``in_trio_run``,
``in_task`` / ``in_trio_task``).

Beyond Trio: :func:`run_op` runs a disk operation built with the constructors in
:mod:`nursery_io.lowlevel.ops` (``ops.read(fd, n, offset)``, ``ops.stat(path)``, ...) on
the run's file engine — io_uring when available, the worker pool otherwise.
"""

import sys

from ._core import (
    Abort,
    ParkingLot,
    ParkingLotStatistics,
    RaiseCancelT,
    RunStatistics,
    RunToken,
    RunVar,
    RunVarToken,
    SteppedRun,
    Task,
    add_parking_lot_breaker,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    current_clock,
    current_root_task,
    current_statistics,
    current_task,
    current_token,
    currently_ki_protected,
    disable_ki_protection,
    enable_ki_protection,
    in_run,
    in_task,
    notify_closing,
    permanently_detach_coroutine_object,
    reattach_detached_coroutine_object,
    remove_parking_lot_breaker,
    reschedule,
    spawn_system_task,
    start_guest_run,
    temporarily_detach_coroutine_object,
    wait_readable,
    wait_task_rescheduled,
    wait_writable,
)
from ._core._context import current_runner as _current_runner
from ._core._ops import read_at, run_op
from ._hostname import encode_hostname
from ._kernel import ops
from ._kernel.workers import start_thread_soon
from ._unix_pipes import FdStream


def add_instrument(instrument: "Instrument") -> None:
    """Start calling ``instrument``'s hooks in the current run (no-op if already added)."""
    _current_runner().instruments.add_instrument(instrument)


def remove_instrument(instrument: "Instrument") -> None:
    """Stop calling ``instrument``'s hooks; ``KeyError`` if it isn't installed."""
    _current_runner().instruments.remove_instrument(instrument)


from ._abc_clock import Instrument  # noqa: E402  (used in annotations above)

# Seeing inside a running program (docs/debugging.rst). Nothing here costs anything
# until called.
from ._introspect import (  # noqa: E402
    format_task_tree,
    print_task_tree,
    record_creation_sites,
    task_tree_snapshot,
)
from ._introspect._server import start_console_server  # noqa: E402
from ._introspect._signal import disable_debug_signal, enable_debug_signal  # noqa: E402
from ._introspect._trace import TraceRecorder  # noqa: E402

# Last: _subprocess builds on modules that import this one.
from ._subprocess import open_process  # noqa: E402
from ._unbounded_queue import UnboundedQueue, UnboundedQueueStatistics  # noqa: E402

# Trio spellings.
TrioToken = RunToken
current_trio_token = current_token
in_trio_run = in_run
in_trio_task = in_task

# ``import nursery_io.lowlevel.ops`` works too, as ``import os.path`` does: the module is
# registered under its public dotted name (its own ``__name__`` stays the kernel's).
sys.modules[__name__ + ".ops"] = ops

__all__ = [
    "Abort",
    "FdStream",
    "ParkingLot",
    "ParkingLotStatistics",
    "RaiseCancelT",
    "RunStatistics",
    "RunToken",
    "RunVar",
    "RunVarToken",
    "SteppedRun",
    "Task",
    "TraceRecorder",
    "TrioToken",
    "UnboundedQueue",
    "UnboundedQueueStatistics",
    "add_instrument",
    "add_parking_lot_breaker",
    "cancel_shielded_checkpoint",
    "checkpoint",
    "checkpoint_if_cancelled",
    "current_clock",
    "current_root_task",
    "current_statistics",
    "current_task",
    "current_token",
    "current_trio_token",
    "currently_ki_protected",
    "disable_debug_signal",
    "disable_ki_protection",
    "enable_debug_signal",
    "enable_ki_protection",
    "encode_hostname",
    "format_task_tree",
    "in_run",
    "in_task",
    "in_trio_run",
    "in_trio_task",
    "notify_closing",
    "open_process",
    "ops",
    "permanently_detach_coroutine_object",
    "print_task_tree",
    "read_at",
    "reattach_detached_coroutine_object",
    "record_creation_sites",
    "remove_instrument",
    "remove_parking_lot_breaker",
    "reschedule",
    "run_op",
    "spawn_system_task",
    "start_console_server",
    "start_guest_run",
    "start_thread_soon",
    "task_tree_snapshot",
    "temporarily_detach_coroutine_object",
    "wait_readable",
    "wait_task_rescheduled",
    "wait_writable",
]
