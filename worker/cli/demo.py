"""`dt-deconvolve demo`: blur a photo-like test scene, deblur it, show before and after."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from worker.cli.exit_status import ExitStatus
from worker.cli.progress import progress_bar
from worker.signals import held

if TYPE_CHECKING:  # NumPy is imported where the demo runs, not by every command
    import numpy as np

SHAPE = (768, 1024)
KERNEL_SIZE = 21
NOISE = 0.003  # standard deviation of the added noise, in linear units (about ISO 800)
SEED = 2024


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `demo` command.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The commands of the `dt-deconvolve` parser (`build_parser`).
    """
    parser = subparsers.add_parser(
        "demo",
        help="try it on a test picture: shake it, find the blur, deblur it",
        description="Make a photo-like test scene, shake it with a random camera-shake blur, add "
        "sensor noise and save it as a 16-bit TIFF; then do what you would do with a real "
        "photo: estimate the blur from the picture alone and deblur it. Writes blurred.tif, "
        "deblurred.tif, the blur found (psf.npy, psf.png) and applied (true_psf.npy, .png), and "
        "before.png, after.png and sharp.png (the truth) to look at, all at the end.",
    )
    parser.add_argument(
        "-o",
        "--output",
        default="dt-deconvolve-demo",
        metavar="DIR",
        help="folder for the pictures (default: ./dt-deconvolve-demo)",
    )
    parser.set_defaults(func=run)


def shaken_scene(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A scene and its camera-shaken, noisy version, in linear light.

    The blur is a "valid" convolution of a larger scene, so the blurred picture's borders hold
    real blurred content, as in a photograph, not a wrapped-around or zero-padded edge.

    Parameters
    ----------
    rng : numpy.random.Generator
        Where the scene, the blur and the noise are drawn from.

    Returns
    -------
    sharp : ndarray, shape (H, W, 3)
        The scene, float32, (H, W) = `SHAPE`: a dead-leaves picture, values in [0.01, 0.95].
    blurred : ndarray, shape (H, W, 3)
        The scene blurred by `psf`, with Gaussian noise of standard deviation `NOISE` added,
        clipped to [0, 1], float32.
    psf : ndarray, shape (K, K)
        The camera-shake blur, K = `KERNEL_SIZE`, float32, summing to one.
    """
    import numpy as np

    from worker.deconv.synthetic import blur_valid, camera_shake_kernel, dead_leaves

    psf = camera_shake_kernel(KERNEL_SIZE, rng)
    margin = KERNEL_SIZE // 2
    scene = dead_leaves((SHAPE[0] + 2 * margin, SHAPE[1] + 2 * margin), rng)
    blurred = blur_valid(scene, psf)
    blurred += rng.normal(0.0, NOISE, blurred.shape)
    sharp = scene[margin:-margin, margin:-margin]
    return sharp, np.clip(blurred, 0.0, 1.0).astype(np.float32), psf


def psnr_encoded(reference: np.ndarray, picture: np.ndarray) -> float:
    """PSNR of the sRGB-encoded pictures (as they are seen), peak 1.

    Parameters
    ----------
    reference : ndarray
        The truth, in linear light.
    picture : ndarray
        The picture to rate, in linear light, of `reference`'s shape.

    Returns
    -------
    float
        ``10 log10(1 / mean squared error)`` of the encoded values, in dB.
    """
    from worker.deconv.synthetic import psnr
    from worker.files.icc import SRGB

    return psnr(SRGB.encode(picture), SRGB.encode(reference))


@contextlib.contextmanager
def whole_set(folder: Path) -> Iterator[Path]:
    """A new hidden folder to write the demo's files into, moved into `folder` only once the
    block has written them all: a demo interrupted or failing leaves none of them (half a set
    would look like a result), nor a folder it made.

    Parameters
    ----------
    folder : Path
        Where the files are to go, absolute; made (with its parents) at the end if missing.

    Yields
    ------
    Path
        The hidden folder, in the nearest folder above `folder` that exists (so the files are
        moved, not copied); it is removed when the block ends, however it ends.

    Raises
    ------
    OSError
        Naming `folder`: it, or a folder above it, is a file.
    """
    above = next(path for path in (folder, *folder.parents) if path.exists())
    if not above.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder))
    work = Path(tempfile.mkdtemp(prefix=".dt-deconvolve-demo.", dir=above))
    try:
        yield work
        with held():  # (a stopping signal waits until every file is in place)
            folder.mkdir(parents=True, exist_ok=True)
            for file in work.iterdir():
                os.replace(file, folder / file.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    """`demo [-o DIR]`: shake a test scene, estimate its blur and deblur it as a real photo's.

    Writes into DIR (made if missing; all the files or none, `whole_set`) the shaken picture
    (blurred.tif, 16-bit sRGB), the blur applied (true_psf.npy, .png), the blur found (psf.npy,
    .png), the result (deblurred.tif) and PNGs to look at (sharp, before, after); then prints
    the PSNR before and after.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: `output`, the folder.

    Returns
    -------
    int
        `ExitStatus.OK`.

    Raises
    ------
    OSError
        The folder or a file in it cannot be made or written.
    """
    import numpy as np

    from worker.files.icc import SRGB, matrix_profile
    from worker.files.imageio import Picture, read_picture, write_picture, write_png
    from worker.files.kernels import save_kernel, save_kernel_picture
    from worker.jobspec import JobSpec
    from worker.pipeline import run_pipeline

    folder = Path(args.output).absolute()
    sharp, blurred, psf = shaken_scene(np.random.default_rng(SEED))
    with whole_set(folder) as work:
        paths = {name: work / name for name in ("blurred.tif", "psf.npy", "deblurred.tif")}
        # A 16-bit sRGB TIFF with its ICC profile, as a photo editor would export it.
        camera_file = Picture(
            pixels=blurred,
            clip_level=1.0,
            sample_format=np.dtype(np.uint16),
            curves=(SRGB,) * 3,
            icc_profile=matrix_profile(),
        )
        write_picture(paths["blurred.tif"], camera_file, blurred)
        save_kernel(work / "true_psf.npy", psf)
        save_kernel_picture(work / "true_psf.png", psf)
        # The blind run: the blur's extent (with a margin) is all the engine is told.
        spec = JobSpec(
            str(paths["blurred.tif"]),
            str(paths["deblurred.tif"]),
            blur=KERNEL_SIZE + 4,
            window="auto",
        )
        with progress_bar() as progress:
            report = run_pipeline(spec, progress, paths["psf.npy"])
        blurred = read_picture(paths["blurred.tif"]).pixels  # as stored: 16-bit rounded
        deblurred = read_picture(paths["deblurred.tif"]).pixels
        write_png(work / "sharp.png", sharp)
        write_png(work / "before.png", blurred)
        write_png(work / "after.png", deblurred)
    print(f"wrote into {folder}:")
    print("  blurred.tif             the shaken, noisy test picture (16-bit sRGB)")
    print("  psf.npy, psf.png        the blur estimated from it (true_psf.* is the one applied)")
    print("  deblurred.tif           the result")
    print("  before.png, after.png   to look at, with sharp.png (the truth)")
    print(
        f"PSNR against the truth: before {psnr_encoded(sharp, blurred):.2f} dB, "
        f"after {psnr_encoded(sharp, deblurred):.2f} dB "
        f"(blur found in {report['psf_seconds']:.1f} s, "
        f"deblurred in {report['iterations']} iterations, {report['seconds']:.1f} s)"
    )
    return ExitStatus.OK
