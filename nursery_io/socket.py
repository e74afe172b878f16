"""Async sockets with the standard library's interface: ``import nursery_io.socket``.

This namespace mirrors :mod:`socket`: the constructors (:func:`socket`, :func:`socketpair`,
:func:`fromfd`, :func:`from_stdlib_socket`) return :class:`SocketType` objects whose waiting
operations are async; :func:`getaddrinfo`/:func:`getnameinfo` don't block the run; every
uppercase constant of the stdlib module is re-exported, along with ``gaierror``, ``herror``
and the small pure helpers (``inet_pton``, ``htons``, ...).
"""

# The ``from x import name as name`` form marks explicit re-exports for type checkers.
# ruff: noqa: PLC0414

from ._net._socket import SocketType as SocketType
from ._net._socket import from_stdlib_socket as from_stdlib_socket
from ._net._socket import fromfd as fromfd
from ._net._socket import getaddrinfo as getaddrinfo
from ._net._socket import getnameinfo as getnameinfo
from ._net._socket import getprotobyname as getprotobyname
from ._net._socket import set_custom_hostname_resolver as set_custom_hostname_resolver
from ._net._socket import set_custom_socket_factory as set_custom_socket_factory
from ._net._socket import socket as socket
from ._net._socket import socketpair as socketpair

# The stdlib's constants, exceptions and pure helpers, unchanged (a star import re-exports
# every public name of that module, for type checkers too).
from ._net._socket_reexports import *  # noqa: F403
