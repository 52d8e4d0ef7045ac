"""The generative ABSA student: pre-training pairs, fine-tuning on gold pairs, and grounded predictions."""

from __future__ import annotations

import pytest

from protege.tasks.absa.generative import REVIEW_PROMPT, fit_lm, pairs_training, predict_pairs, rationale_pairs
from protege.tasks.absa.metrics import labels_of, pair_scores
from protege.tasks.absa.task import AbsaExample, AbsaTask, Aspect
from protege.train.lm_data import LMExamples
from protege.train.loop import LoopConfig

from tiny import build_llama, build_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLES = [
    AbsaExample("a", "the screen is great", (Aspect(4, 10, "screen", "positive"),)),
    AbsaExample("b", "the fan is bad", (Aspect(4, 7, "fan", "negative"),)),
]


def test_pretraining_pairs_put_the_teacher_text_or_the_review_in_the_response():
    prompts, responses = rationale_pairs(["r1", "r2", "r1"], ["t1", "t2", "t3"], "rationales")
    assert responses == ["t1", "t2", "t3"] and all(p.startswith("Review: r") for p in prompts)
    prompts, responses = rationale_pairs(["r1", "r2", "r1"], None, "reviews")
    assert responses == ["r1", "r2"] and prompts == [REVIEW_PROMPT] * 2  # each review once, no teacher text
    with pytest.raises(ValueError, match="one teacher text per review"):
        rationale_pairs(["r1"], None, "rationales")


def test_only_the_pairs_are_scored_in_fine_tuning():
    tokenizer = build_tokenizer()
    prompts, responses = pairs_training(EXAMPLES)
    assert responses[0] == '[["screen", "positive"]]'
    data = LMExamples.from_pairs(tokenizer, prompts, responses)
    batch = data.batch([0])
    scored = batch["input_ids"][0].roll(-1)[batch["loss_mask"][0]]
    assert tokenizer.decode(scored, skip_special_tokens=True) == responses[0]


def test_a_fitted_student_writes_pairs_that_score_with_pair_f1():
    tokenizer = build_tokenizer(tuple(e.sentence for e in EXAMPLES) + ('[["screen", "positive"]]',
                                                                      '[["fan", "negative"]]'))
    model = build_llama(len(tokenizer), layers=2, hidden=48, seed=0)
    prompts, responses = pairs_training(EXAMPLES)
    loop = LoopConfig(steps=80, lr=1e-2, micro_batch_size=2, tracker=None, schedule="constant")
    trained = fit_lm(model.train(), tokenizer, prompts * 4, responses * 4, loop).model
    pred, health = predict_pairs(trained, tokenizer, EXAMPLES, AbsaTask(), max_new_tokens=16)
    assert health == {"answers": 2, "parsed": 2}
    assert pred["a"] == (Aspect(4, 10, "screen", "positive"),)  # grounded to the sentence's own span
    assert pair_scores(labels_of(EXAMPLES), pred).f1 == 1.0
