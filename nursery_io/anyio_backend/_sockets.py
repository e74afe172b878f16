"""anyio's socket streams, listeners and datagram sockets over ``nursery_io.socket``.

Each object keeps two views of one socket: the stdlib ``socket.socket`` (anyio's
``_raw_socket``, for its extra attributes) and the :class:`nursery_io.socket.SocketType`
wrapping that very object, which does the waiting. nursery_io's errors become anyio's:
a socket closed under a waiting task -> ``ClosedResourceError``; any other ``OSError``
from the connection -> ``BrokenResourceError`` (chained); a second concurrent receiver
or sender -> ``BusyResourceError`` (anyio's ``ResourceGuard``).
"""

from __future__ import annotations

import array
import socket
from collections.abc import Collection
from io import IOBase
from typing import Any, NoReturn

import anyio
import anyio.abc
from anyio import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    EndOfStream,
    ResourceGuard,
)
from anyio._core._sockets import convert_ipv6_sockaddr
from anyio.abc import IPSockAddrType, UDPPacketType, UNIXDatagramPacketType

import nursery_io
import nursery_io.socket as nsocket
from nursery_io import _core

__all__ = [
    "ConnectedUDPSocket",
    "ConnectedUNIXDatagramSocket",
    "SocketStream",
    "TCPSocketListener",
    "UDPSocket",
    "UNIXDatagramSocket",
    "UNIXSocketListener",
    "UNIXSocketStream",
    "adopt",
]

_RECEIVE_SIZE = 65536


def adopt(sock: nsocket.SocketType) -> socket.socket:
    """Turn a nursery_io socket (from ``accept``) into a stdlib socket we hold ourselves.

    nursery_io's socket objects don't expose the stdlib object inside, and anyio needs one;
    so take over the fd. (The nursery_io object is left detached and harmless.)
    """
    family, kind, proto = sock.family, sock.type, sock.proto
    return socket.socket(family, kind, proto, fileno=sock.detach())


class _SocketWrapper:
    """The common part: the two views of the socket, closing, error translation."""

    def __init__(self, raw: socket.socket) -> None:
        self._raw = raw
        # Same object underneath: nursery_io just makes it non-blocking and waits on it.
        self._sock = nsocket.from_stdlib_socket(raw)
        self._closed = False

    @property
    def _raw_socket(self) -> socket.socket:
        return self._raw

    async def aclose(self) -> None:
        self._closed = True
        # Wakes any task blocked on the socket (it gets ClosedResourceError).
        self._sock.close()
        await _core.checkpoint()

    def _translate(self, exc: BaseException) -> NoReturn:
        if isinstance(exc, nursery_io.ClosedResourceError):
            raise ClosedResourceError from exc
        if self._closed and self._raw.fileno() < 0:
            # The OSError (EBADF) is only a symptom of our own aclose().
            raise ClosedResourceError from None
        if isinstance(exc, nursery_io.BusyResourceError):
            raise BusyResourceError("using") from exc
        if isinstance(exc, OSError):
            raise BrokenResourceError from exc
        raise exc


class SocketStream(_SocketWrapper, anyio.abc.SocketStream):
    def __init__(self, raw: socket.socket) -> None:
        super().__init__(raw)
        self._receive_guard = ResourceGuard("reading from")
        self._send_guard = ResourceGuard("writing to")

    async def receive(self, max_bytes: int = _RECEIVE_SIZE) -> bytes:
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        with self._receive_guard:
            try:
                data = await self._sock.recv(max_bytes)
            except BaseException as exc:
                self._translate(exc)
        if not data:
            raise EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        with self._send_guard, memoryview(item) as view:
            sent = 0
            while sent < len(view):
                try:
                    sent += await self._sock.send(view[sent:])
                except BaseException as exc:
                    self._translate(exc)

    async def send_eof(self) -> None:
        self._sock.shutdown(socket.SHUT_WR)


class UNIXSocketStream(SocketStream, anyio.abc.UNIXSocketStream):
    async def send_fds(self, message: bytes, fds: Collection[int | IOBase]) -> None:
        if not message:
            raise ValueError("message must not be empty")
        if not fds:
            raise ValueError("fds must not be empty")
        numbers = array.array("i", [fd if isinstance(fd, int) else fd.fileno() for fd in fds])
        ancillary: list[tuple[int, int, Any]] = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, numbers)]
        await _core.checkpoint()
        with self._send_guard, memoryview(message) as view:
            sent = 0
            while sent < len(view):
                try:
                    sent += await self._sock.sendmsg([view[sent:]], ancillary)
                except BaseException as exc:
                    self._translate(exc)
                # The descriptors travel with the first chunk that got through.
                ancillary = []

    async def receive_fds(self, msglen: int, maxfds: int) -> tuple[bytes, list[int]]:
        if not isinstance(msglen, int) or msglen < 0:
            raise ValueError("msglen must be a non-negative integer")
        if not isinstance(maxfds, int) or maxfds < 1:
            raise ValueError("maxfds must be a positive integer")
        fds = array.array("i")
        await _core.checkpoint()
        with self._receive_guard:
            try:
                message, ancillary, _flags, _address = await self._sock.recvmsg(
                    msglen, socket.CMSG_LEN(maxfds * fds.itemsize)
                )
            except BaseException as exc:
                self._translate(exc)
        if not message and not ancillary:
            raise EndOfStream
        for level, kind, data in ancillary:
            if level != socket.SOL_SOCKET or kind != socket.SCM_RIGHTS:
                raise RuntimeError(
                    f"Received unexpected ancillary data; message = {message!r}, "
                    f"cmsg_level = {level}, cmsg_type = {kind}"
                )
            # A truncated control message may end in a partial int: drop it.
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        return message, list(fds)


class TCPSocketListener(_SocketWrapper, anyio.abc.SocketListener):
    def __init__(self, raw: socket.socket) -> None:
        super().__init__(raw)
        self._accept_guard = ResourceGuard("accepting connections from")

    async def accept(self) -> SocketStream:
        with self._accept_guard:
            try:
                conn, _address = await self._sock.accept()
            except BaseException as exc:
                self._translate(exc)
        raw = adopt(conn)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return SocketStream(raw)


class UNIXSocketListener(_SocketWrapper, anyio.abc.SocketListener):
    def __init__(self, raw: socket.socket) -> None:
        super().__init__(raw)
        self._accept_guard = ResourceGuard("accepting connections from")

    async def accept(self) -> UNIXSocketStream:
        with self._accept_guard:
            try:
                conn, _address = await self._sock.accept()
            except BaseException as exc:
                self._translate(exc)
        return UNIXSocketStream(adopt(conn))


class _DatagramWrapper(_SocketWrapper):
    def __init__(self, raw: socket.socket) -> None:
        super().__init__(raw)
        self._receive_guard = ResourceGuard("reading from")
        self._send_guard = ResourceGuard("writing to")

    async def _recv(self) -> bytes:
        with self._receive_guard:
            try:
                return await self._sock.recv(_RECEIVE_SIZE)
            except BaseException as exc:
                self._translate(exc)

    async def _recvfrom(self) -> tuple[bytes, Any]:
        with self._receive_guard:
            try:
                return await self._sock.recvfrom(_RECEIVE_SIZE)
            except BaseException as exc:
                self._translate(exc)

    async def _send(self, data: bytes) -> None:
        with self._send_guard:
            try:
                await self._sock.send(data)
            except BaseException as exc:
                self._translate(exc)

    async def _sendto(self, data: bytes, address: Any) -> None:
        with self._send_guard:
            try:
                await self._sock.sendto(data, address)
            except BaseException as exc:
                self._translate(exc)


class UDPSocket(_DatagramWrapper, anyio.abc.UDPSocket):
    async def receive(self) -> tuple[bytes, IPSockAddrType]:
        data, address = await self._recvfrom()
        return data, convert_ipv6_sockaddr(address)

    async def send(self, item: UDPPacketType) -> None:
        data, address = item
        await self._sendto(data, address)


class ConnectedUDPSocket(_DatagramWrapper, anyio.abc.ConnectedUDPSocket):
    async def receive(self) -> bytes:
        return await self._recv()

    async def send(self, item: bytes) -> None:
        await self._send(item)


class UNIXDatagramSocket(_DatagramWrapper, anyio.abc.UNIXDatagramSocket):
    async def receive(self) -> UNIXDatagramPacketType:
        data, address = await self._recvfrom()
        return data, address

    async def send(self, item: UNIXDatagramPacketType) -> None:
        data, path = item
        await self._sendto(data, path)


class ConnectedUNIXDatagramSocket(_DatagramWrapper, anyio.abc.ConnectedUNIXDatagramSocket):
    async def receive(self) -> bytes:
        return await self._recv()

    async def send(self, item: bytes) -> None:
        await self._send(item)
