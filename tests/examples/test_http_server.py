"""The HTTP server example: real clients (http.client in threads, raw sockets), slow clients,
malformed requests, path escapes, and the file engine that served the files."""

from __future__ import annotations

import http.client
import logging
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import nursery_io
from examples.http_server import StaticFileServer, serve_http
from nursery_io.testing import MockClock

EXAMPLE = Path(__file__).parents[2] / "examples" / "http_server.py"
HOST = "127.0.0.1"

FILES = {
    "index.html": b"<h1>home</h1>\n",
    "style.css": b"body { color: red }\n",
    "empty.txt": b"",
    "data.bin": os.urandom(1_000_000),
    "sub/index.html": b"<p>sub</p>\n",
    "sub/n\u00f6t ascii.txt": "gr\u00fc\u00dfe\n".encode(),
}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    for name, data in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (tmp_path / "secret.txt").write_text("outside the root")
    return root


@pytest.fixture
def no_logged_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    # The server logs (instead of crashing on) unexpected errors: make those fail the test.
    yield
    errors = [r for r in caplog.records if r.name == "http_server" and r.levelno >= logging.ERROR]
    assert not errors, errors


@dataclass
class Running:
    server: StaticFileServer
    port: int


@pytest.fixture
async def running(
    nursery: nursery_io.Nursery, site: Path, no_logged_errors: None
) -> AsyncIterator[Running]:
    # A generous timeout: threads on a loaded machine must never trip it by accident.
    server = StaticFileServer(str(site), timeout=30)
    port = await nursery.start(serve_http, server, 0, HOST)
    yield Running(server, port)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def fetch_all(port: int, requests: list[tuple[str, str]]) -> tuple[list[Reply], int]:
    """Blocking: send ``requests`` over one keep-alive connection; return the replies and how
    many TCP connections http.client had to open."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    sockets = set()
    replies = []
    try:
        for method, target in requests:
            body = b"ignored" if method == "POST" else None
            connection.request(method, target, body=body)
            sockets.add(id(connection.sock))
            response = connection.getresponse()
            body = response.read()
            replies.append(Reply(response.status, dict(response.getheaders()), body))
    finally:
        connection.close()
    return replies, len(sockets)


async def fetch(port: int, requests: list[tuple[str, str]]) -> tuple[list[Reply], int]:
    return await nursery_io.to_thread.run_sync(fetch_all, port, requests)


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, then read until the server closes the connection."""
    async with await nursery_io.open_tcp_stream(HOST, port) as stream:
        await stream.send_all(data)
        received = bytearray()
        async for chunk in stream:
            received += chunk
        return bytes(received)


async def test_files_over_one_keep_alive_connection(running: Running) -> None:
    with nursery_io.fail_after(30):
        targets = [
            "/",
            "/style.css",
            "/empty.txt",
            "/data.bin",
            "/sub/",
            "/sub/n%C3%B6t%20ascii.txt",
        ]
        replies, connections = await fetch(running.port, [("GET", t) for t in targets])
    assert connections == 1
    assert running.server.statistics.connections == 1
    assert running.server.statistics.requests == len(targets)
    expected = ["index.html", "style.css", "empty.txt", "data.bin", "sub/index.html"]
    expected.append("sub/n\u00f6t ascii.txt")
    for reply, name in zip(replies, expected, strict=True):
        assert reply.status == 200
        assert reply.body == FILES[name]
        assert reply.headers["Content-Length"] == str(len(FILES[name]))
    content_types = [reply.headers["Content-Type"] for reply in replies]
    assert content_types == [
        "text/html; charset=utf-8",
        "text/css; charset=utf-8",
        "text/plain; charset=utf-8",
        "application/octet-stream",
        "text/html; charset=utf-8",
        "text/plain; charset=utf-8",
    ]


async def test_concurrent_clients(running: Running) -> None:
    results: list[list[Reply]] = []

    async def client(n: int) -> None:
        targets = ["/data.bin", "/", f"/missing-{n}", "/style.css"] * 3
        replies, _ = await fetch(running.port, [("GET", t) for t in targets])
        results.append(replies)

    with nursery_io.fail_after(60):
        async with nursery_io.open_nursery() as nursery:
            for n in range(8):
                nursery.start_soon(client, n)
    assert len(results) == 8
    for replies in results:
        assert [r.status for r in replies] == [200, 200, 404, 200] * 3
        assert replies[0].body == FILES["data.bin"]
    assert running.server.statistics.connections == 8
    assert running.server.statistics.responses_by_status == {200: 72, 404: 24}


async def test_head_get_the_headers_without_the_body(running: Running) -> None:
    with nursery_io.fail_after(30):
        replies, _ = await fetch(running.port, [("HEAD", "/data.bin"), ("HEAD", "/nope")])
    assert [r.status for r in replies] == [200, 404]
    assert replies[0].headers["Content-Length"] == str(len(FILES["data.bin"]))
    assert replies[0].body == b""
    assert replies[1].body == b""


async def test_error_statuses(running: Running) -> None:
    requests = [
        ("GET", "/missing.html"),  # 404
        ("POST", "/index.html"),  # 405, with its body read and discarded: keep-alive holds
        ("DELETE", "/index.html"),
        ("GET", "/../secret.txt"),  # 403: '..' never leaves the root...
        ("GET", "/sub/../../secret.txt"),
        ("GET", "/%2e%2e/secret.txt"),  # ...even percent-encoded
        ("GET", "/%2E%2E%2Fsecret.txt"),
        ("GET", "/sub"),  # 301 to /sub/
        ("GET", "/index.html/x"),  # a file used as a directory: 404
        ("GET", "/%ff"),  # not UTF-8: 400
        ("GET", "/a%00b"),  # NUL: 400
        ("GET", "/index.html?v=1#frag"),  # query strings are ignored
    ]
    with nursery_io.fail_after(30):
        replies, connections = await fetch(running.port, requests)
    assert connections == 1  # none of these errors ends the connection
    statuses = [r.status for r in replies]
    assert statuses == [404, 405, 405, 403, 403, 403, 403, 301, 404, 400, 400, 200]
    assert replies[1].headers["Allow"] == "GET, HEAD"
    assert replies[7].headers["Location"] == "/sub/"
    assert all(b"outside" not in r.body for r in replies)


async def test_malformed_requests_get_400_and_the_connection_closes(running: Running) -> None:
    with nursery_io.fail_after(30):
        reply = await raw_exchange(running.port, b"GARBAGE\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert b"connection: close\r\n" in reply.lower()
        # Raw requests with a path http.client would not send.
        request = b"GET ../secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        reply = await raw_exchange(running.port, request)
        assert reply.startswith(b"HTTP/1.1 400 ")
        reply = await raw_exchange(running.port, b"GET /../secret.txt HTTP/1.0\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 403 ")
        # HTTP/1.1 without Host is a protocol error too.
        reply = await raw_exchange(running.port, b"GET / HTTP/1.1\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400 ")


async def test_oversized_headers_and_bodies_are_refused(running: Running) -> None:
    with nursery_io.fail_after(30):
        huge_header = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
        assert (await raw_exchange(running.port, huge_header)).startswith(b"HTTP/1.1 431 ")
        body = b"b" * 100_000
        big_get = b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + body
        reply = await raw_exchange(running.port, big_get)
        assert reply.startswith(b"HTTP/1.1 413 ")
        assert b"connection: close\r\n" in reply.lower()
        # A chunked body has no length up front: it is refused once it has grown too big.
        chunked = b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunked += b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        assert (await raw_exchange(running.port, chunked)).startswith(b"HTTP/1.1 413 ")
        # A method we refuse anyway gets its 405 (and the connection closes: too much body).
        big_post = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + body
        reply = await raw_exchange(running.port, big_post)
        assert reply.startswith(b"HTTP/1.1 405 ")
        assert b"connection: close\r\n" in reply.lower()


async def test_http_1_0_and_connection_close(running: Running) -> None:
    with nursery_io.fail_after(30):
        reply = await raw_exchange(running.port, b"GET /style.css HTTP/1.0\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
        assert reply.endswith(b"\r\n\r\n" + FILES["style.css"])
        # Two pipelined requests; the second asks the server to close afterwards.
        keep_alive = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        closing = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        reply = await raw_exchange(running.port, keep_alive + closing)
        assert reply.count(b"<h1>home</h1>") == 2


async def start_server(nursery: nursery_io.Nursery, root: Path, timeout: float) -> Running:
    server = StaticFileServer(str(root), timeout=timeout)
    return Running(server, await nursery.start(serve_http, server, 0, HOST))


async def test_a_silent_client_is_dropped(
    nursery: nursery_io.Nursery, site: Path, autojump_clock: MockClock
) -> None:
    # Virtual time: the server's 5 s deadline passes as soon as everyone is waiting.
    running = await start_server(nursery, site, timeout=5)
    with nursery_io.fail_after(60):
        async with await nursery_io.open_tcp_stream(HOST, running.port) as stream:
            start = nursery_io.current_time()
            assert await stream.receive_some() == b""  # closed by the server, no response
            assert nursery_io.current_time() - start >= 5
    assert running.server.statistics.slow_clients_dropped == 1


async def test_a_dribbling_client_is_dropped(
    nursery: nursery_io.Nursery, site: Path, autojump_clock: MockClock
) -> None:
    running = await start_server(nursery, site, timeout=5)
    request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    sent = 0
    with nursery_io.fail_after(60):
        async with await nursery_io.open_tcp_stream(HOST, running.port) as stream:
            # One byte a second: each read is quick, but the request as a whole is too slow.
            with pytest.raises(nursery_io.BrokenResourceError):
                for byte in request:
                    await stream.send_all(bytes([byte]))
                    sent += 1
                    await nursery_io.sleep(1)
            assert 0 < sent < len(request)
    assert running.server.statistics.slow_clients_dropped == 1
    assert running.server.statistics.requests == 0


async def test_an_idle_keep_alive_connection_is_closed(
    nursery: nursery_io.Nursery, site: Path, autojump_clock: MockClock
) -> None:
    # A request that needs no file I/O: autojump moves time whenever no task is runnable,
    # even while a file operation is still in flight, which would make the test's own
    # deadline fire early (see test_a_client_that_stops_reading_is_dropped).
    running = await start_server(nursery, site, timeout=5)
    with nursery_io.fail_after(60):
        async with await nursery_io.open_tcp_stream(HOST, running.port) as stream:
            await stream.send_all(b"GET /../x HTTP/1.1\r\nHost: x\r\n\r\n")
            received = bytearray()
            async for chunk in stream:  # the response, then end-of-file after 5 idle seconds
                received += chunk
    assert received.startswith(b"HTTP/1.1 403 ")
    assert running.server.statistics.slow_clients_dropped == 1


async def test_a_client_that_stops_reading_is_dropped(
    nursery: nursery_io.Nursery, tmp_path: Path
) -> None:
    # Real time and a short timeout: the server reads the file while we wait, and a mock
    # clock would jump over the time those reads take.
    (tmp_path / "big.bin").write_bytes(b"z" * 30_000_000)
    running = await start_server(nursery, tmp_path, timeout=0.5)
    with nursery_io.fail_after(60):
        async with await nursery_io.open_tcp_stream(HOST, running.port) as stream:
            await stream.send_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            # Never read: the kernel buffers fill, the server's send blocks, and after half a
            # second the server gives up on us.
            while running.server.statistics.slow_clients_dropped == 0:
                await nursery_io.sleep(0.05)
    assert running.server.statistics.responses_by_status == {200: 1}


async def test_files_are_read_by_the_file_engine(running: Running) -> None:
    def engine_ops() -> dict[str, int]:
        engine = nursery_io.lowlevel.current_statistics().io_statistics.file_engine
        return dict(engine.ops_by_engine) if engine is not None else {}

    before = engine_ops()
    with nursery_io.fail_after(30):
        replies, _ = await fetch(running.port, [("GET", "/data.bin"), ("GET", "/style.css")])
    assert [r.status for r in replies] == [200, 200]
    engine = nursery_io.lowlevel.current_statistics().io_statistics.file_engine
    assert engine is not None
    after = engine_ops()
    served_by = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    if os.environ.get("NURSERY_IO_URING") == "0":
        assert engine.engine == "threads"
    if engine.engine == "io_uring":
        # stat + open + reads + close for each file, on the ring or (cached reads) inline
        # from the page cache: no threads at all.
        assert engine.fallback_reason is None
        assert served_by["io_uring"] + served_by.get("inline", 0) >= 2 * 4
        assert served_by.get("threads", 0) == 0
    else:
        assert engine.fallback_reason
        assert served_by["threads"] >= 2 * 4


def test_runs_as_a_script(site: Path) -> None:
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLE), str(site), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        assert banner.startswith(f"serving {site} on http://{HOST}:"), banner
        url = banner.split(" on ", 1)[1].strip()
        with urllib.request.urlopen(url + "style.css", timeout=30) as response:
            assert response.read() == FILES["style.css"]
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=30)
        assert server.returncode == 0
        assert "got SIGTERM, shutting down" in out
        assert "1 connections, 1 requests" in out
        assert "file engine: " in out
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


async def read_until(stream: nursery_io.SocketStream, marker: bytes, received: bytearray) -> bytes:
    """Read into ``received`` until it holds ``marker``; return (and remove) what comes up to
    and including it."""
    while (end := received.find(marker)) < 0:
        chunk = await stream.receive_some()
        assert chunk, f"connection closed; received {bytes(received)!r}"
        received += chunk
    head = bytes(received[: end + len(marker)])
    del received[: end + len(marker)]
    return head


async def test_an_overlong_name_gets_404_and_an_overlong_target_414(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    with nursery_io.fail_after(30):
        # One path component over NAME_MAX (255 bytes), and a long path of short ones.
        for target, status in [
            (b"/" + b"n" * 256, 404),
            (b"/sub/" + b"%C3%B6" * 200, 404),  # 200 characters, but 400 bytes
            (b"/" + b"n" * 255, 404),  # a legal name that doesn't exist
            (b"/" + b"n" * 20_000, 414),
            (b"/" + b"a/" * 5000, 414),
        ]:
            request = b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            reply = await raw_exchange(running.port, request)
            assert reply.startswith(b"HTTP/1.1 %d " % status), (target[:40], reply[:100])
    assert not [r for r in caplog.records if r.name == "http_server"]


async def test_a_failure_is_a_500_and_its_log_is_bounded(
    running: Running, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: nursery_io.Path) -> str:
        raise RuntimeError(f"can't guess the type of {path}?{'q' * 20_000}")

    monkeypatch.setattr("examples.http_server.content_type", broken)
    with nursery_io.fail_after(30):
        request = b"GET /style.css?" + b"x" * 7000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        reply = await raw_exchange(running.port, request)
    assert reply.startswith(b"HTTP/1.1 500 ")
    [record] = [r for r in caplog.records if r.name == "http_server"]
    caplog.clear()  # expected: don't let no_logged_errors fail the test
    message = record.getMessage()
    assert "GET /style.css?xxx" in message
    assert "RuntimeError: can't guess the type of" in message
    assert len(message) < 5000
    assert max(len(line) for line in message.splitlines()) < 400


async def test_refusals_do_not_wait_for_the_body(running: Running) -> None:
    # The body never comes: a 405 (or 413, 404) must not wait for it.
    requests = [
        (b"PUT /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", 405),
        (b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n", 405),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\nExpect: 100-continue\r\n\r\n",
            413,
        ),
        (
            b"GET /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            404,
        ),
    ]
    for request, status in requests:
        # The server's own timeout is 30 s: an answer within 10 s didn't wait for the body.
        with nursery_io.fail_after(10):
            async with await nursery_io.open_tcp_stream(HOST, running.port) as stream:
                await stream.send_all(request)
                received = bytearray()
                head = await read_until(stream, b"\r\n\r\n", received)
                assert head.startswith(b"HTTP/1.1 %d " % status), head
                if b"Expect" in request:
                    # No "100 Continue" first, and the connection ends with the answer: the
                    # client may or may not send its body now.
                    assert b"connection: close\r\n" in head.lower()
                    async for chunk in stream:
                        received += chunk
                    assert b"HTTP/1.1" not in received


async def test_a_refused_body_is_skipped_to_keep_the_connection(running: Running) -> None:
    with nursery_io.fail_after(30):
        async with await nursery_io.open_tcp_stream(HOST, running.port) as stream:
            received = bytearray()
            await stream.send_all(b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
            head = await read_until(stream, b"405 Method Not Allowed\n", received)
            assert head.startswith(b"HTTP/1.1 405 ")
            # The body comes after the answer; then the next request on the same connection.
            await stream.send_all(b"hello" + b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await read_until(stream, FILES["style.css"], received)
            assert head.startswith(b"HTTP/1.1 200 ")


async def test_100_continue_when_the_request_is_accepted(running: Running) -> None:
    with nursery_io.fail_after(30):
        async with await nursery_io.open_tcp_stream(HOST, running.port) as stream:
            received = bytearray()
            await stream.send_all(
                b"GET /style.css HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            assert await read_until(stream, b"\r\n\r\n", received) == (b"HTTP/1.1 100 \r\n\r\n")
            await stream.send_all(b"hello")
            head = await read_until(stream, FILES["style.css"], received)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            # Keep-alive holds: another request with a body but no Expect header.
            await stream.send_all(
                b"GET /empty.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
            )
            head = await read_until(stream, b"\r\n\r\n", received)
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert b"Content-Length: 0\r\n" in head
    assert running.server.statistics.responses_by_status == {200: 2}


@pytest.fixture
def site_with_links(site: Path) -> Path:
    outside = site.parent
    (site / "inside-link.css").symlink_to("style.css")
    (site / "secret-link.txt").symlink_to(outside / "secret.txt")
    (site / "outside-dir").symlink_to(outside)
    (site / "sub" / "up.txt").symlink_to("../../secret.txt")
    (site / "dangling").symlink_to(outside / "nowhere")
    (site / "loop").symlink_to("loop")
    return site


async def test_symlinks_cannot_leave_the_root(
    nursery: nursery_io.Nursery, site_with_links: Path, no_logged_errors: None
) -> None:
    running = await start_server(nursery, site_with_links, timeout=30)
    requests = [
        ("GET", "/inside-link.css"),  # a link that stays inside: served
        ("GET", "/secret-link.txt"),
        ("GET", "/outside-dir/secret.txt"),
        ("GET", "/outside-dir/site/style.css"),  # out and back in: it's inside the root
        ("GET", "/sub/up.txt"),
        ("GET", "/dangling"),
        ("GET", "/loop"),
    ]
    with nursery_io.fail_after(30):
        replies, connections = await fetch(running.port, requests)
    assert [r.status for r in replies] == [200, 403, 403, 200, 403, 404, 404]
    assert replies[0].body == replies[3].body == FILES["style.css"]
    assert all(b"outside" not in r.body for r in replies)
    assert connections == 1


async def test_a_root_that_is_a_symlink_still_serves(
    nursery: nursery_io.Nursery, site: Path, no_logged_errors: None
) -> None:
    (site.parent / "alias").symlink_to(site)
    (site / "inside-link.css").symlink_to("style.css")
    running = await start_server(nursery, site.parent / "alias", timeout=30)
    with nursery_io.fail_after(30):
        replies, _ = await fetch(running.port, [("GET", "/inside-link.css"), ("GET", "/")])
    assert [r.status for r in replies] == [200, 200]


def test_a_huge_name_over_loopback_to_the_script(site: Path) -> None:
    # What a user sees in the server's terminal: an answer for the client, nothing logged.
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLE), str(site), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split(" on ", 1)[1].strip()
        for name, status in [("x" * 300, 404), ("x" * 20_000, 414)]:
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(url + name, timeout=30)
            assert caught.value.code == status
            caught.value.close()
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
        assert err == ""
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
