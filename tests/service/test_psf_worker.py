"""A worker job that estimates its PSF: the kernel is found, used, reported and cached."""

import time

import numpy as np
import tifffile
from service_support import running_worker, submit, wait, write_picture

from cache.store import RESULT, ResultCache
from tests.tiffs import darktable_like_tiff
from worker.deconv.rl_tv import DeblurReport
from worker.deconv.synthetic import blur_valid, camera_shake_kernel, dead_leaves

# What a job's report says of its deblur and its files; the rest describes its estimated kernel.
DEBLUR_ENTRIES = frozenset(DeblurReport.left_as_is(1.0).as_dict()) | {"output", "psf_out"}


def test_a_job_without_a_psf_estimates_reports_and_caches_it(tmp_path):
    source = write_picture(tmp_path / "shaken.tif", (256, 288), seed=3)
    output, key = tmp_path / "out.tif", "e5" * 16
    with running_worker() as worker, worker.client() as client:
        fields = {"blur": 9, "window": "centre", "key": key, "settings": {"max_iterations": 5}}
        job = client.request("submit", input=str(source), output=str(output), **fields)["job"]
        deadline = time.monotonic() + 120
        while (status := client.request("status", job=job))["stage"] not in ("done", "failed"):
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
        assert status["stage"] == "done", status["error"]
        report = status["report"]
        assert report["window"] == [16, 0, 256, 256] and report["psf_iterations"] > 0
        assert tifffile.imread(output).shape == (256, 288, 3)
        entry = ResultCache(worker.cache_dir).entry(key)
        psf = np.load(entry.file("psf.npy"))
        # the kernel used, as reported: the estimate (9 x 9) or, when it could not be checked
        # (no room beside the centre window here), the mild fallback
        assert psf.shape == (report["blur"],) * 2 and psf.dtype == np.float32
        assert report["kernel"] in ("free-form", "gaussian", "none"), report
        assert abs(float(psf.sum()) - 1) < 1e-5 and psf.min() >= 0
        assert entry.file("psf.png").read_bytes().startswith(b"\x89PNG")
        assert entry.file(RESULT).read_bytes() == output.read_bytes()
        # No name of the job's scratch copy of the kernel, gone after it (until engine 0.3.40
        # both the reply and the entry's record said `psf_out`: that copy's path)
        assert "psf_out" not in report and "psf_out" not in entry.record["report"]


def estimate_of(report: dict) -> dict:
    """The entries of a job's report that describe its estimated kernel, its time aside."""
    return {k: v for k, v in report.items() if k not in DEBLUR_ENTRIES and k != "psf_seconds"}


def test_a_kernel_kept_in_the_cache_deblurs_again_as_its_estimate_did(tmp_path):
    """After `cache clean --on-exit` (darktable quit, keeping the kernels) the same pictures and
    keys take their kernels from the cache: the same results, pixel for pixel, the same estimate
    reported (no time spent on it) and kept in the cache. Until engine 0.3.22 the kernel ran as a
    kernel given by the user: the smoothing its error called for was lost, no BLUR line, the
    record's estimate wiped, a picture left as it is deblurred, and a `--varying` job failed."""
    rng = np.random.default_rng(5)
    scene = dead_leaves((420, 560), rng)
    shaken = blur_valid(scene, camera_shake_kernel(9, rng))
    shaken = np.clip(shaken + rng.normal(0, 0.005, shaken.shape), 0, 1)
    pictures = {"sharp": scene, "shaken": shaken}
    jobs = {
        "sharp": {"blur": 9, "key": "a1" * 16},
        "shaken": {"blur": 11, "key": "b2" * 16},
        "varying": {"blur": 11, "key": "c3" * 16, "settings": {"varying": True}},
    }
    for name, picture in pictures.items():
        darktable_like_tiff(tmp_path / f"{name}.tif", picture)  # linear light, as estimated
    reports: dict[str, list[dict]] = {name: [] for name in jobs}
    with running_worker() as worker, worker.client() as client:
        for round_ in (1, 2):
            for name, fields in jobs.items():
                source = tmp_path / f"{'shaken' if name == 'varying' else name}.tif"
                output = tmp_path / f"{name}-{round_}.tif"
                final = wait(client, submit(client, source, output, **fields)["job"], 180)
                assert final["stage"] == "done", (name, round_, final["error"])
                reports[name].append(final["report"])
            ResultCache(worker.cache_dir).clean(on_exit=True)
        cache = ResultCache(worker.cache_dir)
        for name, (first, second) in reports.items():
            assert np.array_equal(
                tifffile.imread(tmp_path / f"{name}-1.tif"),
                tifffile.imread(tmp_path / f"{name}-2.tif"),
            ), name
            assert estimate_of(second) == estimate_of(first), name
            kept = cache.entry(jobs[name]["key"]).record["report"]
            assert estimate_of(kept) == estimate_of(first), name
        for name in ("sharp", "shaken"):
            assert reports[name][1]["psf_seconds"] == 0.0, name
    assert {first["kernel"] for first, _ in reports.values()} >= {"none", "free-form"}, reports


def test_a_kept_kernel_that_was_damaged_is_estimated_again(tmp_path):
    """A kept kernel that no longer is one (NaN, the size its record says) is a miss, not a job
    that fails for good naming a file in the worker's scratch folder (until a helper's attack on
    engine 0.3.22)."""
    rng = np.random.default_rng(5)
    shaken = blur_valid(dead_leaves((420, 560), rng), camera_shake_kernel(9, rng))
    darktable_like_tiff(tmp_path / "in.tif", shaken)
    fields = {"blur": 11, "key": "d4" * 16}
    with running_worker() as worker, worker.client() as client:
        outputs = [tmp_path / "first.tif", tmp_path / "second.tif"]
        for output in outputs:
            final = wait(client, submit(client, tmp_path / "in.tif", output, **fields)["job"], 180)
            assert final["stage"] == "done", final["error"]
            cache = ResultCache(worker.cache_dir)
            cache.clean(on_exit=True)
            kept = cache.entry(fields["key"]).file("psf.npy")
            np.save(kept, np.full_like(np.load(kept), np.nan))  # the same size: no miss by it
    first, second = (tifffile.imread(output) for output in outputs)
    assert np.array_equal(first, second) and final["report"]["psf_seconds"] > 0
