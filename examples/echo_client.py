"""An echo client: several concurrent connections, each sending lines and checking the echoes.

    python examples/echo_client.py --port 12345 --clients 10 --lines 100

Run ``examples/echo_server.py`` first. Each client opens its own TCP connection and runs two
tasks side by side: one sends all its lines, the other reads the echoes back and checks them.
Sending and receiving at the same time matters: a client that first sent everything and only
then started reading would deadlock as soon as the data in flight filled the kernel's socket
buffers (the server blocks writing echoes nobody reads, so it stops reading, so we block
writing). A nursery makes "two things at once" easy, and if either side fails, the other is
cancelled and the error comes out of the ``async with`` block.

Errors come out of nested nurseries as exception groups; ``main`` turns the expected ones (no
server, a wrong echo, a dropped connection, the deadline) into one line on stderr and exit
status 1. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator

import nursery_io


class EchoMismatchError(Exception):
    """The server sent back something other than what we sent."""


class ConnectError(Exception):
    """We couldn't open a connection to the server."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        if error.errno is not None and error.errno > 0:
            reason = os.strerror(error.errno)  # "Connection refused", without the details
        else:
            reason = error.strerror or str(error)  # getaddrinfo's errors are negative
        super().__init__(f"can't connect to {host}:{port}: {reason}")


class LineReader:
    """Split the bytes arriving on a stream into lines (without the trailing newline)."""

    def __init__(self, stream: nursery_io.abc.ReceiveStream, max_line: int = 65536) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._max_line = max_line

    async def readline(self) -> bytes | None:
        """The next line, or None at end-of-file. A partial last line is returned as is."""
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                return line
            if len(self._buffer) > self._max_line:
                raise ValueError(f"line longer than {self._max_line} bytes")
            chunk = await self._stream.receive_some()
            if not chunk:
                rest, self._buffer = bytes(self._buffer), bytearray()
                return rest or None
            self._buffer += chunk


def make_lines(client_id: int, count: int) -> list[bytes]:
    return [f"client {client_id} line {n}".encode() for n in range(count)]


async def send_lines(stream: nursery_io.SocketStream, lines: list[bytes]) -> None:
    for line in lines:
        await stream.send_all(line + b"\n")
    # Half-close: "no more data from me". The server sees end-of-file, finishes echoing and
    # closes its side, which is how the reader knows the conversation is over.
    await stream.send_eof()


async def check_echoes(stream: nursery_io.SocketStream, lines: list[bytes]) -> None:
    reader = LineReader(stream)
    for expected in lines:
        got = await reader.readline()
        if got != expected:
            raise EchoMismatchError(f"sent {expected!r}, got back {got!r}")
    extra = await reader.readline()
    if extra is not None:
        raise EchoMismatchError(f"unexpected extra data {extra!r}")


async def echo_lines(host: str, port: int, lines: list[bytes]) -> None:
    """Send ``lines`` over one connection and check each echo; raise on any mismatch."""
    try:
        stream = await nursery_io.open_tcp_stream(host, port)
    except OSError as exc:
        raise ConnectError(host, port, exc) from exc
    async with stream, nursery_io.open_nursery() as nursery:
        nursery.start_soon(send_lines, stream, lines)
        nursery.start_soon(check_echoes, stream, lines)


async def run_clients(host: str, port: int, clients: int, lines: int) -> int:
    """Run ``clients`` concurrent connections of ``lines`` lines each; return lines checked."""
    async with nursery_io.open_nursery() as nursery:
        for client_id in range(clients):
            nursery.start_soon(echo_lines, host, port, make_lines(client_id, lines))
    # Reaching this line means every client task finished without an error.
    return clients * lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12345)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--lines", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=30.0, help="give up after this long")
    args = parser.parse_args(argv)

    async def run_with_deadline() -> int:
        with nursery_io.fail_after(args.timeout):
            return await run_clients(args.host, args.port, args.clients, args.lines)

    try:
        checked = nursery_io.run(run_with_deadline)
    except (Exception, ExceptionGroup) as exc:
        message = explain(exc, args.timeout)
        if message is None:
            raise
        print(f"echo_client: {message}", file=sys.stderr)
        sys.exit(1)
    print(f"{args.clients} clients: {checked} lines echoed correctly")


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


def explain(exc: BaseException, timeout: float) -> str | None:
    """One line for a failure a user can cause (ten clients that can't connect are one
    message, not ten); None for anything else."""
    messages = []
    for leaf in leaves(exc):
        if isinstance(leaf, (ConnectError, EchoMismatchError)):
            messages.append(str(leaf))
        elif isinstance(leaf, nursery_io.TooSlowError):
            messages.append(f"gave up after {timeout:g} s (--timeout)")
        elif isinstance(leaf, nursery_io.BrokenResourceError):
            messages.append("the server closed the connection while we were sending")
        else:
            return None
    return messages[0] if messages else None


if __name__ == "__main__":
    main()
