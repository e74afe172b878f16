"""The scheduler's source of randomness, at the place Trio's tooling expects it.

Like Trio, nursery_io runs each batch of runnable tasks in a random direction (see
``Runner.run_batch``), so that programs can't come to depend on an order nobody promised.
The random bits come from :data:`_r`, and tools that need reproducible runs reach in here
exactly as they reach into ``trio._core._run`` on Trio:

* ``_r`` is the :class:`random.Random` instance the scheduler draws from. Seed it
  (``_r.seed(1234)``) or hand it to ``hypothesis.register_random``.
* ``_ALLOW_DETERMINISTIC_SCHEDULING = True`` makes the order a function of ``_r``'s state
  alone: each batch is put in spawn order and then shuffled with ``_r``. Without it, the
  bits from ``_r`` decide only the direction of each batch, and which tasks share a batch
  can still vary between runs (a set of waiters wakes in hash order).

Both names are private but stable: they keep these names and meanings.
"""

from __future__ import annotations

import random

__all__ = ["_ALLOW_DETERMINISTIC_SCHEDULING", "_hypothesis_plugin_setup", "_r"]

_ALLOW_DETERMINISTIC_SCHEDULING = False
_r = random.Random()


def _hypothesis_plugin_setup() -> None:  # pragma: no cover - run by Hypothesis's entry point
    """Make scheduling reproducible under Hypothesis, which seeds registered randoms per
    example (registered as a ``hypothesis`` entry point, as Trio does)."""
    from hypothesis import register_random

    global _ALLOW_DETERMINISTIC_SCHEDULING
    _ALLOW_DETERMINISTIC_SCHEDULING = True
    register_random(_r)
