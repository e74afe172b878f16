"""The chat server example: nicknames, notices, and a client that never reads."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

import nursery_io
import nursery_io.testing
from examples.chat_server import MAX_LINE, ChatRoom, LineReader, serve_chat

EXAMPLE = Path(__file__).parents[2] / "examples" / "chat_server.py"
HOST = "127.0.0.1"


class Client:
    # Every client ever made, so a failing test still closes its sockets (see the fixture).
    made: ClassVar[list[Client]] = []

    def __init__(self, stream: nursery_io.SocketStream) -> None:
        self.stream = stream
        # Room for what the server sends: a nickname and a full-length line.
        self.lines = LineReader(stream, max_line=2 * MAX_LINE)
        Client.made.append(self)

    @classmethod
    async def connect(cls, port: int, nick: str | None = None) -> Client:
        client = cls(await nursery_io.open_tcp_stream(HOST, port))
        await client.expect("* welcome! what's your nickname?")
        if nick is not None:
            await client.say(nick)
        return client

    async def say(self, line: str) -> None:
        await self.stream.send_all(line.encode() + b"\n")

    async def expect(self, *lines: str) -> None:
        for line in lines:
            assert await self.lines.readline() == line

    async def aclose(self) -> None:
        await self.stream.aclose()


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    yield
    for client in Client.made:
        client.stream.socket.close()  # after the run: a plain close (no-op if closed)
    Client.made.clear()


async def start(nursery: nursery_io.Nursery, buffer: int = 32) -> tuple[ChatRoom, int]:
    room = ChatRoom(buffer)
    return room, await nursery.start(serve_chat, room, 0, HOST)


async def test_join_talk_leave(nursery: nursery_io.Nursery) -> None:
    with nursery_io.fail_after(30):
        room, port = await start(nursery)
        alice = await Client.connect(port, "alice")
        await alice.expect("* alice joined (1 here)")
        bob = await Client.connect(port, "bob")
        await alice.expect("* bob joined (2 here)")
        await bob.expect("* bob joined (2 here)")
        await bob.say("hi alice")
        await bob.say("")  # empty lines are ignored
        await alice.say("hi bob")
        for client in (alice, bob):
            await client.expect("<bob> hi alice", "<alice> hi bob")
        await bob.say("/quit")
        await alice.expect("* bob left")
        assert await bob.lines.readline() is None  # the server closed bob's connection
        await alice.aclose()  # hanging up works as well as /quit
        await bob.aclose()
        await nursery_io.testing.wait_all_tasks_blocked()
        assert room.members == {}


async def test_nicknames_must_be_unique_and_sensible(nursery: nursery_io.Nursery) -> None:
    with nursery_io.fail_after(30):
        _, port = await start(nursery)
        alice = await Client.connect(port, "alice")
        await alice.expect("* alice joined (1 here)")
        other = await Client.connect(port, "alice")
        await other.expect("* that nickname is taken, try another")
        bad_nicks = ["two words", "*star", "x" * 33, "  ", "\x1b[31mred", "bel\x07", "a\u202eb"]
        bad_nicks += ["tab\tbed", "nb\u00a0sp", "y" * 5000]
        for bad in bad_nicks:
            await other.say(bad)
            await other.expect("* one word, up to 32 printable characters please")
        await other.say("  alice2 ")
        await other.expect("* alice2 joined (2 here)")
        await alice.expect("* alice2 joined (2 here)")
        await alice.aclose()
        await other.aclose()


async def test_a_client_leaving_before_choosing_a_nick_is_not_announced(
    nursery: nursery_io.Nursery,
) -> None:
    with nursery_io.fail_after(30):
        room, port = await start(nursery)
        alice = await Client.connect(port, "alice")
        await alice.expect("* alice joined (1 here)")
        shy = await Client.connect(port)
        await shy.aclose()
        await alice.say("still here")
        await alice.expect("<alice> still here")
        assert list(room.members) == ["alice"]
        await alice.aclose()


async def test_a_client_that_never_reads_is_disconnected(nursery: nursery_io.Nursery) -> None:
    with nursery_io.fail_after(60):
        room, port = await start(nursery, buffer=8)
        bob = await Client.connect(port, "bob")
        await bob.expect("* bob joined (1 here)")

        # The lazy client has a tiny receive buffer, so the server's buffers for it fill soon.
        sock = nursery_io.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect((HOST, port))
        lazy = Client(nursery_io.SocketStream(sock))
        await lazy.expect("* welcome! what's your nickname?")
        await lazy.say("lazy")
        await bob.expect("* lazy joined (2 here)")

        # Bob talks and reads his own messages back; lazy never reads anything again.
        notice = "* lazy was disconnected (not reading fast enough)"
        sent = 0
        kicked = False
        while not kicked:
            sent += 1
            message = f"message {sent} " + "." * 500
            await bob.say(message)
            while (line := await bob.lines.readline()) != f"<bob> {message}":
                assert line == notice
                kicked = True
            assert sent < 10_000, "lazy was never disconnected"

        # Bob goes on as if nothing happened.
        await bob.say("anyone?")
        await bob.expect("<bob> anyone?")
        assert list(room.members) == ["bob"]
        assert room.kicked_for_slowness == 1
        # Lazy gets a prefix of the conversation, then the end of the connection.
        received = 0
        try:
            while (line := await lazy.lines.readline()) is not None:
                received += 1
        except nursery_io.BrokenResourceError:
            pass  # closing with data still unsent is allowed to reset the connection
        assert received < sent
        await lazy.aclose()
        await bob.aclose()


async def test_a_pasted_burst_does_not_get_anyone_kicked(nursery: nursery_io.Nursery) -> None:
    with nursery_io.fail_after(30):
        room, port = await start(nursery, buffer=8)
        alice = await Client.connect(port, "alice")
        await alice.expect("* alice joined (1 here)")
        bob = await Client.connect(port, "bob")
        await bob.expect("* bob joined (2 here)")
        await alice.expect("* bob joined (2 here)")
        # 100 lines in one write: far more than the 8-message buffers, yet both keep up.
        await alice.stream.send_all(b"".join(b"line %d\n" % n for n in range(100)))
        for client in (alice, bob):
            await client.expect(*[f"<alice> line {n}" for n in range(100)])
        assert room.kicked_for_slowness == 0
        await alice.aclose()
        await bob.aclose()


async def test_overlong_lines_are_not_sent(nursery: nursery_io.Nursery) -> None:
    with nursery_io.fail_after(30):
        _, port = await start(nursery)
        alice = await Client.connect(port, "alice")
        await alice.expect("* alice joined (1 here)")
        mallory = await Client.connect(port, "mallory")
        await alice.expect("* mallory joined (2 here)")
        await mallory.expect("* mallory joined (2 here)")
        notice = "* not sent: lines are limited to 1024 bytes"
        # A whole line over the limit, in one piece...
        await mallory.say("x" * 5000)
        await mallory.expect(notice)
        # ...one that never ends (refused once it has passed the limit)...
        await mallory.stream.send_all(b"y" * 3000)
        await mallory.expect(notice)
        await mallory.stream.send_all(b"y" * 100_000 + b" the end of the long line\n")
        # ...and the limit itself, which is fine.
        await mallory.say("z" * 1024)
        await mallory.say("still here")
        for client in (alice, mallory):
            await client.expect(f"<mallory> {'z' * 1024}", "<mallory> still here")
        await alice.aclose()
        await mallory.aclose()


async def test_control_characters_reach_nobody(nursery: nursery_io.Nursery) -> None:
    with nursery_io.fail_after(30):
        _, port = await start(nursery)
        alice = await Client.connect(port, "alice")
        await alice.expect("* alice joined (1 here)")
        mallory = await Client.connect(port, "mallory")
        await alice.expect("* mallory joined (2 here)")
        # Clear the screen, recolour, overwrite the line, ring the bell, reverse the text.
        await mallory.say("\x1b[2J\x1b[31mred\x1b[0m fake\r<alice> hi\x07 \u202etxet \x9b1m")
        expected = (
            "<mallory> \\x1b[2J\\x1b[31mred\\x1b[0m fake\\x0d<alice> hi\\x07 \\u202etxet \\x9b1m"
        )
        await alice.expect(expected)
        # Ordinary text, accents and emoji (joiner included) go through untouched.
        await mallory.say("gr\u00fc\u00dfe \U0001f468\u200d\U0001f469")
        await alice.expect("<mallory> gr\u00fc\u00dfe \U0001f468\u200d\U0001f469")
        await alice.aclose()
        await mallory.aclose()


def test_runs_as_a_script() -> None:
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        assert banner.startswith(f"chat server listening on {HOST}:"), banner
        port = int(banner.rsplit(":", 1)[1])
        with socket.create_connection((HOST, port), timeout=30) as conn:
            replies = conn.makefile("rb")
            assert replies.readline() == b"* welcome! what's your nickname?\n"
            conn.sendall(b"carol\nhello world\n")
            assert replies.readline() == b"* carol joined (1 here)\n"
            assert replies.readline() == b"<carol> hello world\n"
        server.send_signal(signal.SIGINT)
        out, _ = server.communicate(timeout=30)
        assert server.returncode == 0
        assert "chat server stopped (0 slow clients disconnected)" in out
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def test_a_terminal_escape_over_loopback_to_the_script() -> None:
    # What a user of `nc` sees: escape sequences arrive as visible text, never as controls.
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().rsplit(":", 1)[1])
        with socket.create_connection((HOST, port), timeout=30) as conn:
            replies = conn.makefile("rb")
            assert replies.readline() == b"* welcome! what's your nickname?\n"
            conn.sendall(b"\x1b]0;pwned\x07\ndave\n\x1b[2Jboo\n" + b"w" * 2000 + b"\n")
            assert replies.readline() == b"* one word, up to 32 printable characters please\n"
            assert replies.readline() == b"* dave joined (1 here)\n"
            assert replies.readline() == b"<dave> \\x1b[2Jboo\n"
            assert replies.readline() == b"* not sent: lines are limited to 1024 bytes\n"
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
        assert server.returncode == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
