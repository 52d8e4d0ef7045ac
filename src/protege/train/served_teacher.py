"""The teacher of KDRL's sampled-token estimators (k2, k1_reward, k3) behind any backend, through the run's ledger.

The sampled-token estimators need only log p_T(x) of the tokens the student sampled, not the teacher's weights:
any backend's ``topk_logprobs`` gives them (``hf`` and ``llamacpp`` in process, ``openai`` from a server's prompt
log-probabilities: vLLM, SGLang, llama.cpp's server). :class:`ServedTeacher` asks it through the ledgered teacher
(so requests are counted, costed and kept) with the student's **token ids**, never re-tokenized text: a sampled
tokenization the text would not give back is still scored token for token where the server takes ids
(:mod:`protege.models.echo_ids`). A sequence the teacher could not score as given (a text-only server that
re-tokenized it differently, or a token without a value) is left out of the KD term and counted in
``mismatched``, so the KD term never silently trains on another sequence's numbers.

Only the open rows are sent (:func:`protege.losses.kdrl.teacher_rows`): a closed gate costs no request.
The full-vocabulary ``exact`` estimator needs the teacher's weights and is refused with a served teacher.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


class ServedTeacher:
    """Log-probabilities of the student's sampled tokens from ``teacher`` (a ledgered teacher or any backend).

    ``tokenizer`` is the served model's tokenizer, compared with the student's before anything runs.
    ``scored_tokens`` counts the positions the teacher scored; ``mismatched`` the sequences it could not.
    """

    def __init__(self, teacher: Any, tokenizer: Any):
        if tokenizer is None:
            raise ValueError("a served KD teacher needs its tokenizer (teacher.tokenizer: the served model's): the "
                             "KD term compares token ids, so both tokenizers are checked to be the same first")
        self.teacher = teacher
        self.tokenizer = tokenizer
        self.scored_tokens = 0
        self.mismatched = 0

    def token_logprobs(self, batch: dict[str, Tensor], rows: Tensor) -> tuple[Tensor, Tensor]:
        """(log p_T of every scored position of the sequences ``rows`` marks, in ``loss_mask`` order, as float64;
        a bool per marked row: scored as given). Values of rows not scored as given are 0."""
        index = rows.nonzero().flatten().tolist()
        prompts, completions = [], []
        for i in index:
            n = int(batch["attention_mask"][i].sum())
            start = int(batch["loss_mask"][i].nonzero()[0]) + 1  # the first response token
            ids = batch["input_ids"][i, :n].tolist()
            prompts.append(ids[:start])
            completions.append(ids[start:])
        answers = self.teacher.topk_logprobs(prompts, completions, 1) if index else []
        values, ok = [], []
        for prompt, completion, answer in zip(prompts, completions, answers):
            sequence = prompt + completion
            got = answer.token_logprobs[len(prompt) - 1:len(sequence) - 1]
            good = (list(answer.token_ids) == sequence and len(got) == len(completion)
                    and all(math.isfinite(v) for v in got))
            values += got if good else [0.0] * len(completion)
            ok.append(good)
            self.scored_tokens += len(completion) if good else 0
            self.mismatched += not good
        return torch.tensor(values, dtype=torch.float64), torch.tensor(ok, dtype=torch.bool)
