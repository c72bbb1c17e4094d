"""Work spread over threads gives what the same work in one thread gives (`worker.parallel`)."""

import resource
import threading

import numpy as np
import pytest
from scipy import ndimage

from worker import parallel


def test_in_threads_keeps_the_order_and_uses_several_threads(monkeypatch):
    monkeypatch.setattr(parallel, "cpu_count", lambda: 3)
    # Items 0 and 1 each wait for the other: on one thread the barrier breaks (after 30 s).
    both_running = threading.Barrier(2, timeout=30)

    def named(item: int) -> tuple[int, str]:
        if item < 2:
            both_running.wait()
        return item, threading.current_thread().name

    names = parallel.in_threads(named, range(9))
    assert [item for item, _ in names] == list(range(9))
    assert names[0][1] != names[1][1]


def test_in_threads_runs_a_single_item_here():
    assert parallel.in_threads(lambda _: threading.current_thread().name, [0]) == [
        threading.current_thread().name
    ]


def test_in_threads_raises_what_the_function_raised():
    def fail(item: int) -> int:
        if item == 3:
            raise ValueError("item 3")
        return item

    with pytest.raises(ValueError, match="item 3"):
        parallel.in_threads(fail, range(6))


@pytest.mark.parametrize("cores", [2, 3, 7])
@pytest.mark.parametrize(
    ("name", "filtered", "reach"),
    [
        ("gaussian", lambda rows: ndimage.gaussian_filter(rows, 4.0, mode="reflect"), 16),
        ("erosion", lambda rows: ndimage.binary_erosion(rows > 0.5, np.ones((3, 3), bool)), 1),
        ("maximum", lambda rows: ndimage.maximum_filter(rows, (55, 9)), 27),
    ],
)
def test_in_bands_gives_the_whole_pictures_filter_exactly(
    monkeypatch, cores, name, filtered, reach
):
    picture = np.random.default_rng(len(name)).random((701, 90), dtype=np.float32)
    monkeypatch.setattr(parallel, "cpu_count", lambda: cores)
    banded = parallel.in_bands(lambda rows: filtered(picture[rows]), len(picture), reach)
    np.testing.assert_array_equal(banded, filtered(picture))


def test_in_bands_with_too_little_reach_differs():
    """The bound is real: a filter reading further than `reach` rows is spoilt at the cuts."""
    picture = np.random.default_rng(1).random((700, 50), dtype=np.float32)

    def blurred(rows: slice) -> np.ndarray:
        return ndimage.gaussian_filter(picture[rows], 4.0)

    assert not np.array_equal(parallel.in_bands(blurred, len(picture), 4), blurred(slice(None)))


def test_in_bands_filters_a_short_picture_whole(monkeypatch):
    calls = []
    monkeypatch.setattr(parallel, "cpu_count", lambda: 4)

    def record(rows: slice) -> np.ndarray:
        calls.append(rows)
        return np.zeros((rows.stop - rows.start, 3))

    parallel.in_bands(record, 100, 40)
    assert calls == [slice(0, 100)]


def _faults_writing(plane: np.ndarray) -> int:
    """The minor page faults this process takes while `plane` is read, then written whole."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    plane += 1  # reads each page, then writes it
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_a_zeroed_plane_is_written_already_unlike_np_zeros():
    shape = (4096, 4096)  # 64 MiB of float32, over any size glibc serves from its heap
    plane = parallel.zeroed(shape)
    assert plane.shape == shape and plane.dtype == np.float32 and plane.flags.c_contiguous
    assert not plane.any()
    assert _faults_writing(plane) < 100
    # The control: np.zeros leaves its pages to the first read and write, a fault or two each
    # (of 4 KiB: 16384 pages; at least one per 2 MiB where the system maps huge pages).
    assert _faults_writing(np.zeros(shape, np.float32)) >= 32
