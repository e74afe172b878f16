"""KeyboardInterrupt: real SIGINTs (to a child process and to ourselves) and protection."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import nursery_io
from nursery_io import lowlevel
from nursery_io.testing import wait_all_tasks_blocked

# ----- a real SIGINT delivered to a separate process running a nursery_io program -----

_CHILD_PROGRAM = textwrap.dedent(
    """
    import faulthandler
    import sys
    import nursery_io
    from nursery_io import lowlevel

    # Diagnostics, shown only if the test fails: the signal state this process started
    # with, and every thread's stack if it is still running long after the SIGINT.
    with open("/proc/self/status") as status:
        sys.stderr.write("".join(line for line in status if line.startswith("Sig")))
    faulthandler.dump_traceback_later(30, exit=True)

    # nursery_io loads most names on first use; touch the ones the scenarios use now, so
    # that no import is still running in user code when the SIGINT arrives.
    nursery_io.sleep, nursery_io.open_nursery, nursery_io.Cancelled

    def say(text):
        print(text, flush=True)

    @lowlevel.enable_ki_protection
    def say_ready_protected():
        # A SIGINT arriving while "ready" is still being printed must not interrupt the
        # print itself: the scenarios below are about where the task is blocked.
        say("ready")

    def wait_for_go():
        # Blocks in a read syscall; the parent sends SIGINT, then writes "go".
        assert sys.stdin.readline() == "go\\n"

    async def unprotected_busy_loop():
        try:
            say("ready")
            while True:
                pass
        except KeyboardInterrupt:
            say(f"interrupted in user code, protected={lowlevel.currently_ki_protected()}")
            raise

    @lowlevel.enable_ki_protection
    async def protected_section():
        say("ready")
        wait_for_go()
        say("protected code finished")
        try:
            await nursery_io.sleep(0)
        except KeyboardInterrupt:
            say("interrupted at checkpoint")
            raise

    async def restricted_to_checkpoints():
        say("ready")
        wait_for_go()
        say("user code finished")
        try:
            await nursery_io.sleep(0)
        except KeyboardInterrupt:
            say("interrupted at checkpoint")
            raise

    async def sleeping():
        try:
            say_ready_protected()
            await nursery_io.sleep(1000)
        finally:
            say(f"main cleanup, in task={lowlevel.in_task()}")

    async def child_sleeping():
        async def child():
            try:
                say_ready_protected()
                await nursery_io.sleep(1000)
            except nursery_io.Cancelled:
                say("child cancelled")
                raise

        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(child)

    scenario = sys.argv[1]
    kwargs = {}
    if scenario == "restricted_to_checkpoints":
        kwargs["restrict_keyboard_interrupt_to_checkpoints"] = True
    try:
        nursery_io.run(globals()[scenario], **kwargs)
    except KeyboardInterrupt:
        say("run raised KeyboardInterrupt")
    except BaseExceptionGroup as group:
        say(f"run raised a group of {[type(e).__name__ for e in group.exceptions]}")
    else:
        say("run returned")
    """
)


def _interrupt_child(tmp_path: Path, scenario: str, send_go: bool) -> list[str]:
    script = tmp_path / "ki_child.py"
    script.write_text(_CHILD_PROGRAM)
    proc = subprocess.Popen(
        [sys.executable, str(script), scenario],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)
        if send_go:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return out.splitlines()


def test_sigint_interrupts_unprotected_user_code_immediately(tmp_path: Path) -> None:
    lines = _interrupt_child(tmp_path, "unprotected_busy_loop", send_go=False)
    assert lines == [
        "interrupted in user code, protected=False",
        "run raised KeyboardInterrupt",
    ]


def test_sigint_in_protected_code_waits_for_the_next_checkpoint(tmp_path: Path) -> None:
    lines = _interrupt_child(tmp_path, "protected_section", send_go=True)
    assert lines == [
        "protected code finished",
        "interrupted at checkpoint",
        "run raised KeyboardInterrupt",
    ]


def test_restrict_keyboard_interrupt_to_checkpoints(tmp_path: Path) -> None:
    lines = _interrupt_child(tmp_path, "restricted_to_checkpoints", send_go=True)
    assert lines == [
        "user code finished",
        "interrupted at checkpoint",
        "run raised KeyboardInterrupt",
    ]


def test_sigint_wakes_a_sleeping_main_task(tmp_path: Path) -> None:
    lines = _interrupt_child(tmp_path, "sleeping", send_go=False)
    assert lines == ["main cleanup, in task=True", "run raised KeyboardInterrupt"]


def test_sigint_while_children_run_cancels_them(tmp_path: Path) -> None:
    lines = _interrupt_child(tmp_path, "child_sleeping", send_go=False)
    assert lines == ["child cancelled", "run raised a group of ['KeyboardInterrupt']"]


# ----- SIGINT raised in this process (we are the main thread under pytest) -----


def _needs_main_thread() -> None:
    if threading.current_thread() is not threading.main_thread():  # pragma: no cover
        pytest.skip("signal handlers live in the main thread")


def test_in_process_sigint_unprotected_and_protected() -> None:
    _needs_main_thread()
    events = []

    @lowlevel.enable_ki_protection
    def protected() -> str:
        signal.raise_signal(signal.SIGINT)
        return "survived"

    async def main() -> None:
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        events.append(protected())
        try:
            await nursery_io.sleep(0)
        except KeyboardInterrupt:
            events.append("interrupted at checkpoint")
        # delivered once only
        await nursery_io.sleep(0)
        events.append("carried on")

    nursery_io.run(main)
    assert events == ["survived", "interrupted at checkpoint", "carried on"]


def test_in_process_restricted_run_defers_to_checkpoint() -> None:
    _needs_main_thread()
    events = []

    async def main() -> None:
        signal.raise_signal(signal.SIGINT)
        events.append("not interrupted")
        with pytest.raises(KeyboardInterrupt):
            await lowlevel.checkpoint_if_cancelled()
        events.append("interrupted at cancel point")

    nursery_io.run(main, restrict_keyboard_interrupt_to_checkpoints=True)
    assert events == ["not interrupted", "interrupted at cancel point"]


def test_pending_interrupt_reaches_main_even_inside_a_shield() -> None:
    _needs_main_thread()

    @lowlevel.enable_ki_protection
    def interrupt() -> None:
        signal.raise_signal(signal.SIGINT)

    async def main() -> None:
        with nursery_io.CancelScope(shield=True):
            interrupt()
            with pytest.raises(KeyboardInterrupt):
                await nursery_io.sleep(1000)

    nursery_io.run(main)


def test_interrupt_still_pending_when_main_returns_is_raised_by_run() -> None:
    _needs_main_thread()

    @lowlevel.enable_ki_protection
    async def main() -> int:
        signal.raise_signal(signal.SIGINT)
        return 1

    with pytest.raises(KeyboardInterrupt):
        nursery_io.run(main)


def test_interrupt_pending_with_main_error_chains_it() -> None:
    _needs_main_thread()

    @lowlevel.enable_ki_protection
    async def main() -> None:
        signal.raise_signal(signal.SIGINT)
        raise ValueError("main failed")

    with pytest.raises(KeyboardInterrupt) as info:
        nursery_io.run(main)
    assert isinstance(info.value.__context__, ValueError)


def test_sigint_handler_installed_only_during_run() -> None:
    _needs_main_thread()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    seen = []

    async def main() -> None:
        seen.append(signal.getsignal(signal.SIGINT))

    nursery_io.run(main)
    assert seen[0] is not signal.default_int_handler
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_custom_sigint_handler_is_left_alone() -> None:
    _needs_main_thread()
    caught = []

    def handler(signum: int, frame: Any) -> None:
        caught.append(signum)

    old = signal.signal(signal.SIGINT, handler)
    try:

        async def main() -> None:
            assert signal.getsignal(signal.SIGINT) is handler
            signal.raise_signal(signal.SIGINT)
            await nursery_io.sleep(0)

        nursery_io.run(main)
        assert caught == [signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        signal.signal(signal.SIGINT, old)


# ----- protection markers -----


def test_currently_ki_protected_in_various_places() -> None:
    seen: dict[str, bool] = {}

    @lowlevel.enable_ki_protection
    def sync_protected() -> bool:
        return lowlevel.currently_ki_protected()

    @lowlevel.disable_ki_protection
    def sync_unprotected() -> bool:
        return lowlevel.currently_ki_protected()

    def unmarked() -> bool:
        return lowlevel.currently_ki_protected()

    @lowlevel.enable_ki_protection
    def protected_calling_unprotected() -> tuple[bool, bool]:
        # the innermost marked frame decides; unmarked callees inherit
        return sync_unprotected(), unmarked()

    @lowlevel.enable_ki_protection
    def generator() -> Any:
        yield lowlevel.currently_ki_protected()

    @lowlevel.enable_ki_protection
    async def async_generator() -> Any:
        yield lowlevel.currently_ki_protected()

    @lowlevel.enable_ki_protection
    async def coroutine() -> bool:
        await nursery_io.sleep(0)
        return lowlevel.currently_ki_protected()

    def callback() -> None:
        seen["run_sync_soon callback"] = lowlevel.currently_ki_protected()

    async def system_task() -> None:
        seen["system task"] = lowlevel.currently_ki_protected()

    async def user_child() -> None:
        seen["user child"] = lowlevel.currently_ki_protected()

    async def main() -> None:
        seen["main task"] = lowlevel.currently_ki_protected()
        seen["sync protected"] = sync_protected()
        seen["sync unprotected"] = sync_unprotected()
        seen["nested unprotected"], seen["nested lambda"] = protected_calling_unprotected()
        seen["generator"] = next(generator())
        async for value in async_generator():
            seen["async generator"] = value
        seen["coroutine"] = await coroutine()
        lowlevel.current_token().run_sync_soon(callback)
        lowlevel.spawn_system_task(system_task)
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(user_child)
        await wait_all_tasks_blocked()

    nursery_io.run(main)
    assert seen == {
        "main task": False,
        "sync protected": True,
        "sync unprotected": False,
        "nested unprotected": False,
        "nested lambda": True,
        "generator": True,
        "async generator": True,
        "coroutine": True,
        "run_sync_soon callback": True,
        "system task": True,
        "user child": False,
    }


def test_decorators_return_the_function_and_reject_non_functions() -> None:
    def fn() -> None:
        pass

    assert lowlevel.enable_ki_protection(fn) is fn
    assert lowlevel.disable_ki_protection(fn) is fn
    with pytest.raises(TypeError, match="Python function"):
        lowlevel.enable_ki_protection(len)
    with pytest.raises(TypeError, match="Python function"):
        lowlevel.disable_ki_protection(object())  # type: ignore[type-var]
