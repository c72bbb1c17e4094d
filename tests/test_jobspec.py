"""A job's one description: built from untrusted fields, checked once, and carried unchanged."""

import argparse

import pytest

from worker.cli.options import window_argument
from worker.deconv.settings import DeblurSettings
from worker.deconv.window import centre_window, window_from_text
from worker.errors import InputError, ProtocolError
from worker.jobspec import JobSpec
from worker.stages import PUBLIC_STAGES, Stage


def test_a_job_round_trips_through_its_fields() -> None:
    spec = JobSpec(
        "/p/in.tif",
        "/p/out.tif",
        key="ab" * 16,
        blur=15,
        window="centre",
        settings=DeblurSettings(priority=0.5, local=True),
    )
    assert JobSpec.from_fields(spec.as_fields()) == spec
    assert spec.estimating and not JobSpec("/i", "/o", psf="/k.npy").estimating
    assert set(spec.parameters()) == {"psf", "blur", "window", "settings"}


def test_one_job_said_two_ways_has_one_key() -> None:
    """The parameters hashed into the cache key (`parameters`) do not depend on how a job's
    window was said: until engine 0.3.23 `--window auto`, the default of `run`, and no window,
    that of `submit` and `key`, gave the same result two keys."""
    default = JobSpec("/i", "/o", blur=9)
    assert JobSpec("/i", "/o", blur=9, window="auto").parameters() == default.parameters()
    assert JobSpec("/i", "/o", blur=9, window="center").window == "centre"
    given = JobSpec("/i", "/o", psf="/k.npy", window="1,2,30,40")
    assert given.parameters() == JobSpec("/i", "/o", psf="/k.npy").parameters()
    assert JobSpec("/i", "/o", blur=9, window="1,2,30,40").window == "1,2,30,40"
    for said in ("01,2,030,40", "1,2,30,0040"):  # (until 0.3.23: a key each)
        assert JobSpec("/i", "/o", blur=9, window=said).window == "1,2,30,40"
    assert JobSpec("/i", "/o", blur=9, window="-0,-0,30,40").window == "0,0,30,40"
    with pytest.raises(ProtocolError, match="a window"):  # digits of other scripts are no number
        JobSpec.from_fields({"input": "/i", "output": "/o", "blur": 9, "window": "\u0664,1,2,3"})


SPELLINGS = {  # as typed or sent: the window they name
    "auto": None,
    " AUTO ": None,
    "Center": "centre",
    "centre ": "centre",
    "1,2,30,40": "1,2,30,40",
    " 01, 2 ,030,40": "1,2,30,40",
    "-0,-0,30,40": "0,0,30,40",
}
NOT_WINDOWS = ["", "1,2,30", "1,2,3,4,5", "1,2,3.5,4", "centre,1", "\u0664,1,2,3", "9999999,1,2,3"]


@pytest.mark.parametrize(("said", "window"), SPELLINGS.items())
def test_the_command_line_the_job_and_the_engine_read_a_window_alike(
    said: str, window: str | None
) -> None:
    """One reading of a window (`settings.window_spelling`): the command line, a job sent over
    the protocol and the engine each read it; until engine 0.3.56 each had its own, and the
    command line refused " 01, 2 ,030,40", which the engine read."""
    assert window_argument(said) == (window or "auto")
    fields = {"input": "/i", "output": "/o", "blur": 9, "window": said}
    assert JobSpec.from_fields(fields).window == window
    if window in (None, "centre"):
        expected = window and centre_window((480, 640), 9)
    else:
        expected = tuple(int(number) for number in window.split(","))
    assert window_from_text(said, (480, 640), 9) == expected


@pytest.mark.parametrize("said", NOT_WINDOWS)
def test_a_window_refused_at_one_layer_is_refused_at_each(said: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="the window must be"):
        window_argument(said)
    with pytest.raises(ProtocolError, match="must be a window"):
        JobSpec.from_fields({"input": "/i", "output": "/o", "blur": 9, "window": said})
    with pytest.raises(InputError, match="the window must be"):
        window_from_text(said, (480, 640), 9)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"input": "/i"}, "needs the field 'output'"),
        ({"input": "/i", "output": "/o", "blur": 9, "colour": 1}, "no field 'colour'"),
        ({"input": "i.tif", "output": "/o", "blur": 9}, "absolute path"),
        ({"input": "/i", "output": "/o"}, "say how to find the blur"),
        ({"input": "/i", "output": "/o", "blur": 8}, "odd size"),
        ({"input": "/i", "output": "/o", "blur": 9, "window": "1,2"}, "window"),
        ({"input": "/i", "output": "/o", "blur": 9, "settings": {"scale": 0}}, "scale"),
        ({"input": "/i", "output": "/o", "blur": 9, "settings": {"lam": float("inf")}}, "finite"),
        ({"input": "/i", "output": "/o", "blur": 9, "settings": {"lam": 1e308}}, "lambda must"),
        ({"input": "/i", "output": "/o", "blur": 9, "settings": {"lam": 5e-324}}, "lambda must"),
        # a boolean is no lambda: `False == 0` let it through until engine 0.3.19
        ({"input": "/i", "output": "/o", "blur": 9, "settings": {"lam": False}}, "lambda must"),
        ({"input": "/i", "output": "/o", "blur": 9, "settings": {"max_iterations": True}}, "cap"),
        ({"input": "/i", "output": "/o", "blur": 9, "settings": {"scale": True}}, "scale"),
        ({"input": "/i", "output": "/o", "blur": 9, "settings": {"varying": 3}}, "varying"),
        ({"input": "/i", "output": "/o", "blur": 9, "settings": {"tolerance": True}}, "a number"),
        ({"input": "/i", "output": "/o", "blur": "big"}, "must be auto or an odd size from 3"),
    ],
)
def test_bad_fields_are_refused_in_one_line(fields: dict, words: str) -> None:
    with pytest.raises(ProtocolError, match=words) as refused:
        JobSpec.from_fields(fields)
    assert isinstance(refused.value, InputError) and "\n" not in str(refused.value)


def test_a_job_s_blur_auto_is_read_in_any_letter_case() -> None:
    """As the command line reads it: until engine 0.3.56 "AUTO" was "not an integer"."""
    job = JobSpec.from_fields({"input": "/i", "output": "/o", "blur": " AUTO"})
    assert job.blur == "auto"


def test_local_mode_and_a_varying_blur_are_refused_together() -> None:
    """Local mode sharpens what one kernel explains; --varying gives each part its own: asked
    together (the command line, a worker's client), they ran each tile in local mode, a
    combination never measured, until engine 0.3.18."""
    fields = {"input": "/i", "output": "/o.tif", "blur": 9}
    with pytest.raises(InputError, match="--local and --varying do not go together"):
        JobSpec.from_fields({**fields, "settings": {"varying": True, "local": True}})
    for alone in ("varying", "local"):
        JobSpec.from_fields({**fields, "settings": {alone: True}})


def test_the_output_is_a_tiff_file_whoever_asks(tmp_path) -> None:
    # (The command line refused another name, the worker did not: a PSF.npy could be replaced.)
    picture = tmp_path / "in.tif"
    picture.write_bytes(b"")
    job = JobSpec.from_fields({"input": str(picture), "output": "/k.npy", "blur": 9})
    with pytest.raises(InputError, match=r"must be a \.tif or \.tiff file, not /k\.npy"):
        job.check_files()
    JobSpec(str(picture), str(tmp_path / "O.TIFF"), blur=9).check_files()


def test_a_null_setting_is_its_default() -> None:
    fields = {"input": "/i", "output": "/o.tif", "blur": 9}
    nulls = {"tolerance": None, "lam": None, "scale": None, "local": None}
    assert JobSpec.from_fields({**fields, "settings": nulls}).settings == DeblurSettings()


def test_the_stages_read_as_a_job_shows_them() -> None:
    assert [str(s) for s in PUBLIC_STAGES] == [
        "queued", "estimating", "deblurring", "writing", "done", "failed", "cancelled"
    ]  # fmt: skip
    assert Stage.READING.public(estimating=True) is Stage.ESTIMATING
    assert Stage.READING.public(estimating=False) is Stage.DEBLURRING
    assert Stage.CACHING.public(estimating=False) is Stage.WRITING
    assert Stage.CANCELLED.final and not Stage.WRITING.final
