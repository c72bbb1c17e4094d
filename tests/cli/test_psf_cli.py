"""`dt-deconvolve psf` and `run` through the real command line, on real TIFF files."""

import json
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from scipy import ndimage

from tests.tiffs import write_tiff
from worker.deconv.noise import kernel_smoothing
from worker.deconv.synthetic import camera_shake_kernel, dead_leaves, shake
from worker.pipeline import LEFT_BY_DEBLUR
from worker.stages import StopReason


@pytest.fixture(scope="module")
def shaken_tiff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-bit sRGB TIFF of a shaken dead-leaves scene (300 x 360)."""
    rng = np.random.default_rng(11)
    linear = np.clip(shake(dead_leaves((300, 360), rng), camera_shake_kernel(9, rng)), 0, 1)
    encoded = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)
    path = tmp_path_factory.mktemp("psf") / "shaken.tif"
    write_tiff(path, np.rint(encoded * 65535).astype(np.uint16))
    return path


def test_psf_writes_the_kernel_and_its_picture(run_cli, shaken_tiff: Path, tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    kernel, picture = out / "k.npy", out / "k.png"
    done = run_cli("psf", shaken_tiff, "--blur", "13", "-o", "k.npy", "--png", "k.png", "--json",
                   cwd=out)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert set(report) >= {"window", "iterations", "seconds"}
    # (absolute, as `run` reports its files: they were reported as given until engine 0.3.22)
    assert (report["psf"], report["png"]) == (str(kernel), str(picture))
    x, y, w, h = report["window"]
    assert x >= 0 and y >= 0 and x + w <= 360 and y + h <= 300
    psf = np.load(kernel)
    assert psf.shape[0] <= 13 and psf.dtype == np.float32
    assert psf.min() >= 0 and psf.sum() == pytest.approx(1, abs=1e-5)
    assert imagecodecs.png_decode(picture.read_bytes()).ndim == 2
    assert sorted(p.name for p in out.iterdir()) == ["k.npy", "k.png"]


def test_psf_in_the_centre_window(run_cli, shaken_tiff: Path, tmp_path: Path):
    done = run_cli(
        "psf", shaken_tiff, "--blur", "9", "--window", "centre", "-o", tmp_path / "k.npy", "--json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["window"] == [52, 22, 256, 256]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--blur", "13", "--window", "200,100,200,200"], "not inside the 360x300 image"),
        (["--blur", "13", "--window", "0,0,30,30"], "smaller than 3 times the blur size"),
        (["--blur", "41", "--window", "0,0,40,40"], "larger than the window"),
        (["--blur", "13", "--window", "left"], "auto, centre or X,Y,WIDTH,HEIGHT"),  # (usage)
    ],
)
def test_bad_requests_are_one_line_errors(run_cli, shaken_tiff, tmp_path, arguments, message):
    out = tmp_path / "out"
    out.mkdir()
    done = run_cli("psf", shaken_tiff, *arguments, "-o", out / "k.npy")
    assert done.returncode == (2 if "left" in arguments else 1)
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not list(out.iterdir())  # nothing written, not even a temporary file


def test_a_flat_picture_is_left_as_it_is(run_cli, tmp_path: Path):
    rng = np.random.default_rng(12)
    flat = np.clip(30000 + rng.normal(0, 200, (300, 300, 3)), 0, 65535).astype(np.uint16)
    write_tiff(tmp_path / "flat.tif", flat)
    done = run_cli(
        "psf", tmp_path / "flat.tif", "--blur", "auto", "-o", tmp_path / "k.npy", "--json"
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["kernel"] == "none" and report["confidence"] == 0
    assert "no edges to learn the blur from" in report["reason"]
    assert np.load(tmp_path / "k.npy").shape == (1, 1)
    # Local mode and a varying blur, with automatic windows, judge it as `run` does.
    for mode in (["auto"], ["auto", "--local"], ["15", "--varying"]):
        out = tmp_path / f"out{len(mode)}{mode[-1]}.tif"
        done = run_cli("run", tmp_path / "flat.tif", "--blur", *mode, "-o", out)
        assert done.returncode == 0, (mode, done.stderr)
        assert "left as it is (confidence 0.00)" in done.stdout, mode
        assert np.array_equal(tifffile.imread(out), flat), mode
    # A preview of it is the preview's size, as a deblurred one is.
    done = run_cli("run", tmp_path / "flat.tif", "--blur", "auto", "--scale", "0.25", "-o", out)
    assert done.returncode == 0, done.stderr
    assert tifffile.imread(out).shape == (75, 75, 3)


def test_a_picture_too_small_to_learn_from_is_a_one_line_error(run_cli, tmp_path: Path):
    """Two rows of pixels: every blind command refuses them in one line (an internal error
    until engine 0.3.18) and writes nothing; `deblur` with a kernel that fits still works."""
    rng = np.random.default_rng(13)
    write_tiff(tmp_path / "strip.tif", rng.integers(0, 65535, (2, 400, 3), dtype=np.uint16))
    out = tmp_path / "out"
    out.mkdir()
    for command in (["psf"], ["run"], ["run", "--local"], ["run", "--varying"]):
        blur = ["15"] if "--varying" in command else ["auto"]
        name = out / ("k.npy" if command == ["psf"] else "x.tif")
        done = run_cli(*command[:1], tmp_path / "strip.tif", "--blur", *blur, *command[1:],
                       "-o", name)  # fmt: skip
        assert done.returncode == 1, (command, done.stderr)
        assert "is 400x2 pixels: too small to learn its blur from" in done.stderr, command
        assert len(done.stderr.strip().splitlines()) == 1, command
    assert not list(out.iterdir())
    np.save(tmp_path / "k.npy", np.full((1, 3), 1 / 3, np.float32))
    done = run_cli(
        "deblur", tmp_path / "strip.tif", "--psf", tmp_path / "k.npy", "-o", out / "d.tif"
    )
    assert done.returncode == 0, done.stderr


def test_run_local_says_where_the_subjects_blur_was_learnt(run_cli, shaken_tiff: Path, tmp_path):
    done = run_cli(
        "run", shaken_tiff, "--blur", "13", "--local", "-o", tmp_path / "sharp.tif",
        "--iterations", "5",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    said = done.stdout.splitlines()[0]
    assert said.startswith("blur: the blur of the subject, learnt on the "), said
    assert said.endswith("(confidence 0.50)"), said


@pytest.mark.parametrize(("softness", "said"), [
    (1.0, "; " + LEFT_BY_DEBLUR[StopReason.NO_BLUR]),
    (0.0, "narrower than a pixel: the picture is already sharp and is left as it is"),
])  # fmt: skip
def test_run_local_says_when_its_kernel_explains_nothing(
    run_cli, tmp_path: Path, softness: float, said: str
) -> None:
    """A picture soft all over (a Gaussian of sigma 1 px): the subject's kernel is learnt and
    explains no part of it better than a softness in every direction, and the picture comes
    back as it was. Until engine 0.3.39 the report gave the deblur's iterations and the reason
    said the blur was removed where it explains it. Unblurred, the kernel learnt means no blur:
    the picture shows no blurred subject and is treated as `run` treats it (since 0.3.53)."""
    picture, output = tmp_path / "sharp.tif", tmp_path / "out.tif"
    scene = dead_leaves((64, 64), np.random.default_rng(3))
    scene = ndimage.gaussian_filter(scene, (softness, softness, 0))
    write_tiff(picture, np.rint(np.clip(scene, 0, 1) ** (1 / 2.2) * 65535).astype(np.uint16))
    done = run_cli("run", picture, "--blur", "5", "--local", "-o", output, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert (report["iterations"], report["stop_reason"]) == (0, "no_blur")
    assert report["reason"].endswith(said), report["reason"]
    assert np.array_equal(tifffile.imread(output), tifffile.imread(picture))


def test_run_estimates_saves_and_deblurs(run_cli, shaken_tiff: Path, tmp_path: Path):
    output, kernel = tmp_path / "sharp.tif", tmp_path / "psf.npy"
    done = run_cli(
        "run", shaken_tiff, "--blur", "13", "-o", output.name, "--psf-out", kernel.name,
        "--iterations", "10", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    # (both absolute: `psf_out` was reported as given, relative, until engine 0.3.20)
    assert report["output"] == str(output) and report["psf_out"] == str(kernel)
    assert len(report["window"]) == 4 and report["psf_iterations"] > 0
    assert report["psf_seconds"] > 0 and report["iterations"] <= 10
    assert report["kernel"] == "free-form" and 0 <= report["confidence"] <= 1, report["reason"]
    assert np.load(kernel).shape == (13, 13)
    assert (tmp_path / "psf.png").exists()
    assert tifffile.imread(output).shape == (300, 360, 3)


@pytest.mark.parametrize("blur", ["8", "1003", "9" * 24])
def test_run_refuses_a_blur_size_out_of_range_and_writes_nothing(
    run_cli, shaken_tiff, tmp_path, blur
):
    # (A size beyond the worker's 1001 was an internal error with --varying until engine 0.3.9.)
    out = tmp_path / "out"
    out.mkdir()
    for mode in ([], ["--varying"]):
        done = run_cli(
            "run", shaken_tiff, "--blur", blur, *mode, "-o", out / "x.tif",
            "--psf-out", out / "k.npy",
        )  # fmt: skip
        assert done.returncode == 2 and "odd number of pixels from 3 to 1001" in done.stderr
    assert not list(out.iterdir())


def test_run_counts_its_kernels_error_and_deblur_with_it_does_not(
    run_cli, shaken_tiff: Path, tmp_path: Path
):
    kernel = tmp_path / "k.npy"
    done = run_cli(
        "run", shaken_tiff, "--blur", "13", "-o", tmp_path / "run.tif", "--psf-out", kernel,
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    estimated = json.loads(done.stdout.splitlines()[-1])
    assert estimated["kernel"] == "free-form", estimated["reason"]
    assert estimated["kernel_error"] > 0
    assert estimated["smoothing"] == pytest.approx(
        kernel_smoothing(estimated["kernel_error"]), abs=0.005
    )
    done = run_cli("deblur", shaken_tiff, "--psf", kernel, "-o", tmp_path / "given.tif", "--json")
    assert done.returncode == 0, done.stderr
    given = json.loads(done.stdout.splitlines()[-1])
    assert "kernel_error" not in given  # a kernel the user gives is taken as exact
    # Each lambda is the rule's times the factor fitted to its picture (`weight_choice`)
    ratio = (estimated["lambda"] / estimated["lambda_factor"]) / (
        given["lambda"] / given["lambda_factor"]
    )
    assert ratio == pytest.approx(kernel_smoothing(estimated["kernel_error"]), rel=1e-6)


def test_a_picture_far_darker_than_any_file_is_worked_on_as_a_bright_one(
    run_cli, shaken_tiff: Path, tmp_path: Path
):
    """The shaken scene as float samples, and the same dimmed 2^-70 times (a valid float file,
    or an integer one under an ICC curve that maps white to 1e-21): the same kernel, and the
    same results dimmed as much, to the bit. Until engine 0.3.19 the dim one came back as one
    flat value (the engine's floors are set for a file's levels), and `run` found it flat."""
    encoded = tifffile.imread(shaken_tiff) / 65535.0
    linear = np.where(encoded <= 0.04045, encoded / 12.92, ((encoded + 0.055) / 1.055) ** 2.4)
    dim = 2.0**-70
    np.save(tmp_path / "k.npy", camera_shake_kernel(9, np.random.default_rng(11)))
    outputs = {}
    for name, scale in (("bright", 1.0), ("dim", dim)):
        tifffile.imwrite(
            tmp_path / f"{name}.tif", (linear * scale).astype(np.float32), photometric="rgb"
        )
        for command in (
            ["deblur", "--psf", tmp_path / "k.npy", "--iterations", "8"],
            ["run", "--blur", "11", "--iterations", "8", "--psf-out", tmp_path / f"{name}.npy"],
        ):
            out = tmp_path / f"{name}-{command[0]}.tif"
            done = run_cli(command[0], tmp_path / f"{name}.tif", *command[1:], "-o", out)
            assert done.returncode == 0, done.stderr
            outputs[name, command[0]] = tifffile.imread(out).astype(np.float64) / scale
    for command in ("deblur", "run"):
        assert np.array_equal(outputs["dim", command], outputs["bright", command]), command
    assert np.array_equal(np.load(tmp_path / "dim.npy"), np.load(tmp_path / "bright.npy"))
    assert outputs["bright", "run"].std() > 0.5 * linear.std()  # a picture, not a flat value


def test_a_picture_left_as_it_is_reports_every_field(run_cli, tmp_path: Path):
    """`run --json` on a flat picture: left as it is, its report holds the fields every
    report holds (README, `--json`), as `--varying`'s did; until engine 0.3.19 it held only
    `iterations` and `stop_reason`, though the output was shrunk to the preview's scale."""
    write_tiff(tmp_path / "flat.tif", np.full((120, 150, 3), 20000, np.uint16))
    done = run_cli(
        "run", tmp_path / "flat.tif", "--blur", "auto", "--scale", "0.5", "--json",
        "-o", tmp_path / "out.tif",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    fields = {"iterations", "best_iteration", "stop_reason", "noise_sigma", "noise_gain"}
    assert report.keys() >= fields | {"noise_offset", "lambda", "seconds", "scale", "output"}
    assert report["stop_reason"] == "no_blur" and report["scale"] == 0.5
    assert tifffile.imread(tmp_path / "out.tif").shape == (60, 75, 3)


@pytest.mark.parametrize(
    ("command", "option"),
    [("run", "--psf"), ("run", "--psf-o"), ("psf", "--pn")],
)
def test_an_option_is_never_read_from_a_shortened_name(
    run_cli, shaken_tiff: Path, tmp_path: Path, command: str, option: str
) -> None:
    """Until engine 0.3.57 argparse read a prefix of an option as the option: `run --psf K`
    (a kernel given to `run`, which takes none, as `deblur` does) was `--psf-out K`, and the
    user's kernel file was replaced by the estimate. Now a shortened name is an unknown
    option: wrong usage, in one line, and every file as it was."""
    kernel = tmp_path / "mine.npy"
    np.save(kernel, np.ones((3, 3), np.float32) / 9)
    before = kernel.read_bytes()
    output = tmp_path / ("out.tif" if command == "run" else "out.npy")
    done = run_cli(command, shaken_tiff, "--blur", "9", "-o", output, option, kernel)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and f"unrecognized arguments: {option}" in done.stderr
    assert kernel.read_bytes() == before
    assert not output.exists() and not kernel.with_suffix(".png").exists()
