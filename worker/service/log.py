"""The worker's log: a rotating file in the state folder (and stderr), one line per record."""

import logging
import logging.handlers

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
        handlers.append(  # a name that is not UTF-8 logs escaped
            logging.handlers.RotatingFileHandler(
                path, maxBytes=1 << 20, backupCount=3, encoding="utf-8", errors="backslashreplace"
            )
        )
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
