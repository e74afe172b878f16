"""A line-based chat server: nicknames, join/leave notices, and no waiting on slow clients.

    python examples/chat_server.py --port 12346

Connect with ``nc 127.0.0.1 12346`` (or ``telnet``) from a few terminals: the first line you
type is your nickname, every later line goes to everyone. ``/quit`` leaves. Stop the server
with Ctrl+C.

Each client gets two tasks, both children of that client's nursery: a reader (socket ->
room) and a writer (the client's outgoing channel -> socket). Between them sits a bounded
memory channel, the client's outgoing buffer. Broadcasting a message is a ``send_nowait`` to
every member's channel, so it never waits for anybody's network.

Slow consumers: a client whose outgoing buffer is full (it stopped reading, or can't keep up)
is *disconnected*, and everyone else is told so. The alternatives are worse: waiting for it
would stall the whole room behind one bad connection, and silently dropping its messages
would leave it reading a conversation with holes in it. A disconnected client can reconnect.
Kicking it out is one call, ``cancel_scope.cancel()``: its reader and writer are cancelled,
its handler returns and ``serve_tcp`` closes the socket.

The room needs no locks: all tasks run in one thread and switch only at ``await``, so code
between two awaits (checking that a nickname is free and then taking it, say) can't be
interrupted by another task.

Whatever one client sends ends up on other people's terminals, so it is checked first: a
line over 1024 bytes isn't sent (its author is told), a nickname must be printable, and
control characters in messages (escape sequences that recolour or clear a terminal,
carriage returns that overwrite what was said, bidirectional overrides) are shown as
harmless escapes like ``\x1b`` instead of being passed on.
"""

from __future__ import annotations

import argparse
import re
import socket
import unicodedata
from dataclasses import dataclass, field
from functools import partial

import nursery_io

DEFAULT_PORT = 12346
OUTGOING_BUFFER = 32  # messages waiting for one client before we give up on it
MAX_LINE = 1024
MAX_NICK = 32
NICK_TIMEOUT = 60.0  # seconds to choose a nickname
# Characters that print as nothing yet change what a terminal shows: bidirectional
# overrides and isolates can make a message read backwards.
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


class LineTooLongError(Exception):
    """A line over MAX_LINE bytes: it was dropped (up to its end), the connection goes on."""


def printable(text: str) -> str:
    """``text`` with every character that could act on a terminal instead of printing
    (ESC, CR, BEL, DEL, C1 controls, line separators, bidi overrides) written as an escape.
    Other invisible characters stay: the zero-width joiner in an emoji sequence is harmless.
    """
    return "".join(_escape(c) if _acts_on_terminals(c) else c for c in text)


def _acts_on_terminals(character: str) -> bool:
    category = unicodedata.category(character)
    return category in ("Cc", "Zl", "Zp") or BIDI_CONTROLS.match(character) is not None


def _escape(character: str) -> str:
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


@dataclass(eq=False)
class Member:
    nick: str
    outgoing: nursery_io.MemorySendChannel[bytes]
    # Cancelling this scope ends the member's handler: reader, writer and connection.
    cancel_scope: nursery_io.CancelScope = field(default_factory=nursery_io.CancelScope)


class ChatRoom:
    """Who is here, and the broadcaster that fans every message out to them."""

    def __init__(self, outgoing_buffer: int = OUTGOING_BUFFER) -> None:
        self.outgoing_buffer = outgoing_buffer
        self.members: dict[str, Member] = {}
        self.kicked_for_slowness = 0

    def join(self, member: Member) -> None:
        self.members[member.nick] = member
        self.broadcast(f"* {member.nick} joined ({len(self.members)} here)")

    def leave(self, member: Member, reason: str = "left") -> None:
        # Idempotent: a kicked member's handler also calls leave() on its way out.
        if self.members.get(member.nick) is member:
            del self.members[member.nick]
            member.outgoing.close()
            self.broadcast(f"* {member.nick} {reason}")

    def broadcast(self, text: str) -> None:
        """Queue ``text`` for every member without waiting; disconnect whoever is full."""
        message = text.encode() + b"\n"
        too_slow = []
        for member in self.members.values():
            try:
                member.outgoing.send_nowait(message)
            except nursery_io.WouldBlock:
                too_slow.append(member)
        for member in too_slow:
            member.cancel_scope.cancel()
            self.kicked_for_slowness += 1
            # This broadcasts a notice, which may in turn find more full buffers: that's fine,
            # each member is removed before anything more is sent to anyone.
            self.leave(member, "was disconnected (not reading fast enough)")


class LineReader:
    """Split the bytes arriving on a stream into text lines of at most ``max_line`` bytes."""

    def __init__(self, stream: nursery_io.abc.ReceiveStream, max_line: int = MAX_LINE) -> None:
        self._stream = stream
        self._max_line = max_line
        self._buffer = bytearray()
        self._skipping = False  # dropping the rest of a line that was too long

    async def readline(self) -> str | None:
        """The next line without its line ending, or None at end-of-file.

        Raises LineTooLongError for a line over ``max_line`` bytes, as soon as it is known to
        be too long (without waiting for the rest of it); the next call skips whatever is
        left of it. The buffer never holds much more than one line: a client can't make us
        store an endless line.
        """
        while True:
            newline = self._buffer.find(b"\n")
            if self._skipping:
                if newline < 0:
                    self._buffer.clear()
                else:
                    del self._buffer[: newline + 1]
                    self._skipping = False
                    continue
            elif newline > self._max_line or (newline < 0 and len(self._buffer) > self._max_line):
                self._skipping = True
                raise LineTooLongError(f"line longer than {self._max_line} bytes")
            elif newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                return line.decode(errors="replace").rstrip("\r")
            chunk = await self._stream.receive_some()
            if not chunk:
                return None
            self._buffer += chunk


async def choose_nick(stream: nursery_io.abc.Stream, lines: LineReader, room: ChatRoom) -> str:
    await stream.send_all(b"* welcome! what's your nickname?\n")
    while True:
        try:
            nick = await lines.readline()
        except LineTooLongError:
            nick = "x" * (MAX_NICK + 1)  # refused below, like any other long nickname
        if nick is None:
            raise EOFError
        nick = nick.strip()
        if (
            not nick
            or len(nick) > MAX_NICK
            or " " in nick
            or nick.startswith("*")
            # isprintable() is False for control characters (an escape sequence in a
            # nickname would reach every terminal in the room) and for odd spaces.
            or not nick.isprintable()
            or BIDI_CONTROLS.search(nick)
        ):
            await stream.send_all(b"* one word, up to 32 printable characters please\n")
        elif nick in room.members:
            await stream.send_all(b"* that nickname is taken, try another\n")
        else:
            # No await between the check above and join() in the caller: nobody can take it.
            return nick


async def read_messages(lines: LineReader, member: Member, room: ChatRoom) -> None:
    while True:
        try:
            line = await lines.readline()
        except LineTooLongError:
            # Only its author hears about it (and if their buffer is full, they are the
            # slow reader the room disconnects anyway).
            notice = f"* not sent: lines are limited to {MAX_LINE} bytes\n".encode()
            try:
                member.outgoing.send_nowait(notice)
            except nursery_io.WouldBlock:
                pass
            continue
        if line is None or line == "/quit":
            return
        if line:
            room.broadcast(f"<{member.nick}> {printable(line)}")
            # Lines that arrived together are all in our buffer already, so readline()
            # wouldn't wait: without this, a client pasting 50 lines would broadcast all
            # of them before any writer ran, and overflow everyone's buffer at once. Letting
            # the writers run after each line keeps one fast sender from looking like
            # thirty slow readers.
            await nursery_io.sleep(0)


async def write_messages(
    stream: nursery_io.abc.Stream, outgoing: nursery_io.MemoryReceiveChannel[bytes]
) -> None:
    async for message in outgoing:
        # Send whatever else is queued along with it: one write instead of many, and a
        # writer that catches up with a burst in one go instead of one message at a time.
        batch = [message]
        while True:
            try:
                batch.append(outgoing.receive_nowait())
            except (nursery_io.WouldBlock, nursery_io.EndOfChannel):
                break
        await stream.send_all(b"".join(batch))


async def handle_client(stream: nursery_io.SocketStream, room: ChatRoom) -> None:
    # Keep the kernel's share of a slow client's backlog small, so the outgoing buffer
    # (and with it the slow-consumer rule) is what decides, not megabytes of socket buffer.
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    lines = LineReader(stream)
    try:
        with nursery_io.fail_after(NICK_TIMEOUT):
            nick = await choose_nick(stream, lines, room)
    except (EOFError, nursery_io.TooSlowError, nursery_io.BrokenResourceError):
        return
    outgoing, incoming = nursery_io.open_memory_channel[bytes](room.outgoing_buffer)
    member = Member(nick, outgoing)
    room.join(member)
    try:
        with member.cancel_scope:
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(write_messages, stream, incoming)
                await read_messages(lines, member, room)
                # The client is done (/quit or end-of-file): stop the writer too.
                nursery.cancel_scope.cancel()
    except* nursery_io.BrokenResourceError:
        pass  # connection lost: this client is gone, the room goes on
    finally:
        room.leave(member)


async def serve_chat(
    room: ChatRoom,
    port: int,
    host: str = "127.0.0.1",
    *,
    task_status: nursery_io.TaskStatus[int] = nursery_io.TASK_STATUS_IGNORED,
) -> None:
    """Run the chat on ``host:port`` until cancelled; ``nursery.start`` returns the port."""

    async def handler(stream: nursery_io.SocketStream) -> None:
        await handle_client(stream, room)

    async with nursery_io.open_nursery() as nursery:
        listeners = await nursery.start(partial(nursery_io.serve_tcp, handler, port, host=host))
        task_status.started(listeners[0].socket.getsockname()[1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--buffer", type=int, default=OUTGOING_BUFFER, help="messages per client")
    args = parser.parse_args(argv)
    room = ChatRoom(args.buffer)

    async def run_server() -> None:
        async with nursery_io.open_nursery() as nursery:
            port = await nursery.start(serve_chat, room, args.port, args.host)
            # flush: a parent process (the test) waits for this line to learn the port.
            print(f"chat server listening on {args.host}:{port}", flush=True)

    try:
        nursery_io.run(run_server)
    except* KeyboardInterrupt:
        # Ctrl+C comes out of the nursery wrapped in an exception group, after every
        # client's tasks were cancelled and every connection closed.
        print(f"chat server stopped ({room.kicked_for_slowness} slow clients disconnected)")


if __name__ == "__main__":
    main()
