"""The command-line tools, one module each, sharing one error convention (:mod:`.errors`).

- ``axs-setup`` (:mod:`.setup`; ``python axs_lib/setup.py`` from a checkout): download and convert the weights;
- ``axs-register-models`` (:mod:`.register_models`; ``python register_models.py``): what is found and registered;
- ``axs-scenes`` (:mod:`.scenes`; ``python -m axs_lib.cli.scenes``): whole scenes, evaluation and the demo
  (:mod:`.demo`, on :mod:`axs_lib.demo`'s synthetic scene and tiny models);
- ``axs-terratorch`` (:mod:`.terratorch`; ``python -m axs_lib.cli.terratorch``): TerraTorch's CLI with the
  ``axs_*`` models registered.
"""
