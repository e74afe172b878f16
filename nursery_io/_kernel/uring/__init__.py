"""io_uring for nursery_io: ``abi`` (constants and layouts) and ``ring`` (the ``Ring`` class).

Pure Python (ctypes ``syscall`` + ``mmap``); see ``ring.py`` for the design notes.
"""

from __future__ import annotations

from . import abi
from .ring import Ring, UnsupportedPlatformError, validated_architecture

__all__ = ["Ring", "UnsupportedPlatformError", "abi", "validated_architecture"]
