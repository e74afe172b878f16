"""The network stack: sockets, socket streams and listeners, TLS, DTLS and fd streams.

Layered bottom-up: ``_socket`` (async sockets over epoll readiness) < ``_highlevel_socket``
(:class:`SocketStream`, :class:`SocketListener`) < the ``open_*``/``serve_*`` helpers;
``_ssl`` and ``_dtls`` put TLS over any stream and DTLS over a UDP socket. The public names
live in ``nursery_io`` and ``nursery_io.socket``; nothing here is imported by
``import nursery_io`` (each module loads on first use of one of its names).

What belongs here, and what does not:

* ``_unix_pipes`` (:class:`~nursery_io.lowlevel.FdStream`) is a stream over a raw fd driven
  by the same readiness waits and error rules as :class:`SocketStream`, so it lives beside
  it (subprocess pipes use it).
* ``_sendfile`` is the socket side of sending a file: it implements
  :meth:`SocketType.sendfile <nursery_io.socket.SocketType.sendfile>` and
  :func:`~nursery_io.send_file` over socket streams, and only takes open files or fds (it
  does not use the file stack).
* ``_hostname`` (IDNA encoding for lookups and SNI) imports nothing else from nursery_io,
  so ``lowlevel`` can re-export it cheaply.
* ``_highlevel_generic`` (:class:`~nursery_io.StapledStream`,
  :func:`~nursery_io.aclose_forcefully`) stays outside: it is about streams in general and
  is used by subprocesses and the testing helpers as much as by TLS.

This package's ``__init__`` imports nothing, so importing one module here loads only that
module and what it needs.
"""
