"""Cold versus warm latency of a job through a real worker, as a markdown table.

    python benchmarks/bench_worker.py [--size 768x512] [--repeats 3] [--blur K]

Starts a fresh worker (its own private folders and socket), then submits jobs on one synthetic
blurred picture with a known PSF, polling the job's status every 10 ms:

- first start: a worker started with empty caches (no compiled numba code, no FFTW wisdom), as
  right after installing; the job waits for the executor to compile and warm up;
- cold: a worker just started, with the compiled code and wisdom the first start left on disk;
- warm: later jobs on a picture of the same size, in the same executor;
- cached: the same job again with a cache key already stored: no computing at all.

Times run from submitting (or, for first start and cold, from starting the worker) until the job
starts computing (its first estimating or deblurring progress), until the engine reports its first
deblurring progress, and until the job is done.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker.deconv.synthetic import camera_shake_kernel, dead_leaves  # noqa: E402
from worker.service.client import Client  # noqa: E402

POLL = 0.01


def make_inputs(folder: Path, shape: tuple[int, int]) -> tuple[Path, Path]:
    """A blurred 16-bit TIFF of `shape` and the PSF that blurred it."""
    rng = np.random.default_rng(0)
    psf = camera_shake_kernel(15, rng)
    scene = dead_leaves(shape, rng)
    blurred = np.stack([ndimage.convolve(scene[..., c], psf) for c in range(3)], axis=-1)
    noisy = np.clip(blurred + rng.normal(0, 0.005, blurred.shape), 0, 1)
    picture = folder / "blurred.tif"
    tifffile.imwrite(picture, (noisy * 65535).astype(np.uint16), photometric="rgb")
    np.save(folder / "psf.npy", psf)
    return picture, folder / "psf.npy"


CACHES = ("XDG_CACHE_HOME", "NUMBA_CACHE_DIR")  # results, FFTW wisdom, compiled numba code


@contextmanager
def worker_process(folder: Path, own_caches: bool = True) -> Iterator[tuple[str, float]]:
    """Start a worker whose socket, logs and (if `own_caches`) caches (results, FFTW wisdom,
    compiled numba code) live in `folder`, else the caches a command run here would use; yields
    its endpoint and its start time."""
    env = dict(os.environ)
    private = ("XDG_STATE_HOME", "XDG_RUNTIME_DIR", *(CACHES if own_caches else ()))
    for variable in private:
        (folder / variable).mkdir(mode=0o700, exist_ok=True)
        env[variable] = str(folder / variable)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    endpoint = f"ipc://{folder}/bench.sock"
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "worker", "--endpoint", endpoint, "--min-free", "0"],
        env=env,
    )
    try:
        yield endpoint, started
    finally:
        process.terminate()
        process.wait(30)


Times = tuple[float | None, float | None, float]


def run_job(client: Client, t0: float, poll: float = POLL, **fields: object) -> Times:
    """Submit a job; seconds from `t0` until it starts computing (its first estimating or
    deblurring progress), until its first deblurring progress, and until it ends, followed as
    the client follows it (`Client.wait`) with a status every `poll` seconds (each request costs
    the worker and this process some CPU) and at once when it ends."""
    job = client.request("submit", None, **fields)["job"]
    marks: dict[str, float] = {}

    def mark(status: dict[str, object]) -> None:
        if status["detail"] in ("estimating", "deblurring"):
            marks.setdefault("computing", time.perf_counter() - t0)
        if status["detail"] == "deblurring":
            marks.setdefault("deblurring", time.perf_counter() - t0)

    final = client.wait(job, mark, interval=poll)
    ended = time.perf_counter() - t0
    if final["stage"] != "done":
        raise SystemExit(f"job {final['stage']}: {final['error']}")
    return marks.get("computing"), marks.get("deblurring"), ended


def wait_until_it_answers(client: Client) -> None:
    """Ping until the worker answers (its ipc socket appears once it listens; a client asking
    before that is told at once that no worker is there)."""
    while client.ping(timeout=0.2) is None:
        pass


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="768x512", help="picture size WxH (default 768x512)")
    parser.add_argument("--repeats", type=int, default=3, help="warm jobs to time (default 3)")
    parser.add_argument(
        "--blur", type=int, help="estimate a K x K PSF in each job instead of giving it"
    )
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.lower().split("x"))
    rows: list[tuple[str, float | None, float | None, float]] = []
    with tempfile.TemporaryDirectory(prefix="dtd-bench-", dir="/tmp") as name:
        folder = Path(name)
        picture, psf = make_inputs(folder, (height, width))
        how = {"blur": args.blur} if args.blur else {"psf": str(psf)}
        common = {"input": str(picture), **how}
        for label in ("first start (empty caches)", "cold (worker just started)"):
            with worker_process(folder) as (endpoint, started), Client(endpoint) as client:
                wait_until_it_answers(client)
                answers = time.perf_counter() - started
                rows.append((f"{label}: worker answers", None, None, answers))
                times = run_job(client, started, output=str(folder / "c.tif"), **common)
                rows.append((f"{label}: first job", *times))
        with worker_process(folder) as (endpoint, _), Client(endpoint) as client:
            wait_until_it_answers(client)
            for n in range(args.repeats + 1):
                t0 = time.perf_counter()
                times = run_job(client, t0, output=str(folder / f"w{n}.tif"), **common)
                if n:  # the first one waited for the executor to warm up
                    rows.append((f"warm job #{n}", *times))
            key = "0" * 64
            run_job(client, time.perf_counter(), output=str(folder / "k.tif"), key=key, **common)
            t0 = time.perf_counter()
            times = run_job(client, t0, output=str(folder / "hit.tif"), key=key, **common)
            rows.append(("cached (same key again)", *times))
    print(
        f"Worker latency, {width}x{height} RGB picture, "
        + (f"{args.blur}x{args.blur} PSF estimated" if args.blur else "15x15 PSF given")
        + "; seconds from starting "
        "the worker (first start, cold) or from submitting (warm, cached)\n"
    )
    print("| job | starts computing (s) | first deblurring (s) | total (s) |")
    print("|---|---:|---:|---:|")
    for label, *values in rows:
        print(f"| {label} | {' | '.join(seconds(value) for value in values)} |")


if __name__ == "__main__":
    main()
