"""Blind PSF estimation on photographs shaken by known synthetic camera-shake kernels.

The Levin set has little noise and few textures; this complements it. Eight of scikit-image's sample
pictures (portrait, food, cat fur, city, grey scenes, microscopy, coins) are linearised from sRGB,
blurred by a random camera-shake kernel of 15 and of 31 px (`worker.deconv.synthetic`), given white
noise, and their kernel is estimated with the automatic window (size = true size + 4). Each is
scored with the Levin error ratio on the window's luminance (`benchmarks.error_ratio`).

    python benchmarks/bench_psf_photos.py [--noise 0.005] [--jobs 2] [--details]
"""

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.error_ratio import error_ratio  # noqa: E402
from worker.deconv.psf import estimate_psf, luminance  # noqa: E402
from worker.deconv.synthetic import camera_shake_kernel, shake  # noqa: E402
from worker.files.icc import SRGB  # noqa: E402

PICTURES = [
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "hubble_deep_field",
    "immunohistochemistry",
    "coins",
]
SIZES = (15, 31)
SCORED = 255  # the error ratio's picture size (its crop is the central 225 x 225)


def linear_picture(name: str) -> np.ndarray:
    """scikit-image's sample picture `name` in linear light, float32 (H, W, C)."""
    from skimage import data

    encoded = getattr(data, name)() / 255.0
    if encoded.ndim == 2:
        encoded = encoded[..., None]
    return SRGB.linearise(encoded)


def run_one(index: int, name: str, size: int, noise: float) -> tuple[str, int, float, float]:
    """(picture, kernel size, error ratio, seconds) for one shaken picture."""
    rng = np.random.default_rng(1000 * index + size)
    sharp = linear_picture(name)
    truth = camera_shake_kernel(size, rng)
    blurred = np.clip(shake(sharp, truth) + rng.normal(0, noise, sharp.shape), 0, 1)
    started = time.perf_counter()
    psf, report = estimate_psf(blurred.astype(np.float32), size + 4)
    seconds = time.perf_counter() - started
    x, y, width, height = report.window
    crop = np.s_[y : y + min(height, SCORED), x : x + min(width, SCORED)]
    ratio = error_ratio(
        luminance(blurred)[crop].astype(np.float64),
        luminance(sharp)[crop].astype(np.float64),
        truth[::-1, ::-1],  # the scorer's correlation orientation
        psf[::-1, ::-1],
    )
    return name, size, ratio, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, default=0.005, help="noise sigma (linear light)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--details", action="store_true", help="print every picture's ratio")
    args = parser.parse_args()
    cases = [(i, name, size) for i, name in enumerate(PICTURES) for size in SIZES]
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(
            pool.map(
                run_one,
                *zip(*cases, strict=True),
                [args.noise] * len(cases),
            )
        )
    if args.details:
        for name, size, ratio, seconds in results:
            print(f"{name} ({size} px): ratio {ratio:.2f}, {seconds:.1f} s")
        print()
    ratios = np.array([r for _, _, r, _ in results])
    print("| pictures (kernels) | noise | error ratio <= 2 | <= 3 | mean ratio | median s |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {len(PICTURES)} photos ({len(ratios)}) | {args.noise:g} | "
        f"{100 * np.mean(ratios <= 2):.0f} % | {100 * np.mean(ratios <= 3):.0f} % | "
        f"{ratios.mean():.2f} | {np.median([s for *_, s in results]):.1f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
