"""The commands the darktable plug-in calls: key, cache lookup / kernel / clean, submit with
auto-start."""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import zmq
from service_support import (
    private_env,
    process_lives,
    run_dt,
    short_folder,
    write_picture,
    write_psf,
)

from cache.key import cache_key
from cache.store import PSF_PNG, RESULT, CacheLimits, ResultCache
from tests.tiffs import write_tiff
from worker import __version__
from worker.cli.cache import remove_leftover_exports
from worker.cli.exit_status import ExitStatus
from worker.cli.status import describe
from worker.deconv import DeblurSettings
from worker.service import protocol

SIDECAR = Path(__file__).parent.parent / "data" / "darktable_sidecar.xmp"


def test_key_is_stable_and_follows_the_settings(user_env, tmp_path):
    picture = write_picture(tmp_path / "pic.tif")
    sidecar = tmp_path / "pic.tif.xmp"
    shutil.copyfile(SIDECAR, sidecar)
    base = ("key", picture, "--xmp", sidecar, "--blur", "9", "--window", "auto")
    first = run_dt(user_env, *base)
    assert first.returncode == 0, first.stderr
    key = first.stdout.strip()
    parameters = {"psf": None, "blur": 9, "window": None, "settings": asdict(DeblurSettings())}
    assert key == cache_key(picture, parameters, __version__, sidecar=sidecar)  # same anywhere
    assert run_dt(user_env, *base, "--tolerance", "7").stdout.strip() != key
    assert run_dt(user_env, *base[:-2]).stdout.strip() == key  # (auto: the default, said or not)
    pixels = run_dt(user_env, "key", picture, "--blur", "9")  # no sidecar: the pixels' hash
    assert pixels.returncode == 0 and pixels.stdout.strip() != key
    missing = run_dt(user_env, "key", picture, "--xmp", tmp_path / "none.xmp", "--blur", "9")
    assert missing.returncode == 1
    assert missing.stderr.startswith("dt-deconvolve: error: cannot read the sidecar")


def test_cache_lookup_misses_cleanly(user_env, tmp_path):
    result = run_dt(user_env, "cache", "lookup", "ab" * 16, "-o", tmp_path / "o.tif")
    assert (result.returncode, result.stdout) == (0, "miss\n")
    assert not (tmp_path / "o.tif").exists()


def test_cache_clean_refuses_the_on_exit_options_without_on_exit(user_env, tmp_path):
    """`--keep-results` and `--exports-dir` go with `--on-exit`: until engine 0.3.19 `clean
    --keep-results` ignored them and emptied the whole cache. Options that do not go together
    are wrong usage (status 2) here as everywhere (status 1 until engine 0.3.54)."""
    for option in (["--keep-results"], ["--exports-dir", tmp_path]):
        result = run_dt(user_env, "cache", "clean", *option)
        assert result.returncode == ExitStatus.USAGE and result.stderr.count("\n") == 1, (
            result.stderr
        )
        assert "go with --on-exit" in result.stderr


def test_cache_kernel_misses_cleanly(user_env, tmp_path):
    result = run_dt(user_env, "cache", "kernel", "ab" * 16, "-o", tmp_path / "k.png")
    assert (result.returncode, result.stdout) == (0, "miss\n")
    assert not (tmp_path / "k.png").exists()
    hostile = run_dt(user_env, "cache", "kernel", "../../etc", "-o", tmp_path / "k.png")
    assert hostile.returncode != 0 and hostile.stderr.count("\n") == 1, hostile.stderr


@pytest.mark.slow
def test_cache_kernel_gives_the_blur_found_and_its_picture(tmp_path):
    """A blind job's kernel picture and confidence stay with its key: the plug-in shows them
    after a run and after a cache hit alike."""
    picture = write_picture(tmp_path / "pic.tif", (192, 192))
    out, png = tmp_path / "out.tif", tmp_path / "my kernel\n.png"
    with short_folder() as folder:
        env = private_env(folder)
        endpoint = ("--endpoint", f"ipc://{folder}/kernel.sock")
        key = run_dt(env, "key", picture, "--blur", "7").stdout.strip()
        done = run_dt(
            env, "submit", picture, "-o", out, "--blur", "7", "--key", key, "--wait", *endpoint
        )
        assert done.returncode == 0, done.stderr
        blur = [line for line in done.stdout.splitlines() if line.startswith("BLUR ")]
        assert len(blur) == 1, done.stdout
        confidence, kind, reason = blur[0].split(" ", 3)[1:]
        assert 0 <= float(confidence) <= 1 and kind in ("none", "free-form", "gaussian")
        assert reason.strip()
        found = run_dt(env, "cache", "kernel", key, "-o", png)
        assert found.returncode == 0, found.stderr
        assert found.stdout.splitlines() == [blur[0], f"hit {tmp_path}/my%20kernel%0A.png"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert run_dt(env, "shutdown", *endpoint).returncode == 0


@pytest.mark.slow
def test_submit_starts_a_worker_when_none_answers(tmp_path):
    picture = write_picture(tmp_path / "pic.tif", (64, 80))
    psf = write_psf(tmp_path / "psf.npy")
    out = tmp_path / "out.tif"
    with short_folder() as folder:
        env = private_env(folder)
        endpoint = ("--endpoint", f"ipc://{folder}/auto.sock")
        key = run_dt(env, "key", picture, "--psf", psf).stdout.strip()
        done = run_dt(
            env, "submit", picture, "-o", out, "--psf", psf, "--key", key, "--wait", *endpoint
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == f"DONE {out}"
        pid = int((folder / "auto.sock.lock").read_text())  # the worker that was started
        hit = run_dt(env, "cache", "lookup", key, "-o", tmp_path / "again.tif")
        assert hit.stdout == f"hit {tmp_path / 'again.tif'}\n"
        assert (tmp_path / "again.tif").read_bytes() == out.read_bytes()
        leftover = tmp_path / "dt-deconvolve-export-7-1.tif"
        leftover.write_bytes(b"an export the plug-in could not remove")
        # the private folders of two darktables: one killed mid-run, one still running (this
        # test); a crash's folder stayed for ever until engine 0.3.20
        ended = subprocess.Popen(["true"])  # (a process that has ended: its pid is free)
        ended.wait()
        dead = tmp_path / f"dt-deconvolve-{ended.pid}-AbCd1234"
        live = tmp_path / f"dt-deconvolve-{os.getpid()}-AbCd1234"
        for folder_of in (dead, live):
            folder_of.mkdir()
            (folder_of / "export-1-1.tif").write_bytes(b"a full-size export")
        cleaned = run_dt(env, "cache", "clean", "--on-exit", "--exports-dir", tmp_path, "--json")
        assert json.loads(cleaned.stdout)["results_removed"] == 1
        assert json.loads(cleaned.stdout)["exports_removed"] == 2
        assert not leftover.exists() and not dead.exists() and live.exists() and out.exists()
        assert run_dt(env, "shutdown", *endpoint).returncode == 0
        deadline = time.monotonic() + 15
        while process_lives(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not process_lives(pid)


def test_another_users_leftovers_are_theirs(tmp_path):
    """In a shared temporary folder (/tmp, sticky) another user's old exports and private
    folders are left alone: removing them failed there (PermissionError) and `cache clean
    --on-exit` stopped with an error after cleaning the cache (until engine 0.3.23)."""
    if os.geteuid() != 0:
        pytest.skip("giving files to another user needs root")
    ended = subprocess.Popen(["true"])  # (a process that has ended: its pid is free)
    ended.wait()
    theirs = [
        tmp_path / "dt-deconvolve-export-7-1.tif",
        tmp_path / f"dt-deconvolve-{ended.pid}-AbCd1234",
    ]
    mine = [
        tmp_path / "dt-deconvolve-export-8-1.tif",
        tmp_path / f"dt-deconvolve-{ended.pid}-EfGh5678",
    ]
    for export, folder in (theirs, mine):
        export.write_bytes(b"an export")
        folder.mkdir()
    for path in theirs:
        os.chown(path, 65534, 65534)  # nobody's
    assert remove_leftover_exports(tmp_path) == 2
    assert all(path.exists() for path in theirs) and not any(path.exists() for path in mine)


def test_a_job_that_ended_shows_no_time_left():
    """A job cancelled while its computation goes on for another job with its key still has a
    `seconds_left`: until engine 0.3.19 `status` printed "cancelled 35% (9 s left)"."""
    for stage in ("done", "failed", "cancelled"):
        job = {"job": "ab12", "stage": stage, "fraction": 0.35, "seconds_left": 9.0}
        assert "left" not in describe(job), stage
    running = {"job": "ab12", "stage": "deblurring", "fraction": 0.35, "seconds_left": 9.0}
    assert describe(running) == "ab12 deblurring 35% (9 s left)"


def cached_entry(folder: Path) -> tuple[str, Path, Path, Path]:
    """A cache in `folder` holding one entry: its key, the cache, the result's and the kernel
    picture's sources."""
    source, key = folder / "r.tif", "ab" * 16
    source.write_bytes(b"a result")
    picture = folder / "k.png"
    picture.write_bytes(b"\x89PNG kernel")
    cache = folder / "cache"
    ResultCache(cache, CacheLimits(min_free_bytes=0)).store(
        key, {RESULT: source, PSF_PNG: picture}, {}
    )
    return key, cache, source, picture


@pytest.mark.parametrize("what", ["lookup", "kernel"])
def test_a_copy_from_the_cache_nobody_hears_of_is_not_left(user_env, tmp_path, what) -> None:
    """darktable killed while `cache lookup -o` copied its result: the copy was left beside the
    original, where no session would import it (a helper's attack across sessions, engine
    0.3.22). A reader that left before "hit" now takes a new copy with it, not a file the copy
    replaced."""
    key, cache, _, _ = cached_entry(tmp_path)
    output = tmp_path / ("copy.tif" if what == "lookup" else "copy.png")
    for existing in (False, True):
        if existing:
            output.write_bytes(b"the user's")
        reader, writer = os.pipe()
        os.close(reader)  # the reader is gone before anything is printed
        command = ["cache", what, key, "-o", str(output), "--cache-dir", str(cache)]
        try:
            done = subprocess.run(
                [sys.executable, "-m", "worker", *command], env=user_env, stdout=writer,
                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=60,
            )  # fmt: skip
        finally:
            os.close(writer)
        assert done.returncode == 141, done.stderr
        assert output.exists() == existing


@pytest.mark.parametrize("what", ["lookup", "kernel"])
def test_a_copy_from_the_cache_that_never_replaces_keeps_the_file_there(
    user_env, tmp_path, what
) -> None:
    """`cache lookup/kernel -o OUTPUT --no-clobber` (the plug-in's, which chose a free name):
    a file at OUTPUT is kept, in one line, with its own exit status (the plug-in then leaves
    the file alone); without the option it is replaced, as `cp` does."""
    key, cache, source, picture = cached_entry(tmp_path)
    output = tmp_path / ("copy.tif" if what == "lookup" else "copy.png")
    output.write_bytes(b"the user's")
    command = ("cache", what, key, "-o", output, "--cache-dir", cache)
    kept = run_dt(user_env, *command, "--no-clobber")
    assert kept.returncode == ExitStatus.TAKEN and kept.stderr.count("\n") == 1, kept.stderr
    assert "already, kept" in kept.stderr and output.read_bytes() == b"the user's"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert run_dt(user_env, *command).returncode == 0
    assert output.read_bytes() == (source if what == "lookup" else picture).read_bytes()


def test_a_kernel_and_a_blur_to_estimate_do_not_go_together(run_cli, tmp_path: Path) -> None:
    """`submit --psf K.npy --blur 5` and `key` alike: exit 2 in one line, before any worker is
    asked (the kernel silently won); either alone is a job, and no blur given is `auto`."""
    write_tiff(tmp_path / "in.tif", np.full((64, 64, 3), 30000, np.uint16))
    np.save(tmp_path / "k.npy", np.ones((3, 3), np.float32) / 9)
    picture, kernel = tmp_path / "in.tif", tmp_path / "k.npy"
    for command in (("submit", picture, "-o", tmp_path / "out.tif"), ("key", picture)):
        done = run_cli(*command, "--psf", kernel, "--blur", "5")
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [
            "dt-deconvolve: error: --psf and --blur do not go together: the kernel file says what "
            "the blur is, --blur asks for it to be estimated (see --help)"
        ]
    assert not (tmp_path / "out.tif").exists()
    keys = [
        run_cli("key", picture, *how).stdout for how in ([], ["--blur", "auto"], ["--psf", kernel])
    ]
    assert keys[0] == keys[1] != keys[2] and all(len(key.strip()) == 64 for key in keys)


def test_status_stops_on_a_list_that_goes_back(user_env, tmp_path):
    """`status` pages through the worker's `list` while each page says where the next starts:
    an impostor (or a broken worker) whose next page is never after the last made it ask for
    ever. Now it stops with one line. The impostor is a real ZeroMQ socket."""
    endpoint = f"ipc://{tmp_path / 'impostor.sock'}"
    with zmq.Context() as context, context.socket(zmq.REP) as socket:
        socket.bind(endpoint)

        stop = threading.Event()

        def answer() -> None:
            while not stop.is_set():
                if socket.poll(100):
                    socket.recv()
                    socket.send(protocol.encode_reply(jobs=[], next=0))

        impostor = threading.Thread(target=answer)
        impostor.start()
        try:
            listed = run_dt(user_env, "status", "--endpoint", endpoint, timeout=60)
        finally:
            stop.set()
            impostor.join()
    assert listed.returncode == ExitStatus.FAILED, listed.stderr
    assert listed.stderr == "dt-deconvolve: error: the worker's list of jobs went back to 0\n"
