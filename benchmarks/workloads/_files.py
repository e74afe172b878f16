"""Helpers shared by the file workloads (data files, batching, checks)."""

from __future__ import annotations

import os
from pathlib import Path

MIB = 1 << 20


def make_file(path: Path, size: int) -> None:
    """Write ``size`` bytes of random data, then read it once so it sits in the page cache."""
    with path.open("wb") as f:
        for done in range(0, size, MIB):
            f.write(os.urandom(min(MIB, size - done)))
    with path.open("rb") as f:
        while f.read(MIB):
            pass


def small_file_names(directory: Path, count: int) -> list[str]:
    return [str(directory / f"f{i:05d}") for i in range(count)]


def make_small_files(directory: Path, count: int, size: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    payload = b"x" * size
    for name in small_file_names(directory, count):
        with open(name, "wb") as f:
            f.write(payload)


def batches(names: list[str], concurrency: int) -> list[list[str]]:
    """Split the work among ``concurrency`` tasks: bounded concurrency without a semaphore."""
    return [names[k::concurrency] for k in range(min(concurrency, len(names)))]


def check(data: bytes, expected: int) -> None:
    if len(data) != expected:
        raise RuntimeError(f"read {len(data)} bytes, expected {expected}")
