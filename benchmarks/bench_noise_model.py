"""How well the camera's noise model is fitted on real photographs written as an export is.

The blind benchmark's photographs (`bench_blind_photos.py`: its main set, or `--held-out`), each
made linear, given Poisson-Gaussian noise at the benchmark's three ISO-like levels, written as a
16-bit sRGB TIFF without profile (which clips the noise at black and white, as an integer export
does) and read back, unblurred. The model the deblur uses (`estimate_noise_model`, clipped
highlights masked out as `deblur` masks them) is set against the true one: the fitted gain and
read variance over the true ones, and the fitted noise variance over the true one at 2 %, 18 %
and 90 % of white, with the share of the picture's pixels under 1 % of white (its shadows).

    python benchmarks/bench_noise_model.py [--held-out] [--out DIR]

About half a minute. Prints a markdown table: one row per photograph and level, and the ratios'
ranges at the end.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_blind_photos import (  # noqa: E402
    HELD_OUT,
    ISO,
    PHOTOS,
    degrade,
    load_photo,
    write_srgb16,
)
from worker.deconv.boundaries import data_mask  # noqa: E402
from worker.deconv.noise import estimate_noise_model  # noqa: E402

LEVELS = (0.02, 0.18, 0.9)  # where the fitted variance is set against the true one
SHADOW = 0.01  # a pixel under this share of white is in shadow


def noisy_file(sharp: np.ndarray, iso: int, path: Path, rng: np.random.Generator) -> np.ndarray:
    """`sharp` with the noise of ISO level `iso` (the blind benchmark's `degrade`, by no blur),
    written to `path`; what the file holds, linear."""
    noisy = degrade(sharp, np.ones((1, 1), np.float32), iso, rng)
    return write_srgb16(path, noisy).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--held-out", action="store_true", help="the held-out photographs")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_noise_model"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    print("| photo | noise | shadows | gain | read variance | " +
          " | ".join(f"variance at {level:g}" for level in LEVELS) + " |")  # fmt: skip
    print("|---|---|---:|---:|---:|" + "---:|" * len(LEVELS))
    ratios = []
    for photo in HELD_OUT if args.held_out else PHOTOS:
        sharp = load_photo(photo)
        shadows = float(np.mean(sharp.mean(axis=2) < SHADOW))
        for iso, (name, shot, read) in enumerate(ISO):
            picture = noisy_file(sharp, iso, args.out / f"{photo}-{iso}.tif", rng)
            model = estimate_noise_model(picture, data_mask(picture, 1.0))
            gain = shot**2 / 0.18
            row = [model.gain / gain, model.read_variance / read**2] + [
                (model.gain * level + model.read_variance) / (gain * level + read**2)
                for level in LEVELS
            ]
            ratios.append(row)
            print(f"| {photo} | {name} | {100 * shadows:.0f} % | " +
                  " | ".join(f"{value:.2f}" for value in row) + " |")  # fmt: skip
    low, high = np.min(ratios, axis=0), np.max(ratios, axis=0)
    print(f"\n{len(ratios)} pictures: fitted over true " + ", ".join(
        f"{what} {a:.2f}-{b:.2f}"
        for what, a, b in zip(
            ["gain", "read variance", *(f"variance at {level:g}" for level in LEVELS)],
            low, high, strict=True,
        )
    ))  # fmt: skip


if __name__ == "__main__":
    main()
