"""DTLS on the wire: the bytes :class:`~nursery_io.DTLSEndpoint` reads and writes itself,
around OpenSSL.

* Parsing and encoding records and handshake-message fragments (with a parser that raises
  only :class:`MalformedPacket`, whatever bytes arrive).
* The stateless cookie exchange: HelloVerifyRequest cookies are an HMAC over the peer's
  address, its ClientHello and the current 30 second period (RFC 6347 section 4.2.1).
* Handshake flights: OpenSSL's outgoing flight taken apart into messages
  (:func:`decode_flight`) and packed again into datagrams that fit the handshake MTU, with
  fresh record numbers (:class:`FlightPacker`).

No I/O and no OpenSSL here: pure functions of bytes (and of the run's clock, for cookies).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, TypeAlias

from .._core import current_time

__all__ = [
    "ALERT",
    "COOKIE_KEY_SIZE",
    "FlightPacker",
    "FlightPart",
    "HandshakeMessage",
    "MalformedPacket",
    "PlainRecord",
    "cookie_is_valid",
    "decode_flight",
    "hello_verify_request",
    "in_epoch_zero",
    "looks_like_client_hello",
    "new_cookie",
    "parse_client_hello",
]


# ----- the record layer --------------------------------------------------------------------
#
# A DTLS record: content type (1 byte), protocol version (2), epoch (2), sequence number
# (6), payload length (2), payload. We keep epoch and sequence number together as one
# 64-bit number: a new epoch is then simply a jump by 2**48.
# A handshake message fragment inside a record: message type (1), whole message length
# (3), message sequence number (2), fragment offset (3), fragment length (3), fragment.

_CHANGE_CIPHER_SPEC: Final = 20
ALERT: Final = 21
_HANDSHAKE: Final = 22
_CLIENT_HELLO: Final = 1
_HELLO_VERIFY_REQUEST: Final = 3
# HelloVerifyRequest always carries DTLS 1.0's version number (RFC 6347 4.2.1).
_DTLS_1_0: Final = b"\xfe\xff"
_RECORD_HEADER_SIZE: Final = 13
_FRAGMENT_HEADER_SIZE: Final = 12
_SEQUENCE_BITS: Final = 48


class MalformedPacket(Exception):
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
            raise MalformedPacket("truncated record header")
        length = int.from_bytes(header[11:13], "big")
        start = position + _RECORD_HEADER_SIZE
        payload = datagram[start : start + length]
        if len(payload) != length:
            raise MalformedPacket("record shorter than its length field")
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
        raise MalformedPacket("truncated handshake header")
    data = payload[_FRAGMENT_HEADER_SIZE:]
    if len(data) != int.from_bytes(payload[9:12], "big"):
        raise MalformedPacket("fragment length does not match the record")
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


def looks_like_client_hello(datagram: bytes) -> bool:
    """A cheap first test: the first record is a handshake record holding a ClientHello."""
    return (
        len(datagram) > _RECORD_HEADER_SIZE
        and datagram[0] == _HANDSHAKE
        and datagram[_RECORD_HEADER_SIZE] == _CLIENT_HELLO
    )


def in_epoch_zero(datagram: bytes) -> bool:
    """Whether the (first) record is unencrypted, i.e. from the initial handshake."""
    return datagram[3:5] == b"\x00\x00"


def parse_client_hello(datagram: bytes) -> tuple[int, bytes, bytes]:
    """``(record number, cookie, the ClientHello without its cookie)``.

    The ClientHello must be the first record, and whole: reassembling fragments would mean
    keeping state for a peer that has not proven its address yet.
    """
    try:
        record = next(_iter_records(datagram))
        fragment = _parse_fragment(record.payload)
        if fragment.msg_type != _CLIENT_HELLO:
            raise MalformedPacket("not a ClientHello")
        if fragment.offset != 0 or len(fragment.data) != fragment.msg_length:
            raise MalformedPacket("fragmented ClientHello")
        body = fragment.data
        # client_version (2), random (32), session_id (length-prefixed), cookie
        # (length-prefixed), then the rest.
        cookie_length_at = 34 + 1 + body[34]
        cookie_length = body[cookie_length_at]
        cookie = body[cookie_length_at + 1 : cookie_length_at + 1 + cookie_length]
        if len(cookie) != cookie_length:
            raise MalformedPacket("truncated cookie")
        # A client answering a HelloVerifyRequest repeats its ClientHello with the cookie
        # added and a new record number: the cookie covers everything else.
        rest = body[:cookie_length_at] + body[cookie_length_at + 1 + cookie_length :]
    except (IndexError, StopIteration) as exc:
        raise MalformedPacket("malformed ClientHello") from exc
    return record.epoch_and_sequence, cookie, rest


# ----- cookies -----------------------------------------------------------------------------

_COOKIE_PERIOD: Final = 30.0  # seconds; a cookie stays valid for one to two periods
COOKIE_KEY_SIZE: Final = 32
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


def new_cookie(key: bytes, address: Any, hello_rest: bytes) -> bytes:
    salt = os.urandom(_COOKIE_SALT_SIZE)
    return _compute_cookie(key, salt, _cookie_period(), address, hello_rest)


def cookie_is_valid(key: bytes, cookie: bytes, address: Any, hello_rest: bytes) -> bool:
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


def hello_verify_request(client_record_number: int, cookie: bytes) -> bytes:
    # Like OpenSSL: the record number is the ClientHello's, the message number is 0.
    body = _DTLS_1_0 + bytes((len(cookie),)) + cookie
    message = _encode_fragment(_HELLO_VERIFY_REQUEST, len(body), 0, 0, body)
    return _encode_record(_HANDSHAKE, _DTLS_1_0, client_record_number, message)


# ----- handshake flights -------------------------------------------------------------------


@dataclass
class HandshakeMessage:
    """An unencrypted handshake message, reassembled: we fragment it to fit the MTU."""

    version: bytes
    msg_type: int
    msg_seq: int
    body: bytearray


@dataclass
class PlainRecord:
    """A ChangeCipherSpec or alert: one small unencrypted record, never fragmented."""

    version: bytes
    content_type: int
    payload: bytes


@dataclass
class _SealedRecord:
    """An encrypted handshake record (Finished): sent exactly as OpenSSL made it."""

    record: bytes


FlightPart: TypeAlias = HandshakeMessage | PlainRecord | _SealedRecord


def decode_flight(output: bytes) -> list[FlightPart]:
    """Take OpenSSL's outgoing handshake bytes apart into messages."""
    parts: list[FlightPart] = []
    by_seq: dict[int, HandshakeMessage] = {}
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
            parts.append(PlainRecord(record.version, record.content_type, record.payload))
        else:
            fragment = _parse_fragment(record.payload)
            message = by_seq.get(fragment.msg_seq)
            if message is None:
                message = HandshakeMessage(
                    record.version,
                    fragment.msg_type,
                    fragment.msg_seq,
                    bytearray(fragment.msg_length),
                )
                by_seq[fragment.msg_seq] = message
                parts.append(message)
            message.body[fragment.offset : fragment.offset + len(fragment.data)] = fragment.data
    return parts


class FlightPacker:
    """Packs flights into datagrams, numbering the unencrypted records it writes."""

    def __init__(self) -> None:
        self.next_record_number = 0

    def _take_number(self) -> int:
        number = self.next_record_number
        self.next_record_number += 1
        return number

    def pack(self, flight: list[FlightPart], mtu: int) -> list[bytes]:
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
            elif isinstance(part, PlainRecord):
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
