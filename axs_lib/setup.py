"""``python axs_lib/setup.py`` from a checkout: the same as the installed ``axs-setup`` (:mod:`axs_lib.cli.setup`)."""

import sys

if __name__ == "__main__":
    sys.path.pop(0)  # run as a script: this folder's modules must not shadow installed top-level ones
    from axs_lib.cli.setup import main

    sys.exit(main())
