"""Stand-ins for the two private names of ``trio._core._run`` that tools reach for.

pytest-trio (at import) and trio's Hypothesis entry point (``trio._core._run:
_hypothesis_plugin_setup``, run whenever Hypothesis is imported in an environment where
trio is installed) touch ``_r`` and ``_ALLOW_DETERMINISTIC_SCHEDULING``. In trio mode
``trio._core._run`` is this module, so those imports must keep working. nursery_io's
scheduler does not draw from ``_r``: it is FIFO, hence already deterministic.
"""

from __future__ import annotations

import random

__all__: list[str] = []

# Registered with Hypothesis so that it seeds and restores it like any managed Random.
_r = random.Random()
# Set by the Hypothesis hook below, as trio does; nothing here needs to read it.
_ALLOW_DETERMINISTIC_SCHEDULING = False


def _hypothesis_plugin_setup() -> None:
    """What Hypothesis calls through trio's entry point in trio mode."""
    from hypothesis import register_random

    global _ALLOW_DETERMINISTIC_SCHEDULING
    _ALLOW_DETERMINISTIC_SCHEDULING = True
    register_random(_r)
