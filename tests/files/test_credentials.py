"""Dropping privileges: path operations must be checked against the current credentials.

A program that starts as root, does some file I/O (setting up the ring) and then drops to
an unprivileged user must not keep root's access through the ring. That was Node's
CVE-2024-22017: with ``IORING_SETUP_SQPOLL`` the kernel's submission thread keeps the ring
creator's credentials. nursery_io's ring has no SQPOLL thread, and the kernel captures the
submitter's *current* credentials for work it hands to io-wq, so the ring needs nothing
special; this test keeps it that way (it would catch a switch to SQPOLL, for one).

Run in a child process, since setuid() can't be undone; needs root to switch users at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")

NOBODY = 65534

_CHILD = textwrap.dedent(
    """
    import json, os, sys
    import nursery_io
    # nursery_io loads most of its API on first use. This interpreter lives under /root,
    # which "nobody" can't read: resolve what the test uses while still root, as a program
    # that drops privileges (or chroots) must.
    from nursery_io import Path, lowlevel

    private = sys.argv[1]  # a root-only directory
    nobody = int(sys.argv[2])

    async def attempt(what, fn):
        try:
            await fn()
        except PermissionError:
            return "denied"
        return "allowed"

    async def main():
        # As root: the engine (and its ring, if any) is set up with root's credentials.
        async with await nursery_io.open_file(os.path.join(private, "warm"), "wb") as f:
            await f.write(b"x")
        before = lowlevel.current_statistics().io_statistics.file_engine.ops_by_engine
        os.setgroups([])
        os.setresgid(nobody, nobody, nobody)
        os.setresuid(nobody, nobody, nobody)
        p = Path(private)
        results = {
            "open": await attempt("open", lambda: nursery_io.open_file(p / "secret", "rb")),
            "create": await attempt("create", lambda: nursery_io.open_file(p / "new", "wb")),
            "stat": await attempt("stat", (p / "secret").stat),
            "mkdir": await attempt("mkdir", (p / "dir").mkdir),
            "unlink": await attempt("unlink", (p / "secret").unlink),
            "rename": await attempt("rename", lambda: (p / "secret").rename(p / "moved")),
        }
        stats = lowlevel.current_statistics().io_statistics.file_engine
        results["engine"] = stats.engine
        results["ring_ops"] = stats.ops_by_engine["io_uring"] - before["io_uring"]
        print(json.dumps(results))

    nursery_io.run(main)
    """
)


@pytest.mark.parametrize("uring", ["1", "0"])
def test_path_operations_use_the_credentials_after_setuid(tmp_path: Path, uring: str) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "secret").write_bytes(b"root only")
    os.chmod(private / "secret", 0o600)
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = dict(os.environ, NURSERY_IO_URING=uring)
    if uring == "1":
        env.pop("NURSERY_IO_URING")  # the default: io_uring where available
    proc = subprocess.run(
        [sys.executable, str(script), str(private), str(NOBODY)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.splitlines()[-1])
    for what in ("open", "create", "stat", "mkdir", "unlink", "rename"):
        assert results[what] == "denied", (what, results)
    assert (private / "secret").read_bytes() == b"root only"
    assert sorted(os.listdir(private)) == ["secret", "warm"]
    if results["engine"] == "io_uring":
        # The attempts went through the ring (opens after the inline attempt failed).
        assert results["ring_ops"] >= 6
    else:
        assert results["ring_ops"] == 0
