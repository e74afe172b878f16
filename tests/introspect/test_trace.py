"""TraceRecorder: a Chrome/Perfetto trace of steps, waits, cancellations and file ops."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import nursery_io
import nursery_io.testing
from nursery_io import lowlevel
from nursery_io._core._context import current_runner
from nursery_io.lowlevel import TraceRecorder

pytest_plugins = ["pytester"]


def _run_traced(recorder: TraceRecorder, tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.write_bytes(b"x" * 10000)

    async def waiter() -> None:
        await nursery_io.sleep_forever()

    async def main() -> None:
        fd = os.open(target, os.O_RDONLY)
        try:
            await lowlevel.run_op(lowlevel.ops.fsync(fd))
        finally:
            os.close(fd)
        async with nursery_io.open_nursery() as nursery:
            nursery.start_soon(waiter, name="waiter")
            await nursery_io.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()

    nursery_io.run(main, instruments=[recorder])


def test_trace_records_steps_waits_cancellations_and_ops(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    _run_traced(TraceRecorder(str(path)), tmp_path)
    document = json.loads(path.read_text())
    events = document["traceEvents"]
    assert document["otherData"]["dropped_events"] == 0
    tids = {e["args"]["name"]: e["tid"] for e in events if e["name"] == "thread_name"}
    waiter = tids["waiter"]
    mine = [e for e in events if e.get("tid") == waiter]
    kinds = [e["name"] for e in mine if e["ph"] in "Xi"]
    # Spawned, waits its turn, runs, blocks in sleep_forever, is cancelled, runs, exits.
    assert kinds[0] == "spawned"
    assert "blocked: sleep" in kinds
    assert kinds.index("blocked: sleep") < kinds.index("cancelled") < kinds.index("exited")
    for event in mine:
        if event["ph"] == "X":
            assert event["dur"] >= 0
    begins = [e for e in events if e.get("cat") == "file op" and e["ph"] == "b"]
    ends = [e for e in events if e.get("cat") == "file op" and e["ph"] == "e"]
    assert [e["name"] for e in begins] == ["FSYNC"]
    (end,) = ends
    assert end["id"] == begins[0]["id"]
    assert end["ts"] >= begins[0]["ts"]
    assert end["args"]["outcome"] == "ok"
    assert end["args"]["latency_us"] == pytest.approx(end["ts"] - begins[0]["ts"], abs=1)
    assert end["args"]["engine"] in ("io_uring", "threads")
    # Steps on one track never overlap.
    steps = sorted((e["ts"], e["ts"] + e["dur"]) for e in mine if e["ph"] == "X")
    for (_, end_a), (start_b, _) in zip(steps, steps[1:]):
        assert end_a <= start_b + 0.001


def test_trace_buffer_is_bounded(tmp_path: Path) -> None:
    recorder = TraceRecorder(max_events=10)
    _run_traced(recorder, tmp_path)
    assert recorder.dropped_events > 0
    events = recorder.trace_events()
    assert sum(1 for e in events if e["ph"] != "M") <= 11  # an op is two events
    recorder.write(str(tmp_path / "bounded.json"))
    assert json.loads((tmp_path / "bounded.json").read_text())["otherData"]["dropped_events"]


def test_trace_leaves_the_engine_as_it_found_it(tmp_path: Path) -> None:
    recorder = TraceRecorder()

    async def main() -> object:
        lowlevel.add_instrument(recorder)
        await lowlevel.checkpoint()
        await lowlevel.run_op(lowlevel.ops.nop())
        engine = current_runner().kernel.engine
        assert "submit" in engine.__dict__
        lowlevel.remove_instrument(recorder)
        recorder.after_run()
        return engine

    engine = nursery_io.run(main)
    assert "submit" not in engine.__dict__  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="no path"):
        recorder.write()


def test_pytest_timeout_prints_the_task_tree(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\n"
        "nursery_io_mode = true\n"
        "addopts = -p no:trio -p no:anyio -p no:cacheprovider\n"
        "timeout_method = signal\n"
    )
    pytester.makepyfile(
        """
        import pytest
        import nursery_io

        @pytest.mark.timeout(1)
        async def test_stuck():
            first, second = nursery_io.Lock(), nursery_io.Lock()
            ready = nursery_io.Event()

            async def take(a, b):
                async with a:
                    if first.locked() and second.locked():
                        ready.set()
                    await ready.wait()
                    async with b:
                        pass

            async with nursery_io.open_nursery() as nursery:
                nursery.start_soon(take, first, second, name="alice")
                nursery.start_soon(take, second, first, name="bob")
        """
    )
    result = pytester.runpytest_subprocess()  # nursery_io's plugin registers the dump
    result.assert_outcomes(failed=1)
    output = result.stdout.str() + result.stderr.str()
    assert (
        "nursery_io task tree at timeout of test_pytest_timeout_prints_the_task_tree.py" in output
    )
    assert "task 'alice'  [blocked] Lock at" in output
    assert "DEADLOCK: each task waits for a lock held by the next:" in output
    assert "Timeout" in output
