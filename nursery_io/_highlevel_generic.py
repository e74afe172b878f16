"""Generic stream helpers: StapledStream and aclose_forcefully."""

from __future__ import annotations

from typing import Generic, TypeVar

from ._core import CancelScope
from ._core._util import final
from .abc import AsyncResource, HalfCloseableStream, ReceiveStream, SendStream

__all__ = ["StapledStream", "aclose_forcefully"]

SendStreamT = TypeVar("SendStreamT", bound=SendStream)
ReceiveStreamT = TypeVar("ReceiveStreamT", bound=ReceiveStream)


async def aclose_forcefully(resource: AsyncResource) -> None:
    """Close ``resource`` right away, skipping any graceful shutdown.

    Calls ``resource.aclose()`` inside an already-cancelled scope: a well-behaved resource
    then closes without waiting for anything (for example, a TLS stream drops the
    connection instead of exchanging close-notify messages). Use it when the peer may be
    gone or malicious, or in cleanup code that must not block.
    """
    with CancelScope() as scope:
        scope.cancel(reason="cancelled during aclose_forcefully")
        await resource.aclose()


@final
class StapledStream(HalfCloseableStream, Generic[SendStreamT, ReceiveStreamT]):
    """Join a :class:`~nursery_io.abc.SendStream` and a
    :class:`~nursery_io.abc.ReceiveStream` into one bidirectional stream.

    Sending goes to ``send_stream``, receiving comes from ``receive_stream``; both are
    public attributes and may be replaced. ``send_eof`` calls the send stream's own
    ``send_eof`` if it has one and otherwise closes it; ``aclose`` closes both.

    For example, ``StapledStream(process.stdin, process.stdout)`` talks to a child
    process as if it were one connection.
    """

    # As in Trio, users may set attributes (a test mocks a method on an instance).
    __slots__ = ("__dict__", "__weakref__", "receive_stream", "send_stream")

    def __init__(self, send_stream: SendStreamT, receive_stream: ReceiveStreamT) -> None:
        self.send_stream = send_stream
        self.receive_stream = receive_stream

    def __repr__(self) -> str:
        return (
            f"StapledStream(send_stream={self.send_stream!r}, "
            f"receive_stream={self.receive_stream!r})"
        )

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send through ``send_stream``."""
        return await self.send_stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        """Wait on ``send_stream``."""
        return await self.send_stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Half-close: ``send_stream.send_eof()`` if it supports it, else
        ``send_stream.aclose()``."""
        stream = self.send_stream
        # Duck-typed on purpose: any send stream with a send_eof() method half-closes.
        send_eof = getattr(stream, "send_eof", None)
        if send_eof is not None:
            await send_eof()
        else:
            await stream.aclose()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Receive from ``receive_stream``."""
        return await self.receive_stream.receive_some(max_bytes)

    async def aclose(self) -> None:
        """Close ``send_stream``, then ``receive_stream`` (even if the first close
        fails)."""
        try:
            await self.send_stream.aclose()
        finally:
            await self.receive_stream.aclose()
