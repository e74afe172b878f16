"""RunVar: a variable whose value is local to one run (like a contextvar scoped to ``run``)."""

from __future__ import annotations

from typing import Any, Final, Generic, TypeVar, cast, overload

from ._context import GLOBAL_RUN_CONTEXT
from ._util import final

__all__ = ["RunVar", "RunVarToken"]

T = TypeVar("T")

_OUTSIDE_RUN_MESSAGE: Final = "Cannot be used outside of a run context"


class _NoValue:
    """``RunVarToken.previous_value`` when the var had no value (nor default) before."""


_NO_VALUE: Final[Any] = _NoValue


def _run_locals() -> dict[object, object]:
    try:
        return GLOBAL_RUN_CONTEXT.runner.run_locals
    except AttributeError:
        raise RuntimeError(_OUTSIDE_RUN_MESSAGE) from None


@final
class RunVarToken(Generic[T]):
    """Returned by :meth:`RunVar.set`; pass it to :meth:`RunVar.reset` to undo the set.

    ``previous_value`` is what :meth:`RunVar.get` returned before the set (the var's
    default if it had no value), and ``redeemed`` turns True once the token is used.
    """

    __slots__ = ("__weakref__", "_var", "previous_value", "redeemed")

    def __init__(self, var: RunVar[T], previous_value: Any) -> None:
        self._var = var
        self.previous_value = previous_value
        self.redeemed = False

    @property
    def var(self) -> RunVar[T]:
        return self._var


@final
class RunVar(Generic[T]):
    """Run-local storage: every run sees its own value; tasks in one run share it.

    Use for per-run singletons (a default thread limiter, a cache bound to the loop).
    """

    __slots__ = ("__weakref__", "_default", "_name")

    def __init__(self, name: str, default: T = _NO_VALUE) -> None:
        self._name = name
        self._default = default

    @overload
    def get(self) -> T: ...
    @overload
    def get(self, default: T) -> T: ...

    def get(self, default: T = _NO_VALUE) -> T:
        """The value in the current run; else ``default``; else the var's default."""
        try:
            return cast(T, _run_locals()[self])
        except KeyError:
            if default is not _NO_VALUE:
                return default
            if self._default is not _NO_VALUE:
                return self._default
            raise LookupError(self) from None

    def set(self, value: T) -> RunVarToken[T]:
        """Set the value for the current run; returns a token for :meth:`reset`."""
        locals_ = _run_locals()
        try:
            previous = self.get()
        except LookupError:
            previous = _NO_VALUE
        token = RunVarToken(self, previous)
        locals_[self] = value
        return token

    def reset(self, token: RunVarToken[T]) -> None:
        """Restore the value this var had before the ``set`` that returned ``token``."""
        if token is None:
            raise TypeError("token must not be none")
        if token.redeemed:
            raise ValueError("token has already been used")
        if token._var is not self:
            raise ValueError("token is not for us")
        locals_ = _run_locals()
        if token.previous_value is _NO_VALUE:
            locals_.pop(self, None)
        else:
            locals_[self] = token.previous_value
        token.redeemed = True

    def __repr__(self) -> str:
        return f"<RunVar name={self._name!r}>"
