"""Cancel scopes, the cancel-status tree underneath them, and the deadline heap.

A :class:`CancelScope` is what users see. Each *entered* scope owns a :class:`CancelStatus`
node; the nodes form a tree that mirrors how scopes nest, across tasks (a nursery's children
hang below the nursery's scope). A task points at exactly one node, the innermost scope it
is inside. "Is this task cancelled?" is then one attribute read:
``task._cancel_status.effectively_cancelled``, kept up to date by pushing changes down the
tree when a scope is cancelled, shielded or unshielded — the rare operations pay, the
checkpoints don't.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from ._context import GLOBAL_RUN_CONTEXT, current_runner
from ._exceptions import Cancelled, CancelReasonSource
from ._ki import enable_ki_protection

if TYPE_CHECKING:
    from types import TracebackType

    from ._runner import Runner
    from ._task import Task

__all__ = ["CancelScope", "CancelStatus", "Deadlines"]


class CancelStatus:
    """A node of the cancel-status tree (internal; one per entered CancelScope)."""

    __slots__ = (
        "_children",
        "_parent",
        "abandoned_by_misnesting",
        "effectively_cancelled",
        "scope",
        "tasks",
    )

    def __init__(self, scope: CancelScope, parent: CancelStatus | None) -> None:
        self.scope = scope
        self._parent: CancelStatus | None = None
        self._children: set[CancelStatus] = set()
        self.tasks: set[Task] = set()
        self.effectively_cancelled = False
        self.abandoned_by_misnesting = False
        self.parent = parent

    @property
    def parent(self) -> CancelStatus | None:
        return self._parent

    @parent.setter
    def parent(self, parent: CancelStatus | None) -> None:
        if self._parent is not None:
            self._parent._children.discard(self)
        self._parent = parent
        if parent is not None:
            parent._children.add(self)
            self.recalculate()

    @property
    def children(self) -> frozenset[CancelStatus]:
        return frozenset(self._children)

    @property
    def parent_cancellation_is_visible_to_us(self) -> bool:
        return (
            self._parent is not None
            and not self.scope._shield
            and self._parent.effectively_cancelled
        )

    def recalculate(self) -> None:
        # Iterative depth-first push-down: scope trees can be deep (recursive helpers that
        # each open a scope) and Python recursion is neither cheap nor unbounded.
        todo = [self]
        while todo:
            status = todo.pop()
            new_state = status.scope._cancel_called or status.parent_cancellation_is_visible_to_us
            if new_state == status.effectively_cancelled:
                continue
            status.effectively_cancelled = new_state
            if new_state:
                for task in list(status.tasks):
                    task._attempt_delivery_of_any_pending_cancel()
            todo.extend(status._children)

    def close(self) -> None:
        self.parent = None
        # A child that outlives us was abandoned by misnested scopes; make sure it doesn't
        # keep looking cancelled because of a scope that no longer exists.
        for child in list(self._children):
            child.parent = None
            child.recalculate()

    def encloses(self, other: CancelStatus | None) -> bool:
        while other is not None:
            if other is self:
                return True
            other = other._parent
        return False

    def mark_abandoned(self) -> None:
        # Iterative for the same reason as recalculate(): nesting can be deep.
        todo = [self]
        while todo:
            status = todo.pop()
            status.abandoned_by_misnesting = True
            todo.extend(status._children)

    def effective_deadline(self) -> float:
        if self.effectively_cancelled:
            return -math.inf
        # Walk up to the first shield, iteratively: a recursive walk would need as many
        # Python frames again as the code that nested the scopes.
        deadline = math.inf
        status = self
        while True:
            deadline = min(deadline, status.scope._deadline)
            parent = status._parent
            if parent is None or status.scope._shield:
                return deadline
            status = parent


_MISNESTING_HELP = (
    "This is probably a bug in your code: it has caused a nursery_io internal state "
    "inconsistency. Cancel scopes must be exited in the reverse order of entry and in the "
    "same task that entered them; a common cause is an async generator that yields inside a "
    "cancel scope or nursery (wrap such generators so the consumer owns the scope instead)."
)


class CancelScope:
    """A region of code that can be cancelled, or time out, as a unit.

    Use as ``with CancelScope() as scope:``. Calling :meth:`cancel` (or reaching
    :attr:`deadline`) makes every checkpoint inside the scope raise :class:`Cancelled`,
    which the scope catches on exit (``cancelled_caught`` then becomes True). A ``shield``
    scope protects its contents from cancellation of enclosing scopes.

    A scope may be entered only once. ``relative_deadline`` is counted from the moment the
    scope is entered.
    """

    __slots__ = (
        "__weakref__",  # weak-referenceable, as in Trio
        "_cancel_called",
        "_cancel_reason",
        "_cancel_status",
        "_deadline",
        "_has_been_entered",
        "_registered_deadline",
        "_relative_deadline",
        "_runner",
        "_shield",
        "cancelled_caught",
    )

    def __init__(
        self,
        *,
        deadline: float = math.inf,
        relative_deadline: float = math.inf,
        shield: bool = False,
    ) -> None:
        if math.isnan(deadline):
            raise ValueError("deadline must not be NaN")
        if math.isnan(relative_deadline):
            raise ValueError("relative_deadline must not be NaN")
        if relative_deadline < 0:
            raise ValueError("relative_deadline must be non-negative")
        if math.inf not in (deadline, relative_deadline):
            raise ValueError("Cannot specify both a deadline and a relative deadline")
        self._deadline = deadline
        self._relative_deadline = relative_deadline
        self._shield = bool(shield)
        self._cancel_called = False
        self._cancel_reason: Cancelled | None = None
        self._cancel_status: CancelStatus | None = None
        self._has_been_entered = False
        self._registered_deadline = math.inf
        # The run this scope was entered in. Deadline bookkeeping must always go to that
        # run's heap, even if the scope is exited while another run is current (a coroutine
        # of an abandoned run closed by the garbage collector during a later run).
        self._runner: Runner | None = None
        self.cancelled_caught = False

    # ----- entering and leaving -----

    @enable_ki_protection
    def __enter__(self) -> CancelScope:
        task = GLOBAL_RUN_CONTEXT.task if hasattr(GLOBAL_RUN_CONTEXT, "task") else None
        if task is None:
            current_runner()  # raises the "not in a run" error
            raise RuntimeError("cancel scopes can only be entered from inside a task")
        if self._has_been_entered:
            raise RuntimeError(
                "Each CancelScope may only be used for a single 'with' block; create a new one"
            )
        self._has_been_entered = True
        self._runner = task._runner
        if self._relative_deadline != math.inf:
            self._deadline = task._runner.clock.current_time() + self._relative_deadline
            self._relative_deadline = math.inf
        if self._deadline <= task._runner.clock.current_time() and not self._cancel_called:
            self._set_cancelled(source="deadline")
        self._cancel_status = CancelStatus(scope=self, parent=task._cancel_status)
        task._activate_cancel_status(self._cancel_status)
        self._update_deadline_registration()
        return self

    @enable_ki_protection
    def __exit__(
        self,
        etype: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is not None and not isinstance(exc, BaseException):  # pragma: no cover
            raise TypeError("__exit__ got a non-exception")
        remaining = self._close(exc)
        if remaining is None:
            return True
        if remaining is exc:
            return False
        # The exception changed (Cancelled split out of a group): raise the remainder while
        # keeping the context the original had.
        context = remaining.__context__
        try:
            raise remaining
        finally:
            remaining.__context__ = context
            del remaining, exc

    def _close(self, exc: BaseException | None) -> BaseException | None:
        """Leave the scope; return the exception that should keep propagating, if any."""
        status = self._cancel_status
        if status is None:
            if self._has_been_entered:
                raise RuntimeError("this CancelScope has already been exited") from exc
            raise RuntimeError("this CancelScope was never entered") from exc
        if status.abandoned_by_misnesting:
            # An enclosing scope was already force-closed; the task has moved on without us.
            self._finish_close(status)
            return exc
        try:
            task: Task | None = GLOBAL_RUN_CONTEXT.task
        except AttributeError:
            task = None
        if task is None or task._cancel_status is not status:
            if task is not None and status.encloses(task._cancel_status):
                # Exiting an outer scope while inner ones are still open: abandon the inner
                # ones so the task is left consistent, then report the bug.
                for child in list(status._children):
                    child.mark_abandoned()
                task._activate_cancel_status(status.parent)
                problem = "while an inner cancel scope is still active"
                self._finish_close(status)
            else:
                # Not even inside this scope: report it and change nothing, so the task
                # that really owns the scope can still exit it normally.
                problem = "in a different task than it was entered in"
            error = RuntimeError(
                f"Cancel scope stack corrupted: attempted to exit {self!r} {problem}. "
                f"{_MISNESTING_HELP}"
            )
            error.__context__ = exc
            return error
        task._activate_cancel_status(status.parent)
        if (
            exc is not None
            and status.effectively_cancelled
            and not status.parent_cancellation_is_visible_to_us
        ):
            if isinstance(exc, Cancelled):
                self.cancelled_caught = True
                exc = None
            elif isinstance(exc, BaseExceptionGroup):
                matched, rest = exc.split(Cancelled)
                if matched is not None:
                    self.cancelled_caught = True
                    exc = rest
        self._finish_close(status)
        return exc

    def _finish_close(self, status: CancelStatus) -> None:
        status.close()
        self._cancel_status = None
        self._update_deadline_registration()

    # ----- deadline bookkeeping -----

    def _update_deadline_registration(self) -> None:
        wanted = (
            self._deadline
            if (self._cancel_status is not None and not self._cancel_called)
            else math.inf
        )
        if wanted == self._registered_deadline:
            return
        runner = self._runner
        assert runner is not None, "only an entered scope registers a deadline"
        if self._registered_deadline != math.inf:
            runner.deadlines.remove(self._registered_deadline)
        self._registered_deadline = wanted
        if wanted != math.inf:
            runner.deadlines.add(wanted, self)

    def _set_cancelled(self, *, source: CancelReasonSource, reason: str | None = None) -> None:
        self._cancel_called = True
        if self._cancel_reason is None:
            source_task: str | None = None
            # A deadline is not caused by whichever task happens to be running when it is
            # noticed (entry, a deadline setter, a cancel_called read): naming that task
            # would mislead whoever reads the Cancelled.
            if source != "deadline":
                try:
                    source_task = repr(GLOBAL_RUN_CONTEXT.task)
                except AttributeError:
                    pass
            self._cancel_reason = Cancelled._create(
                source=source, reason=reason, source_task=source_task
            )

    def _current_time(self) -> float:
        runner = self._runner if self._runner is not None else current_runner()
        return runner.clock.current_time()

    # ----- public API -----

    @enable_ki_protection
    def cancel(self, reason: str | None = None) -> None:
        """Cancel this scope immediately; does nothing if it was already cancelled.

        Safe to call before the scope is entered or after it exited (then it does nothing
        observable except setting :attr:`cancel_called`).
        """
        if self._cancel_called:
            return
        self._set_cancelled(source="explicit", reason=reason)
        self._cancel_with_current_reason()

    def _cancel(self, *, source: CancelReasonSource, reason: str | None = None) -> None:
        if self._cancel_called:
            return
        self._set_cancelled(source=source, reason=reason)
        self._cancel_with_current_reason()

    def _cancel_with_current_reason(self) -> None:
        if self._cancel_status is not None:
            self._update_deadline_registration()
            self._cancel_status.recalculate()

    @property
    def cancel_called(self) -> bool:
        """Whether :meth:`cancel` was called or the deadline passed (may be before entry)."""
        # A deadline in the past counts even if the loop hasn't processed it yet.
        if (
            self._cancel_status is not None
            and not self._cancel_called
            and self._deadline <= self._current_time()
        ):
            self._cancel(source="deadline")
        return self._cancel_called

    @property
    def deadline(self) -> float:
        """Absolute time (per the run's clock) at which the scope cancels itself.

        Settable while the scope is active; ``math.inf`` means no deadline.
        """
        if self._relative_deadline != math.inf:
            # Not entered yet, so there is no absolute deadline. Inventing one ("now +
            # relative") would silently change meaning between read and entry; Trio
            # raises here too.
            raise RuntimeError(
                "Unentered relative cancel scope does not have an absolute deadline yet; "
                "read relative_deadline instead"
            )
        return self._deadline

    @deadline.setter
    def deadline(self, new_deadline: float) -> None:
        if math.isnan(new_deadline):
            raise ValueError("deadline must not be NaN")
        if self._relative_deadline != math.inf:
            raise RuntimeError(
                "Unentered relative cancel scope does not have an absolute deadline; set "
                "relative_deadline instead"
            )
        self._deadline = float(new_deadline)
        if self._cancel_status is not None:
            self._update_deadline_registration()
            if self._deadline <= self._current_time():
                self._cancel(source="deadline")

    @property
    def relative_deadline(self) -> float:
        """Seconds until the deadline: counted from entry before the scope is entered, from
        now once it has been. An unentered scope with an absolute deadline has none."""
        if self._has_been_entered:
            return self._deadline - self._current_time()
        if self._deadline != math.inf:
            # Symmetric with the deadline getter (and Trio): answering "inf" here would
            # claim the scope has no deadline at all.
            # Trio's exact text (its tests match the whole message).
            raise RuntimeError(
                "Unentered non-relative cancel scope does not have a relative deadline"
            )
        return self._relative_deadline

    @relative_deadline.setter
    def relative_deadline(self, new_relative_deadline: float) -> None:
        if math.isnan(new_relative_deadline):
            raise ValueError("relative_deadline must not be NaN")
        if new_relative_deadline < 0:
            raise ValueError("relative_deadline must be non-negative")
        if self._has_been_entered:
            self.deadline = self._current_time() + new_relative_deadline
        elif self._deadline != math.inf:
            raise RuntimeError(
                "Unentered non-relative cancel scope does not have a relative deadline"
            )
        else:
            self._relative_deadline = new_relative_deadline

    @property
    def is_relative(self) -> bool | None:
        """True if the deadline is relative and not yet fixed; None once entered."""
        if self._has_been_entered:
            return None
        return self._relative_deadline != math.inf

    @property
    def shield(self) -> bool:
        """While True, cancellation of enclosing scopes does not reach inside this one."""
        return self._shield

    @shield.setter
    @enable_ki_protection
    def shield(self, new_value: bool) -> None:
        if not isinstance(new_value, bool):
            raise TypeError("shield must be a bool")
        self._shield = new_value
        if self._cancel_status is not None:
            self._cancel_status.recalculate()

    def __repr__(self) -> str:
        if self._cancel_status is not None:
            binding = "active"
        elif self._has_been_entered:
            binding = "exited"
        else:
            binding = "unbound"
        state = ", cancelled" if self._cancel_called else ""
        if self._deadline != math.inf:
            state += f", deadline={self._deadline:.3f}"
        return f"<nursery_io.CancelScope at {id(self):#x}, {binding}{state}>"


_MIN_PRUNE = 1000
_tiebreak = itertools.count()


class Deadlines:
    """A heap of (deadline, tiebreak, scope) with lazy deletion.

    Removing a scope's deadline just counts it as stale; stale entries are skipped when they
    reach the top and the heap is rebuilt when more than half of it is stale.
    """

    __slots__ = ("_active", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, CancelScope]] = []
        self._active = 0

    def add(self, deadline: float, scope: CancelScope) -> None:
        heapq.heappush(self._heap, (deadline, next(_tiebreak), scope))
        self._active += 1

    def remove(self, deadline: float) -> None:
        self._active -= 1

    def _is_live(self, deadline: float, scope: CancelScope) -> bool:
        return scope._registered_deadline == deadline

    def next_deadline(self) -> float:
        heap = self._heap
        while heap:
            deadline, _, scope = heap[0]
            if self._is_live(deadline, scope):
                return deadline
            heapq.heappop(heap)
        return math.inf

    def prune(self) -> None:
        if len(self._heap) > _MIN_PRUNE and len(self._heap) > 2 * self._active:
            self._heap = [entry for entry in self._heap if self._is_live(entry[0], entry[2])]
            heapq.heapify(self._heap)

    def expire(self, now: float) -> bool:
        """Cancel every scope whose deadline has passed; return whether any did."""
        did_something = False
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, scope = heapq.heappop(heap)
            if self._is_live(deadline, scope):
                # _cancel re-registers with deadline inf, which calls remove() for us.
                scope._cancel(source="deadline")
                did_something = True
        self.prune()
        return did_something

    def __len__(self) -> int:
        return self._active

    def __iter__(self) -> Iterator[CancelScope]:
        return (scope for _, _, scope in self._heap)


INF: Final = math.inf
