"""A weights fingerprint names the weights actually in a module: same weights, same string; any change, another."""

from __future__ import annotations

import copy

import torch
from torch import nn

from axs_lib.weights.fingerprint import module_fingerprint, tensors_fingerprint


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(300, 20), nn.LayerNorm(20), nn.Linear(20, 3))


def test_the_same_weights_give_the_same_fingerprint_in_any_order():
    model = _model()
    state = model.state_dict()
    assert module_fingerprint(model) == module_fingerprint(copy.deepcopy(model))
    assert tensors_fingerprint(reversed(list(state.items()))) == module_fingerprint(model)


def test_a_changed_sampled_value_a_dtype_or_a_name_changes_it():
    model = _model()
    before = module_fingerprint(model)
    edited = copy.deepcopy(model)
    with torch.no_grad():
        edited[0].weight[-1, -1] += 1  # the last row and its last value are always sampled
    as_bf16 = copy.deepcopy(model).to(torch.bfloat16)
    renamed = nn.Sequential(nn.Identity(), *copy.deepcopy(model))
    assert len({before, module_fingerprint(edited), module_fingerprint(as_bf16), module_fingerprint(renamed)}) == 4
    assert before.startswith("sampled-sha256:")
