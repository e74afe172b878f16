"""Opening files: :func:`open_file` (checks the arguments as ``open()`` does, opens with an
``openat`` op and stacks the layers) and :func:`wrap_file` (:class:`AsyncIOWrapper`, foreign
file objects in worker threads). The design of the file objects (positions, cancellation,
turn-taking) is described in the ``nursery_io._files`` package docstring."""

from __future__ import annotations

import codecs
import errno
import io
import locale
import operator
import os
import stat as _stat
import sys
import warnings
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, overload

from .._core import CancelScope, checkpoint_if_cancelled
from .._core import checkpoint as _checkpoint
from .._core._ops import run_op as _run_op
from .._kernel import ops as _ops
from ..abc import AsyncResource
from ._file_buffered import AsyncBufferedFile
from ._file_raw import AsyncFileIO

if TYPE_CHECKING:
    from _typeshed import OpenBinaryMode, OpenTextMode, StrOrBytesPath

    from ._file_text import AsyncTextFile


# Hidden from type checkers: a visible module __getattr__ would make them accept any
# attribute name, typos included.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        # Text files and FIFOs are loaded when first opened: a program reading bytes never
        # compiles or imports them.
        if name == "AsyncTextFile":
            from ._file_text import AsyncTextFile

            return AsyncTextFile
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AsyncBufferedFile",
    "AsyncFileIO",
    "AsyncIOWrapper",
    "AsyncTextFile",
    "open_file",
    "wrap_file",
]

_T = TypeVar("_T")
_FileT = TypeVar("_FileT")

_NEWLINES: Final = (None, "", "\n", "\r", "\r\n")


# --------------------------------------------------------------------------------------------
# open_file
# --------------------------------------------------------------------------------------------


class _ModeSpec:
    __slots__ = ("append", "binary", "created", "flags", "readable", "writable")

    def __init__(self, mode: str) -> None:
        chars = set(mode)
        if len(chars) != len(mode) or not chars <= set("axrwb+t"):
            raise ValueError(f"invalid mode: {mode!r}")
        created = "x" in chars
        reading = "r" in chars
        writing = "w" in chars
        appending = "a" in chars
        updating = "+" in chars
        text = "t" in chars
        self.binary = "b" in chars
        if text and self.binary:
            raise ValueError("can't have text and binary mode at once")
        if created + reading + writing + appending > 1:
            raise ValueError("must have exactly one of create/read/write/append mode")
        if not (created or reading or writing or appending):
            raise ValueError(
                "Must have exactly one of create/read/write/append mode and at most one plus"
            )
        self.created = created
        self.append = appending
        self.readable = reading or updating
        self.writable = created or writing or appending or updating
        if created:
            flags = os.O_EXCL | os.O_CREAT
        elif writing:
            flags = os.O_CREAT | os.O_TRUNC
        elif appending:
            flags = os.O_APPEND | os.O_CREAT
        else:
            flags = 0
        if self.readable and self.writable:
            flags |= os.O_RDWR
        elif self.readable:
            flags |= os.O_RDONLY
        else:
            flags |= os.O_WRONLY
        self.flags = flags | os.O_CLOEXEC


def _check_str_arg(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"open() argument '{name}' must be str or None, not {type(value).__name__}")


def _text_encoding(encoding: str | None) -> str:
    if encoding is None:
        # Same default and EncodingWarning (under -X warn_default_encoding) as open().
        encoding = io.text_encoding(None, 4)
    if encoding == "locale":
        encoding = "utf-8" if sys.flags.utf8_mode else locale.getencoding()
    if not codecs.lookup(encoding)._is_text_encoding:
        raise LookupError(
            f"{encoding!r} is not a text encoding; use codecs.open() to handle arbitrary codecs"
        )
    return encoding


@overload
async def open_file(
    file: StrOrBytesPath | int,
    mode: OpenTextMode = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Callable[[str, int], int] | None = None,
) -> AsyncTextFile: ...


@overload
async def open_file(
    file: StrOrBytesPath | int,
    mode: OpenBinaryMode,
    buffering: int = -1,
    encoding: None = None,
    errors: None = None,
    newline: None = None,
    closefd: bool = True,
    opener: Callable[[str, int], int] | None = None,
) -> AsyncBufferedFile | AsyncFileIO: ...


@overload
async def open_file(
    file: StrOrBytesPath | int,
    mode: str,
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Callable[[str, int], int] | None = None,
) -> Any: ...


async def open_file(
    file: Any,
    mode: str = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Callable[[Any, int], int] | None = None,
) -> Any:
    """Open a file for async I/O; the arguments and their meaning are those of :func:`open`.

    Returns an :class:`AsyncTextFile` for text modes, an :class:`AsyncBufferedFile` for
    binary modes, and an :class:`AsyncFileIO` for ``buffering=0``. The same misuse raises
    the same exceptions as :func:`open` (checked before anything touches the disk).

    The open, the reads and writes run on the run's file engine (io_uring where available,
    otherwise worker threads): see the docstring of the ``nursery_io._files`` package. An
    integer ``file`` is an fd to wrap (closed on ``aclose`` unless ``closefd=False``);
    ``opener(path, flags)`` is called in a worker thread.

    Use it as ``async with await open_file(path) as f: ...``.
    """
    if not isinstance(mode, str):
        raise TypeError(f"open() argument 'mode' must be str, not {type(mode).__name__}")
    _check_str_arg("encoding", encoding)
    _check_str_arg("errors", errors)
    _check_str_arg("newline", newline)
    buffering = operator.index(buffering)
    spec = _ModeSpec(mode)
    if spec.binary:
        if encoding is not None:
            raise ValueError("binary mode doesn't take an encoding argument")
        if errors is not None:
            raise ValueError("binary mode doesn't take an errors argument")
        if newline is not None:
            raise ValueError("binary mode doesn't take a newline argument")
        if buffering == 1:
            warnings.warn(
                "line buffering (buffering=1) isn't supported in binary mode, "
                "the default buffer size will be used",
                RuntimeWarning,
                stacklevel=2,
            )
    else:
        if buffering == 0:
            raise ValueError("can't have unbuffered text I/O")
        if newline not in _NEWLINES:
            raise ValueError(f"illegal newline value: {newline}")
        encoding = _text_encoding(encoding)
        errors = "strict" if errors is None else errors

    name: str | bytes | int
    # An openat op opens non-blocking first, on every engine (nursery_io/_kernel/kinds.py,
    # "FIFOs"); below, a FIFO opened that way gets open()'s waiting back.
    nonblocking_first = False
    if isinstance(file, int):
        if file < 0:
            raise ValueError("negative file descriptor")
        await _checkpoint()  # nothing below yields for an fd
        fd = file
        name = file
        own_fd = closefd
    else:
        path: str | bytes = os.fspath(file)
        name = path
        if not closefd:
            raise ValueError("Cannot use closefd=False with file name")
        if opener is None:
            open_op = _ops.openat(path, spec.flags, 0o666)
            try:
                fd = await _run_op(open_op)
                nonblocking_first = True
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                # A non-blocking write-only open of a FIFO with no reader fails with ENXIO
                # where open() would wait for a reader. Wait in a thread, as open() would.
                from ._fifo import open_fifo_end

                fd = await open_fifo_end(path, spec.flags)
        else:
            op = _ops.pool_only(opener, path, spec.flags, name="opener")
            op.on_abandoned = _ops.close_result_fd  # the run ended while the opener ran
            fd = await _run_op(op)
            if not isinstance(fd, int):
                raise TypeError(f"expected integer from opener, got {type(fd).__name__}")
            if fd < 0:
                raise ValueError(f"opener returned {fd}")
        own_fd = True
    try:
        # Inline, not a STATX op: the fd pins the inode, so fstat only copies in-memory
        # attributes, while io_uring always punts STATX to a kernel worker thread (~90 us
        # and an extra thread per open, measured).
        st = os.fstat(fd)
        if (
            nonblocking_first
            and _stat.S_ISFIFO(st.st_mode)
            and not (spec.readable and spec.writable)
        ):
            # A non-blocking read-only open of a FIFO returns at once, so a read would see
            # end-of-file before any writer arrived; open() waits for a writer. Wait in a
            # thread, keeping this first fd open meanwhile so that a writer connecting now
            # has a reader and its data stays in the pipe (see _fifo).
            from ._fifo import open_fifo_end

            first = fd
            fd = -1  # nothing for the handler below to close if this fails
            try:
                fd = await open_fifo_end(path, spec.flags, held=first)
            finally:
                os.close(first)
            st = os.fstat(fd)
        if _stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), name)
        regular = _stat.S_ISREG(st.st_mode)
        if spec.append:
            # The kernel keeps the position of appending files; start it at the end.
            pos: int | None = os.lseek(fd, 0, os.SEEK_END)
        elif not regular:
            pos = None
        elif isinstance(file, int) or opener is not None:
            pos = os.lseek(fd, 0, os.SEEK_CUR)  # not opened by us: it may not be at 0
        else:
            pos = 0
        raw = AsyncFileIO(
            fd,
            name,
            readable=spec.readable,
            writable=spec.writable,
            append=spec.append,
            created=spec.created,
            closefd=closefd,
            st=st,
            pos=pos,
        )
    except BaseException:
        if own_fd and fd >= 0:
            os.close(fd)
        raise
    try:
        line_buffering = False
        if buffering == 1 or (buffering < 0 and not regular and os.isatty(fd)):
            line_buffering = True
            buffering = -1
        if buffering < 0:
            buffering = raw._blksize
        if buffering == 0:
            return raw
        buffered = AsyncBufferedFile(raw, buffering)
        if spec.binary:
            return buffered
        assert encoding is not None and errors is not None
        from ._file_text import AsyncTextFile

        return AsyncTextFile(buffered, encoding, errors, newline, line_buffering, mode)
    except BaseException:
        raw._fd = -1
        if own_fd:
            os.close(fd)
        raise


# --------------------------------------------------------------------------------------------
# wrap_file: foreign file objects, in threads
# --------------------------------------------------------------------------------------------

_FILE_SYNC_ATTRS: Final = frozenset(
    {
        "closed",
        "encoding",
        "errors",
        "fileno",
        "isatty",
        "newlines",
        "readable",
        "seekable",
        "writable",
        "buffer",
        "raw",
        "line_buffering",
        "closefd",
        "name",
        "mode",
        "getvalue",
        "getbuffer",
    }
)
_FILE_ASYNC_METHODS: Final = frozenset(
    {
        "flush",
        "read",
        "read1",
        "readall",
        "readinto",
        "readinto1",
        "readline",
        "readlines",
        "seek",
        "tell",
        "truncate",
        "write",
        "writelines",
        "peek",
    }
)


async def _in_thread(fn: Callable[[], _T]) -> _T:
    return await _run_op(_ops.pool_only(fn))  # type: ignore[no-any-return]


class AsyncIOWrapper(AsyncResource, Generic[_FileT]):
    """An async view of a file object we did not open (see :func:`wrap_file`).

    Its sync attributes (``name``, ``closed``, ``fileno()``, ...) are the wrapped object's;
    its I/O methods (``read``, ``write``, ``seek``, ...) are async and run the wrapped
    object's method in a worker thread, since only that object knows what its buffers hold.
    """

    def __init__(self, file: _FileT) -> None:
        self._wrapped = file

    @property
    def wrapped(self) -> _FileT:
        """The file object being wrapped."""
        return self._wrapped

    def __getattr__(self, name: str) -> Any:
        if name in _FILE_SYNC_ATTRS:
            return getattr(self._wrapped, name)
        if name in _FILE_ASYNC_METHODS:
            method = getattr(self._wrapped, name)

            async def in_thread(*args: Any, **kwargs: Any) -> Any:
                return await _in_thread(partial(method, *args, **kwargs))

            # Named after the method even when the wrapped object's methods carry no
            # metadata (mocks, C types), as Trio's are.
            wrapped_class = self._wrapped.__class__  # (a spec'd mock answers its spec here)
            in_thread.__name__ = name
            in_thread.__qualname__ = f"{type(self).__qualname__}.{name}"
            in_thread.__doc__ = (
                f"Like :meth:`~{wrapped_class.__module__}.{wrapped_class.__qualname__}.{name}`,"
                " but async (it runs in a worker thread)."
            )

            # Cache it: the next lookup finds it on the instance.
            setattr(self, name, in_thread)
            return in_thread
        raise AttributeError(name)

    def __dir__(self) -> Iterable[str]:
        attrs = set(super().__dir__())
        attrs.update(a for a in _FILE_SYNC_ATTRS if hasattr(self._wrapped, a))
        attrs.update(a for a in _FILE_ASYNC_METHODS if hasattr(self._wrapped, a))
        return attrs

    def __aiter__(self) -> AsyncIOWrapper[_FileT]:
        return self

    async def __anext__(self) -> Any:
        line = await self.readline()
        if line:
            return line
        raise StopAsyncIteration

    async def detach(self) -> AsyncIOWrapper[object]:
        """Detach the underlying buffer (``io`` semantics) and return it wrapped."""
        raw = await _in_thread(self._wrapped.detach)  # type: ignore[attr-defined]
        return wrap_file(raw)

    async def aclose(self) -> None:
        """Close the wrapped file in a thread; shielded, so the file is closed even if
        the call is cancelled (``Cancelled`` is raised afterwards)."""
        with CancelScope(shield=True):
            await _in_thread(self._wrapped.close)  # type: ignore[attr-defined]
        await checkpoint_if_cancelled()

    def __repr__(self) -> str:
        return f"<nursery_io.AsyncIOWrapper of {self._wrapped!r}>"


def wrap_file(file: _FileT) -> AsyncIOWrapper[_FileT]:
    """Wrap a file object (anything with ``close`` and ``read`` or ``write``) so its
    methods can be awaited; they run in worker threads. For files you open yourself,
    :func:`open_file` is much faster."""

    def has(attr: str) -> bool:
        return hasattr(file, attr) and callable(getattr(file, attr))

    if not (has("close") and (has("read") or has("write"))):
        raise TypeError(
            f"{file} does not implement required duck-file methods: close and (read or write)"
        )
    return AsyncIOWrapper(file)
