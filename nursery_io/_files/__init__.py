"""Async files: the stack behind :func:`~nursery_io.open_file`, :func:`~nursery_io.wrap_file`
and :class:`~nursery_io.Path`. Nothing here is public: the package root exports those three
(loaded on first use), and the file classes are reached through them.

``open_file`` does not wrap a stdlib file object in threads (Trio's way). It opens the file
with an ``openat`` op and then does every read and write as a separate op on the run's file
engine: io_uring when it is available, the worker pool otherwise (``lowlevel.run_op``). What
the stdlib ``io`` classes do in C -- buffering, line splitting, incremental decoding and
encoding, universal newlines, tell/seek cookies -- is done here, in the loop thread, on
bytes that the ring delivered. Only ``opener=`` callbacks and ``SEEK_DATA``/``SEEK_HOLE``
still need a thread.

Positions. For regular files the position lives here, not in the kernel: every read and
write carries an explicit offset, so a cancelled or concurrent op can never move the file
position behind our back, and ``seek``/``tell`` cost no syscall. Two kinds of file use the
kernel's position instead (offset -1, and ``os.lseek`` for seek/tell, which never blocks):
files opened for appending (the kernel appends whatever offset is given, and moves its own
position to the new end, which is what ``tell()`` must report) and anything that is not a
regular file (pipes, ttys, devices).

Cancellation. Each op is all-or-nothing: a cancelled op either did not happen (the caller
gets ``Cancelled`` and nothing changed) or happened (the caller gets its result). Methods
that need several ops keep what they already read in the file's buffer before letting
``Cancelled`` through, so no data is lost and the position stays right. Writes are
cancellable until their data is accepted; a write that has to go to the disk to make room
then finishes shielded, as a thread would (Trio's ``abandon_on_cancel=False``).

Concurrency. Tasks that share one file object take turns (first come, first served) for
everything that uses the file position or the buffers. ``pread``/``pwrite`` don't use
either and run concurrently.

The modules, each importing (at run time) only modules listed before it:

- ``_file_base``: :class:`AsyncFileBase`, what every file object has (the sync attributes,
  ``aclose``, ``pread``/``pwrite``, ``fsync``); :class:`BinaryFileBase`, what the two
  binary layers share; the turn-taking decorator :func:`exclusive` and argument checks.
- ``_file_raw``: :class:`AsyncFileIO` (``io.FileIO``, ``buffering=0``), one op per call. It
  holds the state every layer above it shares: the fd, the position, whose turn it is.
- ``_file_buffered``: :class:`AsyncBufferedFile` (``io.BufferedReader``/``BufferedWriter``/
  ``BufferedRandom``), a read-ahead and a write-behind buffer over an ``AsyncFileIO``.
- ``_file_text``: :class:`AsyncTextFile` (``io.TextIOWrapper``), decoding, encoding and
  newlines over an ``AsyncBufferedFile``; imported at the first text-mode open.
- ``_fifo``: opening one end of a FIFO as a blocking ``open()`` would, but cancellably;
  imported only when ``open_file`` meets a FIFO.
- ``_file_io``: :func:`open_file`, which stacks raw -> buffered -> text as ``open()`` does,
  and :func:`wrap_file` for file objects opened elsewhere (their methods run in threads).
- ``_path``: :class:`Path`, ``pathlib.Path`` with its I/O as single ops, and ``open_file``
  for the contents.
"""
