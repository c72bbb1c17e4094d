"""The deconvolution engine: pure numerics on arrays (no files, sockets or cache).

Arrays are float32, linear light, shaped (H, W, C) with C = 1 or 3. A PSF is a 2-D array in
convolution convention (`blurred = psf * sharp`), odd-sized, non-negative, summing to one.
"""

from worker.deconv.noise import estimate_noise
from worker.deconv.rl_tv import DeblurReport, DeblurSettings, Progress, deblur

__all__ = ["DeblurReport", "DeblurSettings", "Progress", "deblur", "estimate_noise"]
