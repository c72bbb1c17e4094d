"""dt-deconvolve: blind deconvolution for photographs (engine, command line, worker service).

Importing the package turns off NumPy's huge-page advice, in this process and in the processes
it starts (`refuse_huge_page_advice`), and asks OpenBLAS's threads not to spin between calls
(`stop_blas_spinning`).
"""

import os
import sys
from collections.abc import Callable

__version__ = "0.3.59"

HUGE_PAGE_ADVICE = "NUMPY_MADVISE_HUGEPAGE"  # NumPy's switch, read when NumPy is imported
BLAS_SPIN = "OPENBLAS_THREAD_TIMEOUT"  # OpenBLAS's, read when it is loaded (with NumPy)
BLAS_SPIN_CYCLES = "4"  # its least: its threads spin 2^4 cycles between calls, not 2^28


def refuse_huge_page_advice() -> None:
    """Ask NumPy not to advise the kernel to back its arrays with huge pages, unless the user
    chose otherwise (`HUGE_PAGE_ADVICE` set already).

    NumPy advises huge pages (``madvise(MADV_HUGEPAGE)``) for every array of 4 MB or more. Where
    the kernel's transparent huge pages are set to ``defrag=madvise`` (its default since Linux
    4.6), the first touch of such an array may then wait while the kernel compacts memory to find
    a free 2 MB page: on the 2-core test machine, its memory fragmented, that was 17-37 s of
    system time in a 24 Mpx `deblur`, which took 40-53 s instead of 35-46 s without the advice
    (docs/MEASUREMENTS.md, *Speed and memory on real photographs*). Without it, pages come 4 KB
    at a time, at a steady cost. The variable is set for NumPy imported from now on (here or in a
    child process, such as the worker's executor); a NumPy imported already is switched off
    through the function its own import calls with the variable's value.
    """
    if HUGE_PAGE_ADVICE in os.environ:
        return
    os.environ[HUGE_PAGE_ADVICE] = "0"
    switch = numpy_huge_page_switch()
    if switch is not None:
        switch(False)


def numpy_huge_page_switch() -> Callable[[bool], bool] | None:
    """NumPy's own switch of its huge-page advice, the function its import calls with
    `HUGE_PAGE_ADVICE`'s value.

    Returns
    -------
    callable or None
        ``switch(on)``, which sets the advice and returns the setting it replaces; None where
        NumPy is not imported yet.
    """
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):  # NumPy 2, NumPy 1
        switch = getattr(sys.modules.get(name), "_set_madvise_hugepage", None)
        if switch is not None:
            return switch
    return None


def stop_blas_spinning() -> None:
    """Ask OpenBLAS's threads to sleep as soon as a call's work is done, unless the user chose
    otherwise (`BLAS_SPIN` set already).

    NumPy's OpenBLAS runs a long dot product on every core, and its threads then wait for the
    next call spinning, 2^28 cycles by default (a tenth of a second). The blind estimate's
    conjugate gradients call it every few milliseconds (`np.vdot`), so a thread spun all along:
    11 % of a 24 Mpx `run`'s CPU samples (`perf`), and with the two windows' checks side by side
    (`worker.deconv.blind`), the spinning took the cores from them: a 2 Mpx `run` took 8.9-9.5
    s, against 6.6-7.1 s with this setting (docs/MEASUREMENTS.md, *Speed and memory on real
    photographs*). The threads still share each call's work, so every result is the same, bit
    for bit. The variable is set for the OpenBLAS loaded from now on, here or in a child process;
    one loaded already (NumPy imported before this package) keeps its own.
    """
    os.environ.setdefault(BLAS_SPIN, BLAS_SPIN_CYCLES)


refuse_huge_page_advice()
stop_blas_spinning()
