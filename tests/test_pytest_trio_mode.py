"""Trio mode in the pytest plugin: switching it on, taking over from pytest-trio, and
undoing the switch. Every session here runs in a subprocess, since trio mode changes what
``import trio`` gives for the whole process. (The big comparison of a pytest-trio suite
under both runtimes is tests/test_pytest_trio_suite.py.)"""

from __future__ import annotations

import sys

import pytest

pytest_plugins = ["pytester"]

TRIO_MODE_INI = "[pytest]\ntrio_mode = true\naddopts = -p no:cacheprovider -p no:anyio\n"


def run_trio_mode(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("--nursery-io-trio-mode", *args)


def test_trio_run_other_than_trio_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini(TRIO_MODE_INI + "trio_run = qtrio\n")
    pytester.makepyfile("async def test_it():\n    pass\n")
    result = run_trio_mode(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*trio_run = 'qtrio' can't be used in nursery_io's trio mode*"])
    # An explicit "trio" is fine.
    pytester.makeini(TRIO_MODE_INI + "trio_run = trio\n")
    run_trio_mode(pytester).assert_outcomes(passed=1)


def test_works_with_pytest_trio_disabled(pytester: pytest.Pytester) -> None:
    # With pytest-trio's plugin blocked, trio mode still knows its ini options, its marker
    # (--strict-markers) and trio_fixture.
    pytester.makeini(
        TRIO_MODE_INI.replace("-p no:anyio", "-p no:anyio -p no:trio --strict-markers")
    )
    pytester.makepyfile(
        """
        import pytest, sniffio, trio
        from pytest_trio import trio_fixture

        @trio_fixture
        def now():
            return trio.current_time()

        async def test_automarked(now, autojump_clock):
            assert sniffio.current_async_library() == "trio"
            await trio.sleep(5)
            assert trio.current_time() == now + 5

        @pytest.mark.trio
        async def test_marked():
            assert trio.__name__ == "nursery_io"
        """
    )
    run_trio_mode(pytester).assert_outcomes(passed=2)


def test_enable_trio_mode_from_a_conftest(pytester: pytest.Pytester) -> None:
    # pytest-trio's other way to turn its trio mode on.
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider -p no:anyio\n")
    pytester.makeconftest("from pytest_trio.enable_trio_mode import *\n")
    pytester.makepyfile(
        """
        import trio

        async def test_it(nursery):
            assert trio.__name__ == "nursery_io"
            nursery.start_soon(trio.sleep_forever)
        """
    )
    run_trio_mode(pytester).assert_outcomes(passed=1)


def test_nursery_io_marked_tests_keep_nursery_io_reporting(pytester: pytest.Pytester) -> None:
    # In trio mode, pytest-trio's tests report errors wrapped as pytest-trio does;
    # nursery_io's own tests keep reporting a single error as itself.
    pytester.makeini(TRIO_MODE_INI)
    pytester.makepyfile(
        """
        import pytest

        async def test_trio_style():
            raise KeyError("trio style")

        @pytest.mark.nursery_io
        async def test_nursery_io_style():
            raise KeyError("nursery_io style")
        """
    )
    result = run_trio_mode(pytester, "-rf", "-vv")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "FAILED *::test_trio_style - KeyError('trio style') [single exception in Excep*",
            "FAILED *::test_nursery_io_style - KeyError: 'nursery_io style'",
        ]
    )


def test_hypothesis_in_trio_mode(pytester: pytest.Pytester) -> None:
    # Importing Hypothesis runs trio's Hypothesis entry point, which in trio mode reaches
    # nursery_io's stand-in for trio._core._run.
    pytester.makeini(TRIO_MODE_INI)
    pytester.makepyfile(
        """
        import trio
        from hypothesis import given, settings, strategies

        @settings(max_examples=10, deadline=None)
        @given(strategies.integers())
        async def test_given(value):
            await trio.sleep(0)
            assert trio.lowlevel.current_task() is not None
        """
    )
    run_trio_mode(pytester).assert_outcomes(passed=1)


def test_modules_still_holding_the_real_trio_are_reported(pytester: pytest.Pytester) -> None:
    # A plugin imported with -p comes before any hook: it sees the real trio, and keeps it.
    pytester.makepyfile(early_plugin="import trio\n\nREAL_TRIO = trio\n")
    pytester.makeini(TRIO_MODE_INI)
    pytester.makepyfile("async def test_it():\n    pass\n")
    result = run_trio_mode(pytester, "-p", "early_plugin")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(
        ["*imported the real trio before the switch and still use it: early_plugin*"]
    )


def test_switch_is_undone_after_an_in_process_session(pytester: pytest.Pytester) -> None:
    pytester.makeini(TRIO_MODE_INI)
    pytester.makepyfile(
        test_inner="""
        import sniffio, trio

        from pytest_trio import trio_fixture

        @trio_fixture
        def now():
            return trio.current_time()

        async def test_it(now):
            assert trio.__name__ == "nursery_io"
            assert sniffio.current_async_library() == "trio"
        """
    )
    pytester.makepyfile(
        driver="""
        import sys
        import pytest
        import trio  # the real one, imported before the session
        import pytest_trio.plugin
        real_plugin = pytest_trio.plugin

        assert pytest.main(["--nursery-io-trio-mode", "-q", "test_inner.py"]) == 0
        import trio as after
        import trio.testing
        import nursery_io, sniffio
        assert after is trio and trio.__name__ == "trio", after
        assert trio.testing.__name__ == "trio.testing"
        assert not any(getattr(f, "_nursery_io_trio_alias", False) for f in sys.meta_path)
        import pytest_trio.plugin
        assert pytest_trio.plugin is real_plugin and pytest_trio.plugin.trio is trio

        async def library():
            return sniffio.current_async_library()

        assert nursery_io.run(library) == "nursery_io"
        assert trio.run(library) == "trio"
        print("UNDONE")
        """
    )
    result = pytester.run(sys.executable, "driver.py")
    assert result.ret == 0, result.stderr.str()
    result.stdout.fnmatch_lines(["*1 passed*", "UNDONE"])


def test_pytest_timeout_reports_a_timeout(pytester: pytest.Pytester) -> None:
    # pytest-timeout's signal handler raises while the run waits for events; that's
    # reported as the timeout, not as an internal error of the run.
    pytester.makeini("[pytest]\nnursery_io_mode = true\naddopts = -p no:trio -p no:anyio\n")
    pytester.makepyfile(
        """
        import pytest, nursery_io

        @pytest.mark.timeout(0.5)
        async def test_hangs():
            await nursery_io.sleep_forever()

        async def test_next_one_runs():
            await nursery_io.sleep(0)
        """
    )
    result = pytester.runpytest_subprocess("-rf", "-vv")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["FAILED *::test_hangs - Failed: Timeout (>0.5s) from pytest-timeout*"]
    )
    result.stdout.no_fnmatch_line("*InternalError*")
