"""The echo server and client examples: in-process, misbehaving clients, and as scripts."""

from __future__ import annotations

import signal
import socket
import struct
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

import nursery_io
import nursery_io.testing
from examples.echo_client import (
    EchoMismatchError,
    LineReader,
    echo_lines,
    explain,
    run_clients,
)
from examples.echo_server import serve_echo

EXAMPLES = Path(__file__).parents[2] / "examples"
HOST = "127.0.0.1"


async def test_concurrent_clients_get_their_own_lines_back(nursery: nursery_io.Nursery) -> None:
    with nursery_io.fail_after(30):
        port = await nursery.start(serve_echo, 0, HOST)
        assert await run_clients(HOST, port, clients=20, lines=200) == 4000


async def test_large_transfer_does_not_deadlock(nursery: nursery_io.Nursery) -> None:
    # Several MB in flight at once: only works because the client reads while it sends.
    with nursery_io.fail_after(30):
        port = await nursery.start(serve_echo, 0, HOST)
        await echo_lines(HOST, port, [b"x" * 60_000] * 100)


async def test_client_detects_a_wrong_echo(nursery: nursery_io.Nursery) -> None:
    async def liar(stream: nursery_io.SocketStream) -> None:
        async for chunk in stream:
            await stream.send_all(chunk.upper())

    with nursery_io.fail_after(30):
        listeners = await nursery.start(partial(nursery_io.serve_tcp, host=HOST), liar, 0)
        port = listeners[0].socket.getsockname()[1]
        with pytest.RaisesGroup(EchoMismatchError, flatten_subgroups=True):
            await echo_lines(HOST, port, [b"hello"])


async def test_a_client_resetting_does_not_stop_the_server(nursery: nursery_io.Nursery) -> None:
    with nursery_io.fail_after(30):
        port = await nursery.start(serve_echo, 0, HOST)
        stream = await nursery_io.open_tcp_stream(HOST, port)
        await stream.send_all(b"x" * 100_000)
        # SO_LINGER 0: close sends a RST instead of a FIN, so the server's handler sees a
        # broken connection in the middle of echoing.
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()
        await nursery_io.testing.wait_all_tasks_blocked()
        await echo_lines(HOST, port, [b"still serving"])


async def test_line_reader_splits_and_returns_the_tail() -> None:
    send, receive = nursery_io.testing.memory_stream_one_way_pair()
    await send.send_all(b"one\ntwo\nthr")
    await send.send_all(b"ee\nfour")
    await send.aclose()
    reader = LineReader(receive)
    assert [await reader.readline() for _ in range(5)] == [b"one", b"two", b"three", b"four", None]


def test_runs_as_scripts() -> None:
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "echo_server.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        assert banner.startswith(f"echo server listening on {HOST}:"), banner
        port = banner.rsplit(":", 1)[1].strip()
        client = subprocess.run(
            [sys.executable, str(EXAMPLES / "echo_client.py"), "--port", port, "--clients", "5"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "5 clients: 500 lines echoed correctly" in client.stdout
        # Ctrl+C: the server's nursery is cancelled and the process exits cleanly.
        server.send_signal(signal.SIGINT)
        out, _ = server.communicate(timeout=30)
        assert server.returncode == 0
        assert "echo server stopped" in out
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def closed_port() -> int:
    """A loopback port nobody listens on (just released, so nothing else has it yet)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def test_client_without_a_server_says_so_in_one_line() -> None:
    port = closed_port()
    client = subprocess.run(
        [sys.executable, str(EXAMPLES / "echo_client.py"), "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert client.returncode == 1
    assert client.stdout == ""
    assert client.stderr == f"echo_client: can't connect to {HOST}:{port}: Connection refused\n"


def test_only_expected_failures_are_explained() -> None:
    too_slow = ExceptionGroup("outer", [nursery_io.TooSlowError()])
    assert explain(too_slow, 2.5) == "gave up after 2.5 s (--timeout)"
    mismatch = ExceptionGroup("outer", [ExceptionGroup("inner", [EchoMismatchError("sent x")])])
    assert explain(mismatch, 30) == "sent x"
    # A bug keeps its traceback: no one-line summary can hide it.
    assert explain(ExceptionGroup("outer", [EchoMismatchError("x"), KeyError("bug")]), 30) is None
    assert explain(ZeroDivisionError(), 30) is None
