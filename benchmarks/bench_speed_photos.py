"""Speed on real photographs: `deblur` and `run` end to end through the command line.

The pictures are real photographs from Debian's `mate-backgrounds` package
(/usr/share/backgrounds/mate/nature, 1280 to 2560 px wide JPEGs; `apt-get install
mate-backgrounds`): a 1920 x 1080 crop of the sharpest (leaf veins) for 2 Mpx, and mosaics of
crops of several photos (grass, wood, leaves, flowers, sky) for 16 Mpx (3 x 3, 4896 x 3264) and
24 Mpx (4 x 3 cells, 6000 x 4000); and, for `16-photo` and `24-photo`, one photograph each,
whole but for a centre crop to the frame's shape (4896 x 3264: dandelions in a meadow against the
low sun, 5312 x 2988 px, and 6000 x 4000: a nuthatch on tree bark before a soft background, 6028
x 3391 px, both in Debian's `lomiri-wallpapers`), one scene as a photographer's picture is, where
`run`'s two windows on a mosaic fall on different photographs. A photo smaller than its frame or
mosaic cell is enlarged (Lanczos) to fill it, by at most 1.31x (24 Mpx; 1.11x for `16-photo`,
1.19x for `24-photo`), and the run prints the largest enlargement. Each
picture is converted to linear light, shaken by a random camera-shake kernel (valid convolution:
the frame sees light from beyond its edges), given Poisson-Gaussian noise (std 0.01 at mid grey)
and written as a 16-bit sRGB TIFF, as darktable would export it.

Each case measures, every command in a fresh process: `dt-deconvolve deblur` with the true kernel
and `dt-deconvolve run` (blind, `--blur` the kernel's size), end to end (read, estimate, deblur,
write) with their peak memory, iterations, stop reason and PSNR (linear light, whole frame,
against the sharp photo); one iteration of the engine (median over a short capped run) against
the FFT floor (two rfft2/irfft2 pairs per channel at the frame's padded fast size, all cores),
the two in turns, three times, each in a fresh process, and the median of their ratios; and the
same `deblur` job submitted to a freshly started worker through the real client and ZeroMQ
socket (`dt-deconvolve worker`, as the darktable plug-in uses it), once and then three times
more, each time followed by scikit-image's Richardson-Lucy with 30 iterations per channel in the
client's process (2 Mpx always; larger pictures with --skimage-large; its time is the
restoration alone, after reading the picture, which the table's "engine s" column gives for the
commands beside their end-to-end seconds, and "x faster" both ways): the later jobs' time, from
submitting until done, is what a photographer waits for after the first picture of a session
(imports, compiled code and FFT plans already loaded), and since the two take turns, the median
of their ratios is the comparison.

    flock /tmp/dtd-heavy.lock python benchmarks/bench_speed_photos.py --cases 2:15 2:31 2:45
    flock /tmp/dtd-heavy.lock python benchmarks/bench_speed_photos.py --cases 24:31 24-photo:31
    flock /tmp/dtd-heavy.lock python benchmarks/bench_speed_photos.py --cases 16:45 16-photo:45

Prints a markdown table; `--keep DIR` leaves the pictures and results there.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_deblur import (  # noqa: E402
    add_noise,
    fft_floor,
    numpy_as_anyone_runs_it,
    time_engine,
    wallpaper,
)
from benchmarks.bench_worker import run_job, wait_until_it_answers, worker_process  # noqa: E402
from worker.deconv import DeblurSettings  # noqa: E402
from worker.deconv.synthetic import blur_valid, camera_shake_kernel, psnr  # noqa: E402
from worker.files.icc import SRGB  # noqa: E402
from worker.service.client import POLL_INTERVAL, Client  # noqa: E402


@dataclass(frozen=True)
class Mosaic:
    """A frame of `shape` (H, W) made of `grid` (rows, columns) cells, one photo each."""

    shape: tuple[int, int]
    grid: tuple[int, int]
    photos: tuple[str, ...]


PHOTOS = (
    "Blinds", "Dune", "Wood", "TwoWings", "GreenMeadow", "RainDrops", "LadyBird", "Storm",
    "Garden", "Aqua", "YellowFlower", "FreshFlower",
)  # fmt: skip
MOSAICS = {
    "2": Mosaic((1080, 1920), (1, 1), PHOTOS[:1]),
    "16": Mosaic((3264, 4896), (3, 3), PHOTOS[:9]),
    "24": Mosaic((4000, 6000), (3, 4), PHOTOS),
    "16-photo": Mosaic((3264, 4896), (1, 1), ("seeding_by_Clements_Engelhardt",)),
    "24-photo": Mosaic((4000, 6000), (1, 1), ("Kleiber_by_Lukas_Baubkus",)),
}
SKIMAGE_PIXELS = 2.1e6  # scikit-image runs on frames up to this size (larger: --skimage-large)
MAX_ENLARGEMENT = 2.0
NOISE = 0.01
SEED = 12
WARM_ROUNDS = 3  # turns of a warm worker's job and scikit-image's run
FLOOR_ROUNDS = 3  # turns of a capped run and the FFT floor, for one iteration's time against it


def cell(name: str, height: int, width: int) -> tuple[np.ndarray, float]:
    """The centre `height` x `width` crop of a photo, enlarged first if it is smaller (Lanczos,
    in sRGB); returns the linear crop and the enlargement (1 if none)."""
    from PIL import Image

    pixels = wallpaper(name)
    zoom = max(1.0, height / pixels.shape[0], width / pixels.shape[1])
    if zoom > MAX_ENLARGEMENT:
        raise SystemExit(f"{name} would need a {zoom:.2f}x enlargement (at most 2x)")
    if zoom > 1:
        size = (int(np.ceil(pixels.shape[1] * zoom)), int(np.ceil(pixels.shape[0] * zoom)))
        image = Image.fromarray((pixels * 255).round().astype(np.uint8)).resize(
            size, Image.Resampling.LANCZOS
        )
        pixels = np.asarray(image, dtype=np.float32) / 255
    top, left = (pixels.shape[0] - height) // 2, (pixels.shape[1] - width) // 2
    crop = pixels[top : top + height, left : left + width]
    return SRGB.linearise(np.clip(crop, 0, 1)), zoom


def scene(mosaic: Mosaic, margin: int) -> tuple[np.ndarray, float]:
    """The mosaic's sharp linear scene, `margin` pixels larger than its frame on each side, and
    the largest enlargement used."""
    height, width = mosaic.shape[0] + 2 * margin, mosaic.shape[1] + 2 * margin
    rows, cols = mosaic.grid
    edges_y = np.linspace(0, height, rows + 1).round().astype(int)
    edges_x = np.linspace(0, width, cols + 1).round().astype(int)
    out = np.empty((height, width, 3), dtype=np.float32)
    largest = 1.0
    for index, name in enumerate(mosaic.photos):
        r, c = divmod(index, cols)
        (y0, y1), (x0, x1) = edges_y[r : r + 2], edges_x[c : c + 2]
        out[y0:y1, x0:x1], zoom = cell(name, y1 - y0, x1 - x0)
        largest = max(largest, zoom)
    return out, largest


def write_srgb16(path: Path, linear: np.ndarray) -> None:
    """`linear` (H, W, 3) written as a 16-bit sRGB TIFF (no profile: read as sRGB)."""
    import tifffile

    encoded = SRGB.encode(np.clip(linear, 0, 1))
    tifffile.imwrite(path, (encoded * 65535).round().astype(np.uint16), photometric="rgb")


def read_linear(path: Path) -> np.ndarray:
    """A 16-bit sRGB TIFF back in linear light, float32."""
    import tifffile

    return SRGB.linearise(tifffile.imread(path).astype(np.float32) / 65535)


def make_case(folder: Path, frame: str, size: int) -> float:
    """Write `observed.tif`, `psf.npy` and `truth.npy` into `folder`; returns the enlargement."""
    rng = np.random.default_rng(SEED + size)
    psf = camera_shake_kernel(size, rng)
    sharp, zoom = scene(MOSAICS[frame], size // 2)
    h = size // 2
    np.save(folder / "truth.npy", sharp[h:-h, h:-h])
    observed = add_noise(blur_valid(sharp, psf), NOISE, rng)
    del sharp
    write_srgb16(folder / "observed.tif", observed)
    np.save(folder / "psf.npy", psf)
    return zoom


def child(command: list[str]) -> dict:
    """Run `command`: the JSON on its last line, with `wall_seconds` its wall time and `rss_gb`
    its peak memory (unless the JSON holds them: those of the command it ran in turn)."""
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {completed.stderr.strip()[-500:]}")
    lines = completed.stdout.strip().splitlines()
    report = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return {"wall_seconds": seconds, "rss_gb": rss, **report}  # a nested child's own win


def in_child(*arguments: str) -> dict:
    """This script's `--child` mode in a fresh process (so peak memory is its own)."""
    return child([sys.executable, __file__, "--child", *arguments])


def child_cli(folder: str, mode: str) -> dict:
    """`dt-deconvolve deblur` (true kernel) or `run` (blind) on the case; adds the PSNR."""
    case = Path(folder)
    out = case / f"{mode}.tif"
    command = [sys.executable, "-m", "worker", mode, str(case / "observed.tif"), "-o", str(out)]
    if mode == "deblur":
        command += ["--psf", str(case / "psf.npy")]
    else:
        command += ["--blur", str(np.load(case / "psf.npy").shape[0])]
    result = child([*command, "--json"])
    # End to end: the command's wall time; its report's `seconds` are the deblur's own (without
    # start, reading, estimating or writing), kept beside it.
    result["engine_seconds"] = result.get("seconds")
    result["seconds"] = result["wall_seconds"]
    result["psnr"] = psnr(read_linear(out), np.load(case / "truth.npy", mmap_mode="r"))
    return result


def child_warm(folder: str, skimage_count: str) -> dict:
    """The same `deblur` job (true kernel) submitted to a freshly started worker through the real
    client and socket: seconds from submitting until done, the first time (timed from starting
    the worker: it includes the start and warm-up) and then `WARM_ROUNDS` times, each followed
    by scikit-image's Richardson-Lucy with `skimage_count` iterations (0: none) in this process,
    so that the two take turns on the machine; the medians, that of their ratios, and PSNRs. Its
    status is asked as often as the client asks it (`POLL_INTERVAL`): asked every 10 ms, the
    answers took the worker 2 s of CPU time a 24 Mpx job, and the job 35.5-36.2 s against
    33.3-33.9 s (in turns)."""
    case = Path(folder)
    count = int(skimage_count)
    fields = {"input": str(case / "observed.tif"), "psf": str(case / "psf.npy")}
    observed = np.clip(read_linear(case / "observed.tif"), 0, None) if count else None
    psf = np.load(case / "psf.npy")
    jobs, peers = [], []
    with (
        tempfile.TemporaryDirectory(prefix="dtd-warm-", dir="/tmp") as private,
        worker_process(Path(private), own_caches=False) as (endpoint, started),
        Client(endpoint) as client,
    ):
        wait_until_it_answers(client)

        def job(t0: float, name: str) -> float:
            return run_job(client, t0, POLL_INTERVAL, output=str(case / name), **fields)[-1]

        first = job(started, "warm1.tif")
        for turn in range(WARM_ROUNDS):
            jobs.append(job(time.perf_counter(), f"warm2-{turn}.tif"))
            if observed is not None:
                seconds, restored = richardson_lucy(observed, psf, count)
                peers.append(seconds)
    truth = np.load(case / "truth.npy", mmap_mode="r")
    result: dict[str, object] = {
        "first": first,
        "seconds": float(np.median(jobs)),
        "psnr": psnr(read_linear(case / f"warm2-{WARM_ROUNDS - 1}.tif"), truth),
    }
    if count:
        result["skimage"] = {
            "seconds": float(np.median(peers)),
            "ratio": float(np.median(np.array(peers) / jobs)),
            "psnr": psnr(restored, truth),
        }
    return result


def child_iteration(folder: str, iterations: str) -> dict:
    """One engine iteration's time: a run capped at `iterations`, in this process."""
    case = Path(folder)
    observed = read_linear(case / "observed.tif")
    settings = DeblurSettings(max_iterations=int(iterations))
    return time_engine(observed, np.load(case / "psf.npy"), settings)


def child_floor(folder: str) -> dict:
    """`fft_floor` for the case's frame and kernel."""
    case = Path(folder)
    truth = np.load(case / "truth.npy", mmap_mode="r")
    return fft_floor(truth.shape[:2], np.load(case / "psf.npy").shape[0])


def iteration_and_floor(folder: str, iterations: int) -> dict:
    """One iteration's time against the FFT floor's, each measured `FLOOR_ROUNDS` times in turns,
    each time in a fresh process (so that neither's threads disturb the other's): the medians of
    both and of their ratios, turn by turn (a change of the machine's load moves both alike)."""
    turns = [
        (
            in_child("iteration", folder, str(iterations))["per_iteration"],
            in_child("floor", folder)["seconds"],
        )
        for _ in range(FLOOR_ROUNDS)
    ]
    per, floors = np.array(turns).T
    return {
        "per_iteration": float(np.median(per)),
        "floor": float(np.median(floors)),
        "ratio": float(np.median(per / floors)),
    }


def richardson_lucy(observed: np.ndarray, psf: np.ndarray, count: int) -> tuple[float, np.ndarray]:
    """scikit-image's Richardson-Lucy, `count` iterations per channel: (seconds, result)."""
    from skimage import restoration

    start = time.perf_counter()
    with numpy_as_anyone_runs_it():
        restored = np.stack(
            [restoration.richardson_lucy(observed[..., c], psf, num_iter=count) for c in range(3)],
            axis=-1,
        )
    return time.perf_counter() - start, restored


CHILDREN: dict[str, Callable[..., dict]] = {
    "cli": child_cli,
    "warm": child_warm,
    "iteration": child_iteration,
    "floor": child_floor,
}


def measure(folder: Path, frame: str, args: argparse.Namespace) -> dict:
    """Every measurement of one case, each in its own process."""
    name = str(folder)
    results = {
        "deblur": in_child("cli", name, "deblur"),
        "run": in_child("cli", name, "run"),
    }
    height, width = MOSAICS[frame].shape
    peer = height * width <= SKIMAGE_PIXELS or args.skimage_large
    results["warm"] = in_child("warm", name, str(args.skimage_iterations if peer else 0))
    results["iteration"] = iteration_and_floor(name, args.iteration_cap)
    return results


def print_case(label: str, results: dict, args: argparse.Namespace) -> None:
    """Rows of the markdown table for one case."""
    timing = results["iteration"]
    sk = results["warm"].get("skimage")
    for mode in ("deblur", "run"):
        r = results[mode]
        versus = f"{sk['seconds'] / r['seconds']:.1f}x" if sk else "-"
        engine = r["engine_seconds"]
        alone = f"{engine:.1f}" if engine is not None else "-"
        if sk and engine:
            versus += f" ({sk['seconds'] / engine:.1f}x)"
        print(
            f"| {label} | `{mode}` | {r['seconds']:.1f} | {alone} | {r['rss_gb']:.2f} | "
            f"{r['iterations']} ({r['stop_reason']}) | {r['psnr']:.2f} | {versus} |"
        )
    warm = results["warm"]
    versus = f"{sk['ratio']:.1f}x" if sk else "-"
    print(
        f"| {label} | `deblur` job, warm worker (first job {warm['first']:.1f} s from the "
        f"worker's start; then the median of {WARM_ROUNDS}) | {warm['seconds']:.1f} | | | | "
        f"{warm['psnr']:.2f} | {versus} |"
    )
    print(f"| {label} | one iteration / FFT floor | {timing['per_iteration']:.3f} / "
          f"{timing['floor']:.3f} | | | {timing['ratio']:.2f}x the floor | | |")  # fmt: skip
    if sk:
        print(
            f"| {label} | scikit-image RL-{args.skimage_iterations} | {sk['seconds']:.1f} | "
            f"{sk['seconds']:.1f} | | | {sk['psnr']:.2f} | 1.0x |"
        )


def parse_case(case: str) -> tuple[str, int]:
    """`FRAME:KERNEL` as (a key of `MOSAICS`, an odd kernel size)."""
    frame, _, size = case.partition(":")
    if frame not in MOSAICS or not size.isdigit() or int(size) % 2 == 0:
        raise SystemExit(f"a case is FRAME:KERNEL, FRAME one of {', '.join(MOSAICS)}, not {case!r}")
    return frame, int(size)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["2:15", "2:31", "2:45", "16:45", "16-photo:45", "24:31", "24-photo:31"],
        metavar="FRAME:KERNEL",
        help=f"the frame ({', '.join(MOSAICS)}: megapixels) and shake kernel size (odd)",
    )
    parser.add_argument("--skimage-iterations", type=int, default=30, help="0: leave it out")
    parser.add_argument(
        "--skimage-large", action="store_true", help="scikit-image on 16/24 Mpx too"
    )
    parser.add_argument("--iteration-cap", type=int, default=8, help="run timing one iteration")
    parser.add_argument("--keep", type=Path, help="keep pictures and results in this folder")
    return parser.parse_args()


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        print(json.dumps(CHILDREN[kind](*rest)))
        return
    args = parse_args()
    cases = [parse_case(case) for case in args.cases]
    print(f"Machine: {os.cpu_count()} CPU cores, load {os.getloadavg()[0]:.2f} at the start.\n")
    print(
        "| picture | what | seconds | engine s | peak GB | iterations (stop) | PSNR dB | "
        "x faster than RL (engine's) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for frame, size in cases:
        with tempfile.TemporaryDirectory() as scratch:
            folder = args.keep / f"{frame}-{size}" if args.keep else Path(scratch)
            folder.mkdir(parents=True, exist_ok=True)
            zoom = make_case(folder, frame, size)
            height, width = MOSAICS[frame].shape
            blurred = psnr(read_linear(folder / "observed.tif"), np.load(folder / "truth.npy"))
            label = f"{frame}: {width}x{height}, {size} px shake (input {blurred:.2f} dB, "
            label += f"zoom {zoom:.2f})"
            print_case(label, measure(folder, frame, args), args)
            sys.stdout.flush()
    print(f"\nLoad {os.getloadavg()[0]:.2f} at the end.")


if __name__ == "__main__":
    main()
