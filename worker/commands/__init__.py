"""The subcommands of `dt-deconvolve`, in the order `--help` lists them."""

from worker.commands import cache, cancel, ping, shutdown, status, version, worker

COMMANDS = (worker, ping, status, cancel, shutdown, cache, version)
