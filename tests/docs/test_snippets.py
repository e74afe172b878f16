"""Run every code example of the documentation, so the docs can't rot.

Each Python block in ``docs/`` is a file in ``docs/snippets/`` pulled in with
``literalinclude``. Scripts run in a fresh interpreter (with whatever ``NURSERY_IO_URING`` the
suite runs with); ``test_*.py`` snippets are run by pytest in a scratch project configured
exactly as the tutorial says. Everything is bounded in time and uses loopback only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
SNIPPETS = DOCS / "snippets"
TIMEOUT = 60

SCRIPTS = sorted(p for p in SNIPPETS.glob("*.py") if not p.name.startswith("test_"))
PYTEST_SNIPPETS = sorted(SNIPPETS.glob("test_*.py"))
RST_PAGES = sorted(DOCS.rglob("*.rst"))


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)  # the outer run's options are not the tutorial's
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_runs(script: Path, tmp_path: Path) -> None:
    if re.search(r"^import anyio", script.read_text(), re.M):
        # anyio is an optional extra (nursery_io[anyio]), not a test dependency.
        pytest.importorskip("anyio")
    proc = _run([sys.executable, str(script)], cwd=tmp_path)
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.strip(), f"{script.name} printed nothing"
    assert "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("test_file", PYTEST_SNIPPETS, ids=lambda p: p.name)
def test_pytest_snippet_passes(test_file: Path, tmp_path: Path) -> None:
    # A scratch project with the configuration the tutorial shows.
    (tmp_path / "pyproject.toml").write_text((SNIPPETS / "pytest_config.toml").read_text())
    (tmp_path / test_file.name).write_text(test_file.read_text())
    proc = _run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            # pytest-trio and anyio's plugin are installed in this venv for other tests;
            # a reader's project wouldn't have them.
            "-p",
            "no:trio",
            "-p",
            "no:anyio",
            test_file.name,
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, f"{test_file.name} failed:\n{proc.stdout}\n{proc.stderr}"
    defined = len(re.findall(r"^async def test_|^def test_", test_file.read_text(), re.M))
    assert f"{defined} passed" in proc.stdout, proc.stdout


def test_every_snippet_is_shown_in_the_docs() -> None:
    shown = set()
    for page in RST_PAGES:
        shown.update(re.findall(r"literalinclude:: (?:\.\./)*snippets/(\S+)", page.read_text()))
    files = {p.name for p in SNIPPETS.iterdir() if p.suffix in (".py", ".toml")}
    assert files - shown == set(), "snippets no page includes"
    assert shown - files == set(), "pages include snippets that don't exist"


@pytest.mark.parametrize("page", RST_PAGES, ids=lambda p: p.name)
def test_python_blocks_come_from_snippets(page: Path) -> None:
    # Inline Python blocks can't be run by this file; put the code in docs/snippets/.
    text = page.read_text()
    assert not re.search(r"code-block::\s*(python|py|pycon)\b", text), page.name
    assert not re.search(r"^\.\. code::\s*(python|py)\b", text, re.M), page.name
