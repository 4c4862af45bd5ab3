"""Translate a Sentinel-1 GRD scene into a Sentinel-2 L2A image with TerraMind 1.0 Large.

A thin caller of ``python -m axs_lib.cli.scenes sar-to-optical`` (console script ``axs-scenes``), kept for the
command it has always been: the same arguments, see ``--help`` and docs/scenes.md.

    python examples/sar_to_optical.py INPUT_S1.tif OUTPUT_S2.tif --tile 224 --overlap 32 --timesteps 12
"""

import sys

from axs_lib.cli.scenes import main

if __name__ == "__main__":
    sys.exit(main(["sar-to-optical", *sys.argv[1:]]))
