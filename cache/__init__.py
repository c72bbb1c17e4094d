"""The on-disk cache of estimated kernels and deblurred results (bytes and records, no maths)."""
