"""Masked-LM continued pre-training: which tokens are masked, the summed loss, and learning on the one loop."""

from __future__ import annotations

import pytest
import torch

from protege.train.loop import LoopConfig, train
from protege.train.mlm import MaskedLMObjective, MaskedTextSource

from tiny_tagger import build_tiny_tagger_base

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = ["the screen is great and the battery life is good .", "the fan is noisy , the keyboard is bad .",
         ("the price is fine .", "the trackpad was slow but the glass is great ."), "it was too slow ."] * 4


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    folder = build_tiny_tagger_base(tmp_path_factory.mktemp("mlm") / "encoder")

    def load():
        torch.manual_seed(0)
        return AutoModelForMaskedLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)

    return load


def test_masking_spares_special_tokens_and_padding_and_repeats_for_the_same_indices(tiny_mlm):
    _, tokenizer = tiny_mlm()
    source = MaskedTextSource(TEXTS, tokenizer, max_length=32, mask_prob=0.5, seed=3)
    batch = source.batch([0, 1, 2, 3])
    plain = tokenizer.pad([source._encode(t) for t in TEXTS[:4]], return_tensors="pt")
    chosen = batch["labels"] != -100
    assert chosen.any()
    assert not (chosen & plain["special_tokens_mask"].bool()).any()  # [CLS] and [SEP] are never chosen
    assert not (chosen & (batch["attention_mask"] == 0)).any()  # nor padding
    assert "glass" in tokenizer.decode(plain["input_ids"][2])  # both texts of a (review, rationale) pair
    assert torch.equal(batch["labels"][chosen], plain["input_ids"][chosen])  # labels: the original ids
    assert torch.equal(batch["input_ids"][~chosen], plain["input_ids"][~chosen])  # the rest is untouched
    again = source.batch([0, 1, 2, 3])  # a resumed step masks the same tokens
    assert torch.equal(again["input_ids"], batch["input_ids"]) and torch.equal(again["labels"], batch["labels"])


def test_the_mask_token_replaces_most_chosen_tokens(tiny_mlm):
    _, tokenizer = tiny_mlm()
    source = MaskedTextSource(TEXTS * 8, tokenizer, max_length=32, mask_prob=0.3, seed=0)
    batch = source.batch(list(range(len(TEXTS) * 8)))
    chosen = batch["labels"] != -100
    share_masked = float((batch["input_ids"][chosen] == tokenizer.mask_token_id).float().mean())
    real = (batch["attention_mask"] == 1) & (batch["input_ids"] != tokenizer.cls_token_id) \
        & (batch["input_ids"] != tokenizer.sep_token_id)
    assert 0.7 < share_masked < 0.9
    assert 0.2 < float(chosen.sum()) / float(real.sum()) < 0.4


def test_the_objective_is_the_summed_cross_entropy_of_the_full_forward(tiny_mlm):
    model, tokenizer = tiny_mlm()
    model.eval()
    batch = MaskedTextSource(TEXTS, tokenizer, max_length=32, seed=1).batch([0, 1, 2, 3])
    loss, metrics = MaskedLMObjective()(model, batch)
    logits = model(**{k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}).logits
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(),
                                                 ignore_index=-100, reduction="sum")
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert MaskedLMObjective().units(batch) == int((batch["labels"] != -100).sum())
    assert 0 <= metrics["mlm_accuracy"] <= MaskedLMObjective().units(batch)


def test_pretraining_on_the_loop_lowers_the_masked_lm_loss(tiny_mlm):
    model, tokenizer = tiny_mlm()
    source = MaskedTextSource(TEXTS, tokenizer, max_length=32, mask_prob=0.3, seed=0)
    objective = MaskedLMObjective()
    probe = [source.batch(list(range(i, i + 4))) for i in range(0, len(TEXTS), 4)]

    def held_loss(m) -> float:
        with torch.no_grad():
            return sum(objective(m, b)[0].item() for b in probe) / sum(objective.units(b) for b in probe)

    before = held_loss(model.eval())
    result = train(model.train(), objective, source, LoopConfig(steps=100, lr=5e-3, micro_batch_size=8,
                                                              tracker=None, max_grad_norm=None))
    assert held_loss(result.model) < 0.6 * before
