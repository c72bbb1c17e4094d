"""Plain NumPy and SciPy work spread over the cores, in threads: item by item, or band by band.

NumPy's element-wise operations, reductions and partitions, and SciPy's `ndimage` filters,
release the GIL while they run over an array, so threads of one process run them side by side
on shared memory, without copies. On the 2-core test machine two threads took half the time of
one for a Gaussian filter, a 3 x 3 correlation, a median and a power of 1920 x 1080 planes
(2026-12-01). The engine's FFT convolutions have their own pool (`worker.deconv.boundaries`);
this is for the work around them that NumPy and SciPy do: the noise model, the texture weight,
the tone curves of the files.

glibc gives each thread a heap of its own and keeps what is freed there for later: the work done
in threads left a 24 Mpx deblur's peak memory about 100 MB higher (2.79 GiB against 2.68-2.74
GiB before; 2.68 GiB with one heap for all threads, MALLOC_ARENA_MAX=1). So once the threads are
done, the memory they freed is handed back (`malloc_trim`: 2.70 GiB; where the C library has no
such call, nothing is done).

A plane that compiled loops or threads first read and then write is allocated by `zeroed`, not
`np.zeros`. `np.zeros` takes fresh pages from the system untouched; a read maps each to the
system's one shared page of zeros, and the first write to it then takes a second fault, which
copies the page and flushes the stale mapping from the TLB of every core running a thread of the
process (an inter-processor interrupt each, dear in a virtual machine). `zeroed` writes its zeros
at once: one fault a page, no flush. Measured on a 24 Mpx `deblur` (in process, two cores, in
turns, the output the same bit for bit): 36.6-39.5 s with two of RL-TV's planes from `np.zeros`
(system time 11.5-17.8 s; under `perf`, 12 % of the samples zeroing such pages and 7 % in the
flushes), 32.9-35.4 s with neither read before it is written (system time 4.2-6.9 s).

A filter over a neighbourhood is split into bands of rows (`in_bands`): each band is filtered
with `reach` more rows on either side, which its own edges may spoil, and only its inner rows
are kept. Where the filter reads no further than `reach` rows, the result is the whole
picture's, exactly: inside the picture every kept row saw its true neighbours, and at the
picture's top and bottom the band's edge is the picture's.
"""

import ctypes
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
from numpy.typing import DTypeLike

Item = TypeVar("Item")
Result = TypeVar("Result")

MIN_BAND_ROWS = 64  # a band keeps at least this many rows (and more than its reach on each side)


def cpu_count() -> int:
    """The number of CPU cores this process may use.

    Returns
    -------
    int
        The size of this process's CPU affinity set (at least 1), not the machine's count.
    """
    return len(os.sched_getaffinity(0))


def zeroed(shape: tuple[int, ...], dtype: DTypeLike = np.float32) -> np.ndarray:
    """An array of zeros whose pages are already written (see the module's notes).

    Parameters
    ----------
    shape : tuple of int
        The array's shape.
    dtype : data-type, optional
        Its type.

    Returns
    -------
    ndarray
        Zeros, C-contiguous; writing to it takes no page faults.
    """
    array = np.empty(shape, dtype)
    array.fill(0)
    return array


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()


def _hand_back_freed_memory() -> None:
    """Return to the system the memory that the threads' work freed (see the module's notes)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def in_threads(function: Callable[[Item], Result], items: Iterable[Item]) -> list[Result]:
    """`[function(item) for item in items]`, on one thread per core (in this thread when there
    is one item or one core).

    Parameters
    ----------
    function : callable
        ``function(item)``; it runs in several threads at once, so it must be safe to.
    items : iterable
        The items, read whole before the work starts.

    Returns
    -------
    list
        ``function(item)`` for each item, in the items' order. An exception raised by
        `function` propagates.
    """
    items = list(items)
    workers = min(cpu_count(), len(items))
    if workers < 2:
        return [function(item) for item in items]
    with ThreadPoolExecutor(workers, thread_name_prefix="array-work") as pool:
        results = list(pool.map(function, items))
    _hand_back_freed_memory()
    return results


def in_bands(function: Callable[[slice], np.ndarray], height: int, reach: int) -> np.ndarray:
    """`function(slice(0, height))`, computed on bands of rows side by side (see the module's
    notes).

    A picture too short to split into bands of `MIN_BAND_ROWS` and `reach` (or a process with
    one core) is filtered whole, in one call.

    Parameters
    ----------
    function : callable
        ``function(rows)``: filters the rows `rows` (a slice) of the picture and returns as
        many rows of the result, along the first axis. It must read no further than `reach`
        rows from each row it writes (a filter of radius `reach`, in any border mode): the
        result is then the whole picture's. It runs in several threads at once.
    height : int
        The picture's height, in rows.
    reach : int
        How far the filter reads, in rows (>= 0).

    Returns
    -------
    ndarray
        ``function(slice(0, height))``: the bands' kept rows, joined along the first axis.
    """
    bands = min(cpu_count(), height // max(MIN_BAND_ROWS, 2 * reach + 1))
    if bands < 2:
        return function(slice(0, height))
    bounds = np.linspace(0, height, bands + 1).round().astype(int)

    def band(index: int) -> np.ndarray:
        top, bottom = bounds[index], bounds[index + 1]
        first, last = max(top - reach, 0), min(bottom + reach, height)
        return function(slice(first, last))[top - first : bottom - first]

    return np.concatenate(in_threads(band, range(bands)))
