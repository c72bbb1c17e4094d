"""A job's `status` reply fits in one message whatever its paths and messages hold (F10)."""

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from worker.errors import ProtocolError
from worker.jobspec import MAX_PATH, JobSpec, check_path
from worker.service import protocol
from worker.service.jobs import Job
from worker.stages import Stage

PATHS = st.binary(min_size=1, max_size=MAX_PATH - 1).map(
    lambda raw: "/" + os.fsdecode(raw.replace(b"\0", b"\1"))
)
TEXTS = st.text(max_size=3000)


@settings(max_examples=150, deadline=None)
@given(source=PATHS, target=PATHS, error=TEXTS, note=TEXTS)
def test_a_status_reply_always_fits(source: str, target: str, error: str, note: str) -> None:
    spec = JobSpec(check_path("input", source), check_path("output", target), blur=5, key="f" * 64)
    job = Job(id="0" * 12, spec=spec, note=note)
    job.report = {"iterations": 60, "psf_out": "/run/user/1000/dt-deconvolve/x/psf.npy"}
    job.end(Stage.FAILED, error)
    reply = protocol.encode_reply(**job.as_dict(), position=None, duplicate=False)
    assert len(reply) <= protocol.MAX_MESSAGE_BYTES


def test_a_path_longer_than_path_max_bytes_is_refused() -> None:
    for path in ("/" + "é" * MAX_PATH, "/\ud800"):
        try:
            check_path("input", path)
        except ProtocolError:
            continue
        raise AssertionError(f"accepted {path[:10]!r}")
