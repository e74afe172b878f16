"""Instrument hooks: zero cost when no instrument is installed."""

from __future__ import annotations

import logging
import types
from typing import TYPE_CHECKING, Any

from ._context import current_runner

if TYPE_CHECKING:
    from ._abc_clock import Instrument

__all__ = ["HOOK_NAMES", "Instruments", "add_instrument", "remove_instrument"]

HOOK_NAMES = (
    "before_run",
    "after_run",
    "task_spawned",
    "task_scheduled",
    "before_task_step",
    "after_task_step",
    "task_exited",
    "before_io_wait",
    "after_io_wait",
)

logger = logging.getLogger("nursery_io.instruments")


# Under this key every installed instrument is listed, hooks or not.
_ALL = ""


class Instruments(dict[str, dict["Instrument", None]]):
    """Maps hook name → instruments that define it (insertion-ordered).

    The runner tests ``"hook" in instruments`` before calling, so an empty mapping costs a
    single dict lookup per hook site and nothing else. Which hooks an instrument has is
    decided when it is added (as in Trio): giving an installed instrument a new hook takes
    effect once it is removed and added again, while replacing a hook it already had takes
    effect at once, since hooks are looked up on every call.
    """

    __slots__ = ()

    def __init__(self, incoming: Any) -> None:
        super().__init__()
        for instrument in incoming:
            self.add_instrument(instrument)

    def add_instrument(self, instrument: Instrument) -> None:
        everyone = self.setdefault(_ALL, {})
        if instrument in everyone:
            return
        everyone[instrument] = None
        try:
            present = set(dir(instrument))
            for name in HOOK_NAMES:
                # Only hooks the instrument overrides: calling the base class's no-ops would
                # put every instrumented run on the slow path for nothing. Reading the
                # attribute may run the instrument's code, which may raise: then the
                # instrument isn't installed at all, and the error propagates.
                if name in present and _overrides(getattr(instrument, name), name):
                    self.setdefault(name, {})[instrument] = None
        except BaseException:
            self.remove_instrument(instrument)
            raise

    def remove_instrument(self, instrument: Instrument) -> None:
        everyone = self.get(_ALL)
        if everyone is None or instrument not in everyone:
            raise KeyError(instrument)
        for name, hooks in list(self.items()):
            if instrument in hooks:
                del hooks[instrument]
                if not hooks:
                    del self[name]

    def call(self, hookname: str, *args: Any) -> None:
        for instrument in list(self[hookname]):
            try:
                getattr(instrument, hookname)(*args)
            except BaseException:
                # (It may have removed itself before raising.)
                if instrument in self.get(_ALL, ()):
                    self.remove_instrument(instrument)
                logger.exception(
                    "Exception raised when calling %r on instrument %r. "
                    "Instrument has been disabled.",
                    hookname,
                    instrument,
                )


def add_instrument(instrument: Instrument) -> None:
    """Start calling ``instrument``'s hooks in the current run (no-op if already added)."""
    current_runner().instruments.add_instrument(instrument)


def remove_instrument(instrument: Instrument) -> None:
    """Stop calling ``instrument``'s hooks; ``KeyError`` if it isn't installed."""
    current_runner().instruments.remove_instrument(instrument)


def _overrides(impl: object, name: str) -> bool:
    from ._abc_clock import Instrument as Base

    # A bound method of the base class's no-op is the only thing that doesn't count.
    return not (isinstance(impl, types.MethodType) and impl.__func__ is getattr(Base, name, None))
