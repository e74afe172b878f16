"""The anyio backend class for nursery_io (anyio imports it as ``anyio._backends._nursery_io``).

Every method maps anyio's ``AsyncBackend`` interface onto nursery_io's public API. The
two share Trio's model (cancel scopes, nurseries, checkpoints), so most methods are one
call; the adapters for scopes, task groups, primitives, sockets, processes and the pytest
runner live in the sibling modules.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
import os
import socket
import warnings
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import AbstractContextManager, contextmanager
from contextvars import copy_context
from signal import Signals
from typing import IO, TYPE_CHECKING, Any, Final, Literal, TypeVar, cast

import anyio
import anyio.abc
from anyio import BusyResourceError, ClosedResourceError, RunFinishedError
from anyio._core._eventloop import claim_worker_thread
from anyio.abc import AsyncBackend, IPSockAddrType

import nursery_io
import nursery_io.socket as nsocket
from nursery_io import _core, _subprocess, from_thread, to_thread
from nursery_io.testing import wait_all_tasks_blocked

from . import _process, _sockets
from ._sync import CapacityLimiter, Event, Lock, Semaphore
from ._tasks import CancelScope, TaskGroup, TaskInfo, running_tasks
from ._testing import TestRunner

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike, StrOrBytesPath

__all__ = ["NurseryIOBackend", "backend_class"]

T = TypeVar("T")


def _check_anyio_version() -> None:
    # AsyncBackend is private to anyio and changes in minor releases: say so up front
    # rather than fail later with a missing method.
    try:
        version = importlib.metadata.version("anyio")
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return
    if major_minor != _SUPPORTED_ANYIO:
        warnings.warn(
            f"nursery_io's anyio backend implements anyio "
            f"{'.'.join(map(str, _SUPPORTED_ANYIO))}.x's backend interface, but anyio "
            f"{version} is installed; install a matching nursery_io or anyio",
            RuntimeWarning,
            stacklevel=2,
        )


_SUPPORTED_ANYIO: Final = (4, 16)
_check_anyio_version()

# One anyio wrapper per run around nursery_io's default thread limiter, so that anyio
# code changing ``total_tokens`` changes the limiter to_thread really uses.
_default_limiter: _core.RunVar[CapacityLimiter] = _core.RunVar("anyio default limiter")


def _returning_coroutine(func: Callable[..., Awaitable[T]]) -> Callable[..., Any]:
    """``func`` made to return a coroutine even if it returns another awaitable.

    nursery_io (like Trio) runs coroutines only; anyio accepts any awaitable. The wrapper
    carries ``func``'s name, which becomes the main task's name.
    """

    @functools.wraps(func)
    def call(*args: object) -> Any:
        awaitable = func(*args)
        if isinstance(awaitable, Coroutine) or not isinstance(awaitable, Awaitable):
            # A coroutine, or something nursery_io will reject with a clear message.
            return awaitable

        async def await_it() -> T:
            return await awaitable

        return await_it()

    return call


class _SignalReceiver:
    """anyio's signal receiver: a context manager that is also an async iterator of
    :class:`signal.Signals` (nursery_io's yields plain ints)."""

    def __init__(self, signals: tuple[Signals, ...]) -> None:
        self._signals = signals
        self._manager: AbstractContextManager[AsyncIterator[int]] | None = None
        self._iterator: AsyncIterator[int] | None = None

    def __enter__(self) -> _SignalReceiver:
        self._manager = nursery_io.open_signal_receiver(*self._signals)
        self._iterator = self._manager.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> bool | None:
        assert self._manager is not None
        return self._manager.__exit__(*exc_info)

    def __aiter__(self) -> _SignalReceiver:
        return self

    async def __anext__(self) -> Signals:
        assert self._iterator is not None
        return Signals(await self._iterator.__anext__())


@contextmanager
def _anyio_fd_errors(direction: str) -> Iterator[None]:
    try:
        yield
    except nursery_io.ClosedResourceError as exc:
        raise ClosedResourceError().with_traceback(exc.__traceback__) from None
    except nursery_io.BusyResourceError:
        raise BusyResourceError(direction) from None


def _token(token: object) -> _core.RunToken | None:
    if token is not None and not isinstance(token, _core.RunToken):
        raise TypeError(f"expected a nursery_io run token, not {token!r}")
    return token


class NurseryIOBackend(AsyncBackend):
    """anyio's ``AsyncBackend`` implemented with nursery_io."""

    # ----- running -----

    @classmethod
    def run(
        cls,
        func: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: dict[str, Any],
    ) -> T:
        if kwargs:
            raise TypeError("nursery_io runs take positional arguments only")
        result: T = nursery_io.run(_returning_coroutine(func), *args, **options)
        return result

    @classmethod
    def current_token(cls) -> object:
        return _core.current_token()

    @classmethod
    def current_time(cls) -> float:
        return nursery_io.current_time()

    @classmethod
    def cancelled_exception_class(cls) -> type[BaseException]:
        return nursery_io.Cancelled

    # ----- checkpoints, sleeping, cancellation -----

    @classmethod
    async def checkpoint(cls) -> None:
        await _core.checkpoint()

    @classmethod
    async def checkpoint_if_cancelled(cls) -> None:
        await _core.checkpoint_if_cancelled()

    @classmethod
    async def cancel_shielded_checkpoint(cls) -> None:
        await _core.cancel_shielded_checkpoint()

    @classmethod
    async def sleep(cls, delay: float) -> None:
        await nursery_io.sleep(delay)

    @classmethod
    def create_cancel_scope(
        cls, *, deadline: float = math.inf, shield: bool = False
    ) -> anyio.CancelScope:
        return CancelScope(deadline=deadline, shield=shield)

    @classmethod
    def current_effective_deadline(cls) -> float:
        return nursery_io.current_effective_deadline()

    @classmethod
    def create_task_group(cls) -> anyio.abc.TaskGroup:
        return TaskGroup()

    # ----- synchronization -----

    @classmethod
    def create_event(cls) -> anyio.Event:
        return Event()

    @classmethod
    def create_lock(cls, *, fast_acquire: bool) -> anyio.Lock:
        return Lock(fast_acquire=fast_acquire)

    @classmethod
    def create_semaphore(
        cls,
        initial_value: int,
        *,
        max_value: int | None = None,
        fast_acquire: bool = False,
    ) -> anyio.Semaphore:
        return Semaphore(initial_value, max_value=max_value, fast_acquire=fast_acquire)

    @classmethod
    def create_capacity_limiter(cls, total_tokens: float) -> anyio.CapacityLimiter:
        return CapacityLimiter(total_tokens)

    @classmethod
    def current_default_thread_limiter(cls) -> anyio.CapacityLimiter:
        try:
            return _default_limiter.get()
        except LookupError:
            limiter = CapacityLimiter(native=to_thread.current_default_thread_limiter())
            _default_limiter.set(limiter)
            return limiter

    # ----- threads -----

    @classmethod
    async def run_sync_in_worker_thread(
        cls,
        func: Callable[..., T],
        args: tuple[Any, ...],
        abandon_on_cancel: bool = False,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> T:
        token = _core.current_token()

        def in_worker() -> T:
            # Lets anyio.from_thread.* (no token) and check_cancelled() find their way
            # back from this thread.
            with claim_worker_thread(NurseryIOBackend, token):
                return func(*args)

        native: nursery_io.CapacityLimiter | None
        if limiter is None or isinstance(limiter, CapacityLimiter):
            native = limiter.native if limiter is not None else None
        else:
            # Some other anyio limiter (e.g. one created outside any loop): nursery_io only
            # needs the acquire/release_on_behalf_of methods, which every anyio limiter has.
            native = cast(nursery_io.CapacityLimiter, limiter)
        return await to_thread.run_sync(
            in_worker, abandon_on_cancel=abandon_on_cancel, limiter=native
        )

    @classmethod
    def check_cancelled(cls) -> None:
        from_thread.check_cancelled()

    @classmethod
    def run_async_from_thread(
        cls,
        func: Callable[..., Coroutine[Any, Any, T]],
        args: tuple[Any, ...],
        token: object,
    ) -> T:
        try:
            return from_thread.run(func, *args, token=_token(token))
        except nursery_io.RunFinishedError:
            raise RunFinishedError from None

    @classmethod
    def run_sync_from_thread(
        cls,
        func: Callable[..., T],
        args: tuple[Any, ...],
        token: object,
    ) -> T:
        try:
            return from_thread.run_sync(func, *args, token=_token(token))
        except nursery_io.RunFinishedError:
            raise RunFinishedError from None

    @classmethod
    def run_sync_soon(
        cls,
        func: Callable[..., object],
        args: tuple[Any, ...],
        token: object,
    ) -> None:
        native = _token(token)
        if native is None:
            raise TypeError("run_sync_soon needs the run's token")
        try:
            # In the caller's context, as anyio promises.
            native.run_sync_soon(copy_context().run, func, *args)
        except nursery_io.RunFinishedError:
            raise RunFinishedError from None

    # ----- subprocesses -----

    @classmethod
    async def open_process(
        cls,
        command: StrOrBytesPath | Sequence[StrOrBytesPath],
        *,
        stdin: int | IO[Any] | None,
        stdout: int | IO[Any] | None,
        stderr: int | IO[Any] | None,
        cwd: StrOrBytesPath | None = None,
        env: Mapping[str, str] | None = None,
        startupinfo: Any = None,
        creationflags: int = 0,
        start_new_session: bool = False,
        pass_fds: Sequence[int] = (),
        user: str | int | None = None,
        group: str | int | None = None,
        extra_groups: Iterable[str | int] | None = None,
        umask: int = -1,
        **kwargs: Any,
    ) -> anyio.abc.Process:
        # anyio: a single string (or path) is a shell command line; a sequence is argv.
        shell = isinstance(command, (str, bytes, os.PathLike))
        argv: str | list[str]
        if shell:
            argv = os.fsdecode(cast("StrOrBytesPath", command))
        else:
            argv = [os.fsdecode(item) for item in cast("Sequence[StrOrBytesPath]", command)]
        process = await _subprocess.open_process(
            argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            shell=shell,
            cwd=cwd,
            env=env,
            startupinfo=startupinfo,
            creationflags=creationflags,
            start_new_session=start_new_session,
            pass_fds=pass_fds,
            user=user,
            group=group,
            extra_groups=extra_groups,
            umask=umask,
            **kwargs,
        )
        return _process.Process(process)

    @classmethod
    def setup_process_pool_exit_at_shutdown(cls, workers: set[anyio.abc.Process]) -> None:
        _core.spawn_system_task(_process.shut_down_process_pool, workers)

    # ----- sockets -----

    @classmethod
    async def connect_tcp(
        cls, host: str, port: int, local_address: IPSockAddrType | None = None
    ) -> anyio.abc.SocketStream:
        # anyio has already resolved the name: host is an address literal.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        raw = socket.socket(family, socket.SOCK_STREAM)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stream = _sockets.SocketStream(raw)
            if local_address:
                await stream._sock.bind(local_address)
            await stream._sock.connect((host, port))
        except BaseException:
            raw.close()
            raise
        return stream

    @classmethod
    async def connect_unix(
        cls,
        path: str | bytes,
        kind: Literal[socket.SocketKind.SOCK_STREAM, socket.SocketKind.SOCK_SEQPACKET],
    ) -> anyio.abc.UNIXSocketStream:
        raw = socket.socket(socket.AF_UNIX, kind)
        try:
            stream = _sockets.UNIXSocketStream(raw)
            await stream._sock.connect(path)
        except BaseException:
            raw.close()
            raise
        return stream

    @classmethod
    def create_tcp_listener(cls, sock: socket.socket) -> anyio.abc.SocketListener:
        return _sockets.TCPSocketListener(sock)

    @classmethod
    def create_unix_listener(cls, sock: socket.socket) -> anyio.abc.SocketListener:
        return _sockets.UNIXSocketListener(sock)

    @classmethod
    async def create_udp_socket(
        cls,
        family: socket.AddressFamily,
        local_address: IPSockAddrType | None,
        remote_address: IPSockAddrType | None,
        reuse_port: bool,
    ) -> anyio.abc.UDPSocket | anyio.abc.ConnectedUDPSocket:
        raw = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if reuse_port:
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock = nsocket.from_stdlib_socket(raw)
            if local_address:
                await sock.bind(local_address)
            if remote_address:
                await sock.connect(remote_address)
                return _sockets.ConnectedUDPSocket(raw)
            return _sockets.UDPSocket(raw)
        except BaseException:
            raw.close()
            raise

    @classmethod
    async def create_unix_datagram_socket(  # type: ignore[override]
        cls, raw_socket: socket.socket, remote_path: str | bytes | None
    ) -> anyio.abc.UNIXDatagramSocket | anyio.abc.ConnectedUNIXDatagramSocket:
        if remote_path:
            await nsocket.from_stdlib_socket(raw_socket).connect(remote_path)
            return _sockets.ConnectedUNIXDatagramSocket(raw_socket)
        return _sockets.UNIXDatagramSocket(raw_socket)

    @classmethod
    async def getaddrinfo(
        cls,
        host: bytes | str | None,
        port: str | int | None,
        *,
        family: int | socket.AddressFamily = 0,
        type: int | socket.SocketKind = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> Sequence[
        tuple[
            socket.AddressFamily,
            socket.SocketKind,
            int,
            str,
            tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes],
        ]
    ]:
        return await nsocket.getaddrinfo(host, port, family, type, proto, flags)

    @classmethod
    async def getnameinfo(cls, sockaddr: IPSockAddrType, flags: int = 0) -> tuple[str, str]:
        return await nsocket.getnameinfo(sockaddr, flags)

    @classmethod
    async def wait_readable(cls, obj: FileDescriptorLike) -> None:
        with _anyio_fd_errors("reading from"):
            await _core.wait_readable(obj)

    @classmethod
    async def wait_writable(cls, obj: FileDescriptorLike) -> None:
        with _anyio_fd_errors("writing to"):
            await _core.wait_writable(obj)

    @classmethod
    def notify_closing(cls, obj: FileDescriptorLike) -> None:
        _core.notify_closing(obj)

    @classmethod
    async def wrap_listener_socket(cls, sock: socket.socket) -> anyio.abc.SocketListener:
        if sock.family == socket.AF_UNIX:
            return _sockets.UNIXSocketListener(sock)
        return _sockets.TCPSocketListener(sock)

    @classmethod
    async def wrap_stream_socket(cls, sock: socket.socket) -> anyio.abc.SocketStream:
        return _sockets.SocketStream(sock)

    @classmethod
    async def wrap_unix_stream_socket(cls, sock: socket.socket) -> anyio.abc.UNIXSocketStream:
        return _sockets.UNIXSocketStream(sock)

    @classmethod
    async def wrap_udp_socket(cls, sock: socket.socket) -> anyio.abc.UDPSocket:
        return _sockets.UDPSocket(sock)

    @classmethod
    async def wrap_connected_udp_socket(cls, sock: socket.socket) -> anyio.abc.ConnectedUDPSocket:
        return _sockets.ConnectedUDPSocket(sock)

    @classmethod
    async def wrap_unix_datagram_socket(cls, sock: socket.socket) -> anyio.abc.UNIXDatagramSocket:
        return _sockets.UNIXDatagramSocket(sock)

    @classmethod
    async def wrap_connected_unix_datagram_socket(
        cls, sock: socket.socket
    ) -> anyio.abc.ConnectedUNIXDatagramSocket:
        return _sockets.ConnectedUNIXDatagramSocket(sock)

    # ----- signals, introspection, testing -----

    @classmethod
    def open_signal_receiver(
        cls, *signals: Signals
    ) -> AbstractContextManager[AsyncIterator[Signals]]:
        return _SignalReceiver(signals)

    @classmethod
    def get_current_task(cls) -> anyio.TaskInfo:
        return TaskInfo(_core.current_task())

    @classmethod
    def get_running_tasks(cls) -> Sequence[anyio.TaskInfo]:
        return running_tasks()

    @classmethod
    async def wait_all_tasks_blocked(cls) -> None:
        await wait_all_tasks_blocked()

    @classmethod
    def create_test_runner(cls, options: dict[str, Any]) -> anyio.abc.TestRunner:
        return TestRunner(**options)


backend_class = NurseryIOBackend
