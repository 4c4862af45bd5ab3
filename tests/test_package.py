"""The package's surface: where names live, and the catalog against TerraTorch's own tables."""

from __future__ import annotations

import pytest

import axs_lib
from axs_lib.models import KNOWN_MODELS, WrongModuleImportError
from axs_lib.weights.catalog import Family


def test_factories_imported_from_the_top_package_point_to_axs_lib_models():
    with pytest.raises(WrongModuleImportError, match="from axs_lib.models import build_prithvi_600"):
        from axs_lib import build_prithvi_600  # noqa: F401
    with pytest.raises(AttributeError):
        axs_lib.no_such_name  # noqa: B018


def test_every_catalog_entry_matches_terratorchs_published_weights_table():
    from terratorch.models.backbones.prithvi_vit import pretrained_weights as prithvi
    from terratorch.models.backbones.terramind.model.terramind_register import pretrained_weights as terramind
    from terratorch.models.backbones.terramind.tokenizer.tokenizer_register import pretrained_weights as tokenizers

    published = {**prithvi, **terramind, **tokenizers}
    for spec in KNOWN_MODELS.values():
        assert published[spec.builder] == {"hf_hub_id": spec.repo_id, "hf_hub_filename": spec.filename}, spec.name


def test_every_catalog_builder_is_registered_in_terratorch():
    from terratorch.registry import TERRATORCH_BACKBONE_REGISTRY, TERRATORCH_FULL_MODEL_REGISTRY

    for spec in KNOWN_MODELS.values():
        registry = TERRATORCH_FULL_MODEL_REGISTRY if spec.family is Family.TERRAMIND_TOKENIZER else TERRATORCH_BACKBONE_REGISTRY
        assert spec.builder in registry, spec.builder
