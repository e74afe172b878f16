"""nursery_io: Trio-style structured concurrency with its own Linux kernel layer.

``import nursery_io as trio`` programs run: the public names and their behaviour follow
Trio's documentation. Sockets use epoll, files use io_uring (falling back to worker threads
where it is unavailable), and the run's statistics say which engine did what.

(PYTEST_DONT_REWRITE: ``python -m nursery_io run -m pytest`` imports this package before
pytest, which would otherwise warn that it can't rewrite its asserts.)
"""

import typing as _typing

# The core (runs, cancellation, nurseries) is imported at once: every program needs it.
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
from ._version import __version__

# Everything else is loaded on first use (PEP 562 ``__getattr__`` below), so a program pays
# only for what it touches: TLS, subprocesses, sockets, files, ... The imports below are for
# type checkers and IDEs; at run time _LAZY says where each name lives.
if _typing.TYPE_CHECKING:
    from . import abc, from_thread, lowlevel, socket, to_thread
    from ._channel import (
        MemoryChannelStatistics,
        MemoryReceiveChannel,
        MemorySendChannel,
        open_memory_channel,
    )
    from ._deprecate import TrioDeprecationWarning
    from ._files._file_io import open_file, wrap_file
    from ._files._path import Path, PosixPath, WindowsPath
    from ._highlevel_generic import StapledStream, aclose_forcefully
    from ._net._dtls import DTLSChannel, DTLSChannelStatistics, DTLSEndpoint
    from ._net._highlevel_open_tcp_listeners import open_tcp_listeners, serve_tcp
    from ._net._highlevel_open_tcp_stream import open_tcp_stream
    from ._net._highlevel_open_unix_stream import open_unix_socket
    from ._net._highlevel_serve_listeners import serve_listeners
    from ._net._highlevel_socket import SocketListener, SocketStream
    from ._net._highlevel_ssl_helpers import (
        open_ssl_over_tcp_listeners,
        open_ssl_over_tcp_stream,
        serve_ssl_over_tcp,
    )
    from ._net._sendfile import send_file
    from ._net._ssl import NeedHandshakeError, SSLStream
    from ._net._ssl_listener import SSLListener
    from ._safe_channel import as_safe_channel
    from ._signals import open_signal_receiver
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

_LAZY_MODULES: dict[str, tuple[str, ...]] = {
    # submodules, loaded as attributes: nursery_io.socket, ...
    "": ("abc", "from_thread", "lowlevel", "socket", "to_thread"),
    "_channel": (
        "MemoryChannelStatistics",
        "MemoryReceiveChannel",
        "MemorySendChannel",
        "open_memory_channel",
    ),
    "_deprecate": ("TrioDeprecationWarning",),
    "_files._file_io": ("open_file", "wrap_file"),
    "_net._dtls": ("DTLSChannel", "DTLSChannelStatistics", "DTLSEndpoint"),
    "_highlevel_generic": ("StapledStream", "aclose_forcefully"),
    "_net._highlevel_open_tcp_listeners": ("open_tcp_listeners", "serve_tcp"),
    "_net._highlevel_open_tcp_stream": ("open_tcp_stream",),
    "_net._highlevel_open_unix_stream": ("open_unix_socket",),
    "_net._highlevel_serve_listeners": ("serve_listeners",),
    "_net._highlevel_socket": ("SocketListener", "SocketStream"),
    "_net._highlevel_ssl_helpers": (
        "open_ssl_over_tcp_listeners",
        "open_ssl_over_tcp_stream",
        "serve_ssl_over_tcp",
    ),
    "_files._path": ("Path", "PosixPath", "WindowsPath"),
    "_safe_channel": ("as_safe_channel",),
    "_net._sendfile": ("send_file",),
    "_signals": ("open_signal_receiver",),
    "_net._ssl": ("NeedHandshakeError", "SSLStream"),
    "_net._ssl_listener": ("SSLListener",),
    "_subprocess": ("Process", "run_process"),
    "_sync": (
        "CapacityLimiter",
        "CapacityLimiterStatistics",
        "Condition",
        "ConditionStatistics",
        "Event",
        "EventStatistics",
        "Lock",
        "LockStatistics",
        "Semaphore",
        "StrictFIFOLock",
    ),
    "_timeouts": (
        "TooSlowError",
        "fail_after",
        "fail_at",
        "move_on_after",
        "move_on_at",
        "sleep",
        "sleep_forever",
        "sleep_until",
    ),
    "_trio_mode": ("install_as_trio",),
}
# name -> the module (relative to this package) that defines it; "" for a submodule.
_LAZY: dict[str, str] = {name: module for module, names in _LAZY_MODULES.items() for name in names}


# Hidden from type checkers: a visible module __getattr__ would make them accept any
# attribute name, typos included.
if not _typing.TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        import importlib

        if module:
            value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
        else:
            value = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = value  # later lookups don't come back here
        return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY.keys())


# ``anyio.run(..., backend="nursery_io")`` works once nursery_io is imported: this installs a
# meta-path finder that answers only that backend's module name (anyio isn't imported).
from .anyio_backend import _finder as _anyio_finder  # noqa: E402, F401

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
    "DTLSChannel",
    "DTLSChannelStatistics",
    "DTLSEndpoint",
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
    "WindowsPath",
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
    "send_file",
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
