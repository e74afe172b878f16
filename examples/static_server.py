"""A static file server over HTTP/1.1 that sends files with zero-copy ``send_file``.

    python examples/static_server.py DIRECTORY --port 8000
    python examples/static_server.py DIRECTORY --read-send     # read + send_all instead

File bodies go from the page cache to the socket with :func:`nursery_io.send_file`: on
io_uring a chain of linked SPLICE ops (file -> pipe -> socket) run by the kernel, so a
file that has to come from the disk never blocks the loop, and the process stays one
thread. ``--read-send`` reads each chunk into Python and sends it, for comparison.

What it implements (h11 does the HTTP/1.1 framing):

* GET and HEAD of files; ``Range: bytes=...`` (one range -> 206, unsatisfiable -> 416,
  several -> the whole file), ``If-Range``, ``ETag`` / ``If-None-Match`` and
  ``Last-Modified`` / ``If-Modified-Since`` (-> 304);
* a directory is served as its ``index.html``; listings only with ``--listing``;
* paths can't leave DIRECTORY: the path is resolved (``..`` and symlinks) and then checked
  to be inside it (-> 404, as for a missing file);
* clean errors: 400 for a malformed request, 405 for other methods, 414 for a target or
  a file name that is too long, 431 for headers over 16 KiB, 503 over the connection
  limit. A request that announces a body with ``Expect: 100-continue`` gets its final
  answer without the ``100 Continue``, and its connection is then closed;
* keep-alive, ``--max-connections`` at once, and ``--timeout`` seconds to receive each
  request; an access log (``--quiet`` turns it off) and a summary on Ctrl+C.
"""

from __future__ import annotations

import argparse
import email.utils
import errno
import html
import logging
import mimetypes
import os
import stat
import sys
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import h11

import nursery_io

LOGGER = logging.getLogger("static_server")

MAX_HEADER_BYTES = 16 * 1024
MAX_TARGET_BYTES = 4096
READ_CHUNK = 256 * 1024
RECEIVE_SIZE = 64 * 1024


class HTTPError(Exception):
    def __init__(self, status: HTTPStatus, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.headers = headers or []


class _Body:
    """Stands for a file body in h11's bookkeeping: h11 counts ``len()`` bytes against the
    Content-Length, while send_file moves the bytes themselves."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length


@dataclass
class Stats:
    requests: int = 0
    bytes_sent: int = 0
    connections: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


@dataclass
class StaticServer:
    root: Path
    zero_copy: bool = True
    listing: bool = False
    max_connections: int = 256
    timeout: float = 10.0
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        self.root = Path(os.path.realpath(self.root))
        self._active = 0

    # --- connections ------------------------------------------------------------------------

    async def handle(self, stream: nursery_io.SocketStream) -> None:
        self.stats.connections += 1
        try:
            peer = stream.socket.getpeername()[0]
        except OSError:
            peer = "-"
        if self._active >= self.max_connections:
            await self._reject(stream, peer)
            return
        self._active += 1
        try:
            await self._serve(stream, peer)
            await _lingering_close(stream)
        except (nursery_io.BrokenResourceError, nursery_io.ClosedResourceError):
            pass  # the client went away
        finally:
            self._active -= 1
            await stream.aclose()

    async def _reject(self, stream: nursery_io.SocketStream, peer: str) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        try:
            with nursery_io.move_on_after(self.timeout):
                request = await self._next_request(stream, conn)
                error = HTTPError(HTTPStatus.SERVICE_UNAVAILABLE, [("Retry-After", "1")])
                await self._send_error(stream, conn, error, request, peer)
                await _lingering_close(stream)
        except (h11.RemoteProtocolError, nursery_io.BrokenResourceError):
            pass
        finally:
            await stream.aclose()

    async def _serve(self, stream: nursery_io.SocketStream, peer: str) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        while True:
            request: h11.Request | None = None
            try:
                with nursery_io.move_on_after(self.timeout) as scope:
                    request = await self._next_request(stream, conn)
                if scope.cancelled_caught or request is None:
                    return  # idle too long, or the client closed the connection
                await self._respond(stream, conn, request, peer)
            except HTTPError as exc:
                await self._send_error(stream, conn, exc, request, peer)
                return
            except h11.RemoteProtocolError as exc:
                status = HTTPStatus(exc.error_status_hint)  # 400, or 431 for huge headers
                await self._send_error(stream, conn, HTTPError(status), request, peer)
                return
            _finish_request(conn)
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
            else:
                return  # Connection: close, or a request body we never read

    async def _next_request(
        self, stream: nursery_io.SocketStream, conn: h11.Connection
    ) -> h11.Request | None:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(RECEIVE_SIZE)
                conn.receive_data(data)
                if not data and conn.their_state is h11.IDLE:
                    return None
                continue
            if isinstance(event, h11.Request):
                return event
            if isinstance(event, h11.ConnectionClosed):
                return None
            raise h11.RemoteProtocolError("unexpected event", error_status_hint=400)

    # --- responses --------------------------------------------------------------------------

    async def _respond(
        self, stream: nursery_io.SocketStream, conn: h11.Connection, request: h11.Request, peer: str
    ) -> None:
        method = request.method.decode("ascii", "replace")
        if len(request.target) > MAX_TARGET_BYTES:
            raise HTTPError(HTTPStatus.REQUEST_URI_TOO_LONG)
        # h11 limits incomplete headers only: complete ones that arrived at once count too.
        if sum(len(name) + len(value) + 4 for name, value in request.headers) > MAX_HEADER_BYTES:
            raise HTTPError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
        if method not in ("GET", "HEAD"):
            # Never "100 Continue": we won't read the body (h11 then closes the connection).
            raise HTTPError(HTTPStatus.METHOD_NOT_ALLOWED, [("Allow", "GET, HEAD")])
        headers = {name.decode("latin-1"): value for name, value in request.headers}
        path = await self._resolve(request.target)
        try:
            st = await path.stat()
        except OSError as exc:
            raise self._os_error(exc) from None
        if stat.S_ISDIR(st.st_mode):
            raw_path = urlsplit(request.target.decode("ascii", "replace")).path
            if not raw_path.endswith("/"):
                raise HTTPError(HTTPStatus.MOVED_PERMANENTLY, [("Location", raw_path + "/")])
            index = path / "index.html"
            if await index.is_file():
                path = index
            elif self.listing:
                await self._send_listing(stream, conn, request, path, raw_path, peer)
                return
            else:
                raise HTTPError(HTTPStatus.NOT_FOUND)
        try:
            file = await nursery_io.open_file(path, "rb")
        except OSError as exc:
            raise self._os_error(exc) from None
        async with file:
            st = os.fstat(file.fileno())  # the inode of the open file: no disk wait
            if not stat.S_ISREG(st.st_mode):
                raise HTTPError(HTTPStatus.NOT_FOUND)
            await self._send_file(stream, conn, request, headers, file, st, path, peer)

    async def _resolve(self, target: bytes) -> nursery_io.Path:
        try:
            raw_path = urlsplit(target.decode("ascii")).path
        except (UnicodeDecodeError, ValueError):
            raise HTTPError(HTTPStatus.BAD_REQUEST) from None
        if not raw_path.startswith("/"):
            raise HTTPError(HTTPStatus.BAD_REQUEST)
        name = unquote(raw_path, errors="strict") if "%" in raw_path else raw_path
        if "\0" in name:
            raise HTTPError(HTTPStatus.BAD_REQUEST)
        candidate = self.root / name.lstrip("/")
        try:
            # Resolve first (.. and every symlink), then check: a link inside the root that
            # points outside it is refused like a "../" would be.
            resolved = Path(await nursery_io.to_thread.run_sync(os.path.realpath, candidate))
        except OSError as exc:
            raise self._os_error(exc) from None
        if resolved != self.root and self.root not in resolved.parents:
            raise HTTPError(HTTPStatus.NOT_FOUND)
        return nursery_io.Path(resolved)

    @staticmethod
    def _os_error(exc: OSError) -> HTTPError:
        if exc.errno == errno.ENAMETOOLONG:
            return HTTPError(HTTPStatus.REQUEST_URI_TOO_LONG)
        if exc.errno in (errno.EACCES, errno.EPERM):
            return HTTPError(HTTPStatus.FORBIDDEN)
        return HTTPError(HTTPStatus.NOT_FOUND)

    async def _send_file(
        self,
        stream: nursery_io.SocketStream,
        conn: h11.Connection,
        request: h11.Request,
        headers: dict[str, bytes],
        file: Any,
        st: os.stat_result,
        path: nursery_io.Path,
        peer: str,
    ) -> None:
        size = st.st_size
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        last_modified = email.utils.formatdate(st.st_mtime, usegmt=True)
        common = [
            ("ETag", etag),
            ("Last-Modified", last_modified),
            ("Accept-Ranges", "bytes"),
        ]
        if _not_modified(headers, etag, int(st.st_mtime)):
            await self._send_head(stream, conn, request, HTTPStatus.NOT_MODIFIED, common, peer, 0)
            await stream.send_all(conn.send(h11.EndOfMessage()))
            return
        start, length, status = 0, size, HTTPStatus.OK
        byte_range = headers.get("range")
        if byte_range is not None and _if_range_holds(headers, etag, last_modified):
            parsed = _parse_range(byte_range.decode("latin-1"), size)
            if parsed == "unsatisfiable":
                raise HTTPError(
                    HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                    [("Content-Range", f"bytes */{size}")],
                )
            if parsed is not None:
                start, length = parsed
                status = HTTPStatus.PARTIAL_CONTENT
                common.append(("Content-Range", f"bytes {start}-{start + length - 1}/{size}"))
        content_type = mimetypes.guess_type(str(path))[0] or "application/octet-stream"
        response_headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(length)),
            *common,
        ]
        await self._send_head(stream, conn, request, status, response_headers, peer, length)
        if request.method == b"GET" and length:
            if self.zero_copy:
                conn.send_with_data_passthrough(h11.Data(data=_Body(length)))  # type: ignore[arg-type]
                sent = await nursery_io.send_file(stream, file, start, length)
                if sent != length:  # the file shrank under us: the response can't be finished
                    raise nursery_io.BrokenResourceError("file truncated while sending")
            else:
                await file.seek(start)
                remaining = length
                while remaining:
                    data = await file.read(min(READ_CHUNK, remaining))
                    if not data:
                        raise nursery_io.BrokenResourceError("file truncated while sending")
                    remaining -= len(data)
                    await stream.send_all(conn.send(h11.Data(data=data)))
            self.stats.bytes_sent += length
        await stream.send_all(conn.send(h11.EndOfMessage()))

    async def _send_head(
        self,
        stream: nursery_io.SocketStream,
        conn: h11.Connection,
        request: h11.Request | None,
        status: HTTPStatus,
        headers: list[tuple[str, str]],
        peer: str,
        length: int,
    ) -> None:
        headers = [("Server", "nursery_io-static"), *headers]
        response = h11.Response(status_code=int(status), headers=headers, reason=status.phrase)
        await stream.send_all(conn.send(response))
        self.stats.requests += 1
        self.stats.statuses[int(status)] = self.stats.statuses.get(int(status), 0) + 1
        if request is not None:
            line = (
                f"{request.method.decode('latin-1')} "
                f"{request.target.decode('latin-1')[:200]} HTTP/{request.http_version.decode()}"
            )
        else:
            line = "-"
        LOGGER.info('%s "%s" %d %d', peer, line, int(status), length)

    async def _send_error(
        self,
        stream: nursery_io.SocketStream,
        conn: h11.Connection,
        error: HTTPError,
        request: h11.Request | None,
        peer: str = "-",
    ) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return  # a response was already under way: all we can do is close
        body = f"{int(error.status)} {error.status.phrase}\n".encode()
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
            *error.headers,
        ]
        try:
            await self._send_head(stream, conn, request, error.status, headers, peer, len(body))
            if request is None or request.method != b"HEAD":
                await stream.send_all(conn.send(h11.Data(data=body)))
            await stream.send_all(conn.send(h11.EndOfMessage()))
        except (h11.LocalProtocolError, nursery_io.BrokenResourceError):
            pass

    async def _send_listing(
        self,
        stream: nursery_io.SocketStream,
        conn: h11.Connection,
        request: h11.Request,
        path: nursery_io.Path,
        raw_path: str,
        peer: str,
    ) -> None:
        names = sorted([p.name + ("/" if await p.is_dir() else "") for p in await path.iterdir()])
        title = html.escape(raw_path)
        items = "".join(
            f'<li><a href="{quote(name)}">{html.escape(name)}</a></li>\n' for name in names
        )
        body = f"<!doctype html>\n<title>{title}</title>\n<h1>{title}</h1>\n<ul>\n{items}</ul>\n"
        data = body.encode()
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(data)))]
        await self._send_head(stream, conn, request, HTTPStatus.OK, headers, peer, len(data))
        if request.method == b"GET":
            await stream.send_all(conn.send(h11.Data(data=data)))
        await stream.send_all(conn.send(h11.EndOfMessage()))


async def _lingering_close(stream: nursery_io.SocketStream) -> None:
    """Send EOF, then read (and drop) what the client still sends, for up to a second: closing
    with unread data makes the kernel send a reset, which can destroy our last response
    before the client has read it."""
    await stream.send_eof()
    with nursery_io.move_on_after(1):
        while await stream.receive_some(RECEIVE_SIZE):
            pass


def _finish_request(conn: h11.Connection) -> None:
    """Take the end of the request we answered from what was already received (a GET's
    EndOfMessage, usually), so the connection can be kept alive. A body still to come is
    never waited for: the connection is closed instead."""
    while conn.their_state is h11.SEND_BODY:
        event = conn.next_event()
        if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
            return
        if isinstance(event, h11.Data) and len(event.data) > 65536:
            return


# --- conditional and range requests -----------------------------------------------------------


def _not_modified(headers: dict[str, bytes], etag: str, mtime: int) -> bool:
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        tags = [t.strip().removeprefix("W/") for t in if_none_match.decode("latin-1").split(",")]
        return "*" in tags or etag in tags
    since = headers.get("if-modified-since")
    if since is not None:
        try:
            when = email.utils.parsedate_to_datetime(since.decode("latin-1"))
        except (TypeError, ValueError):
            return False
        return mtime <= int(when.timestamp())
    return False


def _if_range_holds(headers: dict[str, bytes], etag: str, last_modified: str) -> bool:
    if_range = headers.get("if-range")
    if if_range is None:
        return True
    value = if_range.decode("latin-1").strip()
    return value in (etag, last_modified)


def _parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """``(start, length)`` for one satisfiable range, "unsatisfiable", or None (ignore the
    header: not bytes, malformed, or several ranges -- the whole file is a valid answer)."""
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first:  # the last N bytes
            n = int(last)
            if n <= 0:
                return "unsatisfiable"
            n = min(n, size)
            return (size - n, n) if n else "unsatisfiable"
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size:
        return "unsatisfiable"
    if end < start:
        return None
    end = min(end, size - 1)
    return start, end - start + 1


# --- running it -------------------------------------------------------------------------------


async def serve_static(
    server: StaticServer,
    port: int = 0,
    host: str = "127.0.0.1",
    *,
    task_status: nursery_io.TaskStatus[int] = nursery_io.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``nursery.start()`` returns the port."""
    listeners = await nursery_io.open_tcp_listeners(port, host=host, backlog=1024)
    task_status.started(listeners[0].socket.getsockname()[1])
    await nursery_io.serve_listeners(server.handle, listeners)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Serve a directory over HTTP/1.1, sending files with zero-copy send_file."
    )
    parser.add_argument("directory", help="the directory to serve")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (8000; 0 picks a free one)")
    parser.add_argument(
        "--read-send", action="store_true", help="read files into Python and send_all them"
    )
    parser.add_argument("--listing", action="store_true", help="list directories without index")
    parser.add_argument(
        "--max-connections", type=int, default=256, help="connections served at once (256)"
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to receive each request (10)"
    )
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(message)s"
    )
    root = Path(args.directory)
    if not root.is_dir():
        print(f"static_server: {args.directory}: not a directory", file=sys.stderr)
        return 2
    if args.max_connections < 1 or args.timeout <= 0:
        print("static_server: --max-connections and --timeout must be positive", file=sys.stderr)
        return 2
    server = StaticServer(
        root,
        zero_copy=not args.read_send,
        listing=args.listing,
        max_connections=args.max_connections,
        timeout=args.timeout,
    )

    async def run() -> None:
        async with nursery_io.open_nursery() as nursery:
            port = await nursery.start(serve_static, server, args.port, args.host)
            mode = "read + send_all" if args.read_send else "zero-copy send_file"
            print(f"serving {server.root} on http://{args.host}:{port}/ ({mode})", flush=True)

    try:
        nursery_io.run(run)
    except KeyboardInterrupt:
        pass
    except (OSError, BaseExceptionGroup) as exc:
        error: BaseException = exc
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        if isinstance(error, OSError):
            print(f"static_server: {error}", file=sys.stderr)  # e.g. the port is in use
            return 1
        if not isinstance(error, KeyboardInterrupt):
            raise
    stats = server.stats
    print(
        f"{stats.requests} requests on {stats.connections} connections, "
        f"{stats.bytes_sent} body bytes; statuses {dict(sorted(stats.statuses.items()))}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
