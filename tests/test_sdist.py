"""The source distribution carries what its own test suite needs.

A downstream packager tests the unpacked sdist; that only works if the tests, the data
they read (benchmarks, docs, examples) and the legal files are all inside it.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("build")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sdist_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    out = tmp_path_factory.mktemp("sdist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (archive,) = out.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        return {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}


def test_sdist_has_the_test_suite_and_its_data(sdist_names: set[str]) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "tests", "benchmarks", "docs", "examples"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if tracked.returncode != 0 or not tracked.stdout:
        pytest.skip("not a git checkout")
    missing = set(tracked.stdout.split()) - sdist_names
    assert not missing


@pytest.mark.parametrize(
    "name", ["LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "tests/conftest.py"]
)
def test_sdist_has_top_level_files(sdist_names: set[str], name: str) -> None:
    assert name in sdist_names


def test_sdist_has_no_build_debris(sdist_names: set[str]) -> None:
    assert not [n for n in sdist_names if "__pycache__" in n or n.startswith("docs/_build")]
