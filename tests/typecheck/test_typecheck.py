"""``mypy --strict`` on user code: the public signatures must catch wrong, missing, extra and
swapped arguments (mistakes.py) without rejecting correct code (correct_usage.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
MISTAKES = HERE / "mistakes.py"
CORRECT_USAGE = HERE / "correct_usage.py"

# mypy's one-line report: "path:line: error: message  [code]".
ERROR_LINE = re.compile(
    r"^(?P<path>.+?):(?P<line>\d+): error: (?P<message>.*?)(?:  \[(?P<code>[\w-]+)\])?$"
)
# Codes that mean the checked file itself is broken, not that a mistake was caught.
WRONG_REASONS = {
    "name-defined",
    "attr-defined",
    "import",
    "import-not-found",
    "import-untyped",
    "syntax",
    "no-untyped-def",
    "no-untyped-call",
    "unused-ignore",
}


def _marked_lines(path: Path) -> set[int]:
    """Lines that carry a ``# error`` comment (found with tokenize, so docstrings don't count)."""
    lines = set()
    with path.open(encoding="utf-8") as source:
        for token in tokenize.generate_tokens(source.readline):
            if token.type == tokenize.COMMENT and re.match(r"#\s*error\b", token.string):
                lines.add(token.start[0])
    return lines


def _run_mypy(tmp_path: Path) -> dict[Path, list[tuple[int, str, str | None]]]:
    # A subprocess, not mypy.api.run: mypy changes process-wide state (gc thresholds, the
    # recursion limit) that the rest of the suite should not inherit. MYPYPATH makes mypy
    # read this checkout's nursery_io, whatever kind of install the environment has.
    env = {**os.environ, "MYPYPATH": str(REPO_ROOT)}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(REPO_ROOT / "pyproject.toml"),
            "--strict",
            # Report only the two files; nursery_io itself is checked by CI's own mypy step.
            "--follow-imports=silent",
            "--cache-dir",
            str(tmp_path / "mypy_cache"),
            "--no-pretty",
            "--no-error-summary",
            str(MISTAKES),
            str(CORRECT_USAGE),
        ],
        check=False,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Exit status 2 is a crash or bad usage, not type errors.
    assert completed.returncode in (0, 1), completed.stdout + completed.stderr
    errors: dict[Path, list[tuple[int, str, str | None]]] = {MISTAKES: [], CORRECT_USAGE: []}
    for line in completed.stdout.splitlines():
        match = ERROR_LINE.match(line)
        if match is None:
            continue
        path = (REPO_ROOT / match["path"]).resolve()
        assert path in errors, f"mypy reported an error outside the checked files: {line}"
        errors[path].append((int(match["line"]), match["message"], match["code"]))
    return errors


def test_mypy_flags_every_mistake_and_accepts_correct_usage(tmp_path: Path) -> None:
    errors = _run_mypy(tmp_path)

    def describe(found: list[tuple[int, str, str | None]]) -> str:
        return "\n".join(f"  line {line}: {message} [{code}]" for line, message, code in found)

    assert errors[CORRECT_USAGE] == [], "correct usage rejected:\n" + describe(
        errors[CORRECT_USAGE]
    )

    marked = _marked_lines(MISTAKES)
    # The file is meant to hold dozens of mistakes; a handful means the markers got lost.
    assert len(marked) > 40
    flagged = {line for line, _, _ in errors[MISTAKES]}
    missed = sorted(marked - flagged)
    source_lines = MISTAKES.read_text(encoding="utf-8").splitlines()
    assert not missed, "mistakes mypy did not flag:\n" + "\n".join(
        f"  line {line}: {source_lines[line - 1].strip()}" for line in missed
    )
    unexpected = [error for error in errors[MISTAKES] if error[0] not in marked]
    assert not unexpected, "errors on lines not marked '# error':\n" + describe(unexpected)
    wrong_reason = [error for error in errors[MISTAKES] if error[2] in WRONG_REASONS]
    assert not wrong_reason, "mistakes flagged for the wrong reason:\n" + describe(wrong_reason)


def test_marker_parsing_ignores_docstrings_and_strings(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""# error in a docstring"""\nx = "# error"\ny = 1  # error: here\n')
    assert _marked_lines(sample) == {3}


def test_mypy_output_parsing() -> None:
    line = 'tests/x.py:12: error: Argument 1 to "run" has incompatible type  [arg-type]'
    match = ERROR_LINE.match(line)
    assert match is not None
    assert (match["path"], match["line"], match["code"]) == ("tests/x.py", "12", "arg-type")
