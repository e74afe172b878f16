"""anyio's Process (and its byte streams) over :class:`nursery_io.Process`."""

from __future__ import annotations

import math
from signal import Signals

import anyio.abc
from anyio import BrokenResourceError, ClosedResourceError, EndOfStream

import nursery_io
from nursery_io.abc import ReceiveStream, SendStream

__all__ = ["Process", "ReceiveStreamWrapper", "SendStreamWrapper", "shut_down_process_pool"]


class ReceiveStreamWrapper(anyio.abc.ByteReceiveStream):
    """A nursery_io receive stream as an anyio byte stream (EOF -> ``EndOfStream``)."""

    def __init__(self, stream: ReceiveStream) -> None:
        self._stream = stream

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        try:
            data = await self._stream.receive_some(max_bytes)
        except nursery_io.ClosedResourceError as exc:
            raise ClosedResourceError from exc.__cause__
        except nursery_io.BrokenResourceError as exc:
            raise BrokenResourceError from exc.__cause__
        if not data:
            raise EndOfStream
        return bytes(data)

    async def aclose(self) -> None:
        await self._stream.aclose()


class SendStreamWrapper(anyio.abc.ByteSendStream):
    """A nursery_io send stream as an anyio byte stream."""

    def __init__(self, stream: SendStream) -> None:
        self._stream = stream

    async def send(self, item: bytes) -> None:
        try:
            await self._stream.send_all(item)
        except nursery_io.ClosedResourceError as exc:
            raise ClosedResourceError from exc.__cause__
        except nursery_io.BrokenResourceError as exc:
            raise BrokenResourceError from exc.__cause__

    async def aclose(self) -> None:
        await self._stream.aclose()


class Process(anyio.abc.Process):
    def __init__(self, process: nursery_io.Process) -> None:
        self._process = process
        self._stdin = SendStreamWrapper(process.stdin) if process.stdin is not None else None
        self._stdout = ReceiveStreamWrapper(process.stdout) if process.stdout is not None else None
        self._stderr = ReceiveStreamWrapper(process.stderr) if process.stderr is not None else None

    async def aclose(self) -> None:
        with nursery_io.CancelScope(shield=True):
            for stream in (self._stdin, self._stdout, self._stderr):
                if stream is not None:
                    await stream.aclose()
        try:
            await self.wait()
        except BaseException:
            # Cancelled (or worse) while waiting: the child must not outlive us.
            self.kill()
            with nursery_io.CancelScope(shield=True):
                await self.wait()
            raise

    async def wait(self) -> int:
        return await self._process.wait()

    def terminate(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        self._process.kill()

    def send_signal(self, signal: Signals) -> None:
        self._process.send_signal(signal)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    @property
    def stdin(self) -> anyio.abc.ByteSendStream | None:
        return self._stdin

    @property
    def stdout(self) -> anyio.abc.ByteReceiveStream | None:
        return self._stdout

    @property
    def stderr(self) -> anyio.abc.ByteReceiveStream | None:
        return self._stderr


async def shut_down_process_pool(workers: set[anyio.abc.Process]) -> None:
    """A system task: sleeps until the run shuts down, then kills and reaps the workers
    of anyio's ``to_process`` pool so none outlives the run."""
    try:
        await nursery_io.sleep(math.inf)
    except nursery_io.Cancelled:
        for process in workers:
            if process.returncode is None:
                process.kill()
        with nursery_io.CancelScope(shield=True):
            for process in workers:
                await process.aclose()
        raise
