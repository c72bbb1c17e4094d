"""The messages between `dt-deconvolve`'s client and its worker: shapes, versions, validation.

Every message is one ZeroMQ frame holding a UTF-8 JSON object (never pickle: a message is data,
not code), at most `MAX_MESSAGE_BYTES` long. A request names its protocol version and operation,

    {"v": 1, "op": "submit", "input": "/abs/in.tif", "output": "/abs/out.tif", ...}

and every reply says whether it worked,

    {"v": 1, "ok": true, ...}                                  the operation's reply fields
    {"v": 1, "ok": false, "error": "unknown_job", "message": "no job 'abc' on this worker"}

`decode_request` checks every field (presence, type, range) and raises `ProtocolError` with a
one-line message naming the field, so the server can answer any bytes a client sends. A job's
fields and their checks are `JobSpec`'s (`worker.jobspec`); the stages a job reports are
`worker.stages.Stage`. The client and the server use it, and so do the job table (`jobs`:
`UNKNOWN_JOB`) and `dt-deconvolve submit` (`STOPPING`, `FROM_CACHE`, `WATCHER_FIELDS`).
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.errors import ProtocolError, RemoteError
from worker.jobspec import (
    FIELD_CHECKS,
    REQUIRED_FIELDS,
    Check,
    JobSpec,
    check_flag,
    check_key,
    check_path,
    check_string,
    matching,
    optional,
    type_name,
)
from worker.numbers import is_number, is_whole
from worker.stages import PUBLIC_STAGES, Stage

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024

# Error codes of failed replies.
BAD_MESSAGE = "bad_message"  # not JSON, not an object, too long, wrong field types
UNSUPPORTED_VERSION = "unsupported_version"
UNKNOWN_OPERATION = "unknown_operation"
UNKNOWN_JOB = "unknown_job"
BAD_INPUT = "bad_input"  # the request is well formed but names a missing file, a bad folder...
NOT_FINISHED = "not_finished"  # cancel of a job that already ended
CACHE_ERROR = "cache_error"
BUSY = "busy"  # a submit while the worker already holds its limit of waiting and running jobs
STOPPING = "stopping"  # a request that would start work, sent to a worker that is stopping
TAKEN = "taken"  # a job that must not replace a file names an output where one is already
INTERNAL = "internal"

FROM_CACHE = "from the cache"  # a done job's note when its result was a copy of a cached one

_JOB_ID = re.compile(r"[0-9a-f]{1,64}")
MAX_STATUS_WAIT = 5.0  # seconds a `status` may wait for its job to end (well under a request's)


_job_id = matching(_JOB_ID.fullmatch, "a job id (hexadecimal digits)")


def _wait(name: str, value: Any) -> float:
    """Seconds a `status` reply may be held for its job to end, 0 to `MAX_STATUS_WAIT`."""
    if not is_number(value):
        raise ProtocolError(f"field '{name}' must be a number of seconds, not {type_name(value)}")
    if not 0 <= value <= MAX_STATUS_WAIT:
        raise ProtocolError(f"field '{name}' must be from 0 to {MAX_STATUS_WAIT:g} s, not {value}")
    return float(value)


def _position(name: str, value: Any) -> int:
    if not is_whole(value):
        raise ProtocolError(f"field '{name}' must be an integer, not {type_name(value)}")
    if not 0 <= value <= 1_000_000:
        raise ProtocolError(f"field '{name}' must be from 0 to 1000000, not {value}")
    return value


@dataclass(frozen=True)
class Operation:
    """An operation: its required and optional request fields, each with its check."""

    required: Mapping[str, Check] = field(default_factory=dict)
    optional: Mapping[str, Check] = field(default_factory=dict)


def _watcher(name: str, value: Any) -> tuple[int, int]:
    """The process that follows a job to its end (`submit --wait`): `{"pid": P, "started": S}`,
    its pid and its start as `processes.process_start` reads it on the machine they share."""
    value = _object(name, value)
    if set(value) != set(WATCHER_FIELDS):
        raise ProtocolError(f"field '{name}' must hold {' and '.join(WATCHER_FIELDS)}, only")
    pid, started = (_count(f"{name}.{part}", value[part]) for part in WATCHER_FIELDS)
    return pid, started


WATCHER_FIELDS = ("pid", "started")
OPERATIONS: Mapping[str, Operation] = {
    "ping": Operation(),
    "submit": Operation(  # the fields of a JobSpec, and who follows the job
        required={name: FIELD_CHECKS[name] for name in REQUIRED_FIELDS},
        optional={
            **{n: c for n, c in FIELD_CHECKS.items() if n not in REQUIRED_FIELDS},
            "watcher": optional(_watcher),
        },
    ),
    "status": Operation(required={"job": _job_id}, optional={"wait": optional(_wait)}),
    "cancel": Operation(required={"job": _job_id}),
    "list": Operation(optional={"start": optional(_position)}),
    "cache_lookup": Operation(
        required={"key": check_key},
        optional={"output": optional(check_path), "replace": check_flag},
    ),
    "cache_stats": Operation(),
    "cache_clean": Operation(
        optional={"on_exit": check_flag, "keep_results": check_flag},
    ),
    "shutdown": Operation(),
}


@dataclass(frozen=True)
class Request:
    """A validated request: its operation and its fields (optional ones filled with defaults)."""

    op: str
    fields: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]


def _count(name: str, value: Any) -> int:
    if not is_whole(value):
        raise ProtocolError(f"field '{name}' must be a count, not {type_name(value)}")
    if value < 0:
        raise ProtocolError(f"field '{name}' must be a count, 0 or more, not {value}")
    return value


def _number(name: str, value: Any) -> float:
    if not is_number(value):
        raise ProtocolError(f"field '{name}' must be a number, not {type_name(value)}")
    return value


def _stage(name: str, value: Any) -> Stage:
    """A stage this side knows (a newer worker's new stage: update this side)."""
    if value not in PUBLIC_STAGES:
        raise ProtocolError(f"field '{name}' is no stage this side knows: {UPDATE_BOTH}")
    return Stage(value)


def _object(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"field '{name}' must be an object, not {type_name(value)}")
    return value


def _jobs(name: str, value: Any) -> list[Any]:
    """A list of jobs, each shaped as `_JOB` says."""
    if not isinstance(value, list):
        raise ProtocolError(f"field '{name}' must be a list, not {type_name(value)}")
    for job in value:
        _check_reply(_object(name, job), _JOB)
    return value


_JOB = Operation(  # a job as a reply shows it (`worker.service.jobs.Job.as_dict`)
    required={"job": _job_id, "stage": _stage, "fraction": _number},
    optional={
        "seconds_left": optional(_number),
        "error": optional(check_string),
        "taken": optional(check_flag),
        "note": optional(check_string),
        "report": optional(_object),
        "output": optional(check_string),
    },
)

REPLIES: Mapping[str, Operation] = {  # what a client reads of each operation's reply
    "ping": Operation(
        required={
            "version": check_string,
            "pid": _count,
            "endpoint": check_string,
            **{name: _count for name in ("running", "queued", "warm_executors", "job_slots")},
        },
        optional={"cache_dir": optional(check_string), "started": optional(_count)},
    ),
    "submit": _JOB,
    "status": _JOB,
    "cancel": _JOB,
    "list": Operation(required={"jobs": _jobs}, optional={"next": optional(_position)}),
}
MAX_ERROR_TEXT = 1000  # characters of a refusal's message (a reply must fit in a message)
UPDATE_BOTH = "update dt-deconvolve on both sides"

# else None; a job written over what is at its output unless its client says not to (`JobSpec`)
_DEFAULTS: Mapping[str, Any] = {"on_exit": False, "keep_results": False, "replace": JobSpec.replace}


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose every name is said once: where JSON lets the last of two win, a request
    that reads as a "ping" could be a "shutdown" (`{"op": "ping", "op": "shutdown"}`)."""
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise ProtocolError(f"the name '{name[:40]}' is given twice in one object")
        seen.add(name)
    return dict(pairs)


def _load(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            f"the {what} is {len(data)} bytes long, more than the limit of {MAX_MESSAGE_BYTES}"
        )
    try:
        message = json.loads(
            data.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_unique_keys
        )
    except UnicodeDecodeError:
        raise ProtocolError(f"the {what} is not UTF-8 text") from None
    except ProtocolError:  # (`_unique_keys`: JSON, but not a message)
        raise
    except (ValueError, RecursionError) as error:
        raise ProtocolError(f"the {what} is not JSON ({str(error)[:80]})") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"the {what} must be a JSON object, not {type_name(message)}")
    version = message.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:  # not true, not 1.0
        raise ProtocolError(
            f"this side speaks protocol version {PROTOCOL_VERSION}, the {what} has "
            f"{json.dumps(version)[:20]}: {UPDATE_BOTH}",
            UNSUPPORTED_VERSION,
        )
    return message


def decode_request(data: bytes) -> Request:
    """Parse and check a request, so that the server can answer any bytes a client sends.

    Parameters
    ----------
    data : bytes
        The request's frame, as received.

    Returns
    -------
    Request
        Its operation and every field of it (`OPERATIONS`), each checked; an optional field the
        request leaves out is filled with its default (`False` for ``on_exit`` and
        ``keep_results``, `True` for ``replace``, else None).

    Raises
    ------
    ProtocolError
        One line, for anything malformed: longer than `MAX_MESSAGE_BYTES`, not UTF-8 JSON (NaN
        and Infinity are not), not an object, an ``op`` that is not a string, a field missing,
        unknown or failing its check (code None: `BAD_MESSAGE`); no ``v``, or one other than
        the integer `PROTOCOL_VERSION` (`UNSUPPORTED_VERSION`); an ``op`` that names no
        operation (`UNKNOWN_OPERATION`).
    """
    message = _load(data, "request")
    op = message.get("op")
    if not isinstance(op, str):
        raise ProtocolError(f"field 'op' must be a string, not {type_name(op)}")
    operation = OPERATIONS.get(op)
    if operation is None:
        raise ProtocolError(
            f"unknown operation '{op[:40]}' (known: {', '.join(OPERATIONS)})", UNKNOWN_OPERATION
        )
    allowed = {"v", "op", *operation.required, *operation.optional}
    unknown = sorted(set(message) - allowed)
    if unknown:
        raise ProtocolError(f"operation '{op}' has no field '{unknown[0][:40]}'")
    fields: dict[str, Any] = {}
    for name, check in operation.required.items():
        if name not in message:
            raise ProtocolError(f"operation '{op}' needs the field '{name}'")
        fields[name] = check(name, message[name])
    for name, check in operation.optional.items():
        fields[name] = check(name, message.get(name, _DEFAULTS.get(name)))
    return Request(op, fields)


def encode_request(op: str, **fields: Any) -> bytes:
    """The bytes of a request; checked like the server will check it, so errors show early.

    Parameters
    ----------
    op : str
        The operation (a key of `OPERATIONS`).
    **fields : Any
        The request's fields, JSON-ready.

    Returns
    -------
    bytes
        One UTF-8 JSON object, compact, with ``v`` and ``op``.

    Raises
    ------
    ProtocolError
        When the request would be refused as malformed (`decode_request`), or is longer than
        `MAX_MESSAGE_BYTES`.
    ValueError
        For a NaN or infinite number in `fields`; `TypeError` for a value JSON cannot hold.
    """
    data = _dump({"v": PROTOCOL_VERSION, "op": op, **fields})
    decode_request(data)
    return data


def encoded_size(value: Any) -> int:
    """The bytes `value` takes in a message.

    Parameters
    ----------
    value : Any
        A JSON-ready value.

    Returns
    -------
    int
        The length of its compact JSON text (ASCII: every other character escaped), as
        `encode_reply` writes it.

    Raises
    ------
    ValueError
        For a NaN or infinite number; `TypeError` for a value JSON cannot hold.
    """
    return len(json.dumps(value, allow_nan=False, separators=(",", ":")))


_LONE_SURROGATE = re.compile("[\ud800-\udc7f\udd00-\udfff]")  # (U+DC80-U+DCFF: a name's bytes)


def _dump(message: Mapping[str, Any]) -> bytes:
    data = json.dumps(message, allow_nan=False, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return data


def encode_reply(**fields: Any) -> bytes:
    """A successful reply.

    Parameters
    ----------
    **fields : Any
        The reply's fields, JSON-ready.

    Returns
    -------
    bytes
        One UTF-8 JSON object, compact, with ``v`` and ``"ok": true``.

    Raises
    ------
    ProtocolError
        When it is longer than `MAX_MESSAGE_BYTES`.
    ValueError
        For a NaN or infinite number in `fields`; `TypeError` for a value JSON cannot hold.
    """
    return _dump({"v": PROTOCOL_VERSION, "ok": True, **fields})


def encode_error(code: str | None, message: str) -> bytes:
    """A failed reply: an error code and one line for the user.

    Parameters
    ----------
    code : str or None
        One of this module's error codes; None (or empty): `BAD_MESSAGE`.
    message : str
        What went wrong. Its runs of white space (line ends included) become one space, it is
        cut to `MAX_ERROR_TEXT` characters, so the reply always fits in a message, and a lone
        surrogate that stands for no byte of a name (a client's job id of U+D800, echoed) is
        written ``\\ud800``: JSON's ``\\ud800`` would name no character, which strict readers
        refuse.
        The stand-ins for a name's bytes that are not UTF-8 (U+DC80 to U+DCFF) are kept.

    Returns
    -------
    bytes
        One UTF-8 JSON object: ``v``, ``"ok": false``, ``error`` (the code) and ``message``.
    """
    code = code or BAD_MESSAGE
    line = _LONE_SURROGATE.sub(lambda found: f"\\u{ord(found[0]):04x}", " ".join(message.split()))
    line = line[:MAX_ERROR_TEXT]
    return _dump({"v": PROTOCOL_VERSION, "ok": False, "error": code, "message": line})


def decode_reply(data: bytes, op: str | None = None) -> dict[str, Any]:
    """The fields of a successful reply to operation `op`.

    Parameters
    ----------
    data : bytes
        The reply's frame, as received.
    op : str or None, optional
        The operation the reply answers: the fields a client reads of it are checked
        (`REPLIES`). None, or an operation without an entry there: none is.

    Returns
    -------
    dict
        The whole reply object, ``v`` and ``ok`` included; it may hold more fields than
        `REPLIES` names (a newer worker's).

    Raises
    ------
    RemoteError
        For a failed reply (``"ok": false`` with a string ``error``): its code and message;
        ``internal`` when the code is `INTERNAL`.
    ProtocolError
        For a malformed reply: longer than `MAX_MESSAGE_BYTES`, not UTF-8 JSON, not an object,
        of another protocol version (`UNSUPPORTED_VERSION`), without a boolean ``ok`` (or a
        failed one without a string ``error``), or without a field that `op`'s reply needs,
        or with one that fails its check.
    """
    reply = _load(data, "reply")
    ok = reply.get("ok")
    if ok is True:
        _check_reply(reply, REPLIES.get(op or "", Operation()))
        return reply
    if ok is not False:
        raise ProtocolError("the reply has no boolean 'ok' field")
    code = reply.get("error")
    if not isinstance(code, str):
        raise ProtocolError("the worker's failed reply has no error code")
    raise RemoteError(code, str(reply.get("message", "")), internal=code == INTERNAL)


def _check_reply(reply: dict[str, Any], shape: Operation) -> None:
    """Check the fields a client reads (`shape`); a reply may hold more (a newer worker's)."""
    for name, check in shape.required.items():
        if name not in reply:
            raise ProtocolError(f"the worker's reply has no field '{name}': {UPDATE_BOTH}")
        check(name, reply[name])
    for name, check in shape.optional.items():
        check(name, reply.get(name))
