"""The worker's log: a rotating file in the state folder (and stderr), one line per record."""

import contextlib
import logging
import logging.handlers
import sys

from worker.errors import describe_os_error, one_line
from worker.paths import made_state_dir, worker_log_file

log = logging.getLogger("dt-deconvolve.worker")


class OneLineFormatter(logging.Formatter):
    """Each record's own text on one line (`errors.one_line`), so that a client's path holding a
    line break cannot forge a line of the log (a fake "ERROR ... Traceback" after a job's
    input); a traceback the record carries keeps its lines, after it."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The record's line, its text (`record.message`, set by `format`) made one line.

        Parameters
        ----------
        record : logging.LogRecord
            The record being formatted.

        Returns
        -------
        str
            The line as the format string lays it out.
        """
        record.message = one_line(record.message)
        return super().formatMessage(record)


class LogFile(logging.handlers.RotatingFileHandler):
    """The rotating log file (up to 1 MiB, three older ones beside it), whose records that
    cannot be written (a full disk, a rotation the folder refuses) go to stderr, each on its
    line with why: logging's own handler printed a traceback of a dozen lines for each, and
    dropped the record.

    Parameters
    ----------
    path : str
        The log file (`paths.worker_log_file`); a name that is not UTF-8 is written escaped.
    """

    def __init__(self, path: str) -> None:
        super().__init__(
            path, maxBytes=1 << 20, backupCount=3, encoding="utf-8", errors="backslashreplace"
        )

    def handleError(self, record: logging.LogRecord) -> None:
        """Write `record` to stderr, saying why the file did not take it.

        Parameters
        ----------
        record : logging.LogRecord
            The record that could not be written.
        """
        error = sys.exc_info()[1]
        why = describe_os_error(error) if isinstance(error, OSError) else one_line(str(error))
        try:
            line = self.format(record)
        except Exception:  # (the record itself cannot be formatted: a bug in its call)
            line = one_line(f"{record.levelname} {record.msg!r} {record.args!r}")
        with contextlib.suppress(Exception):  # (stderr closed: nowhere left to say it)
            sys.stderr.write(f"{line} (not in the log file: {why})\n")


def open_log(verbose: bool) -> None:
    """Log to a rotating file in the state folder (and to stderr with `verbose`). A log file
    that cannot be opened (a read-only state folder, a folder or a broken link in its place)
    does not keep the worker from starting: it logs to stderr, saying why.

    The file is `paths.worker_log_file`, up to 1 MiB, with three older ones beside it
    (``worker.log.1`` ...); a name that is not UTF-8 is written escaped.

    Parameters
    ----------
    verbose : bool
        Log to stderr too, and log every request and event (level DEBUG, else INFO).
    """
    path = worker_log_file()
    handlers: list[logging.Handler] = [logging.StreamHandler()] if verbose else []
    try:
        made_state_dir()
        handlers.append(LogFile(str(path)))  # (a name that is not UTF-8 logs escaped)
        problem = None
    except OSError as error:
        problem = describe_os_error(error)
        handlers[:] = [logging.StreamHandler()]
    for handler in handlers:
        handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    if problem is not None:
        log.warning("logging here, not to %s: %s", path, problem)
