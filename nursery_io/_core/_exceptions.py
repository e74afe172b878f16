"""Exceptions raised by the core runtime."""

from __future__ import annotations

from typing import Any, Final, Literal, NoReturn, TypeVar

from .._kernel.errors import BusyResourceError, ClosedResourceError
from ._context import current_library_name
from ._util import final

__all__ = [
    "BrokenResourceError",
    "BusyResourceError",
    "CancelReason",
    "Cancelled",
    "ClosedResourceError",
    "EndOfChannel",
    "InternalError",
    "RunFinishedError",
    "WouldBlock",
    "no_public_constructor_error",
]

_T = TypeVar("_T")

CancelReasonSource = Literal[
    "deadline", "nursery", "explicit", "KeyboardInterrupt", "shutdown", "unknown"
]


class InternalError(Exception):
    """The runtime itself failed: a bug in nursery_io or in code that broke its invariants.

    An exception raised by a system task or a ``run_sync_soon`` callback, or an
    inconsistency in the scheduler, ends the run with this error. Its ``__cause__`` is the
    original error; for system tasks and callbacks, wrapped in the exception groups of the
    run's internal nurseries, as in Trio.
    """


class RunFinishedError(RuntimeError):
    """The run this object belongs to has already finished."""


class WouldBlock(Exception):
    """A ``*_nowait`` operation could not complete without blocking."""


class EndOfChannel(Exception):
    """The other end of the channel was closed and no more values will arrive."""


class BrokenResourceError(Exception):
    """The resource broke (for example the peer went away) and cannot be used any more."""


def no_public_constructor_error(public_name: str) -> TypeError:
    # In trio mode the class is reached as trio.X, so the message says so (as Trio's does).
    package, dot, rest = public_name.partition(".")
    if dot and package == "nursery_io":
        public_name = f"{current_library_name()}.{rest}"
    return TypeError(f"{public_name} has no public constructor")


class CancelReason:
    """Why a cancel scope was cancelled; copied into each :class:`Cancelled` it raises.

    Immutable. ``source_task`` is the ``repr`` of the task that asked (a string, so no
    reference cycles through tasks and their frames).
    """

    __slots__ = ("reason", "source", "source_task")

    def __init__(
        self,
        source: CancelReasonSource,
        source_task: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.source: CancelReasonSource = source
        self.source_task = source_task
        self.reason = reason

    def __repr__(self) -> str:
        return (
            f"CancelReason(source={self.source!r}, source_task={self.source_task!r}, "
            f"reason={self.reason!r})"
        )


#: Shared by every deadline expiry: nothing about it depends on who noticed it.
DEADLINE_REASON: Final = CancelReason("deadline")


@final
class Cancelled(BaseException):
    """Raised at a checkpoint when the surrounding cancel scope has been cancelled.

    Never create one yourself and never swallow one: let it propagate to the cancel scope
    that caught it. It derives from :class:`BaseException` so ``except Exception`` does not
    catch it by accident.

    ``source`` says why: ``"deadline"``, ``"nursery"`` (a sibling task failed, or the
    nursery's body raised), ``"explicit"`` (:meth:`CancelScope.cancel`),
    ``"KeyboardInterrupt"``, ``"shutdown"`` or ``"unknown"``; ``reason`` is the text given
    to :meth:`CancelScope.cancel` (or written by the runtime), and ``source_task`` is the
    ``repr`` of the task that asked for the cancellation.
    """

    source: CancelReasonSource
    reason: str | None
    source_task: str | None

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise no_public_constructor_error("nursery_io.Cancelled")

    @classmethod
    def _create(
        cls,
        *,
        source: CancelReasonSource = "unknown",
        source_task: str | None = None,
        reason: str | None = None,
    ) -> Cancelled:
        self = cls.__new__(cls)
        # Same args as Trio's, so code that inspects exc.args agrees.
        BaseException.__init__(self, source, source_task, reason)
        self.source = source
        self.source_task = source_task
        self.reason = reason
        return self

    @classmethod
    def _from_reason(cls, reason: CancelReason | None) -> Cancelled:
        if reason is None:
            # Only a scope tree left behind by misnested scopes can be cancelled without
            # anyone having said why.
            return cls._create(source="unknown", reason="misnesting")
        return cls._create(
            source=reason.source, source_task=reason.source_task, reason=reason.reason
        )

    def __str__(self) -> str:
        text = f"cancelled due to {self.source}"
        if self.reason is not None:
            text += f" with reason {self.reason!r}"
        if self.source_task is not None:
            text += f" from task {self.source_task}"
        return text

    def __repr__(self) -> str:
        return (
            f"Cancelled(source={self.source!r}, source_task={self.source_task!r}, "
            f"reason={self.reason!r})"
        )

    def __reduce__(self) -> Any:
        return (_rebuild_cancelled, (self.source, self.reason, self.source_task))


def _rebuild_cancelled(
    source: CancelReasonSource, reason: str | None, source_task: str | None
) -> Cancelled:
    return Cancelled._create(source=source, reason=reason, source_task=source_task)


def _raise(exc: BaseException) -> NoReturn:
    raise exc
