"""Model weights on disk: the catalog of published checkpoints, where they are on this machine, reading
them, converting them to safetensors and downloading them.

Nothing here imports TerraTorch, so the tools that only deal with files start at once. Import from the
modules (``axs_lib.weights.catalog``, ``.discovery``, ``.reading``, ``.conversion``); the public names are
also exported by :mod:`axs_lib.models`.
"""
