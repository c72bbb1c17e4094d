"""The result cache on disk: one folder per key, written whole or not at all.

Layout under the cache's root folder::

    <key>/record.json     parameters, report (timings), file sizes, versions, created; its
                          modification time is when the entry was last used
    <key>/result.tif      the deblurred full-resolution picture (as the job wrote it)
    <key>/psf.npy         the kernel, and psf.png a picture of it
    .tmp-<tag>-...        an entry being written (never read; removed when its writer is gone)
    .trash-...            an entry being removed

An entry appears by renaming a complete, fsynced temporary folder onto its key and disappears by
renaming it away first, so a process killed at any instant leaves a whole entry or none, and a
reader never sees half of one. A size cap is kept by evicting the least recently used entries, and
the cache refuses to store anything that would bring the disk's free space under a floor.

Only regular files are read: anything else at an entry's file or record (a FIFO, whose opening
waits for a writer for ever, a folder, a link) makes the entry damaged or the file absent, and a
damaged entry is a miss that the next store under its key replaces.
"""

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from worker.atomic import copy_atomically, copy_into
from worker.errors import InputError, NotCached
from worker.numbers import is_whole
from worker.paths import CACHE_KEY, CACHE_KEY_TEXT, is_cache_key
from worker.processes import process_alive
from worker.regular import open_regular

RECORD, RESULT, PSF, PSF_PNG = "record.json", "result.tif", "psf.npy", "psf.png"
KERNEL_FILES = (PSF, PSF_PNG)
ENTRY_FILES = (RESULT, PSF, PSF_PNG)
STAGING, TRASH = ".tmp-", ".trash-"
# Only folders named exactly as this module names them are ever removed as temporary ones.
STAGING_NAME = re.compile(re.escape(STAGING) + r"[0-9a-z]+-\d+-[0-9a-f]{8}")  # <tag>-<pid>-<rand>
TRASH_NAME = re.compile(re.escape(TRASH) + CACHE_KEY.pattern + r"-[0-9a-f]{8}")  # <key>-<rand>
FORMAT = 1  # of the entry layout and record
MAX_REPORT_BYTES = 16 << 10  # a record's report as JSON (the worker's replies carry it whole)
MAX_RECORD_BYTES = 64 << 10  # a whole record: its report, a 4096-byte path, the parameters


@dataclass(frozen=True)
class CacheLimits:
    """How much the cache may hold, and how much free disk it must leave (bytes)."""

    max_bytes: int = 4 * 2**30
    min_free_bytes: int = 512 * 2**20


@dataclass(frozen=True)
class Entry:
    """A whole entry: its folder, its record and when it was last used (its record's time)."""

    key: str
    path: Path
    record: Mapping[str, Any]
    last_used: float = 0.0

    def file(self, name: str) -> Path | None:
        """The path of one of the entry's files, when it is there whole.

        Parameters
        ----------
        name : str
            The file's name in the entry (`RESULT`, `PSF`, `PSF_PNG`).

        Returns
        -------
        Path or None
            Its path; None when the record lists no such file, or something other than a
            regular file has its name (a link is not followed), or one of another size than its
            record says: a file cut short or replaced by hand is no hit.
        """
        if name not in self.record.get("files", {}):
            return None
        path = self.path / name
        try:
            found = os.lstat(path)
        except OSError:
            return None
        whole = stat.S_ISREG(found.st_mode) and found.st_size == self.record["files"][name]
        return path if whole else None

    @property
    def size(self) -> int:
        """The bytes its files take on the disk: each regular file's own size (a record's
        figures could be edited to any number, and the cap's evictions follow this one)."""
        total = 0
        for name in ENTRY_FILES:
            with contextlib.suppress(OSError):
                found = os.lstat(self.path / name)
                total += found.st_size if stat.S_ISREG(found.st_mode) else 0
        return total


def megabytes(size: int) -> str:
    """`size` bytes as MB (of 2**20 bytes), one decimal: ``"12.5 MB"``.

    Parameters
    ----------
    size : int
        A size in bytes.

    Returns
    -------
    str
        The size in words.
    """
    return f"{size / 2**20:.1f} MB"


def _size(source: Path | BinaryIO) -> int:
    """The size in bytes of a file to store, named or open."""
    return source.stat().st_size if isinstance(source, Path) else os.fstat(source.fileno()).st_size


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ResultCache:
    """The cache in folder `root`, within `limits`.

    Parameters
    ----------
    root : str or PathLike
        The cache's folder, made now (with its parents) if missing and `make` is true.
    limits : CacheLimits, optional
        The size cap and the free-disk floor.
    make : bool, optional
        Make the folder now, and again when it was removed (the worker, which stores). False
        for a reader that must not leave a folder behind (the cache commands: a `--cache-dir`
        with a typo made an empty cache there); its missing cache reads as empty.

    Raises
    ------
    InputError
        When something other than a folder is at `root`.
    OSError
        When `root` cannot be made.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        limits: CacheLimits = CacheLimits(),
        make: bool = True,
    ) -> None:
        self.root = Path(root)
        self.limits = limits
        self.make = make
        if self.root.exists() and not self.root.is_dir():  # mkdir would say only "File exists"
            raise InputError(f"the cache folder {self.root} is not a folder")
        if make:
            self.root.mkdir(parents=True, exist_ok=True)

    # ---- reading ---------------------------------------------------------------------------

    def folder(self, key: str) -> Path:
        """The folder of the entry for `key`. Every reader and writer of entries goes through
        here, the command line's `cache lookup` included.

        Parameters
        ----------
        key : str
            The cache key.

        Returns
        -------
        Path
            ``root / key``; the disk is not looked at.

        Raises
        ------
        InputError
            For anything that is not a cache key (`is_cache_key`): a path such as `../x` or
            `/etc` never reaches the disk.
        """
        if not is_cache_key(key):
            raise InputError(f"'{key[:80]}' is not a cache key ({CACHE_KEY_TEXT})")
        return self.root / key

    def check_outside(self, path: str | os.PathLike[str]) -> None:
        """Refuse a file to be written inside the cache's folder.

        Parameters
        ----------
        path : str or PathLike
            Where a result or a copy is to go: its folder's links are followed, not a link at
            its own name (a writer replaces that link, not what it leads to).

        Raises
        ------
        InputError
            When `path` is inside the cache (a file there would damage it), or its folder's
            links cannot be followed (a loop).
        """
        target = Path(path)
        try:
            folder = target.parent.resolve()
        except (OSError, RuntimeError):  # (RuntimeError: a loop of links, in Python 3.11)
            raise InputError(f"cannot follow the links to {path}") from None
        if (folder / target.name).is_relative_to(self.root.resolve()):
            raise InputError(f"{path} is inside the cache: a file there would damage it")

    def entry(self, key: str) -> Entry | None:
        """The whole entry stored under `key`.

        Parameters
        ----------
        key : str
            The cache key.

        Returns
        -------
        Entry or None
            The entry, its `last_used` its record's modification time; None when there is none,
            its folder is a link, or its record is not a regular file (a link is not
            followed), cannot be read, is over `MAX_RECORD_BYTES`, is not JSON or is damaged
            (`valid_record`). Its files are not checked (`Entry.file`).

        Raises
        ------
        InputError
            When `key` is not a cache key (`folder`).
        """
        path = self.folder(key)
        try:
            if path.is_symlink():  # an entry is a folder of the cache's own
                return None
            with open_regular(path / RECORD, follow=False) as handle:
                text = handle.read(MAX_RECORD_BYTES + 1)
                if len(text) > MAX_RECORD_BYTES:
                    return None
                record = json.loads(text)
                used = os.fstat(handle.fileno()).st_mtime
        except (OSError, ValueError, RecursionError):
            return None
        return Entry(key, path, record, used) if valid_record(record) else None

    def keys(self) -> list[str]:
        """The keys of every folder in the cache named as an entry, whole or damaged.

        Returns
        -------
        list of str
            The names in the cache's folder that are cache keys (whatever is at them: a file or
            a link too), in no set order; empty when the folder is gone.
        """
        with contextlib.suppress(FileNotFoundError):
            return [child.name for child in self.root.iterdir() if is_cache_key(child.name)]
        return []

    def entries(self) -> list[Entry]:
        """Every whole entry, least recently used first.

        Returns
        -------
        list of Entry
            The entries whose record is valid (`entry`), by `last_used`.
        """
        found = [entry for key in self.keys() if (entry := self.entry(key)) is not None]
        return sorted(found, key=lambda entry: entry.last_used)

    def touch(self, entry: Entry) -> None:
        """Record that `entry` was just used (for least-recently-used eviction): its record's
        time moves, not its content. The record is never rewritten, so an entry that
        `drop_result` replaced meanwhile is not undone (it would list a result it does not
        hold).

        Parameters
        ----------
        entry : Entry
            The entry used. A failure (the entry gone, a read-only cache) is ignored.
        """
        with contextlib.suppress(OSError):
            os.utime(entry.path / RECORD, follow_symlinks=False)

    def lookup(
        self, key: str, output: Path | None = None, name: str = RESULT, replace: bool = True
    ) -> Path | None:
        """The cached file `name` (the result, or the kernel and its picture) for `key`, copied
        atomically to `output` when given. A hit counts as a use (`touch`).

        Parameters
        ----------
        key : str
            The cache key.
        output : Path or None, optional
            Where to copy the file (`copy_atomically`), outside the cache; None: no copy.
        name : str, optional
            Which file: `RESULT`, `PSF` or `PSF_PNG`.
        replace : bool, optional
            Whether the copy replaces a file at `output`; when not, a file there is kept and
            `NameTaken` raised.

        Returns
        -------
        Path or None
            `output` when given, else the file's path in the cache; None when the cache holds
            no such file (or the entry was evicted while it was copied).

        Raises
        ------
        ValueError
            When `name` is not an entry file.
        InputError
            When `key` is not a cache key, or `output` is inside the cache.
        OSError
            When the copy cannot be written (a missing folder, a full disk, a file at `output`
            that is not to be replaced...).
        """
        if name not in ENTRY_FILES:
            raise ValueError(f"not an entry file: {name}")
        if output is not None:
            self.check_outside(output)
        entry = self.entry(key)
        result = entry.file(name) if entry else None
        if entry is None or result is None:
            return None
        if output is not None:
            try:
                copy_atomically(result, output, replace)
            except FileNotFoundError:
                if result.exists():  # the output's folder is missing: the caller's error
                    raise
                return None  # evicted while we copied: a miss
            result = output
        self.touch(entry)
        return result

    def has_result(self, key: str) -> bool:
        """Whether the cache holds a full result for `key` (no copy made).

        Parameters
        ----------
        key : str
            The cache key.

        Returns
        -------
        bool
            True when the entry is whole and its `RESULT` is there whole (`Entry.file`). Not
            counted as a use.

        Raises
        ------
        InputError
            When `key` is not a cache key.
        """
        entry = self.entry(key)
        return entry is not None and entry.file(RESULT) is not None

    # ---- writing ---------------------------------------------------------------------------

    def staging_prefix(self, tag: str) -> str:
        """The name prefix of temporary folders made for `tag` (a job id), to clean after it.

        Parameters
        ----------
        tag : str
            The writer's tag, as given to `store`.

        Returns
        -------
        str
            ``.tmp-<tag>-``; the pid and a random part follow it.
        """
        return f"{STAGING}{tag}-"

    def store(
        self,
        key: str,
        files: Mapping[str, Path | BinaryIO],
        record: Mapping[str, Any],
        tag: str = "x",
    ) -> Entry:
        """Store `files` and `record` under `key`, atomically.

        Least recently used entries are evicted first to keep within the cap. An entry already
        stored under `key` is kept, unless it is damaged, or holds no result and a result is
        stored: then it gives way.

        Parameters
        ----------
        key : str
            The cache key.
        files : Mapping of str to Path or BinaryIO
            Entry file name (`ENTRY_FILES`) -> source path, or the source opened for reading
            (what was checked is what is stored); each is copied (`copy_into`).
        record : Mapping
            What to keep with the entry (JSON-ready: the job, parameters, report...); its
            creation time, `FORMAT`, the key and the files' sizes are added.
        tag : str, optional
            The writer's tag (a job id), which names its temporary folder (`staging_prefix`);
            lowercase letters and digits only, or `remove_stale` never removes a folder that
            its writer left.

        Returns
        -------
        Entry
            The entry now under `key`: the one stored, or the one kept.

        Raises
        ------
        NotCached
            When the entry would not fit (cap, free disk), room cannot be made, or writing or
            renaming it fails (the disk fills up); nothing is left behind then.
        ValueError
            When `files` names a file that is not an entry file.
        InputError
            When `key` is not a cache key.
        OSError
            When a source file cannot be examined (`stat`) or the cache's folder cannot be made
            again.
        """
        unknown = set(files) - set(ENTRY_FILES)
        if unknown:
            raise ValueError(f"not an entry file: {sorted(unknown)}")
        target = self.folder(key)  # (a key that is none: refused before anything is written)
        self._make_room(sum(_size(source) for source in files.values()))
        staging, full = self._stage(key, files, record, tag)
        try:
            existing = self.entry(key)
            if existing is None or (RESULT in files and existing.file(RESULT) is None):
                self.remove(key)  # a damaged or kernel-only entry gives way to a whole one
            os.rename(staging, target)
        except OSError as error:  # stored meanwhile by someone else: theirs is as good
            shutil.rmtree(staging, ignore_errors=True)
            existing = self.entry(key)
            if existing is None:
                raise NotCached(f"not cached: {error.strerror or error} in {self.root}") from error
            return existing
        _fsync_path(self.root)
        return Entry(key, target, full, time.time())

    def _stage(
        self, key: str, files: Mapping[str, Path | BinaryIO], record: Mapping[str, Any], tag: str
    ) -> tuple[Path, dict[str, Any]]:
        """A complete, fsynced temporary entry folder and its record; `NotCached` on failure."""
        staging = self.root / f"{self.staging_prefix(tag)}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        now = time.time()
        full = {"created": now, **record, "format": FORMAT, "key": key}
        try:
            staging.mkdir()
            for name, source in files.items():
                with open(staging / name, "xb") as handle:  # a copy of its own, never a link
                    copy_into(source, handle)
            full["files"] = {name: (staging / name).stat().st_size for name in files}
            (staging / RECORD).write_text(json.dumps(full, indent=1))
            for child in staging.iterdir():
                _fsync_path(child)
            _fsync_path(staging)
        except OSError as error:
            shutil.rmtree(staging, ignore_errors=True)
            reason = "no space left" if error.errno == errno.ENOSPC else error.strerror
            raise NotCached(f"not cached: {reason or error} in {self.root}") from error
        return staging, full

    def _make_room(self, size: int) -> None:
        """Evict least recently used entries so that `size` more bytes fit under the cap, and
        check the free-disk floor; raises `NotCached` saying what is short."""
        if size > self.limits.max_bytes:
            raise NotCached(
                f"not cached: the entry ({megabytes(size)}) is larger than the cache's cap "
                f"({megabytes(self.limits.max_bytes)})"
            )
        entries = [(entry, entry.size) for entry in self.entries()]  # (sizes read before evicting)
        total = sum(taken for _, taken in entries)
        for entry, taken in entries:
            if total + size <= self.limits.max_bytes:
                break
            try:
                removed = self.remove(entry.key)
            except OSError as error:  # a read-only cache: nothing can be evicted
                reason = error.strerror or error
                raise NotCached(f"not cached: cannot make room: {reason} in {self.root}") from error
            if removed:
                total -= taken
        free = self.free_bytes()
        if free - size < self.limits.min_free_bytes:
            raise NotCached(
                f"not cached: {megabytes(free)} free on the cache's disk ({self.root}), the entry "
                f"needs {megabytes(size)} and {megabytes(self.limits.min_free_bytes)} must stay "
                "free"
            )

    # ---- removing --------------------------------------------------------------------------

    def remove(self, key: str) -> bool:
        """Remove the entry for `key` (atomically: it vanishes whole).

        Parameters
        ----------
        key : str
            The cache key.

        Returns
        -------
        bool
            True when something was there (and is now gone); False if there was none.

        Raises
        ------
        InputError
            When `key` is not a cache key.
        OSError
            When it cannot be moved away (a read-only cache).
        """
        folder = self.folder(key)
        trash = self.root / f"{TRASH}{key}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(folder, trash)
        except FileNotFoundError:
            return False
        _delete(trash)
        return True

    def drop_result(self, entry: Entry) -> None:
        """Replace `entry` by one holding only its kernel files and record (no result).

        When it has no kernel file, or the copy cannot be made (no room, the entry removed
        meanwhile), the entry is removed instead. Readers miss it for a moment, between the
        removal and the new entry's rename.

        Parameters
        ----------
        entry : Entry
            A whole entry (`entry`).

        Raises
        ------
        OSError
            When the entry cannot be removed (`remove`).
        """
        files = {name: entry.path / name for name in KERNEL_FILES if entry.file(name)}
        record = {k: v for k, v in entry.record.items() if k != "files"}
        if not files:
            self.remove(entry.key)
            return
        try:
            staging, _ = self._stage(entry.key, files, record, tag="clean")
        except NotCached:  # no room, or removed meanwhile: drop it all
            self.remove(entry.key)
            return
        self.remove(entry.key)
        with contextlib.suppress(OSError):
            os.rename(staging, self.folder(entry.key))
        shutil.rmtree(staging, ignore_errors=True)

    def clean(self, on_exit: bool = False, keep_results: bool = False) -> dict[str, int]:
        """Empty the cache; with `on_exit`, remove only full-resolution results (kernels stay)
        and, with `keep_results` too, nothing. Temporary folders left by writers that are gone
        are removed in every case (`remove_stale`).

        Parameters
        ----------
        on_exit : bool, optional
            Clean as darktable exits: drop the results (`drop_result`), keep the kernels.
            False: every entry goes, damaged ones and anything at a key's name included.
        keep_results : bool, optional
            With `on_exit`: keep the results too. Ignored without `on_exit`.

        Returns
        -------
        dict of str to int
            ``entries_removed``, ``results_removed`` (alone, or with their entries) and
            ``bytes_freed`` (as the records give the files' sizes).

        Raises
        ------
        OSError
            When an entry cannot be removed (a read-only cache).
        """
        removed = results = freed = 0
        if not on_exit:
            for key in self.keys():  # damaged entries too
                entry = self.entry(key)
                taken = entry.size if entry is not None else 0
                held = entry is not None and entry.file(RESULT) is not None
                if self.remove(key):
                    removed += 1
                    results += held  # (a result goes with its entry)
                    freed += taken
        elif not keep_results:
            for entry in self.entries():
                if entry.file(RESULT):  # (its size then the record's)
                    self.drop_result(entry)
                    results += 1
                    freed += entry.record["files"][RESULT]
        self.remove_stale()
        return {"entries_removed": removed, "results_removed": results, "bytes_freed": freed}

    def remove_stale(self) -> int:
        """Remove temporary folders left by writers that are gone (killed mid-write).

        Every folder being removed (`.trash-...`) goes, and every one being written
        (`.tmp-<tag>-<pid>-...`) whose process no longer runs; only names this module makes
        are touched, and what cannot be deleted is left.

        Returns
        -------
        int
            How many were found and deleted (as far as possible: one whose deletion failed is
            counted too).
        """
        count = 0
        with contextlib.suppress(FileNotFoundError):
            for child in self.root.iterdir():
                if TRASH_NAME.fullmatch(child.name) or (
                    STAGING_NAME.fullmatch(child.name) and not _writer_alive(child.name)
                ):
                    _delete(child)
                    count += 1
        return count

    def free_bytes(self) -> int:
        """The free space on the cache's disk; its folder is made again if it was removed (a
        user emptying it by hand under a running worker, whose `cache_stats` then failed), or,
        by a cache that does not `make` it, measured at its nearest folder that exists.

        Returns
        -------
        int
            Bytes free for this user (`shutil.disk_usage`).

        Raises
        ------
        OSError
            When the folder cannot be made again.
        """
        if self.make:
            self.root.mkdir(parents=True, exist_ok=True)
        there = next(folder for folder in (self.root, *self.root.parents) if folder.is_dir())
        return shutil.disk_usage(there).free

    def stats(self) -> dict[str, Any]:
        """What the cache holds: entries, results, kernels, bytes; its limits and free disk.

        Returns
        -------
        dict
            ``root`` (str); ``exists`` (whether its folder is there); ``entries`` (whole
            entries), ``results`` and ``kernels`` (those whose result, or kernel, is there
            whole); ``bytes`` (their files' sizes, `Entry.size`); ``max_bytes`` and
            ``min_free_bytes`` (the limits); ``free_bytes``.
        """
        entries = self.entries()
        free = self.free_bytes()
        return {
            "root": str(self.root),
            "exists": self.root.is_dir(),
            "entries": len(entries),
            "results": sum(1 for entry in entries if entry.file(RESULT)),
            "kernels": sum(1 for entry in entries if entry.file(PSF)),
            "bytes": sum(entry.size for entry in entries),
            "max_bytes": self.limits.max_bytes,
            "min_free_bytes": self.limits.min_free_bytes,
            "free_bytes": free,
        }


def valid_record(record: Any) -> bool:
    """Whether `record` is shaped as `ResultCache.store` writes it. A record edited or damaged
    otherwise makes its entry a miss (and `clean` removes it), never an error for every job
    that reads the cache.

    Parameters
    ----------
    record : Any
        A record as read from JSON.

    Returns
    -------
    bool
        True for a dict whose `files` maps entry file names to sizes (whole numbers, not
        negative) and whose `report` (when present) is an object of strict JSON (no NaN) within
        `MAX_REPORT_BYTES`. (A `last_used` that older releases wrote is not read: an entry's
        use is its record's modification time.)
    """
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        return False
    files = record["files"]
    if not all(
        name in ENTRY_FILES and is_whole(size) and size >= 0 for name, size in files.items()
    ):
        return False
    if not isinstance(record.get("report", {}), dict):
        return False
    try:  # (a reply that carries it must be strict JSON, and short)
        report = json.dumps(record.get("report", {}), allow_nan=False)
    except ValueError:  # NaN or infinity in it
        return False
    return len(report) <= MAX_REPORT_BYTES


def _delete(path: Path) -> None:
    """Delete `path` as far as possible: a folder with what it holds, anything else (a file or
    a link at a key's name) itself; a link is never followed."""
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)


def _writer_alive(name: str) -> bool:
    """Whether the process that made staging folder `name` (.tmp-<tag>-<pid>-<rand>) runs."""
    parts = name[len(STAGING) :].split("-")
    return len(parts) >= 3 and parts[-2].isdigit() and process_alive(int(parts[-2]))
