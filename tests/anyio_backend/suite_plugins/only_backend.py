"""``-p only_backend``: keep only the items of one anyio backend.

ANYIO_ONLY_BACKEND=<name> selects the items whose ``anyio_backend`` parameter names that
backend (a string, or the first element of a (name, options) tuple).
ANYIO_KEEP_UNPARAMETRIZED=1 also keeps the items that have no such parameter (synchronous
and meta tests, e.g. test_pytest_plugin.py, which drives our TestRunner via pytester).
"""

from __future__ import annotations

import os

import pytest


def _backend_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None or "anyio_backend" not in callspec.params:
        return None
    param = callspec.params["anyio_backend"]
    return param if isinstance(param, str) else param[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    only = os.environ.get("ANYIO_ONLY_BACKEND")
    if not only:
        return
    keep_plain = os.environ.get("ANYIO_KEEP_UNPARAMETRIZED") == "1"
    selected: list[pytest.Item] = []
    deselected: list[pytest.Item] = []
    for item in items:
        backend = _backend_of(item)
        keep = keep_plain if backend is None else backend == only
        (selected if keep else deselected).append(item)
    items[:] = selected
    if deselected:
        config.hook.pytest_deselected(items=deselected)
