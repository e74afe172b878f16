"""Sending files: ``SocketType.sendfile`` and ``nursery_io.send_file``, on both engines.

Every test that runs a transfer runs it under ``NURSERY_IO_URING=1`` (cached data: inline
``os.sendfile`` on the loop thread; cold data: linked SPLICE chains on the ring) and ``=0``
(``os.sendfile`` in worker threads), and checks the statistics say which path did the work.
"""

from __future__ import annotations

import os
import socket as stdlib_socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

import nursery_io
from nursery_io import lowlevel
from nursery_io._core._context import current_runner
from nursery_io.testing import memory_stream_pair
from tests.page_cache import cold_copy

MIB = 1 << 20
BIG = 8 * MIB  # far more than a pipe holds (64 KiB default, 1 MiB grown)


@pytest.fixture(params=["io_uring", "threads"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("NURSERY_IO_URING", "1" if request.param == "io_uring" else "0")
    return str(request.param)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    path = tmp_path_factory.mktemp("sendfile") / "big.bin"
    data = os.urandom(BIG)
    path.write_bytes(data)
    return path, data


def warm(path: Path) -> None:
    """Read the file in full, so it is in the page cache (a cold test may have evicted it)."""
    path.read_bytes()


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def file_stats() -> Any:
    return lowlevel.current_statistics().io_statistics.file_engine


async def tcp_pair() -> tuple[nursery_io.socket.SocketType, nursery_io.socket.SocketType]:
    listener = nursery_io.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = nursery_io.socket.socket()
    await client.connect(listener.getsockname())
    server, _ = await listener.accept()
    listener.close()
    return server, client


async def stream_pair() -> tuple[nursery_io.SocketStream, nursery_io.SocketStream]:
    server, client = await tcp_pair()
    return nursery_io.SocketStream(server), nursery_io.SocketStream(client)


async def receive_all(sock: nursery_io.socket.SocketType, into: bytearray) -> None:
    while True:
        data = await sock.recv(MIB)
        if not data:
            return
        into += data


async def receive_stream(stream: nursery_io.abc.ReceiveStream, into: bytearray) -> None:
    while True:
        data = await stream.receive_some(MIB)
        if not data:
            return
        into += data


def check_engine(stats: Any, before: Any, engine: str, cold: bool = False) -> None:
    used = {k: stats.ops_by_engine[k] - before.ops_by_engine[k] for k in stats.ops_by_engine}
    inline = stats.inline_sendfiles - before.inline_sendfiles
    if engine == "io_uring":
        assert "SPLICE" in stats.supported_opcodes
        if cold:
            assert used["io_uring"] >= 2  # at least one file -> pipe -> socket chain
            assert stats.inline_sendfile_misses > before.inline_sendfile_misses
        else:
            assert inline >= 1  # cached: os.sendfile on the loop thread
            assert used["io_uring"] == 0
        assert used["threads"] == 0
    else:
        assert stats.engine == "threads"
        assert used["threads"] >= 1
        assert used["io_uring"] == 0
        assert inline == 0


# --- sock.sendfile ------------------------------------------------------------------------


@pytest.mark.parametrize("cold", [False, True], ids=["cached", "cold"])
@pytest.mark.parametrize(
    ("offset", "count"),
    [(0, None), (0, BIG), (12345, None), (4096, 3 * MIB + 7), (BIG - 10, 100), (5, 1)],
)
def test_sock_sendfile_sends_the_right_bytes(
    engine: str,
    big_file: tuple[Path, bytes],
    tmp_path: Path,
    cold: bool,
    offset: int,
    count: int | None,
) -> None:
    path, data = big_file
    expected = data[offset : offset + count if count else None]
    if cold:
        path = cold_copy(data, tmp_path / "cold.bin")

    async def main() -> None:
        if not cold:
            warm(path)
        server, client = await tcp_pair()
        with server, client:  # closed even when a check fails
            got = bytearray()
            with open(path, "rb") as f:
                await nursery_io.lowlevel.checkpoint()
                before = file_stats() or _zero_stats()
                async with nursery_io.open_nursery() as nursery:
                    nursery.start_soon(receive_all, client, got)
                    sent = await server.sendfile(f, offset, count)
                    server.shutdown(stdlib_socket.SHUT_WR)
                assert f.tell() == offset + sent
            assert sent == len(expected)
            assert got == expected
            check_engine(file_stats(), before, engine, cold)

    nursery_io.run(main)


class _ZeroStats:
    ops_by_engine = {"io_uring": 0, "threads": 0, "inline": 0}
    inline_sendfiles = 0
    inline_sendfile_misses = 0


def _zero_stats() -> Any:
    return _ZeroStats()


def stdlib_sendfile(file_factory: Callable[[], Any], offset: int, count: int | None) -> Any:
    """What the stdlib's blocking socket.sendfile returns and leaves as the position."""
    a, b = stdlib_socket.socketpair()
    got = bytearray()

    def drain() -> None:
        while chunk := b.recv(MIB):
            got.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    with a, b, file_factory() as f:
        try:
            sent = a.sendfile(f, offset, count)
        except Exception as exc:
            a.shutdown(stdlib_socket.SHUT_WR)
            reader.join()
            return type(exc), str(exc), f.tell()
        a.shutdown(stdlib_socket.SHUT_WR)
        reader.join()
        return sent, bytes(got), f.tell()


def nursery_io_sendfile(file_factory: Callable[[], Any], offset: int, count: int | None) -> Any:
    async def main() -> Any:
        a, b = nursery_io.socket.socketpair()
        got = bytearray()
        with a, b, file_factory() as f:
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(receive_all, b, got)
                try:
                    sent = await a.sendfile(f, offset, count)
                except Exception as exc:
                    error = exc
                else:
                    error = None
                a.shutdown(stdlib_socket.SHUT_WR)
            if error is not None:
                return type(error), str(error), f.tell()
            return sent, bytes(got), f.tell()

    return nursery_io.run(main)


@pytest.mark.parametrize(
    ("offset", "count"),
    [
        (0, None),
        (100, None),
        (100, 1000),
        (0, 10**9),  # more than the file
        (300_000, None),  # past the end: nothing sent, position unchanged
        (0, 0),
        (0, -1),
        (0, 1.5),
    ],
)
def test_sock_sendfile_results_and_position_match_the_stdlib(
    engine: str, tmp_path: Path, offset: int, count: Any
) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(200_000))

    def opener() -> Any:
        f = open(path, "rb")  # noqa: SIM115
        f.seek(17)  # a position that must be replaced, not added to
        return f

    assert nursery_io_sendfile(opener, offset, count) == stdlib_sendfile(opener, offset, count)


@pytest.mark.parametrize(
    "opener",
    [
        pytest.param(open, id="text mode"),
        pytest.param(lambda p: open(os.devnull, "rb"), id="empty"),  # noqa: SIM115
        pytest.param(lambda p: open(p.parent / "empty", "wb+"), id="empty file"),  # noqa: SIM115
    ],
)
def test_sock_sendfile_special_files_match_the_stdlib(
    engine: str, tmp_path: Path, opener: Callable[[Path], Any]
) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 1000)
    factory = lambda: opener(path)  # noqa: E731
    assert nursery_io_sendfile(factory, 0, None) == stdlib_sendfile(factory, 0, None)


def test_sock_sendfile_on_a_datagram_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"x")

    async def main() -> None:
        with nursery_io.socket.socket(type=stdlib_socket.SOCK_DGRAM) as sock, open(path, "rb") as f:
            with pytest.raises(ValueError, match="only SOCK_STREAM type sockets are supported"):
                await sock.sendfile(f)

    nursery_io.run(main)


def test_sock_sendfile_of_a_byte_stream_object_uses_send(engine: str) -> None:
    import io

    data = os.urandom(50_000)
    factory = lambda: io.BytesIO(data)  # noqa: E731
    for offset, count in [(0, None), (10, 100)]:
        ours = nursery_io_sendfile(factory, offset, count)
        assert ours == stdlib_sendfile(factory, offset, count)


@pytest.mark.parametrize("kind", ["open_file", "wrap_file", "fd"])
def test_sock_sendfile_accepts_async_files_and_fds(
    engine: str, big_file: tuple[Path, bytes], kind: str
) -> None:
    path, data = big_file

    async def main() -> None:
        server, client = await tcp_pair()
        got = bytearray()
        if kind == "open_file":
            file: Any = await nursery_io.open_file(path, "rb")
        elif kind == "wrap_file":
            file = nursery_io.wrap_file(open(path, "rb"))  # noqa: SIM115
        else:
            file = os.open(path, os.O_RDONLY)
        try:
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(receive_all, client, got)
                sent = await server.sendfile(file, 1000, 2 * MIB)
                server.shutdown(stdlib_socket.SHUT_WR)
            assert sent == 2 * MIB
            assert got == data[1000 : 1000 + 2 * MIB]
            if kind == "fd":
                assert os.lseek(file, 0, os.SEEK_CUR) == 0  # a plain fd's position stays
            else:
                assert await file.tell() == 1000 + 2 * MIB
        finally:
            if kind == "fd":
                os.close(file)
            else:
                await file.aclose()
            server.close()
            client.close()

    nursery_io.run(main)


def test_sock_sendfile_writes_out_buffered_writes_first(engine: str, tmp_path: Path) -> None:
    async def main() -> None:
        server, client = await tcp_pair()
        got = bytearray()
        async with await nursery_io.open_file(tmp_path / "w.bin", "wb+") as f:
            await f.write(b"hello, world")
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(receive_all, client, got)
                assert await server.sendfile(f) == 12
                server.shutdown(stdlib_socket.SHUT_WR)
        assert got == b"hello, world"
        server.close()
        client.close()

    nursery_io.run(main)


# --- slow readers, peers that go away, cancellation -----------------------------------------


async def slow_reader(stream: nursery_io.SocketStream, into: bytearray, limit: int) -> None:
    # Small reads with pauses: the socket buffer fills and the sender must wait.
    while len(into) < limit:
        data = await stream.receive_some(16384)
        if not data:
            return
        into += data
        await nursery_io.sleep(0.0005)


def test_send_file_to_a_slow_reader(engine: str, big_file: tuple[Path, bytes]) -> None:
    path, data = big_file
    size = 2 * MIB

    async def main() -> None:
        warm(path)
        server, client = await stream_pair()
        client.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, 32768)
        got = bytearray()
        async with await nursery_io.open_file(path, "rb") as f:
            before = file_stats() or _zero_stats()
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(slow_reader, client, got, size)
                assert await nursery_io.send_file(server, f, 0, size) == size
            stats = file_stats()
            check_engine(stats, before, engine)
            if engine == "io_uring":
                # The socket kept filling up: many short inline sends, each after a wait.
                assert stats.inline_sendfiles - before.inline_sendfiles > size // MIB
            assert await f.tell() == size
        assert got == data[:size]
        # The stream is fine afterwards.
        await server.send_all(b"more")
        assert await client.receive_some() == b"more"
        await server.aclose()
        await client.aclose()

    nursery_io.run(main)


def test_peer_closing_mid_file_breaks_the_stream_like_send_all(
    engine: str, big_file: tuple[Path, bytes]
) -> None:
    path, _ = big_file

    async def main() -> tuple[type[BaseException], type[BaseException]]:
        outcomes = []
        for send in ("send_file", "send_all"):
            server, client = await stream_pair()

            async def close_soon(client: nursery_io.SocketStream = client) -> None:
                await client.receive_some(1000)
                # Unread data makes close() send a reset.
                await client.aclose()

            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(close_soon)
                with pytest.raises(nursery_io.BrokenResourceError) as info:
                    if send == "send_file":
                        with open(path, "rb") as f:
                            await nursery_io.send_file(server, f)
                    else:
                        await server.send_all(path.read_bytes())
            assert isinstance(info.value.__cause__, (BrokenPipeError, ConnectionResetError))
            outcomes.append(type(info.value.__cause__))
            with pytest.raises(nursery_io.BrokenResourceError):
                await server.send_all(b"x")
            await server.aclose()
        return outcomes[0], outcomes[1]

    nursery_io.run(main)


def test_sock_sendfile_to_a_closed_peer_raises_the_os_error(
    engine: str, big_file: tuple[Path, bytes]
) -> None:
    path, _ = big_file

    # The stdlib raises the same kind of error.
    a, b = stdlib_socket.socketpair()
    b.close()
    with open(big_file[0], "rb") as f, pytest.raises((BrokenPipeError, ConnectionResetError)):
        a.sendfile(f)
    a.close()

    async def main_fixed() -> None:
        server, client = await tcp_pair()
        client.close()
        with open(path, "rb") as f, pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(3):  # the first send may still be accepted
                await server.sendfile(f)
        server.close()

    nursery_io.run(main_fixed)


@pytest.mark.parametrize("cold", [False, True], ids=["cached", "cold"])
def test_cancelling_send_file_mid_transfer(
    engine: str, big_file: tuple[Path, bytes], cold: bool, tmp_path: Path
) -> None:
    path, data = big_file
    if cold:
        path = cold_copy(data, tmp_path / "cold.bin")
    fds_before = fd_count()

    async def main() -> None:
        if not cold:
            warm(path)
        server, client = await stream_pair()
        got = bytearray()
        async with await nursery_io.open_file(path, "rb") as f:
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(slow_reader, client, got, BIG)
                scope = nursery_io.CancelScope()

                async def cancel_once_data_flows() -> None:
                    # Not a timeout: on a loaded machine nothing might have moved yet.
                    while not got:
                        await nursery_io.sleep(0.001)
                    scope.cancel()

                nursery.start_soon(cancel_once_data_flows)
                with scope:
                    await nursery_io.send_file(server, f)
                assert scope.cancelled_caught
                position = await f.tell()
                assert 0 < position < BIG  # the file position says what was sent
                # The stream is broken for sending (the peer got a prefix of the file).
                with pytest.raises(nursery_io.BrokenResourceError):
                    await server.send_all(b"x")
                with pytest.raises(nursery_io.BrokenResourceError):
                    await nursery_io.send_file(server, f)
                await server.aclose()
                nursery.cancel_scope.cancel()
        # Exactly what was reported sent arrived (nothing from the pipe came later).
        assert bytes(got) == data[: len(got)]
        # A pipe that may hold data is never reused: the next transfer's bytes are its own.
        server2, client2 = await stream_pair()
        got2 = bytearray()
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(receive_stream, client2, got2)
            fd = os.open(path, os.O_RDONLY)
            try:
                assert await nursery_io.send_file(server2, fd, 7, MIB) == MIB
            finally:
                os.close(fd)
            await server2.send_eof()
        assert got2 == data[7 : 7 + MIB]
        await server2.aclose()
        await client2.aclose()
        await client.aclose()

    nursery_io.run(main)
    assert fd_count() == fds_before


def test_cancelled_sock_sendfile_moves_the_position_to_what_was_sent(
    engine: str, big_file: tuple[Path, bytes]
) -> None:
    path, data = big_file

    async def main() -> None:
        server, client = await tcp_pair()
        got = bytearray()
        stream = nursery_io.SocketStream(client)
        with open(path, "rb") as f:
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(slow_reader, stream, got, BIG)
                with nursery_io.move_on_after(0.05):
                    await server.sendfile(f, 100)
                sent = f.tell() - 100
                assert 0 < sent < BIG - 100
                server.close()
        assert bytes(got) == data[100 : 100 + len(got)]
        assert len(got) <= sent
        await stream.aclose()

    nursery_io.run(main)


def test_no_fd_leak_and_pipes_are_reused(
    engine: str, big_file: tuple[Path, bytes], tmp_path: Path
) -> None:
    _, data = big_file
    # Cold, each time: the ring's splices, through a pipe of the pool.
    paths = [cold_copy(data[: 3 * MIB], tmp_path / f"cold{i}.bin") for i in range(5)]
    fds_before = fd_count()

    async def main() -> None:
        for path in paths:
            server, client = await stream_pair()
            got = bytearray()
            fd = os.open(path, os.O_RDONLY)
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(receive_stream, client, got)
                await nursery_io.send_file(server, fd, 0, 3 * MIB)
                await server.send_eof()
            os.close(fd)
            assert got == data[: 3 * MIB]
            await server.aclose()
            await client.aclose()
        pipes = current_runner().kernel.engine._pipes
        if engine == "io_uring":
            assert pipes is not None and pipes.created == 1 and pipes.idle == 1
        else:
            assert pipes is None  # os.sendfile needs no pipe

    nursery_io.run(main)
    assert fd_count() == fds_before


def test_without_splice_in_the_probe_the_threads_do_it(
    monkeypatch: pytest.MonkeyPatch, big_file: tuple[Path, bytes], tmp_path: Path
) -> None:
    monkeypatch.setenv("NURSERY_IO_URING", "1")
    _, data = big_file
    path = cold_copy(data, tmp_path / "cold.bin")  # not cached: no inline send either

    async def main() -> None:
        engine = current_runner().kernel.engine
        if engine._ring is not None:
            engine._ring.splice = False  # what a kernel without IORING_OP_SPLICE gives
        server, client = await tcp_pair()
        got = bytearray()
        before = file_stats()
        with open(path, "rb") as f:
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(receive_all, client, got)
                assert await server.sendfile(f, 0, MIB) == MIB
                server.shutdown(stdlib_socket.SHUT_WR)
        assert got == data[:MIB]
        after = file_stats()
        assert after.ops_by_engine["threads"] > before.ops_by_engine["threads"]
        assert after.ops_by_engine["io_uring"] == before.ops_by_engine["io_uring"]
        server.close()
        client.close()

    nursery_io.run(main)


# --- send_file on other streams ------------------------------------------------------------


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


def test_send_file_over_tls_reads_through_the_file_engine(
    engine: str, big_file: tuple[Path, bytes], tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    path, data = big_file
    server_ctx, client_ctx = tls

    async def main() -> None:
        a, b = await stream_pair()
        server = nursery_io.SSLStream(a, server_ctx, server_side=True)
        client = nursery_io.SSLStream(b, client_ctx, server_hostname="localhost")
        got = bytearray()
        before = file_stats() or _zero_stats()
        async with await nursery_io.open_file(path, "rb") as f:
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(receive_stream, client, got)
                assert await nursery_io.send_file(server, f, 10, 3 * MIB) == 3 * MIB
                await server.aclose()
            assert await f.tell() == 10 + 3 * MIB
        assert got == data[10 : 10 + 3 * MIB]
        await client.aclose()
        stats = file_stats()
        assert sum(stats.ops_by_engine.values()) > sum(before.ops_by_engine.values())

    nursery_io.run(main)


def test_send_file_on_a_memory_stream(engine: str, tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = os.urandom(300_000)
    path.write_bytes(data)

    async def main() -> None:
        left, right = memory_stream_pair()
        got = bytearray()
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(receive_stream, right, got)
            fd = os.open(path, os.O_RDONLY)
            try:
                assert await nursery_io.send_file(left, fd, 5) == len(data) - 5
            finally:
                os.close(fd)
            await left.aclose()
        assert got == data[5:]

    nursery_io.run(main)


def test_send_file_argument_errors(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")

    async def main() -> None:
        left, _ = memory_stream_pair()
        with pytest.raises(TypeError, match="fileno"):
            await nursery_io.send_file(left, b"abc")
        with pytest.raises(ValueError, match="count must be a positive integer"):
            await nursery_io.send_file(left, 0, count=0)
        with pytest.raises(ValueError, match="offset"):
            await nursery_io.send_file(left, 0, offset=-1)
        fd = os.open(path, os.O_RDONLY)
        os.close(fd)
        with pytest.raises(nursery_io.ClosedResourceError):
            await nursery_io.send_file(left, fd)

    nursery_io.run(main)


def test_send_file_while_sending_is_busy(big_file: tuple[Path, bytes]) -> None:
    path, _ = big_file

    async def main() -> None:
        server, client = await stream_pair()
        fd = os.open(path, os.O_RDONLY)
        try:
            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(nursery_io.send_file, server, fd)
                await nursery_io.testing.wait_all_tasks_blocked()
                with pytest.raises(nursery_io.BusyResourceError):
                    await nursery_io.send_file(server, fd)
                with pytest.raises(nursery_io.BusyResourceError):
                    await server.send_all(b"x")
                nursery.cancel_scope.cancel()
        finally:
            os.close(fd)
        await server.aclose()
        await client.aclose()

    nursery_io.run(main)
