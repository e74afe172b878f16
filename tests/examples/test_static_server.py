"""The static file server example against a real HTTP client (httpx) and raw sockets, on both
file engines and in both sending modes (zero-copy send_file, read + send_all)."""

from __future__ import annotations

import email.utils
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import nursery_io
from examples.static_server import StaticServer, serve_static
from nursery_io import lowlevel

EXAMPLE = Path(__file__).parents[2] / "examples" / "static_server.py"
BIG = os.urandom(3_000_000)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / "nolist").mkdir()
    (root / "big.bin").write_bytes(BIG)
    (root / "hello.txt").write_bytes(b"hello, world\n")
    (root / "empty.txt").write_bytes(b"")
    (root / "sub" / "index.html").write_bytes(b"<p>sub</p>\n")
    (root / "nolist" / "a<b>.txt").write_bytes(b"x")
    (tmp_path / "secret.txt").write_bytes(b"secret")
    (root / "link-out").symlink_to(tmp_path / "secret.txt")
    (root / "link-in").symlink_to(root / "hello.txt")
    return root


@dataclass
class Running:
    server: StaticServer
    port: int
    token: Any

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def io_statistics(self) -> Any:
        return nursery_io.from_thread.run_sync(
            lambda: lowlevel.current_statistics().io_statistics.file_engine,
            trio_token=self.token,
        )


def start_server(server: StaticServer) -> Iterator[Running]:
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        async with nursery_io.open_nursery() as nursery:
            state["port"] = await nursery.start(serve_static, server, 0)
            state["token"] = lowlevel.current_trio_token()
            state["scope"] = nursery.cancel_scope
            ready.set()

    thread = threading.Thread(target=nursery_io.run, args=(main,))
    thread.start()
    assert ready.wait(10)
    try:
        yield Running(server, state["port"], state["token"])
    finally:
        nursery_io.from_thread.run_sync(state["scope"].cancel, trio_token=state["token"])
        thread.join(10)
        assert not thread.is_alive()


@pytest.fixture(params=["io_uring", "threads"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("NURSERY_IO_URING", "1" if request.param == "io_uring" else "0")
    return str(request.param)


@pytest.fixture(params=[True, False], ids=["zero-copy", "read-send"])
def running(site: Path, engine: str, request: pytest.FixtureRequest) -> Iterator[Running]:
    yield from start_server(StaticServer(site, zero_copy=request.param))


def raw_request(port: int, data: bytes, *, read_until_close: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if not read_until_close:
                break
        return b"".join(chunks)


# --- GET / HEAD ---------------------------------------------------------------------------------


def test_get_files_and_the_engine_that_sent_them(running: Running, engine: str) -> None:
    with httpx.Client(base_url=running.url) as client:
        response = client.get("/big.bin")
        assert response.status_code == 200
        assert response.content == BIG
        assert response.headers["content-length"] == str(len(BIG))
        assert response.headers["accept-ranges"] == "bytes"
        assert client.get("/hello.txt").text == "hello, world\n"
        assert client.get("/hello.txt").headers["content-type"] == "text/plain"
        empty = client.get("/empty.txt")
        assert (empty.status_code, empty.content) == (200, b"")
        assert client.get("/sub/").text == "<p>sub</p>\n"
        assert client.get("/link-in").text == "hello, world\n"  # a symlink inside the root
    # Keep-alive: one connection for everything.
    assert running.server.stats.connections == 1
    stats = running.io_statistics()
    if engine == "io_uring":
        assert stats.engine == "io_uring"
        assert stats.ops_by_engine["threads"] <= 6  # only the realpath() calls
    else:
        assert stats.engine == "threads"
        assert stats.ops_by_engine["io_uring"] == 0


def test_head(running: Running) -> None:
    response = httpx.head(running.url + "/big.bin")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(BIG))
    assert response.content == b""


# --- ranges and conditional requests --------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "status", "body"),
    [
        ("bytes=10-19", 206, BIG[10:20]),
        ("bytes=2999990-", 206, BIG[2999990:]),
        ("bytes=-5", 206, BIG[-5:]),
        ("bytes=100-99999999", 206, BIG[100:]),
        ("bytes=0-0,5-6", 200, BIG),  # several ranges: the whole file is a valid answer
        ("items=0-1", 200, BIG),
        ("bytes=3000000-", 416, None),
        ("bytes=-0", 416, None),
    ],
)
def test_range_requests(running: Running, header: str, status: int, body: bytes | None) -> None:
    response = httpx.get(running.url + "/big.bin", headers={"Range": header})
    assert response.status_code == status
    if body is not None:
        assert response.content == body
    if status == 206:
        first = header[6:].split("-", maxsplit=1)[0]
        start = len(BIG) - len(body) if not first else int(first)
        assert response.headers["content-range"] == (
            f"bytes {start}-{start + len(body) - 1}/{len(BIG)}"
        )
    if status == 416:
        assert response.headers["content-range"] == f"bytes */{len(BIG)}"


def test_conditional_requests(running: Running) -> None:
    with httpx.Client(base_url=running.url) as client:
        first = client.get("/hello.txt")
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        assert client.get("/hello.txt", headers={"If-None-Match": etag}).status_code == 304
        assert (
            client.get("/hello.txt", headers={"If-None-Match": '"x", ' + etag}).status_code == 304
        )
        assert client.get("/hello.txt", headers={"If-None-Match": '"other"'}).status_code == 200
        assert client.get("/hello.txt", headers={"If-Modified-Since": modified}).status_code == 304
        old = email.utils.formatdate(time.time() - 10**6, usegmt=True)
        response = client.get("/hello.txt", headers={"If-Modified-Since": old})
        assert response.status_code == 200
        assert response.text == "hello, world\n"
        garbage = client.get("/hello.txt", headers={"If-Modified-Since": "yesterday"})
        assert garbage.status_code == 200
        # If-Range: the range only while the file is unchanged.
        ranged = client.get("/hello.txt", headers={"Range": "bytes=0-4", "If-Range": etag})
        assert (ranged.status_code, ranged.text) == (206, "hello")
        whole = client.get("/hello.txt", headers={"Range": "bytes=0-4", "If-Range": '"old"'})
        assert (whole.status_code, whole.text) == (200, "hello, world\n")


# --- paths ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/sub/../../secret.txt",
        "/link-out",  # a symlink that points outside the root
        "/missing.txt",
        "/hello.txt/x",
        "/nolist/",  # no listing, no index.html
    ],
)
def test_no_escape_and_not_found(running: Running, target: str) -> None:
    response = raw_request(
        running.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), read_until_close=False
    )
    assert response.startswith(b"HTTP/1.1 404 ")
    assert b"secret" not in response


def test_directory_redirect_and_too_long_names(running: Running) -> None:
    with httpx.Client(base_url=running.url) as client:
        response = client.get("/sub")
        assert response.status_code == 301
        assert response.headers["location"] == "/sub/"
        assert client.get("/" + "a" * 300).status_code == 414  # ENAMETOOLONG
        assert client.get("/" + "a/" * 3000).status_code == 414  # target over 4 KiB
        assert client.get("/a%00b").status_code == 400


def test_listing_when_enabled(site: Path, engine: str) -> None:
    for running in start_server(StaticServer(site, listing=True)):
        response = httpx.get(running.url + "/nolist/")
        assert response.status_code == 200
        assert "a&lt;b&gt;.txt" in response.text
        assert 'href="a%3Cb%3E.txt"' in response.text
        assert httpx.get(running.url + "/").status_code == 200


# --- bad requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"garbage\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\n\r\n", b"400"),  # HTTP/1.1 without Host
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 20000 + b"\r\n\r\n", b"431"),
        (b"DELETE /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n", b"405"),
    ],
)
def test_bad_requests_get_a_clean_4xx_and_a_close(
    running: Running, request_bytes: bytes, status: bytes
) -> None:
    response = raw_request(running.port, request_bytes)
    assert response.startswith(b"HTTP/1.1 " + status + b" ")
    assert b"connection: close" in response.lower()


def test_expect_100_continue_for_a_body_we_dont_want(running: Running) -> None:
    # The final answer comes without "100 Continue", so the client never sends the body,
    # and the connection is closed (the server never read the body).
    response = raw_request(
        running.port,
        b"PUT /up.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
        b"Expect: 100-continue\r\n\r\n",
    )
    assert response.startswith(b"HTTP/1.1 405 ")
    assert b"100 Continue" not in response


def test_expect_100_continue_on_a_get_is_answered(running: Running) -> None:
    response = raw_request(
        running.port,
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
    )
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(b"hello, world\n")


def test_connection_limit(site: Path, engine: str) -> None:
    for running in start_server(StaticServer(site, max_connections=1)):
        with httpx.Client(base_url=running.url) as first:
            assert first.get("/hello.txt").status_code == 200  # keeps its connection
            second = raw_request(running.port, b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            assert second.startswith(b"HTTP/1.1 503 ")
        time.sleep(0.1)
        assert httpx.get(running.url + "/hello.txt").status_code == 200


def test_idle_connections_are_closed(site: Path) -> None:
    for running in start_server(StaticServer(site, timeout=0.2)):
        with socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
            assert sock.recv(100) == b""  # closed by the server, nothing sent


# --- the command line ---------------------------------------------------------------------


def run_cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=30,
        cwd=EXAMPLE.parents[1], check=False, **kwargs,
    )  # fmt: skip


def test_help() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "--read-send" in result.stdout


def test_missing_directory_is_an_error_message(tmp_path: Path) -> None:
    result = run_cli(str(tmp_path / "nope"))
    assert result.returncode == 2
    assert "not a directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_an_error_message(site: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run_cli(str(site), "--port", str(busy.getsockname()[1]))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "static_server:" in result.stderr


@pytest.mark.parametrize("mode", [[], ["--read-send"]], ids=["zero-copy", "read-send"])
def test_as_a_script(site: Path, mode: list[str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLE), str(site), "--port", "0", *mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=EXAMPLE.parents[1],
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving ")
        url = line.split()[3]
        assert httpx.get(url + "big.bin").content == BIG
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert "Traceback" not in err
    assert '"GET /big.bin HTTP/1.1" 200 3000000' in err
    assert "1 requests on 1 connections" in err
