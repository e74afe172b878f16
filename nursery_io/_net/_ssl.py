"""TLS over any byte stream: :class:`SSLStream` (:class:`SSLListener` is in ``_ssl_listener``).

The TLS state machine is the standard library's :class:`ssl.SSLObject`, fed through a pair
of :class:`ssl.MemoryBIO` buffers: it never touches a socket, so it works over any
:class:`~nursery_io.abc.Stream` (TCP, a Unix socket, an in-memory test stream, even
another TLS stream). This module moves the bytes between those buffers and the transport.

How the traffic is organised
----------------------------

One task may send while another receives, and either one may have to move bytes in *both*
directions: the handshake does, a TLS 1.2 renegotiation can make a write wait for the
peer, and a read may have to answer the peer (a TLS 1.3 post-handshake authentication
request, say). So the two directions of the transport are guarded separately:

* The *outgoing* lock is held by whoever calls ``transport.send_all``. Bytes are taken out
  of the outgoing buffer only by its holder, which keeps them in the order the TLS object
  produced them. A sender holds it across its ``SSLObject.write`` so that bulk data is
  always carried by the task that sent it, and it empties the buffer completely before
  letting go: output that a reader produces meanwhile rides along, and the reader need not
  wait for the sender's (possibly long) write.
* The *incoming* lock is held by whoever calls ``transport.receive_some``. A task that
  waited for it re-runs its TLS operation before reading again if someone else brought
  data in meanwhile: that data may be exactly what it was waiting for.

Nobody holds the outgoing lock while waiting for incoming data, so a task blocked on a
full transport never stops its own side from reading, which is what keeps two peers that
both write a lot from deadlocking. For the same reason a TLS 1.3 server does not wait for
its session tickets to be delivered at the end of the handshake: they are sent with its
next outgoing data, so a client that only writes never has to read them first.
"""

from __future__ import annotations

import enum
import operator
import ssl as _stdlib_ssl
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, TypeVar, overload

from .._core import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    ParkingLot,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    deadline_passed,
)
from .._core._util import final
from .._highlevel_generic import aclose_forcefully
from .._sync import Event
from ..abc import Stream
from ._hostname import encode_hostname

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["NeedHandshakeError", "SSLStream", "check_context"]

T_Stream = TypeVar("T_Stream", bound=Stream)

#: What ``receive_some()`` returns at most when the caller gives no size.
DEFAULT_RECEIVE_SIZE: Final = 65536
# How much ciphertext to ask the transport for at once: a few full TLS records.
_TRANSPORT_RECEIVE_SIZE: Final = 65536
_BUSY_SENDING: Final = "another task is currently sending data on this SSLStream"
_BUSY_RECEIVING: Final = "another task is currently receiving data on this SSLStream"
# send_all encrypts and sends in pieces of this size, so a huge write neither doubles its
# memory in the outgoing buffer nor waits for all of it to be encrypted before sending.
_WRITE_PIECE: Final = 256 * 1024


class NeedHandshakeError(Exception):
    """Raised by the :class:`SSLStream` methods that describe the negotiated connection
    (:meth:`~SSLStream.cipher`, :meth:`~SSLStream.getpeercert`, ...) when they are called
    before the handshake has completed: there is nothing to describe yet."""


def check_context(ssl_context: object) -> None:
    if not isinstance(ssl_context, _stdlib_ssl.SSLContext):
        raise TypeError(f"ssl_context must be an ssl.SSLContext, not {ssl_context!r}")


class _State(enum.Enum):
    OK = "ok"
    BROKEN = "broken"
    CLOSED = "closed"


class _TransportLock:
    """A FIFO mutex for one direction of the transport.

    Leaner than :class:`~nursery_io.Lock`: taking a free lock is not a checkpoint (the
    transport call that follows is one), and it is handed straight to the longest waiter
    on release, so nobody can overtake a waiting task.
    """

    __slots__ = ("_held", "_lot")

    def __init__(self) -> None:
        self._held = False
        self._lot = ParkingLot()

    def locked(self) -> bool:
        return self._held

    async def acquire(self) -> bool:
        """Take the lock; return whether we had to wait (and so went through a
        checkpoint)."""
        if not self._held and deadline_passed():
            # Trio's lock here is a schedule point, where the run fires a deadline that has
            # just passed; the transport call then raises Cancelled (and the stream breaks).
            # Yield only when that is what would happen, not on every call.
            await cancel_shielded_checkpoint()
        if not self._held:
            self._held = True
            return False
        # release() leaves _held set and wakes us as the new owner.
        await self._lot.park()
        return True

    def release(self) -> None:
        if self._lot:
            self._lot.unpark(count=1)
        else:
            self._held = False


def _is_truncation(exc: _stdlib_ssl.SSLError) -> bool:
    """Whether ``exc`` means "the transport ended without a close_notify"."""
    # OpenSSL reports it as an EOF error, or on some builds as a syscall error.
    return isinstance(exc, _stdlib_ssl.SSLEOFError | _stdlib_ssl.SSLSyscallError)


@final
class SSLStream(Stream, Generic[T_Stream]):
    """A TLS connection over another stream: a :class:`~nursery_io.abc.Stream` whose
    ``send_all`` encrypts and whose ``receive_some`` decrypts.

    ``transport_stream`` carries the encrypted bytes; the stream owns it and closes it in
    :meth:`aclose`. ``ssl_context`` configures the connection (usually from
    :func:`ssl.create_default_context`). A client passes ``server_hostname``: it is sent
    for SNI and checked against the server's certificate (required when the context has
    ``check_hostname`` set). A server passes ``server_side=True``.

    The handshake happens on the first ``send_all`` or ``receive_some``, or when you call
    :meth:`do_handshake`. One task may send while another receives; two tasks sending (or
    two receiving) at once get :class:`~nursery_io.BusyResourceError`. Failures of the
    TLS layer (a bad certificate, a corrupted record, a peer that went away without saying
    so) raise :class:`~nursery_io.BrokenResourceError`, with the :mod:`ssl` exception as
    ``__cause__``; exceptions from the transport pass through as they are, as in Trio.
    After such a failure every operation raises
    :class:`~nursery_io.BrokenResourceError`.

    ``https_compatible`` selects how the end of the connection is handled. By default
    (False) both sides end with a TLS ``close_notify``: :meth:`aclose` sends one, and a
    transport that ends without one is an error, since an attacker can cut a connection
    but can't forge that message. Many HTTPS implementations skip it (HTTP marks the end
    of its messages itself), so with ``https_compatible=True`` :meth:`aclose` sends none
    and a transport that simply ends counts as a normal end of stream.

    Information about the connection comes from the underlying :class:`ssl.SSLObject`
    through the methods and properties below; those that describe the negotiated session
    raise :exc:`NeedHandshakeError` until the handshake has completed.
    """

    # As in Trio, users may set attributes (a test mocks a method on an instance).
    __slots__ = (
        "__dict__",
        "__weakref__",  # weak-referenceable, as in Trio
        "_answer_pending",
        "_draining",
        "_eof",
        "_failure",
        "_fills",
        "_handshake_complete",
        "_handshake_finished",
        "_handshake_started",
        "_https_compatible",
        "_in_lock",
        "_incoming",
        "_out_lock",
        "_outgoing",
        "_plaintext",
        "_receiving",
        "_sending",
        "_ssl_object",
        "_state",
        "_transport_eof",
        "transport_stream",
    )

    def __init__(
        self,
        transport_stream: T_Stream,
        ssl_context: _stdlib_ssl.SSLContext,
        *,
        server_hostname: str | bytes | None = None,
        server_side: bool = False,
        https_compatible: bool = False,
    ) -> None:
        check_context(ssl_context)
        if not server_side and ssl_context.check_hostname and not server_hostname:
            # ssl.SSLObject would quietly skip the hostname check; refuse, as SSLSocket does.
            raise ValueError("a client with check_hostname set needs a server_hostname")
        if isinstance(server_hostname, str):
            # IDNA 2008, as for name lookups; the ssl module would use IDNA 2003.
            server_hostname = encode_hostname(server_hostname)
        self.transport_stream: T_Stream = transport_stream
        self._https_compatible = https_compatible
        self._incoming = _stdlib_ssl.MemoryBIO()
        self._outgoing = _stdlib_ssl.MemoryBIO()
        self._ssl_object = ssl_context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
        )
        self._state = _State.OK
        # What broke the stream, re-attached as the cause of every later error.
        self._failure: BaseException | None = None
        # The peer ended the stream (close_notify, or a bare EOF when https_compatible).
        self._eof = False
        self._transport_eof = False
        self._handshake_started = False
        self._handshake_complete = False
        self._handshake_finished = Event()
        # Caller-level conflict detection: one sending task and one receiving task.
        self._sending = False
        self._receiving = False
        self._out_lock = _TransportLock()
        # True while the outgoing lock's holder will empty the outgoing buffer before it
        # lets go (so bytes added meanwhile need no separate flush).
        self._draining = False
        self._in_lock = _TransportLock()
        # Counts transport reads, so a task that waited for the incoming lock can tell
        # whether new data arrived in the meantime.
        self._fills = 0
        # Data already decrypted by a receive_some that was then interrupted (while it
        # flushed the TLS object's answer to the peer): the next receive_some returns it.
        self._plaintext = b""
        # That answer, still in the outgoing buffer: the next read flushes it.
        self._answer_pending = False

    def __repr__(self) -> str:
        side = "server" if self._ssl_object.server_side else "client"
        return (
            f"<nursery_io.SSLStream ({side}, {self._state.value}) over {self.transport_stream!r}>"
        )

    # ----- state checks and error translation -----

    def _broken_error(self) -> BrokenResourceError:
        error = BrokenResourceError("this SSLStream is broken and can't be used any more")
        if isinstance(self._failure, Exception):
            error.__cause__ = self._failure
        return error

    def _check_state(self) -> None:
        if self._state is _State.CLOSED:
            raise ClosedResourceError("this SSLStream was closed")
        if self._state is _State.BROKEN:
            raise self._broken_error()

    def _mark_broken(self, exc: BaseException) -> None:
        # Closing wins: a closed stream reports ClosedResourceError, not a breakage.
        if self._state is _State.OK:
            self._state = _State.BROKEN
            self._failure = exc

    def _tls_failure(self, exc: _stdlib_ssl.SSLError) -> BrokenResourceError:
        self._mark_broken(exc)
        error = BrokenResourceError(f"TLS error: {exc}")
        error.__cause__ = exc
        return error

    # One task may send while another receives (see the module docstring); two at once in
    # the same direction are a caller's mistake.
    def _claim_sending(self) -> None:
        if self._sending:
            raise BusyResourceError(_BUSY_SENDING)
        self._sending = True

    def _claim_receiving(self) -> None:
        if self._receiving:
            raise BusyResourceError(_BUSY_RECEIVING)
        self._receiving = True

    # ----- moving bytes between the memory buffers and the transport -----

    async def _send_chunk(self, chunk: bytes) -> None:
        try:
            await self.transport_stream.send_all(chunk)
        except BaseException as exc:
            # An unknown part of the chunk went out: the record stream can't be resumed.
            # The transport's own exception reaches the caller as it is, as in Trio.
            self._mark_broken(exc)
            raise

    async def _drain(self) -> None:
        """Send everything in the outgoing buffer (the outgoing lock is held)."""
        while self._outgoing.pending:
            await self._send_chunk(self._outgoing.read())

    async def _flush(self) -> bool:
        """Make sure the outgoing buffer's contents reach the transport; return whether we
        went through a checkpoint."""
        if self._out_lock.locked() and self._draining:
            # The holder sends what we just added before it lets go.
            return False
        await self._out_lock.acquire()
        self._draining = True
        try:
            await self._drain()
        finally:
            self._draining = False
            self._out_lock.release()
        return True

    async def _fill(self) -> None:
        """Get more ciphertext from the transport into the incoming buffer.

        The transport's exceptions pass through as they are. They don't break the stream
        by themselves (nothing was consumed); callers in the middle of a TLS operation
        that can't be resumed mark it broken.
        """
        seen = self._fills
        await self._in_lock.acquire()
        try:
            if self._fills != seen:
                # Another task read from the transport while we waited: retry the TLS
                # operation on that data before asking for more.
                return
            if self._transport_eof:
                # The TLS object reports the buffer's EOF itself, so it shouldn't ask for
                # more after the end; if it does, waiting can't help.
                error = BrokenResourceError("the transport stream ended in the middle of TLS")
                self._mark_broken(error)
                raise error
            data = await self.transport_stream.receive_some(_TRANSPORT_RECEIVE_SIZE)
            if data:
                self._incoming.write(data)
            else:
                self._transport_eof = True
                self._incoming.write_eof()
            self._fills += 1
        finally:
            self._in_lock.release()

    async def _send_op(self, op: Callable[..., object], *args: object) -> None:
        """Run a TLS operation that produces outgoing data (write, close_notify) until it
        completes, reading from the transport whenever it needs the peer's input."""
        while True:
            self._check_state()
            await self._out_lock.acquire()
            self._draining = True
            try:
                # The stream may have been closed or broken while we waited for our turn.
                self._check_state()
                try:
                    op(*args)
                    want_read = False
                except _stdlib_ssl.SSLWantReadError:
                    want_read = True
                except _stdlib_ssl.SSLError as exc:
                    raise self._tls_failure(exc) from exc
                await self._drain()
            finally:
                self._draining = False
                self._out_lock.release()
            if not want_read:
                return
            try:
                await self._fill()
            except BaseException as exc:
                # The TLS object is half-way through this operation and expects it to be
                # retried with the same arguments, which will never happen now.
                self._mark_broken(exc)
                raise

    # ----- the handshake -----

    async def _run_handshake(self) -> None:
        ssl_object = self._ssl_object
        while True:
            self._check_state()
            before = self._outgoing.pending
            try:
                ssl_object.do_handshake()
                done = True
            except _stdlib_ssl.SSLWantReadError:
                done = False
            except _stdlib_ssl.SSLError as exc:
                if self._https_compatible and _is_truncation(exc):
                    # The peer hung up before the handshake: receive_some reports EOF.
                    self._eof = True
                raise self._tls_failure(exc) from exc
            if done and ssl_object.server_side and ssl_object.version() == "TLSv1.3":
                # What's left is the session tickets: they go out with our next data, so
                # a client that never reads can't hold up the end of our handshake.
                return
            if self._outgoing.pending > before:
                await self._flush()
            if done:
                return
            await self._fill()

    async def _ensure_handshake(self) -> bool:
        """Complete the handshake (or wait for the task doing it); return whether we went
        through a checkpoint."""
        if self._handshake_complete:
            return False
        if self._handshake_started:
            await self._handshake_finished.wait()
            # The task that drove it failed or was cancelled: the stream is broken.
            self._check_state()
            return True
        self._handshake_started = True
        try:
            await self._run_handshake()
        except BaseException as exc:
            # A handshake interrupted half-way can't be resumed.
            self._mark_broken(exc)
            raise
        else:
            self._handshake_complete = True
        finally:
            self._handshake_finished.set()
        return True

    async def do_handshake(self) -> None:
        """Perform the TLS handshake now, if it hasn't been done yet.

        Not usually needed: the first ``send_all`` or ``receive_some`` does it. Call it to
        inspect the peer (``getpeercert()``, ``selected_alpn_protocol()``, ...) before
        exchanging data. If another task is already doing the handshake, this waits for it
        to finish; once it is done, this only executes a checkpoint. Any number of tasks
        may call it at once, concurrently with sending and receiving.

        Raises :class:`~nursery_io.BrokenResourceError` if the handshake fails (with the
        :mod:`ssl` error as ``__cause__``, e.g. :class:`ssl.SSLCertVerificationError`), or
        the transport's own exception. A handshake that failed or was cancelled half-way
        can't be resumed: the stream is then broken.
        """
        self._check_state()
        await checkpoint_if_cancelled()
        if not await self._ensure_handshake():
            await cancel_shielded_checkpoint()

    # ----- sending -----

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt ``data`` and send it over the transport.

        Does the handshake first if needed. If it is cancelled after it started sending,
        an unknown part of the data went out and the stream is broken (later calls raise
        :class:`~nursery_io.BrokenResourceError`); the same goes for a cancellation while
        the TLS layer waits for the peer in the middle of a write (a renegotiation). If it
        is cancelled before its turn came (while another task used the transport), nothing
        was sent and the stream stays usable.
        """
        self._claim_sending()
        try:
            self._check_state()
            await checkpoint_if_cancelled()
            waited = await self._ensure_handshake()
            with memoryview(data) as items, items.cast("B") as view:
                if not view:
                    # SSLObject.write(b"") would send nothing anyway.
                    if not waited:
                        await cancel_shielded_checkpoint()
                    return
                for start in range(0, len(view), _WRITE_PIECE):
                    with view[start : start + _WRITE_PIECE] as piece:
                        try:
                            await self._send_op(self._ssl_object.write, piece)
                        except BaseException as exc:
                            if start:
                                # Earlier pieces went out, this one didn't: the peer got
                                # part of the data, so the stream can't be used on.
                                self._mark_broken(exc)
                            raise
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        """Wait until the transport could take more data (see
        :meth:`nursery_io.abc.SendStream.wait_send_all_might_not_block`)."""
        self._claim_sending()
        try:
            self._check_state()
            await checkpoint_if_cancelled()
            # While another task holds the outgoing lock (a reader answering the peer),
            # sending would wait for it anyway; after that, it's up to the transport.
            await self._out_lock.acquire()
            try:
                await self.transport_stream.wait_send_all_might_not_block()
            finally:
                self._out_lock.release()
        finally:
            self._sending = False

    # ----- receiving -----

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Receive and decrypt up to ``max_bytes`` bytes (default: up to 64 KiB).

        Returns ``b""`` once the peer has ended the TLS session with a ``close_notify``
        (or, with ``https_compatible=True``, once the transport has simply ended), and
        again on every later call. Without ``https_compatible``, a transport that ends
        without a ``close_notify`` raises :class:`~nursery_io.BrokenResourceError`: the
        data may have been cut short by an attacker.

        Cancelling it while it waits for data loses nothing and leaves the stream usable,
        unless the handshake was in progress (a cancelled handshake breaks the stream).
        """
        if max_bytes is None:
            size = DEFAULT_RECEIVE_SIZE
        else:
            size = operator.index(max_bytes)
            if size < 1:
                raise ValueError("max_bytes must be >= 1")
        self._claim_receiving()
        try:
            await checkpoint_if_cancelled()
            if self._state is _State.CLOSED:
                raise ClosedResourceError("this SSLStream was closed")
            if self._eof:
                await cancel_shielded_checkpoint()
                return b""
            self._check_state()
            if self._plaintext:
                data, self._plaintext = self._plaintext[:size], self._plaintext[size:]
                await cancel_shielded_checkpoint()
                return data
            try:
                waited = await self._ensure_handshake()
            except BrokenResourceError:
                if self._eof:
                    return b""
                raise
            data, went_through_checkpoint = await self._read(size)
            if not (waited or went_through_checkpoint):
                await cancel_shielded_checkpoint()
            return data
        finally:
            self._receiving = False

    async def _read(self, size: int) -> tuple[bytes, bool]:
        ssl_object = self._ssl_object
        checkpointed = False
        while True:
            self._check_state()
            before = self._outgoing.pending
            want_read = False
            try:
                data = ssl_object.read(size)
            except _stdlib_ssl.SSLWantReadError:
                data = b""
                want_read = True
            except _stdlib_ssl.SSLError as exc:
                if isinstance(exc, _stdlib_ssl.SSLZeroReturnError) or (
                    self._https_compatible and _is_truncation(exc)
                ):
                    self._eof = True
                    return b"", checkpointed
                raise self._tls_failure(exc) from exc
            if data:
                data = self._read_more(data, size)
            # Reading can make the TLS object answer the peer (e.g. a post-handshake
            # authentication request), and the peer may be waiting for that answer. An
            # answer an earlier, interrupted flush left behind goes out now too. (Not
            # just anything pending: a TLS 1.3 server's tickets wait for its next send.)
            if self._outgoing.pending > before or self._answer_pending:
                self._answer_pending = False
                try:
                    checkpointed |= await self._flush()
                except BaseException:
                    # Interrupted (cancelled, say) after decrypting: keep the data for
                    # the next receive_some rather than lose it, and the answer for the
                    # next flush.
                    self._answer_pending = True
                    if data:
                        self._plaintext = data
                    raise
            if not want_read:
                if not data:
                    # The ssl module reports the peer's close_notify as an empty read.
                    self._eof = True
                return data, checkpointed
            await self._fill()
            checkpointed = True

    def _read_more(self, data: bytes, size: int) -> bytes:
        # One read() returns at most one TLS record (16 KiB): top the result up from
        # records that are already buffered, without waiting for more.
        pieces = [data]
        total = len(data)
        while total < size and (self._incoming.pending or self._ssl_object.pending()):
            try:
                piece = self._ssl_object.read(size - total)
            except _stdlib_ssl.SSLError:
                # An incomplete record, the end of the stream or an error: the next call
                # meets it again and deals with it.
                break
            if not piece:
                break
            pieces.append(piece)
            total += len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    # ----- ending the session -----

    async def unwrap(self) -> tuple[T_Stream, bytes | bytearray]:
        """End the TLS session but keep the transport open, to continue over it
        unencrypted.

        Sends a ``close_notify`` and waits for the peer's (the peer must do the same, e.g.
        call ``unwrap`` too). Returns ``(transport_stream, trailing_bytes)``:
        ``trailing_bytes`` is whatever arrived after the peer's ``close_notify``, which
        the caller should treat as the first bytes received from ``transport_stream``.
        Afterwards this :class:`SSLStream` is closed, the transport belongs to the
        caller, and the ``transport_stream`` attribute is None. Conflicts with
        concurrent sending or receiving.
        """
        if self._receiving:
            raise BusyResourceError(_BUSY_RECEIVING)
        if self._sending:
            raise BusyResourceError(_BUSY_SENDING)
        self._sending = self._receiving = True
        try:
            self._check_state()
            await checkpoint_if_cancelled()
            await self._ensure_handshake()
            await self._send_op(self._ssl_object.unwrap)
            transport = self.transport_stream
            self._state = _State.CLOSED
            # The transport now belongs to the caller; like Trio, stop referring to it.
            self.transport_stream = None  # type: ignore[assignment]
            return transport, self._incoming.read()
        finally:
            self._sending = self._receiving = False

    async def aclose(self) -> None:
        """Close the TLS session and the transport.

        Unless ``https_compatible`` is set, first sends a ``close_notify``, without waiting
        for the peer's reply. If the handshake hasn't happened yet, it is done first (as in
        Trio), so that there is a session to close: the peer then sees a clean end of
        stream. If that handshake fails, the transport is closed and the error
        (:class:`~nursery_io.BrokenResourceError`) is raised. The ``close_notify`` is
        skipped after the stream broke, and while another task is in the middle of
        sending. The transport is closed in every case, also when this call is cancelled;
        use :func:`~nursery_io.aclose_forcefully` to skip the goodbye (and a pending
        handshake) on purpose. Tasks blocked on the stream get
        :class:`~nursery_io.ClosedResourceError`.
        """
        if self._state is _State.CLOSED:
            await checkpoint()
            return
        if self._state is _State.BROKEN or self._https_compatible:
            self._state = _State.CLOSED
            await self.transport_stream.aclose()
            return
        try:
            if not self._handshake_complete:
                # A cancelled aclose (aclose_forcefully) must not start a handshake.
                await checkpoint_if_cancelled()
                await self._ensure_handshake()
            polite = self._state is _State.OK and not self._out_lock.locked()
            self._state = _State.CLOSED
            if polite:
                await self._send_close_notify()
        except BaseException:
            self._state = _State.CLOSED
            await aclose_forcefully(self.transport_stream)
            raise
        await self.transport_stream.aclose()

    async def _send_close_notify(self) -> None:
        await self._out_lock.acquire()
        self._draining = True
        try:
            try:
                self._ssl_object.unwrap()
            except _stdlib_ssl.SSLWantReadError:
                pass  # ours is queued; we don't wait for the peer's
            except _stdlib_ssl.SSLError:
                return  # the TLS layer is in no state to say goodbye: just hang up
            try:
                await self._drain()
            except (BrokenResourceError, ClosedResourceError):
                pass  # the peer is already gone
        finally:
            self._draining = False
            self._out_lock.release()

    # ----- information from the SSLObject -----

    def _need_handshake(self, name: str) -> None:
        if not self._handshake_complete:
            raise NeedHandshakeError(f"call do_handshake() before calling {name!r}")

    @property
    def context(self) -> _stdlib_ssl.SSLContext:
        """The :class:`ssl.SSLContext` in use (an SNI callback on the server may replace
        it during the handshake)."""
        return self._ssl_object.context

    @context.setter
    def context(self, value: _stdlib_ssl.SSLContext) -> None:
        self._ssl_object.context = value

    @property
    def server_side(self) -> bool:
        """Whether this is the server end."""
        return self._ssl_object.server_side

    @property
    def server_hostname(self) -> str | None:
        """The ``server_hostname`` given to the constructor (None on servers)."""
        return self._ssl_object.server_hostname

    @property
    def session(self) -> _stdlib_ssl.SSLSession | None:
        """The TLS session, for resumption: set it (before the handshake) to the
        ``session`` of an earlier connection to the same server."""
        return self._ssl_object.session

    @session.setter
    def session(self, value: _stdlib_ssl.SSLSession | None) -> None:
        self._ssl_object.session = value

    @property
    def session_reused(self) -> bool:
        """Whether the handshake resumed an earlier session. Needs the handshake."""
        self._need_handshake("session_reused")
        return self._ssl_object.session_reused

    @overload
    def getpeercert(self, binary_form: Literal[False] = False) -> dict[str, Any] | None: ...
    @overload
    def getpeercert(self, binary_form: Literal[True]) -> bytes | None: ...
    @overload
    def getpeercert(self, binary_form: bool) -> dict[str, Any] | bytes | None: ...
    def getpeercert(self, binary_form: bool = False) -> dict[str, Any] | bytes | None:
        """The peer's certificate, as :meth:`ssl.SSLSocket.getpeercert` returns it.
        Needs the handshake."""
        self._need_handshake("getpeercert")
        return self._ssl_object.getpeercert(binary_form)

    def selected_alpn_protocol(self) -> str | None:
        """The protocol ALPN agreed on, or None. Needs the handshake."""
        self._need_handshake("selected_alpn_protocol")
        return self._ssl_object.selected_alpn_protocol()

    def selected_npn_protocol(self) -> str | None:
        """The protocol NPN agreed on (deprecated by :mod:`ssl`; use ALPN). Needs the
        handshake."""
        self._need_handshake("selected_npn_protocol")
        return self._ssl_object.selected_npn_protocol()

    def cipher(self) -> tuple[str, str, int] | None:
        """``(cipher name, protocol version, secret bits)`` of the connection. Needs the
        handshake."""
        self._need_handshake("cipher")
        return self._ssl_object.cipher()

    def shared_ciphers(self) -> list[tuple[str, str, int]] | None:
        """The ciphers both ends offered (server side). Needs the handshake."""
        self._need_handshake("shared_ciphers")
        return self._ssl_object.shared_ciphers()

    def compression(self) -> str | None:
        """The compression algorithm in use, or None. Needs the handshake."""
        self._need_handshake("compression")
        return self._ssl_object.compression()

    def version(self) -> str | None:
        """The negotiated protocol version, e.g. ``"TLSv1.3"``. Needs the handshake."""
        self._need_handshake("version")
        return self._ssl_object.version()

    def get_channel_binding(self, cb_type: str = "tls-unique") -> bytes | None:
        """Channel binding data (see :meth:`ssl.SSLSocket.get_channel_binding`). Needs the
        handshake."""
        self._need_handshake("get_channel_binding")
        return self._ssl_object.get_channel_binding(cb_type)

    def pending(self) -> int:
        """Decrypted bytes that are buffered and ready for ``receive_some``."""
        return self._ssl_object.pending()

    def verify_client_post_handshake(self) -> None:
        """Server side, TLS 1.3: ask the client for its certificate now (post-handshake
        authentication; see :meth:`ssl.SSLSocket.verify_client_post_handshake`). The
        request goes out with the next ``send_all``. Needs the handshake."""
        self._need_handshake("verify_client_post_handshake")
        self._ssl_object.verify_client_post_handshake()
