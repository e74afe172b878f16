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

pyOpenSSL is imported lazily, the first time an endpoint is created, so that programs that
do not use DTLS do not need it installed.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import os
import socket as _stdlib_socket
import warnings
import weakref
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import FrozenInstanceError, dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TypeAlias, TypeVarTuple

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
    current_time,
    current_token,
    open_nursery,
    spawn_system_task,
)
from .._core._exceptions import no_public_constructor_error
from .._core._util import final
from .._sync import Lock
from .._timeouts import move_on_after
from ..abc import Channel
from ._closing import ClosesOnExit
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


# ----- the record layer --------------------------------------------------------------------
#
# A DTLS record: content type (1 byte), protocol version (2), epoch (2), sequence number
# (6), payload length (2), payload. We keep epoch and sequence number together as one
# 64-bit number: a new epoch is then simply a jump by 2**48.
# A handshake message fragment inside a record: message type (1), whole message length
# (3), message sequence number (2), fragment offset (3), fragment length (3), fragment.

_CHANGE_CIPHER_SPEC: Final = 20
_ALERT: Final = 21
_HANDSHAKE: Final = 22
_CLIENT_HELLO: Final = 1
_HELLO_VERIFY_REQUEST: Final = 3
# HelloVerifyRequest always carries DTLS 1.0's version number (RFC 6347 4.2.1).
_DTLS_1_0: Final = b"\xfe\xff"
_RECORD_HEADER_SIZE: Final = 13
_FRAGMENT_HEADER_SIZE: Final = 12
_SEQUENCE_BITS: Final = 48


class _MalformedPacket(Exception):
    """Raised by the parsers below, and only this, whatever bytes arrive."""


class _Record(NamedTuple):
    content_type: int
    version: bytes
    epoch_and_sequence: int
    payload: bytes


class _Fragment(NamedTuple):
    msg_type: int
    msg_length: int
    msg_seq: int
    offset: int
    data: bytes


def _iter_records(datagram: bytes) -> Iterator[_Record]:
    position = 0
    while position < len(datagram):
        header = datagram[position : position + _RECORD_HEADER_SIZE]
        if len(header) < _RECORD_HEADER_SIZE:
            raise _MalformedPacket("truncated record header")
        length = int.from_bytes(header[11:13], "big")
        start = position + _RECORD_HEADER_SIZE
        payload = datagram[start : start + length]
        if len(payload) != length:
            raise _MalformedPacket("record shorter than its length field")
        position = start + length
        yield _Record(header[0], header[1:3], int.from_bytes(header[3:11], "big"), payload)


def _encode_record(
    content_type: int, version: bytes, epoch_and_sequence: int, payload: bytes
) -> bytes:
    return (
        bytes((content_type,))
        + version
        + epoch_and_sequence.to_bytes(8, "big")
        + len(payload).to_bytes(2, "big")
        + payload
    )


def _parse_fragment(payload: bytes) -> _Fragment:
    if len(payload) < _FRAGMENT_HEADER_SIZE:
        raise _MalformedPacket("truncated handshake header")
    data = payload[_FRAGMENT_HEADER_SIZE:]
    if len(data) != int.from_bytes(payload[9:12], "big"):
        raise _MalformedPacket("fragment length does not match the record")
    return _Fragment(
        msg_type=payload[0],
        msg_length=int.from_bytes(payload[1:4], "big"),
        msg_seq=int.from_bytes(payload[4:6], "big"),
        offset=int.from_bytes(payload[6:9], "big"),
        data=data,
    )


def _encode_fragment(
    msg_type: int, msg_length: int, msg_seq: int, offset: int, data: bytes
) -> bytes:
    return (
        bytes((msg_type,))
        + msg_length.to_bytes(3, "big")
        + msg_seq.to_bytes(2, "big")
        + offset.to_bytes(3, "big")
        + len(data).to_bytes(3, "big")
        + data
    )


def _looks_like_client_hello(datagram: bytes) -> bool:
    """A cheap first test: the first record is a handshake record holding a ClientHello."""
    return (
        len(datagram) > _RECORD_HEADER_SIZE
        and datagram[0] == _HANDSHAKE
        and datagram[_RECORD_HEADER_SIZE] == _CLIENT_HELLO
    )


def _in_epoch_zero(datagram: bytes) -> bool:
    """Whether the (first) record is unencrypted, i.e. from the initial handshake."""
    return datagram[3:5] == b"\x00\x00"


def _parse_client_hello(datagram: bytes) -> tuple[int, bytes, bytes]:
    """``(record number, cookie, the ClientHello without its cookie)``.

    The ClientHello must be the first record, and whole: reassembling fragments would mean
    keeping state for a peer that has not proven its address yet.
    """
    try:
        record = next(_iter_records(datagram))
        fragment = _parse_fragment(record.payload)
        if fragment.msg_type != _CLIENT_HELLO:
            raise _MalformedPacket("not a ClientHello")
        if fragment.offset != 0 or len(fragment.data) != fragment.msg_length:
            raise _MalformedPacket("fragmented ClientHello")
        body = fragment.data
        # client_version (2), random (32), session_id (length-prefixed), cookie
        # (length-prefixed), then the rest.
        cookie_length_at = 34 + 1 + body[34]
        cookie_length = body[cookie_length_at]
        cookie = body[cookie_length_at + 1 : cookie_length_at + 1 + cookie_length]
        if len(cookie) != cookie_length:
            raise _MalformedPacket("truncated cookie")
        # A client answering a HelloVerifyRequest repeats its ClientHello with the cookie
        # added and a new record number: the cookie covers everything else.
        rest = body[:cookie_length_at] + body[cookie_length_at + 1 + cookie_length :]
    except (IndexError, StopIteration) as exc:
        raise _MalformedPacket("malformed ClientHello") from exc
    return record.epoch_and_sequence, cookie, rest


# ----- cookies -----------------------------------------------------------------------------

_COOKIE_PERIOD: Final = 30.0  # seconds; a cookie stays valid for one to two periods
_COOKIE_KEY_SIZE: Final = 32
_COOKIE_SALT_SIZE: Final = 8
# DTLS 1.0's maximum cookie length: 8 bytes of salt and 24 of truncated HMAC-SHA256.
_COOKIE_SIZE: Final = 32


def _cookie_period() -> int:
    return int(current_time() // _COOKIE_PERIOD)


def _compute_cookie(key: bytes, salt: bytes, period: int, address: Any, hello_rest: bytes) -> bytes:
    mac = hmac.new(key, digestmod="sha256")
    # Length-prefix every field, so that no two different inputs hash the same bytes.
    fields = [salt, period.to_bytes(8, "big"), *(str(part).encode() for part in address)]
    for field in [*fields, hello_rest]:
        mac.update(len(field).to_bytes(8, "big"))
        mac.update(field)
    return (salt + mac.digest())[:_COOKIE_SIZE]


def _new_cookie(key: bytes, address: Any, hello_rest: bytes) -> bytes:
    salt = os.urandom(_COOKIE_SALT_SIZE)
    return _compute_cookie(key, salt, _cookie_period(), address, hello_rest)


def _cookie_is_valid(key: bytes, cookie: bytes, address: Any, hello_rest: bytes) -> bool:
    if len(cookie) <= _COOKIE_SALT_SIZE:
        return False
    salt = cookie[:_COOKIE_SALT_SIZE]
    period = _cookie_period()
    # Check both periods unconditionally, so the timing says nothing about which matched.
    matches_now = hmac.compare_digest(
        cookie, _compute_cookie(key, salt, period, address, hello_rest)
    )
    matches_before = hmac.compare_digest(
        cookie, _compute_cookie(key, salt, max(period - 1, 0), address, hello_rest)
    )
    return matches_now | matches_before


def _hello_verify_request(client_record_number: int, cookie: bytes) -> bytes:
    # Like OpenSSL: the record number is the ClientHello's, the message number is 0.
    body = _DTLS_1_0 + bytes((len(cookie),)) + cookie
    message = _encode_fragment(_HELLO_VERIFY_REQUEST, len(body), 0, 0, body)
    return _encode_record(_HANDSHAKE, _DTLS_1_0, client_record_number, message)


# ----- handshake flights -------------------------------------------------------------------


@dataclass
class _HandshakeMessage:
    """An unencrypted handshake message, reassembled: we fragment it to fit the MTU."""

    version: bytes
    msg_type: int
    msg_seq: int
    body: bytearray


@dataclass
class _PlainRecord:
    """A ChangeCipherSpec or alert: one small unencrypted record, never fragmented."""

    version: bytes
    content_type: int
    payload: bytes


@dataclass
class _SealedRecord:
    """An encrypted handshake record (Finished): sent exactly as OpenSSL made it."""

    record: bytes


_FlightPart: TypeAlias = _HandshakeMessage | _PlainRecord | _SealedRecord


def _decode_flight(output: bytes) -> list[_FlightPart]:
    """Take OpenSSL's outgoing handshake bytes apart into messages."""
    parts: list[_FlightPart] = []
    by_seq: dict[int, _HandshakeMessage] = {}
    for record in _iter_records(output):
        if record.epoch_and_sequence >> _SEQUENCE_BITS:
            parts.append(
                _SealedRecord(
                    _encode_record(
                        record.content_type,
                        record.version,
                        record.epoch_and_sequence,
                        record.payload,
                    )
                )
            )
        elif record.content_type != _HANDSHAKE:
            parts.append(_PlainRecord(record.version, record.content_type, record.payload))
        else:
            fragment = _parse_fragment(record.payload)
            message = by_seq.get(fragment.msg_seq)
            if message is None:
                message = _HandshakeMessage(
                    record.version,
                    fragment.msg_type,
                    fragment.msg_seq,
                    bytearray(fragment.msg_length),
                )
                by_seq[fragment.msg_seq] = message
                parts.append(message)
            message.body[fragment.offset : fragment.offset + len(fragment.data)] = fragment.data
    return parts


class _FlightPacker:
    """Packs flights into datagrams, numbering the unencrypted records it writes."""

    def __init__(self) -> None:
        self.next_record_number = 0

    def _take_number(self) -> int:
        number = self.next_record_number
        self.next_record_number += 1
        return number

    def pack(self, flight: list[_FlightPart], mtu: int) -> list[bytes]:
        datagrams: list[bytes] = []
        current = bytearray()

        def finish_datagram() -> None:
            nonlocal current
            if current:
                datagrams.append(bytes(current))
                current = bytearray()

        for part in flight:
            if isinstance(part, _SealedRecord):
                if len(current) + len(part.record) > mtu:
                    finish_datagram()
                current += part.record
            elif isinstance(part, _PlainRecord):
                if len(current) + _RECORD_HEADER_SIZE + len(part.payload) > mtu:
                    finish_datagram()
                current += _encode_record(
                    part.content_type, part.version, self._take_number(), part.payload
                )
            else:
                offset = 0
                # An empty message still goes out, as one empty fragment.
                while offset < len(part.body) or offset == 0:
                    room = mtu - len(current) - _RECORD_HEADER_SIZE - _FRAGMENT_HEADER_SIZE
                    if room <= 0 and current:
                        finish_datagram()
                        continue
                    piece = bytes(part.body[offset : offset + max(room, 1)])
                    fragment = _encode_fragment(
                        part.msg_type, len(part.body), part.msg_seq, offset, piece
                    )
                    current += _encode_record(
                        _HANDSHAKE, part.version, self._take_number(), fragment
                    )
                    offset += len(piece)
                    if not piece:
                        break
        finish_datagram()
        return datagrams


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
    _packer: _FlightPacker
    # The handshake flight we are waiting for an answer to.
    _current_flight: list[_FlightPart]
    # Our last handshake flight, kept to resend if the peer shows it never got it.
    _final_flight: list[_FlightPart]
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
        self._packer = _FlightPacker()
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

    async def _transmit(self, flight: list[_FlightPart]) -> None:
        endpoint = self.endpoint
        for datagram in self._packer.pack(flight, self._handshake_mtu):
            async with endpoint._send_lock:
                await endpoint.socket.sendto(datagram, self.peer_address)

    async def _retransmit_final_flight(self) -> None:
        await self._transmit(self._final_flight)

    def _take_flight(self, current: list[_FlightPart] | None) -> list[_FlightPart]:
        """What OpenSSL wants sent now, minus its own timer-driven retransmissions."""
        flight = _decode_flight(_drain(self._conn.bio_read))
        if (
            flight
            and current
            and isinstance(flight[0], _HandshakeMessage)
            and isinstance(current[0], _HandshakeMessage)
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
                        if isinstance(reply[0], _PlainRecord) and reply[0].content_type == _ALERT:
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
        if _looks_like_client_hello(datagram):
            await self._on_client_hello(datagram, address)
            return
        channel = self._channels.get(_route_key(address))
        if channel is None:
            return
        if channel._handshake_done and _in_epoch_zero(datagram):
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
            record_number, cookie, hello_rest = _parse_client_hello(datagram)
        except _MalformedPacket:
            return
        if self._cookie_key is None:
            self._cookie_key = os.urandom(_COOKIE_KEY_SIZE)
        if not _cookie_is_valid(self._cookie_key, cookie, address, hello_rest):
            challenge = _hello_verify_request(
                record_number, _new_cookie(self._cookie_key, address, hello_rest)
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
