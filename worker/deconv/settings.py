"""What the user may choose for a deblurring run, checked in one place.

Kept apart from the numerics so that the command line can build and check settings without
loading the engine (numba, FFTW): `dt-deconvolve key` or `submit` start in a fraction of a second.
"""

import re
from dataclasses import dataclass

from worker.errors import InputError
from worker.numbers import is_finite_number, is_whole

MIN_PRIORITY, MAX_PRIORITY = -1.0, 1.0  # favour denoising ... favour deblurring
MAX_ITERATIONS = 10_000  # a cap the stopping rules never come near; larger is surely a slip
MIN_LAMBDA, MAX_LAMBDA = (
    1e-12,
    100.0,
)  # an expert lambda (0: no smoothing); beyond, the maths overflows


@dataclass(frozen=True)
class DeblurSettings:
    """What the user may choose. Defaults suit most photographs.

    tolerance: how much structure may come back into the residual (percent of what the blur left
        at the start) before the run stops; smaller stops earlier (softer, cleaner), larger goes
        on (sharper, riskier). See `stopping`.
    priority: -1 favours denoising (more regularisation), 0 balances, +1 favours deblurring.
    lam: expert override of the TV weight lambda (None: derived from the noise and priority).
    max_iterations: iteration cap (a safety net; the other rules usually stop earlier).
    scale: 0 < scale <= 1; below 1 a preview: image and PSF are downsized together.
    clip_level: the value at which the sensor clipped (1.0 for integer files); None: detect a
        clipped plateau from the data, if any.
    local: local mode: keep the deblurred picture only where the PSF explains the blur, the
        original elsewhere, blended smoothly (see `worker.deconv.local`).
    varying: the blur varies across the frame (camera rotation): estimate a kernel per tile of a
        grid and blend the tiles deblurred with them (see `worker.deconv.varying`); only when the
        blur is estimated.
    """

    tolerance: float = 5.0
    priority: float = 0.0
    lam: float | None = None
    max_iterations: int = 60
    scale: float = 1.0
    clip_level: float | None = None
    local: bool = False
    varying: bool = False

    def validate(self) -> None:
        """Raise `InputError` (one line) when a setting is out of range."""
        checks = [
            (
                is_finite_number(self.tolerance) and self.tolerance > 0,
                "the tolerance must be a number above 0 %",
            ),
            (
                is_finite_number(self.priority) and MIN_PRIORITY <= self.priority <= MAX_PRIORITY,
                f"priority must be a number in [{MIN_PRIORITY:g}, {MAX_PRIORITY:g}]",
            ),
            (
                self.lam is None
                or (
                    is_finite_number(self.lam)
                    and (self.lam == 0 or MIN_LAMBDA <= self.lam <= MAX_LAMBDA)
                ),
                f"lambda must be 0 or a number from {MIN_LAMBDA:g} to {MAX_LAMBDA:g}",
            ),
            (
                is_whole(self.max_iterations) and 1 <= self.max_iterations <= MAX_ITERATIONS,
                f"the iteration cap must be a whole number from 1 to {MAX_ITERATIONS}",
            ),
            (
                is_finite_number(self.scale) and 0 < self.scale <= 1,
                "scale must be a number in (0, 1]",
            ),
            (
                self.clip_level is None
                or (is_finite_number(self.clip_level) and self.clip_level > 0),
                "the clip level must be a number above 0",
            ),
            (isinstance(self.local, bool), "local must be true or false"),
            (isinstance(self.varying, bool), "varying must be true or false"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)


AUTO = "auto"  # the blur size that asks the engine to find the blur's extent itself
MIN_BLUR, MAX_BLUR = 3, 1001  # the blur sizes (odd, px) a job may ask for
AUTO_BLUR = 45  # the largest blur `--blur auto` looks for, in pixels
CENTRE = "centre"  # the window in the picture's middle (also spelled "center")
WINDOW_NUMBER = re.compile(r"-?[0-9]{1,6}")  # one of a window's X,Y,W,H (outside: said later)


def is_blur_size(value: object) -> bool:
    """Whether `value` is a blur size a job may ask for.

    Parameters
    ----------
    value : object
        Anything, as read from a job or typed.

    Returns
    -------
    bool
        True for an odd whole number (`int`, not `bool`) from `MIN_BLUR` to `MAX_BLUR`.
    """
    return is_whole(value) and MIN_BLUR <= value <= MAX_BLUR and value % 2 == 1


def window_spelling(text: str) -> str:
    """The one spelling of a window to learn the blur in, so that one job has one cache key.

    Parameters
    ----------
    text : str
        As a user or a client wrote it: "auto", "centre" (or "center") or "X,Y,W,H", four whole
        numbers in pixels. Letter case and spaces around the words and numbers do not matter.

    Returns
    -------
    str
        `AUTO`, `CENTRE` or "X,Y,W,H" with its numbers written without leading zeros or a sign
        on 0 (" 010, -0,64,64" is "10,0,64,64"). A rectangle is not checked against the
        picture here (`window.check_window` does that).

    Raises
    ------
    InputError
        For anything else.
    """
    parts = [part.strip() for part in str(text).lower().split(",")]
    if parts in ([AUTO], [CENTRE], ["center"]):
        return CENTRE if parts[0] == "center" else parts[0]
    if len(parts) == 4 and all(WINDOW_NUMBER.fullmatch(part) for part in parts):
        return ",".join(str(int(part)) for part in parts)
    raise InputError(
        f"the window must be auto, centre or X,Y,WIDTH,HEIGHT in pixels, not {str(text)[:80]!r}"
    )


def blur_from_text(text: str) -> int | None:
    """The blur size a user typed.

    Parameters
    ----------
    text : str
        What the user typed: an odd number of pixels from `MIN_BLUR` to `MAX_BLUR`, or "auto"
        (case and surrounding spaces do not matter).

    Returns
    -------
    int or None
        The size; None for "auto": find it, up to `AUTO_BLUR`.

    Raises
    ------
    InputError
        For anything else.
    """
    word = str(text).strip().lower()
    if word == AUTO:
        return None
    try:
        size = int(word)
    except ValueError:
        size = 0
    if not is_blur_size(size):
        raise InputError(
            f"the blur size must be auto or an odd number of pixels from {MIN_BLUR} to "
            f"{MAX_BLUR}, not {str(text)[:40]}"
        )
    return size
