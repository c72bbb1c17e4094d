"""The shared pieces: PSF checks, synthetic material, atomic writes, the command line's frame."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from service_support import fat_disk, run_dt

from tests.permissions import IS_ROOT, obey_permissions
from worker import paths
from worker.atomic import (
    NAME_MAX,
    SETTLED,
    atomic_file,
    copy_atomically,
    copy_into,
    set_aside,
    temporaries,
)
from worker.deconv.psf_tools import center_on_centroid, resample_psf, validate_psf
from worker.deconv.synthetic import camera_shake_kernel, dead_leaves
from worker.errors import InputError, one_line
from worker.regular import open_regular


@pytest.mark.parametrize(
    ("psf", "message"),
    [
        (np.ones(5), "2-D"),
        (np.ones((4, 5)), "odd"),
        (np.full((3, 3), np.nan), "NaN"),
        (-np.ones((3, 3)), "negative"),
        (np.zeros((3, 3)), "all zeros"),
        (np.ones((9, 9)), "larger than the image"),
    ],
)
def test_validate_psf_rejects_bad_kernels(psf: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        validate_psf(psf, image_shape=(7, 7, 3))


def test_sizes_in_messages_read_width_x_height() -> None:
    # As the messages about files have them (a 300-row, 4-column picture "is 4x300 pixels").
    with pytest.raises(InputError, match=r"the PSF \(5x3\) is larger than the image \(4x300\)"):
        validate_psf(np.ones((3, 5)), image_shape=(300, 4, 3))
    with pytest.raises(InputError, match=r"odd sizes so that it has a centre, not 5x4"):
        validate_psf(np.ones((4, 5)))


def test_validate_psf_normalises() -> None:
    psf = validate_psf(np.ones((3, 5)) * 7)
    assert psf.dtype == np.float32
    assert psf.sum() == pytest.approx(1.0)
    # Values near the float limit, whose sum overflows, are a kernel all the same (they were
    # called "all zeros" until engine 0.3.9).
    huge = validate_psf(np.full((3, 3), 1e308))
    assert np.allclose(huge, 1 / 9)


def test_center_on_centroid_moves_mass_to_the_centre() -> None:
    psf = np.zeros((9, 9))
    psf[1, 2] = psf[1, 3] = psf[2, 2] = 1
    centred = center_on_centroid(psf)
    rows, cols = np.indices(centred.shape)
    assert abs((rows * centred).sum() - 4) <= 0.5
    assert abs((cols * centred).sum() - 4) <= 0.5
    assert centred.sum() == pytest.approx(1.0)


def test_resample_psf_keeps_odd_size_and_unit_mass() -> None:
    psf = camera_shake_kernel(21, np.random.default_rng(0))
    for scale, expected in ((0.5, 11), (0.1, 3), (1.0, 21)):
        small = resample_psf(psf, scale)
        assert small.shape == (expected, expected)
        assert small.sum() == pytest.approx(1.0, abs=1e-6)
        assert small.min() >= 0


def test_resample_psf_moves_each_tap_by_the_scale() -> None:
    """The light keeps its centroid and its spread shrinks with the picture: a tap at d from
    the centre lands at d * scale, shared with its neighbours by at most a quarter pixel's
    variance (the tent's t (1 - t))."""
    psf = camera_shake_kernel(31, np.random.default_rng(5))
    for scale in (0.5, 0.25, 0.1):
        small = resample_psf(psf, scale).astype(np.float64)
        for kernel in (psf, small):
            kernel /= kernel.sum()
        rows, cols = np.indices(psf.shape) - 15
        small_rows, small_cols = np.indices(small.shape) - small.shape[0] // 2
        for big, little in ((rows, small_rows), (cols, small_cols)):
            mean = (big * psf).sum()
            assert (little * small).sum() == pytest.approx(mean * scale, abs=1e-5)
            variance = ((big - mean) ** 2 * psf).sum() * scale**2
            spread = ((little - mean * scale) ** 2 * small).sum()
            assert variance <= spread + 1e-6 <= variance + 0.25 + 1e-6


def test_camera_shake_kernel_is_a_valid_centred_psf() -> None:
    rng = np.random.default_rng(3)
    for size in (9, 15, 31):
        psf = camera_shake_kernel(size, rng)
        assert psf.shape == (size, size)
        assert psf.sum() == pytest.approx(1.0, abs=1e-6)
        assert psf.min() >= 0
        assert (psf > 0.01 * psf.max()).sum() > size // 2  # a path, not a dot
    with pytest.raises(ValueError):
        camera_shake_kernel(8, rng)


def test_dead_leaves_is_a_covered_colour_scene() -> None:
    scene = dead_leaves((128, 160), np.random.default_rng(0))
    assert scene.shape == (128, 160, 3)
    assert scene.dtype == np.float32
    assert scene.min() >= 0.01 and scene.max() <= 0.95
    assert scene.std() > 0.05  # texture, not a flat field
    assert not np.array_equal(scene[..., 0], scene[..., 1])


def test_atomic_file_renames_on_success_and_cleans_up_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "result.tif"
    with atomic_file(target) as tmp:
        tmp.write(b"whole")
        assert not target.exists()
    assert target.read_bytes() == b"whole"
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write(b"half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.tif"]


def test_atomic_file_keeps_the_permissions_of_the_file_it_replaces(tmp_path: Path) -> None:
    """A user's 0640 result stays 0640 when it is written again, as `cp` keeps it (it became
    0644); a new file gets what `open` would give it."""
    kept, new = tmp_path / "kept.tif", tmp_path / "new.tif"
    kept.write_bytes(b"old")
    kept.chmod(0o640)
    for target in (kept, new):
        with atomic_file(target) as handle:
            handle.write(b"new")
    mask = os.umask(0)
    os.umask(mask)
    assert kept.stat().st_mode & 0o777 == 0o640
    assert new.stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_relative_runtime_folder_is_ignored(tmp_path: Path, monkeypatch) -> None:
    """A relative `$XDG_RUNTIME_DIR` is ignored, as the XDG specification asks (the socket went
    into whatever folder the command was started from)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "rt").mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", "rt")
    assert paths.runtime_dir() == tmp_path / "cache" / "dt-deconvolve" / "run"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "rt"))
    assert paths.runtime_dir() == tmp_path / "rt" / "dt-deconvolve"


def test_the_runtime_folder_is_never_a_planted_link(tmp_path: Path, monkeypatch) -> None:
    """On a shared `$XDG_RUNTIME_DIR` (such as /tmp) a link planted at `dt-deconvolve` is refused
    and the folder it names keeps its mode (it became 0700: its readers lost it); the user's own
    folder is made private."""
    shared, public = tmp_path / "shared", tmp_path / "public"
    shared.mkdir(mode=0o777)
    public.mkdir(mode=0o755)
    (shared / "dt-deconvolve").symlink_to(public)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    with pytest.raises(NotADirectoryError, match="not a folder of yours, remove it"):
        paths.runtime_dir()
    assert public.stat().st_mode & 0o777 == 0o755
    (shared / "dt-deconvolve").unlink()
    (shared / "dt-deconvolve").mkdir(mode=0o755)
    assert paths.runtime_dir().stat().st_mode & 0o777 == 0o700


def test_a_runtime_folder_of_another_user_says_what_to_do(user_env, tmp_path: Path) -> None:
    """`$XDG_RUNTIME_DIR` left at another user's folder, as after `su`: every command failed with
    "permission denied: .../dt-deconvolve", naming neither the variable nor the way out (until
    engine 0.3.57)."""
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    if IS_ROOT:
        os.chown(theirs, 65534, 65534)
    else:
        theirs.chmod(0o500)
    done = run_dt({**user_env, "XDG_RUNTIME_DIR": str(theirs)}, "ping", preexec_fn=obey_permissions)
    assert done.returncode == 1 and len(done.stderr.splitlines()) == 1, done.stderr
    assert "$XDG_RUNTIME_DIR is not yours: unset it, or set it to a folder of yours" in done.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--allow-dir", ""], "an empty name is not a folder"),
        (["--idle-exit", "-1"], "is not a positive number of seconds"),
        (["--idle-exit", "nan"], "is not a positive number of seconds"),
    ],
)
def test_worker_options_that_mean_nothing_are_refused(run_cli, options, message) -> None:
    """An empty `--allow-dir` allowed the worker's current folder; `--idle-exit -1` stopped it
    at once."""
    result = run_cli("worker", *options)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.splitlines()) == 1


def test_cli_usage_errors_are_one_line(run_cli) -> None:
    result = run_cli("no-such-command")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "invalid choice" in result.stderr


def test_cli_version_lists_the_libraries(run_cli) -> None:
    result = run_cli("version", "--json")
    assert result.returncode == 0
    assert '"pyfftw"' in result.stdout


def test_temporaries_finds_what_a_killed_writer_left_even_with_glob_characters(
    tmp_path: Path,
) -> None:
    target = tmp_path / "IMG [1]*_deconv.tif"
    other = tmp_path / "IMG 1x_deconv.tif"
    with atomic_file(target) as tmp, atomic_file(other) as other_tmp:
        assert temporaries(target) == [Path(tmp.name)]
        assert temporaries(other) == [Path(other_tmp.name)]
    assert temporaries(target) == []


@pytest.mark.parametrize(
    "name", [b"c" * 251 + b".tif", "é".encode() * 125 + b".tif", b"\xff" * 255]
)
def test_the_longest_names_a_folder_takes_are_written(tmp_path: Path, name: bytes) -> None:
    """A result named with 255 bytes, the most a name may hold, is written, and so is its kept
    copy (`set_aside`): the temporaries' names, 15 bytes longer, were refused as "File name too
    long" from 241 bytes on. A name cut inside a character (two-byte é) still works."""
    target = Path(os.fsdecode(bytes(tmp_path) + b"/" + name))
    assert len(os.fsencode(target.name)) == len(name) <= NAME_MAX
    for _ in range(2):
        with atomic_file(target) as handle:
            assert len(os.fsencode(Path(handle.name).name)) <= NAME_MAX
            assert temporaries(target) == [Path(handle.name)]
            handle.write(b"whole")
        kept = set_aside(target)
        assert kept is not None and len(os.fsencode(kept.name)) <= NAME_MAX
        kept.unlink()
    assert target.read_bytes() == b"whole" and temporaries(target) == []


def test_the_next_writer_removes_what_a_killed_writer_left(tmp_path: Path) -> None:
    """SIGKILL leaves a writer's temporary file; the next writer of the same file removes it,
    but never one that a live writer holds, nor one just made (its writer may not have locked
    it yet), nor a file of the user's that only looks alike (until engine 0.3.20 any
    `.out.tif.*.part`)."""
    target = tmp_path / "out.tif"
    writer = textwrap.dedent(f"""
        import os, sys, time
        from worker.atomic import atomic_file
        with atomic_file({str(target)!r}) as handle:
            handle.write(b"half")
            handle.flush()
            print(handle.name, flush=True)
            time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    live = subprocess.Popen(
        [sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True, env=env
    )
    killed = subprocess.Popen(
        [sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        held, dead = (Path(p.stdout.readline().strip()) for p in (live, killed))  # type: ignore[union-attr]
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
        fresh = tmp_path / ".out.tif.fresh123.part"  # a writer's, made a moment ago
        fresh.write_bytes(b"")
        notes = tmp_path / ".out.tif.my-notes.part"  # the user's own, not a temporary's name
        notes.write_bytes(b"mine")
        old = os.stat(held).st_mtime - 2 * SETTLED
        for name in (held, dead, notes):
            os.utime(name, (old, old))
        with atomic_file(target) as handle:
            handle.write(b"whole")
        assert not dead.exists() and held.exists() and fresh.exists() and notes.exists()
        assert target.read_bytes() == b"whole"
    finally:
        live.kill()
        live.wait(30)


def test_atomic_file_refuses_to_rename_a_swapped_name(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    target = tmp_path / "out.bin"
    with pytest.raises(OSError, match="replaced"), atomic_file(target) as handle:
        handle.write(b"ours")
        temporary = Path(handle.name)
        temporary.unlink()
        temporary.symlink_to(victim)
    assert victim.read_bytes() == b"keep"
    assert not target.exists()


def test_a_writer_that_never_replaces_keeps_what_is_made_at_its_name_meanwhile(
    tmp_path: Path,
) -> None:
    """`replace=False` (the plug-in's `--no-clobber`): a file made at the name while the block
    runs is kept, not replaced by the rename, and the new file goes; nothing is left beside."""
    target = tmp_path / "free.tif"
    with pytest.raises(FileExistsError, match="kept"), atomic_file(target, replace=False) as handle:
        handle.write(b"ours")
        target.write_bytes(b"another program's")
    assert target.read_bytes() == b"another program's"
    assert sorted(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("there", ["file", "link to nothing"])
def test_a_writer_that_never_replaces_refuses_a_taken_name_before_it_starts(
    tmp_path: Path, there: str
) -> None:
    target = tmp_path / "taken.tif"
    if there == "file":
        target.write_bytes(b"theirs")
    else:
        target.symlink_to(tmp_path / "nowhere")
    entered = False
    with pytest.raises(FileExistsError), atomic_file(target, replace=False):
        entered = True
    assert not entered and os.path.lexists(target)
    assert sorted(tmp_path.iterdir()) == [target]
    copy = tmp_path / "copy.tif"
    copy_atomically(Path(__file__), copy, replace=False)  # a free name is written as ever
    assert copy.read_bytes() == Path(__file__).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.tif", "taken.tif"]


def test_files_are_written_on_a_memory_cards_fat_disk(tmp_path: Path) -> None:
    """FAT keeps no permissions and no hard links: the temporary's chmod failed there (a helper's
    attack, engine 0.3.54: nothing could be written, a `.part` file left at each try), and a
    writer that never replaces falls back to a check, then the rename."""
    with fat_disk(tmp_path / "card") as card:
        target = card / "out.tif"
        for replace in (True, True, False):  # written, replaced, then kept
            try:
                with atomic_file(target, replace=replace) as handle:
                    handle.write(b"written %d" % replace)
            except FileExistsError:
                assert not replace
        assert target.read_bytes() == b"written 1"
        copy_atomically(target, card / "copy.tif", replace=False)
        assert sorted(p.name for p in card.iterdir()) == ["copy.tif", "out.tif"]


def test_copy_atomically_copies_large_files_whole(tmp_path: Path) -> None:
    source, target = tmp_path / "big", tmp_path / "copy"
    data = np.random.default_rng(1).bytes(3 << 20)
    source.write_bytes(data)
    target.write_bytes(b"old")
    copy_atomically(source, target)
    assert target.read_bytes() == data
    assert os.stat(target).st_ino != os.stat(source).st_ino


def test_a_copy_from_an_open_file_is_whole_whatever_its_position(tmp_path: Path) -> None:
    """`copy_into` given the file open (the cache stores the output it checked so): a reader
    that has read ahead copied from where its descriptor stood (a review's find, before the
    change reached a release: 95 904 of 100 000 bytes)."""
    source, target = tmp_path / "result.tif", tmp_path / "copy"
    data = np.random.default_rng(2).bytes(100_000)
    source.write_bytes(data)
    with open_regular(source) as reader, open(target, "w+b") as copy:
        reader.read(10)
        copy_into(reader, copy)
        assert reader.read(5) == data[10:15]  # (left open, where it was)
    assert target.read_bytes() == data


@pytest.mark.parametrize("chosen", [None, "28"])
def test_the_package_stops_openblas_spinning_between_calls_unless_the_user_chose(
    chosen: str | None,
) -> None:
    """OpenBLAS's threads spin after each call (a tenth of a second of a core by default); with
    the package imported first they sleep at once: no CPU is spent while the process sleeps."""
    script = textwrap.dedent("""\
        import worker, numpy
        import os, subprocess, sys, time
        vector = numpy.ones(4_000_000)  # long enough for OpenBLAS to share it among its threads
        for _ in range(5):
            numpy.dot(vector, vector)
        start = time.process_time()
        time.sleep(0.3)
        spent = time.process_time() - start
        child = "import os; print(os.environ['OPENBLAS_THREAD_TIMEOUT'])"
        inherited = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
        print(spent, inherited.stdout.strip())
    """)
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if chosen is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = chosen
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    spent, told = done.stdout.split()
    assert told == (chosen or "4")  # what a process it starts is told
    if chosen is None:
        assert float(spent) < 0.03  # (spinning, two threads took 0.1 s here)


@pytest.mark.parametrize("numpy_first", [True, False])
@pytest.mark.parametrize(("chosen", "advised"), [(None, "False"), ("1", "True")])
def test_the_package_turns_numpys_huge_page_advice_off_unless_the_user_chose(
    numpy_first: bool, chosen: str | None, advised: str
) -> None:
    imports = "import numpy, worker" if numpy_first else "import worker, numpy"
    script = textwrap.dedent(f"""\
        {imports}
        import os, subprocess, sys
        from numpy._core import multiarray
        child = "import os; print(os.environ['NUMPY_MADVISE_HUGEPAGE'])"
        inherited = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
        print(multiarray._set_madvise_hugepage(True), inherited.stdout.strip())
    """)
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if chosen is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = chosen
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    # NumPy's switch as the package left it, and what a process it starts is told.
    assert done.stdout.split() == [advised, chosen or "0"]


def test_one_line_escapes_what_a_terminal_acts_on_and_keeps_every_script() -> None:
    """Control characters, C1 controls (U+009B is a terminal's CSI), line separators and format
    characters are escaped: a name holding U+202E was printed as it was, and a terminal showed
    ``photo<U+202E>fit.exe`` as "photoexe.tif"."""
    assert one_line("a\nb\tc\x1b[31m\x7f") == "a\\x0ab\\x09c\\x1b[31m\\x7f"
    assert one_line("photo\u202efit.exe") == "photo\\u202efit.exe"
    assert one_line("x\x9b2Jy\u2028z\U000e0041") == "x\\x9b2Jy\\u2028z\\U000e0041"
    assert one_line(os.fsdecode(b"caf\xe9 \xff")) == "caf\\xe9 \\xff"  # the bytes themselves
    assert one_line("Café, 東京, Ελλάδα, 🙂") == "Café, 東京, Ελλάδα, 🙂"
