"""Blind PSF estimation on the Levin et al. (CVPR 2009) benchmark: our kernels beside the peers'.

Runs `estimate_psf` on the 32 real blurred captures (kernel size = true size + 4, the whole
255 x 255 image as window), scores every kernel, ours and the five published methods' of
`peer_kernels.npz`, with the error ratio of `benchmarks.error_ratio`, prints a markdown table and
writes a montage of our kernels beside the true ones.

    python benchmarks/bench_levin.py [--data ../shared/data/levin] [--jobs 2]
        [--images im01_ker04,im02_ker07] [--montage levin_kernels.png] [--details]
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
from worker.deconv.psf import estimate_psf  # noqa: E402

PEERS = {
    "fergus_tog_2006": "Fergus 2006",
    "cho_and_lee_tog_2009": "Cho & Lee 2009",
    "levin_cvpr_2011": "Levin 2011",
    "sun_iccp_2013": "Sun 2013",
    "pan_cvpr_2016": "Pan 2016 (dark channel)",
}
OURS = "dt-deconvolve (L0 gradients)"
NAMES = [f"im0{i}_ker0{j}" for i in range(1, 5) for j in range(1, 9)]


def run_ours(data: Path, name: str) -> tuple[str, float, float, np.ndarray]:
    """Estimate one kernel (benchmark orientation) and score it: (name, ratio, seconds, kernel)."""
    with np.load(data / "levin09.npz") as levin:
        sharp, blurred, truth = (levin[f"{name}_{s}"] for s in "xyf")
    size = truth.shape[0] + 4
    started = time.perf_counter()
    psf, _ = estimate_psf(blurred[..., None].astype(np.float32), size, (0, 0, 255, 255))
    seconds = time.perf_counter() - started
    kernel = psf[::-1, ::-1]  # convolution convention -> the benchmark's correlation convention
    return name, error_ratio(blurred, sharp, truth, kernel), seconds, kernel


def score_peer(data: Path, key: str) -> float:
    """The error ratio of one published kernel, `METHOD/imXX_kerYY`."""
    name = key.split("/")[1]
    with np.load(data / "levin09.npz") as levin, np.load(data / "peer_kernels.npz") as peers:
        return error_ratio(levin[f"{name}_y"], levin[f"{name}_x"], levin[f"{name}_f"], peers[key])


def table_row(method: str, ratios: list[float], seconds: list[float] | None) -> str:
    ratios_array = np.array(ratios)
    speed = f"{np.median(seconds):.1f}" if seconds else "n/a"
    return (
        f"| {method} ({len(ratios)}) | {100 * np.mean(ratios_array <= 2):.0f} % | "
        f"{100 * np.mean(ratios_array <= 3):.0f} % | {ratios_array.mean():.2f} | {speed} |"
    )


def montage(kernels: dict[str, np.ndarray], data: Path, path: Path) -> None:
    """A PNG: for each image, the true kernel above ours, each scaled to its own maximum."""
    import imagecodecs

    cell = 33
    names = sorted(kernels)
    columns = min(len(names), 8)
    rows = -(-len(names) // columns)
    canvas = np.full((rows * 2 * cell + rows * 6, columns * cell), 0.15)
    with np.load(data / "levin09.npz") as levin:
        for index, name in enumerate(names):
            top = (index // columns) * (2 * cell + 6)
            left = (index % columns) * cell
            for offset, kernel in ((0, levin[f"{name}_f"]), (cell, kernels[name])):
                k = kernel / kernel.max()
                y0 = top + offset + (cell - k.shape[0]) // 2
                x0 = left + (cell - k.shape[1]) // 2
                canvas[y0 : y0 + k.shape[0], x0 : x0 + k.shape[1]] = k
    image = np.kron(canvas, np.ones((3, 3)))
    path.write_bytes(imagecodecs.png_encode((255 * image).round().astype(np.uint8)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "levin")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--images", help="comma-separated subset, e.g. im01_ker04,im02_ker07")
    parser.add_argument("--montage", type=Path, default=None, help="PNG of our kernels vs true")
    parser.add_argument("--no-peers", action="store_true", help="score only our kernels")
    parser.add_argument("--details", action="store_true", help="print every image's ratio")
    args = parser.parse_args()
    if not (args.data / "levin09.npz").exists():
        parser.error(f"no Levin data in {args.data} (levin09.npz); say where with --data")
    if args.montage and not args.montage.parent.is_dir():  # said now, not after the run
        parser.error(f"no folder {args.montage.parent} for the montage")
    names = args.images.split(",") if args.images else NAMES
    with ProcessPoolExecutor(args.jobs) as pool:
        ours = list(pool.map(run_ours, [args.data] * len(names), names))
        peer_ratios: dict[str, list[float]] = {}
        if not args.no_peers:
            with np.load(args.data / "peer_kernels.npz") as peers:
                keys = [f"{m}/{n}" for m in PEERS for n in names if f"{m}/{n}" in peers]
            for key, ratio in zip(
                keys, pool.map(score_peer, [args.data] * len(keys), keys), strict=True
            ):
                peer_ratios.setdefault(key.split("/")[0], []).append(ratio)
    if args.details:
        for name, ratio, seconds, _ in ours:
            flag = "" if ratio <= 2 else "  <-- over 2" if ratio <= 3 else "  <-- over 3"
            print(f"{name}: ratio {ratio:.2f}, {seconds:.1f} s{flag}")
        print()
    print("| method (images) | error ratio <= 2 | <= 3 | mean ratio | median s/kernel |")
    print("|---|---|---|---|---|")
    for method, label in PEERS.items():
        if method in peer_ratios:
            print(table_row(label, peer_ratios[method], None))
    print(table_row(OURS, [r for _, r, _, _ in ours], [s for _, _, s, _ in ours]))
    if args.montage:
        montage({name: kernel for name, _, _, kernel in ours}, args.data, args.montage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
