"""The console endpoint: a read-only Unix socket served by a system task of the run.

Nothing runs and nothing is opened until it is asked for (``NURSERY_IO_CONSOLE=1`` or
:func:`start_console_server`). The socket lives in a private directory (mode 0700, owned
by the user: ``$XDG_RUNTIME_DIR/nursery_io`` or ``/tmp/nursery_io-<uid>``), is itself mode
0600, and every connection's peer credentials (``SO_PEERCRED``) are checked: a process of
another user is refused even if it gets at the socket some other way.

Protocol: one JSON object per line each way. ``{"cmd": "snapshot", "timing": true}``
answers with the snapshot of ``_snapshot.take_snapshot``; asking for timing installs the
per-task timer for as long as that client stays connected. ``{"cmd": "ping"}`` answers
``{"pid": ...}``. Anything else gets ``{"error": ...}``.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import socket as stdlib_socket
import stat
import struct
import tempfile
import threading
from typing import TYPE_CHECKING, Any

from .._core._context import current_runner
from .._core._exceptions import RunFinishedError

if TYPE_CHECKING:
    from .._core._runner import Runner
    from .._net._highlevel_socket import SocketStream

__all__ = [
    "find_socket",
    "socket_dir",
    "start_console_server",
    "start_console_server_soon",
]

SERVER_TASK_NAME = "<nursery_io console server>"
CLIENT_TASK_NAME = "<nursery_io console client>"

_paths_lock = threading.Lock()
_paths_in_use: set[str] = set()
_CRED = struct.Struct("3i")


def socket_dir(*, create: bool = True) -> str:
    """The private directory holding this user's console sockets (made if missing);
    ``PermissionError`` if it exists but isn't private to this user."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        directory = os.path.join(base, "nursery_io")
    else:
        directory = os.path.join(tempfile.gettempdir(), f"nursery_io-{os.getuid()}")
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
    info = os.lstat(directory)
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or stat.S_IMODE(info.st_mode) & 0o077
    ):
        raise PermissionError(
            f"{directory} is not a directory private to this user (owner uid "
            f"{info.st_uid}, mode {stat.S_IMODE(info.st_mode):o}); refusing to use it"
        )
    return directory


def find_socket(target: str) -> str:
    """The socket of a process id, or ``target`` itself if it is a path."""
    if not target.isdigit():
        return target
    directory = socket_dir(create=False)
    path = os.path.join(directory, f"{target}.sock")
    if os.path.exists(path):
        return path
    others = sorted(glob.glob(os.path.join(directory, f"{target}-*.sock")))
    if others:
        return others[0]
    raise FileNotFoundError(
        f"no console socket for pid {target} in {directory}: was the program started "
        "with NURSERY_IO_CONSOLE=1?"
    )


def _choose_path() -> str:
    directory = socket_dir()
    pid = os.getpid()
    with _paths_lock:
        for n in range(1000):
            name = f"{pid}.sock" if n == 0 else f"{pid}-{n}.sock"
            path = os.path.join(directory, name)
            if path not in _paths_in_use:
                _paths_in_use.add(path)
                return path
    raise RuntimeError("too many console servers in one process")


def _listen(path: str) -> stdlib_socket.socket:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # left behind by a dead process whose pid we now have
    sock = stdlib_socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(16)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _peer_uid(sock: Any) -> int:
    creds = sock.getsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_PEERCRED, _CRED.size)
    return int(_CRED.unpack(creds)[1])


async def _send(stream: SocketStream, message: Any) -> None:
    await stream.send_all(json.dumps(message, separators=(",", ":")).encode() + b"\n")


async def _serve_client(stream: SocketStream, runner: Runner) -> None:
    from .._timeouts import move_on_after
    from ._snapshot import take_snapshot
    from ._timing import acquire_timer, release_timer, timer_of

    timing = False
    try:
        uid = _peer_uid(stream.socket)
        if uid != os.getuid():
            await _send(stream, {"error": f"refused: uid {uid} is not the owner"})
            # Closing with the client's request unread would reset the connection and
            # could lose the answer: end our side and let the client hang up first.
            await stream.send_eof()
            with move_on_after(2):
                while await stream.receive_some(65536):
                    pass
            return
        buffer = b""
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    request = json.loads(line)
                    command = request.get("cmd")
                except (ValueError, AttributeError):
                    await _send(stream, {"error": "bad request: not a JSON object"})
                    continue
                if command == "ping":
                    await _send(stream, {"pid": os.getpid()})
                elif command == "snapshot":
                    if request.get("timing") and not timing:
                        acquire_timer(runner)
                        timing = True
                    await _send(stream, take_snapshot(runner, timing=timer_of(runner)))
                else:
                    await _send(stream, {"error": f"unknown command {command!r}"})
    except OSError:
        pass  # the client went away
    finally:
        if timing:
            release_timer(runner)
        with contextlib.suppress(OSError):
            await stream.aclose()


async def _serve(sock: stdlib_socket.socket, path: str, runner: Runner) -> None:
    from .._core._nursery import open_nursery
    from .._net._highlevel_socket import SocketStream
    from .._net._socket import from_stdlib_socket

    listener = from_stdlib_socket(sock)
    try:
        async with open_nursery() as nursery:
            while True:
                conn, _ = await listener.accept()
                nursery.start_soon(_serve_client, SocketStream(conn), runner, name=CLIENT_TASK_NAME)
    finally:
        listener.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        with _paths_lock:
            _paths_in_use.discard(path)


def _open(path: str | None) -> tuple[stdlib_socket.socket, str]:
    from ._sites import record_creation_sites

    record_creation_sites()
    if path is None:
        path = _choose_path()
    else:
        with _paths_lock:
            _paths_in_use.add(path)
    try:
        return _listen(path), path
    except BaseException:
        with _paths_lock:
            _paths_in_use.discard(path)
        raise


def start_console_server(path: str | None = None) -> str:
    """Serve the current run's console endpoint from a system task; return its socket
    path (default: ``<private dir>/<pid>.sock``, see ``python -m nursery_io console``).

    Call it from inside the run. The server ends with the run. Read-only: a client can
    look at tasks and statistics, never change anything.
    """
    from .._core._runner import spawn_system_task

    runner = current_runner()
    sock, path = _open(path)
    spawn_system_task(_serve, sock, path, runner, name=SERVER_TASK_NAME)
    return path


def start_console_server_soon(runner: Runner, path: str | None = None) -> str:
    """Like :func:`start_console_server`, for a run whose system nursery may not exist yet
    (called as the run starts): the socket is bound now, served once the run is up."""
    sock, path = _open(path)

    def abandon() -> None:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        with _paths_lock:
            _paths_in_use.discard(path)

    def spawn() -> None:
        nursery = runner.system_nursery
        if nursery is None:
            try:
                runner.run_sync_soon(spawn, (), False)
            except RunFinishedError:
                abandon()
            return
        if nursery._closed:
            abandon()
            return
        runner.spawn_impl(_serve, (sock, path, runner), nursery, SERVER_TASK_NAME, system_task=True)

    runner.run_sync_soon(spawn, (), False)
    return path
