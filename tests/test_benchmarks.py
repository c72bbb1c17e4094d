"""The benchmarks still run: their quickest modes, end to end, as a developer would start them.

A benchmark is run rarely, by hand, so a change elsewhere can break it unseen: `bench_worker.py`
stopped with a traceback for a whole release once the client refused, at once, a worker whose
socket was not there yet. These runs take seconds; the long benchmarks are run by hand.
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEVIN = ROOT.parent / "shared" / "data" / "levin" / "levin09.npz"


def run_benchmark(name: str, *args: str) -> str:
    """Run `benchmarks/NAME.py ARGS` from the repository's root; its standard output."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_the_worker_benchmark_times_cold_warm_and_cached_jobs() -> None:
    table = run_benchmark("bench_worker", "--size", "128x96", "--repeats", "1")
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    labels = [row.split(" | ")[0].removeprefix("| ") for row in rows[1:]]
    assert labels[-2:] == ["warm job #1", "cached (same key again)"], table


@pytest.mark.slow
@pytest.mark.skipif(not LEVIN.exists(), reason="the Levin data is not in ../shared/data/levin")
def test_the_levin_benchmark_scores_a_kernel(tmp_path: Path) -> None:
    montage = tmp_path / "montage.png"
    table = run_benchmark("bench_levin", "--images", "im01_ker01", "--montage", str(montage))
    ours = [line for line in table.splitlines() if line.startswith("| dt-deconvolve")]
    assert len(ours) == 1 and ours[0].split(" | ")[1] == "100 %", table  # at a ratio <= 2
    assert montage.read_bytes()[:4] == b"\x89PNG"


def test_the_varying_benchmark_refuses_a_scene_that_is_not_a_pair() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_varying.py"), "--scenes", "Wood"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "'Wood' is not BACKGROUND:DONOR" in done.stderr and "Traceback" not in done.stderr
