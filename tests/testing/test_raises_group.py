"""testing.RaisesGroup / testing.Matcher: deprecated as in Trio, built on pytest's.

Compared side by side with ``trio.testing``: the deprecation warning, constructor errors,
reprs, what matches and what doesn't, and how a mismatch fails. (The explanation inside a
failure is pytest's wording, so only its start is compared.)
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
import trio
import trio.testing

import nursery_io
import nursery_io.testing

TESTING = [trio.testing, nursery_io.testing]


def _names(testing: ModuleType) -> tuple[Any, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return testing.RaisesGroup, testing.Matcher


def _outcome(fn: Callable[[], object]) -> Any:
    try:
        return ("returned", fn())
    except Exception as exc:
        return ("raised", type(exc).__name__, str(exc))


def _both(fn: Callable[[Any, Any], object]) -> tuple[Any, Any]:
    """``fn(RaisesGroup, Matcher)`` with Trio's classes and with ours."""
    trio_result, our_result = (_outcome(lambda t=t: fn(*_names(t))) for t in TESTING)
    return trio_result, our_result


@pytest.mark.parametrize("name", ["RaisesGroup", "Matcher"])
def test_deprecated_on_access_like_trio(name: str) -> None:
    messages = []
    for testing in TESTING:
        with pytest.warns(DeprecationWarning) as record:
            getattr(testing, name)
        (warning,) = record
        assert type(warning.message) is DeprecationWarning
        assert warning.filename == __file__
        messages.append(str(warning.message))
    assert messages[0] == messages[1].replace("nursery_io.", "trio.")
    assert "pytest.Raises" in messages[1]


def test_not_listed_and_pytest_loaded_only_on_use() -> None:
    assert "RaisesGroup" not in nursery_io.testing.__all__
    with pytest.raises(AttributeError, match="no attribute 'Raises'"):
        nursery_io.testing.Raises  # noqa: B018
    code = (
        "import sys, warnings, nursery_io.testing\n"
        "assert 'pytest' not in sys.modules\n"
        "warnings.simplefilter('ignore')\n"
        "nursery_io.testing.RaisesGroup\n"
        "assert 'pytest' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda RG, M: RG(ValueError, TypeError, allow_unwrapped=True),
        lambda RG, M: RG(RG(ValueError), allow_unwrapped=True),
        lambda RG, M: RG(ValueError, allow_unwrapped=True, match="x"),
        lambda RG, M: RG(ValueError, allow_unwrapped=True, check=bool),
        lambda RG, M: RG(RG(ValueError), flatten_subgroups=True),
        lambda RG, M: RG(1),
        lambda RG, M: RG(ValueError, "x"),
        lambda RG, M: M(),
        lambda RG, M: M(object),
        lambda RG, M: M(match="("),
        lambda RG, M: repr(RG(ValueError, M(TypeError, match="a+", check=bool))),
        lambda RG, M: repr(RG(RG(OSError), allow_unwrapped=False, flatten_subgroups=False)),
        lambda RG, M: repr(RG(KeyError, allow_unwrapped=True)),
        lambda RG, M: repr(RG(KeyError, flatten_subgroups=True, match=re.compile("x", re.I))),
        lambda RG, M: repr(M(match="")),
        lambda RG, M: repr(RG(ValueError, check=bool)),
        lambda RG, M: repr(RG(ValueError, check=lambda g: True)),
        lambda RG, M: M(exception_type=KeyError).exception_type,
        lambda RG, M: RG(ValueError, M(KeyboardInterrupt)).is_baseexceptiongroup,
        lambda RG, M: RG(ValueError).is_baseexceptiongroup,
        lambda RG, M: RG(ValueError).expected_type(),
        lambda RG, M: RG(KeyboardInterrupt, RG(ValueError)).expected_type(),
    ],
)
def test_construction_like_trio(make: Callable[[Any, Any], object]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. no "match='' always matches" warning
        trio_result, our_result = _both(make)
    assert our_result == trio_result


EG = ExceptionGroup


@pytest.mark.parametrize(
    ("make", "exc"),
    [
        (lambda RG, M: RG(ValueError), EG("", [ValueError()])),
        (lambda RG, M: RG(ValueError), EG("", [TypeError()])),
        (lambda RG, M: RG(ValueError), ValueError()),
        (lambda RG, M: RG(ValueError, allow_unwrapped=True), ValueError()),
        (lambda RG, M: RG(ValueError, TypeError), EG("", [TypeError(), ValueError()])),
        (lambda RG, M: RG(ValueError), EG("", [ValueError(), ValueError()])),
        (lambda RG, M: RG(ValueError), EG("", [EG("", [ValueError()])])),
        (lambda RG, M: RG(ValueError, flatten_subgroups=True), EG("", [EG("", [ValueError()])])),
        (lambda RG, M: RG(RG(ValueError)), EG("", [EG("", [ValueError()])])),
        (lambda RG, M: RG(ValueError, match="^hi$"), EG("hi", [ValueError()])),
        (lambda RG, M: RG(ValueError, match="^hi$"), EG("ho", [ValueError()])),
        (lambda RG, M: RG(M(ValueError, match="x")), EG("", [ValueError("x")])),
        (lambda RG, M: RG(M(ValueError, match="x")), EG("", [ValueError("y")])),
        (lambda RG, M: RG(M(check=lambda e: e.args == (1,))), EG("", [KeyError(1)])),
        (lambda RG, M: RG(M(check=lambda e: e.args == (1,))), EG("", [KeyError(2)])),
        (
            lambda RG, M: RG(ValueError, check=lambda g: len(g.message) == 3),
            EG("abc", [ValueError()]),
        ),
        (lambda RG, M: RG(KeyboardInterrupt), BaseExceptionGroup("", [KeyboardInterrupt()])),
        (lambda RG, M: M(ValueError), ValueError()),
        (lambda RG, M: M(ValueError), TypeError()),
        (lambda RG, M: M(match="abc"), ValueError("xabcx")),
    ],
)
def test_matches_like_trio(make: Callable[[Any, Any], Any], exc: BaseException) -> None:
    trio_result, our_result = _both(lambda RG, M: make(RG, M).matches(exc))
    assert our_result == trio_result


def test_check_reprs_follow_trio_with_hypothesis_loaded() -> None:
    # Trio's hypothesis plugin prints `check` callables by their source once hypothesis
    # is imported; ours must agree either way.
    import hypothesis  # noqa: F401

    trio_result, our_result = _both(lambda RG, M: repr(RG(M(check=lambda e: True))))
    assert our_result == trio_result == ("returned", "RaisesGroup(Matcher(check='lambda e: True'))")


def test_fails_with_assertion_error_like_trio() -> None:
    for testing in TESTING:
        RaisesGroup, Matcher = _names(testing)
        with pytest.raises(
            AssertionError, match=r"^DID NOT RAISE any exception, expected ExceptionGroup\("
        ):
            with RaisesGroup(ValueError, Matcher(TypeError)):
                pass
        with pytest.raises(AssertionError, match=r"^Raised exception group did not match: "):
            with RaisesGroup(ValueError):
                raise ExceptionGroup("", [TypeError()])
        with pytest.raises(AssertionError, match=r"^Raised exception \(group\) did not match: "):
            with RaisesGroup(ValueError, allow_unwrapped=True):
                raise TypeError
        # A mismatch reports; it doesn't swallow the exception silently.
        with RaisesGroup(ValueError) as info:
            raise ExceptionGroup("caught", [ValueError("inner")])
        assert info.value.message == "caught"
        assert info.type is ExceptionGroup
        with RaisesGroup(ValueError, allow_unwrapped=True) as info:
            raise ValueError("bare")
        assert str(info.value) == "bare"


async def test_works_in_a_nursery_io_test() -> None:
    RaisesGroup, Matcher = _names(nursery_io.testing)

    async def fail() -> None:
        raise ValueError("boom")

    with RaisesGroup(Matcher(ValueError, match="^boom$")):
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(fail)
