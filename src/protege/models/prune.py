"""Layer pruning of llama-like decoders: the half-depth student is the teacher with every other layer kept."""

from __future__ import annotations

from torch import nn


def decoder_layers(model: nn.Module) -> tuple[nn.Module, str]:
    """The module holding a decoder's ``layers`` list, and the attribute name, for llama-like models."""
    for holder in (getattr(model, "model", None), model):
        if holder is not None and isinstance(getattr(holder, "layers", None), nn.ModuleList):
            return holder, "layers"
    raise TypeError(
        f"{type(model).__name__} has no `model.layers` list of decoder layers; prune_layers supports "
        "llama-like decoders (Llama, Mistral, Qwen2, SmolLM, ...)"
    )


def prune_layers(model: nn.Module, keep: list[int]) -> nn.Module:
    """Keep only the decoder layers at indices ``keep`` (in place) and return the model.

    Each kept attention module gets its new position as ``layer_idx`` (the KV cache is indexed by it), and the
    config's ``num_hidden_layers`` and per-layer ``layer_types`` follow, so the pruned model saves and reloads
    as an ordinary smaller model.
    """
    holder, attr = decoder_layers(model)
    layers = getattr(holder, attr)
    total = len(layers)
    if not keep:
        raise ValueError("prune_layers: keep must name at least one layer")
    if sorted(set(keep)) != list(keep):
        raise ValueError(f"prune_layers: keep must be strictly increasing layer indices, got {keep}")
    if keep[0] < 0 or keep[-1] >= total:
        raise ValueError(f"prune_layers: indices {keep} out of range for a model with {total} layers")
    kept = nn.ModuleList(layers[i] for i in keep)
    for new_idx, layer in enumerate(kept):
        attn = getattr(layer, "self_attn", None)
        if attn is not None and hasattr(attn, "layer_idx"):
            attn.layer_idx = new_idx
        if hasattr(layer, "layer_idx"):
            layer.layer_idx = new_idx
    setattr(holder, attr, kept)
    configs = {id(c): c for c in (getattr(model, "config", None), getattr(holder, "config", None)) if c}
    for config in configs.values():
        config.num_hidden_layers = len(keep)
        layer_types = getattr(config, "layer_types", None)
        if layer_types is not None and len(layer_types) == total:
            config.layer_types = [layer_types[i] for i in keep]
    return model
