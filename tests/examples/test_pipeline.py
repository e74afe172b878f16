"""The pipeline example: every job accounted for, timeouts reported, overall deadline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from examples.pipeline import run_pipeline
from nursery_io.testing import MockClock

EXAMPLE = Path(__file__).parents[2] / "examples" / "pipeline.py"


async def test_every_job_is_processed_once(autojump_clock: MockClock) -> None:
    results = await run_pipeline(300, 7, max_cost=0.01, job_timeout=1.0)
    assert sorted(result.number for result in results) == list(range(300))
    assert all(result.outcome == "ok" for result in results)
    assert {result.worker for result in results} == set(range(7))


async def test_slow_jobs_time_out_without_stalling(autojump_clock: MockClock) -> None:
    results = await run_pipeline(200, 4, max_cost=0.02, job_timeout=0.01, seed=3)
    assert sorted(result.number for result in results) == list(range(200))
    timed_out = [result for result in results if result.outcome == "timed out"]
    assert 0 < len(timed_out) < 200


async def test_overall_deadline_cancels_everything(autojump_clock: MockClock) -> None:
    # 1,000 jobs of up to 10 virtual seconds on 2 workers can't finish in 5 seconds.
    results = await run_pipeline(1000, 2, max_cost=10.0, job_timeout=60.0, overall_timeout=5.0)
    assert len(results) < 1000


def test_runs_as_a_script() -> None:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLE), "--items", "50", "--workers", "4"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "50 of 50 jobs finished" in completed.stdout
