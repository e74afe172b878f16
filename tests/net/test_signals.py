"""open_signal_receiver."""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

import pytest

import nursery_io
from nursery_io._signals import _pending_signal_count
from nursery_io.testing import wait_all_tasks_blocked


async def wait_for_pending(receiver: object, count: int) -> None:
    # The handler hands the signal to the loop through the entry queue; give it turns.
    while _pending_signal_count(receiver) < count:  # type: ignore[arg-type]
        await nursery_io.sleep(0)


async def test_signal_delivered_while_tasks_are_blocked() -> None:
    a, b = nursery_io.socket.socketpair()
    received: list[int] = []
    with a, b, nursery_io.open_signal_receiver(signal.SIGUSR1) as signals:
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(b.recv, 1)  # another task blocked on a socket meanwhile

            async def listen() -> None:
                async for signum in signals:
                    received.append(signum)
                    nursery.cancel_scope.cancel()

            nursery.start_soon(listen)
            await wait_all_tasks_blocked()
            os.kill(os.getpid(), signal.SIGUSR1)
    assert received == [signal.SIGUSR1]


async def test_repeats_coalesce_and_order_is_first_arrival() -> None:
    with nursery_io.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2) as signals:
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR2)
        await wait_for_pending(signals, 2)
        assert await signals.__anext__() == signal.SIGUSR2
        assert await signals.__anext__() == signal.SIGUSR1
        assert _pending_signal_count(signals) == 0


async def test_handlers_restored_and_unread_signals_redelivered() -> None:
    seen: list[int] = []

    def previous(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)

    original = signal.signal(signal.SIGUSR1, previous)
    try:
        with nursery_io.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR1) as signals:
            assert signal.getsignal(signal.SIGUSR1) is not previous
            os.kill(os.getpid(), signal.SIGUSR1)
            await wait_for_pending(signals, 1)
        assert signal.getsignal(signal.SIGUSR1) is previous
        assert seen == [signal.SIGUSR1]
        with pytest.raises(RuntimeError, match="exited"):
            await signals.__anext__()
    finally:
        signal.signal(signal.SIGUSR1, original)


async def test_signal_in_flight_at_exit_is_redelivered() -> None:
    seen: list[int] = []

    def previous(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)

    original = signal.signal(signal.SIGUSR2, previous)
    try:
        with nursery_io.open_signal_receiver(signal.SIGUSR2):
            # Queued for the loop but not yet handed to the receiver when the block exits.
            os.kill(os.getpid(), signal.SIGUSR2)
        assert seen == []
        await nursery_io.sleep(0)
        await nursery_io.sleep(0)
        while not seen:
            await nursery_io.sleep(0)
        assert seen == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, original)


async def test_one_iterator_at_a_time() -> None:
    with nursery_io.open_signal_receiver(signal.SIGUSR1) as signals:
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(signals.__anext__)
            await wait_all_tasks_blocked()
            with pytest.raises(nursery_io.BusyResourceError):
                await signals.__anext__()
            nursery.cancel_scope.cancel()


async def test_needs_signals() -> None:
    with pytest.raises(TypeError), nursery_io.open_signal_receiver():
        pass


def test_main_thread_only() -> None:
    errors: list[BaseException] = []

    async def main() -> None:
        with nursery_io.open_signal_receiver(signal.SIGUSR1):
            pass  # pragma: no cover

    def in_thread() -> None:
        try:
            nursery_io.run(main)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)
    assert "main thread" in str(errors[0])
