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
import types
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from ._context import GLOBAL_RUN_CONTEXT, NOT_IN_RUN_MESSAGE, current_runner
from ._exceptions import DEADLINE_REASON, Cancelled, CancelReason
from ._ki import enable_ki_protection
from ._util import final

if TYPE_CHECKING:
    from types import TracebackType

    from ._runner import Runner
    from ._task import Task

__all__ = [
    "MISNESTING_ADVICE",
    "NONSTRICT_EXCEPTIONGROUP_NOTE",
    "CancelScope",
    "CancelStatus",
    "Deadlines",
    "collapse_exception_group",
]

#: Added to the exception groups of nurseries with ``strict_exception_groups=False``: once
#: cancellations are split out of such a group, a single remaining exception comes out bare.
NONSTRICT_EXCEPTIONGROUP_NOTE: Final = (
    'This is a "loose" ExceptionGroup, and may be collapsed by nursery_io if it only '
    "contains one exception - typically after `Cancelled` has been stripped from it. Note "
    "this has consequences for exception handling, and strict_exception_groups=True is "
    "recommended."
)


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
            scope = status.scope
            inherited = status.parent_cancellation_is_visible_to_us
            new_state = scope._cancel_called or inherited
            if new_state == status.effectively_cancelled:
                continue
            if inherited and scope._cancel_reason is None:
                # A scope cancelled from outside reports the outer scope's reason, and
                # keeps it (Trio's rule: the first reason a scope learns is the one it
                # gives every Cancelled raised inside it).
                assert status._parent is not None
                scope._cancel_reason = status._parent.scope._cancel_reason
            status.effectively_cancelled = new_state
            if new_state:
                for task in list(status.tasks):
                    task._attempt_delivery_of_any_pending_cancel()
            todo.extend(status._children)

    def close(self) -> None:
        self.parent = None
        if self.tasks or self._children:
            # Scopes were exited out of order: tasks or scopes still hang below this one.
            # Leave that subtree detached, marked abandoned (so exiting the scopes inside
            # it later changes nothing) and cancelled for good, so whatever runs in it
            # unwinds. Nothing will recalculate us any more, hence setting it by hand.
            self.mark_abandoned()
            self.effectively_cancelled = True
            for task in list(self.tasks):
                task._attempt_delivery_of_any_pending_cancel()
            for child in list(self._children):
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


MISNESTING_ADVICE = """
This is probably a bug in your code that has corrupted nursery_io's internal state. We'll
do our best to recover, but from now on there are no guarantees.

Cancel scopes and nurseries must be exited in the reverse order of entry, in the task that
entered them. Common causes of this error:
  - yielding inside a cancel scope or nursery from a generator or async generator (other
    than one decorated with @contextmanager or @asynccontextmanager);
  - calling __enter__/__exit__ of a CancelScope, or __aenter__/__aexit__ of the object
    returned by open_nursery(), by hand, or interleaving them with an [Async]ExitStack in
    an order that no nesting of 'with'/'async with' blocks could produce;
  - driving parts of an async function's coroutine from a different cancel scope or
    nursery than other parts.
"""


def collapse_exception_group(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """Replace every single-exception group marked as non-strict (``strict_exception_groups
    =False``) with its one exception, recursively."""
    exceptions = list(group.exceptions)
    modified = False
    for i, exc in enumerate(exceptions):
        if isinstance(exc, BaseExceptionGroup):
            collapsed = collapse_exception_group(exc)
            if collapsed is not exc:
                modified = True
                exceptions[i] = collapsed
    if len(exceptions) == 1 and NONSTRICT_EXCEPTIONGROUP_NOTE in getattr(group, "__notes__", ()):
        only = exceptions[0]
        only.__traceback__ = concat_tb(group.__traceback__, only.__traceback__)
        return only
    if modified:
        return group.derive(exceptions)
    return group


def concat_tb(head: TracebackType | None, tail: TracebackType | None) -> TracebackType | None:
    """The traceback ``head`` followed by ``tail``."""
    entries = []
    while head is not None:
        entries.append(head)
        head = head.tb_next
    for entry in reversed(entries):
        tail = types.TracebackType(tail, entry.tb_frame, entry.tb_lasti, entry.tb_lineno)
    return tail


@final
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
            raise ValueError("relative deadline must not be NaN")
        if relative_deadline < 0:
            raise ValueError("timeout must be non-negative")
        if math.inf not in (deadline, relative_deadline):
            raise ValueError("Cannot specify both a deadline and a relative deadline")
        self._deadline = deadline
        self._relative_deadline = relative_deadline
        self._shield = bool(shield)
        self._cancel_called = False
        # Set by the first cancellation that reaches the scope (its own, or an enclosing
        # scope's); every Cancelled raised inside the scope is built from it.
        self._cancel_reason: CancelReason | None = None
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
            raise RuntimeError("Each CancelScope may only be used for a single 'with' block")
        self._has_been_entered = True
        runner = self._runner = task._runner
        if self._relative_deadline != math.inf:
            self._deadline = runner.clock.current_time() + self._relative_deadline
            self._relative_deadline = math.inf
        if self._deadline != math.inf and self._deadline <= runner.clock.current_time():
            self._cancel(DEADLINE_REASON)
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
        # The exception changed (Cancelled split out of a group, or a misnesting error):
        # raise the remainder while keeping the context the original had.
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
            error = RuntimeError(
                f"Cancel scope stack corrupted: attempted to exit {self!r} which had "
                "already been exited"
            )
            error.__context__ = exc
            return error
        try:
            task: Task = GLOBAL_RUN_CONTEXT.task
        except AttributeError:
            # Outside any task (a coroutine closed from outside its run): nothing to
            # unwind into, leave the scope tree alone.
            error = RuntimeError(NOT_IN_RUN_MESSAGE)
            error.__context__ = exc
            return error
        if task._cancel_status is not status:
            if status.abandoned_by_misnesting:
                # An enclosing scope was exited first and already reported it; another
                # error here would only clutter the traceback.
                pass
            elif not status.encloses(task._cancel_status):
                # Not even inside this scope: report it and change nothing, so the task
                # that really owns the scope can still exit it normally.
                error = RuntimeError(
                    f"Cancel scope stack corrupted: attempted to exit {self!r} from "
                    f"unrelated {task!r}\n{MISNESTING_ADVICE}"
                )
                error.__context__ = exc
                return error
            else:
                # Exiting an outer scope while inner ones are still open: abandon the inner
                # ones (close() below cancels them) and report the bug.
                error = RuntimeError(
                    f"Cancel scope stack corrupted: attempted to exit {self!r} in {task!r} "
                    f"that's still within its child {task._cancel_status.scope!r}\n"
                    f"{MISNESTING_ADVICE}"
                )
                error.__context__ = exc
                exc = error
                task._activate_cancel_status(status.parent)
        else:
            task._activate_cancel_status(status.parent)
        if (
            exc is not None
            and status.effectively_cancelled
            and not status.parent_cancellation_is_visible_to_us
        ) or (task._cancel_status is not status and status.abandoned_by_misnesting):
            if isinstance(exc, Cancelled):
                self.cancelled_caught = True
                exc = None
            elif isinstance(exc, BaseExceptionGroup):
                matched, rest = exc.split(Cancelled)
                if matched is not None:
                    self.cancelled_caught = True
                exc = None if rest is None else collapse_exception_group(rest)
        status.close()
        self._cancel_status = None
        self._update_deadline_registration()
        return exc

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

    def _current_time(self) -> float:
        runner = self._runner if self._runner is not None else current_runner()
        return runner.clock.current_time()

    # ----- cancelling -----

    @enable_ki_protection
    def _cancel(self, reason: CancelReason | None) -> None:
        """Cancel with a runtime-supplied reason (the first reason a scope gets sticks)."""
        if self._cancel_called:
            return
        if self._cancel_reason is None:
            self._cancel_reason = reason
        self._cancel_called = True
        status = self._cancel_status
        if status is not None:
            self._update_deadline_registration()
            status.recalculate()

    @enable_ki_protection
    def cancel(self, reason: str | None = None) -> None:
        """Cancel this scope immediately; does nothing if it was already cancelled.

        ``reason`` (a string) is attached to every resulting :class:`Cancelled`, with the
        task that called ``cancel``, to tell where the cancellation came from.

        Safe to call before the scope is entered or after it exited (then it does nothing
        observable except setting :attr:`cancel_called`).
        """
        if self._cancel_called:
            return
        try:
            source_task: str | None = repr(GLOBAL_RUN_CONTEXT.task)
        except AttributeError:
            source_task = None
        self._cancel(CancelReason("explicit", source_task, reason))

    @property
    def cancel_called(self) -> bool:
        """Whether :meth:`cancel` was called or the deadline passed (may be before entry)."""
        # A deadline in the past counts even if the loop hasn't processed it yet (for an
        # exited scope it no longer matters, so its answer is frozen).
        if (self._cancel_status is not None or not self._has_been_entered) and (
            not self._cancel_called and self._deadline <= self._current_time()
        ):
            self._cancel(DEADLINE_REASON)
        return self._cancel_called

    # ----- deadlines and shielding -----

    @property
    def deadline(self) -> float:
        """Absolute time (per the run's clock) at which the scope cancels itself.

        Settable while the scope is active; ``math.inf`` means no deadline.
        """
        if self._relative_deadline != math.inf:
            # Not entered yet, so there is no absolute deadline. Inventing one ("now +
            # relative") would silently change meaning between read and entry.
            raise RuntimeError(
                "Unentered relative cancel scope does not have an absolute deadline."
            )
        return self._deadline

    @deadline.setter
    def deadline(self, new_deadline: float) -> None:
        if math.isnan(new_deadline):
            raise ValueError("deadline must not be NaN")
        if self._relative_deadline != math.inf:
            raise RuntimeError(
                "Unentered relative cancel scope does not have an absolute deadline."
            )
        self._deadline = float(new_deadline)
        if self._cancel_status is not None:
            # A deadline already in the past fires when the loop next processes deadlines
            # (before any task runs again), not here: as in Trio, the cancellation and the
            # abort functions it calls then run in the loop, outside this task.
            self._update_deadline_registration()

    @property
    def relative_deadline(self) -> float:
        """Seconds until the deadline: counted from entry before the scope is entered, from
        now once it has been. An unentered scope with an absolute deadline has none."""
        if self._has_been_entered:
            return self._deadline - self._current_time()
        if self._deadline != math.inf:
            raise RuntimeError(
                "Unentered non-relative cancel scope does not have a relative deadline"
            )
        return self._relative_deadline

    @relative_deadline.setter
    def relative_deadline(self, new_relative_deadline: float) -> None:
        if math.isnan(new_relative_deadline):
            raise ValueError("relative deadline must not be NaN")
        if new_relative_deadline < 0:
            raise ValueError("relative deadline must be non-negative")
        if self._has_been_entered:
            self.deadline = self._current_time() + float(new_relative_deadline)
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
        if self._cancel_called:
            state = ", cancelled"
        elif self._deadline == math.inf:
            state = ""
        else:
            # Relative to now, on the current run's clock; outside a run there is no now.
            try:
                now = GLOBAL_RUN_CONTEXT.runner.clock.current_time()
            except AttributeError:
                state = ""
            else:
                distance = abs(self._deadline - now)
                when = "from now" if self._deadline >= now else "ago"
                state = f", deadline is {distance:.2f} seconds {when}"
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
                scope._cancel(DEADLINE_REASON)
                did_something = True
        self.prune()
        return did_something

    def __len__(self) -> int:
        return self._active

    def __iter__(self) -> Iterator[CancelScope]:
        return (scope for _, _, scope in self._heap)


INF: Final = math.inf
