"""A kernel kept in the cache, reused by a later job: only with an estimate that holds up, and
only when the kernel file is the kernel that estimate describes (a helper's attack on engine
0.3.22's reuse: damaged records gave wrong pictures, internal errors and poisoned keys)."""

import math
from pathlib import Path

import numpy as np
import pytest
from service_support import write_picture, write_psf

from worker.deconv.parametric import kernel_extent
from worker.deconv.settings import DeblurSettings
from worker.deconv.synthetic import camera_shake_kernel
from worker.errors import Abandoned
from worker.jobspec import JobSpec
from worker.pipeline import KnownKernel, cached_estimate, known_psf, run_pipeline
from worker.service.executor import known_kernel
from worker.stages import Stage

ESTIMATE = {
    "kernel": "free-form",
    "confidence": 0.97,
    "reason": "an 8 px blur, found alike on two parts of the picture",
    "blur": 11,
    "extent": 8,
    "window": [16, 0, 256, 256],
    "check_window": [300, 100, 256, 256],
    "kernel_error": 2.2,
    "smoothing": 2.4,
    "psf_iterations": 40,
    "psf_seconds": 3.1,
    "sharp": False,
}
DEBLURRED = {"iterations": 12, "lambda": 0.002, "stop_reason": "stagnation", "output": "/o.tif"}


def test_a_kept_estimate_keeps_its_own_entries_and_spends_no_time() -> None:
    kept = cached_estimate({**ESTIMATE, **DEBLURRED, "note": "x", "grid": [3, 3]})
    assert kept == {**ESTIMATE, "psf_seconds": 0.0}


@pytest.mark.parametrize(
    "damage",
    [
        {"kernel_error": 1e20},  # lambda 3e34: a picture of 1e25 (or a division by zero)
        {"kernel_error": -1},
        {"confidence": math.nan},
        {"confidence": 1.5},
        {"kernel": "varying"},
        {"reason": "a\x00b\x1b[31mred"},
        {"reason": "x" * 100_000},
        {"reason": None},
        {"window": [1, 2, 3]},
        {"psf_iterations": math.inf},
        {"smoothing": 0.5},
        {"sharp": "no"},
    ],
    ids=lambda damage: next(iter(damage)),
)
def test_a_damaged_estimate_is_found_again(damage: dict) -> None:
    assert cached_estimate({**ESTIMATE, **damage}) is None


def test_an_estimate_without_its_kind_confidence_or_reason_is_none() -> None:
    for name in ("kernel", "confidence", "reason"):
        assert cached_estimate({k: v for k, v in ESTIMATE.items() if k != name}) is None
    assert cached_estimate([ESTIMATE]) is None


def test_a_blur_estimate_comes_whole_and_consistent() -> None:
    """`estimate_blur`'s entries come together, and its smoothing is the one its kernel error
    gives: a record whose kernel error went missing (or was edited alone) is found again."""
    for name in ("blur", "extent", "kernel_error", "smoothing"):
        assert cached_estimate({k: v for k, v in ESTIMATE.items() if k != name}) is None
    assert cached_estimate({**ESTIMATE, "kernel_error": 0.0}) is None
    subject = {k: ESTIMATE[k] for k in ("kernel", "confidence", "reason", "window")}
    assert cached_estimate(subject) == {**subject, "psf_seconds": 0.0}  # (`--varying`'s)


def kept_kernel(path: Path, kernel: np.ndarray, kind: str, **said: int) -> KnownKernel:
    """`kernel` kept at `path` with an estimate of `kind` that gives its side and extent (or
    what `said` says)."""
    np.save(path, kernel)
    usable = kernel.ndim == 2 and np.isfinite(kernel).all() and kernel.max() > 0
    shape = {"blur": kernel.shape[0], "extent": kernel_extent(kernel)} if usable else {}
    return KnownKernel(str(path), {**ESTIMATE, "kernel": kind, **shape, **said})


def test_a_kept_kernel_serves_only_as_what_its_estimate_says(tmp_path: Path) -> None:
    shake = camera_shake_kernel(9, np.random.default_rng(1))
    delta = np.ones((1, 1), np.float32)
    picture = (200, 300, 3)
    assert known_psf(kept_kernel(tmp_path / "a.npy", shake, "free-form"), picture) is not None
    assert known_psf(kept_kernel(tmp_path / "b.npy", delta, "none"), picture) is not None
    assert known_psf(kept_kernel(tmp_path / "c.npy", shake, "none"), picture) is None
    assert known_psf(kept_kernel(tmp_path / "d.npy", delta, "free-form"), picture) is None
    # ...of the side and extent it gives: a kernel padded, or replaced by a wide delta
    assert known_psf(kept_kernel(tmp_path / "e.npy", shake, "free-form", blur=11), picture) is None
    wide = np.pad(delta, 5)
    assert known_psf(kept_kernel(tmp_path / "f.npy", wide, "free-form", extent=8), picture) is None


@pytest.mark.parametrize(
    "kernel",
    [
        np.full((9, 9), np.nan, np.float32),
        np.zeros((9, 9), np.float32),
        np.ones((8, 8), np.float32),
        np.ones((1, 1, 9, 9), np.float32),  # a --varying job's grid
    ],
    ids=["nan", "zero", "even", "grid"],
)
def test_a_kept_kernel_that_is_no_kernel_is_found_again(tmp_path: Path, kernel) -> None:
    """Until then the job failed for good, naming a file in the worker's scratch folder."""
    assert known_psf(kept_kernel(tmp_path / "k.npy", kernel, "free-form"), (200, 300, 3)) is None


def test_a_kernel_kept_for_other_parameters_is_not_reused(tmp_path: Path) -> None:
    """A key chosen by hand may name an entry made with other settings (a preview's kernel)."""
    spec = JobSpec(str(tmp_path / "in.tif"), str(tmp_path / "out.tif"), key="ab" * 16, blur=11)
    made = spec.parameters()
    known = {"path": str(tmp_path / "k.npy"), "report": ESTIMATE, "made": made}
    assert known_kernel(known, spec) is not None
    assert known_kernel({**known, "made": {**made, "blur": 13}}, spec) is None
    assert known_kernel({**known, "made": None}, spec) is None
    assert known_kernel(None, spec) is None


@pytest.mark.parametrize("replace", [True, False])
def test_a_job_that_never_replaces_takes_its_output_with_it_when_it_fails(
    tmp_path: Path, replace: bool
) -> None:
    """A job stopped after writing its output (its worker gone, at the last progress report):
    one that must not replace removes what it wrote, since its client (the plug-in) now leaves
    any file at that name to whoever made it; one that replaces leaves it, as ever."""
    source, psf = tmp_path / "in.tif", tmp_path / "k.npy"
    write_picture(source, (64, 80))
    write_psf(psf, 5)
    spec = JobSpec(str(source), str(tmp_path / "out.tif"), psf=str(psf), replace=replace,
                   settings=DeblurSettings(max_iterations=2))  # fmt: skip

    writing: list[float] = []

    def progress(fraction: float, stage: str) -> None:
        if stage == Stage.WRITING:
            writing.append(fraction)
            if len(writing) == 2:  # the report after the output was written
                raise Abandoned("the worker went away")

    with pytest.raises(Abandoned):
        run_pipeline(spec, progress)
    assert (tmp_path / "out.tif").exists() == replace
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "k.npy"] + ["out.tif"] * replace
