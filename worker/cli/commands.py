"""The subcommands of `dt-deconvolve`, in the order `--help` lists them."""

from worker.cli import (
    cache,
    cancel,
    deblur,
    demo,
    key,
    ping,
    psf,
    run,
    shutdown,
    status,
    submit,
    version,
    worker,
)

COMMANDS = (
    run,
    psf,
    deblur,
    demo,
    worker,
    submit,
    status,
    cancel,
    ping,
    shutdown,
    cache,
    key,
    version,
)
