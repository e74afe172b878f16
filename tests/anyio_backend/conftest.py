"""Tests of the anyio backend: async tests here run through anyio's own pytest plugin.

The project's pytest config disables anyio's plugin (``-p no:anyio``) so it can't claim
the rest of the suite; this directory registers it under another name, and every test
module marks its tests ``anyio``, which nursery_io's plugin leaves alone. The
``anyio_backend`` fixture selects our backend.
"""

from __future__ import annotations

import anyio.pytest_plugin
import pytest

_PLUGIN_NAME = "anyio-for-nursery_io-backend-tests"


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin(_PLUGIN_NAME):
        config.pluginmanager.register(anyio.pytest_plugin, _PLUGIN_NAME)


# Module scope, like anyio's own default: module-scoped async fixtures depend on it.
@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "nursery_io"
