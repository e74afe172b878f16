"""DTLS 1.2 over a UDP socket: :class:`DTLSEndpoint` and :class:`DTLSChannel`.

The protocol's cryptography is OpenSSL's, through pyOpenSSL, run over memory BIOs: an
``SSL.Connection`` never sees the socket. Everything around it is done here, because
OpenSSL's DTLS support assumes it owns a socket and a wall-clock timer:

* **One socket, many peers.** A :class:`DTLSEndpoint` owns one UDP socket. A background
  system task reads every datagram and routes it, by source address, into the inbox of
  the :class:`DTLSChannel` for that peer (a bounded buffer: overflow is counted and
  dropped, as UDP would).
* **Stateless cookie exchange.** A server allocates nothing for a new peer until the peer
  proves it can receive at its claimed address (RFC 6347 section 4.2.1): its first
  ClientHello is answered with a HelloVerifyRequest carrying a cookie, an HMAC over the
  address, the ClientHello and the current 30 second period, under a per-endpoint random
  key. Only a ClientHello that echoes a valid cookie creates a channel. That keeps a
  spoofed source address from turning the server into a traffic amplifier.
* **Retransmission and fragmentation.** During the handshake each side sends a *flight*
  of messages and waits for the peer's next flight. We take OpenSSL's flight apart into
  handshake messages, and re-pack them into datagrams that fit the handshake MTU with
  fresh record numbers; if no answer comes within the retransmit timeout we send them
  again, doubling the timeout each time (up to 60 s) and falling back to the protocol's
  minimum MTU after two losses in a row. OpenSSL's own retransmissions (driven by its
  wall clock) are recognised and discarded.

The bytes on the wire (records, cookies, flights) are handled in ``_dtls_records``; this
module holds the endpoint, the channels and the handshake's timing.

pyOpenSSL is imported lazily, the first time an endpoint is created, so that programs that
do not use DTLS do not need it installed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket as _stdlib_socket
import warnings
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import FrozenInstanceError
from typing import TYPE_CHECKING, Any, Final, TypeVarTuple

from .._channel import MemoryReceiveChannel, MemorySendChannel, open_memory_channel
from .._core import (
    TASK_STATUS_IGNORED,
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    EndOfChannel,
    TaskStatus,
    WouldBlock,
    checkpoint,
    current_token,
    open_nursery,
    spawn_system_task,
)
from .._core._exceptions import no_public_constructor_error
from .._core._util import ClosesOnExit, final
from .._sync import Lock
from .._timeouts import move_on_after
from ..abc import Channel
from ._dtls_records import (
    ALERT,
    COOKIE_KEY_SIZE,
    FlightPacker,
    FlightPart,
    HandshakeMessage,
    MalformedPacket,
    PlainRecord,
    cookie_is_valid,
    decode_flight,
    hello_verify_request,
    in_epoch_zero,
    looks_like_client_hello,
    new_cookie,
    parse_client_hello,
)
from ._ssl import NeedHandshakeError

if TYPE_CHECKING:
    from typing import Self

    from OpenSSL import SSL

    from ._socket import SocketType

__all__ = ["DTLSChannel", "DTLSChannelStatistics", "DTLSEndpoint"]

PosArgT = TypeVarTuple("PosArgT")


# ----- sizes -----------------------------------------------------------------------------

# The largest UDP payload (65535 minus the 8 byte UDP header).
_MAX_DATAGRAM: Final = 65527


def _ip_udp_header_size(sock: SocketType) -> int:
    return 28 if sock.family == _stdlib_socket.AF_INET else 48


def _default_mtu(sock: SocketType) -> int:
    """Ciphertext MTU assumed until told otherwise: Ethernet's 1500 byte frames."""
    return 1500 - _ip_udp_header_size(sock)


def _minimum_mtu(sock: SocketType) -> int:
    """The smallest payload every IPv4 (576) or IPv6 (1280) path must carry."""
    return (576 if sock.family == _stdlib_socket.AF_INET else 1280) - _ip_udp_header_size(sock)


def _drain(read: Callable[[int], bytes]) -> bytes:
    """Everything ``read`` (``bio_read`` or ``read``) has to give right now."""
    from OpenSSL import SSL

    chunks: list[bytes] = []
    while True:
        try:
            chunks.append(read(16384))
        except SSL.WantReadError:
            return b"".join(chunks)


def _prepare_context(context: SSL.Context) -> None:
    from OpenSSL import SSL

    # A memory BIO has no MTU to query; renegotiation is not supported (a fresh handshake
    # does the same job in DTLS).
    context.set_options(SSL.OP_NO_QUERY_MTU | SSL.OP_NO_RENEGOTIATION)


def _route_key(address: Any) -> Any:
    """The key a peer's channel is filed under: the address as ``recvfrom`` reports it.

    Numeric hosts are put in canonical form and IPv6's flow info is ignored, so that
    ``connect(("::1", port))`` finds the replies that arrive from ``("::1", port, 0, 0)``.
    """
    if not isinstance(address, tuple) or len(address) < 2 or not isinstance(address[0], str):
        return address
    host = address[0]
    for family in (_stdlib_socket.AF_INET, _stdlib_socket.AF_INET6):
        try:
            host = _stdlib_socket.inet_ntop(family, _stdlib_socket.inet_pton(family, host))
        except (OSError, ValueError):
            continue
        break
    scope_id = address[3] if len(address) >= 4 else 0
    return (host, address[1], scope_id)


# ----- the public classes ------------------------------------------------------------------


@final
class DTLSChannelStatistics:
    """Statistics of one :class:`DTLSChannel` (immutable).

    ``incoming_packets_dropped_in_trio``: datagrams from this peer that arrived while the
    channel's incoming buffer (``incoming_packets_buffer``) was full, and were dropped.
    (The name is Trio's.)
    """

    __slots__ = ("__weakref__", "incoming_packets_dropped_in_trio")
    __match_args__ = ("incoming_packets_dropped_in_trio",)

    incoming_packets_dropped_in_trio: int

    def __init__(self, incoming_packets_dropped_in_trio: int) -> None:
        object.__setattr__(
            self, "incoming_packets_dropped_in_trio", incoming_packets_dropped_in_trio
        )

    def __repr__(self) -> str:
        dropped = self.incoming_packets_dropped_in_trio
        return f"DTLSChannelStatistics(incoming_packets_dropped_in_trio={dropped!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not DTLSChannelStatistics:
            return NotImplemented
        return self.incoming_packets_dropped_in_trio == other.incoming_packets_dropped_in_trio

    def __hash__(self) -> int:
        return hash((DTLSChannelStatistics, self.incoming_packets_dropped_in_trio))

    # Trio's (attrs) wording for an attempt to change a frozen instance.
    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError("can't set attribute")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError("can't set attribute")


_REPLACED_MESSAGE: Final = "peer tore down this connection to start a new one"


@final
class DTLSChannel(Channel[bytes], ClosesOnExit):
    """One DTLS association with one peer, over a :class:`DTLSEndpoint`'s socket.

    Get one from :meth:`DTLSEndpoint.connect` or from :meth:`DTLSEndpoint.serve`; there is
    no public constructor. ``endpoint`` is the endpoint it belongs to, ``peer_address``
    the peer's address.
    """

    endpoint: DTLSEndpoint
    peer_address: Any
    _conn: SSL.Connection
    _inbox_send: MemorySendChannel[bytes]
    _inbox_receive: MemoryReceiveChannel[bytes]
    _packets_dropped: int
    # (cookie, rest of the ClientHello) that created a server-side channel, to tell the
    # client's retransmissions from a brand-new handshake.
    _hello_id: tuple[bytes, bytes] | None
    _handshake_done: bool
    _handshake_lock: Lock
    _packer: FlightPacker
    # The handshake flight we are waiting for an answer to.
    _current_flight: list[FlightPart]
    # Our last handshake flight, kept to resend if the peer shows it never got it.
    _final_flight: list[FlightPart]
    _replaced: bool
    _closed: bool
    _handshake_mtu: int

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise no_public_constructor_error("nursery_io.DTLSChannel")

    @classmethod
    def _create(cls, endpoint: DTLSEndpoint, peer_address: Any, context: SSL.Context) -> Self:
        self = cls.__new__(cls)
        self.endpoint = endpoint
        self.peer_address = peer_address
        from OpenSSL import SSL

        self._conn = SSL.Connection(context)
        self._inbox_send, self._inbox_receive = open_memory_channel[bytes](
            endpoint.incoming_packets_buffer
        )
        self._packets_dropped = 0
        self._hello_id = None
        self._handshake_done = False
        self._handshake_lock = Lock()
        self._packer = FlightPacker()
        self._current_flight = []
        self._final_flight = []
        self._replaced = False
        self._closed = False
        self._handshake_mtu = 0
        # OpenSSL needs an MTU before it can handshake over a memory BIO.
        self.set_ciphertext_mtu(_default_mtu(endpoint.socket))
        return self

    def __repr__(self) -> str:
        return f"<nursery_io.DTLSChannel to {self.peer_address!r} at {id(self):#x}>"

    # ----- association state -----

    def _mark_replaced(self) -> None:
        """A newer association with the same address took over: no more packets come."""
        self._replaced = True
        self._inbox_send.close()

    def _raise_if_replaced(self) -> None:
        if self._replaced:
            raise BrokenResourceError(_REPLACED_MESSAGE)

    async def _next_datagram(self) -> bytes:
        try:
            return await self._inbox_receive.receive()
        except EndOfChannel:
            raise BrokenResourceError(_REPLACED_MESSAGE) from None
        except ClosedResourceError:
            raise ClosedResourceError from None

    def close(self) -> None:
        """Close this channel: its pending and future ``receive`` calls raise
        :class:`~nursery_io.ClosedResourceError`, as do future ``send`` calls.

        The socket belongs to the endpoint and stays open. Idempotent. A channel is also a
        (synchronous or asynchronous) context manager.
        """
        if self._closed:
            return
        self._closed = True
        channels = self.endpoint._channels
        key = _route_key(self.peer_address)
        if channels.get(key) is self:
            del channels[key]
        self._inbox_receive.close()

    async def aclose(self) -> None:
        """:meth:`close`, plus a checkpoint."""
        self.close()
        await checkpoint()

    # ----- the handshake -----

    async def _transmit(self, flight: list[FlightPart]) -> None:
        endpoint = self.endpoint
        for datagram in self._packer.pack(flight, self._handshake_mtu):
            async with endpoint._send_lock:
                await endpoint.socket.sendto(datagram, self.peer_address)

    async def _retransmit_final_flight(self) -> None:
        await self._transmit(self._final_flight)

    def _take_flight(self, current: list[FlightPart] | None) -> list[FlightPart]:
        """What OpenSSL wants sent now, minus its own timer-driven retransmissions."""
        flight = decode_flight(_drain(self._conn.bio_read))
        if (
            flight
            and current
            and isinstance(flight[0], HandshakeMessage)
            and isinstance(current[0], HandshakeMessage)
            and flight[0].msg_seq == current[0].msg_seq
        ):
            return []
        return flight

    async def do_handshake(self, *, initial_retransmit_timeout: float = 1.0) -> None:
        """Perform the DTLS handshake, unless it is already done.

        Optional: ``send`` and ``receive`` do it on first use. Calling it yourself lets
        you bound it with a cancel scope and tell handshake errors apart. Any number of
        tasks may call it at once; one does the work, the others wait for it.

        ``initial_retransmit_timeout`` is how long (seconds) to wait for the peer's answer
        before sending our last flight of messages again; it doubles after every loss,
        up to 60 seconds. About 1.5 times the round-trip time is ideal.
        """
        async with self._handshake_lock:
            if self._handshake_done:
                return
            if self._closed:
                raise ClosedResourceError
            from OpenSSL import SSL

            timeout = initial_retransmit_timeout
            # Consecutive transmissions of the current flight that got no answer in time.
            losses = 0
            self._raise_if_replaced()
            flight = self._current_flight
            if not flight:
                # A client produces its ClientHello here; a server, fed the ClientHello
                # by DTLSEndpoint, its first flight.
                with contextlib.suppress(SSL.WantReadError):
                    self._conn.do_handshake()
                flight = self._take_flight(None)
                if not flight:  # pragma: no cover - OpenSSL reports its failures itself
                    raise SSL.Error("OpenSSL produced no handshake messages")
            # (An earlier call that was cancelled left its flight here: resume with it.)
            while True:
                self._current_flight = flight
                self._raise_if_replaced()
                await self._transmit(flight)
                self.endpoint._ensure_reader()
                with move_on_after(timeout) as timer:
                    while True:
                        self._conn.bio_write(await self._next_datagram())
                        try:
                            self._conn.do_handshake()
                        except SSL.Error:
                            # WantReadError (the peer's flight is incomplete), or a stray
                            # or damaged packet, which OpenSSL merely rejects.
                            pass
                        else:
                            self._handshake_done = True
                            self._current_flight = []
                            # Kept to answer the peer if it never got it (see
                            # DTLSEndpoint._dispatch); may well be empty.
                            self._final_flight = self._take_flight(flight)
                            await self._transmit(self._final_flight)
                            return
                        reply = self._take_flight(flight)
                        if not reply:
                            continue
                        if isinstance(reply[0], PlainRecord) and reply[0].content_type == ALERT:
                            # Sent once, never retransmitted: our flight stays current.
                            await self._transmit(reply)
                            continue
                        flight = reply
                        # RFC 6347 4.2.4.1: keep a backed-off timeout until a flight
                        # goes through without loss.
                        if losses == 0:
                            timeout = initial_retransmit_timeout
                        losses = 0
                        break
                if timer.cancelled_caught:
                    timeout = min(2 * timeout, 60.0)
                    losses += 1
                    if losses == 2:
                        # Perhaps the datagrams are too big for the path.
                        self._handshake_mtu = min(
                            self._handshake_mtu, _minimum_mtu(self.endpoint.socket)
                        )

    # ----- data -----

    async def send(self, data: bytes) -> None:
        """Encrypt ``data`` and send it to the peer as one datagram (handshaking first if
        that hasn't happened yet)."""
        if self._closed:
            raise ClosedResourceError
        if not data:
            raise ValueError("openssl doesn't support sending empty DTLS packets")
        if not self._handshake_done:
            await self.do_handshake()
        self._raise_if_replaced()
        self._conn.write(data)
        datagram = _drain(self._conn.bio_read)
        endpoint = self.endpoint
        async with endpoint._send_lock:
            await endpoint.socket.sendto(datagram, self.peer_address)

    async def receive(self) -> bytes:
        """The next datagram's decrypted contents, waiting for one if needed (handshaking
        first if that hasn't happened yet).

        Cancellation-safe, and fine to call from several tasks at once: no datagram is
        lost. Duplicates and stray handshake records are skipped.
        """
        if not self._handshake_done:
            await self.do_handshake()
        while True:
            self._conn.bio_write(await self._next_datagram())
            cleartext = _drain(self._conn.read)
            if cleartext:
                return cleartext

    # ----- MTU and statistics -----

    def set_ciphertext_mtu(self, new_mtu: int) -> None:
        """Set the largest datagram payload (bytes, without IP/UDP headers) that can reach
        the peer.

        Before the handshake, handshake messages are fragmented to fit it (and smaller,
        if losses suggest the path needs it). It also decides :meth:`get_cleartext_mtu`.
        Nothing stops ``send`` from sending bigger datagrams. The default is 1472 on IPv4,
        1452 on IPv6 (a 1500 byte Ethernet frame).
        """
        self._handshake_mtu = new_mtu
        self._conn.set_ciphertext_mtu(new_mtu)

    def get_cleartext_mtu(self) -> int:
        """How much data one ``send`` can carry within the ciphertext MTU. Needs a finished
        handshake (else :class:`~nursery_io.NeedHandshakeError`)."""
        if not self._handshake_done:
            raise NeedHandshakeError
        return self._conn.get_cleartext_mtu()

    def statistics(self) -> DTLSChannelStatistics:
        """A :class:`DTLSChannelStatistics` snapshot for this channel."""
        return DTLSChannelStatistics(self._packets_dropped)


# Errors recvfrom may report for earlier datagrams (ICMP port unreachable and the like):
# they say nothing about the socket itself, so reading goes on.
_TRANSIENT_RECEIVE_ERRORS: Final = frozenset(
    {errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH, errno.ENETUNREACH}
)


async def _read_datagrams(endpoint_ref: weakref.ref[DTLSEndpoint], sock: SocketType) -> None:
    """The endpoint's background reader. It holds the endpoint only weakly, so that an
    endpoint its owner dropped can be collected (its finaliser closes the socket, which
    ends this task)."""
    while True:
        try:
            datagram, address = await sock.recvfrom(_MAX_DATAGRAM)
        except ClosedResourceError:
            return
        except OSError as exc:
            if exc.errno in _TRANSIENT_RECEIVE_ERRORS:
                continue
            # EBADF / ENOTSOCK: the socket was closed under us. Anything else is just as
            # final; the channels see it as silence.
            return
        endpoint = endpoint_ref()
        if endpoint is None:
            return
        await endpoint._dispatch(datagram, address)
        del endpoint


@final
class DTLSEndpoint(ClosesOnExit):
    """A UDP socket carrying DTLS associations with any number of peers, as client
    (:meth:`connect`) and as server (:meth:`serve`).

    ``socket`` must be a ``SOCK_DGRAM`` :mod:`nursery_io.socket` socket; bind it to a
    known port to accept connections. ``incoming_packets_buffer`` is how many received
    datagrams each channel holds until ``receive`` takes them (more are dropped and
    counted in :meth:`DTLSChannel.statistics`). Both are kept as attributes. Close the
    endpoint (or use it as a context manager) to close the socket and every channel.

    Needs pyOpenSSL.
    """

    def __init__(self, socket: SocketType, *, incoming_packets_buffer: int = 10) -> None:
        self._initialized = False
        # Imported here, not at module level: only DTLS users need pyOpenSSL.
        from OpenSSL import SSL  # noqa: F401

        if socket.type != _stdlib_socket.SOCK_DGRAM:
            raise ValueError("DTLS requires a SOCK_DGRAM socket")
        self._token = current_token()
        self.socket = socket
        self.incoming_packets_buffer = incoming_packets_buffer
        # One channel per peer address; a channel nobody references any more just goes.
        self._channels: weakref.WeakValueDictionary[Any, DTLSChannel] = (
            weakref.WeakValueDictionary()
        )
        self._server_context: SSL.Context | None = None
        self._cookie_key: bytes | None = None
        self._new_channels_send: MemorySendChannel[DTLSChannel]
        self._new_channels_receive: MemoryReceiveChannel[DTLSChannel]
        self._new_channels_send, self._new_channels_receive = open_memory_channel[DTLSChannel](
            float("inf")
        )
        # Concurrent sends on one socket would conflict in the I/O layer.
        self._send_lock = Lock()
        self._closed = False
        self._reader_started = False
        self._initialized = True

    def __repr__(self) -> str:
        return f"<nursery_io.DTLSEndpoint on {self.socket!r}>"

    def _ensure_reader(self) -> None:
        # Started lazily: a client socket may have no address until its first send.
        if not self._reader_started:
            spawn_system_task(
                _read_datagrams, weakref.ref(self), self.socket, name="<DTLS datagram reader>"
            )
            self._reader_started = True

    def __del__(self) -> None:
        if not getattr(self, "_initialized", False) or self._closed:
            return
        # Close through the run (if it is still going) so the reader task ends.
        with contextlib.suppress(RuntimeError):
            self._token.run_sync_soon(self.close)
        warnings.warn(
            f"unclosed DTLS endpoint {self!r}", ResourceWarning, source=self, stacklevel=1
        )

    def close(self) -> None:
        """Close the socket and every channel of this endpoint. Idempotent."""
        self._closed = True
        self.socket.close()
        for channel in list(self._channels.values()):
            channel.close()
        self._new_channels_send.close()

    def _raise_if_closed(self) -> None:
        if self._closed:
            raise ClosedResourceError

    # ----- incoming datagrams -----

    async def _dispatch(self, datagram: bytes, address: Any) -> None:
        if looks_like_client_hello(datagram):
            await self._on_client_hello(datagram, address)
            return
        channel = self._channels.get(_route_key(address))
        if channel is None:
            return
        if channel._handshake_done and in_epoch_zero(datagram):
            # The peer is still handshaking although we are done: it missed our last
            # flight. Resend it from here, since nobody may be reading this channel.
            with contextlib.suppress(OSError, ClosedResourceError):
                await channel._retransmit_final_flight()
            return
        try:
            channel._inbox_send.send_nowait(datagram)
        except WouldBlock:
            channel._packets_dropped += 1
        except (ClosedResourceError, BrokenResourceError):
            pass  # replaced or closed meanwhile

    async def _on_client_hello(self, datagram: bytes, address: Any) -> None:
        from OpenSSL import SSL

        context = self._server_context
        if context is None:
            return
        try:
            record_number, cookie, hello_rest = parse_client_hello(datagram)
        except MalformedPacket:
            return
        if self._cookie_key is None:
            self._cookie_key = os.urandom(COOKIE_KEY_SIZE)
        if not cookie_is_valid(self._cookie_key, cookie, address, hello_rest):
            challenge = hello_verify_request(
                record_number, new_cookie(self._cookie_key, address, hello_rest)
            )
            with contextlib.suppress(OSError, ClosedResourceError):
                async with self._send_lock:
                    await self.socket.sendto(challenge, address)
            return
        # The peer proved it receives at ``address``: now it gets state.
        channel = DTLSChannel._create(self, address, context)
        # Our records must be numbered above the HelloVerifyRequest, which reused the
        # first ClientHello's number; this ClientHello's number is higher still.
        channel._packer.next_record_number = record_number + 1
        try:
            channel._conn.bio_write(datagram)
            channel._conn.DTLSv1_listen()
        except SSL.Error:
            return
        key = _route_key(address)
        existing = self._channels.get(key)
        if existing is not None:
            if existing._hello_id == (cookie, hello_rest):
                return  # the client repeating a ClientHello we already took
            existing._mark_replaced()
        channel._hello_id = (cookie, hello_rest)
        self._channels[key] = channel
        with contextlib.suppress(ClosedResourceError, BrokenResourceError):
            self._new_channels_send.send_nowait(channel)

    # ----- public operations -----

    async def serve(
        self,
        ssl_context: SSL.Context,
        async_fn: Callable[[DTLSChannel, *PosArgT], Awaitable[object]],
        *args: *PosArgT,
        task_status: TaskStatus[None] = TASK_STATUS_IGNORED,
    ) -> None:
        """Accept DTLS connections: run ``async_fn(channel, *args)`` in a task for each,
        closing the channel when it returns. Use it with ``nursery.start``.

        The channel has passed the cookie exchange (its ``peer_address`` is genuine); the
        rest of the handshake happens when the handler first uses it. Runs until
        cancelled, or until the endpoint is closed and every handler has returned. Only
        one ``serve`` per endpoint at a time (else
        :class:`~nursery_io.BusyResourceError`).
        """
        self._raise_if_closed()
        if self._server_context is not None:
            raise BusyResourceError("another task is already listening")
        try:
            self.socket.getsockname()
        except OSError:
            raise RuntimeError("DTLS socket must be bound before it can serve") from None
        self._ensure_reader()
        # The cookie exchange is done by us before OpenSSL sees the ClientHello.
        ssl_context.set_cookie_verify_callback(lambda *_: True)
        _prepare_context(ssl_context)

        async def run_handler(channel: DTLSChannel) -> None:
            with channel:
                await async_fn(channel, *args)

        try:
            self._server_context = ssl_context
            task_status.started()
            async with open_nursery() as nursery:
                async for channel in self._new_channels_receive:
                    nursery.start_soon(run_handler, channel)
        finally:
            self._server_context = None

    def connect(self, address: tuple[str, int], ssl_context: SSL.Context) -> DTLSChannel:
        """A new :class:`DTLSChannel` to ``address`` (synchronous: no I/O happens until the
        handshake, which ``send``/``receive`` start or :meth:`DTLSChannel.do_handshake`
        runs). A previous channel of this endpoint to the same address is broken."""
        self._raise_if_closed()
        _prepare_context(ssl_context)
        channel = DTLSChannel._create(self, address, ssl_context)
        channel._conn.set_connect_state()
        key = _route_key(address)
        previous = self._channels.get(key)
        if previous is not None:
            previous._mark_replaced()
        self._channels[key] = channel
        return channel
