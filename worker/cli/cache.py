"""`dt-deconvolve cache stats|lookup|kernel|clean`: the result cache, read and cleaned directly on
disk.

These commands need no running worker: the cache's entries are written whole or not at all, so
reading them beside a working worker is safe. Nor do they make the cache's folder: a missing one
is an empty cache (a `--cache-dir` with a typo made an empty one until engine 0.3.41).
"""

import argparse
import json
import os
import re
import shutil
import stat
from pathlib import Path

from cache.store import PSF_PNG, RESULT, ResultCache, megabytes
from worker.cli.endpoint import add_cache_dir_option, cache_dir_of, folder_argument
from worker.cli.exit_status import ExitStatus
from worker.cli.lines import blur_line, path_field
from worker.cli.options import add_output_options
from worker.errors import UsageError
from worker.jobspec import check_tiff_name
from worker.processes import process_alive

# What the plug-in of a darktable that did not end (killed, crashed) leaves in darktable's
# temporary folder: its private folder, named with that darktable's process id and mktemp's
# random characters; and the exports that plug-ins of engine 0.3.9 and older wrote there.
PRIVATE_FOLDER = re.compile(r"dt-deconvolve-(\d{1,10})-[A-Za-z0-9]{8}")
EXPORT_PATTERN = "dt-deconvolve-export-*"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `cache` command, with its actions `lookup`, `kernel`, `stats` and `clean`.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The commands of the `dt-deconvolve` parser (`build_parser`).
    """
    parser = subparsers.add_parser("cache", help="look up, count or clean cached results")
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)

    lookup = actions.add_parser(
        "lookup", help="print 'hit PATH' (escaped: %%XX) or 'miss' for a key"
    )
    lookup.add_argument("key", metavar="KEY", help="a key printed by `dt-deconvolve key`")
    add_output_options(lookup, "copy a hit here (atomically)", required=False)
    lookup.set_defaults(func=run_lookup)

    kernel = actions.add_parser(
        "kernel",
        help="print the blur found for a key ('BLUR <confidence> <kernel> <reason>', when it was "
        "estimated), then 'hit PATH' of the kernel's picture (PNG) or 'miss'",
    )
    kernel.add_argument("key", metavar="KEY", help="a key printed by `dt-deconvolve key`")
    add_output_options(kernel, "copy the picture here (atomically)", required=False)
    kernel.set_defaults(func=run_kernel)

    stats = actions.add_parser("stats", help="entries, sizes and limits")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(func=run_stats)

    clean = actions.add_parser("clean", help="empty the cache (or, on exit, drop the results)")
    clean.add_argument(
        "--on-exit",
        action="store_true",
        help="remove full-resolution results (and, with --exports-dir, what a darktable that "
        "did not end left there); keep the small kernels",
    )
    clean.add_argument(
        "--keep-results", action="store_true", help="with --on-exit: keep the results too"
    )
    clean.add_argument(
        "--exports-dir",
        type=folder_argument,
        metavar="D",
        help="with --on-exit: also remove what the plug-in of a darktable that did not end "
        "left in D (its temporary folder, dt-deconvolve-PID-XXXXXXXX)",
    )
    clean.add_argument("--json", action="store_true", help="print one JSON object")
    clean.set_defaults(func=run_clean)
    for action in (lookup, kernel, stats, clean):
        add_cache_dir_option(action)


def cache_of(args: argparse.Namespace) -> ResultCache:
    """The cache `--cache-dir` names, as these commands read it: never made (a missing folder is
    an empty cache).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: `cache_dir`.

    Returns
    -------
    ResultCache
        The cache, with ``make=False``.

    Raises
    ------
    InputError
        Something other than a folder is at the cache's name.
    """
    return ResultCache(cache_dir_of(args), make=False)


def look_up(
    cache: ResultCache, key: str, output: Path | None, name: str, replace: bool = True
) -> None:
    """Print "hit PATH" or "miss" for the cached file `name` of `key`.

    PATH is one escaped field (`path_field`). A reader that left before it could be told
    (darktable killed while the copy ran) never learns of the copy: a new one is removed (the
    cache still holds the result), so no file is left that nothing will import; a file the copy
    replaced is the copy's (the old one went with the copy).

    Parameters
    ----------
    cache : ResultCache
        The cache to look in.
    key : str
        A cache key, as `dt-deconvolve key` prints it.
    output : Path or None
        Where to copy the file on a hit, atomically; PATH is then `output`. None: no copy, PATH
        is the file in the cache.
    name : str
        The entry's file: `RESULT` (the deblurred picture) or `PSF_PNG` (the kernel's picture).
    replace : bool, optional
        Whether the copy replaces a file at `output` (`ResultCache.lookup`).

    Raises
    ------
    InputError
        `key` is not a cache key, or `output` lies inside the cache.
    OSError
        The copy failed (a missing folder, a full disk, a file at `output` not to be
        replaced); `BrokenPipeError` when stdout's reader left.
    """
    new = output is not None and not os.path.lexists(output)
    found = cache.lookup(key, output, name, replace)
    try:
        print(f"hit {path_field(found)}" if found else "miss", flush=True)
    except BrokenPipeError:
        if found is not None and output is not None and new:
            found.unlink(missing_ok=True)
        raise


def run_lookup(args: argparse.Namespace) -> int:
    """`cache lookup KEY [-o OUTPUT]`: print "hit PATH" or "miss" for the result (`look_up`).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: `key`, `output` (Path or None) and `cache_dir`.

    Returns
    -------
    int
        `ExitStatus.OK`, on a hit as on a miss.

    Raises
    ------
    InputError
        `output` is not named as a TIFF file (.tif, .tiff), or as `look_up` and `ResultCache`
        raise it (the cache folder is not a folder).
    """
    if args.output is not None:
        check_tiff_name(args.output)
    look_up(cache_of(args), args.key, args.output, RESULT, not args.no_clobber)
    return ExitStatus.OK


def run_kernel(args: argparse.Namespace) -> int:
    """`cache kernel KEY [-o OUTPUT]`: print the blur found for `KEY`, then "hit PATH" or "miss".

    The blur's line (`blur_line`) comes only when the entry's report holds an estimated blur;
    PATH is the kernel's picture (PNG), as `look_up` prints it.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: `key`, `output` (Path or None) and `cache_dir`.

    Returns
    -------
    int
        `ExitStatus.OK`, on a hit as on a miss.

    Raises
    ------
    InputError
        `output` is not named NAME.png (`check_names`), or as `look_up` and `ResultCache` raise
        it.
    """
    from worker.files.kernels import check_names  # (with the picture files: numba, tifffile)

    check_names(None, args.output)  # (a PNG under a kernel's .npy name replaced it)
    cache = cache_of(args)
    entry = cache.entry(args.key)
    blur = blur_line((entry.record.get("report") or {}) if entry else {})
    if blur:
        print(blur)
    look_up(cache, args.key, args.output, PSF_PNG, not args.no_clobber)
    return ExitStatus.OK


def remove_leftover_exports(folder: Path) -> int:
    """Remove from `folder` what the plug-ins of darktables that are gone left there.

    That is their private folders (`PRIVATE_FOLDER`: a running darktable's stays) and the
    exports of old plug-ins (`EXPORT_PATTERN`, regular files), when this user owns them: in a
    shared folder such as /tmp another user's are theirs to clean (and, the folder sticky, not
    this user's to remove). A link is never followed, nor removed.

    Parameters
    ----------
    folder : Path
        darktable's temporary folder.

    Returns
    -------
    int
        How many folders and files went (a folder counts once its removal was tried: errors
        inside it are ignored; an export that could not be removed does not count).

    Raises
    ------
    OSError
        `folder` cannot be listed.
    """
    removed = 0
    for child in folder.iterdir():
        try:
            status = child.lstat()
        except OSError:
            continue
        if status.st_uid != os.geteuid():
            continue
        named = PRIVATE_FOLDER.fullmatch(child.name)
        if named and stat.S_ISDIR(status.st_mode):
            if not process_alive(int(named.group(1))):
                shutil.rmtree(child, ignore_errors=True)
                removed += 1
        elif child.match(EXPORT_PATTERN) and stat.S_ISREG(status.st_mode):
            try:
                child.unlink()
            except OSError:
                continue
            removed += 1
    return removed


def run_stats(args: argparse.Namespace) -> int:
    """`cache stats`: print the cache's entries, sizes, cap and free disk (`ResultCache.stats`).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: `cache_dir`, and `json`: print one JSON object (the fields
        of `ResultCache.stats`, sizes in bytes) rather than a sentence (sizes in MB of 2**20
        bytes).

    Returns
    -------
    int
        `ExitStatus.OK`.

    Raises
    ------
    InputError
        The cache folder is not a folder.
    """
    stats = cache_of(args).stats()
    if args.json:
        print(json.dumps(stats))
    else:
        held = (
            f"{stats['entries']} entries ({stats['results']} results, {stats['kernels']} "
            f"kernels), {megabytes(stats['bytes'])} of {megabytes(stats['max_bytes'])} in"
            if stats["exists"]
            else "no cache yet (nothing cached) at"
        )
        print(f"{held} {stats['root']}; {megabytes(stats['free_bytes'])} free on its disk")
    return ExitStatus.OK


def run_clean(args: argparse.Namespace) -> int:
    """`cache clean`: empty the cache, or on darktable's exit remove only what it need not keep.

    With `--on-exit` only the full-resolution results go (none with `--keep-results`; the
    kernels stay), and with `--exports-dir` also what plug-ins of darktables that are gone left
    in that folder (`remove_leftover_exports`; a folder that does not exist is skipped). Prints
    what went: one sentence, or one JSON object (`ResultCache.clean`'s counts and
    `exports_removed`).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line: `on_exit`, `keep_results`, `exports_dir` (Path or None),
        `json` and `cache_dir`.

    Returns
    -------
    int
        `ExitStatus.OK`.

    Raises
    ------
    UsageError
        `--keep-results` or `--exports-dir` without `--on-exit` (before anything is removed).
    InputError
        The cache folder is not a folder.
    OSError
        As `remove_leftover_exports` raises it, after the cache was cleaned.
    """
    if not args.on_exit and (args.keep_results or args.exports_dir):
        raise UsageError(  # without --on-exit, clean empties the whole cache: refused, not ignored
            "--keep-results and --exports-dir go with --on-exit (without it, clean empties the "
            "whole cache)"
        )
    report = cache_of(args).clean(args.on_exit, args.keep_results)
    exports = 0
    if args.on_exit and args.exports_dir and args.exports_dir.is_dir():
        exports = remove_leftover_exports(args.exports_dir)
    report["exports_removed"] = exports
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"removed {report['entries_removed']} entries, {report['results_removed']} results, "
            f"{exports} exports ({megabytes(report['bytes_freed'])})"
        )
    return ExitStatus.OK
