"""The `deblur` and `demo` commands, run as real processes: results, reports and every error path.

Each error must give exit status 1, exactly one line on stderr, no traceback, and leave no file
behind. Permission tests need the kernel to enforce permissions: when the tests run as root (as
in CI), the child process drops the capabilities that let root ignore them.
"""

import contextlib
import fcntl
import json
import os
import re
import resource
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import termios
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyexiv2
import pytest
import tifffile
from service_support import tiny_disk

from tests.permissions import IS_ROOT, obey_permissions
from tests.tiffs import CAMERA_EXIF, random_samples, write_tiff
from worker.cli.stops import STOPPED
from worker.deconv.synthetic import camera_shake_kernel, dead_leaves, shake
from worker.files import icc
from worker.signals import STOPPING_SIGNALS

RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def permissions_enforced(tmp_path: Path) -> None:
    """Skip unless a child started with `obey_permissions` is really refused a mode-000 file."""
    probe = tmp_path / "probe"
    probe.write_text("secret")
    probe.chmod(0)
    try:
        opened = subprocess.run(
            [sys.executable, "-c", f"open({str(probe)!r})"],
            preexec_fn=obey_permissions,
            capture_output=True,
        )
    except subprocess.SubprocessError as error:
        pytest.skip(f"cannot drop the override capabilities here: {error}")
    finally:
        probe.unlink()
    if opened.returncode == 0:
        pytest.skip("this process ignores file permissions even without the override capabilities")


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    """A small 16-bit sRGB TIFF with camera EXIF."""
    path = tmp_path / "in" / "photo.tif"
    path.parent.mkdir()
    samples = random_samples((40, 48, 3), np.uint16, np.random.default_rng(0))
    write_tiff(path, samples, icc.matrix_profile(), CAMERA_EXIF)
    return path


@pytest.fixture
def psf(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "psf.npy"
    path.parent.mkdir(exist_ok=True)
    np.save(path, np.ones((5, 5), np.float32))
    return path


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An empty folder for the output: a failed run must leave it empty."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def assert_one_line_failure(result: subprocess.CompletedProcess[str], message: str) -> None:
    lines = result.stderr.splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dt-deconvolve: error: "), lines[0]
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_deblur_writes_a_result_like_the_input(
    run_cli: RunCli, picture: Path, psf: Path, tmp_path: Path
) -> None:
    output = tmp_path / "out.tif"
    result = run_cli("deblur", picture, "--psf", psf, "-o", output, "--iterations", "3", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    report = json.loads(result.stdout.splitlines()[-1])
    for key in ("iterations", "stop_reason", "noise_sigma", "lambda", "seconds", "output"):
        assert key in report
    assert 1 <= report["iterations"] <= 3
    with tifffile.TiffFile(output) as tiff:
        page = tiff.pages.first
        assert page.shape == (40, 48, 3) and page.dtype == np.uint16
        assert page.tags.valueof("InterColorProfile") == icc.matrix_profile()
        assert page.tags.valueof("ExifTag")["LensModel"] == "EF24-70mm f/2.8L II USM"


def run_on_terminal(env: dict[str, str], *args: str | os.PathLike[str]) -> tuple[int, str, str]:
    """Run `dt-deconvolve ARGS...` with stderr on a pseudo-terminal (100 columns wide).

    Returns the exit status, stdout and what appeared on the terminal.
    """
    terminal, child_end = os.openpty()
    fcntl.ioctl(child_end, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with subprocess.Popen(
        [sys.executable, "-m", "worker", *map(str, args)],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=child_end,
    ) as process:  # fmt: skip
        os.close(child_end)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
            while chunk := os.read(terminal, 4096):
                shown += chunk
        stdout = process.stdout.read().decode()
    os.close(terminal)
    return process.returncode, stdout, shown.decode(errors="replace")


def test_preview_on_a_terminal_shows_progress_and_is_smaller(
    user_env: dict[str, str], picture: Path, psf: Path, tmp_path: Path
) -> None:
    output = tmp_path / "preview.tif"
    status, stdout, terminal = run_on_terminal(
        user_env, "deblur", picture, "--psf", psf, "-o", output, "--scale", "0.5"
    )
    assert status == 0, terminal
    assert "wrote" in stdout
    assert "deblurring" in terminal and "100%" in terminal
    assert tifffile.imread(output).shape == (20, 24, 3)


def _truncated_tiff() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        good = Path(folder) / "good.tif"
        samples = random_samples((64, 64, 3), np.uint16, np.random.default_rng(1))
        write_tiff(good, samples, compression="zlib")
        data = good.read_bytes()
    return data[: len(data) // 2]


def _damaged_header_tiff() -> bytes:
    """An uncompressed picture's header patched to declare 100000 x 100000 pixels: refused as
    "not enough memory; try a smaller scale" until engine 0.3.39."""
    with tempfile.TemporaryDirectory() as folder:
        good = Path(folder) / "good.tif"
        write_tiff(good, random_samples((8, 8, 3), np.uint16, np.random.default_rng(1)))
        with tifffile.TiffFile(good, mode="r+b") as tiff:
            for tag in ("ImageWidth", "ImageLength", "RowsPerStrip"):
                tiff.pages.first.tags[tag].overwrite(100_000)
        return good.read_bytes()


def test_a_compressed_picture_that_claims_more_than_memory_says_so(
    run_cli: RunCli, psf: Path, tmp_path: Path, out: Path
) -> None:
    """A zlib picture whose header claims 100000 x 100000 pixels (60 GB), which no check before
    decoding can refute: one line naming its size and a damaged header, not "not enough memory;
    try a preview", which a preview, reading the whole picture first, cannot mend."""
    path = tmp_path / "claims.tif"
    write_tiff(path, random_samples((8, 8, 3), np.uint16, np.random.default_rng(1)),
               compression="zlib")  # fmt: skip
    with tifffile.TiffFile(path, mode="r+b") as tiff:
        for tag in ("ImageWidth", "ImageLength", "RowsPerStrip"):
            tiff.pages.first.tags[tag].overwrite(100_000)

    def at_most_16_gb() -> None:  # (whatever the machine's overcommit policy)
        resource.setrlimit(resource.RLIMIT_AS, (16 << 30, resource.RLIM_INFINITY))

    result = run_cli("deblur", path, "--psf", psf, "-o", out / "o.tif", preexec_fn=at_most_16_gb)
    assert_one_line_failure(
        result,
        "is 100000x100000 pixels: there is not enough memory to read it (or its header is "
        "damaged and claims more than the file holds)",
    )
    assert files_in(out) == []


# Bad input files: their content (bytes or samples) and a word their error message must contain.
BAD_TIFFS = {
    "not a TIFF": (b"these are my holiday notes\n" * 10, "not a TIFF"),
    "truncated": (_truncated_tiff(), "truncated or damaged"),
    "damaged header": (_damaged_header_tiff(), "pixels need 60000000000 bytes, it holds 384"),
    "empty": (b"", "not a TIFF"),
    "zero-sized": (np.zeros((0, 0), np.uint8), "0x0 pixels"),
    "1x1": (np.zeros((1, 1, 3), np.uint16), "1x1 pixels"),
    "NaN": (np.full((8, 8), np.nan, np.float32), "NaN"),
    "Inf": (np.full((8, 8, 3), np.inf, np.float16), "infinite"),
    "far beyond white": (np.where(np.eye(8), 1e30, 0.5).astype(np.float32), "1e+30"),
}


@pytest.mark.parametrize("case", BAD_TIFFS)
@pytest.mark.filterwarnings("ignore:.*zero-size array:UserWarning")
def test_bad_pictures_fail_in_one_line(
    run_cli: RunCli, psf: Path, tmp_path: Path, out: Path, case: str
) -> None:
    content, message = BAD_TIFFS[case]
    path = tmp_path / "bad.tif"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write_tiff(path, content)
    result = run_cli("deblur", path, "--psf", psf, "-o", out / "result.tif")
    assert_one_line_failure(result, message)
    assert files_in(out) == []


BAD_PSFS = {
    "not 2-D": (np.ones((3, 3, 3)), "2-D"),
    "even-sized": (np.ones((4, 4)), "odd"),
    "negative": (-np.ones((3, 3)), "negative"),
    "NaN": (np.full((3, 3), np.nan), "NaN"),
    "all zeros": (np.zeros((5, 5)), "all zeros"),
    "larger than the picture": (np.ones((41, 41)), "larger than the image"),
}


@pytest.mark.parametrize("case", BAD_PSFS)
def test_bad_psfs_fail_in_one_line(
    run_cli: RunCli, picture: Path, tmp_path: Path, out: Path, case: str
) -> None:
    array, message = BAD_PSFS[case]
    path = tmp_path / "bad.npy"
    np.save(path, array)
    result = run_cli("deblur", picture, "--psf", path, "-o", out / "o.tif")
    assert_one_line_failure(result, message)
    assert files_in(out) == []


def test_psf_that_is_not_npy_fails_in_one_line(
    run_cli: RunCli, picture: Path, tmp_path: Path, out: Path
) -> None:
    path = tmp_path / "psf.npy"
    path.write_text("1 2 1\n2 4 2\n1 2 1\n")
    result = run_cli("deblur", picture, "--psf", path, "-o", out / "o.tif")
    assert_one_line_failure(result, "not a NumPy .npy array file")
    assert "allow_pickle" not in result.stderr  # numpy's advice is not for the user
    assert files_in(out) == []


@pytest.mark.parametrize("missing", ["input", "psf"])
def test_missing_files_fail_in_one_line(
    run_cli: RunCli, picture: Path, psf: Path, tmp_path: Path, out: Path, missing: str
) -> None:
    paths = {"input": picture, "psf": psf, missing: tmp_path / "nowhere" / "gone"}
    result = run_cli("deblur", paths["input"], "--psf", paths["psf"], "-o", out / "o.tif")
    assert_one_line_failure(result, "no such file or folder")
    assert "gone" in result.stderr
    assert files_in(out) == []


@pytest.mark.parametrize("looping", ["input", "psf"])
def test_a_link_loop_is_named_as_such(
    run_cli: RunCli, picture: Path, psf: Path, tmp_path: Path, out: Path, looping: str
) -> None:
    loop = tmp_path / "loop"  # (it was "no such file or folder" until engine 0.3.20)
    loop.symlink_to(loop)
    paths = {"input": picture, "psf": psf, looping: loop}
    result = run_cli("deblur", paths["input"], "--psf", paths["psf"], "-o", out / "o.tif")
    assert_one_line_failure(result, f"{loop}: Too many levels of symbolic links")
    assert files_in(out) == []


@pytest.mark.usefixtures("permissions_enforced")
def test_unreadable_picture_fails_in_one_line(
    run_cli: RunCli, picture: Path, psf: Path, out: Path
) -> None:
    picture.chmod(0)
    result = run_cli(
        "deblur", picture, "--psf", psf, "-o", out / "o.tif", preexec_fn=obey_permissions
    )
    assert_one_line_failure(result, "permission denied")
    assert files_in(out) == []


def test_folder_given_as_picture_fails_in_one_line(
    run_cli: RunCli, psf: Path, tmp_path: Path, out: Path
) -> None:
    result = run_cli("deblur", tmp_path, "--psf", psf, "-o", out / "o.tif")
    assert_one_line_failure(result, str(tmp_path))
    assert files_in(out) == []


@pytest.mark.usefixtures("permissions_enforced")
def test_unwritable_output_folder_fails_in_one_line(
    run_cli: RunCli, picture: Path, psf: Path, tmp_path: Path
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    result = run_cli(
        "deblur", picture, "--psf", psf, "-o", locked / "o.tif", preexec_fn=obey_permissions
    )
    assert_one_line_failure(result, "permission denied")
    assert files_in(locked) == []


@pytest.mark.usefixtures("permissions_enforced")
@pytest.mark.parametrize("how", ["read-only file", "umask 0222"])
def test_a_result_with_exif_is_written_whatever_mode_it_gets(
    run_cli: RunCli, picture: Path, psf: Path, out: Path, how: str
) -> None:
    # The new file took its final mode (0444 here) before it was written, and exiv2, which
    # reopens it to add the EXIF, was refused: every picture with EXIF failed after the work.
    target = out / "o.tif"
    if how == "read-only file":
        target.write_bytes(b"old")
        target.chmod(0o444)

    def prepare() -> None:
        obey_permissions()
        if how == "umask 0222":
            os.umask(0o222)

    result = run_cli("deblur", picture, "--psf", psf, "-o", target, preexec_fn=prepare)
    assert result.returncode == 0, result.stderr
    assert target.stat().st_mode & 0o777 == 0o444
    with pyexiv2.Image(str(target)) as image:
        assert image.read_exif()["Exif.Photo.LensModel"] == CAMERA_EXIF["Exif.Photo.LensModel"]
    assert files_in(out) == ["o.tif"]


@pytest.mark.usefixtures("permissions_enforced")
def test_another_users_file_in_a_shared_folder_is_refused_before_the_work(
    run_cli: RunCli, picture: Path, psf: Path, tmp_path: Path
) -> None:
    # A sticky folder (as /tmp) lets only the file's or the folder's owner replace a file: the
    # rename failed after the work, naming the hidden temporary file.
    shared = tmp_path / "shared"
    shared.mkdir()
    theirs = shared / "o.tif"
    theirs.write_bytes(b"theirs")
    for path in (shared, theirs):
        os.chown(path, 65534, 65534)
    shared.chmod(0o1777)
    result = run_cli("deblur", picture, "--psf", psf, "-o", theirs, preexec_fn=obey_permissions)
    assert_one_line_failure(
        result, f"another user's file in a shared folder: it cannot be replaced): {theirs}"
    )
    assert theirs.read_bytes() == b"theirs" and files_in(shared) == ["o.tif"]


def test_read_only_disk_fails_in_one_line(
    run_cli: RunCli, picture: Path, psf: Path, tmp_path: Path
) -> None:
    with tiny_disk(tmp_path / "ro", "ro,size=1m") as folder:
        result = run_cli("deblur", picture, "--psf", psf, "-o", folder / "o.tif")
        assert_one_line_failure(result, "permission denied")
        assert files_in(folder) == []


def test_output_folder_that_is_a_file_fails_in_one_line(
    run_cli: RunCli, picture: Path, psf: Path
) -> None:
    result = run_cli("deblur", picture, "--psf", psf, "-o", picture / "o.tif")
    assert_one_line_failure(result, "a file is in the way where a folder should be")
    assert files_in(picture.parent) == ["photo.tif", "psf.npy"]


def test_output_that_is_not_a_tiff_name_fails_in_one_line(
    run_cli: RunCli, picture: Path, psf: Path, out: Path
) -> None:
    result = run_cli("deblur", picture, "--psf", psf, "-o", out / "result.jpg")
    assert_one_line_failure(result, ".tif or .tiff")
    assert files_in(out) == []


def test_full_disk_fails_in_one_line_and_leaves_nothing(
    run_cli: RunCli, psf: Path, tmp_path: Path
) -> None:
    source = tmp_path / "big.tif"  # 128x128 float32: its result does not fit in what is left
    write_tiff(source, random_samples((128, 128, 3), np.float32, np.random.default_rng(2)))
    with tiny_disk(tmp_path / "full", "size=1m") as folder:
        filler = folder / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as handle:
            handle.write(bytes(1024 * 1024 - 64 * 1024))  # leave 64 KiB
        result = run_cli(
            "deblur", source, "--psf", psf, "-o", folder / "o.tif", "--iterations", "2"
        )
        assert_one_line_failure(result, "no space left on the device")
        assert files_in(folder) == ["filler"]


@pytest.mark.slow
def test_demo_writes_pictures_and_improves_psnr(run_cli: RunCli, tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = run_cli("demo", "-o", folder, timeout=120)
    assert result.returncode == 0, result.stderr
    outputs = ["blurred.tif", "psf.npy", "psf.png", "true_psf.png", "deblurred.tif"]
    for name in [*outputs, "before.png", "after.png", "sharp.png"]:
        assert (folder / name).stat().st_size > 0, name
    assert f"wrote into {folder}" in result.stdout
    psnr = re.search(r"before ([\d.]+) dB, after ([\d.]+) dB", result.stdout)
    assert psnr is not None, result.stdout
    assert float(psnr[2]) > float(psnr[1]) + 2
    with tifffile.TiffFile(folder / "blurred.tif") as tiff:
        page = tiff.pages.first
        assert page.dtype == np.uint16
        assert page.tags.valueof("InterColorProfile") == icc.matrix_profile()


def test_no_command_replaces_the_picture_it_reads(run_cli: RunCli, picture: Path, psf: Path):
    """`-o`, `--psf-out` or `--png` naming the input is refused before any work, the picture
    untouched (it was replaced by the result, or by a kernel file)."""
    before = picture.read_bytes()
    other_name = picture.with_name("same.tif")  # another name for the very same file
    os.link(picture, other_name)
    attempts = [
        ("deblur", picture, "--psf", psf, "-o", other_name),
        ("deblur", picture, "--psf", psf, "-o", picture),
        ("run", picture, "--blur", "5", "-o", picture.with_name("o.tif"), "--psf-out", picture),
        ("psf", picture, "--blur", "5", "-o", picture),
        ("psf", picture, "--blur", "5", "-o", picture.with_name("k.npy"), "--png", picture),
    ]
    for attempt in attempts:
        result = (
            run_cli(*attempt, "--iterations", "2") if attempt[0] != "psf" else run_cli(*attempt)
        )
        assert_one_line_failure(result, "this would replace the input")
        assert picture.read_bytes() == before, attempt
    assert files_in(picture.parent) == ["photo.tif", "psf.npy", "same.tif"]


def test_a_kernel_named_as_a_folder_is_refused_before_the_work(run_cli: RunCli, picture: Path):
    """`--psf-out .` (or `/`): a folder is in the way, in one line, before any work; until
    engine 0.3.18 its picture's name (the kernel's with .png) was made first, and a name with
    no file name in it was an internal error."""
    output = picture.with_name("o.tif")
    for folder in (".", "/", str(picture.parent)):
        result = run_cli("run", picture, "--blur", "5", "-o", output, "--psf-out", folder)
        assert_one_line_failure(result, "a folder is in the way")
    assert files_in(picture.parent) == ["photo.tif"]


def test_no_clobber_keeps_every_file_the_command_would_write(run_cli: RunCli, picture: Path):
    """`run --no-clobber`: the kernel and its picture are kept as the result is, before any
    work, with status 4 (a helper's attack, engine 0.3.54: they were replaced)."""
    output, kernel = picture.with_name("o.tif"), picture.with_name("k.npy")
    for taken in (kernel, kernel.with_suffix(".png"), output):
        taken.write_bytes(b"theirs")
        result = run_cli("run", picture, "--blur", "5", "-o", output, "--psf-out", kernel,
                         "--no-clobber")  # fmt: skip
        assert result.returncode == 4 and result.stderr.count("\n") == 1, result.stderr
        assert "already, kept" in result.stderr and taken.read_bytes() == b"theirs"
        taken.unlink()
    assert files_in(picture.parent) == ["photo.tif"]


def test_no_command_replaces_the_kernel_it_reads(run_cli: RunCli, picture: Path, psf: Path):
    """A kernel given a TIFF's name (it is read by its content) is an input too: `-o` naming it
    is refused before any work; until engine 0.3.19 the result replaced it."""
    kernel = picture.with_name("kernel.tif")
    kernel.write_bytes(psf.read_bytes())
    result = run_cli("deblur", picture, "--psf", kernel, "-o", kernel, "--iterations", "2")
    assert_one_line_failure(result, "this would replace the input")
    assert kernel.read_bytes() == psf.read_bytes()


def test_a_kernel_named_as_another_format_is_refused_before_the_work(
    run_cli: RunCli, picture: Path
):
    """A kernel is written as .npy and its picture as .png whatever they are called: until
    engine 0.3.19 `--psf-out k.tif` wrote an array no viewer opens under a picture's name, and
    `--psf-out k.png` wrote the array, then its picture over it at the same name."""
    folder = picture.parent
    attempts = [
        ("run", picture, "--blur", "5", "-o", folder / "o.tif", "--psf-out", folder / "k.png"),
        ("run", picture, "--blur", "5", "-o", folder / "o.tif", "--psf-out", folder / "k.tif"),
        ("run", picture, "--blur", "5", "-o", folder / "o.tif", "--psf-out", folder / "k"),
        ("psf", picture, "--blur", "5", "-o", folder / "k.png"),
        ("psf", picture, "--blur", "5", "-o", folder / "k.npy", "--png", folder / "k.jpg"),
    ]
    for attempt in attempts:
        assert_one_line_failure(run_cli(*attempt), "its name must be NAME")
    assert files_in(folder) == ["photo.tif"]


def test_fifos_and_devices_are_never_read_nor_replaced(
    run_cli: RunCli, picture: Path, psf: Path, tmp_path: Path, out: Path
) -> None:
    """A FIFO given as the picture or the kernel is refused at once (reading one waits for a
    writer for ever); one, or a device, where a result would go stays what it is."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for source, kernel in ((fifo, psf), (picture, fifo)):
        result = run_cli("deblur", source, "--psf", kernel, "-o", out / "o.tif", timeout=60)
        assert_one_line_failure(result, "is not a file")
    result = run_cli("psf", fifo, "--blur", "5", "-o", out / "k.npy", timeout=60)
    assert_one_line_failure(result, "not a regular file")
    result = run_cli("key", fifo, "--blur", "5", timeout=60)
    assert_one_line_failure(result, "not a regular file")
    targets = [out / "fifo.tif"]
    os.mkfifo(targets[0])
    if IS_ROOT:  # a device node of its own, as /dev/null is
        targets.append(out / "null.tif")
        os.mknod(targets[1], 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    for target in targets:
        result = run_cli("deblur", picture, "--psf", psf, "-o", target, timeout=60)
        assert_one_line_failure(result, f"not a regular file, not replaced: {target}")
    assert targets[0].is_fifo() and all(t.is_char_device() for t in targets[1:])
    assert files_in(out) == sorted(t.name for t in targets)


def test_a_name_too_long_fails_before_the_work_and_the_longest_is_written(
    run_cli: RunCli, picture: Path, psf: Path, out: Path
) -> None:
    """A result's name over the 255 bytes a folder takes fails at once, naming the result; one
    of 255 bytes is written, although its temporary's name would be 15 bytes longer (until
    engine 0.3.52 any name over 240 bytes failed so: the temporary's name is cut to fit now)."""
    long = out / ("a" * 252 + ".tif")
    result = run_cli("deblur", picture, "--psf", psf, "-o", long)
    assert_one_line_failure(result, f"File name too long: {long}")
    assert ".part" not in result.stderr
    assert files_in(out) == []
    longest = out / ("a" * 251 + ".tif")
    done = run_cli("deblur", picture, "--psf", psf, "-o", longest)
    assert done.returncode == 0, done.stderr
    assert files_in(out) == [longest.name]


@pytest.mark.parametrize("stop", [*STOPPING_SIGNALS, signal.SIGINT])
def test_a_terminated_command_leaves_no_file_behind(
    user_env, picture: Path, psf: Path, out: Path, stop: signal.Signals
):
    """SIGTERM (a `kill`, a session ending), SIGHUP (its terminal closed), SIGQUIT (Ctrl-\\) and
    Ctrl-C unwind the command as an error would: exit status 128 + the signal and nothing in the
    output's folder, not even a temporary file (one killed while writing left `.o.tif.XXXX.part`
    until engine 0.3.9, one whose terminal closed until 0.3.10, one quit by Ctrl-\\ after it
    too); and one line says why it stopped (until engine 0.3.42 there was none: a photographer
    saw the command end without a word)."""
    large = picture.with_name("large.tif")
    write_tiff(large, random_samples((3000, 3000, 3), np.uint16, np.random.default_rng(4)))
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "deblur", large, "--psf", psf, "-o", out / "o.tif"],
        env=user_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(3.0)  # imports, reading, under way
    process.send_signal(stop)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 128 + stop, errors
    assert errors == f"dt-deconvolve: {STOPPED[stop]}\n"
    assert files_in(out) == []


@pytest.mark.slow
def test_a_stopped_demo_leaves_none_of_its_files(user_env, tmp_path: Path) -> None:
    """The demo writes nine files; stopped after the first (the shaken picture), it left that
    one and its kernel files in a folder it had made (until engine 0.3.39): a set that looks
    like a result. Now they are moved into place only once all are written."""
    folder = tmp_path / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "demo", "-o", folder],
        env=user_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".dt-deconvolve-demo.*/true_psf.png")):
        assert process.poll() is None and time.monotonic() < deadline, "no picture was written"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, errors
    assert "Traceback" not in errors
    assert files_in(tmp_path) == ["xdg"]  # neither the folder nor the hidden one


def test_dotdot_after_a_link_leads_where_the_file_system_goes(
    run_cli: RunCli, picture: Path, psf: Path, tmp_path: Path, out: Path
) -> None:
    """`out/link/../o.tif` is the file the kernel opens: `..` of the folder the link leads to.
    Until engine 0.3.39 `deblur` read the `..` as text and wrote `out/o.tif`, and a missing
    folder before `..` passed every check (the worker then failed after the work)."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "inner").mkdir(parents=True)
    (out / "link").symlink_to(elsewhere / "inner")
    result = run_cli("deblur", picture, "--psf", psf, "-o", out / "link" / ".." / "o.tif")
    assert result.returncode == 0, result.stderr
    assert files_in(elsewhere) == ["inner", "o.tif"]
    assert files_in(out) == ["link"]
    for command in (("deblur", "--psf", psf), ("run", "--blur", "5")):
        missing = out / "missing" / ".." / "p.tif"
        result = run_cli(command[0], picture, *command[1:], "-o", missing)
        assert_one_line_failure(result, f"no such file or folder: {missing}")
    assert files_in(out) == ["link"]


def test_a_failed_run_keeps_the_kernel_files_it_would_replace(
    run_cli: RunCli, tmp_path: Path, out: Path
) -> None:
    # The kernel was saved as soon as it was learnt: a run that failed afterwards (its result
    # over the file size limit here) had already replaced the user's files (engine 0.3.19).
    rng = np.random.default_rng(6)
    shaken = np.clip(shake(dead_leaves((300, 300), rng), camera_shake_kernel(5, rng)), 0, 1)
    source = tmp_path / "shaken.tif"
    write_tiff(source, np.rint(shaken ** (1 / 2.2) * 65535).astype(np.uint16))
    kernel, drawn = out / "mine.npy", out / "mine.png"
    kernel.write_bytes(b"my kernel")
    drawn.write_bytes(b"my picture")

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))

    result = run_cli(
        "run", source, "--blur", "7", "-o", out / "o.tif", "--psf-out", kernel,
        preexec_fn=small_files,
    )  # fmt: skip
    assert_one_line_failure(result, f"File too large: {out / 'o.tif'}")
    assert (kernel.read_bytes(), drawn.read_bytes()) == (b"my kernel", b"my picture")
    assert files_in(out) == ["mine.npy", "mine.png"]


def test_a_line_break_in_a_name_does_not_break_the_line(
    run_cli: RunCli, picture: Path, psf: Path, tmp_path: Path, out: Path
) -> None:
    missing = tmp_path / "a\nDONE b" / os.fsdecode(b"photo\t\xff.tif")
    result = run_cli("deblur", missing, "--psf", psf, "-o", out / "o.tif")
    # (a byte that is not UTF-8 read "\udcff" on stderr and was the byte itself on stdout)
    assert_one_line_failure(result, "a\\x0aDONE b/photo\\x09\\xff.tif")
    written = out / os.fsdecode(b"a\n\xffb.tif")
    done = run_cli("deblur", picture, "--psf", psf, "-o", written)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [done.stdout.strip()]  # the report too: one line
    assert "a\\x0a\\xffb.tif" in done.stdout


@pytest.mark.parametrize("version", [1, 2, 3])
def test_a_kernel_file_declaring_a_huge_array_is_refused_before_it_is_read(
    run_cli: RunCli, picture: Path, tmp_path: Path, out: Path, version: int
) -> None:
    """A .npy header may claim any shape: the claim is checked before numpy allocates it (it
    was "not enough memory for this image; try a preview"; until engine 0.3.23 in a file of
    format 3.0, whose header is 2.0's in UTF-8, it was not checked)."""
    path = tmp_path / "huge.npy"
    with path.open("wb") as handle:
        header = {"descr": "<f8", "fortran_order": False, "shape": (100_000, 100_000)}
        write_header = np.lib.format.write_array_header_2_0
        if version == 1:
            write_header = np.lib.format.write_array_header_1_0
        write_header(handle, header)
        handle.write(b"\0" * 64)
    data = bytearray(path.read_bytes())
    data[6] = version  # the format's major version, after the magic string
    path.write_bytes(bytes(data))
    result = run_cli("deblur", picture, "--psf", path, "-o", out / "o.tif")
    assert_one_line_failure(result, "holds 10000000000 values, more than any kernel (1001 x 1001)")
    assert files_in(out) == []


@pytest.mark.parametrize(
    ("dtype", "words"),
    [
        (("<f8", (1000, 1000)), "holds 100000000 values, more than any kernel"),
        ([("a", "<f8")], "holds values of type |V8, not numbers: it is no kernel"),
    ],
)
def test_a_kernel_file_declaring_odd_values_is_refused_by_its_header(
    run_cli: RunCli, picture: Path, tmp_path: Path, out: Path, dtype: object, words: str
) -> None:
    """Values of a sub-array type count whole (until engine 0.3.23 only the shape counted: 100
    such values allocated 800 MB), and records are no kernel; said in one line of the project's
    own (not "is not a NumPy .npy array file (... holds ...)")."""
    path = tmp_path / "odd.npy"
    with path.open("wb") as handle:
        header = {"descr": dtype, "fortran_order": False, "shape": (100,)}  # (as written)
        np.lib.format.write_array_header_1_0(handle, header)
    result = run_cli("deblur", picture, "--psf", path, "-o", out / "o.tif")
    assert_one_line_failure(result, f"{path} {words}")
    assert "not a NumPy" not in result.stderr and files_in(out) == []
