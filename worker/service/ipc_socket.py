"""The ipc socket file a worker serves on: one worker's at a time, and removed only by it.

Two workers on one ipc socket would steal each other's clients, so a worker holds a lock beside
the socket file for its life (`endpoint_lock`); a tcp endpoint needs none, as a second bind
fails. A logout may remove the socket's folder, lock and all, while a worker runs; a worker
started then binds a new socket at the same path, so the first one, when it stops, removes the
socket file only while it is still the one it bound (`SocketFile`).
"""

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from worker.errors import InputError
from worker.service.transport import ipc_path, lock_file, private_folder


@contextlib.contextmanager
def endpoint_lock(endpoint: str) -> Iterator[None]:
    """Hold a lock beside an ipc socket for the worker's life, so that two workers never share
    (and steal) one socket. tcp endpoints need none: the second bind fails.

    The lock is the file ``NAME.lock`` beside the socket file NAME, private (mode 0600:
    `lock_file`), which holds the pid of the worker that holds it (where the disk has room for
    it). The socket's folder is made if missing and checked first (`private_folder`).

    Parameters
    ----------
    endpoint : str
        The worker's endpoint; nothing is done for a tcp one.

    Yields
    ------
    None
        Once the lock is held; it is released when the block ends (the file stays).

    Raises
    ------
    InputError
        When another worker holds the lock (its pid is in the message), the socket's folder is
        refused (`private_folder`: not a private folder of this user's), or the lock file cannot
        be used (`lock_file`).
    """
    path = ipc_path(endpoint)
    if path is None:
        yield
        return
    private_folder(path.parent)
    with lock_file(path.with_name(path.name + ".lock")) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = lock.read(32).strip() or "?"
            raise InputError(f"a worker (pid {owner}) already serves {endpoint}") from None
        with contextlib.suppress(OSError):  # (a full disk: the lock holds all the same)
            os.ftruncate(lock.fileno(), 0)  # (unbuffered: closing it has nothing left to write)
            os.pwrite(lock.fileno(), str(os.getpid()).encode(), 0)
        yield


class SocketFile:
    """The ipc socket file a worker bound, known by its device and inode: removed when the
    worker stops only while it is still its own. A logout may remove the socket's folder, lock and
    all; a worker started then binds a new socket at the same path, which the first one's exit
    must not take away.

    Parameters
    ----------
    path : Path
        The socket file, just bound: its identity is read now (a link is not followed). One
        that cannot be examined is never this worker's.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.identity = self._identity()

    def _identity(self) -> tuple[int, int] | None:
        try:
            info = self.path.lstat()
        except OSError:
            return None
        return info.st_dev, info.st_ino

    def is_ours(self) -> bool:
        """Whether the path still holds the socket this worker bound (clients reach it).

        Returns
        -------
        bool
            True while the file at the path has the device and inode it had when bound.
        """
        return self.identity is not None and self._identity() == self.identity

    def remove(self) -> None:
        """Remove the socket file, if it is still the one this worker bound."""
        if self.is_ours():
            self.path.unlink(missing_ok=True)
