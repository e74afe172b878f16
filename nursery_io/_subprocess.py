"""Child processes: ``lowlevel.open_process`` (a :class:`Process` with pipe streams) and
``run_process`` (run a command to completion, Trio's semantics).

``subprocess.Popen`` does the fork+exec; the parent ends of any pipes become
:class:`~nursery_io.lowlevel.FdStream` objects. Waiting for the child to exit costs no
thread: a *pidfd* (``os.pidfd_open``, Linux >= 5.3) becomes readable when the child exits,
and the task waits for that in the run's epoll set like for any socket. Without pidfds a
worker thread blocks in ``waitid(WNOWAIT)`` instead (one per process, started on the first
wait), which tells us the child exited without reaping it, so ``Popen`` keeps its normal
bookkeeping.
"""

from __future__ import annotations

import os
import signal
import subprocess
import warnings
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import outcome

from ._core import (
    TASK_STATUS_IGNORED,
    BrokenResourceError,
    CancelScope,
    ClosedResourceError,
    RunFinishedError,
    TaskStatus,
    cancel_shielded_checkpoint,
    checkpoint,
    checkpoint_if_cancelled,
    current_token,
    in_run,
    notify_closing,
    open_nursery,
    wait_readable,
)
from ._core._context import current_library_name
from ._core._util import final
from ._highlevel_generic import StapledStream
from ._kernel.workers import start_thread_soon
from ._net._unix_pipes import FdStream
from ._sync import Event, Lock
from ._timeouts import sleep
from .abc import ReceiveStream, SendStream

__all__ = ["Process", "open_process", "run_process"]

StrOrBytesPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]
Command = StrOrBytesPath | Sequence[StrOrBytesPath]

# Tests switch this off to exercise the thread fallback on kernels that do have pidfds.
_USE_PIDFD: bool = hasattr(os, "pidfd_open")

# Popen options that would turn the pipes into buffered text files: our pipes are byte
# streams, so these can't mean anything.
_TEXT_OPTIONS: Final = ("universal_newlines", "text", "encoding", "errors", "bufsize")

#: How long the default ``deliver_cancel`` waits after SIGTERM before sending SIGKILL.
TERMINATE_GRACE_SECONDS: Final = 5.0


def _open_pidfd(pid: int) -> int | None:
    if not _USE_PIDFD:
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        # ENOSYS (old kernel, seccomp) and friends: fall back to a waiting thread.
        return None


@final
class Process:
    """A child process started by :func:`nursery_io.lowlevel.open_process`.

    ``stdin`` / ``stdout`` / ``stderr`` are streams for the pipes requested with
    ``subprocess.PIPE`` (None otherwise); ``stdio`` joins ``stdin`` and ``stdout`` into one
    stream when both exist. ``args`` and ``pid`` are those of the underlying
    :class:`subprocess.Popen`.

    Nothing kills or reaps the child behind your back: await :meth:`wait` (or use
    :func:`nursery_io.run_process`, which always does) so it doesn't linger as a zombie.

    ``universal_newlines``, ``encoding`` and ``errors`` are always False / None / None, as
    in Trio: the pipes are byte streams.
    """

    universal_newlines: Final = False
    encoding: Final = None
    errors: Final = None

    def __init__(self, *args: object, **kwargs: object) -> None:
        # As in Trio: processes come from open_process / run_process only.
        raise TypeError(
            "nursery_io.Process has no public constructor; use "
            "nursery_io.lowlevel.open_process or nursery_io.run_process"
        )

    @classmethod
    def _create(
        cls,
        popen: subprocess.Popen[bytes],
        stdin: SendStream | None,
        stdout: ReceiveStream | None,
        stderr: ReceiveStream | None,
    ) -> Process:
        self = cls.__new__(cls)
        self._setup(popen, stdin, stdout, stderr)
        return self

    def _setup(
        self,
        popen: subprocess.Popen[bytes],
        stdin: SendStream | None,
        stdout: ReceiveStream | None,
        stderr: ReceiveStream | None,
    ) -> None:
        self._proc = popen  # Trio's name for it; some tests reach in
        self.args: Any = popen.args
        self.pid: int = popen.pid
        self.stdin: SendStream | None = stdin
        self.stdout: ReceiveStream | None = stdout
        self.stderr: ReceiveStream | None = stderr
        self.stdio: StapledStream[SendStream, ReceiveStream] | None = None
        if stdin is not None and stdout is not None:
            self.stdio = StapledStream(stdin, stdout)
        self._pidfd = _open_pidfd(popen.pid)
        # Only one task may wait for readability of the pidfd at a time; later waiters
        # queue here and find the process already reaped.
        self._wait_lock = Lock()
        # Thread fallback only: set (in the run's thread) once the child has exited.
        self._exited: Event | None = None

    def __repr__(self) -> str:
        returncode = self.returncode
        if returncode is None:
            status = f"running with PID {self.pid}"
        elif returncode < 0:
            status = f"exited with signal {-returncode}"
        else:
            status = f"exited with status {returncode}"
        return f"<{current_library_name()}.Process {self.args!r}: {status}>"  # trio mode: trio.

    def __del__(self) -> None:
        # Nobody can be waiting on the pidfd any more (a waiter keeps us alive), so a
        # plain close is enough. Popen's own finalizer takes care of an unreaped child.
        pidfd = getattr(self, "_pidfd", None)
        if pidfd is not None:
            self._pidfd = None
            os.close(pidfd)

    def _close_pidfd(self) -> None:
        pidfd = self._pidfd
        if pidfd is None:
            return
        self._pidfd = None
        if in_run():
            # Wakes a task blocked in wait() (it then sees the child reaped).
            notify_closing(pidfd)
        os.close(pidfd)

    @property
    def returncode(self) -> int | None:
        """The exit status, or None while the child runs. Negative: killed by that signal.

        Reading it checks on the child (reaping it if it has exited), like :meth:`poll`.
        """
        return self.poll()

    def poll(self) -> int | None:
        """Return the exit status if the child has exited (reaping it), else None."""
        result = self._proc.poll()
        if result is not None:
            self._close_pidfd()
        return result

    async def wait(self) -> int:
        """Wait for the child to exit and return its exit status.

        Cancelling the wait does not affect the child. Any number of tasks may wait at
        once. Always a checkpoint.
        """
        async with self._wait_lock:
            if self.poll() is None:
                if self._pidfd is not None:
                    try:
                        await wait_readable(self._pidfd)
                    except ClosedResourceError:
                        pass  # someone's poll() reaped the child meanwhile
                else:
                    await self._wait_in_thread()
                # The child has exited, so this returns at once; it reaps the zombie and
                # records the status in Popen.
                self._proc.wait()
                self._close_pidfd()
            else:
                await checkpoint()
        result = self._proc.returncode
        assert result is not None
        return result

    async def _wait_in_thread(self) -> None:
        if self._exited is None:
            exited = self._exited = Event()
            token = current_token()
            pid = self.pid

            def blocking_wait() -> None:
                # WNOWAIT leaves the zombie in place: Popen reaps it, so a pid can't be
                # reused while we still hold the Popen.
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)

            def deliver(result: outcome.Outcome[None]) -> None:
                try:
                    token.run_sync_soon(exited.set)
                except RunFinishedError:
                    pass  # the run ended first; a later run will poll() instead

            start_thread_soon(blocking_wait, deliver, name=f"nursery_io waitid({pid})")
        await self._exited.wait()

    def send_signal(self, sig: int) -> None:
        """Send signal ``sig`` to the child; does nothing once it has exited and been
        reaped (so a recycled pid never gets the signal)."""
        if self.poll() is None:
            self._proc.send_signal(sig)

    def terminate(self) -> None:
        """Ask the child to exit (SIGTERM)."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the child (SIGKILL)."""
        self.send_signal(signal.SIGKILL)

    async def aclose(self) -> None:
        """Close the pipes, then wait for the child to exit.

        If the wait is cancelled (or fails), the child is killed and reaped before the
        exception propagates, so it never outlives this call.
        """
        with CancelScope(shield=True):
            for stream in (self.stdin, self.stdout, self.stderr):
                if stream is not None:
                    await stream.aclose()
        try:
            await self.wait()
        except BaseException:
            self.kill()
            with CancelScope(shield=True):
                await self.wait()
            raise


def _check_options(command: object, options: Mapping[str, Any]) -> None:
    for key in _TEXT_OPTIONS:
        if options.get(key):
            raise TypeError(
                "nursery_io.Process only supports communicating over unbuffered byte "
                f"streams; the {key!r} option is not supported (decode the bytes yourself)"
            )
    shell = options.get("shell")
    if isinstance(command, (str, bytes)):
        if not shell:
            raise TypeError(
                "command must be a sequence (not a string or bytes) if shell=False on UNIX "
                "systems, e.g. ['ls', '-l']"
            )
    elif shell:
        raise TypeError(
            "command must be a string or bytes (not a sequence) if shell=True on UNIX systems"
        )


async def open_process(
    command: Command,
    *,
    stdin: int | Any | None = None,
    stdout: int | Any | None = None,
    stderr: int | Any | None = None,
    **options: Any,
) -> Process:
    """Start a child process and return a :class:`Process` for it, without waiting for it.

    ``command`` is a sequence of arguments, or a string with ``shell=True``. ``stdin``,
    ``stdout`` and ``stderr`` take what :class:`subprocess.Popen` takes; with
    ``subprocess.PIPE`` the matching attribute of the Process is a stream for the pipe
    (``stderr=subprocess.STDOUT`` shares stdout's destination). Other keyword arguments
    (``cwd``, ``env``, ``start_new_session``, ``pass_fds``, ...) go to ``Popen``; the
    text-mode options (``text``, ``encoding``, ``bufsize``, ...) are rejected.

    Nothing is killed if the caller is cancelled afterwards: the caller owns the child
    and must wait for it (see :meth:`Process.aclose`, or :func:`nursery_io.run_process`).
    """
    _check_options(command, options)
    await checkpoint_if_cancelled()
    # Pipes are created here so the parent ends can be non-blocking FdStreams; the child
    # ends are passed to Popen and closed in the parent once the child holds them.
    parent_streams: list[FdStream] = []
    child_fds: list[int] = []
    try:
        stdin_stream: FdStream | None = None
        stdout_stream: FdStream | None = None
        stderr_stream: FdStream | None = None
        if stdin == subprocess.PIPE:
            read_end, write_end = os.pipe()
            child_fds.append(read_end)
            stdin_stream = FdStream(write_end)
            parent_streams.append(stdin_stream)
            stdin = read_end
        if stdout == subprocess.PIPE:
            read_end, write_end = os.pipe()
            child_fds.append(write_end)
            stdout_stream = FdStream(read_end)
            parent_streams.append(stdout_stream)
            stdout = write_end
        if stderr == subprocess.STDOUT:
            # Whatever stdout became (our pipe, a file, DEVNULL) is where stderr goes too;
            # with stdout inherited, let Popen duplicate the parent's stdout.
            if stdout is not None:
                stderr = stdout
        elif stderr == subprocess.PIPE:
            read_end, write_end = os.pipe()
            child_fds.append(write_end)
            stderr_stream = FdStream(read_end)
            parent_streams.append(stderr_stream)
            stderr = write_end
        # fork+exec is quick enough to do in the run's thread (and Popen raises the
        # child's exec failure, e.g. FileNotFoundError, right here).
        popen: subprocess.Popen[bytes] = subprocess.Popen(
            command, stdin=stdin, stdout=stdout, stderr=stderr, **options
        )
    except BaseException:
        for stream in parent_streams:
            stream.close()
        raise
    finally:
        for fd in child_fds:
            os.close(fd)
    process = Process._create(popen, stdin_stream, stdout_stream, stderr_stream)
    await cancel_shielded_checkpoint()
    return process


async def _terminate_then_kill(process: Process) -> None:
    """The default ``deliver_cancel``: SIGTERM, then SIGKILL if the child ignores it."""
    try:
        process.terminate()
        await sleep(TERMINATE_GRACE_SECONDS)
        warnings.warn(
            RuntimeWarning(
                f"{process!r} ignored SIGTERM for {TERMINATE_GRACE_SECONDS:g} seconds; "
                "sending SIGKILL (pass deliver_cancel= to run_process to choose how the "
                "child is stopped)"
            ),
            stacklevel=1,
        )
        process.kill()
    except OSError as exc:
        warnings.warn(
            RuntimeWarning(f"could not stop {process!r}: {exc!r}"),
            stacklevel=1,
        )


async def _feed(stream: SendStream, data: bytes | bytearray | memoryview) -> None:
    async with stream:
        try:
            await stream.send_all(data)
        except BrokenResourceError:
            pass  # the child exited (or closed stdin) without reading it all: its call


async def _collect(stream: ReceiveStream, chunks: list[bytes | bytearray]) -> None:
    async with stream:
        while True:
            chunk = await stream.receive_some()
            if not chunk:
                return
            chunks.append(chunk)


_PIPE_ONLY_WITH_START: Final = (
    "{name}=subprocess.PIPE is only valid with nursery.start, since that's the only way to "
    "access the pipe"
)


async def run_process(
    command: Command,
    *,
    stdin: bytes | bytearray | memoryview | int | Any | None = b"",
    capture_stdout: bool = False,
    capture_stderr: bool = False,
    check: bool = True,
    deliver_cancel: Callable[[Process], Awaitable[object]] | None = None,
    task_status: TaskStatus[Process] = TASK_STATUS_IGNORED,
    **options: Any,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` to completion and return a :class:`subprocess.CompletedProcess`.

    ``stdin``: bytes to feed the child (the default, ``b""``, gives it an empty input),
    None to share the parent's stdin, or anything ``Popen`` accepts (a file descriptor,
    ``subprocess.DEVNULL``; ``subprocess.PIPE`` only with ``nursery.start``).
    ``capture_stdout`` / ``capture_stderr`` collect that output into the result; otherwise
    pass ``stdout=`` / ``stderr=`` as for ``Popen`` (not both for the same stream).

    With ``check=True`` (the default) a non-zero exit status raises
    :class:`subprocess.CalledProcessError`, carrying any captured output.

    If the call is cancelled, ``await deliver_cancel(process)`` stops the child; the
    default sends SIGTERM and, if the child is still there 5 seconds later, SIGKILL (with
    a ``RuntimeWarning``). Either way the child is waited for (and reaped) before the
    ``Cancelled`` propagates; if ``deliver_cancel`` itself raises, the child is killed.

    ``await nursery.start(run_process, ...)`` returns the :class:`Process` as soon as it
    has started (its ``stdin``/``stdout``/``stderr`` are the pipes you asked for with
    ``subprocess.PIPE``); cancelling the nursery then stops the child as above.
    Other keyword arguments go to :func:`nursery_io.lowlevel.open_process`.
    """
    # The exception types and texts here are Trio's (users match on them).
    if isinstance(stdin, str):
        raise UnicodeError("process stdin must be bytes, not str")
    if task_status is TASK_STATUS_IGNORED:
        if stdin is subprocess.PIPE:
            raise ValueError(
                _PIPE_ONLY_WITH_START.format(name="stdin")
                + "; use nursery.start or pass the data you want to write directly"
            )
        for name in ("stdout", "stderr"):
            if options.get(name) is subprocess.PIPE:
                raise ValueError(_PIPE_ONLY_WITH_START.format(name=name))
    for name in ("input", "timeout", "capture_output"):
        if name in options:
            # Trio hands these to Popen, which rejects them with this text.
            raise TypeError(
                f"Popen.__init__() got an unexpected keyword argument {name!r} (run_process "
                "takes stdin=, capture_stdout/capture_stderr; time out with a cancel scope "
                "such as move_on_after())"
            )
    if capture_stdout and "stdout" in options:
        raise ValueError("can't specify both stdout and capture_stdout")
    if capture_stderr and "stderr" in options:
        raise ValueError("can't specify both stderr and capture_stderr")
    if deliver_cancel is None:
        deliver_cancel = _terminate_then_kill

    feed: bytes | bytearray | memoryview | None = None
    if isinstance(stdin, (bytes, bytearray, memoryview)):
        feed = stdin
        options["stdin"] = subprocess.PIPE
    else:
        options["stdin"] = stdin
    if capture_stdout:
        options["stdout"] = subprocess.PIPE
    if capture_stderr:
        options["stderr"] = subprocess.PIPE

    stdout_chunks: list[bytes | bytearray] = []
    stderr_chunks: list[bytes | bytearray] = []
    stop_child = deliver_cancel
    # Spawned outside the nursery so that a failure to start (a missing program, a bad
    # option) comes out as itself rather than wrapped in an exception group.
    process = await open_process(command, **options)
    async with open_nursery() as nursery:
        try:
            # Streams that run_process drives itself are taken off the Process, so a
            # caller that got it from nursery.start() can't race with us on them.
            if feed is not None:
                assert process.stdin is not None
                nursery.start_soon(_feed, process.stdin, feed)
                process.stdin = None
                process.stdio = None
            if capture_stdout:
                assert process.stdout is not None
                nursery.start_soon(_collect, process.stdout, stdout_chunks)
                process.stdout = None
                process.stdio = None
            if capture_stderr:
                assert process.stderr is not None
                nursery.start_soon(_collect, process.stderr, stderr_chunks)
                process.stderr = None
            task_status.started(process)
            await process.wait()
        except BaseException:
            # Stop the child, and don't leave until it has exited: no zombie, and the
            # reader tasks see EOF. Shielded so the cancellation that got us here can't
            # interrupt the cleanup.
            with CancelScope(shield=True):
                # Shielded too: the nursery it runs in is usually cancelled already, and
                # deliver_cancel must still get its grace period.
                stopper_scope = CancelScope(shield=True)

                async def stopper() -> None:
                    with stopper_scope:
                        try:
                            await stop_child(process)
                        except BaseException:
                            process.kill()
                            raise

                nursery.start_soon(stopper)
                await process.wait()
                # The child is gone: a still-running deliver_cancel has nothing left to do.
                stopper_scope.cancel()
            raise

    stdout = b"".join(stdout_chunks) if capture_stdout else None
    stderr = b"".join(stderr_chunks) if capture_stderr else None
    returncode = process.returncode
    assert returncode is not None
    if check and returncode != 0:
        raise subprocess.CalledProcessError(returncode, process.args, output=stdout, stderr=stderr)
    return subprocess.CompletedProcess(process.args, returncode, stdout, stderr)
