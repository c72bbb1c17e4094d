"""Where dt-deconvolve keeps its per-user files (XDG base directories), each named here once."""

import errno
import os
import re
from pathlib import Path

APP = "dt-deconvolve"
CACHE_KEY = re.compile(r"[0-9a-f]{16,128}")  # a cache key: also its entry's folder name
CACHE_KEY_TEXT = "16 to 128 lowercase hexadecimal digits"  # the same, in words


def is_cache_key(text: str) -> bool:
    """Whether `text` is a cache key (`dt-deconvolve key` prints them), hence a safe folder name
    inside the cache: no separator, no dot, nothing but lowercase hexadecimal digits.

    Parameters
    ----------
    text : str
        The would-be key; a value of another type is not one.

    Returns
    -------
    bool
        True when `text` is 16 to 128 lowercase hexadecimal digits (`CACHE_KEY`).
    """
    return isinstance(text, str) and CACHE_KEY.fullmatch(text) is not None


def _xdg(variable: str, fallback: str) -> Path:
    value = os.environ.get(variable)
    base = Path(value) if value and os.path.isabs(value) else Path.home() / fallback
    return base / APP


def cache_dir() -> Path:
    """Regenerable data: FFTW wisdom, compiled kernels, the result cache.

    Returns
    -------
    Path
        ``$XDG_CACHE_HOME/dt-deconvolve``, or ``~/.cache/dt-deconvolve`` when that variable is
        unset, empty or relative. Not made.
    """
    return _xdg("XDG_CACHE_HOME", ".cache")


def wisdom_file() -> Path:
    """Where FFTW's plans are kept between runs (`worker.files.wisdom`).

    Returns
    -------
    Path
        ``fftw-wisdom`` in `cache_dir`. Neither it nor its folder is made.
    """
    return cache_dir() / "fftw-wisdom"


def results_dir() -> Path:
    """The result cache's folder unless `--cache-dir` names another.

    Returns
    -------
    Path
        ``results/`` in `cache_dir`; not made.
    """
    return cache_dir() / "results"


def curve_dir() -> Path:
    """Where CURVE keys are kept unless `--curve-dir` names another folder.

    Returns
    -------
    Path
        ``curve/`` in `cache_dir`; not made.
    """
    return cache_dir() / "curve"


def state_dir() -> Path:
    """Logs and other state worth keeping across restarts.

    Returns
    -------
    Path
        ``$XDG_STATE_HOME/dt-deconvolve``, or ``~/.local/state/dt-deconvolve`` when that
        variable is unset, empty or relative. Not made (`made_state_dir` makes it).
    """
    return _xdg("XDG_STATE_HOME", ".local/state")


def made_state_dir() -> Path:
    """`state_dir()`, made if it is not there, and private (0700) when it is this user's and
    open to others: the logs in it name pictures (a link to a folder elsewhere is followed).

    Returns
    -------
    Path
        `state_dir()`, which now exists.

    Raises
    ------
    OSError
        When it cannot be made (or its mode cannot be changed).
    """
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = folder.stat()
    if info.st_uid == os.getuid() and info.st_mode & 0o077:
        folder.chmod(0o700)
    return folder


def worker_log_file() -> Path:
    """The worker's log (`worker.service.log`).

    Returns
    -------
    Path
        ``worker.log`` in `state_dir` (its older copies beside it, ``worker.log.1`` ...).
    """
    return state_dir() / "worker.log"


def start_log_file() -> Path:
    """Where a worker started by a client writes its own output, which tells why a start failed.

    Returns
    -------
    Path
        ``worker-start.log`` in `state_dir`.
    """
    return state_dir() / "worker-start.log"


def runtime_dir() -> Path:
    """A private (mode 0700) folder for sockets and locks, created on demand.

    A relative `$XDG_RUNTIME_DIR` is ignored, as the XDG specification says.

    Returns
    -------
    Path
        `$XDG_RUNTIME_DIR/dt-deconvolve` when the session has a runtime folder (an absolute
        path to an existing folder), else `run/` under the cache folder (`cache_dir`).

    Raises
    ------
    OSError
        As `make_private` raises it; where `$XDG_RUNTIME_DIR` names a folder this user may not
        write in (as after `su`), the error says what to do.
    """
    value = os.environ.get("XDG_RUNTIME_DIR", "")
    usable = os.path.isabs(value) and os.path.isdir(value)
    path = Path(value) / APP if usable else cache_dir() / "run"
    try:
        make_private(path)
    except PermissionError as error:
        if not usable:
            raise
        why = "$XDG_RUNTIME_DIR is not yours: unset it, or set it to a folder of yours"
        raise PermissionError(error.errno, why, error.filename) from None
    return path


def make_private(folder: Path) -> None:
    """Make `folder` (and its parents) if missing, and its mode 0700.

    The mode is changed through a handle opened without following a link, so a link that
    someone else planted there (on a shared `$XDG_RUNTIME_DIR`) cannot turn this into a change
    of the folder it names.

    Parameters
    ----------
    folder : Path
        The folder. It is made with mode 0700 (less the umask); missing parents get the usual
        mode. An existing one is changed to 0700 only when it grants anything to its group or
        others.

    Raises
    ------
    NotADirectoryError
        Naming `folder`, for what is not the user's own folder: a file, a link (to a folder or
        not), another user's folder.
    OSError
        When `folder` cannot be made, opened or have its mode changed.
    """
    not_ours = NotADirectoryError(errno.ENOTDIR, "not a folder of yours, remove it", str(folder))
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except (FileExistsError, NotADirectoryError):  # a file, or a link (to a folder, or not)
        raise not_ours from None
    try:
        info = os.fstat(handle)
        if info.st_uid != os.getuid():
            raise not_ours
        if info.st_mode & 0o077:
            os.fchmod(handle, 0o700)
    finally:
        os.close(handle)
