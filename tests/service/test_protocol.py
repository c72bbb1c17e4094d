"""The client-worker protocol: every malformed message is refused with a clear one-line error."""

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.deconv.settings import DeblurSettings
from worker.errors import ProtocolError, RemoteError
from worker.service.protocol import (
    BAD_MESSAGE,
    MAX_MESSAGE_BYTES,
    MAX_STATUS_WAIT,
    OPERATIONS,
    UNKNOWN_OPERATION,
    UNSUPPORTED_VERSION,
    decode_reply,
    decode_request,
    encode_error,
    encode_reply,
    encode_request,
)


def raw(**message: object) -> bytes:
    return json.dumps({"v": 1, **message}).encode()


def test_a_valid_submit_round_trips_with_defaults() -> None:
    request = decode_request(encode_request("submit", input="/a/in.tif", output="/a/out.tif"))
    assert request.op == "submit"
    assert request["input"] == "/a/in.tif"
    assert request["settings"] == DeblurSettings()
    assert request["key"] is None
    assert request["watcher"] is None
    assert request["replace"] is True  # (an older client's job replaces, as it always did)
    followed = encode_request("submit", input="/i", output="/o", watcher={"pid": 7, "started": 9})
    assert decode_request(followed)["watcher"] == (7, 9)


def test_a_status_may_wait_for_its_job_to_end_up_to_the_limit() -> None:
    assert decode_request(encode_request("status", job="ab"))["wait"] is None
    assert decode_request(encode_request("status", job="ab", wait=0))["wait"] == 0.0
    held = encode_request("status", job="ab", wait=MAX_STATUS_WAIT)
    assert decode_request(held)["wait"] == MAX_STATUS_WAIT


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (b"\xff\xfe", BAD_MESSAGE, "UTF-8"),
        (b"{not json", BAD_MESSAGE, "not JSON"),
        (b"[1, 2]", BAD_MESSAGE, "JSON object, not a list"),
        (b'{"v": 1, "op": "ping", "x": NaN}', BAD_MESSAGE, "not JSON"),
        (json.dumps({"op": "ping"}).encode(), UNSUPPORTED_VERSION, "version"),
        (json.dumps({"v": 2, "op": "ping"}).encode(), UNSUPPORTED_VERSION, "update"),
        (raw(op=5), BAD_MESSAGE, "'op' must be a string, not an integer"),
        (raw(op="explode"), UNKNOWN_OPERATION, "unknown operation 'explode'"),
        (raw(op="ping", extra=1), BAD_MESSAGE, "no field 'extra'"),
        (raw(op="status"), BAD_MESSAGE, "needs the field 'job'"),
        (raw(op="status", job=12), BAD_MESSAGE, "'job' must be a string"),
        (raw(op="status", job="../etc"), BAD_MESSAGE, "job id"),
        (raw(op="status", job="ab", wait="1"), BAD_MESSAGE, "'wait' must be a number of seconds"),
        (raw(op="status", job="ab", wait=True), BAD_MESSAGE, "'wait' must be a number of seconds"),
        (raw(op="status", job="ab", wait=-0.1), BAD_MESSAGE, "from 0 to 5 s, not -0.1"),
        (raw(op="status", job="ab", wait=5.5), BAD_MESSAGE, "from 0 to 5 s, not 5.5"),
        (raw(op="submit", input="in.tif", output="/o.tif"), BAD_MESSAGE, "absolute path"),
        (raw(op="submit", input="/i", output="/o", blur=4), BAD_MESSAGE, "odd size"),
        (raw(op="submit", input="/i", output="/o", blur=True), BAD_MESSAGE, "integer"),
        (raw(op="submit", input="/i", output="/o", key="XYZ"), BAD_MESSAGE, "hexadecimal"),
        (raw(op="submit", input="/i", output="/o", settings=[]), BAD_MESSAGE, "an object"),
        (
            raw(op="submit", input="/i", output="/o", settings={"tolerance": "5"}),
            BAD_MESSAGE,
            "'tolerance' must be a number",
        ),
        (
            raw(op="submit", input="/i", output="/o", settings={"max_iterations": 10**40}),
            BAD_MESSAGE,
            "iteration cap",
        ),
        (
            raw(op="submit", input="/i", output="/o", settings={"sharpness": 1}),
            BAD_MESSAGE,
            "unknown engine setting 'sharpness'",
        ),
        (raw(op="submit", input="/i", output="/o", settings={"tolerance": -1}), BAD_MESSAGE, "0 %"),
        (raw(op="submit", input="/i", output="/o", watcher=5), BAD_MESSAGE, "'watcher' must be"),
        (
            raw(op="submit", input="/i", output="/o", watcher={"pid": 5}),
            BAD_MESSAGE,
            "'watcher' must hold pid and started",
        ),
        (
            raw(op="submit", input="/i", output="/o", watcher={"pid": -1, "started": 2}),
            BAD_MESSAGE,
            "'watcher.pid' must be a count",
        ),
        (raw(op="cache_clean", on_exit="yes"), BAD_MESSAGE, "boolean"),
        # (`replace: false` keeps a file at the output: only a JSON boolean says so)
        (raw(op="submit", input="/i", output="/o", blur=9, replace=None), BAD_MESSAGE, "null"),
        (
            raw(op="submit", input="/i", output="/o", blur=9, replace="false"),
            BAD_MESSAGE,
            "boolean",
        ),
        (raw(op="submit", input="/i", output="/o", blur=9, replace=0), BAD_MESSAGE, "an integer"),
        (raw(op="cache_lookup", key="ab" * 16, replace=1), BAD_MESSAGE, "boolean"),
        (b" " * (MAX_MESSAGE_BYTES + 1), BAD_MESSAGE, "limit"),
    ],
)
def test_malformed_requests_are_refused_with_a_clear_error(
    data: bytes, code: str, words: str
) -> None:
    with pytest.raises(ProtocolError, match=words) as caught:
        decode_request(data)
    assert (caught.value.code or BAD_MESSAGE) == code
    assert "\n" not in str(caught.value)


def test_the_client_checks_its_own_requests() -> None:
    with pytest.raises(ProtocolError, match="blur"):
        encode_request("submit", input="/i", output="/o", blur=2)


def test_replies_round_trip_and_errors_raise() -> None:
    assert decode_reply(encode_reply(job="ab12"))["job"] == "ab12"
    with pytest.raises(RemoteError, match="no job") as caught:
        decode_reply(encode_error("unknown_job", "no job\n'x'"))
    assert caught.value.code == "unknown_job"
    with pytest.raises(ProtocolError, match="'ok'"):
        decode_reply(raw(result=1))
    with pytest.raises(ProtocolError, match="failed reply has no error code"):  # (0.3.22: "'ok'")
        decode_reply(raw(ok=False, error=5))


PING = {"version": "1", "pid": 7, "endpoint": "ipc:///w.sock", "running": 0, "queued": 0,
        "warm_executors": 1, "job_slots": 1}  # fmt: skip
JOB = {"job": "ab12", "stage": "queued", "fraction": 0.0}


@pytest.mark.parametrize(
    ("op", "fields", "words"),
    [
        ("ping", {}, "no field 'version'"),
        ("ping", {**PING, "running": "many"}, "'running' must be a count"),
        ("submit", {**JOB, "job": "ab\nDONE /etc/passwd"}, "must be a job id"),
        ("status", {**JOB, "stage": "frobnicating"}, "no stage this side knows"),
        ("status", {"job": "ab12"}, "no field 'stage'"),
        ("status", {**JOB, "fraction": "half"}, "'fraction' must be a number"),
        ("status", {**JOB, "report": "text"}, "'report' must be an object"),
        ("list", {"jobs": [{"job": "ab12"}]}, "no field 'stage'"),
        ("list", {"jobs": {}}, "'jobs' must be a list"),
    ],
)
def test_the_client_checks_the_replies_it_reads(op: str, fields: dict, words: str) -> None:
    """A reply whose fields the client reads is checked as a request is: a worker of another
    version, or a hostile one, gives a one-line error, not an internal error (KeyError), and
    never a job id that breaks the lines the plug-in reads."""
    assert decode_reply(encode_reply(**PING, **JOB, jobs=[JOB]), op)
    with pytest.raises(ProtocolError, match=words):
        decode_reply(encode_reply(**fields), op)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    op=st.sampled_from([*OPERATIONS, "nope"]),
    fields=st.dictionaries(
        st.sampled_from(
            ["input", "output", "key", "job", "blur", "settings", "window", "on_exit", "zz"]
        ),
        json_values,
        max_size=5,
    ),
)
def test_any_json_request_is_accepted_or_refused_cleanly(op: str, fields: dict) -> None:
    data = json.dumps({"v": 1, "op": op, **fields}).encode()
    try:
        request = decode_request(data)
    except ProtocolError as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert request.op == op
        assert set(OPERATIONS[op].required) <= set(request.fields)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_accepted_or_refused_cleanly(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_request(data)


def test_an_error_echoing_a_lone_surrogate_stays_strict_json() -> None:
    """A job id holding U+D800, echoed in the error, was JSON's `\\ud800`, which names no
    character (strict readers refuse it); it is written as text now. The stand-ins for a name's
    bytes that are not UTF-8 (U+DC80-U+DCFF) are kept for the client to show as `\\xNN`."""
    data = encode_error("unknown_job", "no job \ud800 in /p/caf\udce9.tif")
    assert b"\\\\ud800" in data and b"\\udce9" in data
    with pytest.raises(RemoteError) as caught:
        decode_reply(data)
    assert str(caught.value) == "no job \\ud800 in /p/caf\udce9.tif"
