"""Async sockets: a thin wrapper over non-blocking stdlib sockets, driven by epoll readiness.

Every operation that can wait tries the syscall first and waits for readiness only if it
would block (see ``_nonblocking``): one schedule point per operation, and errors come out
at once.
"""

from __future__ import annotations

import errno
import operator
import os
import select
import socket as _stdlib_socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, SupportsIndex, TypeAlias, cast, overload

from .._core import (
    Cancelled,
    RunVar,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    in_run,
    notify_closing,
    wait_readable,
    wait_writable,
)
from .._core._util import ClosesOnExit
from .._timeouts import sleep
from ._hostname import encode_hostname
from ._nonblocking import call_when_ready

if TYPE_CHECKING:
    from collections.abc import Iterable

    from typing_extensions import Buffer

    from ..abc import HostnameResolver, SocketFactory

__all__ = [
    "SocketType",
    "from_stdlib_socket",
    "fromfd",
    "getaddrinfo",
    "getnameinfo",
    "getprotobyname",
    "set_custom_hostname_resolver",
    "set_custom_socket_factory",
    "socket",
    "socketpair",
]


#: Addresses are whatever the address family uses: ``(host, port)`` tuples for IPv4,
#: 2-4 tuples for IPv6, paths for AF_UNIX, ...
AddressFormat: TypeAlias = Any

GetAddrInfoResult: TypeAlias = list[
    tuple[
        _stdlib_socket.AddressFamily,
        _stdlib_socket.SocketKind,
        int,
        str,
        tuple[str, int] | tuple[str, int, int, int] | tuple[int, bytes],
    ]
]

_NUMERIC_ONLY: Final = _stdlib_socket.AI_NUMERICHOST | _stdlib_socket.AI_NUMERICSERV
_NUMERIC_NAMEINFO: Final = _stdlib_socket.NI_NUMERICHOST | _stdlib_socket.NI_NUMERICSERV


################################################################
# Name resolution and the two customisation hooks
################################################################

_resolver: RunVar[HostnameResolver | None] = RunVar("nursery_io.socket.hostname_resolver", None)
_socket_factory: RunVar[SocketFactory | None] = RunVar("nursery_io.socket.socket_factory", None)


def set_custom_hostname_resolver(
    hostname_resolver: HostnameResolver | None,
) -> HostnameResolver | None:
    """Make :func:`getaddrinfo` and :func:`getnameinfo` ask ``hostname_resolver``.

    Applies to the current run only; ``None`` restores the default (the system resolver,
    called in a worker thread). Numeric addresses never reach the resolver. Returns the
    resolver that was installed before.
    """
    old = _resolver.get()
    _resolver.set(hostname_resolver)
    return old


def set_custom_socket_factory(socket_factory: SocketFactory | None) -> SocketFactory | None:
    """Make :func:`socket` (called without ``fileno``) delegate to ``socket_factory``.

    Applies to the current run only; ``None`` restores the default. Returns the factory
    that was installed before.
    """
    old = _socket_factory.get()
    _socket_factory.set(socket_factory)
    return old


async def getaddrinfo(
    host: bytes | str | None,
    port: bytes | str | int | None,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> GetAddrInfoResult:
    """Look up a host and port, like :func:`socket.getaddrinfo`, without blocking the run.

    Numeric hosts and ports are translated in place; anything that needs a lookup goes to
    the custom hostname resolver if one is installed, else to the system resolver in a
    worker thread (a cancelled lookup abandons that thread). Non-ASCII hostnames are
    IDNA-encoded first. Always a checkpoint.
    """
    await checkpoint_if_cancelled()
    try:
        # typeshed's precise per-family tuple types don't fit one list type: cast.
        result = cast(
            GetAddrInfoResult,
            _stdlib_socket.getaddrinfo(host, port, family, type, proto, flags | _NUMERIC_ONLY),
        )
    except _stdlib_socket.gaierror as exc:
        if exc.errno != _stdlib_socket.EAI_NONAME:
            await cancel_shielded_checkpoint()
            raise
    else:
        await cancel_shielded_checkpoint()
        return result
    # A real name (or a service name): someone has to go and ask.
    if isinstance(host, str):
        host = encode_hostname(host)
    resolver = _resolver.get()
    if resolver is not None:
        return await resolver.getaddrinfo(host, port, family, type, proto, flags)
    from .._threads import to_thread_run_sync

    lookup = cast(Callable[..., GetAddrInfoResult], _stdlib_socket.getaddrinfo)
    return await to_thread_run_sync(
        lookup, host, port, family, type, proto, flags, abandon_on_cancel=True
    )


async def getnameinfo(
    sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int
) -> tuple[str, str]:
    """Reverse-resolve an address, like :func:`socket.getnameinfo`, without blocking.

    Uses the custom hostname resolver if one is installed. Otherwise, with both
    ``NI_NUMERICHOST`` and ``NI_NUMERICSERV`` set no lookup is needed and the answer is
    computed in place; any other lookup runs in a worker thread.
    """
    resolver = _resolver.get()
    if resolver is not None:
        return await resolver.getnameinfo(sockaddr, flags)
    if flags & _NUMERIC_NAMEINFO == _NUMERIC_NAMEINFO:
        await checkpoint_if_cancelled()
        try:
            return _stdlib_socket.getnameinfo(sockaddr, flags)
        finally:
            await cancel_shielded_checkpoint()
    from .._threads import to_thread_run_sync

    return await to_thread_run_sync(
        _stdlib_socket.getnameinfo, sockaddr, flags, abandon_on_cancel=True
    )


async def getprotobyname(name: str) -> int:
    """Look up a protocol number by name, like :func:`socket.getprotobyname` (in a thread:
    it may read ``/etc/protocols`` or ask NSS)."""
    from .._threads import to_thread_run_sync

    return await to_thread_run_sync(_stdlib_socket.getprotobyname, name, abandon_on_cancel=True)


################################################################
# Constructors
################################################################


def from_stdlib_socket(sock: _stdlib_socket.socket) -> SocketType:
    """Wrap a :class:`socket.socket` (which is switched to non-blocking mode).

    The wrapper takes over the socket: use only the wrapper from now on.
    """
    return _SocketType(sock)


def fromfd(
    fd: SupportsIndex,
    family: _stdlib_socket.AddressFamily | int = _stdlib_socket.AF_INET,
    type: _stdlib_socket.SocketKind | int = _stdlib_socket.SOCK_STREAM,
    proto: int = 0,
) -> SocketType:
    """Like :func:`socket.fromfd`: wrap a *duplicate* of ``fd``.

    The family, type and protocol are read from the fd itself; the arguments are only
    accepted for compatibility.
    """
    new_fd = os.dup(operator.index(fd))
    try:
        sock = _stdlib_socket.socket(-1, -1, -1, new_fd)
    except BaseException:
        os.close(new_fd)
        raise
    return from_stdlib_socket(sock)


def socketpair(
    family: int | None = None,
    type: _stdlib_socket.SocketKind | int = _stdlib_socket.SOCK_STREAM,
    proto: int = 0,
) -> tuple[SocketType, SocketType]:
    """Like :func:`socket.socketpair` (AF_UNIX by default), returning two async sockets."""
    left, right = _stdlib_socket.socketpair(family, type, proto)
    return from_stdlib_socket(left), from_stdlib_socket(right)


def socket(
    family: _stdlib_socket.AddressFamily | int = _stdlib_socket.AF_INET,
    type: _stdlib_socket.SocketKind | int = _stdlib_socket.SOCK_STREAM,
    proto: int = 0,
    fileno: int | None = None,
) -> SocketType:
    """Create an async socket, like :class:`socket.socket`.

    Without ``fileno``, a custom socket factory (:func:`set_custom_socket_factory`) is used
    if one is installed. With ``fileno``, the socket adopts that fd and its real family,
    type and protocol are read from it.
    """
    if fileno is None:
        # Outside a run there is no factory to consult; creating sockets is still fine.
        factory = _socket_factory.get() if in_run() else None
        if factory is not None:
            return factory.socket(family, type, proto)  # type: ignore[no-any-return]
        return _SocketType(_stdlib_socket.socket(family, type, proto))
    # -1 asks the stdlib to detect family, type and protocol from the fd.
    return _SocketType(_stdlib_socket.socket(-1, -1, -1, fileno))


################################################################
# Address resolution for bind/connect/sendto
################################################################


async def _resolve_address(
    sock: _stdlib_socket.socket, address: AddressFormat, *, local: bool
) -> AddressFormat:
    """Turn a user-supplied address into one the kernel accepts, resolving names.

    Does not checkpoint when nothing needs resolving (the caller checkpoints anyway).
    """
    family = sock.family
    if family == _stdlib_socket.AF_INET:
        if not isinstance(address, tuple) or len(address) != 2:
            raise ValueError("address should be a (host, port) tuple")
    elif family == _stdlib_socket.AF_INET6:
        if not isinstance(address, tuple) or not 2 <= len(address) <= 4:
            raise ValueError("address should be a (host, port, [flowinfo, [scopeid]]) tuple")
    elif family == _stdlib_socket.AF_UNIX:
        return os.fspath(address)
    else:
        return address
    host, port, *_ = address
    # Fast path, taken by every sendto() of a typical UDP server: numeric host, int port.
    if isinstance(port, int) and isinstance(host, str):
        try:
            _stdlib_socket.inet_pton(family, host)
        except OSError:
            pass
        else:
            return address
    # The stdlib's special spellings.
    if host == "":
        host = None
    elif host == "<broadcast>":
        host = "255.255.255.255"
    flags = _stdlib_socket.AI_PASSIVE if local else 0
    if family == _stdlib_socket.AF_INET6 and not sock.getsockopt(
        _stdlib_socket.IPPROTO_IPV6, _stdlib_socket.IPV6_V6ONLY
    ):
        flags |= _stdlib_socket.AI_V4MAPPED
    results = await getaddrinfo(host, port, family, sock.type, sock.proto, flags)
    normed = results[0][4]
    if family == _stdlib_socket.AF_INET6:
        # getaddrinfo knows nothing of the caller's flowinfo and scope_id: keep them.
        merged = list(normed)
        merged[2 : len(address)] = address[2:]
        return tuple(merged)
    return normed


################################################################
# SocketType
################################################################


def _raise_abstract() -> Any:
    raise NotImplementedError("SocketType is abstract; subclasses implement this method")


class SocketType(ClosesOnExit):
    """The type of nursery_io's async socket objects.

    Create sockets with :func:`socket`, :func:`socketpair`, :func:`fromfd` or
    :func:`from_stdlib_socket`; this class can't be instantiated directly. Subclass it to
    write a fake socket (for example for a custom socket factory in tests).

    The interface is the stdlib's, except that operations which can wait are async:
    ``accept``, ``bind``, ``connect``, ``recv*``, ``send*`` and ``wait_writable``. Each is a
    checkpoint. There is no ``sendall`` (use :class:`nursery_io.SocketStream`), no
    ``makefile`` and no timeouts (use cancel scopes).
    """

    __slots__ = ("__weakref__",)

    def __init__(self) -> None:
        if type(self) is SocketType:
            raise TypeError(
                "SocketType is an abstract class; use nursery_io.socket.socket if you "
                "want to construct a socket object"
            )

    # ----- synchronous passthroughs -----
    def detach(self) -> int:
        return _raise_abstract()  # type: ignore[no-any-return]

    def fileno(self) -> int:
        return _raise_abstract()  # type: ignore[no-any-return]

    def getpeername(self) -> AddressFormat:
        return _raise_abstract()

    def getsockname(self) -> AddressFormat:
        return _raise_abstract()

    @overload
    def getsockopt(self, level: int, optname: int) -> int: ...
    @overload
    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes: ...
    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> int | bytes:
        return _raise_abstract()  # type: ignore[no-any-return]

    @overload
    def setsockopt(self, level: int, optname: int, value: int | Buffer) -> None: ...
    @overload
    def setsockopt(self, level: int, optname: int, value: None, optlen: int) -> None: ...
    def setsockopt(
        self, level: int, optname: int, value: int | Buffer | None, optlen: int | None = None
    ) -> None:
        _raise_abstract()

    def listen(self, backlog: int = min(_stdlib_socket.SOMAXCONN, 128)) -> None:
        _raise_abstract()

    def get_inheritable(self) -> bool:
        return _raise_abstract()  # type: ignore[no-any-return]

    def set_inheritable(self, inheritable: bool) -> None:
        _raise_abstract()

    @property
    def family(self) -> _stdlib_socket.AddressFamily:
        return _raise_abstract()  # type: ignore[no-any-return]

    @property
    def type(self) -> _stdlib_socket.SocketKind:
        return _raise_abstract()  # type: ignore[no-any-return]

    @property
    def proto(self) -> int:
        return _raise_abstract()  # type: ignore[no-any-return]

    @property
    def did_shutdown_SHUT_WR(self) -> bool:
        """Whether :meth:`shutdown` with ``SHUT_WR`` or ``SHUT_RDWR`` has succeeded."""
        return _raise_abstract()  # type: ignore[no-any-return]

    def dup(self) -> SocketType:
        return _raise_abstract()  # type: ignore[no-any-return]

    def close(self) -> None:
        _raise_abstract()

    def shutdown(self, flag: int) -> None:
        _raise_abstract()

    def is_readable(self) -> bool:
        """Whether a ``recv`` would return at once (data, EOF or an error) right now."""
        return _raise_abstract()  # type: ignore[no-any-return]

    # ----- asynchronous operations -----
    async def bind(self, address: AddressFormat) -> None:
        _raise_abstract()

    async def wait_writable(self) -> None:
        """Wait until the socket is writable."""
        _raise_abstract()

    async def accept(self) -> tuple[SocketType, AddressFormat]:
        return _raise_abstract()  # type: ignore[no-any-return]

    async def connect(self, address: AddressFormat) -> None:
        _raise_abstract()

    def recv(self, buflen: int, flags: int = 0, /) -> Awaitable[bytes]:
        return _raise_abstract()  # type: ignore[no-any-return]

    def recv_into(self, buffer: Buffer, nbytes: int = 0, flags: int = 0) -> Awaitable[int]:
        return _raise_abstract()  # type: ignore[no-any-return]

    def recvfrom(self, bufsize: int, flags: int = 0, /) -> Awaitable[tuple[bytes, AddressFormat]]:
        return _raise_abstract()  # type: ignore[no-any-return]

    def recvfrom_into(
        self, buffer: Buffer, nbytes: int = 0, flags: int = 0
    ) -> Awaitable[tuple[int, AddressFormat]]:
        return _raise_abstract()  # type: ignore[no-any-return]

    def recvmsg(
        self, bufsize: int, ancbufsize: int = 0, flags: int = 0, /
    ) -> Awaitable[tuple[bytes, list[tuple[int, int, bytes]], int, AddressFormat]]:
        return _raise_abstract()  # type: ignore[no-any-return]

    def recvmsg_into(
        self, buffers: Iterable[Buffer], ancbufsize: int = 0, flags: int = 0, /
    ) -> Awaitable[tuple[int, list[tuple[int, int, bytes]], int, AddressFormat]]:
        return _raise_abstract()  # type: ignore[no-any-return]

    def send(self, bytes: Buffer, flags: int = 0, /) -> Awaitable[int]:
        return _raise_abstract()  # type: ignore[no-any-return]

    @overload
    async def sendto(self, data: Buffer, address: AddressFormat, /) -> int: ...
    @overload
    async def sendto(self, data: Buffer, flags: int, address: AddressFormat, /) -> int: ...
    async def sendto(self, *args: Any) -> int:
        return _raise_abstract()  # type: ignore[no-any-return]

    async def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """Send ``file`` until end of file (or ``count`` bytes) from ``offset``; returns the
        number of bytes sent, like :meth:`socket.socket.sendfile`, whose rules it follows:
        ``file`` must be opened in binary mode, its position ends up at ``offset`` + the
        bytes sent (also when an error or ``Cancelled`` interrupts the transfer; left alone
        if nothing was sent), an empty file sends nothing, and an object that is not a
        regular file is read and sent with :meth:`send`.

        ``file`` may also be one of nursery_io's async files or a plain file descriptor
        (whose position is never moved). The data goes from the page cache to the socket
        without passing through Python: linked SPLICE ops through a pipe on io_uring, or
        ``os.sendfile`` in a worker thread; the loop thread never waits for the disk.
        Unlike the stdlib's, this works on non-blocking sockets (every nursery_io socket
        is one). Without ``count`` it sends up to the file's size when the call starts.
        """
        return _raise_abstract()  # type: ignore[no-any-return]

    async def sendmsg(
        self,
        buffers: Iterable[Buffer],
        ancdata: Iterable[tuple[int, int, Buffer]] = (),
        flags: int = 0,
        address: AddressFormat | None = None,
        /,
    ) -> int:
        return _raise_abstract()  # type: ignore[no-any-return]


class _SocketType(SocketType):
    """The real socket: a non-blocking stdlib socket plus readiness waits."""

    # As in Trio, users may set attributes (a test mocks a method on an instance).
    __slots__ = ("__dict__", "_did_shutdown_SHUT_WR", "_sock")

    def __init__(self, sock: _stdlib_socket.socket) -> None:
        if type(sock) is not _stdlib_socket.socket:
            # SSLSocket and friends do their own buffering and can't be driven this way.
            raise TypeError(
                f"expected object of type 'socket.socket', not '{type(sock).__name__}' "
                "(for TLS, use nursery_io.SSLStream over a socket stream)"
            )
        self._sock = sock
        self._sock.setblocking(False)
        self._did_shutdown_SHUT_WR = False

    # ----- synchronous passthroughs -----
    def detach(self) -> int:
        return self._sock.detach()

    def fileno(self) -> int:
        return self._sock.fileno()

    def getpeername(self) -> AddressFormat:
        return self._sock.getpeername()

    def getsockname(self) -> AddressFormat:
        return self._sock.getsockname()

    @overload
    def getsockopt(self, level: int, optname: int) -> int: ...
    @overload
    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes: ...
    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> int | bytes:
        if buflen is None:
            return self._sock.getsockopt(level, optname)
        return self._sock.getsockopt(level, optname, buflen)

    @overload
    def setsockopt(self, level: int, optname: int, value: int | Buffer) -> None: ...
    @overload
    def setsockopt(self, level: int, optname: int, value: None, optlen: int) -> None: ...
    def setsockopt(
        self, level: int, optname: int, value: int | Buffer | None, optlen: int | None = None
    ) -> None:
        if optlen is None:
            if value is None:
                raise TypeError(
                    "invalid value for argument 'value', must not be None when specifying optlen"
                )
            self._sock.setsockopt(level, optname, value)
        else:
            if value is not None:
                raise TypeError(
                    f"invalid value for argument 'value': {value!r}, must be None when "
                    "specifying optlen"
                )
            self._sock.setsockopt(level, optname, None, optlen)

    def listen(self, backlog: int = min(_stdlib_socket.SOMAXCONN, 128)) -> None:
        self._sock.listen(backlog)

    def get_inheritable(self) -> bool:
        return self._sock.get_inheritable()

    def set_inheritable(self, inheritable: bool) -> None:
        self._sock.set_inheritable(inheritable)

    @property
    def family(self) -> _stdlib_socket.AddressFamily:
        return self._sock.family

    @property
    def type(self) -> _stdlib_socket.SocketKind:
        return self._sock.type

    @property
    def proto(self) -> int:
        return self._sock.proto

    @property
    def did_shutdown_SHUT_WR(self) -> bool:
        return self._did_shutdown_SHUT_WR

    def __repr__(self) -> str:
        return repr(self._sock).replace("socket.socket", "nursery_io.socket.socket", 1)

    def dup(self) -> SocketType:
        """A new socket object for a duplicate of this socket's fd."""
        return _SocketType(self._sock.dup())

    def close(self) -> None:
        """Close the socket; tasks waiting on it get :class:`~nursery_io.ClosedResourceError`.

        Idempotent, and fine to call outside a run.
        """
        if self._sock.fileno() != -1:
            if in_run():
                notify_closing(self._sock)
            self._sock.close()

    def shutdown(self, flag: int) -> None:
        self._sock.shutdown(flag)
        # Only once it succeeded.
        if flag in (_stdlib_socket.SHUT_WR, _stdlib_socket.SHUT_RDWR):
            self._did_shutdown_SHUT_WR = True

    def is_readable(self) -> bool:
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        return bool(poller.poll(0))

    # ----- asynchronous operations -----
    async def wait_writable(self) -> None:
        await wait_writable(self._sock)

    async def bind(self, address: AddressFormat) -> None:
        """Bind to ``address``, resolving a hostname first if needed. A checkpoint."""
        address = await _resolve_address(self._sock, address, local=True)
        if self._sock.family == _stdlib_socket.AF_UNIX and address and address[0] not in (0, "\0"):
            # A filesystem path: creating the socket file may touch a slow disk.
            from .._threads import to_thread_run_sync

            await to_thread_run_sync(self._sock.bind, address)
            return
        # bind() never blocks on IP sockets in practice.
        await checkpoint()
        self._sock.bind(address)

    async def accept(self) -> tuple[SocketType, AddressFormat]:
        """Wait for a connection; returns ``(socket, address)`` like the stdlib."""
        sock, address = await call_when_ready(wait_readable, self._sock, self._sock.accept)
        return _SocketType(sock), address

    async def connect(self, address: AddressFormat) -> None:
        """Connect to ``address`` (resolving a hostname if needed).

        A non-blocking connect cannot be taken back once started, so if this call is
        cancelled the socket is closed: it would be in an unknown state anyway.
        """
        sock = self._sock
        try:
            address = await _resolve_address(sock, address, local=False)
            await checkpoint_if_cancelled()
            try:
                # A non-blocking connect on Linux doesn't fail with EINTR, so
                # InterruptedError isn't handled specially: the connect has either started
                # or failed outright.
                sock.connect(address)
            except BlockingIOError as exc:
                if exc.errno == errno.EAGAIN and sock.family == _stdlib_socket.AF_UNIX:
                    # A full AF_UNIX listen backlog: nothing started, try again later.
                    await self._retry_unix_connect(address)
                    return
            except BaseException:
                await cancel_shielded_checkpoint()
                raise
            else:
                await cancel_shielded_checkpoint()
                return
            # The connection is under way; writability reports that it finished.
            await wait_writable(sock)
        except Cancelled:
            self.close()
            raise
        error = sock.getsockopt(_stdlib_socket.SOL_SOCKET, _stdlib_socket.SO_ERROR)
        if error:
            raise OSError(error, f"Error connecting to {address!r}: {os.strerror(error)}")

    async def _retry_unix_connect(self, address: AddressFormat) -> None:
        # Nothing signals "the accept queue has room again" (an unconnected AF_UNIX
        # socket polls as writable and hung-up at once), so retry with a growing pause.
        delay = 0.0005
        while True:
            await sleep(delay)
            try:
                self._sock.connect(address)
            except BlockingIOError:
                delay = min(delay * 2, 0.05)
            else:
                return

    async def recv(self, buflen: int, flags: int = 0, /) -> bytes:
        return await call_when_ready(wait_readable, self._sock, self._sock.recv, buflen, flags)

    async def recv_into(self, buffer: Buffer, nbytes: int = 0, flags: int = 0) -> int:
        return await call_when_ready(
            wait_readable, self._sock, self._sock.recv_into, buffer, nbytes, flags
        )

    async def recvfrom(self, bufsize: int, flags: int = 0, /) -> tuple[bytes, AddressFormat]:
        return await call_when_ready(wait_readable, self._sock, self._sock.recvfrom, bufsize, flags)

    async def recvfrom_into(
        self, buffer: Buffer, nbytes: int = 0, flags: int = 0
    ) -> tuple[int, AddressFormat]:
        return await call_when_ready(
            wait_readable, self._sock, self._sock.recvfrom_into, buffer, nbytes, flags
        )

    async def recvmsg(
        self, bufsize: int, ancbufsize: int = 0, flags: int = 0, /
    ) -> tuple[bytes, list[tuple[int, int, bytes]], int, AddressFormat]:
        return await call_when_ready(
            wait_readable, self._sock, self._sock.recvmsg, bufsize, ancbufsize, flags
        )

    async def recvmsg_into(
        self, buffers: Iterable[Buffer], ancbufsize: int = 0, flags: int = 0, /
    ) -> tuple[int, list[tuple[int, int, bytes]], int, AddressFormat]:
        # Materialise the iterable once: a retry after blocking must see the same buffers.
        return await call_when_ready(
            wait_readable, self._sock, self._sock.recvmsg_into, list(buffers), ancbufsize, flags
        )

    async def send(self, bytes: Buffer, flags: int = 0, /) -> int:
        return await call_when_ready(wait_writable, self._sock, self._sock.send, bytes, flags)

    @overload
    async def sendto(self, data: Buffer, address: AddressFormat, /) -> int: ...
    @overload
    async def sendto(self, data: Buffer, flags: int, address: AddressFormat, /) -> int: ...
    async def sendto(self, *args: Any) -> int:
        """``sendto(data, address)`` or ``sendto(data, flags, address)``; resolves names."""
        if len(args) == 2:
            data, address = args
            flags = 0
        elif len(args) == 3:
            data, flags, address = args
        else:
            raise TypeError(f"sendto() takes 2 or 3 arguments ({len(args)} given)")
        address = await _resolve_address(self._sock, address, local=False)
        return await call_when_ready(
            wait_writable, self._sock, self._sock.sendto, data, flags, address
        )

    async def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        # Documented on SocketType.sendfile (inspect.getdoc and help() find it there).
        from ._sendfile import sock_sendfile

        return await sock_sendfile(self, file, offset, count)

    async def sendmsg(
        self,
        buffers: Iterable[Buffer],
        ancdata: Iterable[tuple[int, int, Buffer]] = (),
        flags: int = 0,
        address: AddressFormat | None = None,
        /,
    ) -> int:
        """Like :meth:`socket.socket.sendmsg`; resolves ``address`` if one is given."""
        buffers = list(buffers)
        ancdata = list(ancdata)
        if address is None:
            return await call_when_ready(
                wait_writable, self._sock, self._sock.sendmsg, buffers, ancdata, flags
            )
        address = await _resolve_address(self._sock, address, local=False)
        return await call_when_ready(
            wait_writable, self._sock, self._sock.sendmsg, buffers, ancdata, flags, address
        )
