"""``lowlevel.UnboundedQueue``: Trio's legacy batch queue, kept for compatibility.

Deprecated (as in Trio, with the same ``TrioDeprecationWarning``): use
``open_memory_channel(math.inf)`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from ._core import (
    ParkingLot,
    WouldBlock,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    enable_ki_protection,
)
from ._core._util import final
from ._deprecate import TrioDeprecationWarning, warn_deprecated

if TYPE_CHECKING:
    from typing import Self

__all__ = ["UnboundedQueue", "UnboundedQueueStatistics"]

T = TypeVar("T")


@dataclass(frozen=True)
class UnboundedQueueStatistics:
    """``qsize``: items in the queue; ``tasks_waiting``: tasks blocked in ``get_batch``."""

    qsize: int
    tasks_waiting: int


@final
class UnboundedQueue(Generic[T]):
    """A queue whose ``put_nowait`` never blocks, read in batches.

    ``get_batch`` / ``get_batch_nowait`` return everything queued so far (a non-empty
    list); ``async for batch in queue`` loops over batches. Producers get no backpressure,
    so prefer ``open_memory_channel(math.inf)``, which this is deprecated in favour of.
    """

    # As in Trio, users may set attributes (a test mocks a method on an instance).
    __slots__ = ("__dict__", "__weakref__", "_can_get", "_data", "_lot")

    def __init__(self) -> None:
        warn_deprecated(
            "nursery_io.lowlevel.UnboundedQueue",
            "0.9.0",
            issue=497,
            instead="nursery_io.open_memory_channel(math.inf)",
            stacklevel=2,
            category=TrioDeprecationWarning,
        )
        self._lot = ParkingLot()
        self._data: list[T] = []
        # True when a get may take the data now. It stays False while a woken getter has
        # yet to run, so a later get_batch_nowait can't take the batch from under it.
        self._can_get = False

    def __repr__(self) -> str:
        return f"<UnboundedQueue holding {len(self._data)} items>"

    def qsize(self) -> int:
        """How many items are queued."""
        return len(self._data)

    def empty(self) -> bool:
        """Whether nothing is queued."""
        return not self._data

    @enable_ki_protection
    def put_nowait(self, obj: T) -> None:
        """Queue ``obj``. Never blocks; works outside a run too while nobody waits."""
        if not self._data:
            if self._lot:
                self._lot.unpark(count=1)  # that getter takes the batch when it runs
            else:
                self._can_get = True
        self._data.append(obj)

    def _take_batch(self) -> list[T]:
        batch = self._data
        self._data = []
        self._can_get = False
        return batch

    def get_batch_nowait(self) -> list[T]:
        """Everything queued, without waiting; ``WouldBlock`` if there is nothing to take."""
        if not self._can_get:
            raise WouldBlock
        return self._take_batch()

    async def get_batch(self) -> list[T]:
        """Everything queued, waiting (FIFO among getters) until there is something.
        Always a checkpoint."""
        await checkpoint_if_cancelled()
        if not self._can_get:
            await self._lot.park()
            return self._take_batch()
        batch = self._take_batch()
        await cancel_shielded_checkpoint()
        return batch

    def statistics(self) -> UnboundedQueueStatistics:
        """Queued items and waiting tasks."""
        return UnboundedQueueStatistics(qsize=len(self._data), tasks_waiting=len(self._lot))

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> list[T]:
        return await self.get_batch()
