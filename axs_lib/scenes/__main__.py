"""``python -m axs_lib.scenes``: see :mod:`axs_lib.scenes.commands`."""

import sys

from .commands import main

sys.exit(main())
