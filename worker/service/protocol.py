"""The messages between `dt-deconvolve`'s client and its worker: shapes, versions, validation.

Every message is one ZeroMQ frame holding a UTF-8 JSON object (never pickle: a message is data,
not code), at most `MAX_MESSAGE_BYTES` long. A request names its protocol version and operation,

    {"v": 1, "op": "submit", "input": "/abs/in.tif", "output": "/abs/out.tif", ...}

and every reply says whether it worked,

    {"v": 1, "ok": true, ...}                                  the operation's reply fields
    {"v": 1, "ok": false, "error": "unknown_job", "message": "no job 'abc' on this worker"}

`decode_request` checks every field (presence, type, range) and raises `ProtocolError` with a
one-line message naming the field, so the server can answer any bytes a client sends. This module
is shared by the client and the server and by nothing else.
"""

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.errors import InputError

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
INTERNAL = "internal"

# Job stages, in the order a job goes through them.
QUEUED, ESTIMATING, DEBLURRING, WRITING = "queued", "estimating", "deblurring", "writing"
DONE, FAILED, CANCELLED = "done", "failed", "cancelled"
RUNNING_STAGES = (ESTIMATING, DEBLURRING, WRITING)
FINAL_STAGES = (DONE, FAILED, CANCELLED)

_KEY = re.compile(r"[0-9a-f]{16,128}")
_JOB_ID = re.compile(r"[0-9a-f]{1,64}")
_SETTING_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_MAX_PATH = 4096


class ProtocolError(ValueError):
    """A message that breaks the protocol; `code` is the reply's error code."""

    def __init__(self, message: str, code: str = BAD_MESSAGE) -> None:
        super().__init__(message)
        self.code = code


# ---- field checks: each returns the value or raises ProtocolError naming the field ----------

Check = Callable[[str, Any], Any]


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"field '{name}' must be a string, not {_type_name(value)}")
    return value


def _path(name: str, value: Any) -> str:
    value = _string(name, value)
    if not value.startswith("/"):
        raise ProtocolError(f"field '{name}' must be an absolute path, not '{value[:80]}'")
    if len(value) > _MAX_PATH or "\0" in value:
        raise ProtocolError(f"field '{name}' is not a usable path")
    return value


def _matching(pattern: re.Pattern[str], what: str) -> Check:
    def check(name: str, value: Any) -> str:
        value = _string(name, value)
        if not pattern.fullmatch(value):
            raise ProtocolError(f"field '{name}' must be {what}, not '{value[:80]}'")
        return value

    return check


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"field '{name}' must be a boolean, not {_type_name(value)}")
    return value


def _odd_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"field '{name}' must be an integer, not {_type_name(value)}")
    if value < 3 or value % 2 == 0 or value > 1001:
        raise ProtocolError(f"field '{name}' must be an odd size from 3 to 1001, not {value}")
    return value


def _blur(name: str, value: Any) -> int | str:
    """A blur size: an odd size (`_odd_size`) or "auto" (the engine finds the extent)."""
    return value if value == "auto" else _odd_size(name, value)


def _settings(name: str, value: Any) -> dict[str, float | int | bool | None]:
    """Engine settings: a flat object of short lowercase names to numbers, booleans or null.

    Which names exist and which values make sense is the engine's business; the protocol only
    keeps the shape simple and finite.
    """
    if not isinstance(value, dict):
        raise ProtocolError(f"field '{name}' must be an object, not {_type_name(value)}")
    if len(value) > 32:
        raise ProtocolError(f"field '{name}' has more than 32 entries")
    for setting, number in value.items():
        if not _SETTING_NAME.fullmatch(setting):
            raise ProtocolError(f"field '{name}' has a badly named setting '{setting[:40]}'")
        if number is not None and not isinstance(number, bool | int | float):
            raise ProtocolError(
                f"setting '{setting}' must be a number, a boolean or null, not {_type_name(number)}"
            )
        if isinstance(number, float) and not math.isfinite(number):
            raise ProtocolError(f"setting '{setting}' must be finite")
    return dict(value)


def _optional(check: Check) -> Check:
    def optional(name: str, value: Any) -> Any:
        return None if value is None else check(name, value)

    return optional


_key = _matching(_KEY, "16 to 128 lowercase hexadecimal digits")
_job_id = _matching(_JOB_ID, "a job id (hexadecimal digits)")
_window = _matching(re.compile(r"auto|centre|center|\d{1,6},\d{1,6},\d{1,6},\d{1,6}"), "a window")


@dataclass(frozen=True)
class Operation:
    """An operation: its required and optional request fields, each with its check."""

    required: Mapping[str, Check] = field(default_factory=dict)
    optional: Mapping[str, Check] = field(default_factory=dict)
    summary: str = ""


OPERATIONS: Mapping[str, Operation] = {
    "ping": Operation(summary="is a worker there? its version, pid and load"),
    "submit": Operation(
        required={"input": _path, "output": _path},
        optional={
            "key": _optional(_key),
            "psf": _optional(_path),
            "blur": _optional(_blur),
            "window": _optional(_window),
            "settings": _settings,
        },
        summary="queue a job; the same key twice is one job",
    ),
    "status": Operation(required={"job": _job_id}, summary="a job's stage and progress"),
    "cancel": Operation(required={"job": _job_id}, summary="stop a job; leaves no file behind"),
    "list": Operation(summary="every job the worker remembers"),
    "cache_lookup": Operation(
        required={"key": _key},
        optional={"output": _optional(_path)},
        summary="is the result cached? copies it to output",
    ),
    "cache_stats": Operation(summary="entries, sizes and limits of the cache"),
    "cache_clean": Operation(
        optional={"on_exit": _boolean, "keep_results": _boolean},
        summary="remove results (on exit) or everything",
    ),
    "shutdown": Operation(summary="cancel the jobs and stop the worker"),
}


@dataclass(frozen=True)
class Request:
    """A validated request: its operation and its fields (optional ones filled with defaults)."""

    op: str
    fields: Mapping[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]


_DEFAULTS: Mapping[str, Any] = {"settings": {}, "on_exit": False, "keep_results": False}


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _load(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            f"the {what} is {len(data)} bytes long, more than the limit of {MAX_MESSAGE_BYTES}"
        )
    try:
        message = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise ProtocolError(f"the {what} is not UTF-8 text") from None
    except (ValueError, RecursionError) as error:
        raise ProtocolError(f"the {what} is not JSON ({str(error)[:80]})") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"the {what} must be a JSON object, not {_type_name(message)}")
    version = message.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"this side speaks protocol version {PROTOCOL_VERSION}, the {what} has "
            f"{json.dumps(version)[:20]}: update dt-deconvolve on both sides",
            UNSUPPORTED_VERSION,
        )
    return message


def decode_request(data: bytes) -> Request:
    """Parse and check a request; raises `ProtocolError` (one line) for anything malformed."""
    message = _load(data, "request")
    op = message.get("op")
    if not isinstance(op, str):
        raise ProtocolError(f"field 'op' must be a string, not {_type_name(op)}")
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
        fields[name] = check(name, message[name]) if name in message else _DEFAULTS.get(name)
    return Request(op, fields)


def encode_request(op: str, **fields: Any) -> bytes:
    """The bytes of a request; checked like the server will check it, so errors show early."""
    data = _dump({"v": PROTOCOL_VERSION, "op": op, **fields})
    decode_request(data)
    return data


def _dump(message: Mapping[str, Any]) -> bytes:
    data = json.dumps(message, allow_nan=False, separators=(",", ":")).encode("utf-8")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    return data


def encode_reply(**fields: Any) -> bytes:
    """A successful reply."""
    return _dump({"v": PROTOCOL_VERSION, "ok": True, **fields})


def encode_error(code: str, message: str) -> bytes:
    """A failed reply: an error code and one line for the user."""
    line = " ".join(message.split())[:1000]
    return _dump({"v": PROTOCOL_VERSION, "ok": False, "error": code, "message": line})


class RemoteError(InputError):
    """The worker answered with an error (shown to the user as one line); `code` is one of this
    module's error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def decode_reply(data: bytes) -> dict[str, Any]:
    """The fields of a successful reply; raises `RemoteError` for a failed one and
    `ProtocolError` for a malformed one."""
    reply = _load(data, "reply")
    ok = reply.get("ok")
    if ok is True:
        return reply
    if ok is False and isinstance(reply.get("error"), str):
        raise RemoteError(reply["error"], str(reply.get("message", "")))
    raise ProtocolError("the reply has no boolean 'ok' field")
