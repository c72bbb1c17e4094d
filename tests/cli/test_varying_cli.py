"""`dt-deconvolve run --varying` through the real command line, on a real TIFF file."""

import json
from pathlib import Path

import numpy as np
import tifffile

from tests.tiffs import write_tiff
from worker.deconv.synthetic import camera_shake_kernel, dead_leaves, shake
from worker.pipeline import LEFT_BY_DEBLUR
from worker.stages import StopReason


def test_run_varying_estimates_a_grid_and_deblurs(run_cli, tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    linear = np.clip(shake(dead_leaves((540, 560), rng), camera_shake_kernel(9, rng)), 0, 1)
    write_tiff(tmp_path / "shaken.tif", np.rint(linear ** (1 / 2.2) * 65535).astype(np.uint16))
    output, kernels = tmp_path / "sharp.tif", tmp_path / "kernels.npy"
    done = run_cli(
        "run", tmp_path / "shaken.tif", "--blur", "11", "--varying", "-o", output,
        "--psf-out", kernels, "--iterations", "5", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    rows, cols = report["grid"]
    assert (rows, cols) in ((1, 1), (2, 2))  # 1 x 1: found uniform, as it is
    assert report["uniform"] == ((rows, cols) == (1, 1))
    # What was done, as `run` says it: the plug-in shows it and tags the result with it.
    assert report["kernel"] == ("free-form" if report["uniform"] else "varying")
    assert 0 < report["confidence"] <= 1 and "across the frame" in report["reason"]
    assert len(report["windows"]) == rows * cols and report["iterations"] <= 5
    grid = np.load(kernels)  # (uniform: `run`'s kernel, which may be smaller than the size)
    assert grid.shape[:2] == (rows, cols) and grid.shape[2] == grid.shape[3] <= 11
    assert np.allclose(grid.sum(axis=(2, 3)), 1, atol=1e-5)
    assert (tmp_path / "kernels.png").exists()
    assert tifffile.imread(output).shape == (540, 560, 3)


def test_options_that_do_not_go_together_are_wrong_usage(run_cli, tmp_path: Path) -> None:
    """`--varying` with a kernel file or `--blur auto`, `--local` with `--varying`: one line and
    exit status 2, as an unknown option (it was 1, a failed run, until engine 0.3.39), from
    `deblur`, `run` and `submit` alike (whose client checks before any worker is asked)."""
    write_tiff(tmp_path / "in.tif", np.full((64, 64, 3), 30000, np.uint16))
    np.save(tmp_path / "k.npy", np.ones((3, 3), np.float32) / 9)
    picture, output = tmp_path / "in.tif", tmp_path / "out.tif"
    attempts = [
        ("deblur", picture, "--psf", tmp_path / "k.npy", "--varying"),
        ("run", picture, "--blur", "auto", "--varying"),
        ("run", picture, "--blur", "9", "--varying", "--local"),
        ("submit", picture, "--blur", "9", "--varying", "--local"),
    ]
    for attempt in attempts:
        done = run_cli(*attempt, "-o", output)
        assert done.returncode == 2, (attempt, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "--varying" in lines[0] and "(see --help)" in lines[0]
    assert not output.exists()


def test_a_preview_too_small_for_the_blur_says_so(run_cli, tmp_path: Path):
    """`--varying --scale` leaving a preview a pixel wide: the message `run` gives without
    `--varying` (it was "the image is too small (60x1 pixels)", naming no scale). Sizes are
    written width x height, as the messages about files write them."""
    blocks = np.random.default_rng(2).uniform(0.05, 0.9, (75, 2, 3))
    write_tiff(
        tmp_path / "strip.tif",
        np.rint(np.kron(blocks, np.ones((8, 6, 1))) * 65535).astype(np.uint16),
    )
    done = run_cli(
        "run", tmp_path / "strip.tif", "--blur", "3", "--varying", "--scale", "0.1",
        "-o", tmp_path / "out.tif",
    )  # fmt: skip
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "scale 0.1 leaves a 1x60 preview, too small for the blur" in done.stderr
    assert not (tmp_path / "out.tif").exists()


def test_a_picture_of_one_part_is_treated_as_run_treats_it(run_cli, tmp_path: Path):
    """A picture too small for more than one part (a 1 x 1 grid): the blur is uniform, and the
    picture is treated as `run` treats it, on the window given: the same kernel, checked, the
    same result. Until engine 0.3.19 the one part learnt its own kernel on an automatic window,
    reported as a blur that varies ("1 of 1 parts deblurred"), the window given unused; until
    0.3.20 the kernel was taken unchecked."""
    rng = np.random.default_rng(21)
    linear = np.clip(shake(dead_leaves((300, 360), rng), camera_shake_kernel(9, rng)), 0, 1)
    write_tiff(tmp_path / "small.tif", np.rint(linear ** (1 / 2.2) * 65535).astype(np.uint16))
    reports = {}
    for name, options in (("varying", ["--varying"]), ("run", [])):
        done = run_cli(
            "run", tmp_path / "small.tif", "--blur", "9", "--window", "100,100,120,120",
            *options, "--iterations", "5", "--json", "-o", tmp_path / f"{name}.tif",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        reports[name] = json.loads(done.stdout.splitlines()[-1])
    varying, run = reports["varying"], reports["run"]
    assert varying["grid"] == [1, 1] and varying["uniform"]
    assert varying["windows"] == [run["window"]] == [[100, 100, 120, 120]]
    assert (varying["kernel"], varying["confidence"]) == (run["kernel"], run["confidence"])
    assert run["kernel"] == "none"  # (its one window's kernel could not be checked)
    assert varying["seconds"] == run["seconds"] == 0  # nothing deblurred (0.3.56: the run's)
    assert varying["psf_seconds"] > 0 and run["psf_seconds"] > 0
    assert varying["reason"] == f"no part of the frame is deblurred: {run['reason']}"
    results = [tifffile.imread(tmp_path / f"{name}.tif") for name in reports]
    assert np.array_equal(*results)


def test_a_uniform_kernel_that_cannot_have_made_the_picture_is_said_as_run_says_it(
    run_cli, tmp_path: Path
) -> None:
    """Sharp, noise-free 3 px stripes: `run` learns a disc that cannot have made them (deblurred
    with it they would not keep their light) and hands the picture back, saying why. `--varying`
    finds the blur uniform and does as `run` does; until engine 0.3.53 its reason said only
    that a disc was found, as if the picture had been deblurred with it."""
    stripes = np.tile((np.arange(256) // 3) % 2, (256, 1)).astype(np.float64) * 0.8 + 0.1
    picture = np.repeat(stripes[..., None], 3, axis=2)
    write_tiff(tmp_path / "stripes.tif", np.rint(picture ** (1 / 2.2) * 65535).astype(np.uint16))
    reports = {}
    for name, options in (("varying", ["--varying"]), ("run", [])):
        done = run_cli(
            "run", tmp_path / "stripes.tif", "--blur", "15", *options, "--json",
            "-o", tmp_path / f"{name}.tif",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        reports[name] = json.loads(done.stdout.splitlines()[-1])
        assert reports[name]["stop_reason"] == "unexplained", reports[name]
        assert reports[name]["reason"].endswith("; " + LEFT_BY_DEBLUR[StopReason.UNEXPLAINED])
        result = tifffile.imread(tmp_path / f"{name}.tif")
        assert np.array_equal(result, tifffile.imread(tmp_path / "stripes.tif"))
    assert reports["varying"]["uniform"]
    assert reports["varying"]["reason"] == (
        f"the blur is the same across the frame: {reports['run']['reason']}"
    )
