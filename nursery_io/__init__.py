"""nursery_io: Trio-style structured concurrency with its own Linux kernel layer.

``import nursery_io as trio`` programs run: the public names and their behaviour follow
Trio's documentation. Sockets use epoll, files use io_uring (falling back to worker threads
where it is unavailable), and the run's statistics say which engine did what.

(PYTEST_DONT_REWRITE: ``python -m nursery_io run -m pytest`` imports this package before
pytest, which would otherwise warn that it can't rewrite its asserts.)
"""

from . import abc, from_thread, lowlevel, socket, to_thread
from ._channel import (
    MemoryChannelStatistics,
    MemoryReceiveChannel,
    MemorySendChannel,
    open_memory_channel,
)
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
from ._deprecate import TrioDeprecationWarning
from ._file_io import open_file, wrap_file
from ._highlevel_generic import StapledStream, aclose_forcefully
from ._highlevel_open_tcp_listeners import open_tcp_listeners, serve_tcp
from ._highlevel_open_tcp_stream import open_tcp_stream
from ._highlevel_open_unix_stream import open_unix_socket
from ._highlevel_serve_listeners import serve_listeners
from ._highlevel_socket import SocketListener, SocketStream
from ._highlevel_ssl_helpers import (
    open_ssl_over_tcp_listeners,
    open_ssl_over_tcp_stream,
    serve_ssl_over_tcp,
)
from ._path import Path, PosixPath
from ._safe_channel import as_safe_channel
from ._signals import open_signal_receiver
from ._ssl import NeedHandshakeError, SSLListener, SSLStream
from ._subprocess import Process, run_process
from ._sync import (
    CapacityLimiter,
    CapacityLimiterStatistics,
    Condition,
    ConditionStatistics,
    Event,
    EventStatistics,
    Lock,
    LockStatistics,
    Semaphore,
    StrictFIFOLock,
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
from ._trio_mode import install_as_trio
from ._version import __version__
from .anyio_backend import _finder as _anyio_finder  # noqa: F401  (backend="nursery_io")

#: Trio's name for :class:`InternalError`.
TrioInternalError = InternalError

__all__ = [
    "TASK_STATUS_IGNORED",
    "BrokenResourceError",
    "BusyResourceError",
    "CancelScope",
    "Cancelled",
    "CapacityLimiter",
    "CapacityLimiterStatistics",
    "ClosedResourceError",
    "Condition",
    "ConditionStatistics",
    "EndOfChannel",
    "Event",
    "EventStatistics",
    "InternalError",
    "Lock",
    "LockStatistics",
    "MemoryChannelStatistics",
    "MemoryReceiveChannel",
    "MemorySendChannel",
    "NeedHandshakeError",
    "Nursery",
    "Path",
    "PosixPath",
    "Process",
    "RunFinishedError",
    "SSLListener",
    "SSLStream",
    "Semaphore",
    "SocketListener",
    "SocketStream",
    "StapledStream",
    "StrictFIFOLock",
    "TaskStatus",
    "TooSlowError",
    "TrioDeprecationWarning",
    "TrioInternalError",
    "WouldBlock",
    "__version__",
    "abc",
    "aclose_forcefully",
    "as_safe_channel",
    "current_effective_deadline",
    "current_time",
    "fail_after",
    "fail_at",
    "from_thread",
    "install_as_trio",
    "lowlevel",
    "move_on_after",
    "move_on_at",
    "open_file",
    "open_memory_channel",
    "open_nursery",
    "open_signal_receiver",
    "open_ssl_over_tcp_listeners",
    "open_ssl_over_tcp_stream",
    "open_tcp_listeners",
    "open_tcp_stream",
    "open_unix_socket",
    "run",
    "run_process",
    "serve_listeners",
    "serve_ssl_over_tcp",
    "serve_tcp",
    "sleep",
    "sleep_forever",
    "sleep_until",
    "socket",
    "to_thread",
    "wrap_file",
]
