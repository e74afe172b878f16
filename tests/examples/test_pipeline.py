"""The pipeline example: every job accounted for, timeouts reported, overall deadline."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_runs_as_a_script() -> None:
    completed = run_script("--items", "50", "--workers", "4")
    assert completed.returncode == 0, completed.stderr
    assert "50 of 50 jobs finished" in completed.stdout


def test_the_defaults_finish_every_job() -> None:
    completed = run_script()
    assert completed.returncode == 0, completed.stderr
    assert re.fullmatch(
        r"200 of 200 jobs finished in [\d.]+ s: 200 ok, 0 timed out\n", completed.stdout
    )


def test_timeouts_and_the_deadline_are_explained() -> None:
    completed = run_script("--job-timeout", "0.015", "--max-cost", "0.02")
    assert completed.returncode == 0, completed.stderr
    first, explanation = completed.stdout.splitlines()
    assert re.fullmatch(r"200 of 200 jobs finished in [\d.]+ s: \d+ ok, \d+ timed out", first)
    assert explanation == (
        "  timed out: took longer than --job-timeout 0.015 s (jobs take up to --max-cost 0.02 s)"
    )
    completed = run_script(
        "--items", "1000", "--workers", "1", "--max-cost", "1", "--timeout", "0.5"
    )
    assert completed.returncode == 0, completed.stderr
    assert "  not finished: the overall deadline (--timeout 0.5 s) passed with" in completed.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "argument --workers: must be at least 1, got 0"),
        (["--workers", "-3"], "argument --workers: must be at least 1, got -3"),
        (["--items", "-5"], "argument --items: must be at least 0, got -5"),
        (["--items", "many"], "argument --items: 'many' is not a whole number"),
        (["--job-timeout", "0"], "argument --job-timeout: must be greater than 0, got 0"),
        (["--max-cost", "-1"], "argument --max-cost: must be at least 0, got -1"),
        (["--timeout", "nan"], "argument --timeout: must be greater than 0, got nan"),
    ],
)
def test_bad_arguments_are_usage_errors(args: list[str], message: str) -> None:
    completed = run_script(*args)
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr.endswith(f"pipeline.py: error: {message}\n"), completed.stderr
    assert "Traceback" not in completed.stderr
