"""The network stack: sockets, socket streams and listeners, TLS, DTLS and fd streams.

Bottom-up:

* ``_nonblocking``: the try-the-syscall-then-wait-for-readiness loop every socket and fd
  operation runs, and the translation of OS errors into stream errors;
* ``_socket``: async sockets (:mod:`nursery_io.socket`, a thin public module, re-exports
  them, and the stdlib's constants from ``_socket_reexports``);
* ``_highlevel_socket``: :class:`~nursery_io.SocketStream` and
  :class:`~nursery_io.SocketListener`; the ``_highlevel_open_*`` and
  ``_highlevel_serve_listeners`` helpers build on them, ``_highlevel_ssl_helpers`` adds TLS;
* ``_ssl`` (:class:`~nursery_io.SSLStream`) and ``_ssl_listener``: TLS over any stream;
* ``_dtls`` (endpoints, channels, handshake timing) over ``_dtls_records`` (the bytes on the
  wire): DTLS over a UDP socket.

Nothing here is imported by ``import nursery_io``: each module loads on the first use of one
of its names, and this ``__init__`` imports nothing, so loading one module here loads only
what that module needs.

What belongs here, and what does not:

* ``_unix_pipes`` (:class:`~nursery_io.lowlevel.FdStream`) is a stream over a raw fd driven
  by the same readiness loop and error rules as :class:`~nursery_io.SocketStream`, so it
  lives beside it (subprocess pipes use it).
* ``_sendfile`` is the socket side of sending a file: it implements
  :meth:`SocketType.sendfile <nursery_io.socket.SocketType.sendfile>` and
  :func:`~nursery_io.send_file`, reaching into :class:`~nursery_io.SocketStream`'s state; it
  takes open files or fds and does not use the file stack.
* ``_hostname`` (IDNA encoding for lookups and SNI) imports nothing else from nursery_io, so
  ``lowlevel`` can re-export it cheaply.
* ``_highlevel_generic`` (:class:`~nursery_io.StapledStream`,
  :func:`~nursery_io.aclose_forcefully`) stays outside: it is about streams in general, and
  subprocesses and the testing helpers use it as much as TLS does.
"""
