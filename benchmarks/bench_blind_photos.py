"""Blind deblurring of real colour photographs, run through the command line as a user would.

Photographs: ten real photos of Debian's `mate-backgrounds` package (/usr/share/backgrounds/mate/
nature, 1680-2560 px JPEGs, shrunk 2x by area averaging to 0.9-1.3 Mpx, which also averages away
their JPEG artefacts) and two of scikit-image's (astronaut, coffee; 0.24-0.26 Mpx, as they are).
Each is made linear (sRGB curve), blurred in linear light by a known kernel ("valid" convolution:
the frame sees light from beyond it), given Poisson-Gaussian sensor noise at one of three ISO-like
levels, and written as a 16-bit sRGB TIFF without profile, as an export would be. Kernels:

* shake: a random camera-shake path (`worker.deconv.synthetic.camera_shake_kernel`), 9-45 px;
* defocus: a uniform disc, radius 3-8 px;
* gaussian: a Gaussian softness, sigma 1-2.5 px;
* sharp: no blur at all (noise only), run at the plug-in's default size (15 px) and ``auto``:
  a sharp picture must come back no worse (its "true kernel" is no blur, `deblur` denoises).

Every true kernel is centred on its centroid (sub-pixel), so the blurred picture is registered
with the truth. Each picture goes through ``dt-deconvolve run --blur K`` (K = 0.7, 1, 1.5, 2 times
the true extent, and ``auto``; shake only for the guesses other than 1x) and through
``dt-deconvolve deblur --psf TRUE``. Scores, in linear light on the frame less a 24 px border:
PSNR gain over the blurred input (blind, true kernel, and their ratio), the result's shift
against the truth (`shift_of`: the smoothed pictures cross-correlated, 1/20 px; the input's own
shift is printed beside it as the measure's error), the estimated kernel's similarity to the truth
(the peak of their normalised cross-correlation), the confidence and the kernel error ``r`` the
tool reported (`worker.deconv.kernel_error`), and time.

    python benchmarks/bench_blind_photos.py [--quick] [--held-out] [--native] [--out DIR]
        [--cases shake] [--details] [--guesses 31px,45px]

``--native`` cuts each wallpaper's centre at its own resolution instead of shrinking the whole
(the same size, cases and draws): the softness a camera's pixels hold, which shrinking takes
away, and the JPEG artefacts it averages away too, in the input and the reference alike.

``--held-out`` runs, instead, fourteen photographs nothing was tuned on, with draws of their own
(kernels, noise, seeds): the real photographs among Debian's `lomiri-wallpapers-16.04` and
`lomiri-wallpapers-20.04` (in /usr/share/backgrounds; the renders and graphics left out) and the
two of `mate-backgrounds` the main set does not use (`apt-get install lomiri-wallpapers`). Each
is shrunk by the smallest whole factor from 2 that brings it to 1.3 Mpx or less (2 for the main
set's wallpapers, up to 4).

The full run takes 15-35 minutes on two cores (the held-out one about 40); ``--quick`` (five
pictures, guesses 1x and 2x) a few.
"""

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_deblur import wallpaper_path  # noqa: E402
from worker.deconv.blind import similarity  # noqa: E402
from worker.deconv.parametric import gaussian_kernel, kernel_extent  # noqa: E402
from worker.deconv.synthetic import blur_valid, camera_shake_kernel, psnr  # noqa: E402
from worker.files.icc import SRGB  # noqa: E402

PHOTOS = [
    "Dune",
    "LadyBird",
    "TwoWings",
    "Garden",
    "RainDrops",
    "YellowFlower",
    "Wood",
    "Blinds",
    "Storm",
    "GreenMeadow",
    "astronaut",
    "coffee",
]
HELD_OUT = [
    "Aqua",
    "Bridge_by_Sander_Klootwijk",
    "Dragonfly_by_Bolly",
    "FreshFlower",
    "Kleiber_by_Lukas_Baubkus",
    "Picture_0B_by_freespace",
    "Picture_1A_by_freespace",
    "Wine_by_Jakkub_Mede",
    "aitzgorri_by_Aitzol_Berasategi",
    "friends_by_Aitzol_Berasategi",
    "life_by_Aitzol_Berasategi",
    "picosdeeuropa_by_Aitzol_Berasategi",
    "seeding_by_Clements_Engelhardt",
    "sunset_by_Aitzol_Berasategi",
]
MAX_PIXELS = 1.3e6  # a wallpaper is shrunk by whole factors from 2 until it is no larger
DRAWS = {False: (2024, 100), True: (2026, 1100)}  # held out: (the cases' draw, the first seed)
# ISO-like noise levels: (name, shot-noise deviation at mid grey 0.18, read-noise deviation).
ISO = [("ISO 100", 0.002, 0.0005), ("ISO 800", 0.006, 0.0015), ("ISO 3200", 0.015, 0.003)]
GUESSES = ("0.7x", "1x", "1.5x", "2x", "auto")
SHARP_GUESS = 15  # px: the plug-in's default blur size (`lua/lib/deconvolve/logic.lua`)
BORDER = 24


@dataclass
class Case:
    """One degraded picture: which photo, which kernel, which noise."""

    photo: str
    kind: str
    parameter: float
    iso: int
    guesses: tuple[str, ...]
    seed: int

    @property
    def label(self) -> str:
        if self.kind == "sharp":
            return f"{self.photo} sharp {ISO[self.iso][0]}"
        unit = {"shake": "px", "defocus": "r", "gaussian": "sigma"}[self.kind]
        return f"{self.photo} {self.kind} {unit} {self.parameter:g} {ISO[self.iso][0]}"


@dataclass
class Outcome:
    """What one run gave: PSNR gain over the input, shift, kernel similarity, confidence, time."""

    gain: float | None
    shift: float | None = None
    similarity: float | None = None
    confidence: float | None = None
    seconds: float = 0.0
    note: str = ""
    extra: dict = field(default_factory=dict)


def cases(quick: bool, kinds: list[str], held_out: bool = False) -> list[Case]:
    """The benchmark's cases, drawn from a fixed seed (another for the held-out photographs)."""
    draw, first = DRAWS[held_out]
    rng = np.random.default_rng(draw)
    everyone = HELD_OUT if held_out else PHOTOS
    listing = []
    photos = everyone[:3] if quick else everyone
    for i, photo in enumerate(photos):
        size = int(rng.integers(4, 23)) * 2 + 1  # 9..45, odd
        listing.append(Case(photo, "shake", size, i % 3, GUESSES, first + i))
    defocus = everyone[3:4] if quick else everyone[3:9]
    for i, photo in enumerate(defocus):
        radius = float(rng.integers(3, 9))
        listing.append(Case(photo, "defocus", radius, (i + 1) % 3, ("1x", "auto"), first + 100 + i))
    softness = everyone[4:5] if quick else everyone[6:12]
    for i, photo in enumerate(softness):
        sigma = float(np.round(rng.uniform(1.0, 2.5), 1))
        listing.append(Case(photo, "gaussian", sigma, (i + 2) % 3, ("1x", "auto"), first + 200 + i))
    for i, photo in enumerate(photos):  # after the rest: same draws
        listing.append(
            Case(photo, "sharp", 0.0, i % 3, (f"{SHARP_GUESS}px", "auto"), first + 300 + i)
        )
    if quick:
        for case in listing:
            case.guesses = {"shake": ("1x", "2x"), "sharp": (f"{SHARP_GUESS}px",)}.get(
                case.kind, ("1x",)
            )
    return [case for case in listing if case.kind in kinds]


def load_photo(name: str, native: bool = False) -> np.ndarray:
    """The photo `name` in linear light, float32 (H, W, 3): a wallpaper shrunk by the smallest
    whole factor from 2 that brings it to `MAX_PIXELS` or less or, `native`, the centre of the
    same size cut from it at its own resolution (scikit-image's photos as they are either way)."""
    from skimage import data, io, transform

    if hasattr(data, name):
        pixels = getattr(data, name)()[..., :3] / 255.0
    else:
        pixels = io.imread(wallpaper_path(name))[..., :3] / 255.0
        factor = 2
        while pixels.shape[0] * pixels.shape[1] / factor**2 > MAX_PIXELS:
            factor += 1
        if native:
            full_height, full_width = pixels.shape[:2]
            height, width = -(-full_height // factor), -(-full_width // factor)  # as shrunk
            top, left = (full_height - height) // 2, (full_width - width) // 2
            pixels = pixels[top : top + height, left : left + width]
        else:
            pixels = transform.downscale_local_mean(pixels, (factor, factor, 1))
    return SRGB.linearise(np.clip(pixels, 0, 1)).astype(np.float32)


def centred(psf: np.ndarray) -> np.ndarray:
    """`psf` moved (bilinear, sub-pixel) so that its centroid is its central pixel."""
    rows, cols = np.indices(psf.shape)
    centroid = np.array([(rows * psf).sum(), (cols * psf).sum()]) / psf.sum()
    moved = np.clip(ndimage.shift(psf, np.array(psf.shape) // 2 - centroid, order=1), 0, None)
    return moved / moved.sum()


def true_kernel(case: Case, rng: np.random.Generator) -> np.ndarray:
    """The case's kernel, centred, float64."""
    if case.kind == "shake":
        return centred(camera_shake_kernel(int(case.parameter), rng).astype(np.float64))
    if case.kind == "defocus":
        half = int(np.ceil(case.parameter)) + 1
        fine = np.linspace(-half - 0.5, half + 0.5, (2 * half + 1) * 8, endpoint=False) + 1 / 16
        inside = (fine[:, None] ** 2 + fine[None, :] ** 2 <= case.parameter**2).astype(float)
        disc = inside.reshape(2 * half + 1, 8, 2 * half + 1, 8).mean(axis=(1, 3))
        return disc / disc.sum()
    if case.kind == "sharp":
        return np.ones((1, 1))
    return gaussian_kernel(case.parameter)


def guess_size(guess: str, true_extent: int) -> str:
    """The --blur argument of a guess: 'auto', a factor of the true extent ('1.5x': odd, at least
    3) or a size in pixels whatever the blur ('45px', as a user who sets the slider high)."""
    if guess == "auto":
        return "auto"
    if guess.endswith("px"):
        return guess[:-2]
    return str(max(3, round(float(guess[:-1]) * true_extent) | 1))


def degrade(sharp: np.ndarray, psf: np.ndarray, iso: int, rng: np.random.Generator) -> np.ndarray:
    """Blur ("valid") and add Poisson-Gaussian noise; linear float64 (H - K + 1, W - K + 1, 3)."""
    _, shot, read = ISO[iso]
    clean = np.clip(blur_valid(sharp, psf).astype(np.float64), 0, None)
    gain = shot**2 / 0.18
    noisy = rng.poisson(clean / gain) * gain + rng.normal(0, read, clean.shape)
    return np.clip(noisy, 0, 1)


def write_srgb16(path: Path, linear: np.ndarray) -> np.ndarray:
    """Write `linear` as a 16-bit sRGB TIFF without profile; returns what the file holds, linear."""
    encoded = np.round(SRGB.encode(np.clip(linear, 0, 1)) * 65535).astype(np.uint16)
    tifffile.imwrite(path, encoded, photometric="rgb")
    return read_linear(path)


def read_linear(path: Path) -> np.ndarray:
    """A 16-bit sRGB TIFF in linear light, float64."""
    return SRGB.linearise(tifffile.imread(path).astype(np.float64) / 65535)


def inner(image: np.ndarray) -> np.ndarray:
    return image[BORDER:-BORDER, BORDER:-BORDER]


def shift_of(result: np.ndarray, truth: np.ndarray, extent: int) -> float:
    """How far `result` is displaced from `truth`, in pixels: the peak of the cross-correlation
    (1/20 px) of the two, both smoothed by a Gaussian as wide as the blur's `extent`.

    A result that keeps some blur ``r`` is ``r * truth``; whatever ``r``'s shape, at frequencies
    well below ``1 / extent`` it acts as a translation by its centroid, so the smoothed pictures
    differ by that translation alone: the shift a viewer sees. (The cross-correlation of the
    unsmoothed pictures follows ``r``'s brightest tap instead, which moved by up to 9 px on a
    shaken input whose centroid had not moved.) The input itself, blurred by a centred kernel,
    measures the method's error: 0.0 to 0.5 px on this benchmark.
    """
    from skimage.registration import phase_cross_correlation

    grey = [
        ndimage.gaussian_filter(inner(image).mean(axis=2), max(2.0, extent))
        for image in (truth, result)
    ]
    taper = np.outer(np.hanning(grey[0].shape[0]), np.hanning(grey[0].shape[1]))
    grey = [(image - image.mean()) * taper for image in grey]
    offset, _, _ = phase_cross_correlation(*grey, upsample_factor=20, normalization=None)
    return float(np.hypot(*offset))


def cli(*arguments: str) -> tuple[dict | None, float, str]:
    """Run `dt-deconvolve ARGUMENTS --json`: (its report or None, seconds, its error line)."""
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "worker", *arguments, "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        lines = completed.stderr.strip().splitlines()
        return None, seconds, lines[-1] if lines else f"exit {completed.returncode}"
    return json.loads(completed.stdout.strip().splitlines()[-1]), seconds, ""


def score(
    result_path: Path, truth: np.ndarray, baseline: float, extent: int
) -> tuple[float, float]:
    """(PSNR gain over `baseline`, shift) of the result file against the truth."""
    result = read_linear(result_path)
    return psnr(inner(result), inner(truth)) - baseline, shift_of(result, truth, extent)


def run_case(
    case: Case, folder: Path, native: bool = False
) -> tuple[float, int, Outcome, dict[str, Outcome]]:
    """Degrade, deblur with the true kernel and blindly; (input PSNR, extent, true, blind ones).
    `native`: the photograph's centre at its own resolution (`load_photo`)."""
    rng = np.random.default_rng(case.seed)
    psf = true_kernel(case, rng)
    half = psf.shape[0] // 2
    scene = load_photo(case.photo, native)
    truth = scene[half:-half, half:-half] if half else scene
    stem = folder / f"{case.photo}-{case.kind}-{case.parameter:g}".replace(".", "_")
    observed = write_srgb16(stem.with_suffix(".tif"), degrade(scene, psf, case.iso, rng))
    baseline = psnr(inner(observed), inner(truth))
    np.save(f"{stem}-true.npy", psf.astype(np.float32))
    report, seconds, error = cli(
        "deblur", f"{stem}.tif", "--psf", f"{stem}-true.npy", "-o", f"{stem}-true.tif"
    )
    size = kernel_extent(psf) | 1
    true = Outcome(None, seconds=seconds, note=error)
    true.extra["input shift"] = shift_of(observed, truth, size)  # the shift measure's error
    if report is not None:
        true.gain, true.shift = score(Path(f"{stem}-true.tif"), truth, baseline, size)
    blind = {}
    for guess in case.guesses:
        out = f"{stem}-{guess}"
        report, seconds, error = cli(
            "run", f"{stem}.tif", "--blur", guess_size(guess, size), "-o", f"{out}.tif",
            "--psf-out", f"{out}.npy",
        )  # fmt: skip
        outcome = Outcome(None, seconds=seconds, note=error)
        if report is not None:
            outcome.gain, outcome.shift = score(Path(f"{out}.tif"), truth, baseline, size)
            outcome.similarity = similarity(np.load(f"{out}.npy").astype(np.float64), psf)
            outcome.confidence = report.get("confidence")
            outcome.note = report.get("kernel", "")
            outcome.extra["kernel error"] = report.get("kernel_error")
        blind[guess] = outcome
    return baseline, size, true, blind


def number(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def print_details(rows: list[tuple[Case, float, int, Outcome, dict[str, Outcome]]]) -> None:
    print(
        "| case | extent | input dB | guess | blind gain | true gain | ratio | shift px "
        "(input's) | "
        "kernel sim. | confidence | kernel | kernel error r | blind s | true s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case, baseline, size, true, blind in rows:
        for guess, outcome in blind.items():
            ratio = (
                outcome.gain / true.gain
                if outcome.gain is not None and true.gain and true.gain > 0
                else None
            )
            print(
                f"| {case.label} | {size} | {baseline:.2f} | {guess} | "
                f"{number(outcome.gain, signed=True)} | {number(true.gain, signed=True)} | "
                f"{number(ratio)} | {number(outcome.shift)} ({true.extra['input shift']:.2f}) | "
                f"{number(outcome.similarity)} | "
                f"{number(outcome.confidence)} | {outcome.note or '-'} | "
                f"{number(outcome.extra.get('kernel error'))} | "
                f"{outcome.seconds:.1f} | {true.seconds:.1f} |"
            )


def share(kind: str, gains: np.ndarray, trues: np.ndarray) -> str:
    """The mean blind gain as a share of the mean true-kernel gain; "n/a" for sharp pictures,
    whose true kernel (no blur) gains only what `deblur` removes of the noise."""
    return "n/a" if kind == "sharp" else f"{100 * gains.mean() / trues.mean():.0f} %"


def print_summary(rows: list[tuple[Case, float, int, Outcome, dict[str, Outcome]]]) -> None:
    print(
        "| blur | guess | cases | mean blind gain dB | mean true-kernel gain dB | blind/true | "
        "worse than input (< -0.1 dB) | worst dB | max shift px (input's) | mean kernel sim. | "
        "mean blind s | mean true s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    guesses = dict.fromkeys(guess for case, *_ in rows for guess in case.guesses)  # in order
    for kind in ("shake", "defocus", "gaussian", "sharp"):
        for guess in guesses:
            chosen = [(t, b[guess]) for c, _, _, t, b in rows if c.kind == kind and guess in b]
            if not chosen:
                continue
            done = [(t, o) for t, o in chosen if o.gain is not None and t.gain is not None]
            failed = len(chosen) - len(done)
            if not done:
                print(f"| {kind} | {guess} | {len(chosen)} | failed: {chosen[0][1].note} |")
                continue
            gains = np.array([o.gain for _, o in done])
            trues = np.array([t.gain for t, _ in done])
            print(
                f"| {kind} | {guess} | {len(chosen)}{f' ({failed} failed)' if failed else ''} | "
                f"{gains.mean():+.2f} | {trues.mean():+.2f} | "
                f"{share(kind, gains, trues)} | {int((gains < -0.1).sum())} | "
                f"{gains.min():+.2f} | {max(o.shift for _, o in done if o.shift is not None):.2f} "
                f"({max(t.extra['input shift'] for t, _ in done):.2f}) | "
                f"{np.mean([o.similarity for _, o in done]):.2f} | "
                f"{np.mean([o.seconds for _, o in done]):.1f} | "
                f"{np.mean([t.seconds for t, _ in done]):.1f} |"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="five pictures, guesses 1x and 2x")
    parser.add_argument(
        "--held-out", action="store_true", help="the fourteen photographs nothing was tuned on"
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-blind-photos"))
    parser.add_argument(
        "--cases", default="shake,defocus,gaussian,sharp", help="which blurs, comma-separated"
    )
    parser.add_argument("--details", action="store_true", help="print every run")
    parser.add_argument(
        "--native", action="store_true", help="each wallpaper's centre at its own resolution, "
        "not the whole shrunk: the detail a camera's pixels hold, with their softness",
    )  # fmt: skip
    parser.add_argument(
        "--guesses", help="the blur sizes to run every picture with instead of the usual ones, "
        "comma-separated: 'auto', '1.5x' (times the true extent), '45px'",
    )  # fmt: skip
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    started = time.perf_counter()
    for case in cases(args.quick, args.cases.split(","), args.held_out):
        if args.guesses:
            case.guesses = tuple(args.guesses.split(","))
        rows.append((case, *run_case(case, args.out, args.native)))
        print(f"done: {case.label} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if args.details:
        print_details(rows)
        print()
    print_summary(rows)
    print(f"\n{len(rows)} pictures in {time.perf_counter() - started:.0f} s; files in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
