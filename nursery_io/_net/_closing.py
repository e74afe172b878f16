"""``with resource:`` for the network objects whose ``close()`` is synchronous."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

__all__ = ["ClosesOnExit"]


class ClosesOnExit:
    """Mixin: the object is a context manager that calls its ``close()`` on the way out,
    whatever happens inside the block (sockets, DTLS endpoints and channels)."""

    __slots__ = ()

    if TYPE_CHECKING:

        def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
