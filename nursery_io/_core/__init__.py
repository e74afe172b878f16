"""The core runtime: runner, tasks, nurseries, cancel scopes, traps. See docs/design.rst."""

# Imported so that ``trio._core._run`` resolves in trio mode (see the module).
from . import _run as _run
from ._cancel import CancelScope
from ._context import current_task
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

__all__ = [
    "TASK_STATUS_IGNORED",
    "Abort",
    "BrokenResourceError",
    "BusyResourceError",
    "CancelScope",
    "Cancelled",
    "ClosedResourceError",
    "EndOfChannel",
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
    "add_parking_lot_breaker",
    "cancel_shielded_checkpoint",
    "checkpoint",
    "checkpoint_if_cancelled",
    "current_clock",
    "current_effective_deadline",
    "current_root_task",
    "current_statistics",
    "current_task",
    "current_time",
    "current_token",
    "currently_ki_protected",
    "disable_ki_protection",
    "enable_ki_protection",
    "in_run",
    "in_task",
    "notify_closing",
    "open_nursery",
    "permanently_detach_coroutine_object",
    "reattach_detached_coroutine_object",
    "remove_parking_lot_breaker",
    "reschedule",
    "run",
    "spawn_system_task",
    "temporarily_detach_coroutine_object",
    "wait_all_tasks_blocked",
    "wait_readable",
    "wait_task_rescheduled",
    "wait_writable",
]
