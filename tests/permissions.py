"""File permissions in tests run as root (as CI runs them): an ordinary root obeys them."""

import ctypes
import os

IS_ROOT = os.geteuid() == 0
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 24, 1, 2, 3


def obey_permissions() -> None:
    """In the child, before exec: drop root's power to ignore file permissions (no-op otherwise).

    Removing CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER from the bounding set makes the
    exec'd process an ordinary root: a file with mode 000 cannot be opened, a 0555 folder not
    written, another user's file in a sticky folder (as /tmp) not replaced.
    """
    if not IS_ROOT:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")
