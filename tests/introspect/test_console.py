"""The console endpoint, ``python -m nursery_io ps/pstree/console`` and the debug
environment variables, against a live child process."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nursery_io._introspect._client import ConsoleConnection, ConsoleError

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = """
import os
import sys
import nursery_io
from nursery_io import lowlevel

async def handler(receive):
    await receive.receive()

async def busy():
    while True:
        await nursery_io.sleep(0.001)

async def main():
    send, receive = nursery_io.open_memory_channel(0)
    async with nursery_io.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(handler, receive.clone(), name="handler")
        nursery.start_soon(busy, name="busy-loop")
        fd = os.open(sys.argv[0], os.O_RDONLY)
        await lowlevel.run_op(lowlevel.ops.fsync(fd))  # a file op for the engine
        os.close(fd)
        print("ready", flush=True)
        # Until the test closes our stdin.
        await nursery_io.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
        nursery.cancel_scope.cancel()

nursery_io.run(main)
print("done", flush=True)
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ)
    for name in ("NURSERY_IO_DEBUG_SIGNAL", "NURSERY_IO_CONSOLE", "NURSERY_IO_TRACE"):
        env.pop(name, None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["XDG_RUNTIME_DIR"] = str(runtime)
    env.update(extra)
    return env


class Program:
    def __init__(self, tmp_path: Path, **env: str) -> None:
        script = tmp_path / "program.py"
        script.write_text(PROGRAM)
        self.env = _env(tmp_path, **env)
        self.process = subprocess.Popen(
            [sys.executable, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line == "ready\n", line + self.process.stderr.read()  # type: ignore[union-attr]
        self.pid = str(self.process.pid)
        self.socket_path = tmp_path / "run" / "nursery_io" / f"{self.pid}.sock"

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nursery_io", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            check=False,
        )

    def finish(self) -> tuple[str, str]:
        if self.process.poll() is None:
            try:
                stdout, stderr = self.process.communicate("", timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                stdout, stderr = self.process.communicate()
                raise
            return stdout, stderr
        return "", ""


@pytest.fixture
def program(tmp_path: Path) -> Iterator[Program]:
    running = Program(tmp_path, NURSERY_IO_CONSOLE="1")
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.communicate()


def test_ps_json_and_text(program: Program) -> None:
    result = program.cli("ps", program.pid, "--json")
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    assert snapshot["pid"] == int(program.pid)
    names = [t["name"] for t in snapshot["tasks"]]
    assert names.count("handler") == 20
    assert "busy-loop" in names
    (handler, *_) = [t for t in snapshot["tasks"] if t["name"] == "handler"]
    assert handler["state"] == "blocked"
    assert handler["wait"]["kind"] == "channel_receive"
    assert snapshot["run"]["timing"] is False  # nobody asked for timing

    text = program.cli("ps", program.pid)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split()[:3] == ["STATE", "NAME", "WHERE"]
    assert sum(1 for line in lines if " handler " in line) == 20


def test_ps_sample_measures_and_then_uninstalls_the_timer(program: Program) -> None:
    result = program.cli("ps", program.pid, "--sample", "0.3", "--sort", "steps")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:6] == ["STATE", "NAME", "STEPS", "BUSY", "IDLE", "MAXDELAY"]
    busy = next(line for line in lines if "busy-loop" in line)
    assert int(busy.split()[2]) > 10
    # The timer went away with the client.
    again = json.loads(program.cli("ps", program.pid, "--json").stdout)
    assert again["run"]["timing"] is False


def test_pstree(program: Program) -> None:
    result = program.cli("pstree", program.pid)
    assert result.returncode == 0, result.stderr
    assert "x20 tasks 'handler'  [blocked] receive from memory channel" in result.stdout
    assert "task '<nursery_io console server>' (system)" in result.stdout
    full = program.cli("pstree", program.pid, "--no-compress")
    assert full.stdout.count("task 'handler'") == 20
    as_json = json.loads(program.cli("pstree", str(program.socket_path), "--json").stdout)
    assert [t["name"] for t in as_json["tasks"]].count("handler") == 20


def test_socket_is_private_and_removed_at_exit(program: Program) -> None:
    info = os.lstat(program.socket_path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(program.socket_path.parent).st_mode) == 0o700
    stdout, stderr = program.finish()
    assert program.process.returncode == 0, stderr
    assert stdout == "done\n"
    assert not program.socket_path.exists()


def test_unknown_pid_and_bad_requests(program: Program, tmp_path: Path) -> None:
    result = program.cli("ps", "999999999")
    assert result.returncode != 0
    assert "no console socket for pid 999999999" in result.stderr
    with ConsoleConnection(str(program.socket_path)) as conn:
        assert conn.request({"cmd": "ping"}) == {"pid": int(program.pid)}
        with pytest.raises(ConsoleError, match="unknown command"):
            conn.request({"cmd": "shutdown"})
        assert conn.request({"cmd": "ping"}) == {"pid": int(program.pid)}


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another uid")
@pytest.mark.parametrize("open_up", [False, True])
def test_other_users_are_refused(tmp_path: Path, open_up: bool) -> None:
    if open_up:
        # A socket anyone may reach through the file system: the peer credentials must
        # still keep other users out.
        public = Path(tempfile.mkdtemp(prefix="nursery_io-test-"))
        public.chmod(0o755)
        path = public / "console.sock"
        running = Program(tmp_path, NURSERY_IO_CONSOLE=str(path))
        path.chmod(0o777)
    else:
        running = Program(tmp_path, NURSERY_IO_CONSOLE="1")
        path = running.socket_path
    try:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                os.close(read_fd)
                os.setgid(65534)
                os.setuid(65534)
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(10)
                try:
                    sock.connect(str(path))
                    sock.sendall(b'{"cmd": "snapshot"}\n')
                    answer = sock.recv(1 << 16)
                except OSError as exc:
                    answer = f"OSError {type(exc).__name__}".encode()
                os.write(write_fd, answer)
            finally:
                os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            answer = f.read().decode()
        os.waitpid(pid, 0)
        if open_up:
            assert json.loads(answer) == {"error": "refused: uid 65534 is not the owner"}
        else:
            assert answer == "OSError PermissionError"
        # The owner is still served.
        with ConsoleConnection(str(path)) as conn:
            assert conn.request({"cmd": "ping"}) == {"pid": int(running.pid)}
        running.finish()
        assert running.process.returncode == 0
        assert not path.exists()
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.communicate()
        if open_up:
            shutil.rmtree(path.parent, ignore_errors=True)


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{needle!r} not seen; got {data[-3000:]!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    return data


def test_console_tui_in_a_pty(program: Program) -> None:
    pytest.importorskip("rich")
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.environ.clear()
        os.environ.update(program.env)
        os.environ.update({"TERM": "xterm-256color", "COLUMNS": "160", "LINES": "50"})
        os.execv(
            sys.executable,
            [sys.executable, "-m", "nursery_io", "console", program.pid, "--interval", "0.2"],
        )
    import fcntl

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    try:
        screen = _read_until(fd, b"busy-loop", 30)
        assert b"nursery_io console  pid " + program.pid.encode() in screen
        assert b"sort: busy" in screen
        os.write(fd, b"n")
        _read_until(fd, b"sort: name", 10)
        os.write(fd, b"q")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            # Keep draining the terminal: leaving the full screen writes to it.
            if select.select([fd], [], [], 0.05)[0]:
                try:
                    os.read(fd, 65536)
                except OSError:
                    pass
        else:
            raise AssertionError("the console did not quit on 'q'")
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
    # The console's timer went away with it.
    again = json.loads(program.cli("ps", program.pid, "--json").stdout)
    assert again["run"]["timing"] is False


def test_debug_signal_from_the_environment(tmp_path: Path) -> None:
    running = Program(tmp_path, NURSERY_IO_DEBUG_SIGNAL="1")
    try:
        os.kill(running.process.pid, signal.SIGUSR1)
        time.sleep(0.5)
        stdout, stderr = running.finish()
    finally:
        if running.process.poll() is None:
            running.process.kill()
    # The program went on and finished normally.
    assert running.process.returncode == 0, stderr
    assert stdout == "done\n"
    assert "--- nursery_io task dump at" in stderr
    assert "x20 tasks 'handler'  [blocked] receive from memory channel created at " in stderr
    # Where the channel end each handler waits on was made.
    clone_line = next(
        i for i, line in enumerate(PROGRAM.splitlines(), 1) if "receive.clone()" in line
    )
    assert f"program.py:{clone_line}" in stderr


def test_trace_from_the_environment(tmp_path: Path) -> None:
    trace = tmp_path / "trace-{pid}.json"
    running = Program(tmp_path, NURSERY_IO_TRACE=str(trace))
    stdout, stderr = running.finish()
    assert running.process.returncode == 0, stderr
    path = tmp_path / f"trace-{running.pid}.json"
    document = json.loads(path.read_text())
    events = document["traceEvents"]
    names = {e["name"] for e in events}
    assert {"step", "runnable", "kernel poll", "spawned", "exited", "cancelled"} <= names
    assert "blocked: channel receive" in names
    tracks = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert {"handler", "busy-loop", "loop"} <= tracks
    ops = [e for e in events if e.get("cat") == "file op"]
    assert ops, "the file read should be traced"
    ends = [e for e in ops if e["ph"] == "e"]
    assert all(e["args"]["latency_us"] >= 0 for e in ends)
    assert {e["args"]["engine"] for e in ends} <= {"io_uring", "threads"}
