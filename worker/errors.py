"""The one exception type that carries a message meant for the user."""


class InputError(ValueError):
    """Bad input that the user can fix: the message is one clear line, shown as is.

    Raised by image I/O, parameter checks and the engine's validation; the command line and the
    worker turn it into a one-line error instead of a traceback.
    """
