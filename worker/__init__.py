"""dt-deconvolve: blind deconvolution for photographs (engine, command line, worker service)."""

__version__ = "0.3.46"
