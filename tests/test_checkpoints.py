"""oldschool.checkpoints: renaming a checkpoint's keys and loading it, refusing by name."""

import pytest
import torch
import torch.nn as nn

from oldschool import checkpoints

KEY_MAP = (
    (r"^block\.(\d+)\.", r"layers.\1."),
    (r"\.w$", ".weight"),
    (r"\.b$", ".bias"),
)


def tiny(bias=True):
    torch.manual_seed(0)
    model = nn.Module()
    model.layers = nn.ModuleList([nn.Linear(3, 4, bias=bias), nn.Linear(4, 2)])
    return model


def theirs(model):
    """The model's state dict in the other layout: block.N.w / block.N.b."""
    renamed = {}
    for name, tensor in model.state_dict().items():
        key = name.replace("layers.", "block.").replace(".weight", ".w")
        renamed[key.replace(".bias", ".b")] = tensor.clone()
    return renamed


def test_rename_key_applies_the_map_in_order():
    assert checkpoints.rename_key("block.1.w", KEY_MAP) == "layers.1.weight"
    assert checkpoints.rename_key("head.b", KEY_MAP) == "head.bias"
    swap = ((r"a", "b"), (r"b", "c"))  # in order: a -> b -> c
    assert checkpoints.rename_key("a", swap) == "c"


def test_a_renamed_checkpoint_loads_every_weight():
    source, target = tiny(), tiny()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)
    assert checkpoints.load_renamed(target, theirs(source), KEY_MAP) is target
    for a, b in zip(source.parameters(), target.parameters()):
        assert torch.equal(a, b)


def test_a_meta_model_receives_the_tensors_themselves():
    state = theirs(tiny())
    with torch.device("meta"):
        model = tiny()
    checkpoints.load_renamed(model, state, KEY_MAP)
    assert model.layers[0].weight.data_ptr() == state["block.0.w"].data_ptr()


def test_missing_unexpected_and_misshapen_keys_are_named():
    state = theirs(tiny())
    del state["block.1.b"]
    state["block.2.w"] = torch.zeros(1)
    state["block.0.w"] = torch.zeros(4, 5)
    with pytest.raises(ValueError) as error:
        checkpoints.load_renamed(tiny(), state, KEY_MAP, what="the tiny model")
    message = str(error.value)
    assert "does not fit the tiny model" in message
    assert "missing (1): layers.1.bias" in message
    assert "unexpected (1): block.2.w" in message
    assert "shape mismatch (1): block.0.w (4, 5) -> layers.0.weight (4, 3)" in message
