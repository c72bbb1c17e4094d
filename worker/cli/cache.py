"""`dt-deconvolve cache stats|lookup|kernel|clean`: the result cache, read and cleaned directly on
disk.

These commands need no running worker: the cache's entries are written whole or not at all, so
reading them beside a working worker is safe.
"""

import argparse
import json
import os
import re
import shutil
import stat
from pathlib import Path

from cache.store import PSF_PNG, RESULT, ResultCache
from worker.cli.endpoint import add_cache_dir_option, cache_dir_of, folder_argument
from worker.cli.exit_status import ExitStatus
from worker.cli.lines import blur_line, path_field
from worker.errors import InputError
from worker.files.kernels import check_names
from worker.jobspec import check_tiff_name

# What the plug-in of a darktable that did not end (killed, crashed) leaves in darktable's
# temporary folder: its private folder, named with that darktable's process id and mktemp's
# random characters; and the exports that plug-ins of engine 0.3.9 and older wrote there.
PRIVATE_FOLDER = re.compile(r"dt-deconvolve-(\d{1,10})-[A-Za-z0-9]{8}")
EXPORT_PATTERN = "dt-deconvolve-export-*"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cache", help="look up, count or clean cached results")
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)

    lookup = actions.add_parser(
        "lookup", help="print 'hit PATH' (escaped: %%XX) or 'miss' for a key"
    )
    lookup.add_argument("key", metavar="KEY", help="a key printed by `dt-deconvolve key`")
    lookup.add_argument("-o", "--output", type=Path, help="copy a hit here (atomically)")
    lookup.set_defaults(func=run_lookup)

    kernel = actions.add_parser(
        "kernel",
        help="print the blur found for a key ('BLUR <confidence> <kernel> <reason>', when it was "
        "estimated), then 'hit PATH' of the kernel's picture (PNG) or 'miss'",
    )
    kernel.add_argument("key", metavar="KEY", help="a key printed by `dt-deconvolve key`")
    kernel.add_argument("-o", "--output", type=Path, help="copy the picture here (atomically)")
    kernel.set_defaults(func=run_kernel)

    stats = actions.add_parser("stats", help="entries, sizes and limits")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(func=run_stats)

    clean = actions.add_parser("clean", help="empty the cache (or, on exit, drop the results)")
    clean.add_argument(
        "--on-exit",
        action="store_true",
        help="remove full-resolution results and temporary exports; keep the small kernels",
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


def look_up(cache: ResultCache, key: str, output: Path | None, name: str) -> None:
    """Print "hit PATH" (the cached file `name` for `key`, copied to `output` when one is named)
    or "miss". A reader that left before it could be told (darktable killed while the copy ran)
    never learns of the copy: a new one is removed (the cache still holds the result), so no
    file is left that nothing will import; a file the copy replaced is the copy's (the old one
    went with the copy)."""
    new = output is not None and not os.path.lexists(output)
    found = cache.lookup(key, output, name)
    try:
        print(f"hit {path_field(found)}" if found else "miss", flush=True)
    except BrokenPipeError:
        if found is not None and output is not None and new:
            found.unlink(missing_ok=True)
        raise


def run_lookup(args: argparse.Namespace) -> int:
    if args.output is not None:
        check_tiff_name(args.output)
    look_up(ResultCache(cache_dir_of(args)), args.key, args.output, RESULT)
    return ExitStatus.OK


def run_kernel(args: argparse.Namespace) -> int:
    check_names(None, args.output)  # (a PNG under a kernel's .npy name replaced it)
    cache = ResultCache(cache_dir_of(args))
    entry = cache.entry(args.key)
    blur = blur_line((entry.record.get("report") or {}) if entry else {})
    if blur:
        print(blur)
    look_up(cache, args.key, args.output, PSF_PNG)
    return ExitStatus.OK


def remove_leftover_exports(folder: Path) -> int:
    """Remove from `folder` what the plug-ins of darktables that are gone left there: their
    private folders (`PRIVATE_FOLDER`: a running darktable's stays) and old exports. Only this
    user's own folders and regular files are touched, never what a link leads to. Returns how
    many went."""
    removed = 0
    for child in folder.iterdir():
        try:
            status = child.lstat()
        except OSError:
            continue
        named = PRIVATE_FOLDER.fullmatch(child.name)
        if named and stat.S_ISDIR(status.st_mode) and status.st_uid == os.geteuid():
            if not _running(int(named.group(1))):
                shutil.rmtree(child, ignore_errors=True)
                removed += 1
        elif child.match(EXPORT_PATTERN) and stat.S_ISREG(status.st_mode):
            child.unlink(missing_ok=True)
            removed += 1
    return removed


def _running(pid: int) -> bool:
    """Whether a process `pid` runs (another user's too)."""
    try:
        os.kill(pid, 0)  # (PermissionError: another user's; OverflowError: no pid, kept too)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        pass
    return True


def run_stats(args: argparse.Namespace) -> int:
    stats = ResultCache(cache_dir_of(args)).stats()
    if args.json:
        print(json.dumps(stats))
    else:
        mb = 2**20
        print(
            f"{stats['entries']} entries ({stats['results']} results, {stats['kernels']} "
            f"kernels), {stats['bytes'] / mb:.1f} MB of {stats['max_bytes'] / mb:.0f} MB "
            f"in {stats['root']}; {stats['free_bytes'] / mb:.0f} MB free on its disk"
        )
    return ExitStatus.OK


def run_clean(args: argparse.Namespace) -> int:
    if not args.on_exit and (args.keep_results or args.exports_dir):
        raise InputError(  # without --on-exit, clean empties the whole cache: refused, not ignored
            "--keep-results and --exports-dir go with --on-exit (without it, clean empties the "
            "whole cache)"
        )
    report = ResultCache(cache_dir_of(args)).clean(args.on_exit, args.keep_results)
    exports = 0
    if args.on_exit and args.exports_dir and args.exports_dir.is_dir():
        exports = remove_leftover_exports(args.exports_dir)
    report["exports_removed"] = exports
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"removed {report['entries_removed']} entries, {report['results_removed']} results, "
            f"{exports} exports ({report['bytes_freed'] / 2**20:.1f} MB)"
        )
    return ExitStatus.OK
