"""Sequencer: force blocks of code in different tasks to run in a chosen order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from .. import Cancelled
from .._core import ParkingLot, checkpoint
from .._core._util import final

__all__ = ["Sequencer"]


@final
class Sequencer:
    """Run ``async with seq(n):`` blocks in order of ``n``, whatever task they are in.

    ``seq(0)`` enters at once; ``seq(n)`` waits until the block for ``n - 1`` has exited.
    Each number may be used once (reusing one raises ``RuntimeError``). If a task is
    cancelled while waiting for its turn, the ordering can no longer be kept: the sequencer
    becomes broken, and that wait, every other wait, and every later ``seq(n)`` raise
    ``RuntimeError``. Typical use in a test::

        seq = Sequencer()

        async def first():
            async with seq(0):
                ...
            async with seq(2):
                ...

        async def second():
            async with seq(1):
                ...
    """

    def __init__(self) -> None:
        self._claimed: set[int] = set()
        # Positions whose predecessor has exited (0 never waits).
        self._released: set[int] = {0}
        self._waiting: dict[int, ParkingLot] = {}
        self._broken = False

    def __repr__(self) -> str:
        state = "broken" if self._broken else f"{len(self._claimed)} positions claimed"
        return f"<nursery_io.testing.Sequencer, {state}>"

    def __call__(self, position: int) -> AbstractAsyncContextManager[None]:
        return self._block(position)

    def _break(self) -> None:
        self._broken = True
        for lot in self._waiting.values():
            lot.unpark_all()
        self._waiting.clear()

    @asynccontextmanager
    async def _block(self, position: int) -> AsyncIterator[None]:
        if position in self._claimed:
            raise RuntimeError(f"Sequencer position {position} was already used")
        if self._broken:
            raise RuntimeError("the Sequencer is broken (a task was cancelled while waiting)")
        self._claimed.add(position)
        if position != 0:
            try:
                if position in self._released:
                    await checkpoint()
                else:
                    lot = self._waiting.get(position)
                    if lot is None:
                        lot = self._waiting[position] = ParkingLot()
                    await lot.park()
            except Cancelled:
                self._break()
                raise RuntimeError(
                    f"cancelled while waiting for Sequencer position {position}; the sequence "
                    "is broken"
                ) from None
            if self._broken:
                raise RuntimeError("the Sequencer is broken (a task was cancelled while waiting)")
        try:
            yield
        finally:
            following = position + 1
            self._released.add(following)
            lot = self._waiting.pop(following, None)
            if lot is not None:
                lot.unpark_all()
