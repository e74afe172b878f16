"""Suite-wide setup."""

from __future__ import annotations

import signal


def pytest_configure() -> None:
    # A shell without job control starts background jobs with SIGINT ignored, and Python
    # then leaves it ignored: no KeyboardInterrupt at all, in this process or in the child
    # processes the Ctrl-C tests start. Those tests are about our handling of SIGINT, so
    # restore Python's usual handler (inherited by children as "not ignored").
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# A pytest-trio suite kept as data: tests/test_pytest_trio_suite.py runs it in subprocesses.
collect_ignore = ["pytest_trio_suite"]
