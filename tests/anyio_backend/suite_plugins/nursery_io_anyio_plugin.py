"""Loaded through PYTEST_PLUGINS by run_anyio_suite.sh: adds "nursery_io" to anyio's
backend list so every backend-parametrized test of anyio's suite gets a nursery_io
variant, without editing the suite.

PYTEST_PLUGINS (unlike -p) also reaches the pytest subprocesses that anyio's
test_pytest_plugin.py starts, so their expected counts include our backend too.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio._core._eventloop as eventloop
import pytest

import nursery_io  # noqa: F401  (installs the finder for anyio._backends._nursery_io)

if "nursery_io" not in eventloop.BACKENDS:
    eventloop.BACKENDS = (*eventloop.BACKENDS, "nursery_io")


# anyio's plugin froze its default list of backends when it was imported, before we
# registered ours; redeclare the fixture with the current list.
@pytest.fixture(scope="module", params=anyio.get_available_backends())
def anyio_backend(request: Any) -> Any:
    return request.param
