"""The subcommands of `dt-deconvolve`, in the order `--help` lists them."""

from worker.commands import cache, cancel, ping, psf, shutdown, status, version, worker

COMMANDS = (psf, worker, ping, status, cancel, shutdown, cache, version)
