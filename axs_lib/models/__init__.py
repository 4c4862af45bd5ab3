"""axs_lib.models: TerraMind and Prithvi foundation models from local checkpoints, exactly loaded.

Importing this package registers the models in TerraTorch's registries (see :func:`register_all_models`),
and the folders ``SegmentationModel.save_pretrained`` writes with transformers' ``AutoConfig``/``AutoModel``.
The names for weights on disk (catalog, discovery, conversion) come from :mod:`axs_lib.weights` and the
exceptions from :mod:`axs_lib.errors`; both are re-exported here.
"""

from ..weights.catalog import KNOWN_MODELS, ModelSpec
from ..weights.conversion import convert_to_safetensors
from ..weights.discovery import CheckpointFile, find_all, find_checkpoint
from ..errors import (
    AxsModelError,
    BackboneBuildError,
    BaseModelMismatchError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    CorruptCheckpointError,
    InvalidArgumentError,
    InvalidWeightsDirError,
    NoModelsFoundError,
    NotASavedModelError,
    SavedModelNotFoundError,
    TerraTorchUnavailableError,
    UnknownTokenizerPresetError,
    UnsupportedModelError,
    WrongModuleImportError,
)
from .segmentation import SegmentationModel
from .prithvi import PrithviSegmentation, build_prithvi_600, build_prithvi_600_backbone, build_prithvi_backbone
from .registration import REGISTERED_NAMES, RegistrationReport, register_all_models
from .terramind import build_terramind_backbone, build_terramind_generator
from .auto import register_auto_classes

__all__ = [
    "KNOWN_MODELS",
    "REGISTERED_NAMES",
    "AxsModelError",
    "BackboneBuildError",
    "BaseModelMismatchError",
    "CheckpointFile",
    "CheckpointMismatchError",
    "CheckpointNotFoundError",
    "CorruptCheckpointError",
    "InvalidArgumentError",
    "InvalidWeightsDirError",
    "ModelSpec",
    "NoModelsFoundError",
    "NotASavedModelError",
    "PrithviSegmentation",
    "SegmentationModel",
    "RegistrationReport",
    "SavedModelNotFoundError",
    "TerraTorchUnavailableError",
    "UnknownTokenizerPresetError",
    "UnsupportedModelError",
    "WrongModuleImportError",
    "build_prithvi_600",
    "build_prithvi_600_backbone",
    "build_prithvi_backbone",
    "build_terramind_backbone",
    "build_terramind_generator",
    "convert_to_safetensors",
    "find_all",
    "find_checkpoint",
    "register_all_models",
]

register_all_models()
register_auto_classes()
