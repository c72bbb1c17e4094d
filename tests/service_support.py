"""Real workers for the service tests: started as processes on real sockets, stopped after."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from worker.deconv.synthetic import camera_shake_kernel, dead_leaves
from worker.processes import process_start
from worker.service.client import Client

ROOT = Path(__file__).resolve().parent.parent
FINAL = ("done", "failed", "cancelled")


@contextlib.contextmanager
def paused(*pids: int) -> Iterator[None]:
    """Processes stopped (SIGSTOP) in the block, let go (SIGCONT) after it, whatever happens."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def private_env(folder: Path) -> dict[str, str]:
    """An environment with its own cache, state and runtime folders under `folder`."""
    env = dict(os.environ)
    for variable in ("XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
        path = folder / variable.split("_")[1].lower()
        path.mkdir(parents=True, mode=0o700, exist_ok=True)
        env[variable] = str(path)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DT_DECONVOLVE_DEBUG", None)
    return env


def run_dt(
    env: dict[str, str], *args: object, timeout: float = 120, **options: object
) -> subprocess.CompletedProcess[str]:
    """Run `dt-deconvolve ARGS...` as a real process in `env`; other keyword arguments go to
    `subprocess.run` (e.g. `preexec_fn`)."""
    return subprocess.run(
        [sys.executable, "-m", "worker", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        **options,
    )


@contextlib.contextmanager
def short_folder() -> Iterator[Path]:
    """A folder with a short path (Unix socket paths are limited to 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="dtd-", dir="/tmp"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Worker:
    """A worker process and the means to talk to it."""

    folder: Path
    env: dict[str, str]
    endpoint: str
    cache_dir: Path
    process: subprocess.Popen[bytes] | None = None

    def client(self, timeout: float = 10.0, curve_dir: Path | None = None) -> Client:
        return Client(self.endpoint, timeout, curve_dir or self.folder / "no-keys")

    def cli(self, *args: object, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `dt-deconvolve ARGS... [--endpoint E]` as a real process (the cache and key
        commands work without a worker: no endpoint for them)."""
        endpoint = [] if args[0] in ("cache", "key") else ["--endpoint", self.endpoint]
        return run_dt(self.env, *args, *endpoint, timeout=timeout)

    def start(self, *extra: object) -> "Worker":
        command = [sys.executable, "-m", "worker", "worker", "--endpoint", self.endpoint]
        command += ["--cache-dir", str(self.cache_dir), "--min-free", "0", *map(str, extra)]
        self.process = subprocess.Popen(command, env=self.env, stderr=subprocess.PIPE)
        with self.client() as client:
            deadline = time.monotonic() + 30
            while client.ping(timeout=0.3) is None:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker did not start: {self.stderr()}")
        return self

    def wait_warm(self, count: int = 1, limit: float = 120) -> None:
        """Wait until `count` executors are warm."""
        with self.client() as client:
            deadline = time.monotonic() + limit
            while client.request("ping")["warm_executors"] < count:
                assert time.monotonic() < deadline, "executors did not warm up"
                time.sleep(0.1)

    def stderr(self) -> str:
        if self.process is None or self.process.stderr is None:
            return ""
        if self.process.poll() is None:
            return ""
        return self.process.stderr.read().decode(errors="replace")

    def executor_pids(self) -> list[int]:
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()


def process_lives(pid: int) -> bool:
    """Whether process `pid` runs (a zombie waiting to be reaped does not)."""
    return process_start(pid) is not None


@contextlib.contextmanager
def running_worker(*extra: object, cache_dir: Path | None = None) -> Iterator[Worker]:
    """A worker with private folders (and `cache_dir` for its cache, if given)."""
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(short_folder())
        env = private_env(folder)
        endpoint = f"ipc://{folder}/w.sock"
        worker = Worker(folder, env, endpoint, cache_dir or folder / "results")
        stack.callback(worker.stop)
        yield worker.start(*extra)


def write_picture(path: Path, shape: tuple[int, int] = (96, 128), seed: int = 0) -> Path:
    """A blurred 16-bit colour TIFF (a real picture file)."""
    scene = dead_leaves(shape, np.random.default_rng(seed))
    tifffile.imwrite(path, (scene * 65535).astype(np.uint16), photometric="rgb")
    return path


def write_psf(path: Path, size: int = 7, seed: int = 0) -> Path:
    np.save(path, camera_shake_kernel(size, np.random.default_rng(seed)))
    return path


@contextlib.contextmanager
def tiny_disk(folder: Path, options: str) -> Iterator[Path]:
    """A small tmpfs mounted at `folder` (needs root; the test is skipped otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@contextlib.contextmanager
def fat_disk(folder: Path) -> Iterator[Path]:
    """A 16 MB FAT file system (a memory card's) mounted at `folder` through FUSE (`fusefat`,
    from `dosfstools` and `fusefat`); the test is skipped where that cannot be had."""
    image = folder.parent / f"{folder.name}.img"
    folder.mkdir()
    with open(image, "wb") as handle:
        handle.truncate(16 * 2**20)
    for command in (
        ["mkfs.fat", "-F", "16", str(image)],
        ["fusefat", "-o", "rw+", str(image), str(folder)],
    ):
        try:
            done = subprocess.run(command, capture_output=True, timeout=30)
        except FileNotFoundError:
            pytest.skip(f"no {command[0]} here (Debian: dosfstools, fusefat)")
        if done.returncode != 0:
            pytest.skip(f"cannot make a FAT disk here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["fusermount", "-u", str(folder)], capture_output=True, check=False)
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def submit(client: Client, source: Path, output: Path, **fields: Any) -> dict[str, Any]:
    """Submit a job (the request's other fields as keyword arguments); the worker's reply."""
    return client.request("submit", input=str(source), output=str(output), **fields)


def wait(client: Client, job: str, limit: float = 90) -> dict[str, Any]:
    """Poll job `job` until it ends (at most `limit` seconds); its last status."""
    deadline = time.monotonic() + limit
    while (status := client.request("status", job=job))["stage"] not in FINAL:
        assert time.monotonic() < deadline, f"job {job} did not end: {status}"
        time.sleep(0.02)
    return status
