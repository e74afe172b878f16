"""A static-file HTTP/1.1 server: h11 for the protocol, nursery_io for sockets, files, timeouts.

    python examples/http_server.py DIRECTORY --port 8000 --timeout 10

Then open http://127.0.0.1:8000/ (``DIRECTORY/index.html``) or ``curl -v`` any file below
DIRECTORY. Stop it with Ctrl+C (or SIGTERM): it shuts down cleanly and prints which engine
read the files -- io_uring when the kernel allows it, worker threads otherwise.

What it shows:

* one task per connection (``serve_tcp``), keep-alive, many clients at once;
* ``h11`` is a "sans-I/O" protocol library: it turns bytes into events and events into bytes,
  and we do the I/O. Any runtime with a byte stream can drive it;
* timeouts as cancel scopes: reading a whole request (from its first byte, or from the end
  of the previous response, to its last byte) must finish within ``--timeout`` seconds, so
  a client that connects and sends nothing, or dribbles its headers a byte at a time, is
  dropped. A client that stops reading our response is dropped the same way;
* files read with ``nursery_io.Path.stat`` and ``open_file``, which run on io_uring: serving
  a file takes no thread at all;
* graceful shutdown: a task waits for SIGINT/SIGTERM and cancels the server's nursery, which
  cancels every connection handler, and the program then reports its statistics.

Requests are answered with 200 (GET/HEAD of a file), 301 (a directory without its trailing
slash), 400 (malformed request), 403 (a path that tries to leave DIRECTORY, with ``..`` or
through a symbolic link), 404 (no such file, or a path component too long to be a file
name), 405 (any method but GET/HEAD), 413 (a request body over 64 KiB), 414 (a request
target over 8 KiB), 431 (headers still incomplete after 16 KiB) or 500 (a bug: logged, with
the request target shortened so a huge request can't flood the log). A directory is served
as its ``index.html``; there are no directory listings.

Request bodies: a GET or HEAD may carry one, which is read and discarded. A client that
sends ``Expect: 100-continue`` waits for our go-ahead before sending its body: it gets
``100 Continue`` only when the request will be served; a request that is refused (a PUT, a
missing file, a body that is too large) gets its error at once, without its body being
waited for.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import errno
import logging
import mimetypes
import os
import signal
import stat
import traceback
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from urllib.parse import unquote, urlsplit

import h11

import nursery_io

LOGGER = logging.getLogger("http_server")

CHUNK_SIZE = 64 * 1024
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024  # we only serve files, so request bodies are read and discarded
MAX_TARGET_BYTES = 8 * 1024
NAME_MAX = 255  # the longest file name Linux file systems accept, in bytes
LINGER_SECONDS = 2.0
LOGGED_TARGET_CHARS = 100  # what a log line may quote of a request target
LOGGED_LINE_CHARS = 300  # and of any line of a traceback (exception messages quote input)


class HTTPError(Exception):
    """Answer the current request with ``status`` instead of a file."""

    def __init__(self, status: HTTPStatus, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.headers = headers or []


@dataclass
class ServerStatistics:
    connections: int = 0
    requests: int = 0
    responses_by_status: dict[int, int] = field(default_factory=dict)
    slow_clients_dropped: int = 0


def url_path_to_file(root: nursery_io.Path, target: bytes) -> nursery_io.Path:
    """Map a request target (``/a/b%20c.txt?x=1``) to a path below ``root``.

    Percent-escapes are decoded *before* the path is split, so ``%2e%2e%2f`` can't sneak a
    ``..`` past the check; any ``..`` segment is refused outright rather than resolved, which
    keeps the *names* inside ``root`` without touching the filesystem (symbolic links are
    checked later, by ``StaticFileServer.check_inside_root``).
    """
    if len(target) > MAX_TARGET_BYTES:
        raise HTTPError(HTTPStatus.REQUEST_URI_TOO_LONG, [("Connection", "close")])
    try:
        path = unquote(urlsplit(target.decode("ascii")).path, errors="strict")
    except UnicodeError:
        raise HTTPError(HTTPStatus.BAD_REQUEST) from None
    if not path.startswith("/") or "\0" in path:
        raise HTTPError(HTTPStatus.BAD_REQUEST)
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise HTTPError(HTTPStatus.FORBIDDEN)
    if any(len(part.encode()) > NAME_MAX for part in parts):
        # No file can have this name: answer now rather than ask the kernel (ENAMETOOLONG).
        raise HTTPError(HTTPStatus.NOT_FOUND)
    return root.joinpath(*parts)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters: logs must stay bounded whatever clients send."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def describe_for_log(request: h11.Request | None) -> str:
    if request is None:
        return "a connection (no request yet)"
    target = request.target.decode("ascii", errors="replace")
    return (
        f"{request.method.decode('ascii', errors='replace')} {shorten(target, LOGGED_TARGET_CHARS)}"
    )


def bounded_traceback(exc: BaseException) -> str:
    lines = "".join(traceback.format_exception(exc)).splitlines()
    return "\n".join(shorten(line, LOGGED_LINE_CHARS) for line in lines)


def declared_body_length(request: h11.Request) -> int | None:
    """The request body's length from its headers: 0 if it has none, None if chunked."""
    if any(name == b"transfer-encoding" for name, _ in request.headers):
        return None
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)  # h11 has checked that it is a number
    return 0


def content_type(path: nursery_io.Path) -> str:
    guessed, _ = mimetypes.guess_type(path.name)
    if guessed is None:
        return "application/octet-stream"
    # An assumption a real server would make configurable: text files are UTF-8.
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


class HTTPConnection:
    """One client connection: an h11 state machine plus the stream it talks through."""

    def __init__(self, stream: nursery_io.abc.HalfCloseableStream, timeout: float) -> None:
        self.stream = stream
        self.timeout = timeout
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.request: h11.Request | None = None  # the one being answered, for log messages

    async def next_event(self) -> h11.Event:
        # h11 says what it needs: more bytes (NEED_DATA) or an event it has parsed already.
        while True:
            event = self.h11.next_event()
            if isinstance(event, h11.Event):
                return event
            # (PAUSED never happens: we don't ask for events past the end of a request.)
            assert event is h11.NEED_DATA, event
            # b"" at end-of-file is how h11 learns that the client closed the connection.
            # bytes() is free for the bytes a socket returns, and satisfies h11's signature.
            self.h11.receive_data(bytes(await self.stream.receive_some(CHUNK_SIZE)))

    async def read_request_head(self) -> h11.Request | None:
        """The next request's method, target and headers (not its body); None if the client
        closed the connection."""
        self.request = None
        event = await self.next_event()
        if isinstance(event, h11.ConnectionClosed):
            return None
        assert isinstance(event, h11.Request), event  # h11 guarantees this for a server
        self.request = event
        return event

    @property
    def body_pending(self) -> bool:
        """Whether the client still has (part of) a request body to send us."""
        return self.h11.their_state is h11.SEND_BODY

    async def discard_body(self) -> bool:
        """Read the rest of the request body and throw it away; False if it is too large
        (then it is left unread, and the connection must be closed)."""
        body_bytes = 0
        while not isinstance(event := await self.next_event(), h11.EndOfMessage):
            if isinstance(event, h11.Data):
                body_bytes += len(event.data)
                if body_bytes > MAX_BODY_BYTES:
                    return False
        return True

    async def send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            # Each write gets the full timeout: a client that stops reading is dropped, a
            # slow but steady one can download a big file.
            with nursery_io.fail_after(self.timeout):
                await self.stream.send_all(data)

    async def send_error(
        self, status: HTTPStatus, headers: list[tuple[str, str]], *, head: bool = False
    ) -> None:
        body = f"{status.value} {status.phrase}\n".encode()
        headers = [
            *base_headers(),
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            *headers,
        ]
        await self.send(h11.Response(status_code=status, headers=headers, reason=status.phrase))
        if not head:
            await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())


async def close_gracefully(stream: nursery_io.abc.HalfCloseableStream) -> None:
    """Say "no more data from us", then read and discard for a moment before closing.

    Closing a socket that still has unread input (the rest of a request we refused, say)
    makes the kernel reset the connection, and a reset can destroy our last response before
    the client has read it. ``move_on_after`` bounds the wait: a client that keeps sending
    doesn't get to keep us around.
    """
    with nursery_io.move_on_after(LINGER_SECONDS):
        await stream.send_eof()
        while await stream.receive_some(CHUNK_SIZE):
            pass


def base_headers() -> list[tuple[str, str]]:
    return [("Date", email.utils.formatdate(usegmt=True)), ("Server", "nursery_io-example")]


class StaticFileServer:
    """Serves the files below ``root``; ``handle_connection`` is the per-connection task."""

    def __init__(self, root: str, *, timeout: float = 10.0) -> None:
        self.root = nursery_io.Path(root)
        # Where the root really is, symbolic links resolved: served files must be below it.
        self.real_root = nursery_io.Path(os.path.realpath(root))
        self.timeout = timeout
        self.statistics = ServerStatistics()

    async def handle_connection(self, stream: nursery_io.abc.HalfCloseableStream) -> None:
        self.statistics.connections += 1
        connection = HTTPConnection(stream, self.timeout)
        try:
            await self.serve_requests(connection)
            await close_gracefully(stream)
        except nursery_io.TooSlowError:
            # Dropping the connection is the whole response: the handler returns, and
            # serve_tcp closes the socket.
            self.statistics.slow_clients_dropped += 1
        except (nursery_io.BrokenResourceError, nursery_io.ClosedResourceError):
            pass  # the client went away
        except Exception as exc:
            # One connection's failure must not take the server down: an exception that
            # escaped this task would cancel serve_tcp's nursery, and every other client.
            # The log gets a shortened target and traceback: both can quote client input
            # (an OSError names the file), and a 20 KB URL must not become a 20 KB log line.
            LOGGER.error(
                "error while serving %s:\n%s",
                describe_for_log(connection.request),
                bounded_traceback(exc),
            )
            if connection.h11.our_state is h11.SEND_RESPONSE:
                with contextlib.suppress(Exception):
                    status = HTTPStatus.INTERNAL_SERVER_ERROR
                    await self.error_response(connection, status, [("Connection", "close")])

    async def serve_requests(self, connection: HTTPConnection) -> None:
        while True:
            # One deadline for the whole request (head and body), not one per read: a client
            # that sends a byte every few seconds would never trip a per-read timeout.
            deadline = nursery_io.current_time() + self.timeout
            try:
                with nursery_io.fail_at(deadline):
                    request = await connection.read_request_head()
                if request is None:
                    return
                self.statistics.requests += 1
                await self.respond(connection, request, deadline)
                if connection.body_pending:
                    # We answered (with an error) before the body came. A client that waits
                    # for "100 Continue" may never send it and those bodies that are too
                    # big were refused with "Connection: close"; the other bodies are read
                    # and dropped, so the connection can carry the next request.
                    if connection.h11.our_state is h11.MUST_CLOSE:
                        return
                    with nursery_io.fail_at(deadline):
                        if not await connection.discard_body():
                            return
            except h11.RemoteProtocolError as exc:
                if connection.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    status = HTTPStatus(exc.error_status_hint)
                    await self.error_response(connection, status, [("Connection", "close")])
                return
            except HTTPError as exc:
                await self.error_response(connection, exc.status, exc.headers)
                return
            # h11 knows when the connection can't be reused (HTTP/1.0, "Connection: close").
            if connection.h11.our_state is h11.MUST_CLOSE:
                return
            connection.h11.start_next_cycle()

    async def respond(
        self, connection: HTTPConnection, request: h11.Request, deadline: float
    ) -> None:
        """Answer ``request``. Everything that can refuse it is checked before its body is
        read, so a refused request gets its error at once."""
        head = request.method == b"HEAD"
        body_length = declared_body_length(request)
        body_too_large = body_length is not None and body_length > MAX_BODY_BYTES
        try:
            if request.method not in (b"GET", b"HEAD"):
                raise HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, [("Allow", "GET, HEAD")])
            if body_too_large:
                raise HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            path, info = await self.find_file(request.target)
            if connection.body_pending:
                # Accepted: now the body is needed (to get past it to the next request).
                if connection.h11.they_are_waiting_for_100_continue:
                    await connection.send(h11.InformationalResponse(status_code=100, headers=[]))
                with nursery_io.fail_at(deadline):
                    if not await connection.discard_body():  # a chunked body can be too big
                        status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
                        raise HTTPError(status, [("Connection", "close")])
            await self.send_file(connection, path, info, head=head)
        except HTTPError as exc:
            headers = exc.headers
            if connection.body_pending and (
                body_too_large or connection.h11.they_are_waiting_for_100_continue
            ):
                # A body too big to read past, or one the client may or may not send now
                # that it has its answer: we can't tell where the next request would start,
                # so this connection ends here.
                headers = [*headers, ("Connection", "close")]
            await self.error_response(connection, exc.status, headers, head=head)

    async def error_response(
        self,
        connection: HTTPConnection,
        status: HTTPStatus,
        headers: list[tuple[str, str]],
        *,
        head: bool = False,
    ) -> None:
        self.count(status)
        await connection.send_error(status, headers, head=head)

    def count(self, status: HTTPStatus) -> None:
        by_status = self.statistics.responses_by_status
        by_status[status] = by_status.get(status, 0) + 1

    async def find_file(self, target: bytes) -> tuple[nursery_io.Path, os.stat_result]:
        """The file a request target names, and its stat; HTTPError if there is none."""
        path = url_path_to_file(self.root, target)
        info = await stat_or_none(path)  # a STATX op on io_uring
        if info is not None and stat.S_ISDIR(info.st_mode):
            if not urlsplit(target).path.endswith(b"/"):
                # Relative links in dir/index.html only work if the URL ends with a slash.
                location = urlsplit(target).path.decode("ascii") + "/"
                raise HTTPError(HTTPStatus.MOVED_PERMANENTLY, [("Location", location)])
            path = path / "index.html"
            info = await stat_or_none(path)
        if info is None or not stat.S_ISREG(info.st_mode):
            raise HTTPError(HTTPStatus.NOT_FOUND)
        await self.check_inside_root(path)
        return path, info

    async def check_inside_root(self, path: nursery_io.Path) -> None:
        """Refuse a path that a symbolic link takes out of the root.

        ``..`` was refused already, so only a symlink can lead elsewhere. An lstat of each
        component (STATX ops, no thread) finds out whether there is one; only then is the
        path resolved (a worker thread: there is no io_uring op for that) and checked.
        A real server would rather open with ``openat2(RESOLVE_BENEATH)``, which also
        closes the window between this check and the open.
        """
        relative = path.relative_to(self.root)
        current = self.root
        for part in relative.parts:
            current = current / part
            if stat.S_ISLNK((await current.lstat()).st_mode):
                break
        else:
            return
        resolved = await path.resolve()
        if not resolved.is_relative_to(self.real_root):
            raise HTTPError(HTTPStatus.FORBIDDEN)

    async def send_file(
        self,
        connection: HTTPConnection,
        path: nursery_io.Path,
        info: os.stat_result,
        *,
        head: bool,
    ) -> None:
        try:
            # Open before sending the status line, so "permission denied" can still be a 403.
            file = await nursery_io.open_file(path, "rb", buffering=0)
        except PermissionError:
            raise HTTPError(HTTPStatus.FORBIDDEN) from None
        async with file:
            headers = [
                *base_headers(),
                ("Content-Type", content_type(path)),
                ("Content-Length", str(info.st_size)),
            ]
            self.count(HTTPStatus.OK)
            await connection.send(h11.Response(status_code=200, headers=headers, reason="OK"))
            if not head:
                remaining = info.st_size
                while remaining > 0:
                    chunk = await file.read(min(CHUNK_SIZE, remaining))
                    if not chunk:
                        break  # the file shrank: h11 refuses the EndOfMessage below
                    remaining -= len(chunk)
                    await connection.send(h11.Data(data=chunk))
        await connection.send(h11.EndOfMessage())


async def stat_or_none(path: nursery_io.Path) -> os.stat_result | None:
    try:
        return await path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except PermissionError:
        raise HTTPError(HTTPStatus.FORBIDDEN) from None
    except OSError as exc:
        if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP):  # no file by that name, then
            return None
        raise


async def serve_http(
    server: StaticFileServer,
    port: int,
    host: str = "127.0.0.1",
    *,
    task_status: nursery_io.TaskStatus[int] = nursery_io.TASK_STATUS_IGNORED,
) -> None:
    """Serve HTTP on ``host:port`` until cancelled. With ``await nursery.start(serve_http,
    server, 0)``, ``start`` returns the port once connections are being accepted."""
    async with nursery_io.open_nursery() as nursery:
        serve = partial(nursery_io.serve_tcp, server.handle_connection, port, host=host)
        listeners = await nursery.start(serve)
        task_status.started(listeners[0].socket.getsockname()[1])


def describe_file_engine() -> str:
    """One line on who did the file I/O in this run (call it inside the run)."""
    engine = nursery_io.lowlevel.current_statistics().io_statistics.file_engine
    if engine is None:
        return "file engine: no file operations"
    ops = ", ".join(f"{name}: {count}" for name, count in sorted(engine.ops_by_engine.items()))
    why = f" (fell back to threads: {engine.fallback_reason})" if engine.fallback_reason else ""
    return f"file engine: {engine.engine}{why}; operations by engine: {ops}"


async def run_until_signalled(root: str, host: str, port: int, timeout: float) -> None:
    server = StaticFileServer(root, timeout=timeout)
    with nursery_io.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with nursery_io.open_nursery() as nursery:
            bound_port = await nursery.start(serve_http, server, port, host)
            # flush: a parent process (the test) waits for this line to learn the port.
            print(f"serving {root} on http://{host}:{bound_port}/", flush=True)
            async for signum in signals:
                print(f"got {signal.Signals(signum).name}, shutting down")
                break
            # Cancelling the nursery cancels the accept loop and every connection handler;
            # the "async with" then waits for all of them to finish unwinding.
            nursery.cancel_scope.cancel()
    stats = server.statistics
    print(f"{stats.connections} connections, {stats.requests} requests")
    print(describe_file_engine())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", help="the directory to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to send a request / take a write"
    )
    args = parser.parse_args(argv)
    if not os.path.isdir(args.directory):
        parser.error(f"{args.directory!r} is not a directory")
    nursery_io.run(run_until_signalled, args.directory, args.host, args.port, args.timeout)


if __name__ == "__main__":
    main()
