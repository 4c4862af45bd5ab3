"""TerraTorch's own command line with this library's ``axs_*`` models registered.

    python -m axs_lib.cli.terratorch fit --config configs/prithvi_600_lora_segmentation.yaml
    axs-terratorch predict --config X.yaml --ckpt_path run.ckpt --predict_output_dir out/

Every subcommand and option of ``terratorch`` works the same (``fit``, ``validate``, ``test``, ``predict``,
``--print_config``...). Registering first replaces the hand-made ``custom_modules/`` folder that TerraTorch
would otherwise need to see the ``axs_*`` names. Processes started by ``strategy: ddp`` run this module
again, so each rank registers the names too.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """Run TerraTorch's CLI on ``argv`` (default: the command line) after registering the ``axs_*`` models."""
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    import axs_lib.models  # noqa: F401  (registers the axs_* names in TerraTorch's registries)
    from terratorch.__main__ import main as terratorch_main

    terratorch_main()


if __name__ == "__main__":
    main()
