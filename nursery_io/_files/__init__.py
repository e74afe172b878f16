"""Async files (the stack behind ``open_file``, ``wrap_file`` and ``Path``)."""
