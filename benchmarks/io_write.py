"""Time reading and writing a 24 Mpx RGB picture, and the TIFF compressions considered.

Usage: python benchmarks/io_write.py [--megapixels 24]
Prints a markdown table. The picture is a dead-leaves scene enlarged to size, with sensor-like
noise (noise is what makes float data hard to compress).
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

from worker.deconv.synthetic import dead_leaves
from worker.files.icc import LINEAR, SRGB, matrix_profile
from worker.files.imageio import Picture, read_picture, write_picture

COMPRESSIONS = {
    "none": {},
    "deflate 1 + predictor (chosen)": {"compression": "zlib", "compressionargs": {"level": 1}},
    "deflate 6 + predictor": {"compression": "zlib", "compressionargs": {"level": 6}},
    "zstd 1 + predictor": {"compression": "zstd", "compressionargs": {"level": 1}},
}


def photo(megapixels: float, rng: np.random.Generator) -> np.ndarray:
    height = round((megapixels * 1e6 / 1.5) ** 0.5)
    width = round(height * 1.5)
    small = dead_leaves((height // 4, width // 4), rng)
    scene = ndimage.zoom(small, (height / small.shape[0], width / small.shape[1], 1), order=1)
    scene += rng.normal(0, 0.005, scene.shape).astype(np.float32)
    return np.clip(scene, 0, 1).astype(np.float32)


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=24.0)
    args = parser.parse_args()
    pixels = photo(args.megapixels, np.random.default_rng(0))
    height, width = pixels.shape[:2]
    print(f"{width}x{height} RGB, {os.cpu_count()} CPUs\n")
    print("| what | seconds | MB on disk |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "picture.tif"
        for dtype, curve in ((np.float32, LINEAR), (np.uint16, SRGB)):
            like = Picture(
                pixels=pixels,
                sample_format=np.dtype(dtype),
                curves=(curve,) * 3,
                icc_profile=matrix_profile(curve),
                exif={"Exif.Image.Make": "Benchmark"},
            )
            name = np.dtype(dtype).name
            seconds = timed(lambda like=like: write_picture(path, like, pixels))
            size = path.stat().st_size / 1e6
            print(f"| write_picture {name} | {seconds:.2f} | {size:.0f} |")
            seconds = timed(lambda: read_picture(path))
            print(f"| read_picture {name} | {seconds:.2f} | |")
        for label, options in COMPRESSIONS.items():
            seconds = timed(
                lambda options=options: tifffile.imwrite(
                    path,
                    pixels,
                    photometric="rgb",
                    rowsperstrip=16,
                    metadata=None,
                    predictor=bool(options),
                    maxworkers=os.cpu_count(),
                    **options,
                )
            )
            size = path.stat().st_size / 1e6
            print(f"| tifffile float32, {label} | {seconds:.2f} | {size:.0f} |")


if __name__ == "__main__":
    main()
