"""One deblurring job from file to file: read, (estimate the PSF,) deblur, write.

`run_pipeline` is what the command line (`deblur`, `run`) and the worker's jobs call. Progress is
reported as one fraction 0..1 over all stages, each stage taking a share in proportion to its
usual cost, with the stage's name (`reading`, `estimating`, `deblurring`, `writing`).
"""

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile

from worker import paths
from worker.deconv import DeblurSettings, deblur
from worker.deconv.blind import AUTO_BLUR, NO_BLUR, estimate_blur
from worker.deconv.psf_tools import validate_psf
from worker.deconv.settings import AUTO, blur_from_text
from worker.deconv.synthetic import camera_shake_kernel, dead_leaves
from worker.deconv.window import window_from_text
from worker.errors import InputError
from worker.files.imageio import read_picture, write_picture
from worker.files.kernels import picture_path, save_kernel, save_kernel_picture
from worker.files.wisdom import fftw_wisdom

WARM_UP_SIZE = 48
Progress = Callable[[float, str], None]

# Relative cost of each stage, for the overall progress fraction.
STAGE_WEIGHTS = {"reading": 1.0, "estimating": 6.0, "deblurring": 12.0, "writing": 1.0}


@dataclasses.dataclass(frozen=True)
class JobOptions:
    """What to do with one picture.

    psf_path: a .npy PSF; None: estimate one from the picture.
    blur: the largest blur to estimate, an odd size in pixels, or "auto" (also None).
    window: where to estimate: "auto", "centre" or "X,Y,W,H".
    psf_out: where to save an estimated PSF (.npy, with a .png beside it).
    settings: the engine's settings.
    """

    psf_path: str | None = None
    blur: int | str | None = None
    window: str | None = None
    psf_out: str | None = None
    settings: DeblurSettings = dataclasses.field(default_factory=DeblurSettings)


class StageProgress:
    """Turns each stage's own progress (0..1) into the job's overall fraction."""

    def __init__(self, stages: list[str], progress: Progress | None) -> None:
        total = sum(STAGE_WEIGHTS[stage] for stage in stages)
        self._progress = progress
        self._span: dict[str, tuple[float, float]] = {}
        start = 0.0
        for stage in stages:
            width = STAGE_WEIGHTS[stage] / total
            self._span[stage] = (start, width)
            start += width

    def report(self, stage: str, fraction: float = 0.0) -> None:
        """Tell the listener that `stage` is `fraction` done."""
        if self._progress is not None:
            start, width = self._span[stage]
            self._progress(min(1.0, start + width * min(max(fraction, 0.0), 1.0)), stage)

    def callback(self, stage: str) -> Progress:
        """A callback for the engine, which reports its own fraction and stage name."""
        return lambda fraction, _name: self.report(stage, fraction)


def load_psf(path: str | os.PathLike[str], image_shape: tuple[int, ...]) -> np.ndarray:
    """The PSF stored in the .npy file at `path`, checked against the image (`InputError`)."""
    try:
        psf = np.load(path, allow_pickle=False)
    except (ValueError, EOFError) as error:
        raise InputError(f"{path} is not a NumPy .npy array file ({error})") from error
    if not isinstance(psf, np.ndarray):  # an .npz archive
        psf.close()
        raise InputError(f"{path} is an .npz archive; the PSF must be one array in a .npy file")
    try:
        return validate_psf(psf, image_shape)
    except InputError as error:
        raise InputError(f"{path}: {error}") from error


def check_output_folder(path: str | os.PathLike[str]) -> None:
    """Raise `OSError` now, before the long work, if no file can be created beside `path`."""
    folder = Path(path).parent
    with tempfile.TemporaryFile(dir=folder):
        pass


def run_pipeline(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    options: JobOptions,
    progress: Progress | None = None,
) -> dict:
    """Deblur the TIFF at `input_path` into `output_path`; returns the JSON-ready report.

    The report holds the engine's (iterations, best_iteration, stop_reason, noise_sigma,
    noise_gain, noise_offset, lambda, seconds, scale) and `output`; with an estimated kernel also
    the estimate's (`kernel`, `confidence`, `reason`, ...: `estimate_kernel`). When no blur was
    found the picture is written back unchanged (`stop_reason` "no_blur"). Raises `InputError`
    for bad input and `OSError` for files that cannot be read or written; the output is written
    atomically, so a failed job leaves nothing.
    """
    options.settings.validate()
    check_output_folder(output_path)
    estimating = options.psf_path is None
    if estimating and options.psf_out is not None:
        check_output_folder(options.psf_out)
    steps = ["reading", "estimating", "deblurring", "writing"]
    stages = StageProgress(
        steps if estimating else [s for s in steps if s != "estimating"], progress
    )
    stages.report("reading")
    picture = read_picture(input_path)
    settings = options.settings
    if settings.clip_level is None and picture.clip_level is not None:
        settings = dataclasses.replace(settings, clip_level=picture.clip_level)
    estimated: dict = {}
    if estimating:
        psf, estimated = estimate_kernel(
            picture.pixels, options, settings.clip_level, stages.callback("estimating")
        )
    else:
        psf = load_psf(options.psf_path, picture.pixels.shape)
    if estimated.get("kernel") == NO_BLUR:
        restored, deblurred = picture.pixels, {"iterations": 0, "stop_reason": "no_blur"}
    else:
        with fftw_wisdom(paths.cache_dir() / "fftw-wisdom"):
            restored, report = deblur(picture.pixels, psf, settings, stages.callback("deblurring"))
        deblurred = report.as_dict()
    stages.report("writing")
    write_picture(output_path, picture, restored)
    stages.report("writing", 1.0)
    return {**deblurred, "output": str(output_path), **estimated}


def estimate_kernel(
    pixels: np.ndarray, options: JobOptions, clip_level: float | None, progress: Progress
) -> tuple[np.ndarray, dict]:
    """Estimate the PSF as `options` say (blur size or "auto", window), save it to
    `options.psf_out` (with its picture beside it) when asked; returns it with the report's
    estimation entries (`estimate_blur`'s report; its time and rounds as `psf_seconds` and
    `psf_iterations`)."""
    size = blur_from_text(str(options.blur or AUTO))
    window = window_from_text(options.window or "auto", pixels.shape[:2], size or AUTO_BLUR)
    psf, report = estimate_blur(pixels, size, window, progress, clip_level)
    if options.psf_out is not None:
        save_kernel(options.psf_out, psf)
        save_kernel_picture(picture_path(options.psf_out), psf)
    found = report.as_dict()
    rounds, seconds = found.pop("iterations"), found.pop("seconds")
    return psf, {
        "psf_out": options.psf_out,
        **found,
        "psf_iterations": rounds,
        "psf_seconds": seconds,
    }


def warm_up() -> None:
    """Run a tiny job through the whole pipeline: imports, numba compilation, FFT planning."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="dt-deconvolve-warm-up-") as folder:
        image, psf, output = (Path(folder) / name for name in ("in.tif", "psf.npy", "out.tif"))
        tifffile.imwrite(image, dead_leaves((WARM_UP_SIZE, WARM_UP_SIZE), rng))
        np.save(psf, camera_shake_kernel(5, rng))
        settings = DeblurSettings(max_iterations=2)
        run_pipeline(image, output, JobOptions(psf_path=str(psf), settings=settings))
        with contextlib.suppress(InputError):  # the blind step compiles its own kernels
            run_pipeline(image, output, JobOptions(blur=5, settings=settings))
