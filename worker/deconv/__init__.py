"""The deconvolution engine: pure numerics on arrays (no files, sockets or cache).

Arrays are float32, linear light, shaped (H, W, C) with C = 1 or 3. A PSF is a 2-D array in
convolution convention (`blurred = psf * sharp`), odd-sized, non-negative, summing to one.
"""
