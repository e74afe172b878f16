"""Instrument hooks: zero cost when no instrument is installed."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._abc_clock import Instrument

__all__ = ["HOOK_NAMES", "Instruments"]

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


class Instruments(dict[str, dict["Instrument", None]]):
    """Maps hook name → instruments that define it (insertion-ordered).

    The runner tests ``"hook" in instruments`` before calling, so an empty mapping costs a
    single dict lookup per hook site and nothing else.
    """

    __slots__ = ()

    def __init__(self, incoming: Any) -> None:
        super().__init__()
        for instrument in incoming:
            self.add_instrument(instrument)

    def add_instrument(self, instrument: Instrument) -> None:
        if any(instrument in hooks for hooks in self.values()):
            return
        installed = False
        for name in HOOK_NAMES:
            # Only hooks the instrument overrides: calling the base class's no-ops would
            # put every instrumented run on the slow path for nothing.
            if _overrides(instrument, name):
                self.setdefault(name, {})[instrument] = None
                installed = True
        if not installed:
            # Remember it anyway so remove_instrument() works symmetrically.
            self.setdefault("", {})[instrument] = None

    def remove_instrument(self, instrument: Instrument) -> None:
        found = False
        for name in list(self):
            hooks = self[name]
            if instrument in hooks:
                found = True
                del hooks[instrument]
                if not hooks:
                    del self[name]
        if not found:
            raise KeyError(f"instrument {instrument!r} is not installed")

    def call(self, hookname: str, *args: Any) -> None:
        for instrument in list(self[hookname]):
            try:
                getattr(instrument, hookname)(*args)
            except BaseException:
                self.remove_instrument(instrument)
                logger.exception(
                    "Exception raised when calling %r on instrument %r. "
                    "Instrument has been disabled.",
                    hookname,
                    instrument,
                )


def _overrides(instrument: object, name: str) -> bool:
    method = getattr(type(instrument), name, None)
    if method is None:
        return name in getattr(instrument, "__dict__", {})
    from .._abc_clock import Instrument as Base

    return method is not getattr(Base, name, None)
