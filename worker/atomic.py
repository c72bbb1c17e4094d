"""Write files so that readers see either the old file, the whole new one, or nothing.

A new file is created once, under a fresh random name beside its final place, with
`O_CREAT | O_EXCL | O_NOFOLLOW` (`tempfile.mkstemp`), and then only ever written through that
descriptor: nothing reopens it by name, so swapping the temporary name for a symbolic link (or
any other file) while the writer works cannot redirect the bytes into another file. Before and
after the final rename the writer checks that the name still holds its own file.

A writer killed mid-write (SIGKILL, the machine stopped) cannot remove its temporary file. It
holds a lock on it while it writes (`flock`, which the kernel lets go when the writer dies), so
the next writer of the same file removes the temporaries nobody holds (`remove_dead`).
"""

import contextlib
import errno
import fcntl
import glob
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from worker.errors import NameTaken
from worker.regular import open_regular


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()  # what open() would give a new file
_FICLONE = 0x40049409  # Linux ioctl: make the target share the source's blocks, copy-on-write
_CHUNK = 1 << 24
_CAP_FOWNER = 3  # Linux capability: act as the owner of any file

SUFFIX = ".part"
_RANDOM = "[a-z0-9_]" * 8  # (a glob): the characters `tempfile.mkstemp` puts in its names
KEPT = ".kept"  # a file set aside (`set_aside`) ends so
NAME_MAX = 255  # bytes in a file's name (Linux's file systems)
_NAME_ROOM = NAME_MAX - len("..") - 8 - max(len(SUFFIX), len(KEPT))  # of NAME, in a temporary's
SETTLED = 60.0  # s: a temporary younger than this may be a writer's that has not locked it yet


def _prefix(final: Path) -> str:
    """``.NAME.``, the start of `final`'s temporaries: NAME cut to `_NAME_ROOM` bytes, so that
    with the random part and the suffix the temporary's name is as long as the longest name a
    folder takes (`NAME_MAX`), not longer: a name of 241-255 bytes was refused as "too long"."""
    name = os.fsencode(final.name)[:_NAME_ROOM]
    return f".{os.fsdecode(name)}."


def placed(final: str | os.PathLike[str]) -> Path:
    """`final` where opening its name leads: its folder's real path, then its name.

    The folder's links and ``..`` are followed in order, as the kernel follows them.
    `tempfile.mkstemp` and `os.path.abspath` read ``..`` as text instead: ``out/link/../r.tif``
    would be written beside the link, not where the name leads, and ``out/missing/../r.tif``
    would pass every check and fail only at the final rename, after the work.

    Parameters
    ----------
    final : str or PathLike
        A file to write; its last part is kept as it is (a link there is not followed).

    Returns
    -------
    Path
        The real path of `final`'s folder joined with `final`'s name.

    Raises
    ------
    OSError
        Naming `final`: its folder is missing, is not a folder or cannot be searched.
    """
    final = Path(final)
    try:
        folder = os.path.realpath(final.parent, strict=True)
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(final)) from None
    return Path(folder) / final.name


def temporaries(final: str | os.PathLike[str]) -> list[Path]:
    """The temporary files that `atomic_file(final)` writers left behind (killed mid-write).

    Parameters
    ----------
    final : str or PathLike
        The file the writers were writing.

    Returns
    -------
    list of Path
        The names in `final`'s folder that are `tempfile.mkstemp`'s, ``.NAME.`` then eight
        random characters then ``.part`` (a file of the user's, `.NAME.notes.part`, is not
        one), in no set order. They include the temporaries of writers still at work; nothing
        is opened or checked; none when `final`'s folder cannot be found (`placed`).
    """
    try:
        final = placed(final)
    except OSError:
        return []
    return list(final.parent.glob(glob.escape(_prefix(final)) + _RANDOM + SUFFIX))


def remove_dead(final: str | os.PathLike[str], settled: float = SETTLED) -> None:
    """Remove the temporary files that killed writers of `final` left (`temporaries`).

    Only regular files that no writer holds locked and that are at least `settled` seconds old
    (by their modification time) go: a writer locks its own as soon as it has made it. One that
    cannot be opened or locked (another user's, a file system without locks) is left where it
    is; no `OSError` reaches the caller.

    Parameters
    ----------
    final : str or PathLike
        The file the writers were writing.
    settled : float, optional
        How old a temporary must be, in seconds (`SETTLED`: a writer that has just made its
        own has surely locked it by then). Less where the writer is known dead.
    """
    for partial in temporaries(final):
        with contextlib.suppress(OSError):
            fd = os.open(partial, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                status = os.fstat(fd)
                if not stat.S_ISREG(status.st_mode) or time.time() - status.st_mtime < settled:
                    continue
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises while a writer holds it
                named = os.lstat(partial)
                if (named.st_dev, named.st_ino) == (status.st_dev, status.st_ino):
                    partial.unlink()
            finally:
                os.close(fd)


def descriptor_path(handle: BinaryIO) -> str:
    """A name for an open file that reaches that very file (Linux `/proc/self/fd/N`), for
    libraries that want a path: it cannot be redirected by renaming or replacing the file's
    own name, and it is plain ASCII whatever bytes that name holds.

    Parameters
    ----------
    handle : BinaryIO
        An open file; the name is valid only while it stays open, in this process.

    Returns
    -------
    str
        ``/proc/self/fd/N``, N being `handle`'s descriptor.
    """
    return f"/proc/self/fd/{handle.fileno()}"


def _same_file(path: Path, handle: BinaryIO) -> bool:
    try:
        named = os.lstat(path)
    except OSError:
        return False
    held = os.fstat(handle.fileno())
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _replaced(path: Path) -> OSError:
    return OSError(
        errno.EEXIST, "the file was replaced by someone else while it was written", str(path)
    )


def refuse_taken(final: str | os.PathLike[str]) -> None:
    """`NameTaken` naming `final` when anything is at its name (a link counts, even one
    that leads nowhere): what a writer that never replaces (``replace=False``) refuses.

    Parameters
    ----------
    final : str or PathLike
        The name to be written.

    Raises
    ------
    NameTaken
        When the name is taken.
    """
    if os.path.lexists(final):
        raise NameTaken(Path(final))


def _publish(tmp: Path, final: Path, replace: bool) -> None:
    """Give the temporary file `tmp` the name `final`, in one step readers cannot see half done.

    With `replace`, whatever is at `final` is replaced (`os.replace`). Without it, the file is
    linked at `final`, which fails when the name is taken, even by a file made an instant
    before (`link(2)` makes the name or fails: there is no moment between a check and the
    rename), and its temporary name then goes. On a file system without hard links (FAT,
    some network shares) the name is checked, then renamed to: a file made between the two
    is replaced.
    """
    if replace:
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final, follow_symlinks=False)
    except FileExistsError:
        raise NameTaken(final) from None
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
            raise
        refuse_taken(final)
        os.replace(tmp, final)
        return
    with contextlib.suppress(OSError):  # (left, it goes with the next writer's `remove_dead`)
        tmp.unlink()


def _refuse_special(final: Path) -> None:
    """`OSError` naming `final` when it exists and is not a regular file (or a link, which is
    replaced itself): a folder, a FIFO, a device such as `/dev/null` is never replaced."""
    try:
        mode = os.lstat(final).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "a folder is in the way, not replaced", str(final))
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise OSError(errno.EEXIST, "not a regular file, not replaced", str(final))


def _refuse_others_in_sticky(final: Path) -> None:
    """`PermissionError` naming `final` when it is another user's file in a folder of another
    user's with the sticky bit (as /tmp): the kernel lets nobody but those owners (or a process
    with CAP_FOWNER, as root) replace it, so writing the new file would fail only at its rename,
    after the work."""
    try:
        folder, existing, me = os.stat(final.parent), os.lstat(final), os.geteuid()
    except OSError:  # nothing there (or no folder: the temporary's creation says so)
        return
    if folder.st_mode & stat.S_ISVTX and me not in (folder.st_uid, existing.st_uid):
        if _may_remove_anyones():
            return
        raise PermissionError(
            errno.EPERM, "another user's file in a shared folder: it cannot be replaced",
            str(final),
        )  # fmt: skip


def _may_remove_anyones() -> bool:
    """Whether this process holds CAP_FOWNER (root does, unless it was dropped), which lets it
    replace any file in a sticky folder: its effective capabilities, from /proc/self/status."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("CapEff:"))
        return bool(int(line.split()[1], 16) & 1 << _CAP_FOWNER)
    return os.geteuid() == 0


def _same_file_as(path: Path, other: str | os.PathLike[str]) -> bool:
    """Whether `path` names the file `other` does (through a link, another name for it, ...)."""
    try:
        return os.path.samefile(path, other)
    except OSError:  # one of them does not exist
        return False


def _mode_for(final: Path) -> int:
    """The permissions of the file that replaces `final`: those of the regular file it replaces
    (a user's 0640 result stays 0640, as `cp` keeps them), else those of any new file."""
    with contextlib.suppress(OSError):
        status = os.stat(final, follow_symlinks=False)
        if stat.S_ISREG(status.st_mode):
            return stat.S_IMODE(status.st_mode) & 0o777
    return _FILE_MODE


def _set_mode(fd: int, mode: int) -> None:
    """`os.fchmod`, except on a file system that keeps no such permissions, where the file
    keeps those it has: FAT refuses most changes (EPERM: writing a result to a memory card
    failed), some FUSE file systems have no such call (ENOSYS)."""
    try:
        os.fchmod(fd, mode)
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP):
            raise


def _temporary(final: Path) -> tuple[int, Path]:
    """A new temporary file beside `final` (descriptor, name); an `OSError` names `final`, the
    name the user knows, not the temporary one, and leaves no temporary behind."""
    try:
        fd, name = tempfile.mkstemp(prefix=_prefix(final), suffix=SUFFIX, dir=final.parent)
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(final)) from None
    try:
        _set_mode(fd, 0o600)  # writable while it is written, whatever the umask (0222: 0400)
    except OSError as error:
        os.close(fd)
        Path(name).unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror, str(final)) from None
    return fd, Path(name)


def check_target(
    final: str | os.PathLike[str], *sources: str | os.PathLike[str], replace: bool = True
) -> None:
    """Raise now, before the work that will write it, what `atomic_file(final, replace=...)`
    would raise.

    To find out whether the temporary file can be made, one is made and removed at once.

    Parameters
    ----------
    final : str or PathLike
        The file the work will write.
    *sources : str or PathLike
        The inputs the work reads (a picture, a kernel), which it must not replace.
    replace : bool, optional
        Whether the work may replace a file at `final` (`atomic_file`); when not, anything at
        the name is refused (`refuse_taken`).

    Raises
    ------
    OSError
        Naming `final`: it is taken where nothing may be replaced (`NameTaken`); it is
        one of `sources` (by name, link or hard link); it is a folder
        (`IsADirectoryError`) or another file that is never replaced (a FIFO, a device...); it
        is another user's file in another user's sticky folder such as /tmp, which only the
        final rename would refuse (`PermissionError`, unless this process holds CAP_FOWNER); or
        its temporary file cannot be made (a missing or read-only folder, a name too long once
        the temporary's prefix and suffix are added).
    """
    final = placed(final)
    if any(_same_file_as(final, source) for source in sources):
        raise OSError(errno.EEXIST, "this would replace the input; choose another name", str(final))
    if not replace:
        refuse_taken(final)
    _refuse_special(final)
    _refuse_others_in_sticky(final)
    fd, name = _temporary(final)
    os.close(fd)
    name.unlink()


@contextlib.contextmanager
def atomic_file(
    final: str | os.PathLike[str], fsync: bool = True, replace: bool = True
) -> Iterator[BinaryIO]:
    """Yield a new, empty file opened for reading and writing; when the block succeeds, it
    replaces `final` (renamed onto it).

    The file lives in `final`'s folder (`placed`: where the name leads; so the rename is
    atomic) under a name that starts with a dot and ends in `.part`. On any exception it is
    removed (when the name still holds it) and `final` is untouched. Before it is made, the
    temporaries of killed writers of `final` are removed (`remove_dead`). The new file gets the
    permissions of the regular file it replaces, else those `open` gives a new file.

    Parameters
    ----------
    final : str or PathLike
        The file to write. A symbolic link there is replaced itself, not followed.
    fsync : bool, optional
        Make the data reach the disk before the rename (and the folder's entry after it), so
        that a crash at any instant leaves a whole file or none.
    replace : bool, optional
        Replace what is at `final` (the default, as ``cp`` does), or never: a file there
        before the block, or made there while it ran, is kept and `NameTaken` raised
        (`_publish`).

    Yields
    ------
    BinaryIO
        The temporary file, opened ``w+b``; its name is for messages only, never reopened.

    Raises
    ------
    OSError
        Naming `final`: it is taken and `replace` is False (`NameTaken`); it is a folder
        or another file that is not a regular one (`check_target`); the temporary file cannot
        be made or renamed; `final` was made to point elsewhere just after the rename; a write
        fails (a full disk: an error that names no file gets `final`'s name). Naming the
        temporary: its name was made to point elsewhere while the block ran.
    """
    final = placed(final)
    if not replace:
        refuse_taken(final)
    _refuse_special(final)
    remove_dead(final)
    fd, tmp = _temporary(final)
    with contextlib.suppress(OSError):  # (a file system without locks: nobody removes it)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held until closed: this writer lives
    with os.fdopen(fd, "w+b") as handle:
        handle.raw.name = str(tmp)  # type: ignore[attr-defined]  # for messages, never reopened
        try:
            mode = _mode_for(final)  # given at the end: a library reopening the file (exiv2,
            yield handle  # through `descriptor_path`) must still be able to write it
            handle.flush()
            _set_mode(fd, mode)
            if fsync:
                os.fsync(fd)
            if not _same_file(tmp, handle):
                raise _replaced(tmp)
            try:
                _publish(tmp, final, replace)
            except NameTaken:
                raise
            except OSError as error:  # named as the user knows it, not by the temporary's name
                raise OSError(error.errno, error.strerror, str(final)) from None
            if not _same_file(final, handle):
                raise _replaced(final)
        except BaseException as error:
            if _same_file(tmp, handle):
                tmp.unlink(missing_ok=True)
            if isinstance(error, OSError) and error.errno and not error.filename:
                # (a write through the handle: a full disk, the file size limit) named as the
                # user knows the file
                raise OSError(error.errno, error.strerror, str(final)) from error
            raise
    if fsync:
        with contextlib.suppress(OSError):
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def set_aside(final: str | os.PathLike[str]) -> Path | None:
    """A second name for the regular file now at `final`, so that `put_back` can bring it back
    after `final` was replaced. A process killed in between leaves the file under that name, not
    lost.

    Parameters
    ----------
    final : str or PathLike
        The file to keep.

    Returns
    -------
    Path or None
        The second name, a hard link beside it (`.NAME.XXXXXXXX.kept`); None when there is no
        regular file at `final` (a link is not followed) or it cannot be linked.
    """
    try:
        final = placed(final)
        if not stat.S_ISREG(os.lstat(final).st_mode):
            return None
        fd, name = tempfile.mkstemp(prefix=_prefix(final), suffix=KEPT, dir=final.parent)
        os.close(fd)
        os.unlink(name)  # (the name is free again: `link` makes it, or fails if it was taken)
        os.link(final, name, follow_symlinks=False)
    except OSError:
        return None
    return Path(name)


def put_back(kept: Path, final: str | os.PathLike[str]) -> None:
    """Undo `set_aside`: `final` is the file set aside again, whatever was written there since
    (when nothing was, the second name just goes).

    Nothing is raised: when the rename or removal fails (`OSError`), both names are left as
    they are.

    Parameters
    ----------
    kept : Path
        The second name `set_aside` returned.
    final : str or PathLike
        The file it was set aside from.
    """
    with contextlib.suppress(OSError):
        final = placed(final)
        if _same_file_as(kept, final):
            kept.unlink()
        else:
            os.replace(kept, final)


def copy_into(source: str | os.PathLike[str] | BinaryIO, target: BinaryIO) -> None:
    """Put the bytes of the file `source` into the open file `target` (from its start).

    A real, independent copy: the two files never share an inode, so changing one later never
    changes the other. On file systems that can (Btrfs, XFS...) the copy is a reflink, instant
    and sharing blocks copy-on-write; elsewhere the kernel copies (`copy_file_range`), or Python
    does where the kernel cannot.

    Parameters
    ----------
    source : str or PathLike or BinaryIO
        The file to copy; it must be a regular file (`open_regular`). Or the file itself, open
        for reading: it is opened again through its descriptor (`descriptor_path`), never by a
        name that could lead elsewhere now, and copied whole whatever its position; it is left
        open.
    target : BinaryIO
        An open file, readable and writable; what it held is replaced. After a reflink its
        position is left where it was, after a copy it is at the end.

    Raises
    ------
    OSError
        When `source` cannot be opened or is not a regular file (naming it), or the copy fails.
    """
    named = source if isinstance(source, (str, os.PathLike)) else descriptor_path(source)
    with open_regular(named) as reader:  # (a FIFO at its name would make it wait for ever)
        target.flush()
        try:
            fcntl.ioctl(target.fileno(), _FICLONE, reader.fileno())
            return
        except OSError:
            pass
        target.seek(0)
        target.truncate()
        try:
            while os.copy_file_range(reader.fileno(), target.fileno(), _CHUNK):
                pass
        except OSError as error:  # no such system call for these file systems: copy in Python
            if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            reader.seek(0)
            target.seek(0)
            target.truncate()
            shutil.copyfileobj(reader, target, _CHUNK)
        target.seek(0, os.SEEK_END)


def copy_atomically(
    source: str | os.PathLike[str], target: str | os.PathLike[str], replace: bool = True
) -> None:
    """Put a copy of `source` at `target` so that readers see the whole file or none.

    Parameters
    ----------
    source : str or PathLike
        The regular file to copy (`copy_into`).
    target : str or PathLike
        Where the copy goes, written through `atomic_file` (with `fsync`).
    replace : bool, optional
        Whether a file at `target` is replaced (`atomic_file`).

    Raises
    ------
    OSError
        As `atomic_file` and `copy_into` raise it.
    """
    with atomic_file(target, replace=replace) as handle:
        copy_into(source, handle)
