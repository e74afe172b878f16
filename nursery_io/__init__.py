"""nursery_io: Trio-style structured concurrency with its own Linux kernel layer.

``import nursery_io as trio`` programs run: the public names and their behaviour follow
Trio's documentation. Sockets use epoll, files use io_uring (falling back to worker threads
where it is unavailable), and the run's statistics say which engine did what.
"""

from . import abc, lowlevel
from ._core import (
    TASK_STATUS_IGNORED,
    BrokenResourceError,
    BusyResourceError,
    Cancelled,
    CancelScope,
    ClosedResourceError,
    EndOfChannel,
    InternalError,
    Nursery,
    RunFinishedError,
    TaskStatus,
    WouldBlock,
    current_effective_deadline,
    current_time,
    open_nursery,
    run,
)
from ._timeouts import (
    TooSlowError,
    fail_after,
    fail_at,
    move_on_after,
    move_on_at,
    sleep,
    sleep_forever,
    sleep_until,
)
from ._version import __version__

#: Trio's name for :class:`InternalError`.
TrioInternalError = InternalError

__all__ = [
    "TASK_STATUS_IGNORED",
    "BrokenResourceError",
    "BusyResourceError",
    "CancelScope",
    "Cancelled",
    "ClosedResourceError",
    "EndOfChannel",
    "InternalError",
    "Nursery",
    "RunFinishedError",
    "TaskStatus",
    "TooSlowError",
    "TrioInternalError",
    "WouldBlock",
    "__version__",
    "abc",
    "current_effective_deadline",
    "current_time",
    "fail_after",
    "fail_at",
    "lowlevel",
    "move_on_after",
    "move_on_at",
    "open_nursery",
    "run",
    "sleep",
    "sleep_forever",
    "sleep_until",
]
