"""Benchmark of the non-blind engine against scikit-image's `richardson_lucy`, in one run.

Quality: photographs built into scikit-image (no download), converted to linear light, blurred by
random camera-shake kernels with a valid convolution (the frame sees light from beyond its
edges, as a camera does), plus Poisson-Gaussian noise. The PSF is known. PSNR (linear light,
peak 1, whole frame) of the blurred input, of scikit-image's Richardson-Lucy at its best
iteration count (an oracle over a range of counts), and of `deblur` with automatic parameters.

Textured real photographs: 512 x 512 crops of finely textured photos of Debian's
`mate-backgrounds` package (`apt-get install mate-backgrounds`) under Gaussian softness, defocus
and shake at two noise levels; scikit-image's Richardson-Lucy mirror-padded, at its best count.

Speed: a 24 Mpx RGB float32 picture and a 21 x 21 kernel: `deblur` wall time, iterations,
time per iteration and peak memory (in a fresh process, from ru_maxrss); scikit-image's
Richardson-Lucy, 30 iterations per channel; and the FFT floor, two rfft2/irfft2 pairs per channel
at the whole frame's padded fast size (pyfftw, FFTW_MEASURE, all cores), measured in the same run.

    nice -n 10 python benchmarks/bench_deblur.py            # everything (long: ~15 minutes)
    nice -n 10 python benchmarks/bench_deblur.py --quick    # a few minutes

Prints markdown tables.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from worker import numpy_huge_page_switch  # noqa: E402
from worker.deconv import DeblurSettings, deblur  # noqa: E402
from worker.deconv.synthetic import blur_valid, camera_shake_kernel, psnr  # noqa: E402
from worker.files.icc import SRGB  # noqa: E402

# Debian packages mate-backgrounds (nature) and lomiri-wallpapers (the folder above it)
WALLPAPERS = (Path("/usr/share/backgrounds/mate/nature"), Path("/usr/share/backgrounds"))
TEXTURED = ["Blinds", "Dune", "GreenMeadow", "Wood"]  # leaf veins, grass, grass, wood grain
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "camera"]
QUICK_PHOTOS = ["astronaut", "coffee", "chelsea", "rocket"]
SKIMAGE_COUNTS = [1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100]
QUICK_SKIMAGE_COUNTS = [2, 5, 10, 20, 40]


def photo(name: str, max_side: int = 768) -> np.ndarray:
    """A scikit-image photograph as linear float32 (H, W, 3), at most `max_side` pixels wide."""
    from skimage import data, transform

    pixels = getattr(data, name)()
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    pixels = pixels[..., :3].astype(np.float32) / 255
    scale = max_side / max(pixels.shape[:2])
    if scale < 1:
        pixels = transform.rescale(pixels, scale, channel_axis=2, anti_aliasing=True)
    return SRGB.linearise(np.clip(pixels, 0, 1))


def wallpaper_path(name: str) -> Path:
    """The JPEG of a photo of Debian's mate-backgrounds or lomiri-wallpapers packages."""
    for folder in WALLPAPERS:
        if (folder / f"{name}.jpg").is_file():
            return folder / f"{name}.jpg"
    raise SystemExit(f"{name}.jpg is missing: apt-get install mate-backgrounds lomiri-wallpapers")


def wallpaper(name: str) -> np.ndarray:
    """A photo of `wallpaper_path` as sRGB float32 (H, W, 3) in [0, 1]."""
    from PIL import Image

    with Image.open(wallpaper_path(name)) as picture:
        return np.asarray(picture.convert("RGB"), dtype=np.float32) / 255


def gaussian_kernel(sigma: float) -> np.ndarray:
    """A normalised Gaussian PSF (mild softness), 6 sigma wide, odd."""
    half = int(np.ceil(3 * sigma))
    x = np.arange(-half, half + 1)
    line = np.exp(-(x**2) / (2 * sigma**2))
    psf = np.outer(line, line)
    return (psf / psf.sum()).astype(np.float32)


def disk_kernel(radius: float) -> np.ndarray:
    """A normalised uniform disk PSF (defocus), anti-aliased by 4 x 4 supersampling."""
    half = int(np.ceil(radius))
    fine = (np.arange(-half * 4 - 2, half * 4 + 2) + 0.5) / 4
    yy, xx = np.meshgrid(fine, fine, indexing="ij")
    inside = (yy**2 + xx**2 <= radius**2).astype(np.float64)
    psf = inside.reshape(2 * half + 1, 4, 2 * half + 1, 4).sum(axis=(1, 3))
    return (psf / psf.sum()).astype(np.float32)


NOISE_KINDS = ("poisson-gaussian", "gaussian", "shot")


def add_noise(
    clean: np.ndarray, sigma: float, rng: np.random.Generator, kind: str = "poisson-gaussian"
) -> np.ndarray:
    """Camera noise: shot noise of std `sigma` at mid grey (0.18), plus read noise of std
    `sigma` (`kind` "poisson-gaussian"), or only the read noise ("gaussian") or only the shot
    noise ("shot")."""
    noisy = np.array(clean, dtype=np.float64)
    if kind != "gaussian":
        gain = sigma**2 / 0.18
        noisy = rng.poisson(np.clip(clean, 0, None) / gain) * gain
    if kind != "shot":
        noisy = noisy + rng.normal(0, sigma, clean.shape)
    return noisy.astype(np.float32)


def skimage_best(
    observed: np.ndarray,
    psf: np.ndarray,
    truth: np.ndarray,
    counts: list[int],
    mirror: bool = False,
):
    """Best PSNR of scikit-image's Richardson-Lucy over `counts` iterations, and that count.

    `mirror` pads the picture by mirroring it by the kernel's size first (and crops the result),
    so that the peer's circular borders do not ring."""
    from skimage import restoration

    pad = psf.shape[0] if mirror else 0
    observed = np.pad(np.clip(observed, 0, None), ((pad, pad), (pad, pad), (0, 0)), "reflect")
    frame = (slice(pad, observed.shape[0] - pad), slice(pad, observed.shape[1] - pad))
    scores = []
    for count in counts:
        restored = np.stack(
            [
                restoration.richardson_lucy(observed[..., c], psf, num_iter=count)[frame]
                for c in range(observed.shape[2])
            ],
            -1,
        )
        scores.append((psnr(restored, truth), count))
    return max(scores)


def quality(args: argparse.Namespace) -> None:
    photos = args.photos or (QUICK_PHOTOS if args.quick else PHOTOS)
    counts = QUICK_SKIMAGE_COUNTS if args.quick else SKIMAGE_COUNTS
    rng = np.random.default_rng(args.seed)
    print(f"\n### Quality: PSNR (dB, linear light), PSF known, {args.noise_kind} noise\n")
    print(
        "| photo | kernel | noise | blurred | skimage RL best (iter) | ours | ours - skimage "
        "| ours: iterations, stop, lambda | ours s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    gains, losses = [], []
    for name in photos:
        scene = photo(name, args.max_side)
        for sigma in args.noise:
            size = int(rng.choice(np.arange(9, 26, 2)))
            psf = camera_shake_kernel(size, rng)
            h = size // 2
            truth = scene[h:-h, h:-h]
            observed = add_noise(blur_valid(scene, psf), sigma, rng, args.noise_kind)
            blurred_score = psnr(observed, truth)
            sk_score, sk_count = skimage_best(observed, psf, truth, counts)
            start = time.perf_counter()
            restored, report = deblur(observed, psf, DeblurSettings(priority=args.priority))
            seconds = time.perf_counter() - start
            ours = psnr(restored, truth)
            gains.append(ours - sk_score)
            losses.append(ours - blurred_score)
            print(
                f"| {name} | {size} | {sigma:g} | {blurred_score:.2f} | {sk_score:.2f} ({sk_count})"
                f" | {ours:.2f} | {ours - sk_score:+.2f} | {report.iterations}, "
                f"{report.stop_reason}, {report.lam:.2g} | {seconds:.1f} |",
                flush=True,
            )
    print(
        f"\nMean gain over scikit-image's best: **{np.mean(gains):+.2f} dB**; "
        f"worst gain over the blurred input: **{min(losses):+.2f} dB** ({len(gains)} cases)."
    )


TEXTURED_BLURS = {
    "gaussian 1.2": lambda rng: gaussian_kernel(1.2),
    "defocus 3": lambda rng: disk_kernel(3.0),
    "shake 15": lambda rng: camera_shake_kernel(15, rng),
}
TEXTURED_NOISE = [0.005, 0.02]


def textured(args: argparse.Namespace) -> None:
    """Real, finely textured photographs (512 x 512 crops, no resizing): Gaussian softness,
    defocus and shake at two noise levels; scikit-image's RL at its best count, mirror-padded."""
    counts = QUICK_SKIMAGE_COUNTS if args.quick else SKIMAGE_COUNTS
    rng = np.random.default_rng(args.seed)
    print("\n### Quality on textured real photographs: PSNR (dB, linear light), PSF known\n")
    print("| photo | blur | noise | blurred | skimage RL best (iter) | ours | ours - skimage |"
          " ours: iterations, stop |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    gains: dict[str, list[float]] = {blur: [] for blur in TEXTURED_BLURS}
    for name in args.textured:
        pixels = wallpaper(name)
        top, left = (pixels.shape[0] - 512) // 2, (pixels.shape[1] - 512) // 2
        scene = SRGB.linearise(pixels[top : top + 512, left : left + 512])
        for blur, make in TEXTURED_BLURS.items():
            psf = make(rng)
            h = psf.shape[0] // 2
            truth = scene[h:-h, h:-h]
            for sigma in TEXTURED_NOISE:
                observed = add_noise(blur_valid(scene, psf), sigma, rng)
                sk_score, sk_count = skimage_best(observed, psf, truth, counts, mirror=True)
                restored, report = deblur(observed, psf, DeblurSettings(priority=args.priority))
                ours = psnr(restored, truth)
                gains[blur].append(ours - sk_score)
                print(
                    f"| {name} | {blur} | {sigma:g} | {psnr(observed, truth):.2f} | "
                    f"{sk_score:.2f} ({sk_count}) | {ours:.2f} | {ours - sk_score:+.2f} | "
                    f"{report.iterations}, {report.stop_reason} |",
                    flush=True,
                )
    every = [g for values in gains.values() for g in values]
    means = ", ".join(f"{blur} {np.mean(values):+.2f}" for blur, values in gains.items())
    print(
        f"\nMean gain over scikit-image's best: **{np.mean(every):+.2f} dB** ({means}); "
        f"worst {min(every):+.2f} dB; {sum(g < 0 for g in every)} of {len(every)} below it."
    )


def speed_scene(height: int, width: int) -> np.ndarray:
    """A photo-like linear scene of height x width: a mosaic of the quality photographs
    (mirrored so that tiles meet without seams), at their own resolution."""
    tiles = [photo(name, 512)[:256, :256] for name in QUICK_PHOTOS]
    block = np.concatenate(
        [np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)], axis=0
    )
    block = np.concatenate([block, block[:, ::-1]], axis=1)
    block = np.concatenate([block, block[::-1]], axis=0)
    reps = (-(-height // block.shape[0]), -(-width // block.shape[1]), 1)
    return np.tile(block, reps)[:height, :width]


def time_engine(
    observed: np.ndarray, psf: np.ndarray, settings: DeblurSettings = DeblurSettings()
) -> dict:
    """Deblur in this process; report time, iterations, per-iteration time and peak memory."""
    stamps: list[float] = []
    from worker import paths
    from worker.files.wisdom import fftw_wisdom

    start = time.perf_counter()
    with fftw_wisdom(paths.wisdom_file()):
        _, report = deblur(
            observed, psf, settings, progress=lambda f, s: stamps.append(time.perf_counter())
        )
    seconds = time.perf_counter() - start
    steps = np.diff(stamps[1:])  # between iteration ends
    return {
        "seconds": seconds,
        "iterations": report.iterations,
        "stop": report.stop_reason,
        "per_iteration": float(np.median(steps)) if len(steps) else float("nan"),
        "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def child_ours(path: str) -> dict:
    """`time_engine` on the saved picture and PSF."""
    return time_engine(np.load(path), np.load(path.replace(".npy", "-psf.npy")))


@contextmanager
def numpy_as_anyone_runs_it() -> Iterator[None]:
    """NumPy's own huge-page advice for the duration: on, on Linux, as NumPy runs for anyone. The
    package turns it off for itself (`worker.refuse_huge_page_advice`) and so in every benchmark
    that imports it; the peers are timed as NumPy runs them by default."""
    switch = numpy_huge_page_switch()
    assert switch is not None  # (NumPy is imported here)
    before = switch(True)
    try:
        yield
    finally:
        switch(before)


def child_skimage(path: str, count: int) -> dict:
    from skimage import restoration

    observed = np.load(path)
    psf = np.load(path.replace(".npy", "-psf.npy"))
    start = time.perf_counter()
    with numpy_as_anyone_runs_it():
        for c in range(observed.shape[2]):
            restoration.richardson_lucy(np.clip(observed[..., c], 0, None), psf, num_iter=count)
    return {
        "seconds": time.perf_counter() - start,
        "rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def fft_floor(shape: tuple[int, int], psf_size: int, channels: int = 3) -> dict:
    """Two rfft2/irfft2 pairs per channel at the padded fast size of a `shape` frame blurred by a
    `psf_size` kernel (pyfftw, FFTW_MEASURE, all cores): what one iteration cannot go below."""
    from worker import paths
    from worker.deconv.fft import RealFFT2, fast_length
    from worker.files.wisdom import fftw_wisdom

    rows, cols = (fast_length(n + psf_size - 1) for n in shape)
    padded = (rows, cols)
    with fftw_wisdom(paths.wisdom_file()):
        fft = RealFFT2(padded, threads=os.cpu_count() or 1)
    fft.real[:] = np.random.default_rng(0).random(padded, dtype=np.float32)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(2 * channels):
            fft.forward()
            fft.backward()
        times.append(time.perf_counter() - start)
    return {"seconds": min(times), "shape": list(padded)}


def child_fft_floor(path: str) -> dict:
    """`fft_floor` for the saved picture and PSF."""
    observed = np.load(path, mmap_mode="r")
    psf_size = np.load(path.replace(".npy", "-psf.npy")).shape[0]
    return fft_floor(observed.shape[:2], psf_size, observed.shape[2])


def child_cli(path: str) -> dict:
    """`dt-deconvolve deblur` end to end on a float32 TIFF: wall time and its peak memory."""
    import tifffile

    folder = Path(path).parent
    tiff, out = str(folder / "observed.tif"), str(folder / "sharp.tif")
    tifffile.imwrite(tiff, np.load(path), photometric="rgb")
    psf = path.replace(".npy", "-psf.npy")
    start = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "worker", "deblur", tiff, "--psf", psf, "-o", out, "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    seconds = time.perf_counter() - start
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    return {
        "seconds": seconds,
        "rss_gb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20,
        "iterations": report.get("iterations"),
    }


def in_child(*arguments: str) -> dict:
    completed = subprocess.run(
        [sys.executable, __file__, "--child", *arguments],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def speed(args: argparse.Namespace) -> None:
    height, width = args.speed_size
    rng = np.random.default_rng(args.seed)
    psf = camera_shake_kernel(21, rng)
    observed = add_noise(blur_valid(speed_scene(height + 20, width + 20), psf), 0.01, rng)
    print(f"\n### Speed: {width} x {height} RGB float32, 21 x 21 kernel\n")
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "observed.npy")
        np.save(path, observed)
        np.save(path.replace(".npy", "-psf.npy"), psf)
        del observed
        ours = in_child("ours", path)
        floor = in_child("fft", path)
        cli = in_child("cli", path) if args.cli else None
        sk = (
            in_child("skimage", path, str(args.skimage_iterations))
            if args.skimage_iterations
            else None
        )
    print("| what | seconds | peak memory (GB) | notes |")
    print("|---|---|---|---|")
    print(
        f"| ours: `deblur` | {ours['seconds']:.1f} | {ours['rss_gb']:.2f} | "
        f"{ours['iterations']} iterations, stop: {ours['stop']} |"
    )
    print(
        f"| ours: one iteration | {ours['per_iteration']:.2f} | | "
        f"{ours['per_iteration'] / floor['seconds']:.2f} x the FFT floor |"
    )
    print(
        f"| FFT floor: 2 rfft2/irfft2 pairs x 3 channels | {floor['seconds']:.2f} | | "
        f"at {floor['shape'][0]} x {floor['shape'][1]} |"
    )
    if cli is not None:
        print(
            f"| `dt-deconvolve deblur` on a float TIFF, end to end | {cli['seconds']:.1f} | "
            f"{cli['rss_gb']:.2f} | {cli['iterations']} iterations, "
            "read + deblur + write |"
        )
    if sk is not None:
        print(
            f"| scikit-image RL, {args.skimage_iterations} iterations | {sk['seconds']:.1f} | "
            f"{sk['rss_gb']:.2f} | ours is {sk['seconds'] / ours['seconds']:.1f} x faster |"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer photos, a smaller frame")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-textured", action="store_true")
    parser.add_argument(
        "--textured", nargs="+", default=TEXTURED, help="mate-backgrounds photos (textured part)"
    )
    parser.add_argument("--photos", nargs="+", help=f"scikit-image photos (default: {PHOTOS})")
    parser.add_argument("--noise", type=float, nargs="+", default=None, help="noise sigmas")
    parser.add_argument(
        "--noise-kind", choices=NOISE_KINDS, default=NOISE_KINDS[0], help="quality's noise"
    )
    parser.add_argument("--max-side", type=int, default=768, help="photo size for quality")
    parser.add_argument("--priority", type=float, default=0.0)
    parser.add_argument(
        "--speed-size", type=int, nargs=2, default=None, metavar=("H", "W"), help="speed frame"
    )
    parser.add_argument(
        "--skimage-iterations",
        type=int,
        default=30,
        help="0 leaves scikit-image out of the speed test",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--no-cli", dest="cli", action="store_false", help="leave out `dt-deconvolve deblur`"
    )
    args = parser.parse_args()
    if args.noise is None:
        args.noise = [0.01] if args.quick else [0.01, 0.03]
    if args.speed_size is None:
        args.speed_size = (1000, 1500) if args.quick else (4000, 6000)
    return args


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, path, *rest = sys.argv[2:]
        if kind == "ours":
            result = child_ours(path)
        elif kind == "fft":
            result = child_fft_floor(path)
        elif kind == "cli":
            result = child_cli(path)
        else:
            result = child_skimage(path, int(rest[0]))
        print(json.dumps(result))
        return
    args = parse_args()
    print(f"Machine: {os.cpu_count()} CPU cores; numbers below measured in this run.")
    if not args.skip_quality:
        quality(args)
    if not args.skip_textured:
        textured(args)
    if not args.skip_speed:
        speed(args)


if __name__ == "__main__":
    main()
