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
import typing as _typing

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
    temporarily_detach_coroutine_object,
    wait_readable,
    wait_task_rescheduled,
    wait_writable,
)
from ._core._context import current_runner as _current_runner

if _typing.TYPE_CHECKING:
    from ._core._guest import start_guest_run
    from ._core._ops import read_at, run_op
    from ._introspect import (
        format_task_tree,
        print_task_tree,
        record_creation_sites,
        task_tree_snapshot,
    )
    from ._introspect._server import start_console_server
    from ._introspect._signal import disable_debug_signal, enable_debug_signal
    from ._introspect._trace import TraceRecorder
    from ._kernel.workers import start_thread_soon
    from ._net._hostname import encode_hostname
    from ._net._unix_pipes import FdStream
    from ._subprocess import open_process
    from ._unbounded_queue import UnboundedQueue, UnboundedQueueStatistics

# Loaded on first use (PEP 562): the file engine's op constructors (ctypes), the worker
# threads, pipes and subprocesses are not needed to start a run.
_LAZY: dict[str, tuple[str, str | None]] = {
    "start_guest_run": ("._core._guest", "start_guest_run"),
    "read_at": ("._core._ops", "read_at"),
    # Seeing inside a running program (docs/debugging.rst).
    "format_task_tree": ("._introspect", "format_task_tree"),
    "print_task_tree": ("._introspect", "print_task_tree"),
    "record_creation_sites": ("._introspect", "record_creation_sites"),
    "task_tree_snapshot": ("._introspect", "task_tree_snapshot"),
    "start_console_server": ("._introspect._server", "start_console_server"),
    "enable_debug_signal": ("._introspect._signal", "enable_debug_signal"),
    "disable_debug_signal": ("._introspect._signal", "disable_debug_signal"),
    "TraceRecorder": ("._introspect._trace", "TraceRecorder"),
    "run_op": ("._core._ops", "run_op"),
    "start_thread_soon": ("._kernel.workers", "start_thread_soon"),
    "FdStream": ("._net._unix_pipes", "FdStream"),
    "open_process": ("._subprocess", "open_process"),
    "encode_hostname": ("._net._hostname", "encode_hostname"),
    "UnboundedQueue": ("._unbounded_queue", "UnboundedQueue"),
    "UnboundedQueueStatistics": ("._unbounded_queue", "UnboundedQueueStatistics"),
}


# Hidden from type checkers: a visible module __getattr__ would make them accept any
# attribute name, typos included.
if not _typing.TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        where = _LAZY.get(name)
        if where is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        module_name, attribute = where
        module = importlib.import_module(module_name, __package__)
        value = module if attribute is None else getattr(module, attribute)
        globals()[name] = value  # later lookups don't come back here
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY.keys())


def add_instrument(instrument: "Instrument") -> None:
    """Start calling ``instrument``'s hooks in the current run (no-op if already added)."""
    _current_runner().instruments.add_instrument(instrument)


def remove_instrument(instrument: "Instrument") -> None:
    """Stop calling ``instrument``'s hooks; ``KeyError`` if it isn't installed."""
    _current_runner().instruments.remove_instrument(instrument)


from ._abc_clock import Instrument  # noqa: E402  (used in annotations above)

# Trio spellings.
TrioToken = RunToken
current_trio_token = current_token
in_trio_run = in_run
in_trio_task = in_task

from ._kernel import ops  # noqa: E402

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
