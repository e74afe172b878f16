"""Abstract interfaces: clocks, instruments (and, as they land, streams and channels)."""

from ._abc_clock import Clock, Instrument

__all__ = ["Clock", "Instrument"]
