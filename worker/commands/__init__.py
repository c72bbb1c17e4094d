"""The subcommands of `dt-deconvolve`, in the order `--help` lists them."""

from worker.commands import (
    cache,
    cancel,
    deblur,
    demo,
    key,
    ping,
    psf,
    shutdown,
    status,
    submit,
    version,
    worker,
)

COMMANDS = (deblur, psf, demo, worker, submit, status, cancel, ping, shutdown, cache, key, version)
