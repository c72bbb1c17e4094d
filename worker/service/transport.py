"""Where the worker listens and who may talk to it: endpoints and ZeroMQ CURVE keys.

Shared by the client and the server (with `protocol.py`). The default endpoint is an `ipc://`
socket in the user's private (0700) runtime folder, so only the user reaches it. A `tcp://` endpoint
listens on the loopback interface only, unless CURVE keys are set up: then every connection is
encrypted and only clients whose public key is in the server's `authorized/` folder get in, so the
worker may listen on any address and serve other machines.

Key files (made by `dt-deconvolve worker --generate-keys`), in the CURVE folder:
    server.key, server.key_secret      the worker's key pair
    client.key, client.key_secret      a client's key pair (copy them and server.key to a client)
    authorized/*.key                   public keys of the clients let in
"""

import contextlib
import errno
import ipaddress
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from worker.errors import InputError
from worker.paths import runtime_dir

SOCKET_NAME = "worker.sock"
IPC_PATH_LIMIT = 107  # bytes in a Unix socket address
_TCP = re.compile(r"tcp://(?P<host>\[[0-9A-Fa-f:.]+\]|[^\[\]:/]+):(?P<port>[0-9]{1,5})")


def default_endpoint() -> str:
    """The worker's usual address: an ipc socket in the user's private runtime folder.

    Returns
    -------
    str
        ``ipc://<runtime folder>/worker.sock`` (`SOCKET_NAME`); the runtime folder is made now
        if missing (`worker.paths.runtime_dir`).

    Raises
    ------
    OSError
        When the runtime folder cannot be made private.
    """
    return f"ipc://{runtime_dir() / SOCKET_NAME}"


def ipc_path(endpoint: str) -> Path | None:
    """The socket file of an `ipc://PATH` endpoint.

    Parameters
    ----------
    endpoint : str
        A ZeroMQ endpoint, not checked.

    Returns
    -------
    Path or None
        PATH, as written (maybe relative); None when `endpoint` does not start with
        ``ipc://`` or PATH is empty.
    """
    path = endpoint.removeprefix("ipc://")
    return Path(path) if endpoint.startswith("ipc://") and path else None


def tcp_host(endpoint: str) -> str | None:
    """The host part of a well-formed `tcp://HOST:PORT` endpoint.

    Parameters
    ----------
    endpoint : str
        A ZeroMQ endpoint, not checked.

    Returns
    -------
    str or None
        HOST: a name, an address, or an IPv6 address without its brackets (``[::1]`` gives
        ``::1``). None unless the whole of `endpoint` is ``tcp://HOST:PORT`` with a port from
        1 to 65535.
    """
    match = _TCP.fullmatch(endpoint)
    return match["host"].strip("[]") if match and 1 <= int(match["port"]) <= 65535 else None


def use_ipv6(socket: zmq.Socket, endpoint: str) -> None:
    """Let `socket` reach an IPv6 address (`tcp://[::1]:5555`); ZeroMQ speaks IPv4 only unless
    told.

    Parameters
    ----------
    socket : zmq.Socket
        The socket, before it binds or connects; its ``ipv6`` option is set when the host of
        `endpoint` holds a colon, and left as it is otherwise.
    endpoint : str
        Where it will bind or connect.
    """
    host = tcp_host(endpoint)
    if host is not None and ":" in host:
        socket.ipv6 = True


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine's loopback: reached by local users only.

    Parameters
    ----------
    host : str
        A name, an address or ``*`` (`tcp_host`'s answer).

    Returns
    -------
    bool
        True for ``localhost`` and for a loopback address (127.0.0.0/8, ``::1``); False for
        any other name (none is looked up), an interface or ``*``.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, an interface or "*"
        return False


def check_endpoint(endpoint: str, curve: bool = False) -> None:
    """Raise `InputError` unless the worker may listen on `endpoint`.

    Parameters
    ----------
    endpoint : str
        The endpoint to check. Nothing is bound, and no folder is looked at.
    curve : bool, optional
        Whether CURVE is on for it (the worker has its keys): a tcp endpoint may then listen
        beyond the loopback interface. The client, and the worker before it has read its keys,
        pass True, to check the shape alone.

    Raises
    ------
    InputError
        When `endpoint` is not UTF-8 (ZeroMQ's addresses are text: a folder's name that is not
        can hold no socket); is neither ``ipc:///PATH`` nor a well-formed ``tcp://HOST:PORT``
        (`tcp_host`); its PATH is relative, ends in ``/`` or is longer than `IPC_PATH_LIMIT`
        bytes; or, without `curve`, its HOST is not a loopback address (`is_loopback`).
    """
    try:
        endpoint.encode()
    except UnicodeEncodeError:
        raise InputError(
            f"the address {endpoint[:200]} is not UTF-8, as ZeroMQ's must be: give another "
            "(--endpoint), or a runtime folder whose name is (XDG_RUNTIME_DIR, else XDG_CACHE_HOME)"
        ) from None
    path = ipc_path(endpoint)
    host = tcp_host(endpoint)
    if path is None and host is None:
        raise InputError(
            f"unsupported endpoint '{endpoint[:200]}': use ipc:///PATH or tcp://HOST:PORT (a port "
            "from 1 to 65535, an IPv6 address in brackets: tcp://[::1]:5555)"
        )
    if path is not None and not path.is_absolute():  # else it depends on the folder each runs in
        raise InputError(f"the socket path of {endpoint[:200]} must be absolute: ipc:///PATH")
    if path is not None and (endpoint.endswith("/") or not path.name):
        raise InputError(f"the socket path of {endpoint[:200]} names a folder, not a file")
    if path is not None and len(str(path).encode()) > IPC_PATH_LIMIT:
        raise InputError(f"the socket path {path} is too long for a Unix socket")
    if host is not None and not curve and not is_loopback(host):
        raise InputError(
            f"{endpoint} is reachable from other machines: listen on 127.0.0.1, or set up CURVE "
            "keys first (dt-deconvolve worker --generate-keys)"
        )


def private_folder(folder: Path) -> None:
    """Make `folder` (the ipc socket's) if missing, mode 0700 whatever the umask; refuse one that
    another user owns or may write in (they could replace the socket with their own).

    Parameters
    ----------
    folder : Path
        The folder, made with its parents. One that exists keeps its mode.

    Raises
    ------
    InputError
        When it cannot be made, is not a folder (a link to one is not either), is another
        user's, or its group or others may write in it.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = folder.lstat()
    except OSError as error:
        raise InputError(f"cannot make the socket's folder {folder}: {error.strerror}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise InputError(f"the socket's folder {folder} is not a folder of yours")
    if info.st_mode & 0o022:
        raise InputError(
            f"other users may write in the socket's folder {folder}: choose a private folder "
            "(mode 0700) for the endpoint"
        )


def lock_file(path: Path) -> TextIO:
    """The lock file `path`, made if missing (mode 0600), opened for reading and writing.

    It is opened without following a link or waiting, and checked open: a link (dangling, or to
    a file it would truncate), a FIFO (whose opening would wait for ever) or a folder at its
    place is refused.

    Parameters
    ----------
    path : Path
        The lock file, in a folder `private_folder` accepted.

    Returns
    -------
    TextIO
        The open file, at its start; the caller closes it.

    Raises
    ------
    InputError
        Naming `path`: it cannot be opened or made, or is not a regular file.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as error:
        why = "a link" if error.errno == errno.ELOOP else error.strerror
        raise InputError(f"cannot use the lock file {path}: {why}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"cannot use the lock file {path}: not a regular file; remove it")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "r+")


@contextlib.contextmanager
def private_files() -> Iterator[None]:
    """Files (the socket) made in this block are the user's alone (umask 077).

    The umask is the process's, so files that other threads make meanwhile get it too.

    Yields
    ------
    None
        Once, for the block; the previous umask comes back when it ends, however it ends.
    """
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def _load_certificate(path: Path) -> tuple[bytes, bytes | None]:
    """The public key in `path`, and its secret one if it holds it; `InputError` when the
    file cannot be read or holds no public key."""
    _check_regular(path)
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the CURVE key {path}: {error}") from None


def _check_regular(path: Path) -> None:
    """`InputError` unless the key file `path` is a regular file (a named pipe in its place
    would keep its reader waiting for ever)."""
    try:
        regular = stat.S_ISREG(path.stat().st_mode)
    except OSError as error:
        raise InputError(f"cannot read the CURVE key {path}: {error.strerror}") from None
    if not regular:
        raise InputError(f"cannot read the CURVE key {path}: it is not a file")


def _load_pair(folder: Path, name: str) -> tuple[bytes, bytes] | None:
    secret = folder / f"{name}.key_secret"
    if not secret.exists():
        return None
    public, private = _load_certificate(secret)
    if private is None:
        raise InputError(f"{secret} holds no secret key")
    return public, private


def server_curve(folder: Path) -> tuple[bytes, bytes] | None:
    """The worker's CURVE key pair when `folder` has one (CURVE is then on), else None.

    Parameters
    ----------
    folder : Path
        The CURVE folder (`paths.curve_dir`, or `--curve-dir`).

    Returns
    -------
    tuple of bytes or None
        ``(public, secret)``, Z85-encoded, read from ``server.key_secret``; None when that file
        is not there.

    Raises
    ------
    InputError
        When ``server.key_secret`` cannot be read or holds no secret key.
    """
    return _load_pair(folder, "server")


def generate_keys(folder: Path) -> list[Path]:
    """Make a server and a client key pair in `folder` and authorise the client. Existing keys
    are kept.

    Parameters
    ----------
    folder : Path
        The CURVE folder; made (with its parents) if missing, and its mode set to 0700.

    Returns
    -------
    list of Path
        The files made: ``NAME.key`` and ``NAME.key_secret`` of each pair that was missing (no
        ``NAME.key_secret``), and ``authorized/client.key`` when it was missing.

    Raises
    ------
    OSError
        When the folder or a file cannot be made or written.
    """
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    made = []
    for name in ("server", "client"):
        if not (folder / f"{name}.key_secret").exists():
            public, secret = zmq.auth.create_certificates(folder, name)
            made += [Path(public), Path(secret)]
    authorized = folder / "authorized"
    authorized.mkdir(exist_ok=True, mode=0o700)
    if not (authorized / "client.key").exists():
        shutil.copyfile(folder / "client.key", authorized / "client.key")
        made.append(authorized / "client.key")
    return made


def secure_server(
    context: zmq.Context, socket: zmq.Socket, endpoint: str, folder: Path
) -> ThreadAuthenticator | None:
    """Turn CURVE on for a tcp endpoint when `folder` holds the worker's keys, and check the
    endpoint (`check_endpoint`) with CURVE on or off accordingly.

    Parameters
    ----------
    context : zmq.Context
        The context of `socket`, in which the authenticator runs.
    socket : zmq.Socket
        The worker's socket, before it binds; made a CURVE server.
    endpoint : str
        Where it will listen. An ipc endpoint never gets CURVE.
    folder : Path
        The CURVE folder: ``server.key_secret`` turns CURVE on, and the public keys in
        ``authorized/`` are the clients let in.

    Returns
    -------
    ThreadAuthenticator or None
        The running authenticator (stop it when done); None when CURVE is off.

    Raises
    ------
    InputError
        When the endpoint may not be listened on (`check_endpoint`: a tcp endpoint beyond the
        loopback interface needs the keys), or the worker's key cannot be read (not a file,
        damaged), or a client's in ``authorized/`` is not a file (pyzmq logs and skips a
        damaged one).
    """
    keys = server_curve(folder) if tcp_host(endpoint) is not None else None
    check_endpoint(endpoint, curve=keys is not None)
    if keys is None:
        return None
    authorized = folder / "authorized"
    for key in authorized.glob("*.key"):  # (as pyzmq finds them)
        _check_regular(key)
    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve(domain="*", location=str(authorized))  # (damaged: logged)
    socket.curve_publickey, socket.curve_secretkey = keys
    socket.curve_server = True
    return authenticator


CLIENT_KEYS = ("client.key_secret", "server.key")  # a client's pair, the worker's public key


def missing_client_keys(folder: Path) -> list[str]:
    """Which of the files a client needs for CURVE (`secure_client`, `CLIENT_KEYS`) are not in
    `folder`, the client's CURVE folder.

    Parameters
    ----------
    folder : Path
        Where the client looks for its keys: `paths.curve_dir`, or the one `--curve-dir` names.

    Returns
    -------
    list of str
        The names not there (whether those there hold keys is `secure_client`'s check).
    """
    return [name for name in CLIENT_KEYS if not (folder / name).exists()]


def secure_client(socket: zmq.Socket, endpoint: str, folder: Path) -> None:
    """Use CURVE on a tcp connection when `folder` holds a client key pair and the worker's
    public key (and IPv6 for an IPv6 address).

    Parameters
    ----------
    socket : zmq.Socket
        The client's socket, before it connects.
    endpoint : str
        Where it will connect. Nothing is done for an ipc endpoint.
    folder : Path
        The CURVE folder: ``client.key_secret`` (this client's pair) and ``server.key`` (the
        worker's public key). Without either, the connection goes without CURVE.

    Raises
    ------
    InputError
        When ``client.key_secret`` cannot be read or holds no secret key, or ``server.key``
        cannot be read or holds no public key.
    """
    if tcp_host(endpoint) is None:
        return
    use_ipv6(socket, endpoint)
    pair = _load_pair(folder, "client")  # (`CLIENT_KEYS`)
    server_key = folder / "server.key"
    if pair is None or not server_key.exists():
        return
    server_public, _ = _load_certificate(server_key)
    socket.curve_publickey, socket.curve_secretkey = pair
    socket.curve_serverkey = server_public
