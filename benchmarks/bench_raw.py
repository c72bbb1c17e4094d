"""Benchmark through darktable: raw files, darktable's default raw workflow, two export paths.

Each case is a photograph (scikit-image's, converted to linear light) or a night scene with
lamps (a photograph darkened to 1/16 with bright lamps and their glow: high dynamic range). It is
shaken by a random camera-shake kernel in linear light, mosaiced (RGGB) and written as a 12-bit
DNG with Poisson-Gaussian sensor noise added to the mosaic at two ISO-like levels; the sharp
scene is written the same way without noise. darktable 4.2 (under Xvfb, a private config and an
in-memory library) renders both with its default raw workflow (exposure +0.7 EV, filmic), and
each shaken picture is deblurred with the TRUE kernel through

- the plug-in's scene-referred path: the export before the tone mapper (linear Rec. 2020 float,
  made by the plug-in's own lua/lib/deconvolve/roundtrip.lua), deblurred by the worker's
  pipeline, imported back into darktable with the original's look re-applied, rendered;
- today's path: the finished (tone-mapped) export, deblurred by the worker's pipeline;
- no tone mapper, the reference: the scene-referred exports shown in sRGB without tone mapping.

Scores: PSNR gain (dB, display values, away from the borders) over the shaken render, against
darktable's render of the sharp DNG; the ratio of each path's gain to the gain without a tone
mapper. Display values, not linear light: they are what the photographer sees, and on the night
scene linear light would count little but the lamps.

The look (mean CIEDE2000 colour difference): the duplicate should look like the original, only
sharper. All blurs for it are made in LINEAR LIGHT, on the scene-referred data, which darktable
then renders with the original's look: the camera's blur acts there, and filmic's curve and the
display encoding do not commute with a blur, so that a perfect deblur blurred in display values
still differs from the original by 0.3-1.6 dE00 (measured: darktable's render of the sharp DNG
blurred by the kernel against that of the shaken DNG without noise). Two measures:

- coarse, the look itself: the original's and the duplicate's scene data both blurred by a
  Gaussian broader than the kernel (sigma half its side), rendered, compared. At that scale the
  sharpening changes nothing and the sensor noise is averaged away in both, so what differs is a
  change of tone or colour, of the mean level, or clipping: a change of look. This is the
  issue's "after both are blurred" with a blur that leaves only the look to compare;
- re-blurred, the fidelity: the duplicate's scene data blurred by the kernel, rendered, against
  darktable's render of the shaken DNG WITHOUT sensor noise (render_clean.tif). Without noise,
  because a deblur also removes noise, which is no change of look, and through filmic's curve
  that noise even shifts the mean of the shadows. What it still counts is the low-frequency
  noise a deblur keeps (the data are trusted there) and its errors; beside it, in brackets, the
  floor, the sharp scene treated the same way (a perfect deblur: darktable's two pipelines and
  the lamps clipped in the sharp DNG), and, for scale, the original's own noise (its render
  against that of the noise-free DNG).

Also printed, as before: the original's render against the duplicate's blurred by the kernel in
display values, the same with both blurred (which blurs the original twice), and the round trip
without deblurring (the look alone).

    flock /tmp/dtd-heavy.lock python benchmarks/bench_raw.py [--quick] [--keep DIR]

Prints a markdown table. Needs darktable, xvfb-run and scikit-image. darktable 4.2 sometimes
freezes while starting (1 start in 4 here): the session is then killed after DARKTABLE_LIMIT
seconds and the run stops with "darktable (MODE): died"; run it again.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage
from skimage import color

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_deblur import photo  # noqa: E402
from worker.deconv.noise import estimate_noise  # noqa: E402
from worker.deconv.synthetic import camera_shake_kernel, psnr, shake  # noqa: E402
from worker.files.dng import mosaic, write_dng  # noqa: E402
from worker.files.icc import SRGB  # noqa: E402
from worker.files.imageio import read_picture, write_picture  # noqa: E402
from worker.jobspec import JobSpec  # noqa: E402
from worker.pipeline import run_pipeline  # noqa: E402

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket"]
# ISO-like noise levels of the raw mosaic: photons at the white level, read noise (of white).
NOISE = {"low": (8000.0, 0.001), "high": (1000.0, 0.003)}
EXPOSURE = 0.5  # the scene's white at half the sensor's white: darktable adds +0.7 EV
# Linear Rec. 2020 -> linear sRGB (ITU-R BT.2087): to show a scene export without tone mapping.
REC2020_TO_SRGB = np.array(
    [[1.6605, -0.5876, -0.0728], [-0.1246, 1.1329, -0.0083], [-0.0182, -0.1006, 1.1187]]
)
COARSE_PER_KERNEL = 0.5  # the look's coarse scale: a Gaussian sigma of half the kernel's side
DARKTABLE_LIMIT = 600  # seconds for one darktable session


def night_scene(rng: np.random.Generator) -> np.ndarray:
    """A dark street-like scene with lamps: a photograph at 1/16 of its light, plus a few bright
    lamps (up to the sensor's white, some beyond: clipped) and their glow."""
    scene = photo("chelsea", 512) / 16
    height, width = scene.shape[:2]
    lamps = np.zeros((height, width))
    for _ in range(6):
        y, x = rng.integers(20, height - 20), rng.integers(20, width - 20)
        radius = rng.uniform(2, 6)
        yy, xx = np.ogrid[:height, :width]
        lamps[(yy - y) ** 2 + (xx - x) ** 2 <= radius**2] = rng.uniform(1.2, 4.0)
    glow = ndimage.gaussian_filter(lamps, 12) * 3
    warm = np.array([1.0, 0.8, 0.55])
    return (scene + (lamps + glow)[..., None] * warm).astype(np.float32)


def sensor(cfa: np.ndarray, noise: str, rng: np.random.Generator) -> np.ndarray:
    """Poisson-Gaussian noise on a mosaic (fractions of the white level)."""
    photons, read = NOISE[noise]
    shot = rng.poisson(np.clip(cfa, 0, None) * photons) / photons
    return shot + rng.normal(0, read, cfa.shape)


def make_case(folder: Path, scene: np.ndarray, size: int, noise: str, seed: int) -> np.ndarray:
    """sharp.dng, shaken.dng, clean.dng (shaken without noise) and kernel.npy in `folder`;
    returns the kernel."""
    rng = np.random.default_rng(seed)
    kernel = camera_shake_kernel(size, rng)
    folder.mkdir(parents=True)
    even = scene[: scene.shape[0] // 2 * 2, : scene.shape[1] // 2 * 2] * EXPOSURE
    write_dng(folder / "sharp.dng", mosaic(even))
    shaken = mosaic(shake(even, kernel))
    write_dng(folder / "clean.dng", shaken)
    write_dng(folder / "shaken.dng", sensor(shaken, noise, rng))
    np.save(folder / "kernel.npy", kernel)
    return kernel


def run_darktable(work: Path, mode: str, folders: list[Path]) -> None:
    """One darktable session running bench_raw.lua over `folders`."""
    cases = work / f"cases-{mode}.txt"
    cases.write_text("".join(f"{folder}\n" for folder in folders))
    home = work / f"darktable-{mode}"
    for sub in ("config", "cache", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, BENCH_ROOT=str(ROOT), BENCH_CASES=str(cases), BENCH_MODE=mode)
    driver = ROOT / "benchmarks" / "bench_raw.lua"
    subprocess.run(
        ["timeout", "-k", "5", str(DARKTABLE_LIMIT), "xvfb-run", "-a", "darktable",
         "--configdir", str(home / "config"), "--cachedir", str(home / "cache"),
         "--tmpdir", str(home / "tmp"), "--library", ":memory:", "--disable-opencl",
         "--luacmd", f"dofile([[{driver}]])"],
        env=env, capture_output=True, check=False,
    )  # fmt: skip
    status = Path(f"{cases}.status")
    if not status.exists() or status.read_text() != "done":
        raise SystemExit(f"darktable ({mode}): {status.read_text() if status.exists() else 'died'}")


def deblur_file(source: Path, target: Path, kernel: Path) -> None:
    """The worker's own pipeline, with the true kernel and default settings."""
    run_pipeline(JobSpec(str(source), str(target), psf=str(kernel)))


def blurred_scenes(folder: Path, kernel: np.ndarray) -> None:
    """The scene-referred exports blurred in linear light, stored like them, for the look:
    the deblurred and the sharp one by the kernel (scene_reblurred.tif, scene_sharpblurred.tif),
    the shaken and the deblurred one by a Gaussian broader than the kernel (scene_coarse_*.tif)."""
    sigma = (COARSE_PER_KERNEL * kernel.shape[0],) * 2 + (0,)
    blurs = [
        ("deblurred", "reblurred", lambda pixels: shake(pixels, kernel)),
        ("sharp", "sharpblurred", lambda pixels: shake(pixels, kernel)),
        ("shaken", "coarse_shaken", lambda pixels: ndimage.gaussian_filter(pixels, sigma)),
        ("deblurred", "coarse_deblurred", lambda pixels: ndimage.gaussian_filter(pixels, sigma)),
    ]
    for source, target, blur in blurs:
        picture = read_picture(folder / f"scene_{source}.tif")
        write_picture(folder / f"scene_{target}.tif", picture, blur(picture.pixels))


def display(path: Path) -> np.ndarray:
    """A darktable render (float TIFF, sRGB) as display values in [0, 1]."""
    return np.clip(tifffile.imread(path)[..., :3].astype(np.float64), 0, 1)


def untoned(path: Path) -> np.ndarray:
    """A scene-referred export (linear Rec. 2020) shown in sRGB without tone mapping."""
    linear = tifffile.imread(path)[..., :3].astype(np.float64) @ REC2020_TO_SRGB.T
    return SRGB.encode(np.clip(linear, 0, 1))


def delta_e(a: np.ndarray, b: np.ndarray, kernel: np.ndarray | None, border: int) -> float:
    """Mean CIEDE2000 difference of two sRGB pictures, `b` blurred by `kernel` first if given."""
    if kernel is not None:
        b = shake(np.asarray(b, np.float32), kernel)
    inner = (slice(border, -border), slice(border, -border))
    lab = [color.rgb2lab(np.clip(x, 0, 1)[inner]) for x in (a, b)]
    return float(color.deltaE_ciede2000(*lab).mean())


def gain(result: np.ndarray, shaken: np.ndarray, sharp: np.ndarray, border: int) -> float:
    inner = (slice(border, -border), slice(border, -border))
    return psnr(result[inner], sharp[inner]) - psnr(shaken[inner], sharp[inner])


def score(folder: Path, kernel: np.ndarray) -> dict[str, float]:
    """The case's gains and colour differences (see the module's docstring)."""
    border = 2 * kernel.shape[0]
    sharp, shaken = display(folder / "render_sharp.tif"), display(folder / "render_shaken.tif")
    clean = display(folder / "render_clean.tif")
    plain = [untoned(folder / f"scene_{name}.tif") for name in ("sharp", "shaken", "deblurred")]
    deblurred = display(folder / "render_deblurred.tif")
    return {
        "scene": gain(deblurred, shaken, sharp, border),
        "finished": gain(display(folder / "finished_deblurred.tif"), shaken, sharp, border),
        "untoned": gain(plain[2], plain[1], plain[0], border),
        "de_blurred": delta_e(shaken, deblurred, kernel, border),
        "de_both": delta_e(shake(shaken.astype(np.float32), kernel), deblurred, kernel, border),
        "de_roundtrip": delta_e(shaken, display(folder / "render_roundtrip.tif"), None, border),
        "de_look": delta_e(clean, display(folder / "render_reblurred.tif"), None, border),
        "de_floor": delta_e(clean, display(folder / "render_sharpblurred.tif"), None, border),
        "de_coarse": delta_e(
            display(folder / "render_coarse_shaken.tif"),
            display(folder / "render_coarse_deblurred.tif"),
            None,
            border,
        ),
        "de_noise": delta_e(clean, shaken, None, border),
    }


def noise_check(folder: Path) -> dict[str, float]:
    """The noise of the scene-referred export, demosaiced: its true sigma (the robust spread of
    the export of the noisy DNG less that of the same DNG without noise) beside what the engine's
    estimator measures on the noise alone and on the picture."""
    noisy, clean = (
        tifffile.imread(folder / f"scene_{name}.tif")[..., :3].astype(np.float64)
        for name in ("shaken", "clean")
    )
    noise = noisy - clean
    true = float(np.mean([np.median(np.abs(noise[..., c])) for c in range(3)]) / 0.6745)
    return {
        "true": true,
        "on_noise": estimate_noise(noise),
        "on_picture": estimate_noise(noisy),
    }


def print_noise(labels: list[tuple[str, int, str]], rows: list[dict[str, float]]) -> None:
    """The noise table: true sigma, the estimates, their ratios."""
    print(
        "\n| case | noise | true sigma | estimate on the noise (ratio) | on the picture (ratio) |"
    )
    print("|---|---|---|---|---|")
    for (name, _, noise), row in zip(labels, rows, strict=True):
        print(
            f"| {name} | {noise} | {row['true']:.5f} "
            f"| {row['on_noise']:.5f} ({row['on_noise'] / row['true']:.2f}) "
            f"| {row['on_picture']:.5f} ({row['on_picture'] / row['true']:.2f}) |"
        )


def cases(quick: bool) -> list[tuple[str, np.ndarray, int, str]]:
    """(name, linear scene, kernel size, noise level) of every case."""
    rng = np.random.default_rng(11)
    photos = PHOTOS[:2] if quick else PHOTOS
    found = []
    for index, name in enumerate(photos):
        scene = photo(name, 512)
        for noise in ("low",) if quick else ("low", "high"):
            found.append((name, scene, (15, 19, 17, 21)[index], noise))
    night = night_scene(rng)
    for noise in ("low",) if quick else ("low", "high"):
        found.append(("night lamps", night, 17, noise))
    return found


def print_table(labels: list[tuple[str, int, str]], rows: list[dict[str, float]]) -> None:
    """One markdown row per case, then each path's mean gain and ratio to the untoned gain."""
    print(
        "| case | kernel | noise | no tone mapper (dB) | scene-referred path (dB, % of it) "
        "| finished export (dB, % of it) | dE00 look: coarse | re-blurred (floor) "
        "| original's own noise | old: duplicate blurred | old: both blurred | round trip |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (name, size, noise), row in zip(labels, rows, strict=True):
        paths = " | ".join(
            f"{row[path]:+.2f} ({100 * row[path] / row['untoned']:.0f} %)"
            for path in ("scene", "finished")
        )
        print(
            f"| {name} | {size} | {noise} | {row['untoned']:+.2f} | {paths} "
            f"| {row['de_coarse']:.2f} | {row['de_look']:.2f} ({row['de_floor']:.2f}) "
            f"| {row['de_noise']:.2f} | {row['de_blurred']:.2f} "
            f"| {row['de_both']:.2f} | {row['de_roundtrip']:.3f} |"
        )
    for path in ("scene", "finished"):
        ratios = [row[path] / row["untoned"] for row in rows]
        print(
            f"\n{path}: mean gain {np.mean([row[path] for row in rows]):+.2f} dB, "
            f"mean {100 * np.mean(ratios):.0f} % of the untoned gain, lowest "
            f"{100 * min(ratios):.0f} %, {sum(row[path] < 0 for row in rows)} cases worse"
        )
    looks = {"de_coarse": "look, coarse", "de_look": "look, re-blurred", "de_blurred": "old look"}
    for key, what in looks.items():
        values = [row[key] for row in rows]
        print(
            f"\n{what}: mean dE00 {np.mean(values):.2f}, highest {max(values):.2f}, "
            f"{sum(value < 1 for value in values)} of {len(values)} under 1"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer cases")
    parser.add_argument("--keep", type=Path, help="keep the files in this (new) folder")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-raw-"))
    folders, kernels, labels = [], [], []
    for index, (name, scene, size, noise) in enumerate(cases(args.quick)):
        folder = work / f"{index:02d}-{name.replace(' ', '-')}-{noise}"
        kernels.append(make_case(folder, scene, size, noise, seed=index))
        folders.append(folder)
        labels.append((name, size, noise))
    run_darktable(work, "render", folders)
    for folder in folders:
        kernel = folder / "kernel.npy"
        deblur_file(folder / "scene_shaken.tif", folder / "scene_deblurred.tif", kernel)
        deblur_file(folder / "render_shaken.tif", folder / "finished_deblurred.tif", kernel)
        blurred_scenes(folder, np.load(kernel))
    run_darktable(work, "look", folders)
    print_table(
        labels, [score(folder, kernel) for folder, kernel in zip(folders, kernels, strict=True)]
    )
    print_noise(labels, [noise_check(folder) for folder in folders])
    print(f"files in {work}")


if __name__ == "__main__":
    main()
