"""``testing.RaisesGroup`` and ``testing.Matcher``: Trio's (deprecated) exception-group
matchers, built on pytest's successors of them, ``pytest.RaisesGroup`` and
``pytest.RaisesExc`` (pytest >= 8.4).

Trio 0.35 still ships its own copies, deprecated since 0.33 in favour of pytest's. We keep
Trio's spelling on top of pytest's matching: Trio's constructor signatures, argument
errors and reprs, and Trio's way of failing (``AssertionError``, where pytest uses its
``Failed`` outcome). The explanation *inside* a failure (``fail_reason``) is pytest's
wording. This module imports pytest, so it is only loaded when one of these names is
first used (see ``nursery_io.testing.__getattr__``).
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Callable
from re import Pattern
from typing import Any, Generic, TypeVar

import pytest

__all__ = ["Matcher", "RaisesGroup"]

MatchE_co = TypeVar("MatchE_co", bound=BaseException, covariant=True)
BaseExcT_co = TypeVar("BaseExcT_co", bound=BaseException, covariant=True)

# Patterns compiled from a str carry only this flag; Trio leaves it out of reprs.
_DEFAULT_FLAGS = re.compile("").flags


def _compile(match: str | Pattern[str] | None) -> Pattern[str] | None:
    # Compiled here so a bad regex raises re.error (as in Trio) rather than pytest's
    # Failed, and so match="" doesn't draw pytest's "always matches" warning.
    return re.compile(match) if isinstance(match, str) else match


def _pattern_repr(match: Pattern[str]) -> str:
    return repr(match.pattern if match.flags == _DEFAULT_FLAGS else match)


def _repr_callable(fn: Callable[..., object]) -> str:
    # Trio's hypothesis plugin makes Trio print `check` functions by their source once
    # hypothesis is imported; do the same so reprs agree.
    if "hypothesis" in sys.modules:
        try:
            from hypothesis.internal.reflection import get_pretty_function_description
        except ImportError:  # pragma: no cover - a hypothesis without it
            pass
        else:
            return repr(get_pretty_function_description(fn))
    return repr(fn)


class Matcher(pytest.RaisesExc[MatchE_co], Generic[MatchE_co]):  # type: ignore[misc]
    """Requirements on one exception inside a :class:`RaisesGroup`: its type
    (``isinstance``), a regex ``match`` searched in its message (and notes), and/or a
    ``check`` predicate. At least one must be given. ``matches(exc)`` checks a single
    exception and leaves an explanation in ``fail_reason`` when it doesn't match.

    Deprecated, as in Trio: use ``pytest.RaisesExc``.
    """

    def __init__(
        self,
        exception_type: type[MatchE_co] | None = None,
        match: str | Pattern[str] | None = None,
        check: Callable[[MatchE_co], bool] | None = None,
    ) -> None:
        if exception_type is None and match is None and check is None:
            raise ValueError("You must specify at least one parameter to match on.")
        if exception_type is not None and not issubclass(exception_type, BaseException):
            raise ValueError(f"exception_type {exception_type} must be a subclass of BaseException")
        # None is accepted at run time (it means "any type"), just not by pytest's overloads.
        super().__init__(exception_type, match=_compile(match), check=check)  # type: ignore[arg-type]
        self.exception_type = exception_type

    def __repr__(self) -> str:
        parameters = []
        if self.exception_type is not None:
            parameters.append(self.exception_type.__name__)
        if self.match is not None:
            parameters.append(f"match={_pattern_repr(self.match)}")
        if self.check is not None:
            parameters.append(f"check={_repr_callable(self.check)}")
        return f"Matcher({', '.join(parameters)})"


class RaisesGroup(pytest.RaisesGroup[BaseExcT_co], Generic[BaseExcT_co]):  # type: ignore[misc]
    """Context manager asserting that the block raises an exception group with exactly
    the given exceptions (types, :class:`Matcher` objects or nested ``RaisesGroup``\\ s),
    in any order and nothing else.

    ``allow_unwrapped=True`` also accepts the single expected exception raised bare;
    ``flatten_subgroups=True`` ignores the nesting of the raised group; ``match`` and
    ``check`` apply to the group itself. ``matches(exc)`` checks without raising. A
    mismatch raises ``AssertionError`` (as in Trio) explaining what didn't match.

    Deprecated, as in Trio: use ``pytest.RaisesGroup``.
    """

    def __init__(
        self,
        exception: type[BaseException] | Matcher[BaseException] | RaisesGroup[BaseException],
        *other_exceptions: type[BaseException]
        | Matcher[BaseException]
        | RaisesGroup[BaseException],
        allow_unwrapped: bool = False,
        flatten_subgroups: bool = False,
        match: str | Pattern[str] | None = None,
        check: Callable[[BaseExceptionGroup[Any]], bool] | None = None,
    ) -> None:
        # Trio's argument errors, which name Matcher where pytest names RaisesExc.
        if allow_unwrapped and other_exceptions:
            raise ValueError(
                "You cannot specify multiple exceptions with `allow_unwrapped=True.`"
                " If you want to match one of multiple possible exceptions you should"
                " use a `Matcher`."
                " E.g. `Matcher(check=lambda e: isinstance(e, (...)))`",
            )
        # (Expecting a RaisesGroup unwrapped is pytest's error, worded as Trio's.)
        if (
            allow_unwrapped
            and (match is not None or check is not None)
            and not isinstance(exception, RaisesGroup)
        ):
            raise ValueError(
                "`allow_unwrapped=True` bypasses the `match` and `check` parameters"
                " if the exception is unwrapped. If you intended to match/check the"
                " exception you should use a `Matcher` object. If you want to"
                " match/check the exceptiongroup when the exception *is* wrapped you"
                " need to do e.g. `if isinstance(exc.value, ExceptionGroup):"
                " assert RaisesGroup(...).matches(exc.value)` afterwards.",
            )
        for expected in (exception, *other_exceptions):
            if not isinstance(expected, pytest.RaisesGroup | pytest.RaisesExc) and not (
                isinstance(expected, type) and issubclass(expected, BaseException)
            ):
                raise ValueError(
                    f'Invalid argument "{expected!r}" must be exception type, Matcher, or'
                    " RaisesGroup.",
                )
        # pytest's overloads spell out the typing; ours (Trio's) is looser.
        super().__init__(  # type: ignore[call-overload]
            exception,
            *other_exceptions,
            allow_unwrapped=allow_unwrapped,
            flatten_subgroups=flatten_subgroups,
            match=_compile(match),
            check=check,
        )

    def __repr__(self) -> str:
        parameters = [
            e.__name__ if isinstance(e, type) else repr(e) for e in self.expected_exceptions
        ]
        if self.allow_unwrapped:
            parameters.append("allow_unwrapped=True")
        if self.flatten_subgroups:
            parameters.append("flatten_subgroups=True")
        if self.match is not None:
            parameters.append(f"match={_pattern_repr(self.match)}")
        if self.check is not None:
            parameters.append(f"check={_repr_callable(self.check)}")
        return f"RaisesGroup({', '.join(parameters)})"

    @property
    def is_baseexceptiongroup(self) -> bool:
        """Whether a ``BaseExceptionGroup`` is expected (some expected exception isn't an
        ``Exception``). Trio's name for pytest's ``is_baseexception``."""
        return bool(self.is_baseexception)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: types.TracebackType | None,
    ) -> bool:
        __tracebackhide__ = True
        if exc_type is None:
            raise AssertionError(f"DID NOT RAISE any exception, expected {self.expected_type()}")
        group = (
            "(group)"
            if self.allow_unwrapped and not issubclass(exc_type, BaseExceptionGroup)
            else "group"
        )
        if not self.matches(exc_val):
            raise AssertionError(f"Raised exception {group} did not match: {self.fail_reason}")
        assert exc_val is not None and exc_tb is not None
        self.excinfo.fill_unfilled((exc_type, exc_val, exc_tb))  # type: ignore[arg-type]
        return True
