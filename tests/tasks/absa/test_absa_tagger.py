"""The tagger student on a tiny random BERT: batches, the summed loss, training, export and reload."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_tagger import build_tiny_tagger_base

from protege.tasks.absa.tagger import (
    TaggedExample, TaggerConfig, TaggerObjective, TaggerSource, fit_tagger, load_tagger, predict_aspects,
    predict_spans, save_tagger,
)
from protege.tasks.absa.tags import TagScheme
from protege.tasks.absa.task import AbsaExample, Aspect
from protege.train.loop import LoopConfig
from protege.train.loop import train as train_loop

SCHEME = TagScheme(("positive", "negative", "neutral"))


def A(sentence: str, term: str, polarity: str) -> Aspect:
    start = sentence.index(term)
    return Aspect(start, start + len(term), term, polarity)


def _data() -> list[TaggedExample]:
    rows = []
    for adjective, polarity in (("great", "positive"), ("good", "positive"), ("bad", "negative"),
                                ("slow", "negative"), ("fine", "neutral")):
        for term in ("screen", "battery life", "keyboard", "laptop", "trackpads"):
            sentence = f"the {term} is {adjective}."
            rows.append(TaggedExample(sentence, (A(sentence, term, polarity),)))
    rows.append(TaggedExample("it is fine.", ()))
    return rows


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_tiny_tagger_base(tmp_path_factory.mktemp("tiny-tagger"))


def _quiet(loop: LoopConfig) -> LoopConfig:
    return loop.model_copy(update={"tracker": None})


def test_batch_shapes_units_and_weights(base):
    model, tokenizer = load_tagger(str(base), SCHEME)
    rows = [TaggedExample("the screen is great.", (Aspect(4, 10, "screen", "positive"),), weight=0.25),
            TaggedExample("the battery life is slow!", (Aspect(4, 16, "battery life", "negative"),))]
    batch = TaggerSource(rows, tokenizer, SCHEME).batch([0, 1])
    # [CLS] the screen is great . [SEP] [PAD]  /  [CLS] the battery life is slow ! [SEP]
    assert batch["input_ids"].shape == (2, 8) and batch["targets"].shape == (2, 8, 7)
    assert batch["target_mask"].sum(1).tolist() == [5, 6]
    assert TaggerObjective().units(batch) == 11
    assert batch["weights"].tolist() == [0.25, 1.0]
    assert [SCHEME.labels[i] for i in batch["targets"][1, 2:4].argmax(-1)] == ["B-negative", "I-negative"]
    assert model.config.id2label == dict(enumerate(SCHEME.labels))


def test_objective_is_the_weighted_sum_of_piece_cross_entropies(base):
    model, tokenizer = load_tagger(str(base), SCHEME)
    rows = [TaggedExample("the fan is bad.", (Aspect(4, 7, "fan", "negative"),), weight=0.5,
                          distributions=({"negative": 0.8, "neutral": 0.2},)),
            TaggedExample("it is fine.", ())]
    batch = TaggerSource(rows, tokenizer, SCHEME).batch([0, 1])
    with torch.no_grad():
        total, metrics = TaggerObjective()(model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp = torch.log_softmax(logits.double(), -1).numpy()
    q, mask, w = batch["targets"].double().numpy(), batch["target_mask"].numpy(), [0.5, 1.0]
    expected = sum(w[b] * -(q[b, t] * logp[b, t]).sum()
                   for b in range(2) for t in range(q.shape[1]) if mask[b, t])
    assert float(total) == pytest.approx(expected, rel=1e-5)
    assert 0 <= metrics["tag_accuracy"] <= mask.sum()


def test_token_drop_masks_only_labelled_pieces_reproducibly(base):
    _, tokenizer = load_tagger(str(base), SCHEME)
    rows = _data()
    plain = TaggerSource(rows, tokenizer, SCHEME).batch(range(8))
    noisy = [TaggerSource(rows, tokenizer, SCHEME, token_drop=0.5, seed=3).batch(range(8)) for _ in range(2)]
    changed = noisy[0]["input_ids"] != plain["input_ids"]
    assert torch.equal(noisy[0]["input_ids"], noisy[1]["input_ids"])
    assert changed.any() and not (changed & ~plain["target_mask"]).any()
    assert (noisy[0]["input_ids"][changed] == tokenizer.mask_token_id).all()
    assert torch.equal(noisy[0]["targets"], plain["targets"])


def _mean_loss(model, source, n):
    batch = source.batch(range(n))
    with torch.no_grad():
        total, _ = TaggerObjective()(model, batch)
    return float(total) / TaggerObjective().units(batch)


def test_training_lowers_the_loss_and_export_reloads(base, tmp_path):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    torch.manual_seed(0)
    model, tokenizer = load_tagger(str(base), SCHEME)
    rows = _data()
    source = TaggerSource(rows, tokenizer, SCHEME)
    before = _mean_loss(model, source, len(rows))
    loop = _quiet(LoopConfig(steps=40, lr=3e-3, micro_batch_size=13, schedule="constant"))
    trained = train_loop(model, TaggerObjective(), source, loop).model
    after = _mean_loss(trained, source, len(rows))
    assert after < 0.4 * before, (before, after)

    folder = save_tagger(trained, tokenizer, tmp_path / "tagger", SCHEME, {"trained_on": "tiny"})
    reloaded = AutoModelForTokenClassification.from_pretrained(folder).eval()
    retok = AutoTokenizer.from_pretrained(folder)
    assert reloaded.config.id2label == dict(enumerate(SCHEME.labels))
    sentences = [r.sentence for r in rows[:10]] + ["the fan is bad, but the screen is great!"]
    enc = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        np.testing.assert_allclose(trained(**enc).logits.numpy(), reloaded(**retok(sentences, padding=True,
                                   return_tensors="pt")).logits.numpy(), atol=1e-5)
    spans = predict_spans(trained, tokenizer, SCHEME, sentences)
    assert spans == predict_spans(reloaded, retok, SCHEME, sentences) and any(spans)


def test_save_refuses_a_model_with_other_labels(base, tmp_path):
    model, tokenizer = load_tagger(str(base), TagScheme(("positive", "negative")))
    with pytest.raises(ValueError, match="differ"):
        save_tagger(model, tokenizer, tmp_path / "x", SCHEME)


def test_fit_tagger_with_noise_and_dev_selection(base):
    rows = _data()
    dev = [AbsaExample(str(i), r.sentence, r.aspects) for i, r in enumerate(rows[::5])]
    loop = _quiet(LoopConfig(steps=30, lr=3e-3, micro_batch_size=13, schedule="constant", eval_every=10))
    config = TaggerConfig(student=str(base), token_drop=0.1, dropout=0.2, loop=loop)
    fitted = fit_tagger(config, rows, SCHEME, dev=dev, seed=1)
    assert [e["step"] for e in fitted.result.evaluations] == [10, 20, 30]
    assert all(0.0 <= e["dev_pair_f1"] <= 1.0 for e in fitted.result.evaluations)
    assert fitted.lost_aspects == 0
    dropouts = {m.p for m in fitted.model.modules() if isinstance(m, torch.nn.Dropout)}
    assert dropouts == {0.2}
    predicted = predict_aspects(fitted.model, fitted.tokenizer, SCHEME, dev)
    assert set(predicted) == {e.id for e in dev}
