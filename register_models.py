"""``python register_models.py`` from a checkout: the same as the installed ``axs-register-models``."""

import sys

from axs_lib.cli.register_models import main

if __name__ == "__main__":
    sys.exit(main())
