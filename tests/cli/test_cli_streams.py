"""The command in a hostile setting: its output's reader gone, stderr closed, and a home and
an installation where nothing can be written. (Stopping signals: `test_cli_deblur`.)"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tests.permissions import IS_ROOT, obey_permissions
from tests.tiffs import random_samples, write_tiff
from worker.cli.streams import reader_left

NOBODY = 65534


def test_a_reader_that_leaves_early_ends_the_command_quietly(user_env: dict[str, str]) -> None:
    """`dt-deconvolve version | head -0`: the pipe is closed before the command writes; it
    ends with 128 + SIGPIPE, as C tools killed by the signal do, and says nothing (it printed
    "error: Broken pipe" and exited 1, as if the work had failed)."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "worker", "version"],
            env=user_env, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(writer)
    assert completed.returncode == 128 + signal.SIGPIPE
    assert completed.stderr == ""


@pytest.mark.parametrize("command", ["deblur", "psf"])
def test_a_full_stdout_says_the_file_was_written(
    command: str, user_env: dict[str, str], tmp_path: Path
) -> None:
    """`deblur ... >/dev/full`: the picture (`psf`: the kernel) is written, the report cannot
    be. The error says which of the two failed (it read "no space left on the device", as if
    the file were lost), in one line, and the command fails."""
    picture, psf = tmp_path / "in.tif", tmp_path / "psf.npy"
    write_tiff(picture, random_samples((200, 200, 3), np.uint16, np.random.default_rng(1)))
    np.save(psf, np.full((3, 3), 1 / 9))
    out, what = (tmp_path / "out.tif", "picture") if command == "deblur" else (psf, "kernel")
    how = ["--psf", psf] if command == "deblur" else ["--blur", "5"]
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "worker", command, picture, *how, "-o", out],
            env=user_env, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300,
        )  # fmt: skip
    assert done.returncode == 1 and out.is_file()
    assert done.stderr.splitlines() == [
        "dt-deconvolve: error: no space left on the device: the report on stdout "
        f"(the {what} itself was written: {out})"
    ]


def test_with_stdout_closed_the_file_is_written_without_a_report(
    user_env: dict[str, str], tmp_path: Path
) -> None:
    # Python has no `sys.stdout` then: printing does nothing, and there is nothing to flush.
    picture = tmp_path / "in.tif"
    write_tiff(picture, random_samples((200, 200, 3), np.uint16, np.random.default_rng(1)))
    done = subprocess.run(
        [sys.executable, "-m", "worker", "psf", picture, "--blur", "5", "-o", tmp_path / "k.npy"],
        env=user_env, stderr=subprocess.PIPE, text=True, timeout=300,
        preexec_fn=lambda: os.close(1),
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == ""
    assert (tmp_path / "k.npy").is_file()


def test_with_stderr_closed_the_report_alone_is_on_stdout(
    user_env: dict[str, str], tmp_path: Path
) -> None:
    """A command started with stderr closed still deblurs, and its failures do not land in the
    report on stdout (the progress bar asked the missing stream whether it was a terminal, and
    the error line went to stdout)."""
    picture, psf = tmp_path / "in.tif", tmp_path / "psf.npy"
    write_tiff(picture, random_samples((60, 80, 3), np.uint16, np.random.default_rng(1)))
    np.save(psf, np.full((3, 3), 1 / 9))

    def without_stderr(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "worker", *map(str, args)],
            env=user_env, capture_output=False, stdout=subprocess.PIPE, text=True, timeout=300,
            preexec_fn=lambda: os.close(2),
        )  # fmt: skip

    done = without_stderr("deblur", picture, "--psf", psf, "-o", tmp_path / "o.tif", "--json")
    assert done.returncode == 0
    assert json.loads(done.stdout)["output"] == str(tmp_path / "o.tif")
    failed = without_stderr("deblur", tmp_path / "none.tif", "--psf", psf, "-o", tmp_path / "x.tif")
    assert failed.returncode == 1
    assert failed.stdout == ""


def unwritable_by_the_child(folder: Path) -> None:
    """Make `folder` one the child process (`obey_permissions` when root) cannot write in."""
    if IS_ROOT:
        os.chown(folder, NOBODY, NOBODY)
        folder.chmod(0o755)
    else:
        folder.chmod(0o555)


def test_compiled_kernels_work_where_no_folder_can_keep_them(
    user_env: dict[str, str], tmp_path: Path
) -> None:
    """Installed where it cannot write, with a home it cannot write either, numba has no folder
    for its cache and `cache=True` fails at import ("no locator available"): every `deblur`
    failed with an internal error. `worker.compiled` compiles those kernels without a cache."""
    package = tmp_path / "installed"
    package.mkdir()
    (package / "kernels.py").write_text(
        textwrap.dedent("""
        import numba
        from worker.compiled import compiled

        def doubled(x):
            return 2 * x

        try:
            numba.njit(cache=True)(doubled)
            PLAIN = "cached"
        except RuntimeError:
            PLAIN = "refused"
        print(PLAIN, compiled()(doubled)(21))
    """)
    )
    home = tmp_path / "home"
    home.mkdir()
    for folder in (package, home):
        unwritable_by_the_child(folder)
    env = {**user_env, "HOME": str(home), "PYTHONPATH": str(package)}
    for variable in ("XDG_CACHE_HOME", "NUMBA_CACHE_DIR"):
        env.pop(variable, None)
    completed = subprocess.run(
        [sys.executable, "-c", "import kernels"],
        env=env, capture_output=True, text=True, timeout=120, preexec_fn=obey_permissions,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["refused", "42"]  # plain numba fails, ours does not


def test_a_reader_that_left_is_found_without_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`submit --wait` looks at its stdout's pipe as it polls: until engine 0.3.23 a command
    whose darktable was killed while the result was written printed nothing until the job was
    done, so it never cancelled it, and the result stayed beside the picture."""
    read_end, write_end = os.pipe()
    null = Path(os.devnull)
    with (
        os.fdopen(write_end, "w") as piped,
        (tmp_path / "report.txt").open("w") as kept,
        null.open("w") as nowhere,
    ):
        for stdout in (kept, nowhere):
            monkeypatch.setattr(sys, "stdout", stdout)
            assert not reader_left()
        monkeypatch.setattr(sys, "stdout", piped)
        assert not reader_left()  # read or not, its reader is there
        os.close(read_end)
        assert reader_left()
        monkeypatch.setattr(sys, "stdout", None)  # (started with stdout closed)
        assert not reader_left()


def test_exiv2s_warnings_stay_out_of_the_report(user_env: dict[str, str], tmp_path: Path) -> None:
    """A picture whose EXIF holds an entry of an unknown type (0) is read, and stdout holds the
    JSON report alone: exiv2 printed "[warn] Directory Image, entry 0x010f has unknown Exif
    (TIFF) type 0" on stdout, before the report."""
    picture, psf = tmp_path / "in.tif", tmp_path / "psf.npy"
    write_tiff(picture, random_samples((64, 64, 3), np.uint16, np.random.default_rng(1)),
               exif={"Exif.Image.Make": "Canon"})  # fmt: skip
    with tifffile.TiffFile(picture) as tiff:
        entry = tiff.pages[0].tags["Make"].offset  # the IFD entry: tag, type, count, value
    damaged = bytearray(picture.read_bytes())
    damaged[entry + 2 : entry + 4] = b"\0\0"
    picture.write_bytes(damaged)
    np.save(psf, np.full((3, 3), 1 / 9))
    done = subprocess.run(
        [sys.executable, "-m", "worker", "deblur", picture, "--psf", psf, "-o", tmp_path / "o.tif",
         "--json"],
        env=user_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1
    assert json.loads(done.stdout)["output"] == str(tmp_path / "o.tif")
