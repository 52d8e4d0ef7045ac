"""Run by test_accelerate_launch under ``accelerate launch``: fit the tiny classifier, report from rank 0."""

import json
import sys
from pathlib import Path

import numpy as np
from accelerate import PartialState

from protege.tasks.classify.student import ClassifierTrainConfig, Examples, fit, predict_probs
from protege.train.loop import EarlyStopping, LoopConfig

from tiny_encoder import separable_texts

encoder, out = sys.argv[1], Path(sys.argv[2])
texts, labels = separable_texts(96, seed=1)
dev_texts, dev_labels = separable_texts(32, seed=2)
config = ClassifierTrainConfig(student=encoder, max_length=16, loop=LoopConfig(
    epochs=6, lr=3e-3, micro_batch_size=8, schedule="constant", eval_every=6, tracker=None,
    early_stopping=EarlyStopping(metric="dev_accuracy", mode="max", patience=3)))
soft = [[0.15, 0.85] if y else [0.85, 0.15] for y in labels]
fitted = fit(config, Examples.from_soft(texts, soft), dev_texts, dev_labels, ["bad", "good"])
state = PartialState()
test_texts, test_labels = separable_texts(64, seed=3)
accuracy = float((predict_probs(fitted.model, fitted.tokenizer, test_texts).argmax(1) == np.array(test_labels)).mean())
record = {"rank": state.process_index, "world": state.num_processes, "accuracy": accuracy, "steps": fitted.result.steps}
(out / f"rank{state.process_index}.json").write_text(json.dumps(record))
