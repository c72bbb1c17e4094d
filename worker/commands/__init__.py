"""The subcommands of `dt-deconvolve`, in the order `--help` lists them."""

from worker.commands import version

COMMANDS = (version,)
