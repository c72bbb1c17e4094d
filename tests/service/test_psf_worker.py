"""A worker job that estimates its PSF: the kernel is found, used, reported and cached."""

import time

import numpy as np
import tifffile
from service_support import running_worker, write_picture

from cache.store import RESULT, ResultCache


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
