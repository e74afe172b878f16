"""``open_signal_receiver``: receive Unix signals as an async iterator."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Generator, Iterable
from contextlib import contextmanager
from types import FrameType
from typing import Any

from ._core import BusyResourceError, ParkingLot, checkpoint, current_token

__all__ = ["open_signal_receiver"]

_Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


@contextmanager
def _handlers_installed(
    signals: Iterable[int], handler: Callable[[int, FrameType | None], None]
) -> Generator[None, None, None]:
    previous: dict[int, _Handler] = {}
    try:
        for signum in signals:
            previous[signum] = signal.signal(signum, handler)
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


class SignalReceiver:
    """The async iterator yielded by :func:`open_signal_receiver`."""

    __slots__ = ("_closed", "_iterating", "_lot", "_pending")

    def __init__(self) -> None:
        # A dict used as an ordered set: a signal that arrives again before it was read
        # is reported once, in the position of its first arrival.
        self._pending: dict[int, None] = {}
        self._lot = ParkingLot()
        self._closed = False
        self._iterating = False

    def _add(self, signum: int) -> None:
        if self._closed:
            # Arrived after the block exited, on its way through the run's entry queue: the
            # previous handler is back in place, so hand it over.
            signal.raise_signal(signum)
        else:
            self._pending[signum] = None
            self._lot.unpark()

    def _redeliver_remaining(self) -> None:
        # Signals nobody read are raised again, now that the previous handlers are back,
        # so they aren't silently lost. Keep going even if a handler raises.
        self._closed = True
        if not self._pending:
            return
        signum = next(iter(self._pending))
        del self._pending[signum]
        try:
            signal.raise_signal(signum)
        finally:
            self._redeliver_remaining()

    def __aiter__(self) -> SignalReceiver:
        return self

    async def __anext__(self) -> int:
        if self._closed:
            raise RuntimeError("the open_signal_receiver block has already exited")
        if self._iterating:
            raise BusyResourceError("another task is already iterating over this receiver")
        self._iterating = True
        try:
            if self._pending:
                await checkpoint()
            else:
                await self._lot.park()
            signum = next(iter(self._pending))
            del self._pending[signum]
            return signum
        finally:
            self._iterating = False


def _pending_signal_count(receiver: SignalReceiver) -> int:
    """How many distinct signals wait to be read (for tests)."""
    return len(receiver._pending)


@contextmanager
def open_signal_receiver(*signals: signal.Signals | int) -> Generator[SignalReceiver, None, None]:
    """Catch ``signals`` while the ``with`` block runs; yield an async iterator of the
    signal numbers that arrive::

        with open_signal_receiver(signal.SIGUSR1, signal.SIGHUP) as received:
            async for signum in received:
                ...

    Handlers are installed on entry and the previous ones restored on exit. Repeats of a
    signal that arrive before the iterator reads it are coalesced into one (signals are
    notifications, not a count); different signals come out in order of first arrival.
    Signals that arrived but were never read are re-raised on exit, so the previous
    handlers see them. Only one task may iterate at a time.

    Python only lets the main thread install signal handlers, so this must be called from a
    run in the main thread (``RuntimeError`` otherwise); it needs at least one signal
    (``TypeError`` otherwise).
    """
    if not signals:
        raise TypeError("open_signal_receiver needs at least one signal")
    if threading.get_ident() != threading.main_thread().ident:
        raise RuntimeError(
            "open_signal_receiver only works in the main thread: Python delivers signals "
            "to handlers there only"
        )
    token = current_token()
    receiver = SignalReceiver()

    def handler(signum: int, frame: FrameType | None) -> None:
        # Runs between bytecodes of whatever the main thread is doing: just queue the
        # signal for the loop. idempotent=True coalesces a burst into one callback.
        token.run_sync_soon(receiver._add, signum, idempotent=True)

    try:
        with _handlers_installed(dict.fromkeys(signals), handler):
            yield receiver
    finally:
        receiver._redeliver_remaining()
