"""Exceptions raised by the core runtime."""

from __future__ import annotations

from typing import Any, Literal, NoReturn

from .._kernel.errors import BusyResourceError, ClosedResourceError

__all__ = [
    "BrokenResourceError",
    "BusyResourceError",
    "Cancelled",
    "ClosedResourceError",
    "EndOfChannel",
    "InternalError",
    "RunFinishedError",
    "WouldBlock",
]

CancelReasonSource = Literal[
    "deadline", "nursery", "explicit", "KeyboardInterrupt", "shutdown", "unknown"
]


class InternalError(Exception):
    """The runtime itself failed: a bug in nursery_io or in code that broke its invariants.

    Any exception raised by an instrument or a ``run_sync_soon`` callback, or an
    inconsistency in the scheduler, ends the run with this error; the original error is its
    ``__cause__``.
    """


class RunFinishedError(RuntimeError):
    """The run this object belongs to has already finished."""


class WouldBlock(Exception):
    """A ``*_nowait`` operation could not complete without blocking."""


class EndOfChannel(Exception):
    """The other end of the channel was closed and no more values will arrive."""


class BrokenResourceError(Exception):
    """The resource broke (for example the peer went away) and cannot be used any more."""


class Cancelled(BaseException):
    """Raised at a checkpoint when the surrounding cancel scope has been cancelled.

    Never create one yourself and never swallow one: let it propagate to the cancel scope
    that caught it. It derives from :class:`BaseException` so ``except Exception`` does not
    catch it by accident.

    ``source`` says why: ``"deadline"``, ``"nursery"`` (a sibling task failed),
    ``"explicit"`` (:meth:`CancelScope.cancel`), ``"KeyboardInterrupt"``, ``"shutdown"`` or
    ``"unknown"``; ``reason`` is the text given to :meth:`CancelScope.cancel`, and
    ``source_task`` describes the task that asked for the cancellation.
    """

    source: CancelReasonSource
    reason: str | None
    source_task: str | None

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError(
            "Cancelled has no public constructor: it is raised by the runtime at checkpoints. "
            "To cancel something, call cancel() on a CancelScope."
        )

    @classmethod
    def _create(
        cls,
        *,
        source: CancelReasonSource = "unknown",
        reason: str | None = None,
        source_task: str | None = None,
    ) -> Cancelled:
        self = cls.__new__(cls)
        BaseException.__init__(self)
        self.source = source
        self.reason = reason
        self.source_task = source_task
        return self

    def __str__(self) -> str:
        text = f"cancelled due to {self.source}"
        if self.reason is not None:
            text += f" with reason {self.reason!r}"
        if self.source_task is not None:
            text += f" from task {self.source_task}"
        return text

    def __repr__(self) -> str:
        # The default repr is "Cancelled()" since the runtime bypasses __init__; show the
        # fields that say where the cancellation came from.
        return (
            f"Cancelled(source={self.source!r}, reason={self.reason!r}, "
            f"source_task={self.source_task!r})"
        )

    def __reduce__(self) -> Any:
        return (_rebuild_cancelled, (self.source, self.reason, self.source_task))


def _rebuild_cancelled(
    source: CancelReasonSource, reason: str | None, source_task: str | None
) -> Cancelled:
    return Cancelled._create(source=source, reason=reason, source_task=source_task)


def _raise(exc: BaseException) -> NoReturn:
    raise exc
