"""The public API's shape, compared with Trio 0.35's: which classes can be subclassed and
weakly referenced, the parameter names and kinds of every public function and method,
deprecation warnings, and the texts of errors raised outside a run.

Each check walks the public modules of both libraries the same way, so a class or
function added later is covered without touching this file.
"""

from __future__ import annotations

import importlib
import inspect
import io
import queue
import time
import types
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol
from unittest import mock

import pytest
import trio

import nursery_io
from nursery_io._core import _context

from .harness import run_both

PUBLIC_MODULES = ("", ".lowlevel", ".testing", ".abc", ".socket", ".to_thread", ".from_thread")
LIBRARIES = {"trio": trio, "nursery_io": nursery_io}


def public_classes(library: str) -> Iterator[tuple[str, type]]:
    """(``"<module>:<name>"``, class) for each public class the library defines itself."""
    for suffix in PUBLIC_MODULES:
        module = importlib.import_module(library + suffix)
        for name, value in vars(module).items():
            if isinstance(value, type) and not name.startswith("_"):
                yield f"{suffix or '.'}:{name}", value


def cannot_subclass(cls: type) -> bool:
    try:
        types.new_class("Subclass", (cls,))
    except TypeError:
        return True
    return False


def subclassable_but_should_not_be(library: str) -> set[str]:
    """Trio's rule: every public class is final except ABCs, direct Protocol children,
    exceptions, the conceptually abstract Instrument and SocketType, Path (which the
    platform paths extend) and the *Statistics classes."""
    lib = LIBRARIES[library]
    allowed = {lib.abc.Instrument, lib.socket.SocketType, lib.Path}
    found = set()
    for key, cls in public_classes(library):
        if (
            inspect.isabstract(cls)
            or Protocol in cls.__bases__
            or issubclass(cls, BaseException)
            or cls in allowed
            or cls.__name__.endswith("Statistics")
        ):
            continue
        if not cannot_subclass(cls):
            found.add(key)
    return found


@pytest.mark.parametrize("library", LIBRARIES)
def test_public_classes_are_final(library: str) -> None:
    assert subclassable_but_should_not_be(library) == set()


def test_subclassing_a_final_class_fails_as_in_trio() -> None:
    def refusal(cls: type) -> str:
        with pytest.raises(TypeError) as info:

            class Sub(cls):  # type: ignore[misc,valid-type]
                pass

        return str(info.value)

    for name in ("Event", "Lock", "StrictFIFOLock", "CancelScope", "Nursery", "PosixPath"):
        ours, theirs = getattr(nursery_io, name), getattr(trio, name)
        assert refusal(ours) == refusal(theirs)
        assert refusal(ours) == (
            f"{__name__}.test_subclassing_a_final_class_fails_as_in_trio.<locals>.refusal."
            "<locals>.Sub does not support subclassing"
        )
        # typing.final's marker, for type checkers and introspection.
        assert ours.__final__ is True
    assert not cannot_subclass(nursery_io.Path)
    assert not cannot_subclass(nursery_io.abc.Instrument)


def test_same_classes_are_weakly_referenceable() -> None:
    def weak(library: str) -> dict[str, bool]:
        return {key: cls.__weakrefoffset__ != 0 for key, cls in public_classes(library)}

    ours, theirs = weak("nursery_io"), weak("trio")
    differ = {key for key in ours.keys() & theirs.keys() if ours[key] != theirs[key]}
    assert differ == set()
    # and it works on real objects
    for obj in (
        nursery_io.CancelScope(),
        nursery_io.lowlevel.RunVar("x"),
        nursery_io.testing.MemorySendStream(),
        nursery_io.testing.MemoryReceiveStream(),
    ):
        assert weakref.ref(obj)() is obj


# ----- parameter names and kinds -----


def callables(library: str) -> dict[str, Callable[..., Any]]:
    """Public functions, and public methods (plus ``__init__``) of public classes."""
    found: dict[str, Callable[..., Any]] = {}
    for suffix in PUBLIC_MODULES:
        module = importlib.import_module(library + suffix)
        for name, value in vars(module).items():
            key = f"{suffix or '.'}:{name}"
            if name.startswith("_") or isinstance(value, types.ModuleType):
                continue
            if isinstance(value, type):
                if value.__module__.split(".")[0] != library:
                    continue  # re-exported from the standard library
                for attr, member in inspect.getmembers(value):
                    if (attr == "__init__" or not attr.startswith("_")) and (
                        callable(member) and not isinstance(member, type)
                    ):
                        found[f"{key}.{attr}"] = member
            elif callable(value):
                found[key] = value
    return found


def shape(fn: Callable[..., Any]) -> tuple[Any, ...] | None:
    """What a caller relies on: names of the parameters that can be passed by name, in
    order; kinds; keyword-only names as a set. None if there is no signature."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    positional = [
        (p.name if p.kind is not p.POSITIONAL_ONLY else "/", p.kind)
        for p in parameters
        if p.kind is not p.KEYWORD_ONLY
    ]
    keyword_only = frozenset(p.name for p in parameters if p.kind is p.KEYWORD_ONLY)
    return tuple(positional), keyword_only


# Differences we keep, each with its reason.
SIGNATURE_DIFFERENCES = {
    ".from_thread:run": "also accepts token= (nursery_io's name for trio_token)",
    ".from_thread:run_sync": "also accepts token= (nursery_io's name for trio_token)",
    ".lowlevel:RunStatistics.__init__": "two more fields: kernel_polls and task_steps",
}


def test_signatures_match_trio() -> None:
    ours, theirs = callables("nursery_io"), callables("trio")
    differ = {}
    for key in sorted(ours.keys() & theirs.keys()):
        owner, _, attr = key.rpartition(".")
        if attr == "__init__" and _trio_class(owner) is not None:
            if type(_trio_class(owner)).__name__ == "NoPublicConstructor":
                continue  # users never call it
        our_shape, their_shape = shape(ours[key]), shape(theirs[key])
        if our_shape is not None and their_shape is not None and our_shape != their_shape:
            differ[key] = (our_shape, their_shape)
    unexpected = {k: v for k, v in differ.items() if k not in SIGNATURE_DIFFERENCES}
    assert unexpected == {}


def _trio_class(key: str) -> type | None:
    suffix, _, name = key.partition(":")
    module = importlib.import_module("trio" + ("" if suffix == "." else suffix))
    value = getattr(module, name, None)
    return value if isinstance(value, type) else None


def test_signature_comparison_sees_differences() -> None:
    # The comparison itself: a renamed parameter, a keyword made positional-only, an
    # extra keyword are all differences; the order of keyword-only parameters is not.
    def base(fd: int, *, a: int = 0, b: int = 0) -> None: ...
    def renamed(obj: int, *, a: int = 0, b: int = 0) -> None: ...
    def positional_only(fd: int, /, *, a: int = 0, b: int = 0) -> None: ...
    def extra(fd: int, *, a: int = 0, b: int = 0, c: int = 0) -> None: ...
    def reordered(fd: int, *, b: int = 0, a: int = 0) -> None: ...

    for other in (renamed, positional_only, extra):
        assert shape(other) != shape(base)
    assert shape(reordered) == shape(base)


# ----- deprecations and messages -----


def _warnings_from(call: Callable[[], object]) -> list[tuple[str, str, str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [(type(w.message).__name__, str(w.message), w.filename) for w in caught]


def test_strict_exception_groups_false_warns_as_in_trio() -> None:
    def scenario(lib: Any) -> list[tuple[str, str, str]]:
        async def loose_nursery() -> None:
            async with lib.open_nursery(strict_exception_groups=False):
                pass
            async with lib.open_nursery(strict_exception_groups=True):
                pass
            async with lib.open_nursery():
                pass

        return [
            *_warnings_from(lambda: lib.run(loose_nursery)),
            *_warnings_from(lambda: lib.run(loose_nursery, strict_exception_groups=False)),
            *_warnings_from(lambda: lib.run(loose_nursery, strict_exception_groups=True)),
        ]

    ours, theirs = scenario(nursery_io), scenario(trio)
    assert len(theirs) == 4  # one per loose nursery (three runs) and one for run()
    assert ours == theirs  # category, text, and the line it points at (this file)
    assert theirs[0][2] == __file__


def test_strict_exception_groups_false_warns_for_a_guest_run() -> None:
    def guest_run(lib: Any) -> list[tuple[str, str, str]]:
        async def main() -> str:
            await lib.lowlevel.checkpoint()
            return "ok"

        def start_and_host() -> None:
            todo: queue.Queue[Callable[[], object]] = queue.Queue()
            done: list[object] = []
            lib.lowlevel.start_guest_run(
                main,
                run_sync_soon_threadsafe=todo.put,
                done_callback=done.append,
                strict_exception_groups=False,
            )
            while not done:
                todo.get()()

        return _warnings_from(start_and_host)

    assert guest_run(nursery_io) == guest_run(trio)
    assert len(guest_run(trio)) == 1


def test_strict_exception_groups_false_warns_for_a_stepped_run() -> None:
    async def main() -> None:
        await nursery_io.lowlevel.checkpoint()

    def stepped() -> None:
        run = nursery_io.lowlevel.SteppedRun(main, strict_exception_groups=False)
        while not run.done:
            run.turn()

    [(category, message, filename)] = _warnings_from(stepped)
    assert category == "TrioDeprecationWarning"
    assert message.startswith("SteppedRun(..., strict_exception_groups=False) is deprecated")
    assert filename == __file__


def test_outside_a_run_the_message_begins_as_trios() -> None:
    def message(fn: Callable[[], object]) -> str:
        with pytest.raises(RuntimeError) as info:
            result = fn()
            if hasattr(result, "send"):  # a coroutine, or a generator-based one
                try:
                    result.send(None)
                finally:
                    result.close()
        return str(info.value)

    for lib in (trio, nursery_io):
        for fn in (
            lib.current_time,
            lib.current_effective_deadline,
            lib.lowlevel.current_task,
            lib.lowlevel.current_root_task,
            lib.lowlevel.current_trio_token,
            lib.lowlevel.checkpoint_if_cancelled,
            lambda lib=lib: lib.CancelScope().__enter__(),
        ):
            assert message(fn).startswith("must be called from async context")


# ----- files and paths -----


def test_wrapped_file_methods_are_named_as_in_trio() -> None:
    for wrapped in (io.BytesIO(), mock.Mock(spec_set=io.StringIO)):
        ours, theirs = nursery_io.wrap_file(wrapped).read, trio.wrap_file(wrapped).read
        assert (ours.__name__, ours.__qualname__) == (theirs.__name__, theirs.__qualname__)
        assert theirs.__doc__ is not None
        assert ours.__doc__ is not None
        assert ours.__doc__.startswith(theirs.__doc__.rstrip("."))


def test_path_methods_name_their_pathlib_method() -> None:
    for name in ("resolve", "exists", "iterdir", "open", "cwd", "stat"):
        method = getattr(nursery_io.Path("."), name)
        assert method.__qualname__ == getattr(trio.Path("."), name).__qualname__
        assert f"Path.{name}" in method.__doc__


def test_path_classes_as_in_trio() -> None:
    for lib in (trio, nursery_io):
        assert type(lib.Path("a")) is lib.PosixPath
        assert not issubclass(lib.Path, __import__("pathlib").PurePosixPath)
        assert issubclass(lib.WindowsPath, lib.Path)

    async def windows_path(lib: Any) -> list[object]:
        path = lib.WindowsPath("a") / "b"
        trace: list[object] = [str(path), type(path).__name__, str(await path.cwd())[:1]]
        for method in ("exists", "resolve", "stat", "iterdir", "glob"):
            args = ("*",) if method == "glob" else ()
            try:
                await getattr(path, method)(*args)
            except NotImplementedError as exc:
                trace.append((method, str(exc)))
        return trace

    run_both(windows_path)


def test_reprs_name_trio_in_trio_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    assert repr(nursery_io.Path("x")) == "nursery_io.Path('x')"
    monkeypatch.setattr(_context, "library_name", "trio")
    assert repr(nursery_io.Path("x")) == repr(trio.Path("x"))


# ----- texts and behaviours Trio's own tests rely on -----


def test_unentered_scope_deadline_errors_as_in_trio() -> None:
    def messages(lib: Any) -> list[str]:
        found = []
        relative, absolute = lib.move_on_after(5), lib.move_on_at(5)
        for action in (
            lambda: relative.deadline,
            lambda: setattr(relative, "deadline", 7),
            lambda: absolute.relative_deadline,
            lambda: setattr(absolute, "relative_deadline", 7),
        ):
            with pytest.raises(RuntimeError) as info:
                action()
            found.append(str(info.value))
        assert relative.relative_deadline == 5  # nothing changed
        return found

    ours, theirs = messages(nursery_io), messages(trio)
    # Trio's tests match the start of the first two and the whole of the last two.
    for our, their in zip(ours[:2], theirs[:2], strict=True):
        assert our.startswith(their.rstrip("."))
    assert ours[2:] == theirs[2:]


def test_two_clocks_refused_with_trios_text() -> None:
    def refusal(lib: Any) -> str:
        async def busy(*, first: object, second: object) -> None:
            raise AssertionError("not reached")

        with pytest.raises(ValueError) as info:
            lib.testing.trio_test(busy)(
                first=lib.testing.MockClock(), second=lib.testing.MockClock()
            )
        return str(info.value)

    assert refusal(nursery_io) == refusal(trio)


def test_raising_deliver_callback_reported_as_in_trio(capfd: pytest.CaptureFixture[str]) -> None:
    def broken_deliver(_: object) -> None:
        raise RuntimeError("don't do this")

    for lib in (trio, nursery_io):
        lib.lowlevel.start_thread_soon(lambda: None, broken_deliver)
        # The report is printed by the worker after the callback raised: wait for it.
        err = ""
        deadline = time.monotonic() + 10
        while "don't do this" not in err and time.monotonic() < deadline:
            time.sleep(0.01)
            err += capfd.readouterr().err
        assert "don't do this" in err
        assert "Exception while delivering result of thread" in err


def test_ki_handler_installed_despite_damaged_thread_table() -> None:
    import signal
    import threading

    def handler_in_run(lib: Any) -> bool:
        async def main() -> bool:
            return signal.getsignal(signal.SIGINT) is not signal.default_int_handler

        table = threading._active  # type: ignore[attr-defined]
        ident = threading.main_thread().ident
        original = table.pop(ident)
        try:
            return bool(lib.run(main))
        finally:
            table[ident] = original

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert handler_in_run(nursery_io) == handler_in_run(trio) is True


async def test_process_reaped_behind_its_back_reports_its_exit() -> None:
    # Trio's tests reap the child through Process._proc (the Popen) and then expect
    # returncode and the pidfd bookkeeping to catch up.
    import sys

    process = await nursery_io.lowlevel.open_process(
        [sys.executable, "-c", "import time; time.sleep(60)"]
    )
    process.kill()
    process._proc.wait()
    assert process.returncode is not None
    assert "exited" in repr(process)
    assert process._pidfd is None
