"""TerraTorch's Prithvi ViT with ``forward`` and gradient checkpointing as methods of its class.

TerraTorch's builders set ``model.forward`` to a closure over the model they built (it returns the features of
``out_indices``), so a ``copy.deepcopy`` of the model still runs the original weights and ``pickle`` cannot store
it. :func:`as_encoder` gives the built model this module's class instead, whose methods belong to whichever copy
calls them, as timm's ``set_grad_checkpointing`` does for its models.

This module imports TerraTorch at its top: import it through ``_terratorch.needing_terratorch``.
"""

from __future__ import annotations

from typing import Any

import torch
from terratorch.models.backbones.prithvi_mae import PrithviViT
from timm.models.vision_transformer import Block
from torch.utils.checkpoint import checkpoint


class CheckpointableBlock(Block):
    """A ViT block that recomputes its activations in the backward pass while ``grad_checkpointing`` is set."""

    grad_checkpointing: bool = False

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(super().forward, x, *args, use_reentrant=False, **kwargs)
        return super().forward(x, *args, **kwargs)


class PrithviEncoder(PrithviViT):
    """TerraTorch's ``PrithviViT`` encoder, returning one ``[B, tokens, embed_dim]`` tensor per block of
    ``out_indices`` (every block unless the builder was given ``out_indices``)."""

    out_indices: list[int]

    def forward(
        self,
        x: torch.Tensor,
        temporal_coords: torch.Tensor | None = None,
        location_coords: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        features = self.forward_features(x, temporal_coords=temporal_coords, location_coords=location_coords)
        return [features[index] for index in self.out_indices]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of keeping them (training only)."""
        for block in self.blocks:
            if type(block) is Block:
                block.__class__ = CheckpointableBlock
            block.grad_checkpointing = enable


def as_encoder(model: PrithviViT) -> PrithviEncoder:
    """``model``, as a TerraTorch Prithvi builder returned it, with its ``forward`` closure replaced by
    :meth:`PrithviEncoder.forward` (same features, same ``out_indices``)."""
    vars(model).pop("forward", None)
    model.__class__ = PrithviEncoder
    return model
