"""Blur that varies across the frame, and local mode, on real photographs.

Photographs: real 2560 x 1600 (and 2560 x 1920) photos of Debian's `mate-backgrounds` package
(/usr/share/backgrounds/mate/nature), used at their own size (no scaling: about 4 Mpx), made linear
with the sRGB curve. Every degraded picture gets Poisson-Gaussian sensor noise (shot noise of the
given deviation at mid grey, plus read noise of the same deviation) and is written as a 16-bit
sRGB TIFF, as an export would be; every method reads that file. PSNR is in linear light, peak 1.

**Rotation** (camera shake with rotation): a random camera trajectory (a random walk with inertia
in roll, yaw and pitch) whose roll spans 0.3-0.8 degree and whose yaw and pitch move the centre by
6-10 px, for a 50 mm lens on a 36 mm wide sensor (focal length 1.39 frame widths). The blurred
picture is the mean of the homography-warped copies ``S(H_t p)``, ``H_t = K R_t K^-1``, sampled
bilinearly; the frame keeps a 40 px margin inside the photo, so every sample is real. The true
kernel at a point ``p`` is where its light came from: the displacements ``H_t p - p``, splatted
bilinearly. Scores per tile of a 3 x 3 grid (corners, edges, centre), as gains over the blurred
input, for: blind ``run`` (one kernel, `--blur` the largest true extent), the true centre kernel
for the whole frame (what a perfect single kernel gives), any added method, and the *oracle*: each
tile deblurred with its own true kernel (the tile plus a margin of two kernels, default settings).

**Subject** (a moving subject on a static background): a quarter of the frame (an ellipse with a
2 px soft edge) holds a detailed part of another photo, moving during the exposure along a random
camera-shake kernel: ``f = k * (alpha S) + (1 - k * alpha) B``. The *static* region is where
``k * alpha`` is zero (untouched by the subject), the *subject* where ``alpha`` is 1 at least half
a kernel inside. Methods: global deblurring with the true kernel (`deblur --psf`), local mode with
the true kernel (`deblur --psf --local`) and blind local mode (`run --blur K --local`, automatic
window, and the window a user would draw: the subject's bounding box). Scored: the static
region's PSNR change, the subject's gain, how far from the subject's blurred border the picture
was changed by more than 0.01 (ringing reach), and for the blind runs the share of their window
on the subject.

    python benchmarks/bench_varying.py [--parts rotation subject speed] [--photos Wood ...]
                                       [--scenes Wood:YellowFlower ...] [--seed N] [--out DIR]

`--photos` and `--scenes` (background:donor pairs) replace the rotation's photos and the subject's
scenes, `--seed` the draws. The held-out sets the README reports (photographs and scenes nothing
was tuned on): ``--parts rotation --photos TwoWings Dune Blinds Storm --seed 7`` and ``--parts
subject --seed 400 --scenes Garden:TwoWings Dune:LadyBird YellowFlower:RainDrops
GreenMeadow:Blinds Storm:Garden RainDrops:Wood Blinds:TwoWings Aqua:YellowFlower``.

**Speed** (``--parts speed``, not run by default): one photo (Wood) enlarged 1.8x to 16 Mpx,
rotational shake as above, ``run`` and ``run --varying`` timed end to end in the same run, and
beside them a uniform run that keeps a free-form kernel (the estimate's time plus a ``deblur``
with the true kernel at the frame's centre), since ``run`` itself may fall back to a mild kernel.

Rotation and subject take about 6 minutes on two cores. Prints markdown tables; writes crops to
look at into ``--out``.
"""

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numba
import numpy as np
import tifffile
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_deblur import add_noise, wallpaper  # noqa: E402
from worker.deconv import DeblurSettings, deblur  # noqa: E402
from worker.deconv.psf import luminance  # noqa: E402
from worker.deconv.synthetic import camera_shake_kernel, psnr, shake  # noqa: E402
from worker.files.icc import SRGB  # noqa: E402
from worker.files.imageio import read_picture, write_png  # noqa: E402
from worker.jobspec import JobSpec  # noqa: E402
from worker.pipeline import run_pipeline  # noqa: E402

ROTATION_PHOTOS = ["Wood", "LadyBird", "YellowFlower", "Garden"]
SUBJECT_SCENES = [("Wood", "YellowFlower"), ("LadyBird", "Garden"), ("TwoWings", "Wood")]
NOISE = [0.005, 0.01]  # shot and read noise deviations, cycled over the cases
MARGIN = 40  # rotation: px of the photo kept outside the frame
FOCAL = 50 / 36  # focal length in frame widths (50 mm on a 36 mm wide sensor)
POSES = 64
GRID = 3
SUBJECT_KERNEL = 25
CHANGED = 0.01  # a static pixel counts as changed when its luminance moved by more than this


def load_photo(name: str) -> np.ndarray:
    """A mate-backgrounds photo (`wallpaper`) as linear float32 (H, W, 3), at its own size."""
    return SRGB.linearise(wallpaper(name)).astype(np.float32)


def write_input(path: Path, linear: np.ndarray) -> np.ndarray:
    """Write `linear` as a 16-bit sRGB TIFF; return the linear picture as the file holds it."""
    encoded = SRGB.encode(np.clip(linear, 0, 1))
    tifffile.imwrite(path, np.round(encoded * 65535).astype(np.uint16), photometric="rgb")
    return read_picture(path).pixels


def run_job(folder: Path, name: str, spec: JobSpec) -> tuple[np.ndarray, dict, float]:
    """Run `spec` (its output under `folder`/`name`) through the pipeline; the result read back,
    the report and the wall time."""
    output = str(folder / f"{name}.tif")
    started = time.perf_counter()
    report = run_pipeline(replace(spec, output=output))
    return read_picture(output).pixels, report, time.perf_counter() - started


# --- rotation ------------------------------------------------------------------------------


def random_walk(rng: np.random.Generator, steps: int, dims: int) -> np.ndarray:
    """A smooth random path (steps, dims): a velocity with inertia and random kicks, centred."""
    velocity = rng.standard_normal(dims)
    path = np.zeros((steps, dims))
    for t in range(1, steps):
        velocity = 0.9 * velocity + 0.4 * rng.standard_normal(dims)
        path[t] = path[t - 1] + velocity
    return path - path.mean(axis=0)


def rotation_homographies(
    rng: np.random.Generator, shape: tuple[int, int]
) -> tuple[list[np.ndarray], float, float]:
    """Homographies ``K R_t K^-1`` of a shaken, rotating camera, with the roll's span (degrees)
    and the centre's blur extent (px)."""
    height, width = shape
    focal = FOCAL * width
    camera = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    roll_span = rng.uniform(0.3, 0.8)
    centre_span = rng.uniform(6, 10)
    path = random_walk(rng, POSES, 3)
    path[:, 0] *= np.radians(roll_span) / max(np.ptp(path[:, 0]), 1e-12)
    path[:, 1:] *= centre_span / focal / max(np.ptp(path[:, 1:], axis=0).max(), 1e-12)
    homographies = []
    for roll, yaw, pitch in path:
        c, s = np.cos(roll), np.sin(roll)
        r_roll = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
        c, s = np.cos(yaw), np.sin(yaw)
        r_yaw = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
        c, s = np.cos(pitch), np.sin(pitch)
        r_pitch = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
        homographies.append(camera @ r_roll @ r_yaw @ r_pitch @ np.linalg.inv(camera))
    return homographies, roll_span, centre_span


def displacements(homographies: list[np.ndarray], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``H_t p - p`` for the points (x, y): (poses, 2 [dy, dx], *x.shape)."""
    out = []
    for h in homographies:
        w = h[2, 0] * x + h[2, 1] * y + h[2, 2]
        out.append(
            [
                (h[1, 0] * x + h[1, 1] * y + h[1, 2]) / w - y,
                (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / w - x,
            ]
        )
    return np.array(out)


def rotation_blur(photo: np.ndarray, homographies: list[np.ndarray]) -> np.ndarray:
    """The mean of the warped copies ``S(H_t p)`` over the frame (the photo less `MARGIN`)."""
    height, width = photo.shape[0] - 2 * MARGIN, photo.shape[1] - 2 * MARGIN
    return _warp_mean(photo, np.array(homographies), height, width, MARGIN)


@numba.njit(parallel=True, cache=True)
def _warp_mean(
    photo: np.ndarray, homographies: np.ndarray, height: int, width: int, margin: int
) -> np.ndarray:
    """`rotation_blur`'s loop: bilinear samples of every channel at ``H_t p``, averaged."""
    out = np.zeros((height, width, photo.shape[2]), dtype=np.float32)
    poses = homographies.shape[0]
    for i in numba.prange(height):
        for j in range(width):
            for t in range(poses):
                h = homographies[t]
                w = h[2, 0] * j + h[2, 1] * i + h[2, 2]
                x = (h[0, 0] * j + h[0, 1] * i + h[0, 2]) / w + margin
                y = (h[1, 0] * j + h[1, 1] * i + h[1, 2]) / w + margin
                x0, y0 = int(np.floor(x)), int(np.floor(y))
                fx, fy = x - x0, y - y0
                for c in range(photo.shape[2]):
                    top = photo[y0, x0, c] + fx * (photo[y0, x0 + 1, c] - photo[y0, x0, c])
                    bottom = photo[y0 + 1, x0, c] + fx * (
                        photo[y0 + 1, x0 + 1, c] - photo[y0 + 1, x0, c]
                    )
                    out[i, j, c] += (top + fy * (bottom - top)) / poses
    return out


def local_kernel(homographies: list[np.ndarray], y: float, x: float, size: int) -> np.ndarray:
    """The true kernel at (y, x): light arrives from ``p + d_t``, so the convolution kernel has
    its mass at ``-d_t`` (bilinear splats), summing to one."""
    moved = -displacements(homographies, np.array(x), np.array(y))
    kernel = np.zeros((size, size))
    where = moved + size // 2
    base = np.floor(where).astype(int)
    frac = where - base
    for dy in (0, 1):
        for dx in (0, 1):
            weight = np.abs(1 - dy - frac[:, 0]) * np.abs(1 - dx - frac[:, 1])
            np.add.at(kernel, (base[:, 0] + dy, base[:, 1] + dx), weight)
    return (kernel / kernel.sum()).astype(np.float32)


def tiles(shape: tuple[int, ...], grid: int = GRID) -> list[tuple[slice, slice]]:
    """The grid x grid tiles of a frame, row by row."""
    rows = np.linspace(0, shape[0], grid + 1).astype(int)
    cols = np.linspace(0, shape[1], grid + 1).astype(int)
    return [
        (slice(rows[i], rows[i + 1]), slice(cols[j], cols[j + 1]))
        for i in range(grid)
        for j in range(grid)
    ]


def tile_psnr(picture: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.array([psnr(picture[t], truth[t]) for t in tiles(truth.shape)])


def oracle(blurred: np.ndarray, kernels: list[np.ndarray]) -> np.ndarray:
    """Each tile deblurred with its own true kernel (the tile and a margin of two kernels), its
    weight fitted to it, as `run --varying` deblurs its tiles (`varying.deblur_grid`): the
    oracle differs from it in the kernels only."""
    out = np.empty_like(blurred)
    for (rows, cols), kernel in zip(tiles(blurred.shape), kernels, strict=True):
        pad = 2 * kernel.shape[0]
        top, left = max(rows.start - pad, 0), max(cols.start - pad, 0)
        crop = blurred[top : rows.stop + pad, left : cols.stop + pad]
        sharp, _ = deblur(crop, kernel)
        out[rows, cols] = sharp[
            rows.start - top : rows.stop - top, cols.start - left : cols.stop - left
        ]
    return out


@dataclass
class RotationCase:
    photo: str
    noise: float
    seed: int


def rotation_case(
    case: RotationCase, folder: Path, extra: dict[str, Callable]
) -> tuple[dict[str, np.ndarray], str]:
    """Blur, then score every method per tile; returns gains per method and a description."""
    rng = np.random.default_rng(case.seed)
    photo = load_photo(case.photo)
    homographies, roll, centre = rotation_homographies(rng, photo.shape[:2])
    truth = photo[MARGIN:-MARGIN, MARGIN:-MARGIN]
    y, x = np.mgrid[0 : truth.shape[0], 0 : truth.shape[1] : truth.shape[1] - 1]
    reach = np.abs(displacements(homographies, x.astype(float), y.astype(float))).max()
    size = 2 * int(np.ceil(reach)) + 3
    centres = [((r.start + r.stop) / 2, (c.start + c.stop) / 2) for r, c in tiles(truth.shape)]
    kernels = [local_kernel(homographies, cy, cx, size) for cy, cx in centres]
    noisy = add_noise(rotation_blur(photo, homographies), case.noise, rng)
    path = folder / f"rotation-{case.photo}.tif"
    blurred = write_input(path, noisy)
    spec = JobSpec(str(path), "", blur=size)
    before = tile_psnr(blurred, truth)
    results: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {}
    pictures = {"input": blurred}
    run_result, _, timings["run"] = run_job(folder, f"run-{case.photo}", spec)
    pictures["run"] = run_result
    started = time.perf_counter()
    pictures["true centre kernel"] = deblur(blurred, kernels[len(kernels) // 2])[0]
    timings["true centre kernel"] = time.perf_counter() - started
    for name, method in extra.items():
        pictures[name], timings[name] = method(folder, spec, case.photo)
    started = time.perf_counter()
    pictures["oracle"] = oracle(blurred, kernels)
    timings["oracle"] = time.perf_counter() - started
    for name, picture in pictures.items():
        if name != "input":
            results[name] = tile_psnr(picture, truth) - before
    save_crops(folder / f"rotation-{case.photo}.png", pictures)
    lengths = [kernel_extent(k) for k in kernels]
    described = (
        f"{case.photo} {truth.shape[1]}x{truth.shape[0]}, roll {roll:.2f} deg, centre "
        f"{centre:.1f} px, blur {min(lengths):.0f}-{max(lengths):.0f} px (--blur {size}), "
        f"noise {case.noise}; input tile PSNR {before.min():.1f}-{before.max():.1f} dB; "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
    )
    return results, described


def kernel_extent(kernel: np.ndarray) -> float:
    """The longest side of the kernel's support (taps above 1 % of the peak), in px."""
    rows, cols = np.nonzero(kernel > 0.01 * kernel.max())
    return float(max(np.ptp(rows), np.ptp(cols)) + 1)


def save_crops(path: Path, pictures: dict[str, np.ndarray], side: int = 360) -> None:
    """Top-left corner and centre crops of each picture, side by side (methods left to right)."""
    first = next(iter(pictures.values()))
    cy, cx = first.shape[0] // 2 - side // 2, first.shape[1] // 2 - side // 2
    rows = [
        np.concatenate([p[y : y + side, x : x + side] for p in pictures.values()], axis=1)
        for y, x in ((0, 0), (cy, cx))
    ]
    write_png(path, np.clip(np.concatenate(rows, axis=0), 0, 1))


def rotation_table(results: list[tuple[dict[str, np.ndarray], str]]) -> None:
    print("\n### Rotation: PSNR gain over the blurred input per tile (dB)\n")
    print("Tiles: TL T TR / L C R / BL B BR (row by row).\n")
    for _, described in results:
        print(f"- {described}")
    print(
        "\n| photo | method | corners (mean) | centre | edges (mean) | worst tile | tiles worse |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    corners, edges = [0, 2, 6, 8], [1, 3, 5, 7]
    totals: dict[str, list[np.ndarray]] = {}
    for gains, described in results:
        photo = described.split()[0]
        for name, tile_gains in gains.items():
            totals.setdefault(name, []).append(tile_gains)
            print(
                f"| {photo} | {name} | {tile_gains[corners].mean():+.2f} | {tile_gains[4]:+.2f} "
                f"| {tile_gains[edges].mean():+.2f} | {tile_gains.min():+.2f} "
                f"| {(tile_gains < 0).sum()} |"
            )
    print("\n| method | mean gain, all tiles | corners | centre | share of the oracle's gain |")
    print("|---|---:|---:|---:|---:|")
    oracle_mean = np.mean(totals["oracle"])
    for name, all_gains in totals.items():
        stacked = np.array(all_gains)
        print(
            f"| {name} | {stacked.mean():+.2f} | {stacked[:, corners].mean():+.2f} "
            f"| {stacked[:, 4].mean():+.2f} | {100 * stacked.mean() / oracle_mean:.0f} % |"
        )
    print("\nPer tile (dB, row by row):\n")
    for gains, described in results:
        for name, tile_gains in gains.items():
            print(f"- {described.split()[0]}, {name}: " + " ".join(f"{g:+.1f}" for g in tile_gains))


# --- subject --------------------------------------------------------------------------------


def detailed_box(photo: np.ndarray, height: int, width: int) -> tuple[int, int]:
    """The corner of the height x width box of `photo` with the most gradient energy."""
    grey = luminance(photo)[::8, ::8]
    gy, gx = np.gradient(grey)
    energy = ndimage.uniform_filter(gx * gx + gy * gy, (height // 8, width // 8))
    h, w = energy.shape
    inner = energy[height // 16 : h - height // 16, width // 16 : w - width // 16]
    row, col = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return int(row) * 8, int(col) * 8


def subject_scene(
    background: np.ndarray, donor: np.ndarray, rng: np.random.Generator, psf: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth, blurred, alpha) of an elliptic subject (a quarter of the frame) cut from the most
    detailed part of `donor` and moving along `psf` over the static `background`."""
    height, width = background.shape[:2]
    ay, ax = (np.array([height, width]) / (2 * np.sqrt(np.pi))).astype(int)
    cy = int(rng.integers(ay + 20, height - ay - 20))
    cx = int(rng.integers(ax + 20, width - ax - 20))
    y, x = np.ogrid[0:height, 0:width]
    alpha = (((y - cy) / ay) ** 2 + ((x - cx) / ax) ** 2 <= 1).astype(np.float32)
    alpha = ndimage.gaussian_filter(alpha, 2.0)[..., None]
    top, left = detailed_box(donor, 2 * ay, 2 * ax)
    subject = np.zeros_like(background)
    part = donor[top : top + 2 * ay + 1, left : left + 2 * ax + 1]
    subject[cy - ay : cy - ay + part.shape[0], cx - ax : cx - ax + part.shape[1]] = part
    truth = alpha * subject + (1 - alpha) * background
    moving_alpha = shake(alpha, psf)
    blurred = shake(alpha * subject, psf) + (1 - moving_alpha) * background
    return truth, blurred, alpha[..., 0]


@dataclass
class SubjectCase:
    background: str
    donor: str
    noise: float
    seed: int


def subject_case(case: SubjectCase, folder: Path, extra: dict[str, Callable]) -> list[str]:
    """Table rows (one per method) for one subject scene."""
    rng = np.random.default_rng(case.seed)
    psf = camera_shake_kernel(SUBJECT_KERNEL, rng)
    truth, blurred, alpha = subject_scene(
        load_photo(case.background), load_photo(case.donor), rng, psf
    )
    path = folder / f"subject-{case.background}.tif"
    observed = write_input(path, add_noise(blurred, case.noise, rng))
    psf_path = folder / f"subject-{case.background}.npy"
    np.save(psf_path, psf)
    support = ndimage.binary_dilation(alpha > 1e-3, np.ones(psf.shape, bool))
    static = ~support
    inside = ndimage.binary_erosion(alpha > 0.999, np.ones(psf.shape, bool))
    distance = ndimage.distance_transform_edt(static)
    known = JobSpec(str(path), "", psf=str(psf_path))
    blind = JobSpec(str(path), "", blur=SUBJECT_KERNEL, settings=DeblurSettings(local=True))
    rows_in, cols_in = np.nonzero(alpha > 0.5)  # the box a user would draw around the subject
    top, left = rows_in.min(), cols_in.min()
    box = f"{left},{top},{cols_in.max() + 1 - left},{rows_in.max() + 1 - top}"
    jobs = {  # method -> (the output file's stem, the job)
        "global, true kernel": ("global", known),
        "local, true kernel": ("local", replace(known, settings=DeblurSettings(local=True))),
        "local, blind (auto window)": ("local-blind", blind),
        "local, blind (window: the subject's box)": ("local-box", replace(blind, window=box)),
    }
    label = f"{case.background} + {case.donor} (noise {case.noise})"
    rows = []
    pictures = {"input": observed}
    for name, (stem, spec) in jobs.items():
        result, report, seconds = run_job(folder, f"{stem}-{case.background}", spec)
        pictures[name] = result
        window = report.get("window")
        on_subject = "-"
        if window is not None:
            x, y, w, h = window
            on_subject = f"{100 * np.mean(alpha[y : y + h, x : x + w] > 0.5):.0f} %"
        rows.append(subject_row(label, name, observed, result, truth, static, inside, distance,
                                on_subject, seconds))  # fmt: skip
    for name, method in extra.items():
        result, seconds = method(folder, blind, case.background)
        pictures[name] = result
        rows.append(subject_row(label, name, observed, result, truth, static, inside, distance,
                                "-", seconds))  # fmt: skip
    small = {name: p[::4, ::4] for name, p in pictures.items()}
    write_png(
        folder / f"subject-{case.background}.png",
        np.clip(np.concatenate(list(small.values()), 1), 0, 1),
    )
    return rows


def subject_row(
    label: str,
    name: str,
    observed: np.ndarray,
    result: np.ndarray,
    truth: np.ndarray,
    static: np.ndarray,
    inside: np.ndarray,
    distance: np.ndarray,
    on_subject: str,
    seconds: float,
) -> str:
    before_static = psnr(observed[static], truth[static])
    after_static = psnr(result[static], truth[static])
    before_subject = psnr(observed[inside], truth[inside])
    after_subject = psnr(result[inside], truth[inside])
    changed = static & (np.abs(luminance(result) - luminance(observed)) > CHANGED)
    reach = float(distance[changed].max()) if changed.any() else 0.0
    return (
        f"| {label} | {name} | {before_static:.2f} -> {after_static:.2f} "
        f"({after_static - before_static:+.2f}) | {before_subject:.2f} -> {after_subject:.2f} "
        f"({after_subject - before_subject:+.2f}) | {reach:.0f} | {on_subject} | {seconds:.1f} |"
    )


def subject_table(rows: list[str]) -> None:
    print("\n### Subject: a moving subject over a static background (PSNR, dB)\n")
    print(
        "| scene | method | static region | subject | changed up to (px) | window on subject | s |"
    )
    print("|---|---|---|---|---:|---:|---:|")
    for row in rows:
        print(row)


# --- speed ------------------------------------------------------------------------------


def speed(folder: Path, seed: int, megapixels: float = 16.0) -> None:
    """`run` and `run --varying` on one large picture with rotational shake, timed end to end."""
    rng = np.random.default_rng(seed)
    photo = load_photo("Wood")
    factor = np.sqrt(megapixels * 1e6 / (photo.shape[0] * photo.shape[1]))
    photo = ndimage.zoom(photo, (factor, factor, 1), order=1)
    homographies, _, _ = rotation_homographies(rng, photo.shape[:2])
    frame = rotation_blur(photo, homographies)
    path = folder / "speed.tif"
    write_input(path, add_noise(frame, NOISE[0], rng))
    y, x = np.mgrid[
        0 : frame.shape[0] : frame.shape[0] - 1, 0 : frame.shape[1] : frame.shape[1] - 1
    ]
    reach = np.abs(displacements(homographies, x.astype(float), y.astype(float))).max()
    size = 2 * int(np.ceil(reach)) + 3
    spec = JobSpec(str(path), "", blur=size)
    _, estimated, uniform = run_job(folder, "speed-run", spec)
    # A uniform run that keeps a free-form kernel: the estimate's time, then a deblur with a kernel
    # of that kind (the true one at the frame's centre). On this picture `run` may distrust its
    # kernel and remove only a mild softness, which is quicker than any real deblur.
    centre = local_kernel(homographies, frame.shape[0] / 2, frame.shape[1] / 2, size)
    np.save(folder / "speed-centre.npy", centre)
    _, _, kept = run_job(
        folder, "speed-kept", replace(spec, blur=None, psf=str(folder / "speed-centre.npy"))
    )
    kept += estimated.get("psf_seconds", 0.0)
    varying_spec = replace(spec, settings=replace(spec.settings, varying=True))
    _, report, varying = run_job(folder, "speed-varying", varying_spec)
    pixels = frame.shape[0] * frame.shape[1] / 1e6
    print(f"\n### Speed: {frame.shape[1]}x{frame.shape[0]} ({pixels:.1f} Mpx, the photo enlarged")
    print(f"{factor:.2f}x), --blur {spec.blur}\n")
    print("| command | seconds | ratio to run | ratio to a run that keeps its kernel |")
    print("|---|---:|---:|---:|")
    print(f"| run (kernel: {estimated.get('kernel')}) | {uniform:.1f} | 1.00 | |")
    print(
        f"| estimate + deblur with a free-form kernel | {kept:.1f} | {kept / uniform:.2f} | 1.00 |"
    )
    print(
        f"| run --varying (grid {report['grid']}) | {varying:.1f} | {varying / uniform:.2f} "
        f"| {varying / kept:.2f} |"
    )


# --- main -----------------------------------------------------------------------------------


def run_varying(folder: Path, spec: JobSpec, photo: str) -> tuple[np.ndarray, float]:
    """`run --varying` on the blurred picture of `spec`: the result and the wall time."""
    varying = replace(spec, settings=replace(spec.settings, varying=True))
    result, _, seconds = run_job(folder, f"varying-{photo}", varying)
    return result, seconds


def extra_methods() -> tuple[dict[str, Callable], dict[str, Callable]]:
    """Methods under test besides the baseline: for rotation, subject."""
    return {"run --varying": run_varying}, {}


def scene_pair(text: str) -> tuple[str, str]:
    """A `--scenes` item, BACKGROUND:DONOR, as (background, donor)."""
    background, colon, donor = text.partition(":")
    if not (colon and background and donor):
        raise argparse.ArgumentTypeError(f"{text!r} is not BACKGROUND:DONOR")
    return background, donor


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=["rotation", "subject", "speed"],
                        default=["rotation", "subject"])  # fmt: skip
    parser.add_argument("--photos", nargs="+", default=ROTATION_PHOTOS, help="rotation photos")
    parser.add_argument("--scenes", nargs="+", type=scene_pair, default=SUBJECT_SCENES,
                        help="subject scenes, BACKGROUND:DONOR")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_varying"))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rotation_extra, subject_extra = extra_methods()
    print(f"bench_varying, seed {args.seed}, {os.cpu_count()} cores; pictures in {args.out}")
    if "rotation" in args.parts:
        results = [
            rotation_case(
                RotationCase(photo, NOISE[i % len(NOISE)], args.seed + i), args.out, rotation_extra
            )
            for i, photo in enumerate(args.photos)
        ]
        rotation_table(results)
    if "subject" in args.parts:
        rows = []
        for i, (background, donor) in enumerate(args.scenes):
            case = SubjectCase(background, donor, NOISE[i % len(NOISE)], args.seed + 100 + i)
            rows += subject_case(case, args.out, subject_extra)
        subject_table(rows)
    if "speed" in args.parts:
        speed(args.out, args.seed)


if __name__ == "__main__":
    main()
