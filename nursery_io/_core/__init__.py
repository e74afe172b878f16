"""The core runtime: runner, tasks, nurseries, cancel scopes, traps. See docs/design.rst.

This package is what the rest of nursery_io imports its runtime from. The layers, lowest
first, are ``_kernel`` < ``_core`` < the library modules (``_sync``, ``_timeouts``,
files, sockets, ...) < the integrations (``testing``, ``pytest_plugin``,
``anyio_backend``, ...); a module imports only from its own layer and those below it
(``lint-imports`` checks this, see pyproject.toml). The public ``nursery_io.lowlevel`` is a
façade over this package for users: no module inside nursery_io imports it.

Library code imports the names in ``__all__`` from here, ``from .._core import checkpoint,
run_op, ops``, never from ``lowlevel`` (modules inside ``_core`` import from their siblings:
this package is still loading when they run). Two kinds of name:

- Most names are imported at once: the runner, tasks, traps, cancel scopes and the
  ``Clock``/``Instrument`` interfaces are loaded by ``import nursery_io`` anyway.
- The disk-op and thread names in ``_LAZY`` below (``run_op``, ``read_at``,
  ``run_linked``, ``ops``, ``start_thread_soon``, ``start_guest_run``) are loaded on first
  use (PEP 562 ``__getattr__``): they pull in ctypes and the file engine, which
  ``import nursery_io`` must not pay for. ``from .._core import run_op`` in a module loads
  them when that module is imported, which is what a file module wants; a module that
  needs them only on some paths imports them inside the function.
"""

import typing as _typing

# Imported so that ``trio._core._run`` resolves in trio mode (see the module).
from . import _run as _run
from ._abc_clock import Clock, Instrument
from ._cancel import CancelScope
from ._context import current_library_name, current_task, set_library_name
from ._detach import (
    permanently_detach_coroutine_object,
    reattach_detached_coroutine_object,
    temporarily_detach_coroutine_object,
)
from ._entry import run
from ._exceptions import (
    BrokenResourceError,
    BusyResourceError,
    Cancelled,
    ClosedResourceError,
    EndOfChannel,
    InternalError,
    RunFinishedError,
    WouldBlock,
)
from ._instruments import add_instrument, remove_instrument
from ._io import notify_closing, wait_readable, wait_writable
from ._ki import currently_ki_protected, disable_ki_protection, enable_ki_protection
from ._local import RunVar, RunVarToken
from ._mock_clock import MockClock
from ._nursery import TASK_STATUS_IGNORED, Nursery, TaskStatus, open_nursery
from ._parking_lot import (
    ParkingLot,
    ParkingLotStatistics,
    add_parking_lot_breaker,
    remove_parking_lot_breaker,
)
from ._runner import (
    RunStatistics,
    RunToken,
    current_clock,
    current_effective_deadline,
    current_root_task,
    current_statistics,
    current_time,
    current_token,
    deadline_passed,
    in_run,
    in_task,
    reschedule,
    spawn_system_task,
    wait_all_tasks_blocked,
)
from ._stepped import SteppedRun
from ._task import Task
from ._traps import (
    Abort,
    RaiseCancelT,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    wait_task_rescheduled,
)
from ._util import LazyTable, lazy_attributes

if _typing.TYPE_CHECKING:
    from .._kernel import ops
    from .._kernel.workers import start_thread_soon
    from ._guest import start_guest_run
    from ._ops import read_at, run_linked, run_op

# Trio mode loads these all at once when it aliases this package (``_load_lazy_names``).
_LAZY: LazyTable = {
    "ops": ("nursery_io._kernel.ops", None),
    "read_at": ("nursery_io._core._ops", "read_at"),
    "run_linked": ("nursery_io._core._ops", "run_linked"),
    "run_op": ("nursery_io._core._ops", "run_op"),
    "start_guest_run": ("nursery_io._core._guest", "start_guest_run"),
    "start_thread_soon": ("nursery_io._kernel.workers", "start_thread_soon"),
}

# Hidden from type checkers (see _util.lazy_attributes).
if not _typing.TYPE_CHECKING:
    __getattr__, __dir__ = lazy_attributes(globals(), _LAZY)


__all__ = [
    "TASK_STATUS_IGNORED",
    "Abort",
    "BrokenResourceError",
    "BusyResourceError",
    "CancelScope",
    "Cancelled",
    "Clock",
    "ClosedResourceError",
    "EndOfChannel",
    "Instrument",
    "InternalError",
    "MockClock",
    "Nursery",
    "ParkingLot",
    "ParkingLotStatistics",
    "RaiseCancelT",
    "RunFinishedError",
    "RunStatistics",
    "RunToken",
    "RunVar",
    "RunVarToken",
    "SteppedRun",
    "Task",
    "TaskStatus",
    "WouldBlock",
    "add_instrument",
    "add_parking_lot_breaker",
    "cancel_shielded_checkpoint",
    "checkpoint",
    "checkpoint_if_cancelled",
    "current_clock",
    "current_effective_deadline",
    "current_library_name",
    "current_root_task",
    "current_statistics",
    "current_task",
    "current_time",
    "current_token",
    "currently_ki_protected",
    "deadline_passed",
    "disable_ki_protection",
    "enable_ki_protection",
    "in_run",
    "in_task",
    "notify_closing",
    "open_nursery",
    "ops",
    "permanently_detach_coroutine_object",
    "read_at",
    "reattach_detached_coroutine_object",
    "remove_instrument",
    "remove_parking_lot_breaker",
    "reschedule",
    "run",
    "run_linked",
    "run_op",
    "set_library_name",
    "spawn_system_task",
    "start_guest_run",
    "start_thread_soon",
    "temporarily_detach_coroutine_object",
    "wait_all_tasks_blocked",
    "wait_readable",
    "wait_task_rescheduled",
    "wait_writable",
]
