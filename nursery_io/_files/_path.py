"""``Path``: :class:`pathlib.PurePath` plus async versions of ``pathlib.Path``'s I/O.

Trio's ``trio.Path`` runs every method in a worker thread. Here most of them are one or
two ops on the run's file engine, which io_uring does in the kernel: stat/lstat and the
``is_*``/``exists`` family (STATX), ``mkdir``, ``rmdir``, ``unlink``, ``rename``/``replace``,
``symlink_to``, ``hardlink_to``, ``touch`` (OPENAT) and ``open``/``read_*``/``write_*``
(:func:`~nursery_io.open_file`). What no kernel interface can do asynchronously -- listing
a directory (``iterdir``, ``glob``), ``chmod``, ``resolve``, ``readlink``, ``owner``/``group``,
``expanduser`` -- runs in the worker pool, one hop per call (a whole listing in one hop).

Pure-path operations (``/``, ``parent``, ``with_suffix``, ...) are inherited, stay sync and
return this class.
"""

from __future__ import annotations

import errno
import functools
import inspect
import io
import os
import pathlib
import stat
import sys
import warnings
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Final, Generic, NoReturn, Self, TypeVar

from .._core import checkpoint
from .._core._context import current_library_name
from .._core._ops import run_op as _run_op
from .._core._util import final
from .._kernel import ops as _ops
from ._file_io import open_file

if TYPE_CHECKING:
    from ._file_io import AsyncBufferedFile, AsyncFileIO, AsyncTextFile

__all__ = ["Path", "PosixPath", "WindowsPath"]

# The errors for which pathlib's exists()/is_*() answer False instead of raising.
_NOT_THERE: Final = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP})

_PathT = TypeVar("_PathT", bound="Path")
_T = TypeVar("_T")


async def _in_pool(fn: Callable[..., _T], *args: Any) -> _T:
    return await _run_op(_ops.pool_only(fn, *args))  # type: ignore[no-any-return]


class PathListing(Generic[_PathT]):
    """The result of :meth:`Path.iterdir`, :meth:`Path.glob` and :meth:`Path.rglob`.

    ``await`` it for a list of paths (``for p in await path.iterdir()``, as with Trio), or
    iterate it directly with ``async for p in path.iterdir()``. Either way the whole listing
    is read in one worker-pool hop.
    """

    __slots__ = ("_fetch",)

    def __init__(self, fetch: Callable[[], Awaitable[list[_PathT]]]) -> None:
        self._fetch = fetch

    def __await__(self) -> Generator[Any, None, list[_PathT]]:
        return self._fetch().__await__()

    def __aiter__(self) -> _PathListingIterator[_PathT]:
        return _PathListingIterator(self._fetch)


class _PathListingIterator(Generic[_PathT]):
    __slots__ = ("_fetch", "_items")

    def __init__(self, fetch: Callable[[], Awaitable[list[_PathT]]]) -> None:
        self._fetch = fetch
        self._items: list[_PathT] | None = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> _PathT:
        items = self._items
        if items is None:
            items = await self._fetch()
            items.reverse()
            self._items = items
        if not items:
            raise StopAsyncIteration
        return items.pop()


class Path(pathlib.PurePath):
    """An async :class:`pathlib.Path`: the pure-path API as is, and every method that
    touches the filesystem as an ``async`` method (see the module docstring for which run
    on io_uring and which in the worker pool). ``Path(...)`` returns a :class:`PosixPath`,
    as ``trio.Path`` does."""

    __slots__ = ()

    def __new__(cls, *args: str | os.PathLike[str]) -> Self:
        target = PosixPath if cls is Path else cls
        return super().__new__(target, *args)  # type: ignore[return-value]

    def __repr__(self) -> str:
        # "trio.Path(...)" in trio mode, like the rest of what the library calls itself.
        return f"{current_library_name()}.Path({str(self)!r})"

    def _fs(self) -> str:
        # os.* and the ops get the plain string, so error messages show '/x', not a repr.
        return str(self)

    # --- constructors ---

    @classmethod
    async def cwd(cls) -> Self:
        """The current working directory."""
        await checkpoint()
        return cls(os.getcwd())  # a walk over cached dentries: doesn't block on I/O

    @classmethod
    async def home(cls) -> Self:
        """The user's home directory (may consult the password database: worker pool)."""
        return cls(await _in_pool(os.path.expanduser, "~"))

    # --- stat and friends (io_uring) ---

    async def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        """``os.stat`` of this path."""
        return await _run_op(_ops.stat(self._fs(), follow_symlinks=follow_symlinks))  # type: ignore[no-any-return]

    async def lstat(self) -> os.stat_result:
        """``os.lstat`` of this path (doesn't follow a final symlink)."""
        return await _run_op(_ops.lstat(self._fs()))  # type: ignore[no-any-return]

    async def _mode(self, follow_symlinks: bool = True) -> int | None:
        """st_mode, or None where pathlib's is_*() would answer False."""
        try:
            st = await _run_op(_ops.stat(self._fs(), follow_symlinks=follow_symlinks))
        except OSError as exc:
            if exc.errno in _NOT_THERE:
                return None
            raise
        except ValueError:  # e.g. an embedded NUL: no such path
            return None
        return st.st_mode  # type: ignore[no-any-return]

    # The signature follows this Python's pathlib (follow_symlinks is new in 3.12), as Trio's.
    if sys.version_info >= (3, 12):

        async def exists(self, *, follow_symlinks: bool = True) -> bool:
            """Whether the path exists (with ``follow_symlinks=False``, a dangling symlink
            counts)."""
            return await self._mode(follow_symlinks) is not None

    else:

        async def exists(self) -> bool:
            """Whether the path exists."""
            return await self._mode() is not None

    async def _has_file_type(
        self, file_type: Callable[[int], bool], follow_symlinks: bool = True
    ) -> bool:
        """Whether the path is there and ``file_type(st_mode)`` holds (``stat.S_ISDIR``...)."""
        mode = await self._mode(follow_symlinks)
        return mode is not None and file_type(mode)

    async def is_dir(self) -> bool:
        return await self._has_file_type(stat.S_ISDIR)

    async def is_file(self) -> bool:
        return await self._has_file_type(stat.S_ISREG)

    async def is_symlink(self) -> bool:
        return await self._has_file_type(stat.S_ISLNK, follow_symlinks=False)

    async def is_socket(self) -> bool:
        return await self._has_file_type(stat.S_ISSOCK)

    async def is_fifo(self) -> bool:
        return await self._has_file_type(stat.S_ISFIFO)

    async def is_block_device(self) -> bool:
        return await self._has_file_type(stat.S_ISBLK)

    async def is_char_device(self) -> bool:
        return await self._has_file_type(stat.S_ISCHR)

    async def is_mount(self) -> bool:
        """Whether the path is a mount point (a directory on a different device than its
        parent, or the root)."""
        if not await self.is_dir():
            return False
        try:
            parent = await self.parent.stat()
        except OSError:
            return False
        st = await self.stat()
        if st.st_dev != parent.st_dev:
            return True
        return st.st_ino == parent.st_ino

    async def samefile(self, other_path: str | os.PathLike[str]) -> bool:
        """Whether ``other_path`` is the same file as this one (same device and inode)."""
        st = await self.stat()
        other = other_path if isinstance(other_path, Path) else type(self)(other_path)
        return os.path.samestat(st, await other.stat())

    # --- creating, removing, renaming (io_uring) ---

    async def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        """Create the directory; ``parents=True`` creates missing parents as needed,
        ``exist_ok=True`` accepts an existing directory."""
        try:
            await _run_op(_ops.mkdir(self._fs(), mode))
        except FileNotFoundError:
            if not parents or self.parent == self:
                raise
            await self.parent.mkdir(parents=True, exist_ok=True)
            await self.mkdir(mode, parents=False, exist_ok=exist_ok)
        except OSError:
            # Existing directories are fine with exist_ok, but only directories.
            if not exist_ok or not await self.is_dir():
                raise

    async def rmdir(self) -> None:
        """Remove the (empty) directory."""
        await _run_op(_ops.rmdir(self._fs()))

    async def unlink(self, missing_ok: bool = False) -> None:
        """Remove the file or symlink; ``missing_ok=True`` ignores a missing one."""
        try:
            await _run_op(_ops.unlink(self._fs()))
        except FileNotFoundError:
            if not missing_ok:
                raise

    async def rename(self, target: str | os.PathLike[str]) -> Self:
        """Rename to ``target`` (replacing an existing file on POSIX); returns the new path."""
        await _run_op(_ops.rename(self._fs(), os.fspath(target)))
        return type(self)(target)

    async def replace(self, target: str | os.PathLike[str]) -> Self:
        """Rename to ``target``, replacing whatever is there; returns the new path."""
        await _run_op(_ops.rename(self._fs(), os.fspath(target)))
        return type(self)(target)

    async def symlink_to(
        self, target: str | os.PathLike[str], target_is_directory: bool = False
    ) -> None:
        """Make this path a symlink pointing at ``target``."""
        await _run_op(_ops.symlink(os.fspath(target), self._fs()))

    async def hardlink_to(self, target: str | os.PathLike[str]) -> None:
        """Make this path a hard link to ``target``."""
        await _run_op(_ops.link(os.fspath(target), self._fs()))

    if sys.version_info < (3, 12):

        async def link_to(self, target: str | os.PathLike[str]) -> None:
            """Make ``target`` a hard link to this path (deprecated, as in pathlib: use
            :meth:`hardlink_to`)."""
            warnings.warn(
                "pathlib.Path.link_to() is deprecated and is scheduled for removal in "
                "Python 3.12. Use pathlib.Path.hardlink_to() instead.",
                DeprecationWarning,
                stacklevel=2,
            )
            await _run_op(_ops.link(self._fs(), os.fspath(target)))

    async def touch(self, mode: int = 0o666, exist_ok: bool = True) -> None:
        """Create the file if it doesn't exist; otherwise (``exist_ok``) bump its times."""
        path = self._fs()
        flags = os.O_CREAT | os.O_WRONLY
        try:
            fd = await _run_op(_ops.openat(path, flags | os.O_EXCL, mode))
        except FileExistsError:
            if not exist_ok:
                raise
            # There is no ring op for utime. If it fails (not our file...), open it the
            # way pathlib does and let that answer.
            try:
                await _in_pool(os.utime, path, None)
                return
            except OSError:
                pass
            fd = await _run_op(_ops.openat(path, flags, mode))
        os.close(fd)

    # --- contents ---

    async def open(
        self,
        mode: str = "r",
        buffering: int = -1,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> AsyncTextFile | AsyncBufferedFile | AsyncFileIO:
        """Open the file, as :func:`nursery_io.open_file` does."""
        if "b" not in mode:
            encoding = io.text_encoding(encoding)
        return await open_file(self._fs(), mode, buffering, encoding, errors, newline)  # type: ignore[no-any-return]

    async def read_bytes(self) -> bytes:
        """The whole file as bytes."""
        async with await open_file(self._fs(), "rb") as f:
            return await f.read()

    async def read_text(self, encoding: str | None = None, errors: str | None = None) -> str:
        """The whole file, decoded."""
        encoding = io.text_encoding(encoding)
        async with await open_file(self._fs(), "r", encoding=encoding, errors=errors) as f:
            return await f.read()

    async def write_bytes(self, data: Any) -> int:
        """Replace the file's contents with ``data``; returns the number of bytes."""
        view = memoryview(data)
        async with await open_file(self._fs(), "wb") as f:
            return await f.write(view)

    async def write_text(
        self,
        data: str,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> int:
        """Replace the file's contents with ``data``, encoded; returns ``len(data)``."""
        if not isinstance(data, str):
            raise TypeError(f"data must be str, not {type(data).__name__}")
        encoding = io.text_encoding(encoding)
        async with await open_file(
            self._fs(), "w", encoding=encoding, errors=errors, newline=newline
        ) as f:
            return await f.write(data)

    # --- directory listings (worker pool) ---

    def iterdir(self) -> PathListing[Self]:
        """The directory's entries: ``for p in await path.iterdir()`` or
        ``async for p in path.iterdir()``. The listing is read in one pool hop."""

        async def fetch() -> list[Self]:
            names = await _in_pool(os.listdir, self._fs())
            return [self / name for name in names]

        return PathListing(fetch)

    def glob(self, pattern: str) -> PathListing[Self]:
        """Paths matching ``pattern`` relative to this one (see :meth:`iterdir` for use)."""
        return self._pathlib_listing(pathlib.PosixPath.glob, pattern)

    def rglob(self, pattern: str) -> PathListing[Self]:
        """Like :meth:`glob` with ``**/`` in front of ``pattern``."""
        return self._pathlib_listing(pathlib.PosixPath.rglob, pattern)

    def _pathlib_listing(self, method: Any, pattern: str) -> PathListing[Self]:
        cls = type(self)
        me = pathlib.PosixPath(self)

        async def fetch() -> list[Self]:
            found = await _in_pool(lambda: list(method(me, pattern)))
            return [cls(p) for p in found]

        return PathListing(fetch)

    # --- everything else (worker pool, or no I/O at all) ---

    async def resolve(self, strict: bool = False) -> Self:
        """The absolute path with symlinks resolved (``strict``: it must exist)."""
        resolved = await _in_pool(pathlib.PosixPath(self).resolve, strict)
        return type(self)(resolved)

    async def absolute(self) -> Self:
        """This path made absolute against the working directory (no symlink resolution)."""
        await checkpoint()
        if self.is_absolute():
            return self
        return type(self)(os.getcwd(), self)

    async def expanduser(self) -> Self:
        """``~`` and ``~user`` expanded."""
        expanded = await _in_pool(pathlib.PosixPath(self).expanduser)
        return type(self)(expanded)

    async def readlink(self) -> Self:
        """Where the symlink points."""
        return type(self)(await _in_pool(os.readlink, self._fs()))

    async def chmod(self, mode: int, *, follow_symlinks: bool = True) -> None:
        """Change the permission bits."""
        await _in_pool(_chmod, self._fs(), mode, follow_symlinks)

    async def lchmod(self, mode: int) -> None:
        """Like :meth:`chmod` on the symlink itself (unsupported on Linux, as in pathlib)."""
        await _in_pool(_chmod, self._fs(), mode, False)

    async def owner(self) -> str:
        """The name of the file's owner."""
        return await _in_pool(pathlib.PosixPath(self).owner)

    async def group(self) -> str:
        """The name of the file's group."""
        return await _in_pool(pathlib.PosixPath(self).group)


def _name_the_pathlib_method(cls: type[Path]) -> None:
    """Start each I/O method's docstring with the :class:`pathlib.Path` method it stands
    for, as Trio's do (tools and tests look for ``Path.<name>`` there)."""
    for name, method in vars(cls).items():
        if name.startswith("_") or not hasattr(pathlib.Path, name):
            continue
        function = method.__func__ if isinstance(method, classmethod) else method
        if not callable(function) or hasattr(pathlib.PurePath, name):
            continue
        own = inspect.cleandoc(function.__doc__ or "")
        function.__doc__ = f"Like :meth:`~pathlib.Path.{name}`, but async.\n\n{own}".rstrip()


_name_the_pathlib_method(Path)


def _chmod(path: str, mode: int, follow_symlinks: bool) -> None:
    os.chmod(path, mode, follow_symlinks=follow_symlinks)


@final
class PosixPath(Path, pathlib.PurePosixPath):
    """What ``Path(...)`` returns on this platform (Trio's ``PosixPath``)."""

    __slots__ = ()


def _unsupported_here(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` for a WindowsPath: fails as ``pathlib.WindowsPath`` does on Linux."""

    def fail() -> NoReturn:
        raise NotImplementedError("cannot instantiate 'WindowsPath' on your system")

    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def unsupported(*args: Any, **kwargs: Any) -> NoReturn:
            await checkpoint()
            fail()

        return unsupported

    # The listings (iterdir, glob, rglob): awaiting or iterating them fails.
    @functools.wraps(method)
    def unsupported_listing(*args: Any, **kwargs: Any) -> PathListing[Any]:
        async def fetch() -> NoReturn:
            await checkpoint()
            fail()

        return PathListing(fetch)

    return unsupported_listing


@final
class WindowsPath(Path, pathlib.PureWindowsPath):
    """Exported as Trio does; pure-path operations work (with Windows path rules), and
    every filesystem method raises :exc:`NotImplementedError` as ``pathlib.WindowsPath``
    does on Linux. ``cwd()`` and ``home()`` still answer, as Trio's do."""

    __slots__ = ()


for _name, _method in list(vars(Path).items()):
    if _name.startswith("_") or _name in ("cwd", "home"):
        continue
    if inspect.iscoroutinefunction(_method) or _name in ("iterdir", "glob", "rglob"):
        setattr(WindowsPath, _name, _unsupported_here(_method))
del _name, _method
