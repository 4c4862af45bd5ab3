"""TerraTorch's own command line with this library's ``axs_*`` models registered.

    python -m axs_lib.cli.terratorch fit --config configs/prithvi_600_lora_segmentation.yaml
    axs-terratorch predict --config X.yaml --ckpt_path run.ckpt --predict_output_dir out/

Every subcommand and option of ``terratorch`` works the same (``fit``, ``validate``, ``test``, ``predict``,
``--print_config``...). Registering first replaces the hand-made ``custom_modules/`` folder that TerraTorch
would otherwise need to see the ``axs_*`` names. Processes started by ``strategy: ddp`` run this module
again, so each rank registers the names too.

Before TerraTorch starts, the values of each ``--config`` file that depend on the encoder are checked against the
Prithvi encoder it names (``SelectIndices`` neck indices against the encoder's depth, read from the weights found).
A failure is one ``error:`` line (its innermost cause; ``AXS_TRACEBACK=1`` shows the traceback).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..errors import AxsModelError, InvalidArgumentError
from .errors import fail

TRACEBACK_ENV = "AXS_TRACEBACK"


def main(argv: Sequence[str] | None = None) -> int:
    """Run TerraTorch's CLI on ``argv`` (default: the command line) after registering the ``axs_*`` models."""
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    try:
        check_encoder_values(_config_files(sys.argv[1:]))
        import axs_lib.models  # noqa: F401  (registers the axs_* names in TerraTorch's registries)
        from terratorch.__main__ import main as terratorch_main

        terratorch_main()
    except AxsModelError as error:
        return fail(error, error)
    except Exception as error:  # noqa: BLE001 (TerraTorch, jsonargparse and Lightning raise anything)
        if os.environ.get(TRACEBACK_ENV):
            raise
        return fail(f"{_innermost(error)} (set {TRACEBACK_ENV}=1 for the traceback)")
    return 0


def check_encoder_values(configs: Sequence[Path]) -> None:
    """Refuse a config whose ``SelectIndices`` neck names blocks its Prithvi encoder does not have.

    Raises:
        InvalidArgumentError: naming the config, the indices, the encoder and its depth, with indices that fit.
    """
    import yaml

    from ..weights.catalog import KNOWN_MODELS, Family
    from ..weights.discovery import find_checkpoint
    from ..models.architecture import builder_arguments
    from ..models.recipe import SEGMENTATION_BACKBONES

    for path in configs:
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue  # TerraTorch's own parser says what is wrong with it
        model_args = (((config.get("model") or {}).get("init_args") or {}).get("model_args")) or {}
        backbone = str(model_args.get("backbone") or "")
        spec = KNOWN_MODELS.get(SEGMENTATION_BACKBONES.get(backbone, ""))
        if spec is None or spec.family is not Family.PRITHVI:
            continue
        checkpoint = find_checkpoint(spec, model_args.get("backbone_ckpt_path"))
        depth = builder_arguments(spec, checkpoint.path).get("depth") or _published_depth(spec.builder)
        for neck in model_args.get("necks") or []:
            indices = neck.get("indices") if isinstance(neck, dict) and neck.get("name") == "SelectIndices" else None
            outside = [index for index in indices or [] if not -depth <= index < depth]
            if outside:
                fitting = [depth * quarter // 4 - 1 for quarter in (1, 2, 3, 4)]
                raise InvalidArgumentError(
                    f"{path}: the SelectIndices neck takes blocks {indices}, but {backbone} ({spec.name}, weights "
                    f"{checkpoint.path}) has {depth} blocks, 0 to {depth - 1}; use indices within them, e.g. {fitting}"
                )


def _published_depth(builder: str) -> int:
    from terratorch.models.backbones.prithvi_vit import prithvi_cfgs

    return prithvi_cfgs[builder]["depth"]


def _config_files(arguments: Sequence[str]) -> list[Path]:
    """The files given to ``--config`` / ``-c`` (``--config X`` or ``--config=X``)."""
    files = []
    for position, argument in enumerate(arguments):
        if argument in ("--config", "-c") and position + 1 < len(arguments):
            files.append(Path(arguments[position + 1]))
        elif argument.startswith("--config="):
            files.append(Path(argument.split("=", 1)[1]))
    return [path for path in files if path.is_file()]


def _innermost(error: BaseException) -> str:
    """The deepest cause or context of ``error``, as ``Type: message``."""
    seen = error
    while (seen.__cause__ or seen.__context__) is not None:
        seen = seen.__cause__ or seen.__context__
    return f"{type(seen).__name__}: {seen}" if str(seen) else type(seen).__name__


if __name__ == "__main__":
    sys.exit(main())
