"""One deblurring job from file to file: read, (estimate the PSF,) deblur, write.

`run_pipeline` is what the command line (`deblur`, `run`, `demo`) and the worker's jobs call,
with a `JobSpec`. Progress is reported as one fraction 0..1 over all stages, each stage taking a
share in proportion to its usual cost, with the stage's name (`Stage.READING`, `ESTIMATING`,
`DEBLURRING`, `WRITING`).
"""

import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from worker import paths
from worker.deconv import DeblurSettings, deblur
from worker.deconv.blind import DISC, FREE_FORM, GAUSSIAN, NO_BLUR, estimate_blur
from worker.deconv.level import brighten
from worker.deconv.local import describe_subject, subject_kernel, window_kernel
from worker.deconv.noise import kernel_smoothing
from worker.deconv.parametric import kernel_extent
from worker.deconv.psf_tools import validate_psf
from worker.deconv.rl_tv import DeblurReport
from worker.deconv.settings import AUTO, AUTO_BLUR, MAX_BLUR, blur_from_text
from worker.deconv.varying import VARYING, deblur_varying
from worker.deconv.window import window_from_text
from worker.errors import InputError
from worker.files.imageio import read_picture, write_picture
from worker.files.kernels import check_names, picture_path, read_kernel, save_kernels
from worker.files.wisdom import fftw_wisdom
from worker.jobspec import JobSpec
from worker.numbers import is_finite_number, is_whole
from worker.resize import shrink_area
from worker.stages import Progress, Stage, StopReason

WARM_UP_SIZE = 48

# Relative cost of each stage, for the overall progress fraction.
STAGE_WEIGHTS = {
    Stage.READING: 1.0,
    Stage.ESTIMATING: 6.0,
    Stage.DEBLURRING: 12.0,
    Stage.WRITING: 1.0,
}


class StageProgress:
    """Turns each stage's own progress (0..1) into the job's overall fraction.

    Parameters
    ----------
    stages : list of Stage
        The stages the job goes through, in order, each a key of `STAGE_WEIGHTS`; each takes a
        share of 0..1 in proportion to its weight.
    progress : Progress or None
        The listener, called with the overall fraction and the stage; None: nothing is
        reported.
    """

    def __init__(self, stages: list[Stage], progress: Progress | None) -> None:
        total = sum(STAGE_WEIGHTS[stage] for stage in stages)
        self._progress = progress
        self._span: dict[Stage, tuple[float, float]] = {}
        start = 0.0
        for stage in stages:
            width = STAGE_WEIGHTS[stage] / total
            self._span[stage] = (start, width)
            start += width

    def report(self, stage: Stage, fraction: float = 0.0) -> None:
        """Tell the listener that `stage` is `fraction` done.

        Parameters
        ----------
        stage : Stage
            One of the stages given at construction (another raises `KeyError`).
        fraction : float, optional
            How much of the stage is done, 0..1 (clipped to that range).
        """
        if self._progress is not None:
            start, width = self._span[stage]
            self._progress(min(1.0, start + width * min(max(fraction, 0.0), 1.0)), stage)

    def callback(self, stage: Stage) -> Progress:
        """A callback for the engine, which reports its own fraction and stage name.

        Parameters
        ----------
        stage : Stage
            The stage the engine's work belongs to.

        Returns
        -------
        Progress
            ``callback(fraction, name)``: reports `fraction` of `stage` (`report`); the
            engine's stage name is ignored.
        """
        return lambda fraction, _name: self.report(stage, fraction)


def load_psf(path: str | os.PathLike[str], image_shape: tuple[int, ...]) -> np.ndarray:
    """The PSF stored in the .npy file at `path`, checked against the image.

    Parameters
    ----------
    path : str or PathLike
        The .npy file, one array (`read_kernel`); pickled objects are never loaded.
    image_shape : tuple of int
        The shape of the picture it blurs, (H, W, ...): the kernel may be no larger.

    Returns
    -------
    ndarray, shape (Kh, Kw)
        The kernel (`validate_psf`): float32, odd sides, non-negative, summing to one.

    Raises
    ------
    InputError
        Naming `path`: more values than a `MAX_BLUR` x `MAX_BLUR` kernel (refused before numpy
        allocates them), not a .npy file, an .npz archive, or a kernel `validate_psf` refuses.
    OSError
        When `path` cannot be opened or is not a regular file (`open_regular`).
    """
    psf = read_kernel(path, MAX_BLUR)
    try:
        return validate_psf(psf, image_shape)
    except InputError as error:
        raise InputError(f"{path}: {error}") from error


MAX_REASON = 1000  # characters of a kept estimate's reason (the engine's are a few hundred)
MAX_KERNEL_ERROR = 1e4  # a kept estimate's kernel error (the engine's stay within a few hundred)


def _whole_count(value: object) -> bool:
    return is_whole(value) and value >= 0


def _window(value: object) -> bool:
    return isinstance(value, list) and len(value) == 4 and all(map(is_whole, value))


# The entries a kept estimate may carry (`estimate_kernel`'s: `BlurReport`'s, a subject's
# `PsfReport`'s), each with its check; the kind, confidence and reason are required.
ESTIMATE_CHECKS: dict[str, Callable[[object], bool]] = {
    "kernel": lambda kind: kind in (FREE_FORM, GAUSSIAN, DISC, NO_BLUR),
    "confidence": lambda value: is_finite_number(value) and 0 <= value <= 1,
    "reason": lambda text: isinstance(text, str) and len(text) <= MAX_REASON and text.isprintable(),
    "kernel_error": lambda value: is_finite_number(value) and 0 <= value <= MAX_KERNEL_ERROR,
    "smoothing": lambda value: is_finite_number(value) and value >= 1,
    "blur": _whole_count,
    "extent": _whole_count,
    "levels": _whole_count,
    "psf_iterations": _whole_count,
    "window": _window,
    "check_window": _window,
    "sharp": lambda value: isinstance(value, bool),
}
REQUIRED_ESTIMATE = ("kernel", "confidence", "reason")
# What an estimate's reason adds when the deblur hands the picture back (`deblur`): local mode's
# kernel explains no part of it, or the result would not keep its light (`rl_tv.keeps_light`).
LEFT_BY_DEBLUR = {
    StopReason.NO_BLUR: "but it explains no part of this picture, which is left as it is",
    StopReason.UNEXPLAINED: (
        "but deblurred with it this picture would not keep its light, as a deblur must: it is "
        "left as it is"
    ),
}
BLUR_REPORT = ("blur", "extent", "kernel_error", "smoothing")  # `BlurReport`'s: all or none


@dataclasses.dataclass(frozen=True)
class KnownKernel:
    """A kernel estimated for this very picture and settings by an earlier job (the cache keeps
    it under the job's key), and what that estimate found (`cached_estimate`)."""

    path: str
    estimate: dict[str, Any]


def cached_estimate(report: object) -> dict[str, Any] | None:
    """The estimate's entries of an earlier job's report, for a job that reuses its kernel: the
    same kind, confidence, reason and kernel error (which decides the deblur's smoothing), its
    time 0 (this job spends none).

    Parameters
    ----------
    report : object
        The earlier job's report, as `run_pipeline` returned it and the cache keeps it
        (untrusted: anything read from a record).

    Returns
    -------
    dict or None
        Only the entries of `ESTIMATE_CHECKS`, each checked, and ``psf_seconds`` 0. None when
        the report holds no estimate, or a damaged one (a required entry missing, any entry out
        of its range, only some of `BLUR_REPORT`'s entries, or a smoothing that its kernel
        error does not give): the kernel is then found again.
    """
    if not isinstance(report, dict) or not all(name in report for name in REQUIRED_ESTIMATE):
        return None
    estimate = {name: report[name] for name in ESTIMATE_CHECKS if name in report}
    if not all(ESTIMATE_CHECKS[name](value) for name, value in estimate.items()):
        return None
    blur_report = [name in estimate for name in BLUR_REPORT]
    if any(blur_report) and not (
        all(blur_report)  # (and the smoothing the one its kernel error gives, to the hundredth)
        and abs(estimate["smoothing"] - kernel_smoothing(estimate["kernel_error"])) <= 0.01
    ):
        return None
    return {**estimate, "psf_seconds": 0.0}


def known_psf(known: KnownKernel, image_shape: tuple[int, ...]) -> np.ndarray | None:
    """The kept kernel of `known`, when it can serve.

    Parameters
    ----------
    known : KnownKernel
        The kernel file an earlier job estimated, and its estimate.
    image_shape : tuple of int
        The shape of the picture to deblur, (H, W, C).

    Returns
    -------
    ndarray or None
        The kernel (`load_psf`); None when it cannot serve (`load_psf` refuses it for this
        picture, or it is not what its estimate says: a 1 x 1 delta for a picture left as it
        is, larger for any other, of the side and extent the estimate gives, where it gives
        them): the kernel is then found again.

    Raises
    ------
    OSError
        When the file cannot be opened (`load_psf`): only `InputError` means "found again".
    """
    try:
        psf = load_psf(known.path, image_shape)
    except InputError:
        return None
    estimate, shape = known.estimate, (psf.shape[0], kernel_extent(psf))
    said = (estimate.get("blur", shape[0]), estimate.get("extent", shape[1]))
    left_as_is = estimate["kernel"] == NO_BLUR
    return psf if left_as_is == (psf.shape == (1, 1)) and said == shape else None


def run_pipeline(
    spec: JobSpec,
    progress: Progress | None = None,
    psf_out: str | os.PathLike[str] | None = None,
    known: KnownKernel | None = None,
    on_written: Callable[[os.stat_result], None] | None = None,
) -> dict[str, Any]:
    """Deblur the TIFF `spec.input` into `spec.output` as `spec` says; returns the report.

    When no blur was found the picture is written back as it was, at a preview's size if one
    (`stop_reason` `StopReason.NO_BLUR`). Each file is written atomically, so a failed job
    leaves no partial file; the kernel is saved only after the output, so a job that fails
    saving it leaves the new output written.

    Parameters
    ----------
    spec : JobSpec
        The job; checked first (`JobSpec.validate`, `JobSpec.check_files`).
    progress : Progress or None, optional
        Called with the job's overall fraction and its stage (`StageProgress`); what it raises
        (cancellation) propagates. None: no report.
    psf_out : str or PathLike or None, optional
        Where to save the PSF the job used (.npy, with a .png beside it): the estimate (a
        `--varying` job's grid of kernels as one array, its picture a montage), or the checked
        copy of the kernel it was given (`load_psf`). None: not saved.
    known : KnownKernel or None, optional
        The kernel an earlier job estimated for the same picture and settings, used with its
        estimate instead of estimating it again (by a job that finds its blur, not
        `--varying`; ignored by others), unless `known_psf` finds it cannot serve.
    on_written : callable or None, optional
        Called with the output file's status once it is written (`write_picture`), so that the
        caller can tell it from a file another program puts at its name afterwards.

    Returns
    -------
    dict
        The engine's entries (iterations, best_iteration, stop_reason, noise_sigma, noise_gain,
        noise_offset, lambda, lambda_factor, seconds, scale) and `output`; for a job that finds
        its blur also `psf_out` (the saved kernel's path, or None) and the estimate's entries
        (`kernel`, `confidence`, `reason`, ...: `estimate_kernel`, `deblur_varying_picture`,
        or the reused `known` estimate).

    Raises
    ------
    InputError
        For bad input: the job, the picture, the kernel, the window.
    OSError
        For files that cannot be read or written.
    """
    spec.validate()
    spec.check_files(*([] if psf_out is None else [psf_out]))
    if psf_out is not None:  # known now to name a file (`.` or `/` has no picture name beside it)
        check_names(psf_out, None)
        spec.check_files(picture_path(psf_out))
    steps = [Stage.READING, Stage.ESTIMATING, Stage.DEBLURRING, Stage.WRITING]
    stages = StageProgress([s for s in steps if spec.estimating or s != Stage.ESTIMATING], progress)
    stages.report(Stage.READING)
    picture = read_picture(spec.input)
    settings = spec.settings
    if settings.clip_level is None and picture.clip_level is not None:
        settings = dataclasses.replace(settings, clip_level=picture.clip_level)
    # (the gain is 1, the pixels untouched, but for a picture far darker than any file holds)
    gain, clip_level = brighten(picture.pixels, settings.clip_level)
    settings = dataclasses.replace(settings, clip_level=clip_level)
    estimated: dict[str, Any] = {}
    learnt = None  # the kernel (or grid of kernels) used: saved once the result is written
    if settings.varying:
        with fftw_wisdom(paths.wisdom_file()):
            restored, report, learnt, estimated = deblur_varying_picture(
                picture.pixels, spec, settings, stages
            )
        deblurred = report.as_dict()
    else:
        if spec.psf is not None:
            learnt = psf = load_psf(spec.psf, picture.pixels.shape)  # (the file read once)
        elif known is not None and (kept := known_psf(known, picture.pixels.shape)) is not None:
            learnt = psf = kept  # the same kernel, deblurred with as before
            estimated = dict(known.estimate)
        else:
            psf, estimated = estimate_kernel(
                picture.pixels, spec, settings.clip_level, stages.callback(Stage.ESTIMATING)
            )
            learnt = psf
        if estimated.get("kernel") == NO_BLUR:  # as it was, at a preview's size if one
            restored = shrink_area(picture.pixels, settings.scale)
            deblurred = DeblurReport.left_as_is(settings.scale).as_dict()
        else:
            with fftw_wisdom(paths.wisdom_file()):
                # A learnt kernel's error counts as noise (`worker.deconv.kernel_error`).
                restored, report = deblur(
                    picture.pixels, psf, settings, stages.callback(Stage.DEBLURRING),
                    estimated.get("kernel_error", 0.0),
                )  # fmt: skip
            deblurred = report.as_dict()
    # A kernel the deblur handed back says so (not a grid's, whose reason counts its parts).
    said = estimated.get("reason", "")  # (a kept estimate's may say it already)
    added = LEFT_BY_DEBLUR.get(deblurred["stop_reason"])
    if added and said and added not in said and estimated.get("kernel") not in (NO_BLUR, VARYING):
        estimated["reason"] = f"{said}; {added}"
    stages.report(Stage.WRITING)
    written = write_picture(
        spec.output, picture, restored / gain if gain != 1 else restored, replace=spec.replace
    )
    if on_written is not None:
        on_written(written)
    try:
        if psf_out is not None and learnt is not None:  # (not before: a failed job keeps the old)
            save_kernels(psf_out, learnt, spec.replace)
        stages.report(Stage.WRITING, 1.0)
    except BaseException:
        # An output that replaces nothing is the job's only if the job ends well: the client
        # of a failed job (the plug-in) leaves a file at that name alone, as another program's.
        with contextlib.suppress(OSError):  # (gone, or replaced by someone meanwhile: left)
            if not spec.replace and os.path.samestat(written, os.lstat(spec.output)):
                os.unlink(spec.output)
        raise
    psf_entry = {"psf_out": None if psf_out is None else str(psf_out)} if spec.estimating else {}
    return {**deblurred, "output": spec.output, **psf_entry, **estimated}


def estimate_kernel(
    pixels: np.ndarray, spec: JobSpec, clip_level: float | None, progress: Progress
) -> tuple[np.ndarray, dict[str, Any]]:
    """Estimate the PSF as `spec` says (blur size or "auto", window).

    In local mode the blurred subject's kernel is learnt: found (`subject_kernel`), or on the
    window given (`window_kernel`); without a subject to learn from, or otherwise,
    `estimate_blur`'s.

    Parameters
    ----------
    pixels : ndarray, shape (H, W, C)
        The picture, float32, linear light.
    spec : JobSpec
        The job: its `blur`, `window` and `settings.local` are read.
    clip_level : float or None
        Where the sensor clipped (None: detected from the picture where needed).
    progress : Progress
        The estimation's progress; what it raises (cancellation) propagates.

    Returns
    -------
    psf : ndarray
        The kernel: float32, odd-sized, summing to one (a 1 x 1 delta when no blur was found).
    entries : dict
        The report's estimation entries: `estimate_blur`'s report, or the subject's kernel's
        and `describe_subject`'s; its time and rounds as `psf_seconds` and `psf_iterations`.

    Raises
    ------
    InputError
        For a window that cannot be read or used, or a picture too small to learn a blur from.
    """
    size = blur_from_text(str(spec.blur or AUTO))
    window = window_from_text(spec.window or "auto", pixels.shape[:2], size)
    subject = None
    if spec.settings.local:  # learn the blur from the blurred subject
        subject = (
            subject_kernel(pixels, size or AUTO_BLUR, progress, clip_level)
            if window is None
            else window_kernel(pixels, size, window, progress, clip_level)
        )
    if subject is not None:
        psf, learnt, twin = subject
        found = {**learnt.as_dict(), **describe_subject(pixels, psf, learnt, twin)}
    else:  # (no subject to learn from: as `run`, which says why and leaves a flat picture)
        local = spec.settings.local  # (then parts sharper than the kernel are kept as they are)
        psf, blur = estimate_blur(pixels, size, window, progress, clip_level, whole_frame=not local)
        found = blur.as_dict()
    rounds, seconds = found.pop("iterations"), found.pop("seconds")
    return psf, {
        **found,
        "psf_iterations": rounds,
        "psf_seconds": seconds,
    }


def deblur_varying_picture(
    pixels: np.ndarray, spec: JobSpec, settings: DeblurSettings, stages: StageProgress
) -> tuple[np.ndarray, DeblurReport, np.ndarray, dict[str, Any]]:
    """`deblur_varying` as `spec` says.

    Parameters
    ----------
    pixels : ndarray, shape (H, W, C)
        The picture, float32, linear light.
    spec : JobSpec
        The job: its `blur` (an odd size; `JobSpec.validate` refuses `--varying` without one)
        and `window` are read.
    settings : DeblurSettings
        The engine's settings (the clip level filled in from the picture).
    stages : StageProgress
        Where the estimation and the deblurring report their progress.

    Returns
    -------
    restored : ndarray
        The result, (H, W, C) or a preview's smaller size.
    report : DeblurReport
        The engine's report.
    kernels : ndarray, shape (rows, cols, K, K)
        The kernels, one per tile (1 x 1 with `run`'s kernel when the blur is uniform).
    entries : dict
        The report's PSF entries: ``grid``, ``uniform``, ``windows`` (lists, None where a tile
        was left as it is), ``kernel``, ``confidence``, ``reason`` and ``psf_seconds`` (the
        estimate's time).

    Raises
    ------
    InputError
        For a window that cannot be read, or a picture too small to learn a blur from.
    """
    size = spec.blur
    assert isinstance(size, int)  # JobSpec.validate: --varying comes with a blur size
    window = window_from_text(spec.window or "auto", pixels.shape[:2], size)
    restored, report, varying = deblur_varying(
        pixels, size, settings, window, stages.callback(Stage.ESTIMATING),
        stages.callback(Stage.DEBLURRING),
    )  # fmt: skip
    rows, cols = varying.grid
    grid = np.array(varying.kernels).reshape(rows, cols, *varying.kernels[0].shape)
    found: dict[str, Any] = {
        "grid": [rows, cols],
        "uniform": varying.uniform,
        "windows": [None if w is None else list(w) for w in varying.windows],
        "kernel": varying.kernel,
        "confidence": varying.confidence,
        "reason": varying.reason,
        "psf_seconds": varying.seconds,
    }
    return restored, report, grid, found


def warm_up(folder: Path | None = None) -> None:
    """Run a tiny job through the whole pipeline: imports, numba compilation, FFT planning.

    A job with a known kernel runs, then the same job finding its blur, for the blind step's
    own compiled kernels (an `InputError` from that one is ignored).

    Parameters
    ----------
    folder : Path or None, optional
        Where the temporary folder for the job's files is made (and removed after); None: the
        system's temporary folder.
    """
    # Imported here: the test scene's maker needs scipy.signal, a third of a second that a
    # one-off command (`deblur`, `run`) would otherwise pay for nothing.
    from worker.deconv.synthetic import camera_shake_kernel, dead_leaves

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="dt-deconvolve-warm-up-", dir=folder) as files:
        image, psf, output = (str(Path(files) / n) for n in ("in.tif", "psf.npy", "out.tif"))
        tifffile.imwrite(image, dead_leaves((WARM_UP_SIZE, WARM_UP_SIZE), rng))
        np.save(psf, camera_shake_kernel(5, rng))
        job = JobSpec(image, output, psf=psf, settings=DeblurSettings(max_iterations=2))
        run_pipeline(job)
        with contextlib.suppress(InputError):  # the blind step compiles its own kernels
            run_pipeline(dataclasses.replace(job, psf=None, blur=5))
