"""The signals that stop a command or the worker cleanly, as an error would: what was being
written is removed and a followed job is cancelled (`worker.cli.stops`), the worker's jobs are
cancelled and its temporary files removed (`worker.service.server`). Ctrl-C's SIGINT is handled
beside them (Python turns it into `KeyboardInterrupt`)."""

import signal

STOPPING_SIGNALS = (
    signal.SIGTERM,  # a `kill`, a session ending
    signal.SIGHUP,  # its terminal closed
    signal.SIGQUIT,  # Ctrl-\ (whose default, a core dump, would leave temporary files)
)
