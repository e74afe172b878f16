"""A pytest-trio suite run three ways, with the same per-test outcomes every time.

tests/pytest_trio_suite/ is a suite written for pytest-trio (``trio_mode = true``,
``@pytest.mark.trio``, ``pytest_trio.trio_fixture``, the ``nursery``/``autojump_clock``/
``mock_clock`` fixtures, failures in fixture setup and teardown, timeouts). It is data,
not collected by the main run (tests/conftest.py ignores it). Each session below runs a
copy of it in a subprocess and reports through ``--junitxml``:

* under pytest-trio on the real trio, nursery_io's plugin disabled: the reference, which
  must also match the outcomes written down here (so the comparisons can't pass by both
  sides breaking the same way);
* in nursery_io's trio mode, switched on each supported way, and with each plugin loaded
  first (``-p``): ``import trio`` is nursery_io, and nursery_io's plugin does
  pytest-trio's job;
* with both plugins installed and no switch: nursery_io must change nothing.

Then pytest-trio's own test suite (from the installed package) runs under pytest-trio and
in trio mode, and must agree too.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

SUITE = Path(__file__).parent / "pytest_trio_suite"
REPO = Path(__file__).parent.parent

# What pytest-trio itself makes of the suite (checked against the reference session).
EXPECTED: dict[str, str] = {
    "suite_basics::test_async_test_runs_under_trio": "passed",
    "suite_basics::test_sniffio_says_trio": "passed",
    "suite_basics::test_sync_test_runs_normally": "passed",
    "suite_basics::test_assertion_failure": "failed",
    "suite_basics::test_explicit_marker": "passed",
    "suite_basics.TestMethods::test_async_method": "passed",
    "suite_basics.TestMethods::test_sync_method": "passed",
    "suite_basics::test_parametrized[0]": "passed",
    "suite_basics::test_parametrized[0.001]": "passed",
    "suite_basics::test_parametrized[0.002]": "passed",
    "suite_basics::test_skip_from_a_child_task": "skipped",
    "suite_basics::test_expected_failure_arrives_in_a_group": "failed",
    "suite_basics::test_expected_failure": "xfailed",
    "suite_basics::test_two_children_fail": "failed",
    "suite_basics::test_nursery_fixture_runs_background_tasks": "passed",
    "suite_basics::test_nursery_fixture_task_crash_fails_the_test": "failed",
    "suite_basics::test_memory_channel_fixture": "passed",
    "suite_failures::test_async_fixture_setup_fails": "failed",
    "suite_failures::test_async_fixture_teardown_fails": "failed",
    "suite_failures::test_test_and_teardown_both_fail": "failed",
    "suite_failures::test_background_crash_cancels_the_test": "failed",
    "suite_failures::test_the_crashed_test_was_cancelled": "passed",
    "suite_failures::test_setup_failure_cancels_other_setups": "failed",
    "suite_failures::test_the_other_setup_was_cancelled": "passed",
    "suite_failures::test_fixture_cancels_the_test_without_an_error": "failed",
    "suite_failures::test_fixture_yields_twice": "failed",
    "suite_failures::test_plain_fixture_setup_fails": "error in setup",
    "suite_failures::test_plain_fixture_teardown_fails": "error in teardown",
    "suite_failures::test_sync_test_uses_trio_fixture": "error in setup",
    "suite_failures::test_sync_test_uses_async_fixture": "error in setup",
    "suite_failures::test_module_scoped_async_fixture": "error in setup",
    "suite_failures::test_trio_fixture_fails": "failed",
    "suite_failures::test_sync_test_with_trio_marker": "failed",
    "suite_failures::test_two_clocks": "failed",
    "suite_fixtures::test_independent_fixtures_set_up_concurrently": "passed",
    "suite_fixtures::test_setup_and_teardown_overlap": "passed",
    "suite_fixtures::test_dependency_chain_in_order": "passed",
    "suite_fixtures::test_fixture_background_task_runs_during_test": "passed",
    "suite_fixtures::test_echo_service": "passed",
    "suite_fixtures::test_fixture_with_nursery_fixture": "passed",
    "suite_fixtures::test_trio_fixture_runs_inside_the_run": "passed",
    "suite_fixtures::test_context_is_shared_with_fixtures": "passed",
    "suite_fixtures::test_context_is_fresh_per_test": "passed",
    "suite_fixtures::test_async_fixture_values[x]": "passed",
    "suite_fixtures::test_async_fixture_values[y]": "passed",
    "suite_fixtures::test_async_trio_fixture": "passed",
    "suite_time::test_autojump_clock_skips_sleeps": "passed",
    "suite_time::test_mock_clock_stands_still": "passed",
    "suite_time::test_any_clock_argument_is_the_runs_clock": "passed",
    "suite_time::test_fail_after_raises_too_slow": "passed",
    "suite_time::test_fail_after_uncaught_fails_the_test": "failed",
    "suite_time::test_move_on_after_with_real_clock": "passed",
    "suite_time::test_deadline_in_a_fixture_covers_the_test": "failed",
    "suite_time.TestOverriddenClock::test_override_is_used": "passed",
}

# How each session is started: the command after "python", and extra environment.
PYTEST = ("-m", "pytest")
AS_TRIO = ("-m", "nursery_io", "run", "--as-trio", "-m", "pytest")
TRIO_MODE_SESSIONS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "flag, pytest-trio loaded first": ((*PYTEST, "-p", "trio", "--nursery-io-trio-mode"), {}),
    "flag, nursery_io loaded first": ((*PYTEST, "-p", "nursery_io", "--nursery-io-trio-mode"), {}),
    "ini option": ((*PYTEST, "-o", "nursery_io_trio_mode=true"), {}),
    "environment, pytest-trio loaded first": (
        (*PYTEST, "-p", "trio"),
        {"NURSERY_IO_TRIO_MODE": "1"},
    ),
    "environment, nursery_io loaded first": (
        (*PYTEST, "-p", "nursery_io"),
        {"NURSERY_IO_TRIO_MODE": "1"},
    ),
    "python -m nursery_io run --as-trio": (AS_TRIO, {}),
}
COEXISTENCE_SESSIONS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "both plugins, pytest-trio loaded first": ((*PYTEST, "-p", "trio"), {}),
    "both plugins, nursery_io loaded first": ((*PYTEST, "-p", "nursery_io"), {}),
}
REFERENCE: tuple[tuple[str, ...], dict[str, str]] = ((*PYTEST, "-p", "no:nursery_io"), {})

Outcome = tuple[str, tuple[tuple[str, str], ...]]


def run_session(
    directory: Path, command: tuple[str, ...], extra_env: dict[str, str], label: str
) -> dict[str, Outcome]:
    """Run pytest in ``directory`` and return ``{test: (outcome, reports)}`` from its
    JUnit XML, where reports are the (kind, message) of each failure, error or skip."""
    report = directory / f"junit-{re.sub(r'[^a-z]+', '-', label)}.xml"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.pop("NURSERY_IO_TRIO_MODE", None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra_env)
    result = subprocess.run(
        [sys.executable, *command, f"--junitxml={report}", "-q"],
        check=False,
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert report.exists(), f"{label}: no report\n{result.stdout}\n{result.stderr}"
    assert result.returncode in (0, 1), f"{label}:\n{result.stdout}\n{result.stderr}"
    return parse_junit(report)


def parse_junit(report: Path) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    for case in ET.parse(report).iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        parts: list[str] = []
        details: list[tuple[str, str]] = []
        for child in case:
            message = normalized(child.get("message") or "")
            if child.tag == "failure":
                parts.append("failed")
            elif child.tag == "error":
                parts.append("error in " + ("setup" if "on setup" in message else "teardown"))
            elif child.tag == "skipped":
                xfail = child.get("type") == "pytest.xfail"
                parts.append("xfailed" if xfail else "skipped")
                # pytest-trio drops the reason of a skip raised inside a nursery; nursery_io
                # keeps it.
                message = ""
            else:
                continue
            details.append((child.tag, message))
        outcomes[name] = ("+".join(parts) or "passed", tuple(details))
    return outcomes


def normalized(message: str) -> str:
    # The one text the two runtimes word differently, and object addresses.
    message = message.replace("nursery_io nursery", "Trio nursery")
    return re.sub(r"0x[0-9a-f]+", "0x?", message)


def differences(reference: dict[str, Outcome], other: dict[str, Outcome]) -> list[str]:
    found = []
    for name in sorted(set(reference) | set(other)):
        if reference.get(name) != other.get(name):
            found.append(
                f"{name}:\n  pytest-trio: {reference.get(name)}\n  here:        {other.get(name)}"
            )
    return found


@pytest.fixture(scope="module")
def suite_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Outside the repository, so that its pytest.ini (not pyproject.toml) configures it.
    directory = tmp_path_factory.mktemp("pytest_trio_suite") / "suite"
    shutil.copytree(SUITE, directory, ignore=shutil.ignore_patterns("__pycache__"))
    return directory


@pytest.fixture(scope="module")
def reference(suite_copy: Path) -> dict[str, Outcome]:
    outcomes = run_session(suite_copy, *REFERENCE, "reference")
    assert {name: outcome for name, (outcome, _) in outcomes.items()} == EXPECTED
    return outcomes


def test_the_suite_is_big_enough() -> None:
    assert len(EXPECTED) >= 30
    kinds = set(EXPECTED.values())
    assert {"passed", "failed", "error in setup", "error in teardown", "skipped"} <= kinds


@pytest.mark.parametrize("session", list(TRIO_MODE_SESSIONS))
def test_trio_mode_matches_pytest_trio(
    suite_copy: Path, reference: dict[str, Outcome], session: str
) -> None:
    command, env = TRIO_MODE_SESSIONS[session]
    outcomes = run_session(suite_copy, command, env, session)
    assert not differences(reference, outcomes), "\n".join(differences(reference, outcomes))


@pytest.mark.parametrize("session", list(COEXISTENCE_SESSIONS))
def test_installed_beside_pytest_trio_changes_nothing(
    suite_copy: Path, reference: dict[str, Outcome], session: str
) -> None:
    command, env = COEXISTENCE_SESSIONS[session]
    outcomes = run_session(suite_copy, command, env, session)
    assert not differences(reference, outcomes), "\n".join(differences(reference, outcomes))


# pytest-trio's own tests of its fixture machinery (the rest take minutes on a loaded
# machine, since each of them runs inner pytest sessions).
PYTEST_TRIO_OWN_TESTS = ("test_fixture_ordering.py", "test_async_yield_fixture.py")


@pytest.mark.timeout(600)
def test_pytest_trios_own_fixture_tests_in_trio_mode(tmp_path: Path) -> None:
    import pytest_trio

    # Copied as the package they are (their relative imports, and module names that
    # don't clash with the inner sessions' test files); the conftest's pytest_plugins
    # line moves to the ini file, since only a top-level conftest may have one.
    package = tmp_path / "pytest_trio_tests"
    shutil.copytree(
        Path(pytest_trio.__file__).parent / "_tests",
        package,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    conftest = package / "conftest.py"
    conftest.write_text(conftest.read_text().replace('pytest_plugins = ["pytester"]', ""))
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\naddopts = -p no:cacheprovider -p no:anyio -p pytester\n"
    )
    files = [f"pytest_trio_tests/{name}" for name in PYTEST_TRIO_OWN_TESTS]
    command, env = REFERENCE
    pytest_trio_outcomes = run_session(tmp_path, (*command, *files), env, "pytest-trio")
    trio_mode_outcomes = run_session(tmp_path, (*AS_TRIO, *files), {}, "trio mode")
    assert len(pytest_trio_outcomes) >= 14
    assert all(outcome == "passed" for outcome, _ in pytest_trio_outcomes.values())
    assert not differences(pytest_trio_outcomes, trio_mode_outcomes)
