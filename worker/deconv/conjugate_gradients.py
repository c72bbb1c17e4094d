"""The conjugate gradients of Hestenes and Stiefel, for a symmetric positive definite operator."""

from collections.abc import Callable

import numpy as np


def conjugate_gradients(
    operator: Callable[[np.ndarray], np.ndarray],
    rhs: np.ndarray,
    start: np.ndarray,
    iterations: int = 20,
    tolerance: float = 1e-5,
) -> np.ndarray:
    """Solve ``operator(x) = rhs`` for a symmetric positive definite operator (Hestenes-Stiefel).

    The conjugate gradients of Hestenes and Stiefel [1]_.

    Parameters
    ----------
    operator : callable
        ``x -> A x``, from and to arrays of `rhs`' shape; ``A`` symmetric positive definite.
    rhs : ndarray
        The right-hand side.
    start : ndarray
        The first guess, `rhs`' shape; it is left unchanged.
    iterations : int, optional
        The most steps taken.
    tolerance : float, optional
        The steps stop once the residual's norm is this or less (absolute, not relative to `rhs`).

    Returns
    -------
    ndarray
        ``x`` after the last step: a new array of `start`'s shape and dtype.

    References
    ----------
    .. [1] M. R. Hestenes and E. Stiefel, "Methods of conjugate gradients for solving linear
           systems", Journal of Research of the National Bureau of Standards 49, 1952,
           doi:10.6028/jres.049.044.
    """
    x = start.copy()
    residual = rhs - operator(x)
    direction = residual.copy()
    norm = float(np.vdot(residual, residual))
    for _ in range(iterations):
        if norm <= tolerance**2:
            break
        image = operator(direction)
        step = norm / float(np.vdot(direction, image))
        x += step * direction
        residual -= step * image
        new_norm = float(np.vdot(residual, residual))
        direction = residual + (new_norm / norm) * direction
        norm = new_norm
    return x
