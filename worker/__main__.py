"""`python -m worker` is the `dt-deconvolve` command."""

import sys

from worker.cli import main

sys.exit(main())
